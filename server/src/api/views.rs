//! The JSON shapes of the merchant API (what integrators see).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::usecases::resources::{
    CreateOrderRequest, CreateRefundRequest, OrderView, Payer, RefundView,
};

/// `POST /v1/orders` response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreateOrderResponse {
    /// The order.
    pub order: OrderView,
    /// What the client app needs to pay, keyed by provider kind, e.g.
    /// `{"wechat_miniprogram": {"timeStamp", "nonceStr", "package", "signType", "paySign"}}`
    /// (`signType` is `MD5` or `HMAC-SHA256` for an API v2 order, `RSA` for an API v3 one).
    /// Null when the provider has not issued them (e.g. the order is already paid).
    #[schema(value_type = Option<Object>)]
    pub client_payment: Option<serde_json::Value>,
}

/// `GET /v1/orders/{out_trade_no}` query.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SyncQuery {
    /// Ask the provider first.
    #[serde(default)]
    pub sync: bool,
}

/// `POST /v1/{provider}/sessions` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// The one-time code from `wx.login()`.
    pub code: String,
}

/// `POST /v1/{provider}/sessions` response. The session key never leaves the server.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionResponse {
    /// The payer's openid for this app.
    pub openid: String,
    /// The payer's unionid, when the app is bound to an Open Platform account.
    pub unionid: Option<String>,
}

/// The error envelope.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// One error.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable machine-readable code, e.g. `out_trade_no_conflict`.
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
    /// The request field (or config key) at fault, when one applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A merchant webhook event with its delivery (`GET /v1/events`). The webhook body itself is
/// `{id, type, created_at, data}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// The event id, also sent as `Paybridge-Event-Id`; receivers deduplicate by it.
    pub id: String,
    /// `order.paid`, `order.closed`, `order.failed`, `order.flagged`,
    /// `order.partially_refunded`, `order.refunded`, `refund.succeeded`, `refund.failed`,
    /// `refund.abnormal` or `statement.reconciled` (a day's statement; its `data` is the
    /// statement with its totals and the counts of its discrepancies by kind).
    #[serde(rename = "type")]
    #[schema(example = "order.paid")]
    pub event_type: String,
    /// When it happened.
    pub created_at: DateTime<Utc>,
    /// The order (`order.*`) or refund (`refund.*`) JSON right after the change.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// Where its delivery stands.
    pub delivery: DeliveryView,
    /// Every delivery attempt, oldest first.
    pub attempts: Vec<DeliveryAttemptView>,
}

/// The delivery state of an event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    /// `pending` (due at `next_attempt_at`, or in flight), `delivered`, `failed` (every scheduled
    /// attempt failed; redeliver to try again) or `not_configured` (the tenant has no
    /// `webhook_url`/`webhook_secret`; recorded, not sent).
    #[schema(example = "delivered")]
    pub status: String,
    /// Attempts made.
    pub attempts: i32,
    /// When the next attempt is due.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When an attempt last succeeded.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed, or why it is not sent.
    pub last_error: Option<String>,
}

/// One delivery attempt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryAttemptView {
    /// When it was sent.
    pub at: DateTime<Utc>,
    /// The endpoint's HTTP status, when it answered.
    pub status_code: Option<i32>,
    /// Why it failed (status and the start of the answer, timeout, connection error); null on
    /// success.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: i64,
}

/// `GET /v1/events` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventListResponse {
    /// Newest first.
    pub events: Vec<EventView>,
    /// More events follow: ask again with `after` = the last id of this page.
    pub has_more: bool,
}

/// `GET /v1/events` query.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// 1–200; default 50.
    #[serde(default)]
    pub limit: Option<u64>,
    /// An event id: return the events that follow it (older ones).
    #[serde(default)]
    pub after: Option<String>,
    /// Only events of this type, e.g. `order.paid`.
    #[serde(default, rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
}
