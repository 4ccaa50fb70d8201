//! Provider notifications. No bearer auth: the provider's signature is the auth. The success
//! acknowledgement is sent only after the event's transaction committed.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use async_trait::async_trait;
use paybridge_core::money::Fen;
use paybridge_core::provider::{
    AckBody, IncomingNotification, NotificationRejection, NotifyChannel, OrderLookup, OrderSnapshot,
};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::service;
use crate::state::AppState;
use crate::store::{ApplyError, Store};

struct TenantOrders<'a> {
    store: &'a Store,
    tenant_id: &'a str,
    kind: &'a str,
}

#[async_trait]
impl OrderLookup for TenantOrders<'_> {
    async fn find_order(&self, out_trade_no: &str) -> Option<OrderSnapshot> {
        let o = self
            .store
            .find_order(self.tenant_id, out_trade_no)
            .await
            .ok()??;
        (o.provider == self.kind).then(|| OrderSnapshot {
            amount: Fen::new(o.amount),
            provider_data: serde_json::from_str(&o.provider_data)
                .unwrap_or(serde_json::Value::Null),
        })
    }

    async fn find_refund(&self, out_trade_no: &str, out_refund_no: &str) -> Option<Fen> {
        let order = self
            .store
            .find_order(self.tenant_id, out_trade_no)
            .await
            .ok()??;
        if order.provider != self.kind {
            return None;
        }
        let refund = self
            .store
            .find_refund(self.tenant_id, out_trade_no, out_refund_no)
            .await
            .ok()??;
        Some(Fen::new(refund.amount))
    }
}

fn ack_response(ack: AckBody, status: Option<StatusCode>) -> HttpResponse {
    let status = status
        .or_else(|| StatusCode::from_u16(ack.status).ok())
        .unwrap_or(StatusCode::OK);
    HttpResponse::build(status)
        .content_type(ack.content_type)
        .body(ack.body)
}

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
    // The HTTP layer caps every body at the larger of the two limits; notifications have their own.
    if body.len() > state.config.http.max_notification_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "notification body too large",
        ));
    }
    let Some(tenant) = state.tenants.get(tenant_id) else {
        return Err(ApiError::not_found("tenant"));
    };
    // A disabled provider still verifies notifications of its existing orders: that money moved.
    let Some(provider) = tenant.any_provider(kind).cloned() else {
        return Err(ApiError::not_found("provider"));
    };
    let channel_name = match channel {
        NotifyChannel::Payment => "payment",
        NotifyChannel::Refund => "refund",
    };
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let incoming = IncomingNotification {
        channel,
        content_type,
        body,
    };
    let lookup = TenantOrders {
        store: &state.store,
        tenant_id,
        kind,
    };
    let body_sha = hex::encode(Sha256::digest(body));
    let verified = provider.verify_notification(&incoming, &lookup).await;
    let (outcome, out_trade_no, reason, response) = match verified {
        Ok(event) => {
            let out_trade_no = event.out_trade_no().to_owned();
            match service::apply_provider_event(state, tenant_id, kind, &event).await {
                Ok(_) => (
                    "accepted",
                    Some(out_trade_no),
                    None,
                    ack_response(provider.acknowledgement(Ok(())), None),
                ),
                Err(e) => {
                    let (rejection, status) = match &e {
                        ApplyError::UnknownOrder => (NotificationRejection::Unknown("order"), None),
                        ApplyError::AmountMismatch { .. } => {
                            (NotificationRejection::Mismatch { field: "amount" }, None)
                        }
                        ApplyError::Transition(t) => {
                            (NotificationRejection::Unsupported(t.to_string()), None)
                        }
                        ApplyError::RefundTransition(t) => {
                            tracing::warn!(tenant = tenant_id, error = %t, "refund report contradicts a final status");
                            (NotificationRejection::Unsupported(t.to_string()), None)
                        }
                        ApplyError::Store(s) => {
                            tracing::error!(error = %s, tenant = tenant_id, "cannot apply notification");
                            (
                                NotificationRejection::Unsupported("temporary failure".to_owned()),
                                Some(StatusCode::INTERNAL_SERVER_ERROR),
                            )
                        }
                    };
                    let reason = rejection.to_string();
                    let response = ack_response(provider.acknowledgement(Err(&rejection)), status);
                    ("rejected", Some(out_trade_no), Some(reason), response)
                }
            }
        }
        Err(rejection) => {
            let status = matches!(rejection, NotificationRejection::Undecodable(_))
                .then_some(StatusCode::BAD_REQUEST);
            let reason = rejection.to_string();
            (
                "rejected",
                None,
                Some(reason),
                ack_response(provider.acknowledgement(Err(&rejection)), status),
            )
        }
    };
    state.metrics.inc(
        "paybridge_notifications_total",
        &[
            ("provider", kind),
            ("channel", channel_name),
            ("outcome", outcome),
        ],
    );
    if let Some(r) = &reason {
        tracing::warn!(tenant = tenant_id, provider = kind, reason = %r, "notification refused");
    }
    if let Err(e) = state
        .store
        .record_attempt(
            tenant_id,
            kind,
            channel_name,
            out_trade_no.as_deref(),
            outcome,
            reason.as_deref(),
            &body_sha,
        )
        .await
    {
        tracing::error!(error = %e, "cannot record notification attempt");
    }
    Ok(response)
}
