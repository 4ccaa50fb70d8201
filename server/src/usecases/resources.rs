//! The merchant's resources: what an order and a refund look like (the JSON the API answers with
//! and the `data` of the webhook events written with each change), and what creates them.

use chrono::{DateTime, Utc};
use paybridge_core::rfc3339;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::entities::{order, refund};
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
    /// The provider's fee in fen, once the day's statement is reconciled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fee: Option<i64>,
    /// The provider's payment time.
    #[serde(serialize_with = "rfc3339::serialize_opt")]
    pub paid_at: Option<DateTime<Utc>>,
    /// When the order expires if unpaid.
    #[serde(serialize_with = "rfc3339::serialize")]
    pub expires_at: DateTime<Utc>,
    /// Created.
    #[serde(serialize_with = "rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    /// Last changed.
    #[serde(serialize_with = "rfc3339::serialize")]
    pub updated_at: DateTime<Utc>,
}

impl OrderView {
    /// Build the view of a stored order, with its fee (`store::orders::order_fee`).
    pub fn from_model(o: &order::Model, fee: Option<i64>) -> Result<Self, StoreError> {
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
            fee,
            paid_at: o.paid_at,
            expires_at: o.expires_at,
            created_at: o.created_at,
            updated_at: o.updated_at,
        })
    }
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
    #[serde(serialize_with = "rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    /// Last changed.
    #[serde(serialize_with = "rfc3339::serialize")]
    pub updated_at: DateTime<Utc>,
    /// When the money went back.
    #[serde(serialize_with = "rfc3339::serialize_opt")]
    pub succeeded_at: Option<DateTime<Utc>>,
    /// The fee the provider returned on it, in fen, once the day's statement is reconciled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fee_returned: Option<i64>,
}

impl RefundView {
    /// Build the view of a stored refund.
    pub fn from_model(r: &refund::Model) -> Self {
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
            fee_returned: r.fee_returned,
        }
    }
}

/// `#[serde(deserialize_with = "…")]` for an amount in fen: an integer, and an error that says so
/// for `1.5` or `"1.00"`.
pub fn fen<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct Fen;
    impl serde::de::Visitor<'_> for Fen {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an integer number of fen, e.g. 150 for 1.50 CNY")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
        }
    }
    d.deserialize_i64(Fen)
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
    #[serde(deserialize_with = "fen")]
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

/// `POST /v1/orders/{out_trade_no}/refunds` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRefundRequest {
    /// 1–64 characters: letters, digits, `_ - | * @`. The same number is the same refund.
    pub out_refund_no: String,
    /// Amount in fen, positive. Refunds that have not failed never exceed the order amount.
    #[serde(deserialize_with = "fen")]
    pub amount: i64,
    /// Shown to the payer.
    #[serde(default)]
    pub reason: Option<String>,
}
