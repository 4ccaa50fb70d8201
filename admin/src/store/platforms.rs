//! Platform documents: a service provider's or ISV's credentials, which tenants name with
//! `platform = "<id>"` ([`paybridge_core::platform`]).
//!
//! A platform is stored like a tenant, in the same tables under the key `platform:<id>` (a
//! tenant id cannot contain `:`), so it has every guarantee of a tenant document through the
//! same code: versions, an audit entry per change with a masked diff, secrets encrypted at rest
//! (bound to that key), compare-and-set on the version, and the config-version bump that makes
//! every instance reload. Its sections are stored in the tenant shape, under `[providers.<kind>]`,
//! so the factories' secret fields, masking and the sandbox rules apply unchanged; the API and
//! the files use the contract's shape, with `[<kind>]` at the top.
//!
//! A change to a platform is refused if any tenant that names it would stop building, and a
//! platform is not deleted while a tenant names it.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use paybridge_core::platform::{Platform, Platforms, build_platform, platform_of};
use paybridge_core::provider::FieldError;
use paybridge_core::tenant::{ConfigErrors, build_tenant_with};
use serde::Serialize;
use utoipa::ToSchema;

use super::write::{Plan, Written};
use super::{StoreError, StoredTenant, TenantStore, folder_of};
use crate::document::merge_kept_secrets;
use crate::format::parse_toml;

/// The key prefix of platform documents in the document tables.
pub const PLATFORM_KEY_PREFIX: &str = "platform:";

/// Whether a document key is a platform's.
pub fn is_platform_key(key: &str) -> bool {
    key.starts_with(PLATFORM_KEY_PREFIX)
}

fn key_of(id: &str) -> String {
    format!("{PLATFORM_KEY_PREFIX}{id}")
}

/// The stored shape of a platform document: `id`, `name`, and each other table under
/// `[providers]`. Anything else stays where it is (and validation names it).
pub fn to_storage_form(doc: &toml::Table) -> toml::Table {
    let mut out = toml::Table::new();
    let mut providers = toml::Table::new();
    for (key, value) in doc {
        match value {
            toml::Value::Table(_) => {
                providers.insert(key.clone(), value.clone());
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if !providers.is_empty() {
        out.insert("providers".to_owned(), toml::Value::Table(providers));
    }
    out
}

/// The contract's shape of a stored platform document (inverse of [`to_storage_form`]).
pub fn from_storage_form(stored: &toml::Table) -> toml::Table {
    let mut out = toml::Table::new();
    for (key, value) in stored {
        match (key.as_str(), value) {
            ("providers", toml::Value::Table(sections)) => {
                out.extend(sections.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    out
}

/// Paths of the stored shape (`providers.alipay_app.private_key`) as the contract's shape
/// names them (`alipay_app.private_key`).
fn contract_paths(errors: ConfigErrors) -> ConfigErrors {
    ConfigErrors(
        errors
            .0
            .into_iter()
            .map(|e| match e.field.strip_prefix("providers.") {
                Some(rest) => FieldError::new(rest, e.message),
                None => e,
            })
            .collect(),
    )
}

/// A platform as stored, decrypted.
#[derive(Debug, Clone)]
pub struct StoredPlatform {
    /// The platform id.
    pub id: String,
    /// The document in the contract's shape, secrets in plaintext: mask before it leaves.
    pub document: toml::Table,
    /// The folder its file paths resolve against.
    pub base_dir: PathBuf,
    /// Its version, 1 when new.
    pub version: i64,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl StoredPlatform {
    fn of(stored: StoredTenant) -> Option<StoredPlatform> {
        let id = stored.id.strip_prefix(PLATFORM_KEY_PREFIX)?.to_owned();
        Some(StoredPlatform {
            id,
            document: from_storage_form(&stored.document),
            base_dir: stored.base_dir,
            version: stored.version,
            updated_at: stored.updated_at,
        })
    }

    /// The masked document (secrets as `{ set = true }`), in the contract's shape.
    pub fn masked(&self) -> toml::Table {
        from_storage_form(&crate::document::mask(&to_storage_form(&self.document)))
    }
}

/// What a platform write did.
#[derive(Debug, Clone)]
pub struct WrittenPlatform {
    /// Whether the platform is new.
    pub created: bool,
    /// The platform after the change.
    pub platform: StoredPlatform,
}

/// A platform in a listing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlatformSummary {
    /// The platform id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Current version.
    pub version: i64,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// The provider kinds it holds credentials for.
    pub kinds: Vec<String>,
    /// The tenants that name it.
    pub tenants: Vec<String>,
}

impl TenantStore {
    async fn platform_rows(&self) -> Result<Vec<StoredPlatform>, StoreError> {
        use super::entities::tenant;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
        let rows = tenant::Entity::find()
            .filter(tenant::Column::Id.like(format!("{PLATFORM_KEY_PREFIX}%")))
            .order_by_asc(tenant::Column::Id)
            .all(&self.db)
            .await?;
        let mut out = Vec::new();
        for row in rows {
            let key = row.id.clone();
            if let Some(p) = self.get_document(&key).await?.and_then(StoredPlatform::of) {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Every platform, built for tenants to use, and the problems of those that no longer build
    /// (a certificate file gone, say): their tenants then fail to build and say why.
    pub async fn platform_book(&self) -> Result<(Platforms, Vec<String>), StoreError> {
        let mut book = Platforms::default();
        let mut problems = Vec::new();
        for mut stored in self.platform_rows().await? {
            match build_platform(&stored.document, &stored.base_dir, self.http_timeout) {
                Ok(platform) => {
                    book.0.insert(platform.id.clone(), platform);
                }
                Err(e) => problems.push(format!("platform {:?}: {e}", stored.id)),
            }
            paybridge_core::tenant::wipe_table(&mut stored.document);
        }
        Ok((book, problems))
    }

    /// One platform, decrypted.
    pub async fn get_platform(&self, id: &str) -> Result<Option<StoredPlatform>, StoreError> {
        Ok(self
            .get_document(&key_of(id))
            .await?
            .and_then(StoredPlatform::of))
    }

    /// Every platform with the tenants that name it (nothing is decrypted but to read which
    /// kinds it holds).
    pub async fn list_platforms(&self) -> Result<Vec<PlatformSummary>, StoreError> {
        let tenants = self.load_all().await?;
        Ok(self
            .platform_rows()
            .await?
            .into_iter()
            .map(|p| PlatformSummary {
                name: p
                    .document
                    .get("name")
                    .and_then(toml::Value::as_str)
                    .unwrap_or(&p.id)
                    .to_owned(),
                kinds: p
                    .document
                    .iter()
                    .filter(|(_, v)| v.is_table())
                    .map(|(k, _)| k.clone())
                    .collect(),
                tenants: users_of(&tenants, &p.id),
                id: p.id,
                version: p.version,
                updated_at: p.updated_at,
            })
            .collect())
    }

    /// Create a platform (its `id` names it); an existing id is a conflict.
    pub async fn create_platform(
        &self,
        doc: &toml::Table,
        base_dir: Option<PathBuf>,
        actor: &str,
    ) -> Result<WrittenPlatform, StoreError> {
        let Some(id) = doc.get("id").and_then(toml::Value::as_str) else {
            let errors = build_platform(doc, Path::new("."), self.http_timeout)
                .err()
                .unwrap_or_else(|| ConfigErrors(vec![FieldError::new("id", "required")]));
            return Err(StoreError::Invalid(errors));
        };
        if self.get_platform(id).await?.is_some() {
            return Err(StoreError::Conflict(format!(
                "platform {id:?} already exists"
            )));
        }
        self.put_platform(id, doc, base_dir, actor, None).await
    }

    /// Create or replace platform `id`. `{ set = true }` keeps a stored secret; with
    /// `expected`, only that version is changed. Every tenant that names the platform must
    /// still build with the new credentials, or nothing is written.
    pub async fn put_platform(
        &self,
        id: &str,
        doc: &toml::Table,
        base_dir: Option<PathBuf>,
        actor: &str,
        expected: Option<i64>,
    ) -> Result<WrittenPlatform, StoreError> {
        let mut doc = doc.clone();
        match doc.get("id").and_then(toml::Value::as_str) {
            None => {
                doc.insert("id".to_owned(), toml::Value::String(id.to_owned()));
            }
            Some(other) if other != id => {
                return Err(StoreError::Invalid(ConfigErrors(vec![FieldError::new(
                    "id",
                    format!(
                        "is {other:?} but the platform addressed is {id:?}; the id of a platform cannot change"
                    ),
                )])));
            }
            Some(_) => {}
        }
        let incoming = to_storage_form(&doc);
        let key = key_of(id);
        let tenants = self.load_all().await?;
        let (others, _) = self.platform_book().await?;
        let written = self
            .modify_document(&key, actor, expected, |current| {
                let base = base_dir
                    .clone()
                    .or_else(|| current.map(|c| c.base_dir.clone()))
                    .unwrap_or_else(|| self.platforms_dir.clone());
                let merged = merge_kept_secrets(&incoming, current.map(|c| &c.document))
                    .map_err(contract_paths)?;
                let platform =
                    build_platform(&from_storage_form(&merged), &base, self.http_timeout)?;
                check_users(&tenants, &others, platform, self.http_timeout)?;
                self.secrets.seal(&key, &merged)?;
                Ok(Plan {
                    action: if current.is_some() {
                        "update"
                    } else {
                        "create"
                    },
                    endpoints: merged.clone(),
                    after: Some(merged),
                    base_dir: base,
                    retire: Vec::new(),
                })
            })
            .await?;
        platform_written(written)
    }

    /// Delete a platform. Refused while a tenant names it. Versions and audit entries stay.
    pub async fn delete_platform(&self, id: &str, actor: &str) -> Result<(), StoreError> {
        let users = users_of(&self.load_all().await?, id);
        if !users.is_empty() {
            return Err(StoreError::Conflict(format!(
                "platform {id:?} is used by tenant(s) {}; move them off it first",
                users.join(", ")
            )));
        }
        self.modify_document(&key_of(id), actor, None, |current| {
            let current = current
                .ok_or_else(|| StoreError::NotFound(format!("platform {id:?} not found")))?;
            Ok(Plan::delete(current))
        })
        .await
        .map(|_| ())
    }

    /// Create every platform of `dir` (`*.toml`) that the database does not have yet (the
    /// database wins, as for tenants). A missing folder imports nothing; an invalid file fails
    /// the import with its problems.
    pub async fn import_platform_dir(&self, dir: &Path, actor: &str) -> Result<usize, StoreError> {
        let paths = super::import::toml_files(dir)?;
        let mut created = 0;
        let mut problems = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| StoreError::Io(format!("cannot read {}: {e}", path.display())))?;
            let doc = parse_toml(&text)?;
            let base = folder_of(&path)?;
            match self.create_platform(&doc, Some(base), actor).await {
                Ok(_) => created += 1,
                Err(StoreError::Conflict(_)) => {}
                Err(StoreError::Invalid(errors)) => {
                    problems.push(super::FileProblem { path, errors })
                }
                Err(e) => return Err(e),
            }
        }
        if problems.is_empty() {
            Ok(created)
        } else {
            Err(StoreError::InvalidFiles(problems))
        }
    }
}

/// The tenants whose provider tables name platform `id`.
fn users_of(tenants: &[StoredTenant], id: &str) -> Vec<String> {
    tenants
        .iter()
        .filter(|t| {
            t.document
                .get("providers")
                .and_then(toml::Value::as_table)
                .is_some_and(|p| {
                    p.values()
                        .filter_map(toml::Value::as_table)
                        .any(|table| platform_of(table) == Some(id))
                })
        })
        .map(|t| t.id.clone())
        .collect()
}

/// Every tenant that names `platform` must still build with it; their problems are reported as
/// `tenants.<id>.<path>`.
fn check_users(
    tenants: &[StoredTenant],
    others: &Platforms,
    platform: Platform,
    timeout: std::time::Duration,
) -> Result<(), StoreError> {
    let id = platform.id.clone();
    let mut book = others.clone();
    book.0.insert(id.clone(), platform);
    let mut errors = Vec::new();
    for tenant in tenants {
        if !users_of(std::slice::from_ref(tenant), &id).is_empty()
            && let Err(e) = build_tenant_with(&tenant.document, &tenant.base_dir, timeout, &book)
        {
            errors.extend(e.0.into_iter().map(|f| {
                FieldError::new(
                    format!("tenants.{}.{}", tenant.id, f.field),
                    format!(
                        "this change would break tenant {:?}: {}",
                        tenant.id, f.message
                    ),
                )
            }));
        }
    }
    book.wipe();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Invalid(ConfigErrors(errors)))
    }
}

fn platform_written(written: Written) -> Result<WrittenPlatform, StoreError> {
    let created = written.created;
    let platform = StoredPlatform::of(written.tenant)
        .ok_or_else(|| StoreError::Corrupt("a platform write returned a tenant".to_owned()))?;
    Ok(WrittenPlatform { created, platform })
}
