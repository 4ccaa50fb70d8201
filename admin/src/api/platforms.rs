//! Platforms: the credentials of a WeChat Pay service provider or an Alipay third-party app,
//! which tenants name with `platform = "<id>"`. The same rules as tenant documents: TOML or
//! JSON, secrets masked as `{"set": true}`, `422` with `fields`, versions (`ETag`/`If-Match`),
//! audit, and live: a change is used by every tenant of the platform at once.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::AdminState;
use super::auth::{AdminAuth, AdminWrite};
use super::error::{AdminError, AdminErrorBody};
use super::negotiate::{document, if_match, read_document, reply};
use crate::store::{PlatformSummary, StoredPlatform};

/// `GET /admin/api/platforms`
#[derive(Debug, Serialize, ToSchema)]
pub struct PlatformList {
    /// Every platform, by id, with the tenants that use it.
    pub platforms: Vec<PlatformSummary>,
}

fn masked(req: &HttpRequest, status: StatusCode, platform: &StoredPlatform) -> HttpResponse {
    document(req, status, &platform.masked(), platform.version)
}

fn not_found(id: &str) -> AdminError {
    AdminError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("platform {id:?} not found"),
    )
}

/// List platforms.
#[utoipa::path(
    tag = "admin",
    responses(
        (status = 200, description = "Every platform", body = PlatformList),
        (status = 401, description = "Missing or unknown admin token", body = AdminErrorBody),
    ),
    security(("admin" = []))
)]
#[get("/admin/api/platforms")]
pub async fn list_platforms(
    state: web::Data<AdminState>,
    _auth: AdminAuth,
    req: HttpRequest,
) -> Result<HttpResponse, AdminError> {
    let platforms = state.store.list_platforms().await?;
    reply(&req, StatusCode::OK, &PlatformList { platforms })
}

/// Create a platform from a document (TOML or JSON): `id`, `name`, and a `[wechat_miniprogram]`
/// (service provider) and/or `[alipay_app]` (third-party app) section.
#[utoipa::path(
    tag = "admin",
    request_body(description = "The platform document", content(("application/toml"), ("application/json"))),
    responses(
        (status = 201, description = "Created; the masked document", content(("application/json"), ("application/toml"))),
        (status = 401, description = "Missing or unknown admin token", body = AdminErrorBody),
        (status = 409, description = "A platform with this id exists", body = AdminErrorBody),
        (status = 422, description = "Invalid document (`invalid_config` lists every bad field) or a secret without a master key (`master_key_required`)", body = AdminErrorBody),
    ),
    security(("admin" = []))
)]
#[post("/admin/api/platforms")]
pub async fn create_platform(
    state: web::Data<AdminState>,
    auth: AdminWrite,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let doc = read_document(&req, &body)?;
    let written = state.store.create_platform(&doc, None, &auth.actor).await?;
    state.changed().await;
    Ok(masked(&req, StatusCode::CREATED, &written.platform))
}

/// Get a platform's document, masked. The `ETag` is its version.
#[utoipa::path(
    tag = "admin",
    params(("id" = String, Path, description = "Platform id")),
    responses(
        (status = 200, description = "The masked document", content(("application/json"), ("application/toml"))),
        (status = 401, description = "Missing or unknown admin token", body = AdminErrorBody),
        (status = 404, description = "No such platform", body = AdminErrorBody),
    ),
    security(("admin" = []))
)]
#[get("/admin/api/platforms/{id}")]
pub async fn get_platform(
    state: web::Data<AdminState>,
    _auth: AdminAuth,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let platform = state
        .store
        .get_platform(&path)
        .await?
        .ok_or_else(|| not_found(&path))?;
    Ok(masked(&req, StatusCode::OK, &platform))
}

/// Create or replace a platform (a key rotation, for example). `{"set": true}` keeps a stored
/// secret; `If-Match: "<version>"` makes the change conditional. Refused with `422` if a tenant
/// of the platform would no longer build; otherwise every tenant of the platform uses the new
/// credentials for its next call.
#[utoipa::path(
    tag = "admin",
    params(("id" = String, Path, description = "Platform id")),
    request_body(description = "The platform document", content(("application/toml"), ("application/json"))),
    responses(
        (status = 200, description = "Replaced; the masked document", content(("application/json"), ("application/toml"))),
        (status = 201, description = "Created; the masked document", content(("application/json"), ("application/toml"))),
        (status = 401, description = "Missing or unknown admin token", body = AdminErrorBody),
        (status = 412, description = "If-Match names another version", body = AdminErrorBody),
        (status = 422, description = "Invalid document, or a tenant of the platform would break (`fields` names `tenants.<id>.…`)", body = AdminErrorBody),
    ),
    security(("admin" = []))
)]
#[put("/admin/api/platforms/{id}")]
pub async fn put_platform(
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
        .put_platform(&path, &doc, None, &auth.actor, expected)
        .await?;
    state.changed().await;
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(masked(&req, status, &written.platform))
}

/// Delete a platform; refused (`409`) while a tenant names it. History and audit stay.
#[utoipa::path(
    tag = "admin",
    params(("id" = String, Path, description = "Platform id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or unknown admin token", body = AdminErrorBody),
        (status = 404, description = "No such platform", body = AdminErrorBody),
        (status = 409, description = "Tenants still use it", body = AdminErrorBody),
    ),
    security(("admin" = []))
)]
#[delete("/admin/api/platforms/{id}")]
pub async fn delete_platform(
    state: web::Data<AdminState>,
    auth: AdminWrite,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    state.store.delete_platform(&path, &auth.actor).await?;
    state.changed().await;
    Ok(HttpResponse::NoContent().finish())
}
