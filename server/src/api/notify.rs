//! Provider notifications. No bearer auth: the provider's signature is the auth. The success
//! acknowledgement is sent only after the event's transaction committed (see the use case).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use paybridge_core::provider::NotifyChannel;

use crate::api::error::ApiError;
use crate::state::AppState;
use crate::usecases::notifications::{self, Received};

/// A payment notification from a provider.
#[utoipa::path(
    tag = "notifications",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        ("provider" = String, Path, description = "Provider kind"),
    ),
    request_body(content = String, description = "The provider's notification, as it sends it (XML, form)"),
    responses(
        (status = 200, description = "The provider's acknowledgement (success or failure body)"),
        (status = 400, description = "Undecodable body (with the provider's failure body)"),
        (status = 404, description = "Unknown tenant or provider"),
        (status = 413, description = "Body too large"),
    )
)]
#[post("/notify/{tenant}/{provider}")]
pub async fn payment_notification(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (tenant, kind) = path.into_inner();
    handle(&state, &tenant, &kind, NotifyChannel::Payment, &req, &body).await
}

/// A refund result notification from a provider (WeChat).
#[utoipa::path(
    tag = "notifications",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        ("provider" = String, Path, description = "Provider kind"),
    ),
    request_body(content = String, description = "The provider's refund notification"),
    responses(
        (status = 200, description = "The provider's acknowledgement (success or failure body)"),
        (status = 400, description = "Undecodable body"),
        (status = 404, description = "Unknown tenant or provider"),
        (status = 413, description = "Body too large"),
    )
)]
#[post("/notify/{tenant}/{provider}/refund")]
pub async fn refund_notification(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (tenant, kind) = path.into_inner();
    handle(&state, &tenant, &kind, NotifyChannel::Refund, &req, &body).await
}

async fn handle(
    state: &AppState,
    tenant_id: &str,
    kind: &str,
    channel: NotifyChannel,
    req: &HttpRequest,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    // Borrowed from the request, no copies; actix caps a request's headers (at most 96).
    let headers: Vec<(&str, &str)> = req
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let ack = notifications::receive(
        state,
        Received {
            tenant_id,
            kind,
            channel,
            content_type,
            body,
            headers: &headers,
            client_ip: state.limits.client_ip(
                req.peer_addr().map(|a| a.ip()),
                req.headers()
                    .get_all("x-forwarded-for")
                    .filter_map(|v| v.to_str().ok()),
            ),
        },
    )
    .await?;
    let status = ack
        .status
        .or(Some(ack.body.status))
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    Ok(HttpResponse::build(status)
        .content_type(ack.body.content_type)
        .body(ack.body.body))
}
