//! Test harness: starts the whole gateway (HTTP server, storage, sandbox simulators) on a random
//! local port, on SQLite always and on PostgreSQL when `DATABASE_URL` points at one. Each gateway
//! gets its own SQLite file or its own PostgreSQL database, so tests never share state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod alipay;
pub mod fake_provider;
pub mod outage;
pub mod process;
pub mod tls;
pub mod wechat;
pub mod wechat_v3;

use std::net::TcpListener;
use std::sync::Arc;

use paybridge_server::app;
use paybridge_server::config::Config;
use paybridge_server::state::AppState;
use sea_orm::{ConnectionTrait, Database};

/// A storage backend under test.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A fresh SQLite file.
    Sqlite,
    /// A fresh database on the PostgreSQL server of `DATABASE_URL`.
    Postgres(String),
}

impl Backend {
    /// A short name for assertion messages.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// SQLite always; PostgreSQL too when `DATABASE_URL` is a `postgres://` URL.
pub fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite];
    if let Ok(url) = std::env::var("DATABASE_URL")
        && (url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        all.push(Backend::Postgres(url));
    }
    all
}

/// The master key test gateways encrypt tenant secrets with (32 bytes, base64; test-only).
pub const TEST_MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// The API key of test tenant `id`.
pub fn api_key(tenant: &str) -> String {
    format!("key-{tenant}-0123456789")
}

/// A WeChat API key (32 chars) for test tenant `id`.
pub fn wechat_api_key(tenant: &str) -> String {
    format!("{:0<32}", format!("k{tenant}"))
        .chars()
        .take(32)
        .collect()
}

/// Test tenants: id, appid, mch_id, sign_type.
#[derive(Debug, Clone)]
pub struct TestTenant {
    /// Tenant id.
    pub id: String,
    /// WeChat appid.
    pub appid: String,
    /// WeChat mch_id.
    pub mch_id: String,
    /// `MD5` or `HMAC-SHA256`.
    pub sign_type: String,
    /// More TOML appended to the tenant file (other providers).
    pub extra: String,
    /// More keys of its `[providers.wechat_miniprogram]` table (API v3, for example).
    pub wechat_extra: String,
    /// Alipay in certificate mode (the sandbox's certificates) instead of `alipay_public_key`.
    pub alipay_cert_mode: bool,
    /// Alipay through a third-party app: the ISV's app id (instead of the tenant's own), with
    /// `app_auth_token` and `auth_app_id` in `extra`.
    pub alipay_isv_app_id: Option<String>,
    /// Where its providers' endpoints are, when not under the gateway's sandbox (a server of
    /// the test's own). Needs the master key: only sandbox tenants may go without.
    pub provider_base: Option<String>,
}

impl TestTenant {
    /// A WeChat tenant with derived credentials.
    pub fn wechat(id: &str, n: u32, sign_type: &str) -> Self {
        TestTenant {
            id: id.to_owned(),
            appid: format!("wx00000000000000{n:02}"),
            mch_id: format!("19000001{n:02}"),
            sign_type: sign_type.to_owned(),
            extra: String::new(),
            wechat_extra: String::new(),
            alipay_cert_mode: false,
            alipay_isv_app_id: None,
            provider_base: None,
        }
    }

    /// The Alipay app_id of this tenant.
    pub fn alipay_app_id(&self) -> String {
        if let Some(isv) = &self.alipay_isv_app_id {
            return isv.clone();
        }
        format!("20210011006000{}", &self.mch_id[self.mch_id.len() - 2..])
    }

    /// The Alipay seller_id of this tenant.
    pub fn seller_id(&self) -> String {
        format!("20880000000000{}", &self.mch_id[self.mch_id.len() - 2..])
    }

    /// The tenant file, with provider endpoints under `base` (a gateway's sandbox, or a real host).
    pub fn toml_for(&self, base: &str) -> String {
        self.toml(base)
    }

    fn toml(&self, base: &str) -> String {
        let base = self.provider_base.as_deref().unwrap_or(base);
        format!(
            r#"id = "{id}"
name = "Test {id}"
api_keys = ["{key}"]

[providers.wechat_miniprogram]
enabled = true
appid = "{appid}"
mch_id = "{mch}"
api_key = "{wkey}"
app_secret = "secret-{id}"
sign_type = "{st}"
api_base = "{base}/sandbox/wechat_miniprogram"
login_base = "{base}/sandbox/wechat_miniprogram"
client_cert = "{certs}/apiclient_cert.pem"
client_key = "{certs}/apiclient_key.pem"
{wechat_extra}
[providers.alipay_app]
enabled = true
app_id = "{alipay_app_id}"
private_key = '''
{app_key}'''
{alipay_keys}
seller_id = "{seller_id}"
gateway_url = "{base}/sandbox/alipay_app/gateway.do"
{extra}
"#,
            id = self.id,
            key = paybridge_core::tenant::hash_api_key(&api_key(&self.id)),
            appid = self.appid,
            mch = self.mch_id,
            wkey = wechat_api_key(&self.id),
            st = self.sign_type,
            extra = self.extra,
            wechat_extra = self.wechat_extra,
            certs = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/tenants/certs"),
            alipay_app_id = self.alipay_app_id(),
            seller_id = self.seller_id(),
            app_key = include_str!("../../fixtures/vectors/app_private_pkcs8.pem"),
            alipay_keys = if self.alipay_cert_mode {
                let keys = concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../providers/alipay-app/sandbox-keys"
                );
                format!(
                    "app_cert = \"{keys}/app_cert.crt\"\nalipay_public_cert = \"{keys}/alipay_cert.crt\"\nalipay_root_cert = \"{keys}/alipay_root_cert.crt\""
                )
            } else {
                format!(
                    "alipay_public_key = '''\n{}'''",
                    include_str!(
                        "../../providers/alipay-app/sandbox-keys/alipay_sandbox_public.pem"
                    )
                )
            },
        )
    }
}

/// A running gateway.
pub struct Gateway {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// A client with a timeout.
    pub http: reqwest::Client,
    /// The server's state (for white-box assertions on storage).
    pub state: Arc<AppState>,
    /// The backend.
    pub backend: Backend,
    handle: actix_web::dev::ServerHandle,
    pg_db: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

/// A new, empty database on the PostgreSQL server of `admin_url`: its URL and its name.
pub async fn fresh_postgres(admin_url: &str) -> (String, String) {
    let admin = Database::connect(admin_url)
        .await
        .expect("connect to DATABASE_URL");
    let name = format!("pbt_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
    admin.close().await.ok();
    let mut url = url_with_db(admin_url, &name);
    if !url.contains('?') {
        url.push_str("?sslmode=disable");
    }
    (url, name)
}

fn url_with_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let prefix = base.rsplit_once('/').map(|(p, _)| p).unwrap_or(base);
    match query {
        Some(q) => format!("{prefix}/{db}?{q}"),
        None => format!("{prefix}/{db}"),
    }
}

impl Gateway {
    /// Start a gateway with the sandbox on and these tenants.
    pub async fn start(backend: &Backend, tenants: &[TestTenant]) -> Gateway {
        Self::start_with(backend, tenants, |_| {}).await
    }

    /// Start with a config tweak.
    pub async fn start_with(
        backend: &Backend,
        tenants: &[TestTenant],
        tweak: impl FnOnce(&mut Config),
    ) -> Gateway {
        Self::start_with_files(backend, tenants, |_| Vec::new(), tweak).await
    }

    /// Start with these tenants and more documents: `files(base)` gives `(path, text)` pairs,
    /// the path relative to the gateway's folder (`tenants/x.toml`, `platforms/p.toml`), with
    /// provider endpoints under `base` (the gateway's own URL).
    pub async fn start_with_files(
        backend: &Backend,
        tenants: &[TestTenant],
        files: impl FnOnce(&str) -> Vec<(String, String)>,
        tweak: impl FnOnce(&mut Config),
    ) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let tenants_dir = dir.path().join("tenants");
        std::fs::create_dir_all(&tenants_dir).expect("mkdir");
        for t in tenants {
            std::fs::write(tenants_dir.join(format!("{}.toml", t.id)), t.toml(&base))
                .expect("write tenant");
        }
        for (path, text) in files(&base) {
            let path = dir.path().join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(path, text).expect("write document");
        }
        let (db_url, pg_db) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display()),
                None,
            ),
            Backend::Postgres(admin) => {
                let (url, name) = fresh_postgres(admin).await;
                (url, Some((admin.clone(), name)))
            }
        };
        let mut config = Config::default();
        config.server.public_base_url = base.clone();
        config.database.url = db_url;
        // Tests run many gateways at once on one PostgreSQL server: each a small pool, so that
        // together they stay under its max_connections (100 by default).
        config.database.max_connections = 6;
        config.tenants.dir = tenants_dir;
        config.platforms.dir = dir.path().join("platforms");
        config.sandbox.enabled = true;
        config.reconciler.enabled = false;
        config.http.outbound_timeout_seconds = 5;
        config.secrets.master_key_override = Some(TEST_MASTER_KEY.to_owned());
        // The tests' webhook receivers listen on 127.0.0.1.
        config.webhooks.allow_private_targets = true;
        tweak(&mut config);
        let state = Arc::new(app::build_state(config).await.expect("gateway state"));
        let server = app::run(listener, state.clone()).expect("run");
        let handle = server.handle();
        tokio::spawn(server);
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("client");
        Gateway {
            base,
            http,
            state,
            backend: backend.clone(),
            handle,
            pg_db,
            _dir: dir,
        }
    }

    /// Another server instance on the same database (its own port and state), as a second
    /// process of a deployment would be. Finish it before the first.
    pub async fn second_instance(
        &self,
        _tenants: &[TestTenant],
        tweak: impl FnOnce(&mut Config),
    ) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let mut config = self.state.config.clone();
        config.server.public_base_url = base.clone();
        tweak(&mut config);
        let state = Arc::new(
            app::build_state(config)
                .await
                .expect("second gateway state"),
        );
        let server = app::run(listener, state.clone()).expect("run");
        let handle = server.handle();
        tokio::spawn(server);
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("client");
        Gateway {
            base,
            http,
            state,
            backend: self.backend.clone(),
            handle,
            pg_db: None,
            _dir: dir,
        }
    }

    /// Stop the server and drop its PostgreSQL database.
    pub async fn finish(self) {
        self.handle.stop(false).await;
        if let Some((admin_url, name)) = &self.pg_db {
            self.state.store.db().clone().close().await.ok();
            if let Ok(admin) = Database::connect(admin_url.as_str()).await {
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
                    .ok();
                admin.close().await.ok();
            }
        }
    }

    /// `POST` JSON as tenant `tenant`.
    pub async fn post(
        &self,
        tenant: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(api_key(tenant))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// `GET` as tenant `tenant`.
    pub async fn get(&self, tenant: &str, path: &str) -> (u16, serde_json::Value) {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(api_key(tenant))
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// `POST` a raw body without auth (notifications), returning status and body text.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, String) {
        self.post_raw_with(path, content_type, &[], body).await
    }

    /// [`Gateway::post_raw`] with extra headers.
    pub async fn post_raw_with(
        &self,
        path: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, String) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let res = req.body(body).send().await.expect("request");
        let status = res.status().as_u16();
        (status, res.text().await.unwrap_or_default())
    }

    /// `POST` JSON to a WeChat sandbox control endpoint.
    pub async fn sandbox(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.sandbox_of("wechat_miniprogram", path, body).await
    }

    /// `POST` JSON to a sandbox endpoint of a provider kind.
    pub async fn sandbox_of(
        &self,
        kind: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let res = self
            .http
            .post(format!("{}/sandbox/{kind}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// A statement run's raw bill as kept: its row (hash, size) and the file's bytes as downloaded
/// (the row's `gzip` holds its parts, one gzip member each).
pub async fn kept_bill(
    gw: &Gateway,
    statement_id: &str,
    version: i64,
) -> (
    paybridge_server::db::entities::statement_file::Model,
    Vec<u8>,
) {
    let kept =
        paybridge_server::store::statements::file(gw.state.store.db(), statement_id, version)
            .await
            .unwrap()
            .expect("the bill is kept");
    let mut raw = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(kept.gzip.as_slice()),
        &mut raw,
    )
    .unwrap();
    (kept, raw)
}

/// Give test tenant `tenant_id` a webhook endpoint. Call it from the `tweak` of
/// [`Gateway::start_with`]: the tenant files are written by then and read after it.
pub fn set_webhook(config: &Config, tenant_id: &str, url: &str, secret: &str) {
    let path = config.tenants.dir.join(format!("{tenant_id}.toml"));
    let text = std::fs::read_to_string(&path).expect("tenant file");
    // Top-level keys must come before the first table.
    let text = format!("webhook_url = \"{url}\"\nwebhook_secret = \"{secret}\"\n{text}");
    std::fs::write(&path, text).expect("rewrite tenant file");
}

/// One request a [`WebhookReceiver`] got.
#[derive(Debug, Clone)]
pub struct ReceivedWebhook {
    /// Headers, names lower-cased.
    pub headers: std::collections::BTreeMap<String, String>,
    /// The raw body.
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub answered: u16,
}

impl ReceivedWebhook {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct ReceiverScript {
    fail_next: usize,
    delay_next: usize,
    delay: std::time::Duration,
}

/// A merchant's webhook endpoint on `127.0.0.1`: records every request, answers 500 to the next
/// `fail_next` requests and 200 after that, and can be slow.
pub struct WebhookReceiver {
    /// The URL to configure as `webhook_url`.
    pub url: String,
    received: Arc<std::sync::Mutex<Vec<ReceivedWebhook>>>,
    script: Arc<std::sync::Mutex<ReceiverScript>>,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    /// Listen on a random port.
    pub async fn start() -> WebhookReceiver {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/paybridge", listener.local_addr().unwrap());
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let script = Arc::new(std::sync::Mutex::new(ReceiverScript::default()));
        let (log, plan) = (Arc::clone(&received), Arc::clone(&script));
        let accept_loop = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, plan) = (Arc::clone(&log), Arc::clone(&plan));
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let (log, plan) = (Arc::clone(&log), Arc::clone(&plan));
                            async move {
                                let headers = request
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| {
                                        (
                                            k.as_str().to_owned(),
                                            v.to_str().unwrap_or_default().to_owned(),
                                        )
                                    })
                                    .collect();
                                let body = request
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|c| c.to_bytes().to_vec())
                                    .unwrap_or_default();
                                let (fail, delay) = {
                                    let mut s = plan.lock().unwrap();
                                    let fail = s.fail_next > 0;
                                    s.fail_next = s.fail_next.saturating_sub(1);
                                    let delay = (s.delay_next > 0).then_some(s.delay);
                                    s.delay_next = s.delay_next.saturating_sub(1);
                                    (fail, delay)
                                };
                                if let Some(d) = delay {
                                    tokio::time::sleep(d).await;
                                }
                                let answered = if fail { 500 } else { 200 };
                                log.lock().unwrap().push(ReceivedWebhook {
                                    headers,
                                    body,
                                    answered,
                                });
                                let text = if fail { "not yet\n" } else { "ok" };
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .status(answered)
                                        .body(http_body_util::Full::new(bytes::Bytes::from(text)))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        WebhookReceiver {
            url,
            received,
            script,
            accept_loop,
        }
    }

    /// Answer the next `n` requests with a 500.
    pub fn fail_next(&self, n: usize) {
        self.script.lock().unwrap().fail_next = n;
    }

    /// Answer the next `n` requests only after `delay`.
    pub fn delay_next(&self, n: usize, delay: std::time::Duration) {
        let mut s = self.script.lock().unwrap();
        s.delay_next = n;
        s.delay = delay;
    }

    /// Every request so far, in arrival order (of completion).
    pub fn received(&self) -> Vec<ReceivedWebhook> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}
