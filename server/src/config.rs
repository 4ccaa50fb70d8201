//! `paybridge.toml`: the server's own config. Env `DATABASE_URL` and `PAYBRIDGE_LISTEN` override.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "PAYBRIDGE_";

/// The whole server config.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`
    pub server: ServerSection,
    /// `[database]`
    pub database: DatabaseSection,
    /// `[tenants]`
    pub tenants: TenantsSection,
    /// `[platforms]`
    pub platforms: PlatformsSection,
    /// `[sandbox]`
    pub sandbox: SandboxSection,
    /// `[reconciler]`
    pub reconciler: ReconcilerSection,
    /// `[admin]` (used by the admin crate).
    pub admin: AdminSection,
    /// `[secrets]` (used by the admin crate).
    pub secrets: SecretsSection,
    /// `[http]`: limits of the HTTP layer and of outbound calls.
    pub http: HttpSection,
    /// `[webhooks]`: delivery of merchant webhooks.
    pub webhooks: WebhooksSection,
    /// `[limits]`: request rate limits.
    pub limits: LimitsSection,
    /// `[retention]`: how long attempt records are kept.
    pub retention: RetentionSection,
    /// `[log]`: the format of log lines.
    pub log: LogSection,
    /// `[idempotency]`: how long an `Idempotency-Key` is kept.
    pub idempotency: IdempotencySection,
    /// `[statements]`: the providers' daily bills, reconciled.
    pub statements: StatementsSection,
}

/// `[statements]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatementsSection {
    /// Run the statements worker.
    pub enabled: bool,
    /// Beijing time (`HH:MM`) after which the previous day's bills are fetched.
    #[serde(deserialize_with = "hh_mm")]
    pub ready_after: chrono::NaiveTime,
    /// Missing days within this many days back are fetched too.
    pub lookback_days: u32,
}

impl Default for StatementsSection {
    fn default() -> Self {
        StatementsSection {
            enabled: true,
            ready_after: chrono::NaiveTime::from_hms_opt(10, 30, 0).unwrap_or_default(),
            lookback_days: 7,
        }
    }
}

/// A `HH:MM` time of day.
fn hh_mm<'de, D: serde::Deserializer<'de>>(d: D) -> Result<chrono::NaiveTime, D::Error> {
    let text = String::deserialize(d)?;
    chrono::NaiveTime::parse_from_str(&text, "%H:%M").map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not a time of day: write HH:MM in Beijing time, e.g. \"10:30\""
        ))
    })
}

/// `[idempotency]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencySection {
    /// Seconds from a key's first request after which the key is new again.
    pub ttl_seconds: u64,
}

impl Default for IdempotencySection {
    fn default() -> Self {
        IdempotencySection {
            ttl_seconds: 86_400,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `text` (the default) or `json` (one object per line, `request_id` at the top level).
    pub format: LogFormat,
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// JSON lines.
    Json,
}

/// `[retention]`: notification attempts and webhook delivery attempts older than `attempts_days`
/// are deleted by a worker, `batch_size` rows per statement.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSection {
    /// Run the pruning worker.
    pub enabled: bool,
    /// Keep attempt records this many days; `0` keeps them forever.
    pub attempts_days: u32,
    /// Rows deleted per statement (one short write each).
    pub batch_size: u64,
    /// Most batches per table in one pass; the rest waits for the next pass.
    pub max_batches: u32,
    /// Seconds between passes.
    pub interval_seconds: u64,
}

impl Default for RetentionSection {
    fn default() -> Self {
        RetentionSection {
            enabled: true,
            attempts_days: 90,
            batch_size: 1000,
            max_batches: 100,
            interval_seconds: 3600,
        }
    }
}

/// `[limits]`: token buckets, as requests per second with a burst. `0` turns a limit off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Notifications from one client IP.
    pub notify_per_ip_per_second: u32,
    /// Proxies in front of the gateway (IP addresses or CIDR ranges, e.g. `10.0.0.0/8`). A
    /// request from one of them is counted under the address its `X-Forwarded-For` names (the
    /// nearest hop that is not itself a trusted proxy); from anywhere else the header is ignored,
    /// so that it cannot be forged around the limit.
    pub trusted_proxies: Vec<String>,
    /// Notifications to one tenant's notify URLs, from everywhere.
    pub notify_per_tenant_per_second: u32,
    /// Merchant API requests with one tenant's API keys.
    pub api_per_tenant_per_second: u32,
    /// Admin API requests with one admin token.
    pub admin_per_token_per_second: u32,
    /// Each bucket holds this many seconds of its rate as a burst.
    pub burst_seconds: u32,
    /// Notifications refused before their signature verified (forged, undecodable) that are still
    /// recorded as attempt rows, per tenant and provider per minute. The rest are only counted in
    /// `paybridge_notifications_unrecorded_total`: a flood of forgeries writes a bounded sample.
    pub unverified_attempts_recorded_per_minute: u32,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            notify_per_ip_per_second: 500,
            trusted_proxies: Vec::new(),
            notify_per_tenant_per_second: 1000,
            api_per_tenant_per_second: 200,
            admin_per_token_per_second: 20,
            burst_seconds: 2,
            unverified_attempts_recorded_per_minute: 60,
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Address to listen on.
    pub listen: String,
    /// Base of every `notify_url` sent to providers.
    pub public_base_url: String,
    /// On SIGTERM or SIGINT: how long requests in flight may take to finish, and then the
    /// workers; the process exits 0 within it.
    pub shutdown_timeout_seconds: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: "127.0.0.1:8080".to_owned(),
            public_base_url: "http://127.0.0.1:8080".to_owned(),
            shutdown_timeout_seconds: 10,
        }
    }
}

/// `[database]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSection {
    /// `sqlite://…?mode=rwc` or `postgres://…`.
    pub url: String,
    /// SQLite: how long a statement waits for a lock another process holds before the request
    /// fails with `503 storage_unavailable` (a notification: the provider's failure body).
    pub busy_timeout_seconds: u64,
    /// PostgreSQL: the most connections this instance opens (its pool).
    pub max_connections: u32,
}

impl Default for DatabaseSection {
    fn default() -> Self {
        DatabaseSection {
            url: "sqlite://paybridge.db?mode=rwc".to_owned(),
            busy_timeout_seconds: 10,
            max_connections: crate::db::POSTGRES_CONNECTIONS,
        }
    }
}

/// `[tenants]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantsSection {
    /// Folder of `*.toml` tenant documents imported at start-up; relative to the config file.
    pub dir: PathBuf,
}

impl Default for TenantsSection {
    fn default() -> Self {
        TenantsSection {
            dir: PathBuf::from("tenants"),
        }
    }
}

/// `[platforms]`: service providers' and third-party apps' credentials that tenants name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlatformsSection {
    /// Folder of `*.toml` platform documents imported at start-up (missing ones only; the
    /// database wins); relative to the config file.
    pub dir: PathBuf,
}

impl Default for PlatformsSection {
    fn default() -> Self {
        PlatformsSection {
            dir: PathBuf::from("platforms"),
        }
    }
}

/// `[sandbox]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSection {
    /// Mount the provider simulators under `/sandbox/<kind>/`.
    pub enabled: bool,
}

/// `[reconciler]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcilerSection {
    /// Run the background reconciler.
    pub enabled: bool,
    /// Seconds between passes.
    pub interval_seconds: u64,
    /// Query orders with no notification after this long.
    pub query_pending_after_seconds: u64,
}

impl Default for ReconcilerSection {
    fn default() -> Self {
        ReconcilerSection {
            enabled: true,
            interval_seconds: 30,
            query_pending_after_seconds: 120,
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// `sha256:<hex>` digests of admin tokens.
    pub tokens: Vec<String>,
    /// `sha256:<hex>` digests of read-only admin tokens: they read everything and may validate,
    /// and get `403 forbidden` on any change or action.
    pub read_only_tokens: Vec<String>,
    /// How long a rotated tenant API key keeps working.
    pub key_grace_seconds: u64,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            tokens: Vec::new(),
            read_only_tokens: Vec::new(),
            key_grace_seconds: 86_400,
        }
    }
}

/// `[secrets]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsSection {
    /// Name of the environment variable holding the base64 master key.
    pub master_key_env: String,
    /// A master key given in code (tests, embedding); never read from the file.
    #[serde(skip)]
    pub master_key_override: Option<String>,
}

impl Default for SecretsSection {
    fn default() -> Self {
        SecretsSection {
            master_key_env: "PAYBRIDGE_MASTER_KEY".to_owned(),
            master_key_override: None,
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Timeout of every outbound call to a provider, in seconds.
    pub outbound_timeout_seconds: u64,
    /// Largest accepted request body, in bytes (merchant API).
    pub max_body_bytes: usize,
    /// Largest accepted notification body, in bytes.
    pub max_notification_bytes: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            outbound_timeout_seconds: 10,
            max_body_bytes: 64 * 1024,
            max_notification_bytes: 64 * 1024,
        }
    }
}

/// `[webhooks]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksSection {
    /// Run the delivery worker.
    pub enabled: bool,
    /// Milliseconds between passes of the delivery worker.
    pub interval_milliseconds: u64,
    /// Timeout of one delivery (connect to last byte), in seconds.
    pub timeout_seconds: u64,
    /// Most deliveries claimed (and sent concurrently) by one pass.
    pub batch_size: u64,
    /// Allow `webhook_url`s on loopback, private, link-local and multicast addresses (tests,
    /// on-premises). Off: such URLs are refused when a tenant is saved, and every address a name
    /// resolves to is checked again when a webhook is sent.
    pub allow_private_targets: bool,
}

impl Default for WebhooksSection {
    fn default() -> Self {
        WebhooksSection {
            enabled: true,
            interval_milliseconds: 1000,
            timeout_seconds: 10,
            batch_size: 50,
            allow_private_targets: false,
        }
    }
}

/// The environment as UTF-8 pairs. Not `std::env::vars()`, which panics on a variable that is not
/// UTF-8: such a variable is no override of ours, and is skipped.
fn env_vars() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}

impl Config {
    /// Read a config file, apply the environment's overrides, and resolve relative paths
    /// against the file's folder.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        let mut cfg = Config::from_toml_and_env(&text, env_vars())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        if cfg.tenants.dir.is_relative() {
            cfg.tenants.dir = base.join(&cfg.tenants.dir);
        }
        if cfg.platforms.dir.is_relative() {
            cfg.platforms.dir = base.join(&cfg.platforms.dir);
        }
        Ok(cfg)
    }

    /// The config of `paybridge admin` and `paybridge-admin`: `--config` (which must exist), else
    /// `./paybridge.toml` if there is one, else the defaults; with the same environment
    /// overrides as the server. `--database-url` wins over the config's URL.
    pub fn admin_settings(
        path: Option<&Path>,
        database_url: Option<String>,
    ) -> Result<paybridge_admin::cli::Settings, String> {
        let default = Path::new("paybridge.toml");
        let cfg = match path {
            Some(p) => Config::load(p)?,
            None if default.is_file() => Config::load(default)?,
            None => Config::from_toml_and_env("", env_vars())?,
        };
        Ok(paybridge_admin::cli::Settings {
            database_url: Some(
                database_url
                    .filter(|u| !u.is_empty())
                    .unwrap_or_else(|| cfg.database.url.clone()),
            ),
            tenants_dir: cfg.tenants.dir.clone(),
            master_key_env: cfg.secrets.master_key_env.clone(),
            key_grace: std::time::Duration::from_secs(cfg.admin.key_grace_seconds),
            http_timeout: cfg.outbound_timeout(),
        })
    }

    /// The config of a file's text with the overrides of `vars` (the environment):
    /// `PAYBRIDGE_<SECTION>__<KEY>` sets `[section] key` (the value read as a TOML value, e.g.
    /// `["sha256:…"]` or `30`, else as a string), winning over the file; then `DATABASE_URL` and
    /// `PAYBRIDGE_LISTEN`, unless `PAYBRIDGE_DATABASE__URL` / `PAYBRIDGE_SERVER__LISTEN` is set.
    pub fn from_toml_and_env(
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, String> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let mut applied = Vec::new();
        for (name, raw) in &vars {
            let Some((section, key)) = name
                .strip_prefix(ENV_PREFIX)
                .and_then(|rest| rest.split_once("__"))
            else {
                continue;
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            if section.is_empty() || key.is_empty() {
                return Err(format!("{name}: expected {ENV_PREFIX}<SECTION>__<KEY>"));
            }
            let value = format!("v = {raw}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.clone()));
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(section_table) = entry.as_table_mut() else {
                return Err(format!("{name}: [{section}] is not a table in the file"));
            };
            section_table.insert(key, value);
            applied.push(name.clone());
        }
        let mut cfg = Config::deserialize(toml::Value::Table(table)).map_err(|e| {
            if applied.is_empty() {
                e.to_string()
            } else {
                format!("{e} (with the overrides of {})", applied.join(", "))
            }
        })?;
        let set = |name: &str| vars.iter().any(|(n, _)| n == name);
        for (legacy, modern, target) in [
            (
                "DATABASE_URL",
                "PAYBRIDGE_DATABASE__URL",
                &mut cfg.database.url,
            ),
            (
                "PAYBRIDGE_LISTEN",
                "PAYBRIDGE_SERVER__LISTEN",
                &mut cfg.server.listen,
            ),
        ] {
            if let Some((_, value)) = vars.iter().find(|(n, v)| n == legacy && !v.is_empty())
                && !set(modern)
            {
                *target = value.clone();
            }
        }
        Ok(cfg)
    }

    /// The URL prefix of this server's simulators: tenants whose every provider endpoint starts
    /// with it are sandbox tenants.
    pub fn sandbox_prefix(&self) -> String {
        format!(
            "{}/sandbox/",
            self.server.public_base_url.trim_end_matches('/')
        )
    }

    /// The outbound timeout as a duration.
    pub fn outbound_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.http.outbound_timeout_seconds.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_key_can_be_set_from_the_environment_and_wins_over_the_file() {
        let file = "[server]\nlisten = \"127.0.0.1:1\"\n[database]\nurl = \"sqlite://file.db\"\n";
        let cfg = Config::from_toml_and_env(
            file,
            vars(&[
                ("PAYBRIDGE_SERVER__LISTEN", "0.0.0.0:9000"),
                ("PAYBRIDGE_ADMIN__TOKENS", "[\"sha256:aa\", \"sha256:bb\"]"),
                ("PAYBRIDGE_ADMIN__KEY_GRACE_SECONDS", "60"),
                ("PAYBRIDGE_LOG__FORMAT", "json"),
                ("PAYBRIDGE_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true"),
                ("PAYBRIDGE_MASTER_KEY", "not a config key: no section"),
                ("DATABASE_URL", "postgres://below"),
                ("PAYBRIDGE_DATABASE__URL", "postgres://wins"),
            ]),
        )
        .expect("valid");
        assert_eq!(cfg.server.listen, "0.0.0.0:9000");
        assert_eq!(cfg.admin.tokens, ["sha256:aa", "sha256:bb"]);
        assert_eq!(cfg.admin.key_grace_seconds, 60);
        assert_eq!(cfg.log.format, LogFormat::Json);
        assert!(cfg.webhooks.allow_private_targets);
        assert_eq!(cfg.database.url, "postgres://wins");
        // The older variables still work, below the new form.
        let cfg = Config::from_toml_and_env(
            file,
            vars(&[
                ("DATABASE_URL", "postgres://old"),
                ("PAYBRIDGE_LISTEN", "127.0.0.1:2"),
            ]),
        )
        .expect("valid");
        assert_eq!(cfg.database.url, "postgres://old");
        assert_eq!(cfg.server.listen, "127.0.0.1:2");
    }

    #[test]
    fn an_unknown_key_from_the_environment_names_the_variable() {
        let err = Config::from_toml_and_env("", vars(&[("PAYBRIDGE_SERVER__LISTN", "x")]))
            .expect_err("unknown key");
        assert!(
            err.contains("listn") && err.contains("PAYBRIDGE_SERVER__LISTN"),
            "{err}"
        );
    }

    #[test]
    fn the_documented_example_parses() {
        let text = r#"
[server]
listen = "127.0.0.1:8080"
public_base_url = "http://127.0.0.1:8080"
[database]
url = "sqlite://paybridge.db?mode=rwc"
[tenants]
dir = "tenants"
[platforms]
dir = "platforms"
[sandbox]
enabled = true
[reconciler]
enabled = true
interval_seconds = 30
query_pending_after_seconds = 120
[admin]
tokens = ["sha256:00"]
[secrets]
master_key_env = "PAYBRIDGE_MASTER_KEY"
"#;
        let cfg: Config = toml::from_str(text).expect("parses");
        assert!(cfg.sandbox.enabled);
        assert_eq!(cfg.reconciler.interval_seconds, 30);
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("[server]\nlisten_on = \"x\"\n").is_err());
    }
}
