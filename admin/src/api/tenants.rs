//! Tenants: list, create, read, replace, delete, switch providers, rotate API keys. Every
//! document that leaves is masked: a secret shows as `{"set": true}`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use secrecy::ExposeSecret;
use serde::Serialize;
use utoipa::ToSchema;

use super::AdminState;
use super::auth::{AdminAuth, AdminWrite};
use super::error::{AdminError, AdminErrorBody};
use super::negotiate::{document, if_match, read_document, reply};
use crate::document::mask;
use crate::store::{StoredTenant, TenantSummary};

/// `GET /admin/api/tenants`
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    /// Every tenant, by id.
    pub tenants: Vec<TenantSummary>,
}

/// A new API key, shown once.
#[derive(Serialize, ToSchema)]
pub struct RotatedKey {
    /// The new key; only its digest is stored. Old keys keep working for the grace period.
    pub api_key: String,
}

fn masked(req: &HttpRequest, status: StatusCode, tenant: &StoredTenant) -> HttpResponse {
    document(req, status, &mask(&tenant.document), tenant.version)
}

/// List tenants with their providers.
#[utoipa::path(
    tag = "admin",
    responses(
        (status = 200, description = "Every tenant", body = TenantList),
        (status = 401, description = "Missing or unknown admin token", body = AdminErrorBody),
    ),
    security(("admin" = []))
)]
#[get("/admin/api/tenants")]
pub async fn list_tenants(
    state: web::Data<AdminState>,
    _auth: AdminAuth,
    req: HttpRequest,
) -> Result<HttpResponse, AdminError> {
    let tenants = state.store.list().await?;
    reply(&req, StatusCode::OK, &TenantList { tenants })
}

/// Create a tenant from a document (TOML or JSON); its `id` names it.
#[utoipa::path(
    tag = "admin",
    request_body(description = "The tenant document", content(("application/toml"), ("application/json"))),
    responses(
        (status = 201, description = "Created; the masked document", content(("application/json"), ("application/toml"))),
        (status = 401, description = "Missing or unknown admin token", body = AdminErrorBody),
        (status = 409, description = "A tenant with this id exists", body = AdminErrorBody),
        (status = 422, description = "Invalid document (`invalid_config` lists every bad field) or a secret without a master key (`master_key_required`)", body = AdminErrorBody),
    ),
    security(("admin" = []))
)]
#[post("/admin/api/tenants")]
pub async fn create_tenant(
    state: web::Data<AdminState>,
    auth: AdminWrite,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let doc = read_document(&req, &body)?;
    let written = state.store.create(&doc, None, &auth.actor).await?;
    state.changed().await;
    Ok(masked(&req, StatusCode::CREATED, &written.tenant))
}

/// Get a tenant's document, masked. The `ETag` is its version.
#[utoipa::path(
    tag = "admin",
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The masked document", content(("application/json"), ("application/toml"))),
        (status = 401, description = "Missing or unknown admin token", body = AdminErrorBody),
        (status = 404, description = "No such tenant", body = AdminErrorBody),
    ),
    security(("admin" = []))
)]
#[get("/admin/api/tenants/{id}")]
pub async fn get_tenant(
    state: web::Data<AdminState>,
    _auth: AdminAuth,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let tenant = state.store.get(&path).await?.ok_or_else(|| {
        AdminError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("tenant {:?} not found", path.as_str()),
        )
    })?;
    Ok(masked(&req, StatusCode::OK, &tenant))
}

/// Create or replace a tenant. `{"set": true}` keeps a stored secret; `If-Match: "<version>"`
/// makes the change conditional.
#[utoipa::path(
    tag = "admin",
    params(("id" = String, Path, description = "Tenant id")),
    request_body(description = "The tenant document", content(("application/toml"), ("application/json"))),
    responses(
        (status = 200, description = "Replaced; the masked document", content(("application/json"), ("application/toml"))),
        (status = 201, description = "Created; the masked document", content(("application/json"), ("application/toml"))),
        (status = 401, description = "Missing or unknown admin token", body = AdminErrorBody),
        (status = 412, description = "If-Match names another version", body = AdminErrorBody),
        (status = 422, description = "Invalid document (`invalid_config` lists every bad field)", body = AdminErrorBody),
    ),
    security(("admin" = []))
)]
#[put("/admin/api/tenants/{id}")]
pub async fn put_tenant(
    state: web::Data<AdminState>,
    auth: AdminWrite,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let doc = read_document(&req, &body)?;
    let expected = if_match(&req)?;
    let written = state
        .store
        .put(&path, &doc, None, &auth.actor, expected)
        .await?;
    state.changed().await;
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(masked(&req, status, &written.tenant))
}

/// Delete a tenant: its API keys stop working at once. History and audit entries stay.
#[utoipa::path(
    tag = "admin",
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or unknown admin token", body = AdminErrorBody),
        (status = 404, description = "No such tenant", body = AdminErrorBody),
    ),
    security(("admin" = []))
)]
#[delete("/admin/api/tenants/{id}")]
pub async fn delete_tenant(
    state: web::Data<AdminState>,
    auth: AdminWrite,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    state.store.delete(&path, &auth.actor).await?;
    state.changed().await;
    Ok(HttpResponse::NoContent().finish())
}

async fn switch(
    state: &AdminState,
    auth: &AdminWrite,
    req: &HttpRequest,
    path: &(String, String),
    enabled: bool,
) -> Result<HttpResponse, AdminError> {
    let written = state
        .store
        .set_provider_enabled(&path.0, &path.1, enabled, &auth.actor)
        .await?;
    state.changed().await;
    Ok(masked(req, StatusCode::OK, &written.tenant))
}

/// Turn a configured provider on for new orders.
#[utoipa::path(
    tag = "admin",
    params(("id" = String, Path, description = "Tenant id"), ("kind" = String, Path, description = "Provider kind")),
    responses(
        (status = 200, description = "The masked document", content(("application/json"), ("application/toml"))),
        (status = 401, description = "Missing or unknown admin token", body = AdminErrorBody),
        (status = 404, description = "No such tenant, or the provider is not configured", body = AdminErrorBody),
        (status = 422, description = "The resulting document is invalid", body = AdminErrorBody),
    ),
    security(("admin" = []))
)]
#[post("/admin/api/tenants/{id}/providers/{kind}/enable")]
pub async fn enable_provider(
    state: web::Data<AdminState>,
    auth: AdminWrite,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AdminError> {
    switch(&state, &auth, &req, &path, true).await
}

/// Turn a provider off for new orders (it still verifies notifications of existing orders).
#[utoipa::path(
    tag = "admin",
    params(("id" = String, Path, description = "Tenant id"), ("kind" = String, Path, description = "Provider kind")),
    responses(
        (status = 200, description = "The masked document", content(("application/json"), ("application/toml"))),
        (status = 401, description = "Missing or unknown admin token", body = AdminErrorBody),
        (status = 404, description = "No such tenant, or the provider is not configured", body = AdminErrorBody),
    ),
    security(("admin" = []))
)]
#[post("/admin/api/tenants/{id}/providers/{kind}/disable")]
pub async fn disable_provider(
    state: web::Data<AdminState>,
    auth: AdminWrite,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AdminError> {
    switch(&state, &auth, &req, &path, false).await
}

/// Replace the tenant's API keys with a new one, shown once. The old keys keep working for
/// `[admin] key_grace_seconds` (default 86400).
#[utoipa::path(
    tag = "admin",
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The new key", body = RotatedKey),
        (status = 401, description = "Missing or unknown admin token", body = AdminErrorBody),
        (status = 404, description = "No such tenant", body = AdminErrorBody),
    ),
    security(("admin" = []))
)]
#[post("/admin/api/tenants/{id}/api-keys/rotate")]
pub async fn rotate_api_key(
    state: web::Data<AdminState>,
    auth: AdminWrite,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let (key, _) = state
        .store
        .rotate_api_key(&path, state.key_grace, &auth.actor)
        .await?;
    state.changed().await;
    reply(
        &req,
        StatusCode::OK,
        &RotatedKey {
            api_key: key.expose_secret().to_owned(),
        },
    )
}

/// A merchant's grant to the platform, for `authorize`. Send one, or neither to refresh with
/// the stored `app_refresh_token`.
#[derive(Debug, Default, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeRequest {
    /// The one-time code of the merchant's new authorisation (Alipay `app_auth_code`).
    #[serde(default)]
    pub app_auth_code: Option<String>,
    /// A refresh token (Alipay `app_refresh_token`), instead of the stored one.
    #[serde(default)]
    pub refresh_token: Option<String>,
}

/// What `authorize` did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Authorized {
    /// The tenant's new version (its provider table holds the new token, masked here).
    pub version: i64,
    /// Seconds the new authorisation is valid, when the provider says.
    pub expires_in: Option<i64>,
    /// The masked tenant document.
    #[schema(value_type = Object)]
    pub tenant: serde_json::Value,
}

/// Renew a merchant's authorisation of its platform (Alipay third-party apps:
/// `alipay.open.auth.token.app`) and store the new token in the tenant's provider table, live at
/// once. After the merchant authorises again, send its `app_auth_code`; to refresh, send
/// nothing (the stored `app_refresh_token` is used) or a `refresh_token`.
#[utoipa::path(
    tag = "admin",
    params(("id" = String, Path, description = "Tenant id"), ("kind" = String, Path, description = "Provider kind")),
    request_body(content = AuthorizeRequest, description = "The grant", content_type = "application/json"),
    responses(
        (status = 200, description = "Renewed", body = Authorized),
        (status = 400, description = "No grant to use, or the provider has no authorisation", body = AdminErrorBody),
        (status = 401, description = "Missing or unknown admin token", body = AdminErrorBody),
        (status = 404, description = "No such tenant or provider", body = AdminErrorBody),
        (status = 422, description = "The provider refused the grant (`authorization_refused`)", body = AdminErrorBody),
        (status = 502, description = "The provider could not be reached", body = AdminErrorBody),
    ),
    security(("admin" = []))
)]
#[post("/admin/api/tenants/{id}/providers/{kind}/authorize")]
pub async fn authorize_provider(
    state: web::Data<AdminState>,
    auth: AdminWrite,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let request: AuthorizeRequest = if body.iter().all(u8::is_ascii_whitespace) {
        AuthorizeRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| AdminError::bad_request(format!("the body: {e}")))?
    };
    let grant = paybridge_core::provider::AuthorizationGrant {
        code: request.app_auth_code.map(secrecy::SecretString::from),
        refresh_token: request.refresh_token.map(secrecy::SecretString::from),
    };
    let (written, expires_in) = state
        .store
        .authorize_provider(&path.0, &path.1, &grant, &auth.actor)
        .await?;
    state.changed().await;
    reply(
        &req,
        StatusCode::OK,
        &Authorized {
            version: written.tenant.version,
            expires_in,
            tenant: crate::format::toml_to_json(&mask(&written.tenant.document)),
        },
    )
}
