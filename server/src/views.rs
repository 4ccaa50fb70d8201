//! The JSON shapes of the merchant API (what integrators see).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::entities::order;
use crate::store::{StoreError, flags_of, status_of};

/// The payer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Payer {
    /// The payer's openid for the tenant's app (WeChat); from `POST /v1/wechat_miniprogram/sessions`.
    pub openid: String,
}

/// An order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    /// The merchant's order number.
    pub out_trade_no: String,
    /// The provider kind, e.g. `wechat_miniprogram`.
    pub provider: String,
    /// Amount in fen.
    pub amount: i64,
    /// Always `CNY`.
    pub currency: String,
    /// Shown to the payer.
    pub description: String,
    /// The payer, when given.
    pub payer: Option<Payer>,
    /// Echoed by the provider.
    pub attach: Option<String>,
    /// `pending`, `paid`, `closed`, `failed`, `partially_refunded` or `refunded`.
    #[schema(example = "pending")]
    pub status: String,
    /// Notes for an operator, e.g. `paid_after_close`.
    pub flags: Vec<String>,
    /// The provider's trade number, once paid.
    pub provider_trade_no: Option<String>,
    /// Sum of succeeded refunds, in fen.
    pub refunded_amount: i64,
    /// The provider's payment time.
    pub paid_at: Option<DateTime<Utc>>,
    /// When the order expires if unpaid.
    pub expires_at: DateTime<Utc>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl OrderView {
    /// Build the view of a stored order.
    pub fn from_model(o: &order::Model) -> Result<Self, StoreError> {
        Ok(OrderView {
            out_trade_no: o.out_trade_no.clone(),
            provider: o.provider.clone(),
            amount: o.amount,
            currency: o.currency.clone(),
            description: o.description.clone(),
            payer: o.payer_openid.clone().map(|openid| Payer { openid }),
            attach: o.attach.clone(),
            status: status_of(o)?.as_str().to_owned(),
            flags: flags_of(o),
            provider_trade_no: o.provider_trade_no.clone(),
            refunded_amount: o.refunded_amount,
            paid_at: o.paid_at,
            expires_at: o.expires_at,
            created_at: o.created_at,
            updated_at: o.updated_at,
        })
    }
}

/// `POST /v1/orders` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderRequest {
    /// The provider kind, e.g. `wechat_miniprogram`.
    pub provider: String,
    /// 6–32 characters: letters, digits, `_ - | *`. Unique per tenant.
    pub out_trade_no: String,
    /// Amount in fen, positive.
    pub amount: i64,
    /// Only `CNY`; the default.
    #[serde(default)]
    pub currency: Option<String>,
    /// 1–127 UTF-8 bytes, passed to the provider verbatim.
    pub description: String,
    /// The payer (required by WeChat mini-program payments).
    #[serde(default)]
    pub payer: Option<Payer>,
    /// The payer's IP, if known.
    #[serde(default)]
    pub client_ip: Option<String>,
    /// 300–604800; default 7200.
    #[serde(default)]
    pub expires_in_seconds: Option<i64>,
    /// Up to 127 bytes, echoed by the provider.
    #[serde(default)]
    pub attach: Option<String>,
}

/// `POST /v1/orders` response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreateOrderResponse {
    /// The order.
    pub order: OrderView,
    /// What the client app needs to pay, keyed by provider kind, e.g.
    /// `{"wechat_miniprogram": {"timeStamp", "nonceStr", "package", "signType", "paySign"}}`.
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

/// A refund.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RefundView {
    /// The merchant's refund number (unique per order).
    pub out_refund_no: String,
    /// The order's number.
    pub out_trade_no: String,
    /// Amount in fen.
    pub amount: i64,
    /// Shown to the payer.
    pub reason: Option<String>,
    /// `processing`, `succeeded`, `failed` or `abnormal`.
    #[schema(example = "processing")]
    pub status: String,
    /// The provider's refund number, when it gave one.
    pub provider_refund_no: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// When the money went back.
    pub succeeded_at: Option<DateTime<Utc>>,
}

impl RefundView {
    /// Build the view of a stored refund.
    pub fn from_model(r: &crate::db::entities::refund::Model) -> Self {
        RefundView {
            out_refund_no: r.out_refund_no.clone(),
            out_trade_no: r.out_trade_no.clone(),
            amount: r.amount,
            reason: r.reason.clone(),
            status: r.status.clone(),
            provider_refund_no: r.provider_refund_no.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
            succeeded_at: r.succeeded_at,
        }
    }
}

/// `POST /v1/orders/{out_trade_no}/refunds` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRefundRequest {
    /// 1–64 characters: letters, digits, `_ - | * @`. The same number is the same refund.
    pub out_refund_no: String,
    /// Amount in fen, positive. Refunds that have not failed never exceed the order amount.
    pub amount: i64,
    /// Shown to the payer.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A merchant webhook event with its delivery (`GET /v1/events`). The webhook body itself is
/// `{id, type, created_at, data}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// The event id, also sent as `Paybridge-Event-Id`; receivers deduplicate by it.
    pub id: String,
    /// `order.paid`, `order.closed`, `order.failed`, `order.flagged`,
    /// `order.partially_refunded`, `order.refunded`, `refund.succeeded`, `refund.failed` or
    /// `refund.abnormal`.
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
