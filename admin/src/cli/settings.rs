//! What the CLI reads from `paybridge.toml`: `[database] url`, `[tenants] dir`,
//! `[secrets] master_key_env`, `[admin] key_grace_seconds`, `[http] outbound_timeout_seconds`.
//! Other sections are the server's business and are ignored here.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The settings the CLI needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The database URL, if any source gave one.
    pub database_url: Option<String>,
    /// `[tenants] dir`, resolved against the config file's folder.
    pub tenants_dir: PathBuf,
    /// The env var holding the master key.
    pub master_key_env: String,
    /// The grace period of rotated API keys.
    pub key_grace: Duration,
    /// The outbound timeout handed to the provider factories.
    pub http_timeout: Duration,
}

/// Read the settings. `config`: an explicit `--config` must exist; without one, `paybridge.toml`
/// is read if present. The database URL comes from `--database-url`, else env `DATABASE_URL`,
/// else the file.
pub fn load(config: Option<&Path>, database_url: Option<String>) -> Result<Settings, String> {
    let (path, required) = match config {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from("paybridge.toml"), false),
    };
    let table: toml::Table = match std::fs::read_to_string(&path) {
        Ok(text) => text
            .parse()
            .map_err(|e: toml::de::Error| format!("{}: {}", path.display(), e.message()))?,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let get = |section: &str, key: &str| table.get(section).and_then(|s| s.get(key));
    let string = |section: &str, key: &str| -> Result<Option<String>, String> {
        match get(section, key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!(
                "{}: [{section}] {key} must be a string",
                path.display()
            )),
        }
    };
    let seconds = |section: &str, key: &str, default: u64| -> Result<u64, String> {
        match get(section, key) {
            None => Ok(default),
            Some(toml::Value::Integer(n)) => u64::try_from(*n)
                .map_err(|_| format!("{}: [{section}] {key} must not be negative", path.display())),
            Some(_) => Err(format!(
                "{}: [{section}] {key} must be a number",
                path.display()
            )),
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let tenants_dir =
        PathBuf::from(string("tenants", "dir")?.unwrap_or_else(|| "tenants".to_owned()));
    let tenants_dir = if tenants_dir.is_relative() {
        base.join(tenants_dir)
    } else {
        tenants_dir
    };
    let env_url = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty());
    Ok(Settings {
        database_url: database_url
            .filter(|u| !u.is_empty())
            .or(env_url)
            .or(string("database", "url")?),
        tenants_dir,
        master_key_env: string("secrets", "master_key_env")?
            .unwrap_or_else(|| "PAYBRIDGE_MASTER_KEY".to_owned()),
        key_grace: Duration::from_secs(seconds("admin", "key_grace_seconds", 86_400)?),
        http_timeout: Duration::from_secs(seconds("http", "outbound_timeout_seconds", 10)?.max(1)),
    })
}
