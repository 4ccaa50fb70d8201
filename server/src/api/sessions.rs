//! Merchant API: a provider login (WeChat mini-program `wx.login()` code → openid).

use actix_web::{HttpResponse, post, web};

use crate::api::auth::AuthTenant;
use crate::error::{ApiError, provider_error};
use crate::state::AppState;
use crate::views::{ErrorBody, SessionRequest, SessionResponse};

/// Exchange a client login code for the payer's openid (e.g. `POST /v1/wechat_miniprogram/sessions`).
/// The session key stays on the server.
#[utoipa::path(
    tag = "sessions",
    params(("provider" = String, Path, description = "Provider kind, e.g. `wechat_miniprogram`")),
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
    body: web::Json<SessionRequest>,
) -> Result<HttpResponse, ApiError> {
    let kind = path.into_inner();
    let provider = crate::service::enabled_provider(&auth.0, &kind)?;
    if body.code.is_empty() || body.code.len() > 128 {
        return Err(ApiError::invalid(
            "code",
            "must be the 1-128 character code from wx.login()",
        ));
    }
    let session = provider.login(&body.code).await;
    state.metrics.inc(
        "paybridge_provider_calls_total",
        &[
            ("provider", provider.kind()),
            ("call", "login"),
            ("outcome", if session.is_ok() { "ok" } else { "error" }),
        ],
    );
    let session = session.map_err(|e| provider_error(&kind, e))?;
    Ok(HttpResponse::Ok().json(SessionResponse {
        openid: session.openid,
        unionid: session.unionid,
    }))
}
