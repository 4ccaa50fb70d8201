//! The gateway under test: its config and tenant for one round, starting it pinned with
//! `taskset`, stopping it, and its CPU time and memory from /proc.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use hyper::Method;

use crate::{load, procfs};

/// The demo tenant's plaintext API key (its file holds only the digest).
pub const API_KEY: &str = "demo-secret-key";
/// The API key of the WeChat Pay v3 demo tenant (`examples/tenants/demo_v3.toml`).
pub const V3_API_KEY: &str = "demo-v3-secret-key";

/// The WeChat Pay v3 demo tenant: what its notifications are made with.
#[derive(Debug, Clone)]
pub struct V3Tenant {
    pub id: String,
    pub appid: String,
    pub mch_id: String,
    pub apiv3_key: String,
    pub public_key_id: String,
}
const HEALTH_WAIT: Duration = Duration::from_secs(30);
const STOP_WAIT: Duration = Duration::from_secs(10);

/// What the benchmark needs to know of the demo tenant, read from its file.
#[derive(Debug, Clone)]
pub struct DemoTenant {
    pub id: String,
    pub appid: String,
    pub mch_id: String,
    pub api_key: String,
    pub sign_type: String,
    /// The Alipay app private key (PEM), which the gateway signs orderStrings with.
    pub alipay_private_key: String,
}

/// One round's gateway set-up: a folder with `paybridge.toml` and `tenants/demo.toml`, a port, a
/// database. The port stays for the round: the tenant (with its sandbox URLs) is imported into
/// the database at the first start.
#[derive(Debug, Clone)]
pub struct RoundEnv {
    /// More environment for the gateway process (e.g. its master key).
    pub gateway_env: Vec<(String, String)>,
    pub dir: PathBuf,
    pub addr: SocketAddr,
    pub config_path: PathBuf,
    pub db_url: String,
    pub tenant: DemoTenant,
    /// The WeChat Pay v3 tenant, installed only for the v3 scenario: a gateway built before
    /// v3 refuses its file at start-up, and the others must still run against such a build.
    pub v3_tenant: Option<V3Tenant>,
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

impl RoundEnv {
    /// Write the config and the demo tenant (from `examples/tenants/demo.toml`, its sandbox URLs
    /// moved to a free port and its certificate paths made absolute) into `dir`.
    pub fn prepare(
        dir: &Path,
        examples: &Path,
        db_url: &str,
        limits_section: bool,
        with_v3: bool,
    ) -> anyhow::Result<Self> {
        let tenants_dir = dir.join("tenants");
        fs::create_dir_all(&tenants_dir)
            .with_context(|| format!("creating {}", tenants_dir.display()))?;
        let port = free_port()?;
        let source_dir = fs::canonicalize(examples.join("tenants")).with_context(|| {
            format!(
                "{}: the examples folder (pass --examples)",
                examples.display()
            )
        })?;
        let install = |name: &str| -> anyhow::Result<String> {
            let source = source_dir.join(name);
            let original = fs::read_to_string(&source)
                .with_context(|| format!("reading {}", source.display()))?;
            let old_base = "http://127.0.0.1:8080/sandbox/";
            if !original.contains(old_base) {
                bail!(
                    "{}: expected sandbox URLs under {old_base}; update the benchmark",
                    source.display()
                );
            }
            let text = original
                .replace(old_base, &format!("http://127.0.0.1:{port}/sandbox/"))
                .replace(
                    "\"certs/",
                    &format!("\"{}/certs/", source_dir.to_string_lossy()),
                );
            fs::write(tenants_dir.join(name), &text)?;
            Ok(text)
        };
        let tenant = parse_tenant(&install("demo.toml")?)?;
        let v3_tenant = if with_v3 {
            Some(parse_v3_tenant(&install("demo_v3.toml")?)?)
        } else {
            None
        };

        let config = format!(
            "# Written by paybridge-bench.\n\
             [server]\n\
             listen = \"127.0.0.1:{port}\"\n\
             public_base_url = \"http://127.0.0.1:{port}\"\n\
             \n[database]\nurl = {db}\n\
             \n[tenants]\ndir = \"tenants\"\n\
             \n[sandbox]\nenabled = true\n\
             \n[reconciler]\nenabled = true\n\
             \n[http]\noutbound_timeout_seconds = 10\nmax_body_bytes = 65536\nmax_notification_bytes = 65536\n{limits}",
            db = toml_string(db_url),
            // Capacity is measured, not the limiter: the driver is one IP sending thousands a
            // second.
            limits = if limits_section {
                "\n[limits]\nnotify_per_ip_per_second = 0\nnotify_per_tenant_per_second = 0\napi_per_tenant_per_second = 0\n"
            } else {
                ""
            },
        );
        let config_path = dir.join("paybridge.toml");
        fs::write(&config_path, config)?;
        Ok(RoundEnv {
            gateway_env: Vec::new(),
            dir: dir.to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            config_path,
            db_url: db_url.to_owned(),
            tenant,
            v3_tenant,
        })
    }
}

fn parse_v3_tenant(text: &str) -> anyhow::Result<V3Tenant> {
    let doc: toml::Table = toml::from_str(text).context("parsing the v3 demo tenant")?;
    let wechat = doc
        .get("providers")
        .and_then(|p| p.get("wechat_miniprogram"))
        .and_then(toml::Value::as_table)
        .ok_or_else(|| anyhow!("v3 demo tenant: no [providers.wechat_miniprogram]"))?;
    let get = |table: &toml::Table, key: &str| -> anyhow::Result<String> {
        table
            .get(key)
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("v3 demo tenant: {key} missing"))
    };
    let digest = paybridge_core::tenant::hash_api_key(V3_API_KEY);
    let keys = doc.get("api_keys").and_then(toml::Value::as_array);
    if !keys.is_some_and(|k| k.iter().any(|v| v.as_str() == Some(digest.as_str()))) {
        bail!("v3 demo tenant: api_keys does not accept {V3_API_KEY:?} any more");
    }
    Ok(V3Tenant {
        id: get(&doc, "id")?,
        appid: get(wechat, "appid")?,
        mch_id: get(wechat, "mch_id")?,
        apiv3_key: get(wechat, "apiv3_key")?,
        public_key_id: get(wechat, "wechatpay_public_key_id")?,
    })
}

fn parse_tenant(text: &str) -> anyhow::Result<DemoTenant> {
    let doc: toml::Table = toml::from_str(text).context("parsing the demo tenant")?;
    let get = |table: &toml::Table, key: &str| -> anyhow::Result<String> {
        table
            .get(key)
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("demo tenant: {key} missing"))
    };
    let providers = doc
        .get("providers")
        .and_then(toml::Value::as_table)
        .ok_or_else(|| anyhow!("demo tenant: no [providers]"))?;
    let section = |kind: &str| {
        providers
            .get(kind)
            .and_then(toml::Value::as_table)
            .ok_or_else(|| anyhow!("demo tenant: no [providers.{kind}]"))
    };
    let wechat = section("wechat_miniprogram")?;
    let alipay = section("alipay_app")?;
    let digest = paybridge_core::tenant::hash_api_key(API_KEY);
    let keys = doc.get("api_keys").and_then(toml::Value::as_array);
    if !keys.is_some_and(|k| k.iter().any(|v| v.as_str() == Some(digest.as_str()))) {
        bail!("demo tenant: api_keys does not accept {API_KEY:?} any more");
    }
    Ok(DemoTenant {
        id: get(&doc, "id")?,
        appid: get(wechat, "appid")?,
        mch_id: get(wechat, "mch_id")?,
        api_key: get(wechat, "api_key")?,
        sign_type: get(wechat, "sign_type").unwrap_or_else(|_| "HMAC-SHA256".to_owned()),
        alipay_private_key: get(alipay, "private_key")?,
    })
}

/// A running gateway. Dropping it kills the process (SIGKILL); `stop` ends it gracefully.
pub struct Gateway {
    child: Option<Child>,
    pub pid: u32,
    pub addr: SocketAddr,
    pub log: PathBuf,
    pub label: String,
}

/// How a gateway ended, and what it logged while running and while shutting down.
#[derive(Debug, Clone)]
pub struct StopReport {
    pub graceful: bool,
    pub exit: String,
    pub run: LogSummary,
    pub shutdown: LogSummary,
}

/// WARN and ERROR lines of a stretch of the gateway's log.
#[derive(Debug, Clone, Default)]
pub struct LogSummary {
    pub warnings: usize,
    pub errors: usize,
    /// The first few of them.
    pub examples: Vec<String>,
}

impl Gateway {
    /// Start `bin` under `taskset -c core`, with `RUST_LOG=warn`, and wait (bounded) for
    /// `GET /healthz`.
    pub async fn start(
        bin: &Path,
        env: &RoundEnv,
        core: usize,
        label: &str,
    ) -> anyhow::Result<Gateway> {
        let log = env.dir.join(format!("gateway-{label}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new("taskset")
            .arg("-c")
            .arg(core.to_string())
            .arg(bin)
            .arg("--config")
            .arg(&env.config_path)
            .current_dir(&env.dir)
            .envs(
                env.gateway_env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            // These would override the config file.
            .env_remove("DATABASE_URL")
            .env_remove("PAYBRIDGE_LISTEN")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting taskset -c {core} {}", bin.display()))?;
        let mut gateway = Gateway {
            pid: child.id(),
            child: Some(child),
            addr: env.addr,
            log,
            label: label.to_owned(),
        };
        gateway.wait_healthy().await?;
        // taskset execs the gateway, so the pid is the gateway's own; `bench/callgrind.sh`
        // passes a script that execs it under valgrind's callgrind (`callgrind-amd64-…`).
        let comm = fs::read_to_string(format!("/proc/{}/comm", gateway.pid)).unwrap_or_default();
        if comm.trim() != "paybridge" && !comm.starts_with("callgrind-") {
            bail!(
                "pid {} is {:?}, not the gateway: cannot measure it",
                gateway.pid,
                comm.trim()
            );
        }
        Ok(gateway)
    }

    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "the gateway exited during start-up ({status}); its log:\n{}",
                    tail(&self.log, 20)
                );
            }
            let probe = load::one_request(
                self.addr,
                Method::GET,
                "/healthz",
                None,
                None,
                Duration::from_secs(2),
            )
            .await;
            if let Ok((200, _)) = probe {
                return Ok(());
            }
            if started.elapsed() > HEALTH_WAIT {
                bail!(
                    "GET /healthz not 200 within {HEALTH_WAIT:?} (last: {}); the gateway's log:\n{}",
                    match probe {
                        Ok((status, _)) => format!("HTTP {status}"),
                        Err(e) => e.to_string(),
                    },
                    tail(&self.log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The gateway's CPU affinity, as the kernel reports it.
    pub fn cpus_allowed(&self) -> String {
        procfs::status_field(self.pid, "Cpus_allowed_list:").unwrap_or_else(|| "?".to_owned())
    }

    /// The SQLite writer's (commits, writes) so far, from `/metrics`; `None` for a gateway that
    /// does not report them (an older build, or PostgreSQL where each write commits alone).
    pub fn write_groups(&self) -> Option<(u64, u64)> {
        use std::io::{Read, Write};
        let mut s =
            std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
        };
        Some((
            value("paybridge_db_write_groups_total ")?,
            value("paybridge_db_write_jobs_total ")?,
        ))
    }

    /// Peak resident set size so far (VmHWM), KiB.
    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        procfs::status_field(self.pid, "VmHWM:")
            .and_then(|v| v.split_whitespace().next().map(str::to_owned))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("no VmHWM for pid {}", self.pid))
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub async fn stop(mut self) -> anyhow::Result<StopReport> {
        let Some(mut child) = self.child.take() else {
            bail!("the gateway was already stopped");
        };
        let logged_before_stop = fs::metadata(&self.log).map_or(0, |m| m.len());
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_WAIT;
        let (graceful, status) = loop {
            if let Some(status) = child.try_wait()? {
                break (true, status);
            }
            if Instant::now() >= deadline {
                child.kill()?;
                break (false, child.wait()?);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let log = fs::read(&self.log).unwrap_or_default();
        let split = usize::try_from(logged_before_stop)
            .unwrap_or(usize::MAX)
            .min(log.len());
        let (run, shutdown) = log.split_at(split);
        Ok(StopReport {
            graceful,
            exit: status.to_string(),
            run: log_summary(&String::from_utf8_lossy(run)),
            shutdown: log_summary(&String::from_utf8_lossy(shutdown)),
        })
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn log_summary(text: &str) -> LogSummary {
    let mut summary = LogSummary::default();
    for line in text.lines() {
        // `<timestamp> <LEVEL> <target>: …`; anything else at ERROR level (e.g. `error: …` from
        // main) counts too.
        let level = line.split_whitespace().nth(1).unwrap_or_default();
        let hit = match level {
            "WARN" => {
                summary.warnings += 1;
                true
            }
            "ERROR" => {
                summary.errors += 1;
                true
            }
            _ if line.starts_with("error") => {
                summary.errors += 1;
                true
            }
            _ => false,
        };
        if hit && summary.examples.len() < 5 {
            summary.examples.push(line.chars().take(400).collect());
        }
    }
    summary
}
