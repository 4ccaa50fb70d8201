//! Validation without saving, the provider kinds the factories offer, and the audit log.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use paybridge_core::provider::factories;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AdminState;
use super::auth::AdminAuth;
use super::error::{AdminError, AdminErrorBody};
use super::negotiate::{read_document, reply};
use crate::document::WEBHOOK_SECRET;
use crate::store::AuditEntry;

/// The answer of a successful validation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Validation {
    /// Always true (an invalid document is a 422).
    pub valid: bool,
    /// The tenant id of the document.
    pub id: String,
}

/// One config key of a provider kind.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldView {
    /// The key.
    pub name: String,
    /// Whether it must be present.
    pub required: bool,
    /// Whether it is a secret (shown only as `{"set": true}`, encrypted at rest).
    pub secret: bool,
    /// What it is.
    pub description: String,
}

/// A provider kind a tenant can configure under `[providers.<kind>]`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderKindView {
    /// e.g. `wechat_miniprogram`.
    pub kind: String,
    /// e.g. "WeChat Pay (mini-program)".
    pub display_name: String,
    /// Its keys, besides `enabled`.
    pub fields: Vec<FieldView>,
}

/// `GET /admin/api/provider-kinds`
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderKinds {
    /// Every linked provider, by kind.
    pub kinds: Vec<ProviderKindView>,
    /// Tenant-level secrets (besides the providers' secret fields).
    pub tenant_secrets: Vec<String>,
}

/// `GET /admin/api/audit`
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditLog {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
}

/// Filters of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Only this tenant's entries.
    pub tenant: Option<String>,
    /// Only this platform's entries.
    pub platform: Option<String>,
    /// Only this actor's entries (`admin:…`, `readonly:…`, `cli:…`, `bootstrap`).
    pub actor: Option<String>,
    /// Only this action's (`create`, `update`, `delete`, `sync_order`, `close_order`,
    /// `redeliver_event`, …).
    pub action: Option<String>,
    /// Entries older than this id (the next page: the last id of this one).
    pub before: Option<i64>,
    /// At most this many entries (default 100, at most 1000).
    pub limit: Option<u64>,
}

/// Validate a document as saving it would (kept secrets merged from the stored tenant of the
/// same id), without saving.
#[utoipa::path(
    tag = "admin",
    request_body(description = "The tenant document", content(("application/toml"), ("application/json"))),
    responses(
        (status = 200, description = "Valid", body = Validation),
        (status = 401, description = "Missing or unknown admin token", body = AdminErrorBody),
        (status = 422, description = "Invalid (`invalid_config` lists every bad field)", body = AdminErrorBody),
    ),
    security(("admin" = []))
)]
#[post("/admin/api/validate")]
pub async fn validate_config(
    state: web::Data<AdminState>,
    _auth: AdminAuth,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let doc = read_document(&req, &body)?;
    let id = state.store.check(&doc, None).await?;
    reply(&req, StatusCode::OK, &Validation { valid: true, id })
}

/// The provider kinds this build knows, with their fields (from the provider factories).
#[utoipa::path(
    tag = "admin",
    responses(
        (status = 200, description = "Provider kinds", body = ProviderKinds),
        (status = 401, description = "Missing or unknown admin token", body = AdminErrorBody),
    ),
    security(("admin" = []))
)]
#[get("/admin/api/provider-kinds")]
pub async fn provider_kinds(
    _auth: AdminAuth,
    req: HttpRequest,
) -> Result<HttpResponse, AdminError> {
    let kinds = factories()
        .into_iter()
        .map(|f| ProviderKindView {
            kind: f.kind.to_owned(),
            display_name: f.display_name.to_owned(),
            fields: f
                .fields
                .iter()
                .map(|s| FieldView {
                    name: s.name.to_owned(),
                    required: s.required,
                    secret: s.secret,
                    description: s.description.to_owned(),
                })
                .collect(),
        })
        .collect();
    reply(
        &req,
        StatusCode::OK,
        &ProviderKinds {
            kinds,
            tenant_secrets: vec![WEBHOOK_SECRET.to_owned()],
        },
    )
}

/// The audit log, newest first: who changed which tenant when, with a diff in which secrets
/// show only as `{"set": true}`.
#[utoipa::path(
    tag = "admin",
    params(AuditQuery),
    responses(
        (status = 200, description = "Audit entries", body = AuditLog),
        (status = 401, description = "Missing or unknown admin token", body = AdminErrorBody),
    ),
    security(("admin" = []))
)]
#[get("/admin/api/audit")]
pub async fn audit_log(
    state: web::Data<AdminState>,
    _auth: AdminAuth,
    req: HttpRequest,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, AdminError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let filter = crate::store::AuditFilter {
        tenant_id: query.tenant.clone().or_else(|| {
            query
                .platform
                .as_ref()
                .map(|p| format!("{}{p}", crate::store::PLATFORM_KEY_PREFIX))
        }),
        actor: query.actor.clone(),
        action: query.action.clone(),
        before_id: query.before,
    };
    let entries = state.store.audit_filtered(&filter, limit).await?;
    reply(&req, StatusCode::OK, &AuditLog { entries })
}
