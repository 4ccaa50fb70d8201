//! A gateway in a process of its own (`paybridge-gateway`), for tests that kill it with SIGKILL
//! and start it again on the same database.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database};

use crate::{Backend, TestTenant, fresh_postgres};

/// A gateway process and what it needs to start again.
pub struct ProcessGateway {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// A client with a timeout.
    pub http: reqwest::Client,
    child: Option<Child>,
    /// The database it runs on.
    pub database_url: String,
    config: PathBuf,
    log: PathBuf,
    /// `RUST_LOG` of the process.
    rust_log: String,
    pg_db: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl ProcessGateway {
    /// Write the config and the tenants, and start the process. `binary` is
    /// `env!("CARGO_BIN_EXE_paybridge-gateway")` of the calling test.
    pub async fn start(binary: &str, backend: &Backend, tenants: &[TestTenant]) -> ProcessGateway {
        Self::start_with(
            binary,
            backend,
            tenants,
            "[reconciler]\nenabled = false\n[limits]\nnotify_per_ip_per_second = 0\nnotify_per_tenant_per_second = 0\napi_per_tenant_per_second = 0\n",
        )
        .await
    }

    /// [`start`](Self::start) with these TOML sections (`[reconciler]` and `[limits]` at least)
    /// after the fixed ones.
    pub async fn start_with(
        binary: &str,
        backend: &Backend,
        tenants: &[TestTenant],
        sections: &str,
    ) -> ProcessGateway {
        Self::start_logged(
            binary,
            backend,
            tenants,
            sections,
            "warn,paybridge_server::reconciler=info,paybridge_server::app=info",
        )
        .await
    }

    /// [`start_with`](Self::start_with) with this `RUST_LOG`.
    pub async fn start_logged(
        binary: &str,
        backend: &Backend,
        tenants: &[TestTenant],
        sections: &str,
        rust_log: &str,
    ) -> ProcessGateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let tenants_dir = dir.path().join("tenants");
        std::fs::create_dir_all(&tenants_dir).expect("mkdir");
        for t in tenants {
            std::fs::write(
                tenants_dir.join(format!("{}.toml", t.id)),
                t.toml_for(&base),
            )
            .expect("write tenant");
        }
        let (db_url, pg_db) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}?mode=rwc", dir.path().join("gw.db").display()),
                None,
            ),
            Backend::Postgres(admin) => {
                let (url, name) = fresh_postgres(admin).await;
                (url, Some((admin.clone(), name)))
            }
        };
        let config = dir.path().join("paybridge.toml");
        std::fs::write(
            &config,
            format!(
                r#"[server]
listen = "127.0.0.1:{port}"
public_base_url = "{base}"
shutdown_timeout_seconds = 4
[database]
url = "{db_url}"
[tenants]
dir = "tenants"
[sandbox]
enabled = true
[http]
outbound_timeout_seconds = 5
{sections}"#
            ),
        )
        .expect("write config");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let mut gw = ProcessGateway {
            base,
            http,
            child: None,
            database_url: db_url.clone(),
            log: dir.path().join("gateway.log"),
            rust_log: rust_log.to_owned(),
            config,
            pg_db,
            _dir: dir,
        };
        gw.launch(binary).await;
        gw
    }

    /// Start the process (again) and wait until it serves.
    pub async fn launch(&mut self, binary: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(binary)
            .arg(&self.config)
            .env_remove("DATABASE_URL")
            .env("PAYBRIDGE_MASTER_KEY", crate::TEST_MASTER_KEY)
            .env("RUST_LOG", &self.rust_log)
            .stdin(Stdio::null())
            // tracing writes to stdout; errors of start-up to stderr.
            .stdout(Stdio::from(log.try_clone().expect("log file")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn the gateway");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.http.get(format!("{}/healthz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("the gateway exited with {status}: {}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not start in 60 s: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL the process and reap it: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the gateway");
            child.wait().expect("reap the gateway");
        }
    }

    /// Send SIGTERM and wait (at most `limit`) for the process to exit: its exit status and how
    /// long it took, or `None` if it was still running at the limit (it is then killed).
    pub async fn terminate(
        &mut self,
        limit: Duration,
    ) -> Option<(std::process::ExitStatus, Duration)> {
        let mut child = self.child.take()?;
        let sent = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        while sent.elapsed() < limit {
            if let Ok(Some(status)) = child.try_wait() {
                return Some((status, sent.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child.kill().ok();
        child.wait().ok();
        None
    }

    /// `POST` JSON, with a tenant's API key or none.
    pub async fn post_json(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(key) = bearer {
            req = req.bearer_auth(key);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Create WeChat order `no` through the API and have the sandbox sign its payment
    /// notification without sending it; returns the notification.
    pub async fn order_with_notification(
        &self,
        tenant: &TestTenant,
        openid: &str,
        no: &str,
        amount: usize,
    ) -> String {
        let key = crate::api_key(&tenant.id);
        let (status, body) = self
            .post_json(
                "/v1/orders",
                Some(&key),
                &serde_json::json!({
                    "provider": "wechat_miniprogram", "out_trade_no": no, "amount": amount,
                    "description": "process test", "payer": {"openid": openid},
                }),
            )
            .await;
        assert_eq!(status, 201, "create: {body}");
        let (status, paid) = self
            .post_json(
                "/sandbox/wechat_miniprogram/control/pay",
                None,
                &serde_json::json!({"out_trade_no": no, "mch_id": tenant.mch_id, "notify": "return"}),
            )
            .await;
        assert_eq!(status, 200, "sandbox pay: {paid}");
        paid["notification"]
            .as_str()
            .expect("notification")
            .to_owned()
    }

    /// What the process logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kill the process and drop its PostgreSQL database.
    pub async fn finish(mut self) {
        self.kill();
        if let Some((admin_url, name)) = &self.pg_db
            && let Ok(admin) = Database::connect(admin_url.as_str()).await
        {
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await
                .ok();
            admin.close().await.ok();
        }
    }
}

impl Drop for ProcessGateway {
    fn drop(&mut self) {
        self.kill();
    }
}
