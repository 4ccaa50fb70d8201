//! The tenant config store: the database is the source of truth once a tenant is in it. Every
//! change writes a new version, an audit entry with a masked diff, and bumps the global config
//! version, all in one transaction. Secrets are encrypted at rest ([`crate::secrets`]).
//!
//! **Plaintext mode.** A store built without a master key reads and writes documents whose
//! secrets are plaintext, but only after [`TenantStore::permit_plaintext_secrets`]: otherwise
//! writing a document with any non-empty secret fails with
//! [`SecretsError::PlaintextNotPermitted`]. The server decides when that is acceptable (every
//! tenant a sandbox tenant). A store with a key decrypts `enc:v1:` values, accepts plaintext ones
//! left by plaintext mode, and encrypts everything it writes.

mod changes;
pub mod entities;
mod import;
mod migration;
mod model;
mod platforms;
mod write;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use paybridge_core::platform::Platforms;
use paybridge_core::provider::FieldError;
use paybridge_core::tenant::{ConfigErrors, Tenant, build_tenant_with};
use sea_orm::{
    ColumnTrait, ConnectOptions, Database, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use sea_orm_migration::MigratorTrait;

pub use changes::generate_api_key;
pub use import::{FileProblem, ImportOutcome, ImportReport, folder_of};
pub use migration::{AdminMigrator, migrations};
pub use model::{AuditEntry, ProviderSummary, RetiredKey, StoredTenant, TenantSummary, summarize};
pub use platforms::{
    PLATFORM_KEY_PREFIX, PlatformSummary, StoredPlatform, WrittenPlatform, from_storage_form,
    is_platform_key, to_storage_form,
};
pub use write::Written;

use crate::format::parse_toml;
use crate::secrets::{MasterKey, SecretPolicy, SecretsError};
use entities::{audit, config_state, retired_key, tenant};

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// The document is invalid; every bad field is listed.
    #[error("invalid tenant config: {0}")]
    Invalid(ConfigErrors),
    /// A secret could not be sealed or opened.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// No such tenant (or provider of a tenant).
    #[error("{0}")]
    NotFound(String),
    /// The tenant already exists (create), or it kept changing under us.
    #[error("{0}")]
    Conflict(String),
    /// The caller's expected version is not the current one.
    #[error(
        "tenant {id:?} is at version {actual}, not {expected}; reload it and apply the change again"
    )]
    VersionMismatch {
        /// The tenant.
        id: String,
        /// What the caller expected.
        expected: i64,
        /// What is stored.
        actual: i64,
    },
    /// Files of an import are invalid; nothing was written.
    #[error("{}", describe_file_problems(.0))]
    InvalidFiles(Vec<FileProblem>),
    /// A file or folder could not be read.
    #[error("{0}")]
    Io(String),
    /// Stored data is not what this code writes (a bug or a manual edit).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A provider call the change needed failed (an authorisation exchange).
    #[error("{0}")]
    Provider(paybridge_core::provider::ProviderError),
}

impl StoreError {
    /// No tenant with this id.
    pub(crate) fn tenant_not_found(id: &str) -> StoreError {
        StoreError::NotFound(format!("tenant {id:?} not found"))
    }
}

impl From<ConfigErrors> for StoreError {
    fn from(e: ConfigErrors) -> Self {
        StoreError::Invalid(e)
    }
}

/// Connect (SQLite: one connection, as the server does) and apply the admin migrations through
/// [`AdminMigrator`].
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    if url.starts_with("sqlite:") {
        options.max_connections(1).min_connections(1);
    } else {
        options.max_connections(4);
    }
    let db = Database::connect(options).await?;
    migrate(&db).await?;
    Ok(db)
}

/// Create the admin tables if they are missing (idempotent; safe beside the server's migrator).
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    AdminMigrator::up(db, None).await
}

/// The tenant config store.
#[derive(Debug, Clone)]
pub struct TenantStore {
    db: DatabaseConnection,
    secrets: SecretPolicy,
    tenants_dir: PathBuf,
    platforms_dir: PathBuf,
    http_timeout: Duration,
    private_webhook_targets: bool,
}

impl TenantStore {
    /// A store on a migrated connection. With `None` it runs in plaintext mode, which refuses
    /// non-empty secrets until [`TenantStore::permit_plaintext_secrets`].
    pub fn new(db: DatabaseConnection, key: Option<MasterKey>) -> Self {
        TenantStore {
            db,
            secrets: SecretPolicy {
                key,
                plaintext_permitted: false,
                sandbox_prefix: None,
            },
            tenants_dir: PathBuf::from("tenants"),
            platforms_dir: PathBuf::from("platforms"),
            http_timeout: Duration::from_secs(10),
            private_webhook_targets: false,
        }
    }

    /// Accept a `webhook_url` on loopback, private, link-local or multicast addresses (tests and
    /// on-premises use; `[webhooks] allow_private_targets`). Refused by default.
    pub fn with_private_webhook_targets(mut self, allowed: bool) -> Self {
        self.private_webhook_targets = allowed;
        self
    }

    /// Allow storing secrets in plaintext when there is no master key (sandbox-only deployments;
    /// the server decides). Has no effect with a key: then everything is encrypted.
    pub fn permit_plaintext_secrets(mut self, permitted: bool) -> Self {
        self.secrets.plaintext_permitted = permitted;
        self
    }

    /// Without a master key, allow plaintext secrets only in sandbox tenants: documents whose
    /// every provider endpoint starts with `prefix` (see [`crate::secrets::is_sandbox_document`]).
    pub fn permit_plaintext_for_sandbox(mut self, prefix: impl Into<String>) -> Self {
        self.secrets.plaintext_permitted = true;
        self.secrets.sandbox_prefix = Some(prefix.into());
        self
    }

    /// The folder relative paths of API-created tenants resolve against (`[tenants] dir`).
    pub fn with_tenants_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.tenants_dir = dir.into();
        self
    }

    /// The folder relative paths of API-created platforms resolve against (`[platforms] dir`).
    pub fn with_platforms_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.platforms_dir = dir.into();
        self
    }

    /// The outbound timeout given to the provider factories while validating.
    pub fn with_http_timeout(mut self, timeout: Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    /// Whether a master key is configured (secrets are then encrypted at rest).
    pub fn encrypts(&self) -> bool {
        self.secrets.key.is_some()
    }

    /// The connection.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The configured tenants folder.
    pub fn tenants_dir(&self) -> &Path {
        &self.tenants_dir
    }

    /// Validate a plaintext document through core and the provider factories, its provider
    /// tables resolved against `platforms`.
    pub fn validate(
        &self,
        doc: &toml::Table,
        base_dir: &Path,
        platforms: &Platforms,
    ) -> Result<Tenant, ConfigErrors> {
        let built = build_tenant_with(doc, base_dir, self.http_timeout, platforms);
        let target = (!self.private_webhook_targets)
            .then(|| doc.get("webhook_url").and_then(toml::Value::as_str))
            .flatten()
            .and_then(paybridge_core::net::url_target_problem)
            .map(|why| {
                FieldError::new(
                    "webhook_url",
                    format!(
                        "must be a public address: {why}. Webhooks into the platform's own network are refused; set [webhooks] allow_private_targets = true in paybridge.toml for tests or on-premises use"
                    ),
                )
            });
        match (built, target) {
            (built, None) => built,
            (Ok(_), Some(e)) => Err(ConfigErrors(vec![e])),
            (Err(ConfigErrors(mut errors)), Some(e)) => {
                errors.push(e);
                Err(ConfigErrors(errors))
            }
        }
    }

    /// The global config version: bumped by every change, so instances can poll it and reload.
    pub async fn config_version(&self) -> Result<i64, StoreError> {
        Ok(config_state::Entity::find_by_id(1)
            .one(&self.db)
            .await?
            .map_or(0, |row| row.version))
    }

    /// Every tenant with its document decrypted, its base folder and its retired keys still in
    /// their grace period. Fails as a whole if any document cannot be opened.
    pub async fn load_all(&self) -> Result<Vec<StoredTenant>, StoreError> {
        let rows = self.tenant_rows().await?;
        let retired = retired_key::Entity::find()
            .filter(retired_key::Column::ExpiresAt.gt(Utc::now()))
            .all(&self.db)
            .await?;
        rows.into_iter()
            .map(|row| {
                let id = row.id.clone();
                self.open_row(row, retired.iter().filter(|k| k.tenant_id == id))
            })
            .collect()
    }

    /// The rows of tenants (not of platforms), by id.
    async fn tenant_rows(&self) -> Result<Vec<tenant::Model>, StoreError> {
        Ok(tenant::Entity::find()
            .filter(tenant::Column::Id.not_like(format!("{PLATFORM_KEY_PREFIX}%")))
            .order_by_asc(tenant::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// One tenant, decrypted.
    pub async fn get(&self, id: &str) -> Result<Option<StoredTenant>, StoreError> {
        if is_platform_key(id) {
            return Ok(None);
        }
        self.get_document(id).await
    }

    /// The document stored under `key` (a tenant id, or a platform's key), decrypted.
    pub(super) async fn get_document(&self, key: &str) -> Result<Option<StoredTenant>, StoreError> {
        let Some(row) = tenant::Entity::find_by_id(key.to_owned())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let retired = retired_key::Entity::find()
            .filter(retired_key::Column::TenantId.eq(key))
            .filter(retired_key::Column::ExpiresAt.gt(Utc::now()))
            .all(&self.db)
            .await?;
        self.open_row(row, retired.iter()).map(Some)
    }

    /// Every tenant's id, name, version and providers, without decrypting anything.
    pub async fn list(&self) -> Result<Vec<TenantSummary>, StoreError> {
        let rows = self.tenant_rows().await?;
        rows.into_iter()
            .map(|row| {
                let doc = parse_stored(&row)?;
                Ok(summarize(&row.id, row.version, row.updated_at, &doc))
            })
            .collect()
    }

    /// Record an operator's action on money (not a config change) in the audit log: `action`
    /// (e.g. `sync_order`) on `target` (e.g. `orders.T123`) of a tenant, and what came of it.
    pub async fn record_action(
        &self,
        actor: &str,
        action: &str,
        tenant_id: &str,
        target: &str,
        result: serde_json::Value,
    ) -> Result<(), StoreError> {
        let entry = crate::diff::DiffEntry {
            path: target.to_owned(),
            change: "action".to_owned(),
            from: None,
            to: Some(result),
            secret: false,
        };
        let diff = serde_json::to_string(&[entry])
            .map_err(|e| StoreError::Corrupt(format!("audit: {e}")))?;
        audit::Entity::insert(audit::ActiveModel {
            at: sea_orm::ActiveValue::Set(chrono::Utc::now()),
            actor: sea_orm::ActiveValue::Set(actor.to_owned()),
            action: sea_orm::ActiveValue::Set(action.to_owned()),
            tenant_id: sea_orm::ActiveValue::Set(Some(tenant_id.to_owned())),
            diff: sea_orm::ActiveValue::Set(diff),
            ..Default::default()
        })
        .exec_without_returning(&self.db)
        .await?;
        Ok(())
    }

    /// The newest audit entries first, of one tenant or of all.
    pub async fn audit(
        &self,
        tenant_id: Option<&str>,
        limit: u64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit_filtered(
            &AuditFilter {
                tenant_id: tenant_id.map(str::to_owned),
                ..AuditFilter::default()
            },
            limit,
        )
        .await
    }

    /// The newest audit entries first that pass `filter`.
    pub async fn audit_filtered(
        &self,
        filter: &AuditFilter,
        limit: u64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut query = audit::Entity::find().order_by_desc(audit::Column::Id);
        if let Some(id) = &filter.tenant_id {
            query = query.filter(audit::Column::TenantId.eq(id));
        }
        if let Some(actor) = &filter.actor {
            query = query.filter(audit::Column::Actor.eq(actor));
        }
        if let Some(action) = &filter.action {
            query = query.filter(audit::Column::Action.eq(action));
        }
        if let Some(before) = filter.before_id {
            query = query.filter(audit::Column::Id.lt(before));
        }
        let rows = query.limit(limit).all(&self.db).await?;
        rows.into_iter()
            .map(|row| {
                let mut diff: Vec<crate::diff::DiffEntry> = serde_json::from_str(&row.diff)
                    .map_err(|e| StoreError::Corrupt(format!("audit {}: {e}", row.id)))?;
                let platform_id = row
                    .tenant_id
                    .as_deref()
                    .and_then(|k| k.strip_prefix(PLATFORM_KEY_PREFIX))
                    .map(str::to_owned);
                // A platform's paths as its document names them (`alipay_app.private_key`).
                if platform_id.is_some() {
                    for entry in &mut diff {
                        if let Some(rest) = entry.path.strip_prefix("providers.") {
                            entry.path = rest.to_owned();
                        }
                    }
                }
                Ok(AuditEntry {
                    id: row.id,
                    at: row.at,
                    actor: row.actor,
                    action: row.action,
                    tenant_id: row.tenant_id.filter(|_| platform_id.is_none()),
                    platform_id,
                    diff,
                })
            })
            .collect()
    }

    fn open_row<'a>(
        &self,
        row: tenant::Model,
        retired: impl Iterator<Item = &'a retired_key::Model>,
    ) -> Result<StoredTenant, StoreError> {
        let sealed = parse_stored(&row)?;
        let document = self
            .secrets
            .open(&row.id, &sealed)
            .map_err(|e| StoreError::Corrupt(format!("tenant {:?}: {e}", row.id)))?;
        Ok(StoredTenant {
            id: row.id,
            document,
            base_dir: PathBuf::from(row.base_dir),
            version: row.version,
            updated_at: row.updated_at,
            retired_keys: retired
                .map(|k| RetiredKey {
                    digest: k.digest.clone(),
                    expires_at: k.expires_at,
                })
                .collect(),
        })
    }
}

fn describe_file_problems(problems: &[FileProblem]) -> String {
    let mut lines = Vec::new();
    for p in problems {
        for e in &p.errors.0 {
            lines.push(format!("{}: {}: {}", p.path.display(), e.field, e.message));
        }
    }
    lines.join("\n")
}

fn parse_stored(row: &tenant::Model) -> Result<toml::Table, StoreError> {
    parse_toml(&row.document).map_err(|e| StoreError::Corrupt(format!("tenant {:?}: {e}", row.id)))
}

#[cfg(test)]
mod tests;

/// Which audit entries to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// One tenant's (or platform's, `platform:<id>`) entries.
    pub tenant_id: Option<String>,
    /// One actor's entries (`admin:…`, `readonly:…`, `cli:…`).
    pub actor: Option<String>,
    /// One action's entries (`update`, `sync_order`, …).
    pub action: Option<String>,
    /// Entries before this id (the next page).
    pub before_id: Option<i64>,
}
