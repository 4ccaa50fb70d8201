//! `wechat-notify+statement`: WeChat payment notifications measured twice on the same gateway,
//! first alone, then while the gateway reconciles a statement of `--bill-lines` lines against
//! as many orders (started through the admin API as an operator would, downloaded from a bill
//! server of this benchmark, 127.0.0.1). The ratio of the two throughputs is what a statement
//! run costs the payments taken meanwhile.
//!
//! The statement tenant's WeChat Pay endpoint is this benchmark's bill server, not the sandbox,
//! so the gateway runs with a master key; its config is a copy of the round's with an admin
//! token and the statements worker off (the run is the one started here).

use std::convert::Infallible;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Method;

use crate::gateway::{Gateway, RoundEnv};
use crate::load::{self, f64_of};
use crate::report::ScenarioResult;
use crate::statement;
use crate::{Ctx, wechat};

pub const NAME: &str = "wechat-notify+statement";
const ADMIN_TOKEN: &str = "bench-admin-token";
/// 32 bytes of zeros, base64: the bench's own database only.
const MASTER_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
/// Bound on the statement run after the measurement.
const RUN_BOUND: Duration = Duration::from_secs(900);

/// Serves `POST /pay/downloadbill` (any request, in fact) with the bill, on 127.0.0.1.
async fn bill_server(bill: Bytes) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let bill = bill.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let bill = bill.clone();
                    async move { Ok::<_, Infallible>(hyper::Response::new(Full::new(bill))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((base, task))
}

/// The round's gateway set-up plus the statement tenant, an admin token and the master key.
fn statement_env(env: &RoundEnv, bill_base: &str) -> anyhow::Result<RoundEnv> {
    let tenants = env.dir.join("tenants-statement");
    std::fs::create_dir_all(&tenants)?;
    for entry in std::fs::read_dir(env.dir.join("tenants"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), tenants.join(entry.file_name()))?;
    }
    std::fs::write(
        tenants.join(format!("{}.toml", statement::TENANT)),
        statement::tenant_toml_at(bill_base),
    )?;
    let config = std::fs::read_to_string(&env.config_path)?;
    if !config.contains("dir = \"tenants\"") {
        bail!("the round's config has no tenants dir to replace");
    }
    let config = format!(
        "{}\n[admin]\ntokens = [\"{}\"]\n\n[statements]\nenabled = false\n",
        config.replace("dir = \"tenants\"", "dir = \"tenants-statement\""),
        paybridge_core::tenant::hash_api_key(ADMIN_TOKEN)
    );
    let config_path = env.dir.join("paybridge-statement.toml");
    std::fs::write(&config_path, config)?;
    let mut statement_env = env.clone();
    statement_env.config_path = config_path;
    statement_env
        .gateway_env
        .push(("PAYBRIDGE_MASTER_KEY".to_owned(), MASTER_KEY.to_owned()));
    Ok(statement_env)
}

async fn admin(
    gateway: &Gateway,
    method: Method,
    path: &str,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let (status, body) = load::one_request(
        gateway.addr,
        method,
        &format!("/admin/api{path}"),
        None,
        Some(ADMIN_TOKEN),
        Duration::from_secs(30),
    )
    .await?;
    Ok((status, serde_json::from_slice(&body).unwrap_or_default()))
}

/// The whole scenario; the gateway is started and stopped here.
pub async fn run(ctx: &Ctx<'_>, gateway_bin: &Path) -> ScenarioResult {
    match measure(ctx, gateway_bin).await {
        Ok(result) => result,
        Err(e) => ScenarioResult::failed(ctx.seed, NAME, &e),
    }
}

async fn measure(ctx: &Ctx<'_>, gateway_bin: &Path) -> anyhow::Result<ScenarioResult> {
    let lines = ctx.cli.bill_lines;
    let day =
        paybridge_core::beijing::local(chrono::Utc::now()).date_naive() - chrono::Duration::days(1);
    println!(
        "== seed {} / {NAME}: {lines} orders of {day} and their bill",
        ctx.seed
    );
    statement::seed(&ctx.env.db_url, lines, day).await?;
    let bill_path = ctx.env.dir.join("statement-bill.txt");
    statement::write_bill(&bill_path, lines, day)?;
    let bill = Bytes::from(std::fs::read(&bill_path)?);
    let (bill_base, server) = bill_server(bill).await?;
    let env = statement_env(ctx.env, &bill_base)?;
    let ctx = Ctx { env: &env, ..*ctx };
    let outcome = with_gateway(&ctx, gateway_bin, day).await;
    server.abort();
    outcome
}

async fn with_gateway(
    ctx: &Ctx<'_>,
    gateway_bin: &Path,
    day: chrono::NaiveDate,
) -> anyhow::Result<ScenarioResult> {
    let core = ctx.cli.gateway_core;
    let setup = Gateway::start(gateway_bin, ctx.env, core, "statement-setup").await?;
    let prepared = wechat::prepare(ctx, &setup, wechat::Protocol::V2).await;
    setup.stop().await?;
    let (alone, during) = prepared?.split();
    let gateway = Gateway::start(gateway_bin, ctx.env, core, "statement-measured").await?;
    let outcome = measure_both(ctx, &gateway, day, alone, during).await;
    let stopped = gateway.stop().await;
    let mut result = outcome?;
    if let Ok(stop) = stopped {
        result.gateway = Some(stop);
    }
    Ok(result)
}

async fn measure_both(
    ctx: &Ctx<'_>,
    gateway: &Gateway,
    day: chrono::NaiveDate,
    alone: wechat::Prepared,
    during: wechat::Prepared,
) -> anyhow::Result<ScenarioResult> {
    println!("  notifications alone:");
    let baseline = wechat::measure(ctx, gateway, alone).await?;
    let path = format!("/statements/{}/wechat_miniprogram/{day}", statement::TENANT);
    let started = Instant::now();
    let (status, body) = admin(gateway, Method::POST, &format!("{path}/run")).await?;
    if status != 202 {
        bail!("POST {path}/run: HTTP {status} {body}");
    }
    println!("  notifications while the statement runs:");
    let mut result = wechat::measure(ctx, gateway, during).await?;
    let measured_until = started.elapsed();
    let (finished, statement) = loop {
        let (status, body) = admin(gateway, Method::GET, &path).await?;
        if status != 200 {
            bail!("GET {path}: HTTP {status} {body}");
        }
        let state = body["status"].as_str().unwrap_or_default().to_owned();
        if state != "running" {
            break (started.elapsed(), body);
        }
        if started.elapsed() > RUN_BOUND {
            return Err(anyhow!("the statement still runs after {RUN_BOUND:?}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let matched = statement["totals"]["matched"].as_u64().unwrap_or(0);
    if statement["status"] != "reconciled" || matched != ctx.cli.bill_lines {
        bail!("the statement did not reconcile every line: {statement}");
    }
    result.scenario = NAME.to_owned();
    let share = result.throughput / baseline.throughput.max(1e-9);
    result.ratio = Some((
        share,
        format!("{} alone ({:.0}/s)", wechat::NAME, baseline.throughput),
    ));
    // Compared with the same gateway's rate alone, not with a limit of the machine.
    result.limit = None;
    result.notes.push(format!(
        "statement of {matched} lines reconciled in {:.1} s ({:.0} lines/s) while notifications were taken; the measurement covered its first {:.1} s",
        finished.as_secs_f64(),
        f64_of(matched) / finished.as_secs_f64().max(1e-9),
        measured_until.as_secs_f64().min(finished.as_secs_f64())
    ));
    result.notes.push(format!(
        "notifications alone on the same gateway: {:.0}/s, p99 {:.1} ms",
        baseline.throughput,
        baseline.latency_ms.map_or(0.0, |l| l[2])
    ));
    result.notes.push(format!(
        "{} orders seeded before the round; the statement's {} orders on top",
        ctx.seed, ctx.cli.bill_lines
    ));
    Ok(result)
}
