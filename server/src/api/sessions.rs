//! Merchant API: a provider login (WeChat mini-program `wx.login()` code → openid).

use actix_web::{HttpResponse, post, web};

use crate::api::auth::AuthTenant;
use crate::api::body::JsonBody;
use crate::api::error::ApiError;
use crate::api::views::{ErrorBody, SessionRequest, SessionResponse};
use crate::state::AppState;
use crate::usecases::sessions;

/// Exchange a client login code for the payer's openid (e.g. `POST /v1/wechat_miniprogram/sessions`).
/// The session key stays on the server.
#[utoipa::path(
    tag = "sessions",
    params(("provider" = String, Path, description = "Provider kind, e.g. `wechat_miniprogram`"), ("Idempotency-Key" = Option<String>, Header, description = "Optional, 1-255 printable ASCII characters: a retry with the same key and request gets the first answer (status and body) with `Idempotent-Replayed: true`; the key with another request is 422 `idempotency_key_reused`, while its first request runs 409 `idempotency_key_in_use`. Kept 24 h ([idempotency] ttl_seconds).")),
    request_body = SessionRequest,
    responses(
        (status = 200, description = "The payer's identity", body = SessionResponse),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 422, description = "Invalid or used code (`invalid_code`, `code_used`), provider not enabled, or no login support", body = ErrorBody),
        (status = 429, description = "Rate limited by the provider", body = ErrorBody),
        (status = 502, description = "Provider failed", body = ErrorBody),
        (status = 504, description = "Provider timed out", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/v1/{provider}/sessions")]
pub async fn create_session(
    state: web::Data<AppState>,
    auth: AuthTenant,
    path: web::Path<String>,
    body: JsonBody<SessionRequest>,
) -> Result<HttpResponse, ApiError> {
    let kind = path.into_inner();
    let session = sessions::login(&state, &auth.0, &kind, &body.code).await?;
    Ok(HttpResponse::Ok().json(SessionResponse {
        openid: session.openid,
        unionid: session.unionid,
    }))
}
