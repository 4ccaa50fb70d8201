//! The admin HTTP API under `/admin/api/`, for operators (`Authorization: Bearer <admin token>`).
//!
//! The host registers [`AdminState`] as `web::Data<AdminState>` app data and the handlers with
//! [`routes`] (utoipa-actix-web, so they appear in its OpenAPI document under tag `admin` with
//! security scheme `admin`, added by [`AdminSecurity`]).

mod auth;
mod error;
pub mod misc;
mod negotiate;
pub mod platforms;
pub mod tenants;

use std::sync::Arc;
use std::time::Duration;

use utoipa::Modify;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

pub use auth::{ADMIN_TOKEN_ENV, AdminAuth, AdminTokens, AdminWrite, Role};
pub use error::{AdminError, AdminErrorBody, AdminErrorDetail, FieldProblem};
pub use misc::{audit_log, provider_kinds, validate_config};
pub use negotiate::TOML;
pub use platforms::{create_platform, delete_platform, get_platform, list_platforms, put_platform};
pub use tenants::{
    authorize_provider, create_tenant, delete_tenant, disable_provider, enable_provider,
    get_tenant, list_tenants, put_tenant, rotate_api_key,
};

use crate::store::TenantStore;

/// The default grace period of a rotated API key: one day.
pub const DEFAULT_KEY_GRACE: Duration = Duration::from_secs(86_400);

/// Everything the admin handlers need; register it as `web::Data<AdminState>`.
#[derive(Clone)]
pub struct AdminState {
    /// The tenant store.
    pub store: TenantStore,
    /// Accepted admin tokens.
    pub tokens: AdminTokens,
    /// How long a rotated API key keeps working (`[admin] key_grace_seconds`).
    pub key_grace: Duration,
    on_change: Option<ChangeListener>,
    rate_limit: Option<RateLimit>,
}

/// Whether a request of this admin (its `actor`) may be served now.
pub type RateLimit = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Called after every committed change; the answer is sent once its future completes, so a
/// listener that rebuilds the serving registry makes the change live for the very next request.
pub type ChangeListener =
    Arc<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("tokens", &self.tokens)
            .field("key_grace", &self.key_grace)
            .finish_non_exhaustive()
    }
}

impl AdminState {
    /// State with the default key grace period and no change listener.
    pub fn new(store: TenantStore, tokens: AdminTokens) -> Self {
        AdminState {
            store,
            tokens,
            key_grace: DEFAULT_KEY_GRACE,
            on_change: None,
            rate_limit: None,
        }
    }

    /// Refuse an admin's requests with `429 rate_limited` while `allowed(actor)` says no.
    pub fn with_rate_limit(
        mut self,
        allowed: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.rate_limit = Some(Arc::new(allowed));
        self
    }

    /// Whether this admin may be served now.
    pub(crate) fn allowed(&self, actor: &str) -> bool {
        self.rate_limit
            .as_ref()
            .is_none_or(|allowed| allowed(actor))
    }

    /// Set the grace period of rotated keys.
    pub fn with_key_grace(mut self, grace: Duration) -> Self {
        self.key_grace = grace;
        self
    }

    /// Await `listener` after every committed change made through the API, before answering
    /// (e.g. to rebuild this instance's registry, so the change is live for the next request;
    /// other instances see it at their next poll of the config version).
    pub fn on_change<F, Fut>(mut self, listener: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.on_change = Some(Arc::new(move || Box::pin(listener())));
        self
    }

    pub(crate) async fn changed(&self) {
        if let Some(listener) = &self.on_change {
            listener().await;
        }
    }
}

/// Register every admin API handler (full paths under `/admin/api/`).
pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_tenants)
        .service(create_tenant)
        .service(get_tenant)
        .service(put_tenant)
        .service(delete_tenant)
        .service(enable_provider)
        .service(disable_provider)
        .service(rotate_api_key)
        .service(authorize_provider)
        .service(list_platforms)
        .service(create_platform)
        .service(get_platform)
        .service(put_platform)
        .service(delete_platform)
        .service(validate_config)
        .service(provider_kinds)
        .service(audit_log);
}

/// Register the handlers on a plain actix `ServiceConfig` (no OpenAPI collection).
pub fn actix_routes(cfg: &mut actix_web::web::ServiceConfig) {
    routes(&mut utoipa_actix_web::service_config::ServiceConfig::new(
        cfg,
    ));
}

/// Adds the `admin` bearer security scheme the handlers refer to.
pub struct AdminSecurity;

impl Modify for AdminSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[cfg(test)]
mod tests;
