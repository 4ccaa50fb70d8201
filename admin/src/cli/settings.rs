//! What the CLI takes from the server's config (`paybridge.toml` and its environment overrides,
//! read by the server's own `Config`): `[database] url`, `[tenants] dir`,
//! `[secrets] master_key_env`, `[admin] key_grace_seconds`, `[http] outbound_timeout_seconds`.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The settings the CLI needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The database URL: `--database-url`, else the config's (with its environment overrides).
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

/// Reads the settings: `(--config, --database-url)`. The server crate gives it, so that the CLI
/// reads `paybridge.toml` and its `PAYBRIDGE_<SECTION>__<KEY>` overrides exactly as the server
/// does (`paybridge_server::config::admin_settings`): one config type for both.
pub type Loader = fn(Option<&Path>, Option<String>) -> Result<Settings, String>;
