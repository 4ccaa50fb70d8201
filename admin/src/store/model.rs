//! What the store hands out: decrypted tenants, listings, audit entries.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use paybridge_core::platform::Platforms;
use paybridge_core::tenant::{ConfigErrors, Tenant, build_tenant_with};
use serde::Serialize;
use utoipa::ToSchema;

use crate::diff::DiffEntry;

/// An API key digest replaced by a rotation, accepted until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredKey {
    /// Lowercase hex SHA-256 of the key, the form of `Tenant::api_key_hashes`.
    pub digest: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// A tenant as stored, with its document decrypted.
#[derive(Debug, Clone)]
pub struct StoredTenant {
    /// The tenant id.
    pub id: String,
    /// The document with secrets in plaintext. Mask it ([`crate::document::mask`]) before it
    /// leaves the process.
    pub document: toml::Table,
    /// The folder relative file paths resolve against: the imported file's folder, or the
    /// configured tenants folder for tenants created through the API.
    pub base_dir: PathBuf,
    /// The tenant's version, 1 for a new tenant.
    pub version: i64,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Rotated-out keys still inside their grace period.
    pub retired_keys: Vec<RetiredKey>,
}

impl StoredTenant {
    /// Zero the plaintext document in place (once the providers are built from it), so that its
    /// secrets do not linger in freed memory.
    pub fn wipe(&mut self) {
        paybridge_core::tenant::wipe_table(&mut self.document);
    }

    /// Validate the document and build its providers (what the server's registry holds), a
    /// provider table that names a platform from that platform's section.
    pub fn build(
        &self,
        http_timeout: Duration,
        platforms: &Platforms,
    ) -> Result<Tenant, ConfigErrors> {
        build_tenant_with(&self.document, &self.base_dir, http_timeout, platforms)
    }

    /// [`StoredTenant::build`], then also accept the retired keys still in their grace period
    /// at `now` (their digests are appended to `api_key_hashes`). Rebuild at
    /// [`StoredTenant::next_key_expiry`] so an expired key stops working.
    pub fn build_for_serving(
        &self,
        http_timeout: Duration,
        now: DateTime<Utc>,
        platforms: &Platforms,
    ) -> Result<Tenant, ConfigErrors> {
        let mut tenant = self.build(http_timeout, platforms)?;
        for key in self.retired_keys.iter().filter(|k| k.expires_at > now) {
            if !tenant.api_key_hashes.contains(&key.digest) {
                tenant.api_key_hashes.push(key.digest.clone());
            }
        }
        Ok(tenant)
    }

    /// When the first retired key stops working, if any is pending.
    pub fn next_key_expiry(&self) -> Option<DateTime<Utc>> {
        self.retired_keys.iter().map(|k| k.expires_at).min()
    }
}

/// A tenant in a listing (no secrets are decrypted to make it).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TenantSummary {
    /// The tenant id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Current version.
    pub version: i64,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Configured providers and whether each is on.
    pub providers: Vec<ProviderSummary>,
}

/// A provider of a tenant in a listing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderSummary {
    /// The provider kind.
    pub kind: String,
    /// Whether new orders may use it.
    pub enabled: bool,
}

/// One audit log entry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Sequence number.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: `admin:<token digest prefix>`, `cli:<user>`, `bootstrap`.
    pub actor: String,
    /// `create`, `update`, `delete`, `import`, `enable_provider`, `disable_provider`,
    /// `rotate_api_key`.
    pub action: String,
    /// The tenant.
    pub tenant_id: Option<String>,
    /// The platform, for a change to a platform document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform_id: Option<String>,
    /// What changed; secrets show as `{"set": true}`.
    pub diff: Vec<DiffEntry>,
}

/// The listing view of a document.
pub fn summarize(
    id: &str,
    version: i64,
    updated_at: DateTime<Utc>,
    doc: &toml::Table,
) -> TenantSummary {
    let providers = doc
        .get("providers")
        .and_then(toml::Value::as_table)
        .map(|t| {
            t.iter()
                .map(|(kind, v)| ProviderSummary {
                    kind: kind.clone(),
                    enabled: v
                        .get("enabled")
                        .and_then(toml::Value::as_bool)
                        .unwrap_or(true),
                })
                .collect()
        })
        .unwrap_or_default();
    TenantSummary {
        id: id.to_owned(),
        name: doc
            .get("name")
            .and_then(toml::Value::as_str)
            .unwrap_or(id)
            .to_owned(),
        version,
        updated_at,
        providers,
    }
}
