//! paybridge-admin: the tenant config store (versioned, audited, secrets encrypted at rest), its
//! validation through the provider factories, the admin HTTP API, the operators' web page and the
//! `paybridge-admin` CLI.
//!
//! - [`store`]: [`TenantStore`] on sea-orm, its tables and migrations.
//! - [`secrets`]: [`MasterKey`] (AES-256-GCM) and the sealing of a document's secret fields.
//! - [`document`]: which fields are secrets, masking as `{ set = true }`, merging kept secrets.
//! - [`format`]: TOML and JSON forms of a document.
//! - [`diff`]: the masked field-by-field diff of the audit log.
//! - [`api`]: actix-web handlers under `/admin/api/`, with utoipa annotations.
//! - [`web`]: the page at `/admin/`.
//! - [`cli`]: the `paybridge-admin` command line.
//!
//! # Wiring into the server
//!
//! 1. After the server's own migrations: `paybridge_admin::store::migrate(&db)` (idempotent,
//!    tracked in `admin_seaql_migrations`), or append [`store::migrations`] to its migrator.
//! 2. `let key = MasterKey::from_env(&config.secrets.master_key_env)?;` then
//!    `TenantStore::new(db, key).permit_plaintext_secrets(<server's sandbox-only decision>)
//!    .with_tenants_dir(&config.tenants.dir).with_http_timeout(config.outbound_timeout())`.
//! 3. At start-up: `store.import_dir(&config.tenants.dir, false, "bootstrap")` (creates only
//!    missing tenants), then `store.load_all()` and
//!    [`StoredTenant::build_for_serving`] for each tenant into the registry.
//! 4. Poll [`TenantStore::config_version`] (and [`StoredTenant::next_key_expiry`]); reload
//!    when it changes.
//! 5. HTTP: `app_data(web::Data::new(AdminState::new(store, tokens)...))`, the API with
//!    `cfg.configure(paybridge_admin::api::routes)` (utoipa-actix-web), the page with
//!    `app.configure(paybridge_admin::web::routes)`, and [`api::AdminSecurity`] as an OpenAPI
//!    modifier.

pub mod api;
pub mod cli;
pub mod diff;
pub mod document;
pub mod format;
pub mod secrets;
pub mod store;
pub mod web;

#[cfg(test)]
mod test_support;

pub use api::{AdminState, AdminTokens};
pub use secrets::{MasterKey, SecretsError};
pub use store::{StoreError, StoredTenant, TenantStore};
