//! Results: the machine, the limits, each scenario's numbers, and a Markdown block for
//! bench/RESULTS.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::Ctx;
use crate::gateway::{Gateway, StopReport};
use crate::limits::{Limit, Limits};
use crate::load::{LoadResult, f64_of};
use crate::seed::SeedReport;

/// The machine the numbers come from.
#[derive(Debug, Clone)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory: String,
    pub tmp_dir: String,
    pub tmp_fs: String,
    pub git: String,
}

impl Machine {
    pub fn probe(tmp_dir: &Path, repo: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "?".to_owned(), |(_, m)| m.trim().to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "?".to_owned(), |k| k.trim().to_owned());
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
            .map_or_else(
                || "?".to_owned(),
                |kib| format!("{:.1} GiB", f64_of(kib) / 1_048_576.0),
            );
        let git = command_line(repo, "git", &["rev-parse", "--short", "HEAD"])
            .map(|sha| {
                let dirty = command_line(repo, "git", &["status", "--porcelain"])
                    .is_some_and(|s| !s.is_empty());
                if dirty { format!("{sha}+dirty") } else { sha }
            })
            .unwrap_or_else(|| "?".to_owned());
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model,
            kernel,
            memory,
            tmp_dir: tmp_dir.display().to_string(),
            tmp_fs: filesystem_of(tmp_dir),
            git,
        }
    }

    pub fn line(&self) -> String {
        format!(
            "nproc {}, {}, {} RAM, Linux {}, tmp dir {} on {}, paybridge git {}",
            self.nproc,
            self.cpu_model,
            self.memory,
            self.kernel,
            self.tmp_dir,
            self.tmp_fs,
            self.git
        )
    }
}

fn command_line(dir: &Path, program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The filesystem type and device of the mount holding `path` (longest mount point prefix).
fn filesystem_of(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (device, point, fstype) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(point)
                .then_some((point.len(), device, fstype))
        })
        .max_by_key(|(len, _, _)| *len)
        .map_or_else(
            || "?".to_owned(),
            |(_, device, fstype)| format!("{fstype} ({device})"),
        )
}

/// One scenario of one round.
#[derive(Debug, Clone, Default)]
pub struct ScenarioResult {
    pub seed: u64,
    pub scenario: String,
    pub successes: u64,
    pub errors: BTreeMap<String, u64>,
    pub warmup_successes: u64,
    pub warmup_errors: u64,
    pub window_secs: f64,
    pub throughput: f64,
    /// p50, p90, p99, max latency, ms.
    pub latency_ms: Option<[f64; 4]>,
    pub cpu_ms_per_request: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    /// Share of the gateway core's time the hypervisor took during the window, %.
    pub steal_percent: Option<f64>,
    /// Share of the gateway core's time it sat idle waiting for the disk (the commits'
    /// fsync), %.
    pub iowait_percent: Option<f64>,
    /// Throughput over the limit it is compared with, and the limit's name.
    pub ratio: Option<(f64, String)>,
    /// That limit.
    pub limit: Option<Limit>,
    pub notes: Vec<String>,
    pub error_examples: Vec<String>,
    pub gateway: Option<StopReport>,
    pub failed: Option<String>,
}

impl ScenarioResult {
    /// The numbers of a measured run, with the gateway's CPU time and peak memory.
    pub fn measured(
        ctx: &Ctx<'_>,
        name: &str,
        load: &LoadResult,
        gateway: &Gateway,
    ) -> anyhow::Result<ScenarioResult> {
        let window_secs = load.window.as_secs_f64();
        let cpu_secs = load
            .gateway_cpu_ticks
            .map(|t| f64_of(t) / f64_of(ctx.clk_tck));
        let latency_ms = (load.successes > 0).then(|| {
            let h = &load.latency_us;
            [
                h.value_at_quantile(0.50),
                h.value_at_quantile(0.90),
                h.value_at_quantile(0.99),
                h.max(),
            ]
            .map(|us| f64_of(us) / 1000.0)
        });
        Ok(ScenarioResult {
            seed: ctx.seed,
            scenario: name.to_owned(),
            successes: load.successes,
            errors: load.errors.clone(),
            warmup_successes: load.warmup_successes,
            warmup_errors: load.warmup_errors,
            window_secs,
            throughput: load.throughput(),
            latency_ms,
            cpu_ms_per_request: cpu_secs
                .filter(|_| load.successes > 0)
                .map(|s| s * 1000.0 / f64_of(load.successes)),
            cpu_percent: cpu_secs
                .filter(|_| window_secs > 0.0)
                .map(|s| s / window_secs * 100.0),
            peak_rss_mib: gateway.peak_rss_kib().ok().map(|kib| f64_of(kib) / 1024.0),
            steal_percent: load
                .steal_ticks
                .filter(|_| window_secs > 0.0)
                .map(|t| f64_of(t) / f64_of(ctx.clk_tck) / window_secs * 100.0),
            iowait_percent: load
                .iowait_ticks
                .filter(|_| window_secs > 0.0)
                .map(|t| f64_of(t) / f64_of(ctx.clk_tck) / window_secs * 100.0),
            error_examples: load.error_examples.clone(),
            ..ScenarioResult::default()
        })
    }

    /// A scenario that could not be measured.
    pub fn failed(seed: u64, name: &str, error: &anyhow::Error) -> ScenarioResult {
        ScenarioResult {
            seed,
            scenario: name.to_owned(),
            failed: Some(format!("{error:#}")),
            ..ScenarioResult::default()
        }
    }

    pub fn set_ratio(&mut self, limits: &Limits, limit: Limit) {
        let rate = limit.of(limits);
        if rate > 0.0 {
            self.ratio = Some((self.throughput / rate, limit.name().to_owned()));
            self.limit = Some(limit);
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The detailed report, printed as the scenario ends.
    pub fn print(&self) {
        println!("  -- {} (seed {})", self.scenario, self.seed);
        if let Some(failure) = &self.failed {
            println!("     FAILED: {failure}");
        }
        if self.failed.is_none() || self.successes > 0 {
            println!(
                "     throughput {:.0} req/s ({} successes in {:.2} s; warm-up {} ok / {} errors)",
                self.throughput,
                self.successes,
                self.window_secs,
                self.warmup_successes,
                self.warmup_errors
            );
            if let Some([p50, p90, p99, max]) = self.latency_ms {
                println!("     latency ms: p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  max {max:.2}");
            }
            println!(
                "     gateway: CPU {} ms/req, CPU {} %, peak RSS {} MiB; its core: I/O wait {} %, steal {} %",
                opt(self.cpu_ms_per_request, 3),
                opt(self.cpu_percent, 0),
                opt(self.peak_rss_mib, 1),
                opt(self.iowait_percent, 1),
                opt(self.steal_percent, 1)
            );
            if let Some((ratio, name)) = &self.ratio {
                println!("     throughput / {name}: {ratio:.3}");
            }
            if !self.errors.is_empty() {
                println!(
                    "     errors in the window: {} {:?}",
                    self.error_count(),
                    self.errors
                );
            }
        }
        if !self.error_examples.is_empty() {
            println!("     first errors:");
            for e in &self.error_examples {
                println!("       {e}");
            }
        }
        for note in &self.notes {
            println!("     {note}");
        }
        if let Some(stop) = &self.gateway {
            println!(
                "     gateway stopped {} ({}); its log: {} WARN, {} ERROR lines while running, \
                 {} WARN, {} ERROR lines while shutting down",
                if stop.graceful {
                    "on SIGTERM"
                } else {
                    "by SIGKILL after 10 s"
                },
                stop.exit,
                stop.run.warnings,
                stop.run.errors,
                stop.shutdown.warnings,
                stop.shutdown.errors
            );
            for line in stop.run.examples.iter().chain(&stop.shutdown.examples) {
                println!("       {line}");
            }
        }
    }
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "?".to_owned(), |v| format!("{v:.decimals$}"))
}

/// Everything for the final block.
pub struct Summary<'a> {
    pub command: String,
    pub machine: &'a Machine,
    pub database: &'a str,
    pub limits: &'a Limits,
    /// The same limits measured again after the scenarios: how far the machine drifted meanwhile.
    pub limits_after: Option<&'a Limits>,
    pub seeds: &'a [(u64, Option<SeedReport>)],
    pub results: &'a [ScenarioResult],
    pub connections: usize,
    pub warmup: u64,
    pub duration: u64,
    pub gateway_core: usize,
    pub driver_core: usize,
}

/// The limits, as one line.
pub fn limits_line(limits: &Limits) -> String {
    format!(
        "limits on core {}: RSA-{} PKCS#1 v1.5 SHA-256 (aws-lc-rs) {:.0} signs/s; SQLite serial \
         commits, one-row INSERT per transaction, {} : {:.0} commits/s ({:.0} µs each)",
        limits.core,
        limits.rsa_bits,
        limits.rsa_signs_per_second(),
        limits.sqlite_mode,
        limits.sqlite_commits_per_second(),
        if limits.sqlite_commits_per_second() > 0.0 {
            1e6 / limits.sqlite_commits_per_second()
        } else {
            0.0
        }
    )
}

/// The Markdown block for bench/RESULTS.md.
pub fn markdown(s: &Summary<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### {} — `{}`\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        s.command
    );
    let _ = writeln!(out, "- machine: {}", s.machine.line());
    if !s.results.is_empty() {
        let _ = writeln!(
            out,
            "- gateway: release build, `taskset -c {}`, RUST_LOG=warn, database {}; driver pinned to \
         core {}, {} keep-alive connections, warm-up {} s, measured {} s",
            s.gateway_core, s.database, s.driver_core, s.connections, s.warmup, s.duration
        );
    }
    let _ = writeln!(out, "- {}", limits_line(s.limits));
    if let Some(after) = s.limits_after {
        let _ = writeln!(
            out,
            "- measured again after the scenarios: {}",
            limits_line(after)
        );
        for r in s.results.iter().filter(|r| r.failed.is_none()) {
            if let Some(limit) = r.limit {
                let rate = limit.of(after);
                if rate > 0.0 {
                    let _ = writeln!(
                        out,
                        "  - seed {} {}: {:.3} × the later {}",
                        r.seed,
                        r.scenario,
                        r.throughput / rate,
                        limit.name()
                    );
                }
            }
        }
    }
    for (n, report) in s.seeds {
        match report {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "- seed {n}: {} historical orders inserted in {:.1} s (migrations {:.1} s, \
                     total {:.1} s)",
                    r.orders,
                    r.insert.as_secs_f64(),
                    r.migrate.as_secs_f64(),
                    r.total.as_secs_f64()
                );
            }
            None => {
                let _ = writeln!(out, "- seed {n}: seeding failed");
            }
        }
    }
    if !s.results.is_empty() {
        let _ = writeln!(
            out,
            "\n| seed | scenario | req/s | p50 ms | p90 ms | p99 ms | max ms | gw CPU ms/req | gw \
             CPU % | gw peak RSS MiB | ok | errors | ratio |"
        );
        let _ = writeln!(
            out,
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for r in s.results {
            let [p50, p90, p99, max] = r.latency_ms.map_or_else(|| [None; 4], |l| l.map(Some));
            let ratio = match (&r.failed, &r.ratio) {
                (Some(_), _) => "FAILED".to_owned(),
                (None, Some((ratio, name))) => format!("{ratio:.3} × {name}"),
                (None, None) => String::new(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.seed,
                r.scenario,
                r.throughput,
                opt(p50, 2),
                opt(p90, 2),
                opt(p99, 2),
                opt(max, 1),
                opt(r.cpu_ms_per_request, 3),
                opt(r.cpu_percent, 0),
                opt(r.peak_rss_mib, 0),
                r.successes,
                r.error_count(),
                ratio
            );
        }
        let notes: Vec<String> = s
            .results
            .iter()
            .flat_map(|r| {
                let mut lines: Vec<String> = r
                    .notes
                    .iter()
                    .map(|n| format!("- seed {} {}: {n}", r.seed, r.scenario))
                    .collect();
                if let Some(steal) = r.steal_percent.filter(|&p| p >= 1.0) {
                    lines.push(format!(
                        "- seed {} {}: the hypervisor took {steal:.1} % of the gateway's core \
                         (steal) during the window",
                        r.seed, r.scenario
                    ));
                }
                if let Some(wait) = r.iowait_percent.filter(|&p| p >= 1.0) {
                    lines.push(format!(
                        "- seed {} {}: the gateway's core sat idle {wait:.1} % of the window \
                         waiting for the disk (I/O wait: the commits' fsync)",
                        r.seed, r.scenario
                    ));
                }
                if let Some(f) = &r.failed {
                    lines.push(format!("- seed {} {}: FAILED: {f}", r.seed, r.scenario));
                }
                if let Some(stop) = &r.gateway {
                    for (when, log) in [("while running", &stop.run), ("at shutdown", &stop.shutdown)] {
                        if log.warnings + log.errors > 0 {
                            lines.push(format!(
                                "- seed {} {}: the gateway logged {} WARN and {} ERROR lines {when}",
                                r.seed, r.scenario, log.warnings, log.errors
                            ));
                        }
                    }
                    if !stop.graceful {
                        lines.push(format!(
                            "- seed {} {}: the gateway ignored SIGTERM for 10 s and was killed",
                            r.seed, r.scenario
                        ));
                    }
                }
                lines
            })
            .collect();
        if !notes.is_empty() {
            let _ = writeln!(out);
            for n in notes {
                let _ = writeln!(out, "{n}");
            }
        }
    }
    out
}
