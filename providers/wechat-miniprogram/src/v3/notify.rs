//! v3 payment and refund notifications (PROTOCOLS.md §G).
//!
//! The checks, in order:
//! 1. The signature over the raw body, with the key `Wechatpay-Serial` names.
//! 2. The timestamp's age.
//! 3. The event type.
//! 4. The resource, which must decrypt under the APIv3 key with the expected AAD.
//! 5. `mchid` (and `appid` for payments).
//! 6. The state.
//! 7. The order or refund exists.
//! 8. The amount equals the order's (the refund's).
//!
//! A refusal names the field, so that the failure acknowledgement and the recorded attempt say
//! what to fix.

use chrono::{DateTime, Utc};
use paybridge_core::money::Fen;
use paybridge_core::provider::{
    AckBody, NotificationRejection, OrderLookup, PaymentEvent, ProviderEvent, RefundEvent,
};
use paybridge_core::refund::RefundStatus;
use serde::Deserialize;

use super::certificates::{CertificateDownload, PlatformCertificates};
use super::crypto::{
    PUBLIC_KEY_ID_PREFIX, SCHEME, V3Error, VerifyingKey, check_timestamp, decrypt, response_message,
};
use super::merchant::{Merchant as Who, MerchantIds};

/// The `Wechatpay-*` headers of a notification.
#[derive(Debug, Clone, Copy)]
pub struct SignedHeaders<'a> {
    /// `Wechatpay-Serial`.
    pub serial: &'a str,
    /// `Wechatpay-Signature`.
    pub signature: &'a str,
    /// `Wechatpay-Timestamp`.
    pub timestamp: &'a str,
    /// `Wechatpay-Nonce`.
    pub nonce: &'a str,
    /// `Wechatpay-Signature-Type`, when sent.
    pub signature_type: Option<&'a str>,
}

/// The keys a merchant verifies WeChat Pay with. Both may be set during a switch from platform
/// certificates to the public key.
#[derive(Clone, Copy)]
pub struct Keys<'a> {
    /// Public-key mode: the key's ID (`PUB_KEY_ID_…`) and the key.
    pub public_key: Option<(&'a str, &'a VerifyingKey)>,
    /// Certificate mode: the merchant's certificates and where to download them.
    pub certificates: Option<(&'a PlatformCertificates, &'a dyn CertificateDownload)>,
}

impl Keys<'_> {
    /// The key `serial` names.
    pub async fn key_for(&self, serial: &str, now: i64) -> Result<VerifyingKey, V3Error> {
        if serial.starts_with(PUBLIC_KEY_ID_PREFIX) {
            return match self.public_key {
                Some((id, key)) if id == serial => Ok(key.clone()),
                _ => Err(V3Error::UnknownSerial(serial.chars().take(64).collect())),
            };
        }
        match self.certificates {
            Some((store, source)) => store.key_for(serial, now, source).await,
            None => Err(V3Error::UnknownSerial(serial.chars().take(64).collect())),
        }
    }
}

/// Who the notification must be for.
#[derive(Clone, Copy)]
pub struct Merchant<'a> {
    /// The merchant, or the service provider and its sub-merchant.
    pub who: Who<'a>,
    /// The APIv3 key.
    pub apiv3_key: &'a [u8],
}

#[derive(Deserialize)]
struct Envelope {
    event_type: String,
    resource: Resource,
}

#[derive(Deserialize)]
struct Resource {
    algorithm: String,
    ciphertext: String,
    #[serde(default)]
    associated_data: String,
    nonce: String,
}

#[derive(Deserialize)]
struct Transaction {
    #[serde(flatten)]
    ids: MerchantIds,
    out_trade_no: String,
    transaction_id: Option<String>,
    trade_state: String,
    success_time: Option<String>,
    amount: TransactionAmount,
}

#[derive(Deserialize)]
struct TransactionAmount {
    total: i64,
}

#[derive(Deserialize)]
struct Refund {
    #[serde(flatten)]
    ids: MerchantIds,
    out_trade_no: String,
    out_refund_no: String,
    refund_id: String,
    refund_status: String,
    success_time: Option<String>,
    amount: RefundAmount,
}

#[derive(Deserialize)]
struct RefundAmount {
    refund: i64,
}

/// The acknowledgement of a v3 notification: 204 without a body for success; for a failure a 500
/// with `{"code":"FAIL","message":…}` (any 4xx or 5xx makes WeChat Pay send it again).
pub fn acknowledgement(outcome: Result<(), &NotificationRejection>) -> AckBody {
    match outcome {
        Ok(()) => AckBody {
            status: 204,
            content_type: "application/json",
            body: Vec::new(),
        },
        Err(rejection) => AckBody {
            status: 500,
            content_type: "application/json",
            body: serde_json::json!({
                "code": "FAIL",
                "message": crate::notify::rejection_reason(rejection),
            })
            .to_string()
            .into_bytes(),
        },
    }
}

fn mismatch(field: &'static str) -> NotificationRejection {
    NotificationRejection::Mismatch { field }
}

fn short(text: &str) -> String {
    text.chars().take(64).collect()
}

/// Steps 1 to 4: the signature, its age, the event type and the decrypted resource.
async fn open(
    headers: &SignedHeaders<'_>,
    body: &[u8],
    keys: &Keys<'_>,
    merchant: &Merchant<'_>,
    now: i64,
    event_types: &[&str],
    aad: &str,
) -> Result<Vec<u8>, NotificationRejection> {
    if headers.signature_type.is_some_and(|t| t != SCHEME) {
        return Err(NotificationRejection::Unsupported(format!(
            "Wechatpay-Signature-Type {}",
            short(headers.signature_type.unwrap_or_default())
        )));
    }
    let key = keys.key_for(headers.serial, now).await.map_err(|e| {
        tracing::warn!(error = %e, "v3 notification: no key for its serial");
        NotificationRejection::BadSignature
    })?;
    let message = response_message(headers.timestamp, headers.nonce, body);
    key.verify(&message, headers.signature).map_err(|_| {
        tracing::warn!(serial = %short(headers.serial), "v3 notification signature mismatch");
        NotificationRejection::BadSignature
    })?;
    // After the signature: an attacker cannot change a signed timestamp, so this refuses
    // replays of genuine notifications.
    check_timestamp(headers.timestamp, now).map_err(|_| mismatch("Wechatpay-Timestamp"))?;
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| NotificationRejection::Undecodable(format!("not a v3 notification: {e}")))?;
    if !event_types.contains(&envelope.event_type.as_str()) {
        return Err(NotificationRejection::Unsupported(format!(
            "event_type {}",
            short(&envelope.event_type)
        )));
    }
    let r = envelope.resource;
    if r.algorithm != "AEAD_AES_256_GCM" || r.associated_data != aad {
        return Err(NotificationRejection::Unsupported(format!(
            "resource {} with associated_data {}",
            short(&r.algorithm),
            short(&r.associated_data)
        )));
    }
    decrypt(
        merchant.apiv3_key,
        &r.nonce,
        &r.associated_data,
        &r.ciphertext,
    )
    .map_err(|e| {
        // The signature verified, so WeChat sent it: the configured APIv3 key is not the
        // merchant's.
        tracing::warn!(error = %e, "v3 notification resource does not decrypt");
        mismatch("apiv3_key")
    })
}

fn parse_time(text: Option<&str>) -> Option<DateTime<Utc>> {
    text.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// A payment notification (`TRANSACTION.SUCCESS`) into a payment event.
pub async fn verify_payment(
    headers: &SignedHeaders<'_>,
    body: &[u8],
    keys: &Keys<'_>,
    merchant: &Merchant<'_>,
    now: i64,
    orders: &dyn OrderLookup,
) -> Result<ProviderEvent, NotificationRejection> {
    let plain = open(
        headers,
        body,
        keys,
        merchant,
        now,
        &["TRANSACTION.SUCCESS"],
        "transaction",
    )
    .await?;
    let t: Transaction = serde_json::from_slice(&plain)
        .map_err(|e| NotificationRejection::Undecodable(format!("transaction: {e}")))?;
    // A partner notification lands on the tenant of its sub_mchid: another sub-merchant's
    // (sent to this tenant's URL) is refused here.
    if let Some(field) = merchant.who.mismatch(&t.ids, true) {
        return Err(mismatch(field));
    }
    if t.trade_state != "SUCCESS" {
        return Err(NotificationRejection::Unsupported(format!(
            "trade_state {}",
            short(&t.trade_state)
        )));
    }
    let order = orders
        .find_order(&t.out_trade_no)
        .await
        .ok_or(NotificationRejection::Unknown("order"))?;
    if Fen::new(t.amount.total) != order.amount {
        tracing::warn!(out_trade_no = %t.out_trade_no, "v3 notification amount differs from the order amount");
        return Err(mismatch("amount.total"));
    }
    let transaction_id = t
        .transaction_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| NotificationRejection::Undecodable("missing transaction_id".to_owned()))?;
    let paid_at = parse_time(t.success_time.as_deref())
        .ok_or_else(|| NotificationRejection::Undecodable("bad success_time".to_owned()))?;
    tracing::info!(out_trade_no = %t.out_trade_no, %transaction_id, "v3 payment notification verified");
    Ok(ProviderEvent::Payment(PaymentEvent {
        out_trade_no: t.out_trade_no,
        provider_trade_no: transaction_id.clone(),
        amount: order.amount,
        paid_at,
        event_id: transaction_id,
    }))
}

/// A refund notification (`REFUND.SUCCESS`, `REFUND.ABNORMAL`, `REFUND.CLOSED`) into a refund
/// event.
pub async fn verify_refund(
    headers: &SignedHeaders<'_>,
    body: &[u8],
    keys: &Keys<'_>,
    merchant: &Merchant<'_>,
    now: i64,
    orders: &dyn OrderLookup,
) -> Result<ProviderEvent, NotificationRejection> {
    let plain = open(
        headers,
        body,
        keys,
        merchant,
        now,
        &["REFUND.SUCCESS", "REFUND.ABNORMAL", "REFUND.CLOSED"],
        "refund",
    )
    .await?;
    let r: Refund = serde_json::from_slice(&plain)
        .map_err(|e| NotificationRejection::Undecodable(format!("refund: {e}")))?;
    if let Some(field) = merchant.who.mismatch(&r.ids, false) {
        return Err(mismatch(field));
    }
    let amount = orders
        .find_refund(&r.out_trade_no, &r.out_refund_no)
        .await
        .ok_or(NotificationRejection::Unknown("refund"))?;
    if Fen::new(r.amount.refund) != amount {
        tracing::warn!(out_refund_no = %r.out_refund_no, "v3 refund notification amount differs from the refund");
        return Err(mismatch("amount.refund"));
    }
    let status = match r.refund_status.as_str() {
        "SUCCESS" => RefundStatus::Succeeded,
        "CLOSED" => RefundStatus::Failed,
        "ABNORMAL" => RefundStatus::Abnormal,
        other => {
            return Err(NotificationRejection::Unsupported(format!(
                "refund_status {}",
                short(other)
            )));
        }
    };
    let succeeded_at = match status {
        RefundStatus::Succeeded => parse_time(r.success_time.as_deref()),
        _ => None,
    };
    tracing::info!(out_refund_no = %r.out_refund_no, refund_id = %r.refund_id, refund_status = %r.refund_status, "v3 refund notification verified");
    Ok(ProviderEvent::Refund(RefundEvent {
        out_trade_no: r.out_trade_no,
        out_refund_no: r.out_refund_no,
        event_id: format!("{}:{}", r.refund_id, r.refund_status),
        provider_refund_no: Some(r.refund_id),
        amount,
        status,
        succeeded_at,
    }))
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod tests;
