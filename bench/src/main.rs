//! paybridge-bench: starts the release gateway pinned to one core, drives it from another over
//! keep-alive HTTP/1.1, and reports throughput, latency and the gateway's CPU and memory next to
//! the two costs that bound it (RSA signatures, durable SQLite commits). See bench/README.md.

mod alipay;
mod database;
mod gateway;
mod limits;
mod load;
mod plans;
mod procfs;
mod report;
mod seed;
mod statement;
mod statement_load;
mod wechat;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Parser, ValueEnum};

use crate::gateway::{Gateway, RoundEnv};
use crate::limits::Limits;
use crate::load::LoadConfig;
use crate::report::{Machine, ScenarioResult};

/// The gateway's allocator (`server/src/main.rs`): the `statement` scenario runs the gateway's
/// reconciliation in this process, and measures it with what the gateway allocates with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// `POST /v1/orders` for Alipay app pay (an RSA signature each).
    AlipayCreate,
    /// Signed WeChat payment notifications (API v2), one per pending order.
    WechatNotify,
    /// WeChat Pay API v3 payment notifications (RSA + AES-256-GCM), one per pending order.
    WechatV3Notify,
    /// Only the one-core limits: RSA-2048 signs/s and serial SQLite commits/s.
    Limits,
    /// Reconcile a WeChat Pay bill of `--bill-lines` lines against as many orders, in this
    /// process on one core, beside a plain parse of the file.
    Statement,
    /// WeChat notifications alone, then while the gateway reconciles a statement of
    /// `--bill-lines` lines (started through the admin API): the share of throughput kept.
    WechatNotifyStatement,
    /// Both scenarios, in rounds of 10 000 and 1 000 000 seeded orders.
    All,
}

/// Load benchmark of the paybridge gateway (run it with bench/run.sh).
#[derive(Debug, Parser)]
#[command(name = "paybridge-bench")]
pub struct Cli {
    /// What to run. The limits are measured first in every case.
    #[arg(value_enum, default_value = "all")]
    scenario: Scenario,
    /// Seconds measured per scenario.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Keep-alive connections of the driver.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Historical orders written before each round; one round per value (comma-separated or
    /// repeated). Default: 10000,1000000 for `all`, 10000 otherwise.
    #[arg(long, value_delimiter = ',')]
    seed: Vec<u64>,
    /// Pending WeChat orders created (not measured) for wechat-notify and wechat-v3-notify: one
    /// notification each.
    #[arg(long, default_value_t = 150_000)]
    notify_orders: usize,
    /// Bound on the wechat-notify set-up, seconds.
    #[arg(long, default_value_t = 900)]
    setup_timeout: u64,
    /// A postgres:// URL: each round runs on a fresh database created on that server (and
    /// dropped afterwards). Default: a SQLite file in the temporary folder.
    #[arg(long)]
    database: Option<String>,
    /// Keep the temporary folder (configs, databases, gateway logs).
    #[arg(long)]
    keep: bool,
    /// Also write the Markdown results block to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where to make the temporary folder (default: the system's temp dir).
    #[arg(long)]
    tmpdir: Option<PathBuf>,
    /// The gateway binary (default: `paybridge` beside this binary).
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// Leave the `[limits]` section (rate limits off) out of the gateway's config: for a gateway
    /// build older than that section, which refuses unknown sections. Such builds have no limits.
    #[arg(long)]
    without_limits_section: bool,
    /// The examples folder with tenants/demo.toml (default: the workspace's examples/).
    #[arg(long)]
    examples: Option<PathBuf>,
    /// Core for the gateway (and the limits).
    #[arg(long, default_value_t = 0)]
    gateway_core: usize,
    /// Core for the load driver.
    #[arg(long, default_value_t = 1)]
    driver_core: usize,
    /// Lines of the bill (and orders) of the `statement` scenario.
    #[arg(long, default_value_t = 1_000_000)]
    bill_lines: u64,
    /// Seconds for each limit measurement.
    #[arg(long, default_value_t = 3)]
    limit_seconds: u64,
}

/// What a scenario needs of its round.
pub struct Ctx<'a> {
    pub cli: &'a Cli,
    pub env: &'a RoundEnv,
    pub limits: &'a Limits,
    pub clk_tck: u64,
    pub seed: u64,
    /// Distinguishes this run's order numbers.
    pub run_tag: u32,
    pub driver_core: Option<usize>,
}

impl Ctx<'_> {
    pub fn load_config(&self, gateway: &Gateway) -> LoadConfig {
        LoadConfig {
            connections: self.cli.connections,
            warmup: Duration::from_secs(self.cli.warmup),
            duration: Duration::from_secs(self.cli.duration),
            request_timeout: Duration::from_secs(30),
            driver_core: self.driver_core,
            gateway_pid: Some(gateway.pid),
            gateway_core: Some(self.cli.gateway_core),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("some scenarios failed (see above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The temporary folder of a run, removed at the end unless `--keep`.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn create(base: Option<&Path>, keep: bool) -> anyhow::Result<WorkDir> {
        let base = base.map_or_else(std::env::temp_dir, Path::to_owned);
        let path = base.join(format!("paybridge-bench-{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(WorkDir {
            path: std::fs::canonicalize(&path)?,
            keep,
        })
    }

    fn finish(&self) {
        if self.keep {
            println!("kept {}", self.path.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("warning: could not remove {}: {e}", self.path.display());
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let examples = match &cli.examples {
        Some(dir) => dir.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples"),
    };
    let examples = std::fs::canonicalize(&examples)
        .with_context(|| format!("{}: no examples folder", examples.display()))?;
    let repo = examples.parent().unwrap_or(&examples).to_owned();
    let gateway_bin = match &cli.gateway_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()?
            .parent()
            .ok_or_else(|| anyhow!("this binary has no folder"))?
            .join("paybridge"),
    };
    if cli.scenario == Scenario::Statement {
        let workdir = WorkDir::create(cli.tmpdir.as_deref(), cli.keep)?;
        let outcome = statement::run(&workdir.path, cli.bill_lines, cli.gateway_core).await;
        workdir.finish();
        let result = outcome?;
        result.print();
        return Ok(true);
    }
    if cli.scenario != Scenario::Limits && !gateway_bin.is_file() {
        bail!(
            "{}: no gateway binary; build it with `cargo build --release -p paybridge-server \
             --bin paybridge` (bench/run.sh does) or pass --gateway-bin",
            gateway_bin.display()
        );
    }
    let workdir = WorkDir::create(cli.tmpdir.as_deref(), cli.keep)?;
    let machine = Machine::probe(&workdir.path, &repo);
    let cleanup = database::Cleanup::default();
    let outcome = tokio::select! {
        r = bench(&cli, &workdir.path, &machine, &cleanup, &gateway_bin, &examples) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    cleanup.drop_all().await;
    workdir.finish();
    outcome
}

async fn bench(
    cli: &Cli,
    workdir: &Path,
    machine: &Machine,
    cleanup: &database::Cleanup,
    gateway_bin: &Path,
    examples: &Path,
) -> anyhow::Result<bool> {
    let command = std::iter::once("bench/run.sh".to_owned())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    println!("== paybridge-bench: {command}");
    println!("machine: {}", machine.line());
    let cores: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    if !cores.contains(&cli.gateway_core) {
        bail!(
            "core {} (--gateway-core) is not available; cores: {cores:?}",
            cli.gateway_core
        );
    }
    let driver_core = if cores.contains(&cli.driver_core) && cli.driver_core != cli.gateway_core {
        Some(cli.driver_core)
    } else {
        println!(
            "warning: core {} (--driver-core) is not a separate available core (cores: \
             {cores:?}); the driver is not pinned",
            cli.driver_core
        );
        None
    };
    let clk_tck = procfs::clock_ticks_per_second();
    let started = std::time::Instant::now();

    let key_source = RoundEnv::prepare(
        &workdir.join("limits"),
        examples,
        "sqlite::memory:",
        true,
        false,
    )?;
    println!(
        "== limits (core {}, gateway not running, {} s each)",
        cli.gateway_core, cli.limit_seconds
    );
    let measure_limits = || async {
        let limits = limits::measure(
            cli.gateway_core,
            key_source.tenant.alipay_private_key.clone(),
            workdir.join("limits"),
            cli.limit_seconds,
        )
        .await?;
        println!("{}", report::limits_line(&limits));
        anyhow::Ok(limits)
    };
    let limits = measure_limits().await?;

    let seeds: Vec<u64> = match (cli.seed.is_empty(), cli.scenario) {
        (_, Scenario::Limits) => Vec::new(),
        (false, _) => cli.seed.clone(),
        (true, Scenario::All) => vec![10_000, 1_000_000],
        (true, _) => vec![10_000],
    };
    let scenarios: &[Scenario] = match cli.scenario {
        Scenario::All => &[
            Scenario::AlipayCreate,
            Scenario::WechatNotify,
            Scenario::WechatV3Notify,
        ],
        Scenario::Limits | Scenario::Statement => &[],
        Scenario::AlipayCreate => &[Scenario::AlipayCreate],
        Scenario::WechatNotify => &[Scenario::WechatNotify],
        Scenario::WechatV3Notify => &[Scenario::WechatV3Notify],
        Scenario::WechatNotifyStatement => &[Scenario::WechatNotifyStatement],
    };
    let run_tag = std::process::id() % 1_000_000;
    let database_kind = if cli.database.is_some() {
        "PostgreSQL (fresh database per round)"
    } else {
        "SQLite (file in the tmp dir)"
    };
    let mut results = Vec::new();
    let mut seed_reports = Vec::new();
    for &seed in &seeds {
        println!("== round: seed {seed} orders");
        let dir = workdir.join(format!("seed-{seed}"));
        std::fs::create_dir_all(&dir)?;
        let pg = match &cli.database {
            Some(url) => Some(
                database::create_pg(
                    url,
                    &format!("bench_{}_{seed}", std::process::id()),
                    cleanup,
                )
                .await?,
            ),
            None => None,
        };
        let db_url = pg.as_ref().map_or_else(
            || format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()),
            |p| p.url.clone(),
        );
        let env = RoundEnv::prepare(
            &dir,
            examples,
            &db_url,
            !cli.without_limits_section,
            scenarios.contains(&Scenario::WechatV3Notify),
        )?;
        let ctx = Ctx {
            cli,
            env: &env,
            limits: &limits,
            clk_tck,
            seed,
            run_tag,
            driver_core,
        };
        println!("  seeding {seed} orders into {db_url}");
        match seed::seed(&db_url, &env.tenant.id, seed).await {
            Ok(report) => {
                println!(
                    "  seeded {} orders in {:.1} s (migrations {:.1} s, inserts {:.1} s)",
                    report.orders,
                    report.total.as_secs_f64(),
                    report.migrate.as_secs_f64(),
                    report.insert.as_secs_f64()
                );
                seed_reports.push((seed, Some(report)));
                for &scenario in scenarios {
                    let result = if scenario == Scenario::WechatNotifyStatement {
                        let result = statement_load::run(&ctx, gateway_bin).await;
                        result.print();
                        result
                    } else {
                        run_scenario(&ctx, gateway_bin, scenario).await
                    };
                    results.push(result);
                }
            }
            Err(e) => {
                println!("  seeding failed: {e:#}");
                seed_reports.push((seed, None));
                results.push(ScenarioResult::failed(seed, "seeding", &e));
            }
        }
        println!("== Query plans (seed {seed})");
        match plans::explain_hot_queries(&db_url).await {
            Ok(text) => println!("{text}"),
            Err(e) => println!("explain_hot_queries failed: {e:#}"),
        }
        if let Some(pg) = &pg {
            database::drop_pg(pg, cleanup).await?;
        }
    }

    // The core's speed moves on a shared machine: the limits once more, so that a ratio can be
    // read against both ends of the run.
    let limits_after = if results.is_empty() {
        None
    } else {
        println!(
            "== limits again (core {}, gateway stopped)",
            cli.gateway_core
        );
        Some(measure_limits().await?)
    };
    let block = report::markdown(&report::Summary {
        command,
        machine,
        database: database_kind,
        limits: &limits,
        limits_after: limits_after.as_ref(),
        seeds: &seed_reports,
        results: &results,
        connections: cli.connections,
        warmup: cli.warmup,
        duration: cli.duration,
        gateway_core: cli.gateway_core,
        driver_core: cli.driver_core,
    });
    println!(
        "\n== Results (Markdown for bench/RESULTS.md; whole run {:.0} s)\n",
        started.elapsed().as_secs_f64()
    );
    println!("{block}");
    if let Some(out) = &cli.out {
        std::fs::write(out, &block).with_context(|| format!("writing {}", out.display()))?;
        println!("written to {}", out.display());
    }
    Ok(results.iter().all(|r| r.failed.is_none()))
}

/// Stop the gateway and start a fresh one on the same database.
async fn restart(
    gateway: Gateway,
    gateway_bin: &Path,
    ctx: &Ctx<'_>,
    label: &str,
) -> anyhow::Result<Gateway> {
    gateway
        .stop()
        .await
        .context("stopping the set-up gateway")?;
    let fresh = Gateway::start(gateway_bin, ctx.env, ctx.cli.gateway_core, label)
        .await
        .context("restarting the gateway")?;
    println!(
        "  restarted for the measurement: gateway pid {} on CPUs {}",
        fresh.pid,
        fresh.cpus_allowed()
    );
    Ok(fresh)
}

async fn run_scenario(ctx: &Ctx<'_>, gateway_bin: &Path, scenario: Scenario) -> ScenarioResult {
    let name = match scenario {
        Scenario::AlipayCreate => alipay::NAME,
        Scenario::WechatNotify => wechat::NAME,
        Scenario::WechatV3Notify => wechat::V3_NAME,
        Scenario::Limits
        | Scenario::All
        | Scenario::Statement
        | Scenario::WechatNotifyStatement => "?",
    };
    println!("== seed {} / {name}", ctx.seed);
    let mut gateway = match Gateway::start(gateway_bin, ctx.env, ctx.cli.gateway_core, name).await {
        Ok(g) => g,
        Err(e) => {
            let result = ScenarioResult::failed(ctx.seed, name, &e.context("starting the gateway"));
            result.print();
            return result;
        }
    };
    println!(
        "  gateway pid {} on CPUs {} at http://{}",
        gateway.pid,
        gateway.cpus_allowed(),
        gateway.addr
    );
    let outcome = match scenario {
        Scenario::AlipayCreate => alipay::run(ctx, &gateway).await,
        Scenario::WechatNotify | Scenario::WechatV3Notify => match wechat::prepare(
            ctx,
            &gateway,
            if scenario == Scenario::WechatV3Notify {
                wechat::Protocol::V3
            } else {
                wechat::Protocol::V2
            },
        )
        .await
        {
            // The set-up's orders went through the in-process WeChat simulator, which keeps
            // each one in memory: the measured gateway is a fresh process on the same database,
            // so its CPU and peak RSS are the notifications' alone.
            Ok(prepared) => {
                let measured = format!("{name}-measured");
                match restart(gateway, gateway_bin, ctx, &measured).await {
                    Ok(fresh) => {
                        gateway = fresh;
                        wechat::measure(ctx, &gateway, prepared).await
                    }
                    Err(e) => {
                        let result = ScenarioResult::failed(ctx.seed, name, &e);
                        result.print();
                        return result;
                    }
                }
            }
            Err(e) => Err(e),
        },
        Scenario::Limits
        | Scenario::All
        | Scenario::Statement
        | Scenario::WechatNotifyStatement => Err(anyhow!("not a load scenario here")),
    };
    let log = gateway.log.clone();
    let groups = gateway.write_groups();
    let stopped = gateway.stop().await;
    let mut result = outcome.unwrap_or_else(|e| ScenarioResult::failed(ctx.seed, name, &e));
    if let Some((commits, writes)) = groups.filter(|(commits, _)| *commits > 0) {
        result.notes.push(format!(
            "group commit: {writes} writes in {commits} commits ({:.1} per commit, warm-up included)",
            load::f64_of(writes) / load::f64_of(commits)
        ));
    }
    match stopped {
        Ok(stop) => result.gateway = Some(stop),
        Err(e) => result.notes.push(format!("stopping the gateway: {e:#}")),
    }
    result.print();
    if ctx.cli.keep {
        println!("  gateway log: {}", log.display());
    }
    result
}
