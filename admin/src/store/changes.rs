//! The changes an operator makes to a tenant: create, replace, delete, switch a provider, rotate
//! the API keys. Each builds the new document from the current one and validates it; the
//! transaction is [`super::write`]'s.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use paybridge_core::platform::Platforms;
use paybridge_core::provider::{AuthorizationGrant, FieldError};
use paybridge_core::tenant::{ConfigErrors, hash_api_key};
use secrecy::SecretString;

use super::write::{Plan, Written};
use super::{StoreError, StoredTenant, TenantStore};
use crate::document::merge_kept_secrets;
use crate::secrets::SecretsError;
use crate::secrets::with_platform_endpoints;

/// A fresh tenant API key: `pk_` and 32 random bytes in base64url.
pub fn generate_api_key() -> Result<SecretString, StoreError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| SecretsError::Crypto)?;
    Ok(SecretString::from(format!(
        "pk_{}",
        URL_SAFE_NO_PAD.encode(bytes)
    )))
}

impl TenantStore {
    /// Create a tenant from a plaintext document (its `id` names it). An existing id is a
    /// [`StoreError::Conflict`]. `base_dir` defaults to the tenants folder.
    pub async fn create(
        &self,
        doc: &toml::Table,
        base_dir: Option<PathBuf>,
        actor: &str,
    ) -> Result<Written, StoreError> {
        let platforms = self.platform_book().await?.0;
        let base = base_dir.unwrap_or_else(|| self.tenants_dir.clone());
        let Some(id) = doc.get("id").and_then(toml::Value::as_str) else {
            // Report every problem of the document, not only the missing id.
            self.plan_document("create", doc, None, base, &platforms)?;
            return Err(invalid("id", "required"));
        };
        self.modify(id, actor, None, |current| {
            if current.is_some() {
                return Err(StoreError::Conflict(format!(
                    "tenant {id:?} already exists"
                )));
            }
            self.plan_document("create", doc, None, base.clone(), &platforms)
        })
        .await
    }

    /// Create or replace tenant `id` (a document without `id` gets this one). `{ set = true }`
    /// keeps a stored secret. With `expected`,
    /// the change applies only to that version. A new tenant gets `base_dir` (default: the
    /// tenants folder); an existing one keeps its folder unless `base_dir` is given.
    pub async fn put(
        &self,
        id: &str,
        doc: &toml::Table,
        base_dir: Option<PathBuf>,
        actor: &str,
        expected: Option<i64>,
    ) -> Result<Written, StoreError> {
        let platforms = self.platform_book().await?.0;
        let mut doc = doc.clone();
        if !doc.contains_key("id") {
            doc.insert("id".to_owned(), toml::Value::String(id.to_owned()));
        }
        let doc = &doc;
        self.checked_id(doc, Some(id))?;
        self.modify(id, actor, expected, |current| {
            let base = base_dir
                .clone()
                .or_else(|| current.map(|c| c.base_dir.clone()))
                .unwrap_or_else(|| self.tenants_dir.clone());
            let action = if current.is_some() {
                "update"
            } else {
                "create"
            };
            self.plan_document(action, doc, current, base, &platforms)
        })
        .await
    }

    /// Delete a tenant; its keys, retired ones included, stop working. Its versions and audit
    /// entries stay.
    pub async fn delete(&self, id: &str, actor: &str) -> Result<(), StoreError> {
        self.modify(id, actor, None, |current| {
            let current = current.ok_or_else(|| StoreError::tenant_not_found(id))?;
            Ok(Plan::delete(current))
        })
        .await
        .map(|_| ())
    }

    /// Turn a configured provider on or off.
    pub async fn set_provider_enabled(
        &self,
        id: &str,
        kind: &str,
        enabled: bool,
        actor: &str,
    ) -> Result<Written, StoreError> {
        let platforms = self.platform_book().await?.0;
        self.modify(id, actor, None, |current| {
            let current = current.ok_or_else(|| StoreError::tenant_not_found(id))?;
            let mut doc = current.document.clone();
            let table = doc
                .get_mut("providers")
                .and_then(toml::Value::as_table_mut)
                .and_then(|p| p.get_mut(kind))
                .and_then(toml::Value::as_table_mut)
                .ok_or_else(|| {
                    StoreError::NotFound(format!(
                        "provider {kind:?} is not configured for tenant {id:?}; add its [providers.{kind}] table first"
                    ))
                })?;
            table.insert("enabled".to_owned(), toml::Value::Boolean(enabled));
            let action = if enabled { "enable_provider" } else { "disable_provider" };
            self.plan_document(
                action,
                &doc,
                Some(current),
                current.base_dir.clone(),
                &platforms,
            )
        })
        .await
    }

    /// Replace every API key of the tenant with a new one and return it (shown once, stored only
    /// as its digest). The old keys keep working for `grace`.
    pub async fn rotate_api_key(
        &self,
        id: &str,
        grace: Duration,
        actor: &str,
    ) -> Result<(SecretString, Written), StoreError> {
        let platforms = self.platform_book().await?.0;
        let key = generate_api_key()?;
        let digest = hash_api_key(secrecy::ExposeSecret::expose_secret(&key));
        let expires =
            Utc::now() + chrono::Duration::from_std(grace).unwrap_or(chrono::TimeDelta::MAX);
        let written = self
            .modify(id, actor, None, |current| {
                let current = current.ok_or_else(|| StoreError::tenant_not_found(id))?;
                let mut doc = current.document.clone();
                let old: Vec<String> = doc
                    .get("api_keys")
                    .and_then(toml::Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(toml::Value::as_str)
                            .filter_map(|s| s.strip_prefix("sha256:"))
                            .map(str::to_ascii_lowercase)
                            .collect()
                    })
                    .unwrap_or_default();
                doc.insert(
                    "api_keys".to_owned(),
                    toml::Value::Array(vec![toml::Value::String(digest.clone())]),
                );
                let mut plan = self.plan_document(
                    "rotate_api_key",
                    &doc,
                    Some(current),
                    current.base_dir.clone(),
                    &platforms,
                )?;
                if !grace.is_zero() {
                    plan.retire = old.into_iter().map(|d| (d, expires)).collect();
                }
                Ok(plan)
            })
            .await?;
        Ok((key, written))
    }

    /// Exchange a merchant's grant for its new authorisation at the provider (Alipay third-party
    /// apps: `alipay.open.auth.token.app`) and write the keys it returns (the new token) into the
    /// tenant's provider table: a new version with its audit entry, secrets masked. Returns the
    /// write and how long the authorisation lasts.
    pub async fn authorize_provider(
        &self,
        id: &str,
        kind: &str,
        grant: &AuthorizationGrant,
        actor: &str,
    ) -> Result<(Written, Option<i64>), StoreError> {
        let platforms = self.platform_book().await?.0;
        let current = self
            .get(id)
            .await?
            .ok_or_else(|| StoreError::tenant_not_found(id))?;
        let tenant = current.build(self.http_timeout, &platforms)?;
        let provider = tenant.any_provider(kind).cloned().ok_or_else(|| {
            StoreError::NotFound(format!(
                "provider {kind:?} is not configured for tenant {id:?}"
            ))
        })?;
        drop(tenant);
        let authorization = provider
            .authorize(grant)
            .await
            .map_err(StoreError::Provider)?;
        let written = self
            .modify(id, actor, None, |current| {
                let current = current.ok_or_else(|| StoreError::tenant_not_found(id))?;
                let mut doc = current.document.clone();
                for (key, value) in &authorization.config {
                    crate::document::set_path(
                        &mut doc,
                        &["providers".to_owned(), kind.to_owned(), key.clone()],
                        toml::Value::String(secrecy::ExposeSecret::expose_secret(value).to_owned()),
                    );
                }
                self.plan_document(
                    "authorize",
                    &doc,
                    Some(current),
                    current.base_dir.clone(),
                    &platforms,
                )
            })
            .await?;
        Ok((written, authorization.expires_in))
    }

    /// Validate a document as saving it would (kept secrets merged from the stored tenant of the
    /// same id, if any, and the secret policy applied), without saving. Returns the tenant id.
    /// `base_dir` defaults to the stored tenant's folder, else the tenants folder.
    pub async fn check(
        &self,
        doc: &toml::Table,
        base_dir: Option<PathBuf>,
    ) -> Result<String, StoreError> {
        let platforms = self.platform_book().await?.0;
        let current = match doc.get("id").and_then(toml::Value::as_str) {
            Some(id) => self.get(id).await?,
            None => None,
        };
        let base = base_dir.unwrap_or_else(|| {
            current
                .as_ref()
                .map_or_else(|| self.tenants_dir.clone(), |c| c.base_dir.clone())
        });
        self.plan_document("validate", doc, current.as_ref(), base, &platforms)?;
        self.checked_id(doc, None)
    }

    /// The document's id, which must be a string and, with `expected`, equal to it.
    fn checked_id(&self, doc: &toml::Table, expected: Option<&str>) -> Result<String, StoreError> {
        let id = doc.get("id").and_then(toml::Value::as_str);
        match (id, expected) {
            (Some(id), Some(want)) if id != want => Err(invalid(
                "id",
                format!(
                    "is {id:?} but the tenant addressed is {want:?}; the id of a tenant cannot change"
                ),
            )),
            (Some(id), _) => Ok(id.to_owned()),
            (None, _) => Err(invalid("id", "required")),
        }
    }

    /// Merge kept secrets, validate, and check that the secrets can be stored.
    pub(super) fn plan_document(
        &self,
        action: &'static str,
        incoming: &toml::Table,
        current: Option<&StoredTenant>,
        base_dir: PathBuf,
        platforms: &Platforms,
    ) -> Result<Plan, StoreError> {
        let merged = merge_kept_secrets(incoming, current.map(|c| &c.document))?;
        self.validate(&merged, &base_dir, platforms)?;
        let id = self.checked_id(&merged, None)?;
        let endpoints = with_platform_endpoints(&merged, platforms);
        self.secrets.seal_as(&id, &merged, &endpoints)?;
        Ok(Plan {
            action,
            after: Some(merged),
            base_dir,
            retire: Vec::new(),
            endpoints,
        })
    }
}

fn invalid(field: &str, message: impl Into<String>) -> StoreError {
    StoreError::Invalid(ConfigErrors(vec![FieldError::new(field, message)]))
}
