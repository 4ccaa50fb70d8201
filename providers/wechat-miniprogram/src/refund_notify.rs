//! Refund result notifications (PROTOCOLS.md §B.10). They carry no `sign`: the refund details are
//! in `req_info`, AES-256-ECB encrypted under the lowercase hex MD5 of the API key, and a
//! successful decryption (with strict PKCS#7 padding and a `<root>` XML inside) is what makes the
//! notification authentic.

use std::collections::BTreeMap;

use aes::Aes256;
use aes::cipher::{BlockCipherDecrypt, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use md5::{Digest, Md5};
use paybridge_core::provider::{NotificationRejection, OrderLookup, ProviderEvent, RefundEvent};
use paybridge_core::refund::RefundStatus;
use secrecy::{ExposeSecret, SecretString};

use crate::client::merchant_fields;
use crate::config::WechatConfig;
use crate::orders::parse_fen;
use crate::refunds::refund_status;
use crate::xml;
use paybridge_core::beijing;

/// AES block size; WeChat pads to it (PKCS#7), unlike wechatpy's 32 (PROTOCOLS §F.15).
const BLOCK: usize = 16;

/// Why `req_info` did not decrypt. All of them mean "not from WeChat for this merchant".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// Not base64.
    #[error("req_info is not base64")]
    Base64,
    /// Empty, or not a whole number of 16-byte blocks.
    #[error("req_info is not a whole number of AES blocks")]
    Length,
    /// The PKCS#7 padding is wrong (wrong key, or tampered).
    #[error("bad padding")]
    Padding,
    /// The plaintext is not UTF-8.
    #[error("plaintext is not UTF-8")]
    NotUtf8,
}

/// key* of §B.10: the lowercase hex MD5 of the API key, whose 32 ASCII bytes are the AES-256 key.
pub fn refund_key(api_key: &SecretString) -> [u8; 32] {
    let digest = Md5::digest(api_key.expose_secret().as_bytes());
    let mut key = [0u8; 32];
    // hex of 16 bytes is exactly 32 ASCII bytes.
    for (slot, byte) in key.iter_mut().zip(hex::encode(digest).bytes()) {
        *slot = byte;
    }
    key
}

/// base64 → AES-256-ECB decrypt → strict PKCS#7 (16-byte blocks) → UTF-8.
pub fn decrypt_req_info(req_info: &str, api_key: &SecretString) -> Result<String, DecryptError> {
    let mut data = STANDARD
        .decode(req_info.trim().as_bytes())
        .map_err(|_| DecryptError::Base64)?;
    if data.is_empty() || data.len() % BLOCK != 0 {
        return Err(DecryptError::Length);
    }
    let key = refund_key(api_key);
    let cipher = Aes256::new_from_slice(&key).map_err(|_| DecryptError::Length)?;
    for chunk in data.chunks_exact_mut(BLOCK) {
        let block: &mut aes::Block = chunk.try_into().map_err(|_| DecryptError::Length)?;
        cipher.decrypt_block(block);
    }
    let plain_len = unpad(&data)?;
    data.truncate(plain_len);
    String::from_utf8(data).map_err(|_| DecryptError::NotUtf8)
}

/// The length without PKCS#7 padding: the last byte n is 1..=16 and the last n bytes all equal n.
fn unpad(data: &[u8]) -> Result<usize, DecryptError> {
    let &n = data.last().ok_or(DecryptError::Padding)?;
    let n = usize::from(n);
    if n == 0 || n > BLOCK || n > data.len() {
        return Err(DecryptError::Padding);
    }
    let (plain, padding) = data.split_at(data.len() - n);
    if padding.iter().all(|&b| usize::from(b) == n) {
        Ok(plain.len())
    } else {
        Err(DecryptError::Padding)
    }
}

/// Verify a refund notification, checks in this order: decode, `return_code`, appid/mch_id,
/// decrypt `req_info`, the refund exists for the order, `refund_fee` equals its amount, status.
pub async fn verify_refund(
    config: &WechatConfig,
    body: &[u8],
    orders: &dyn OrderLookup,
) -> Result<ProviderEvent, NotificationRejection> {
    // (0) decode the outer document
    let outer =
        xml::decode(body, "xml").map_err(|e| NotificationRejection::Undecodable(e.to_string()))?;
    let get = |fields: &BTreeMap<String, String>, k: &str| -> Option<String> {
        fields.get(k).filter(|v| !v.is_empty()).cloned()
    };

    // (1) it reports success
    let return_code = get(&outer, "return_code").unwrap_or_default();
    if return_code != "SUCCESS" {
        return Err(NotificationRejection::ReportedFailure(format!(
            "return_code {}",
            return_code.chars().take(32).collect::<String>()
        )));
    }

    // (2) it is for this merchant
    for (field, expected) in merchant_fields(config) {
        if outer.get(field) != Some(expected) {
            return Err(NotificationRejection::Mismatch { field });
        }
    }

    // (3) authenticity: req_info decrypts under this merchant's key
    let req_info = get(&outer, "req_info")
        .ok_or_else(|| NotificationRejection::Undecodable("missing req_info".to_owned()))?;
    let plain = decrypt_req_info(&req_info, &config.api_key).map_err(|e| {
        tracing::warn!(error = %e, "refund notification req_info did not decrypt");
        NotificationRejection::BadSignature
    })?;
    let inner = xml::decode(plain.as_bytes(), "root").map_err(|_| {
        // A wrong key passes the padding check now and then; its plaintext is never our XML.
        tracing::warn!("refund notification req_info decrypted to something else than <root>");
        NotificationRejection::BadSignature
    })?;

    // (4) the refund exists for that order
    let (Some(out_trade_no), Some(out_refund_no)) =
        (get(&inner, "out_trade_no"), get(&inner, "out_refund_no"))
    else {
        return Err(NotificationRejection::Unknown("refund"));
    };
    let Some(amount) = orders.find_refund(&out_trade_no, &out_refund_no).await else {
        tracing::warn!(%out_trade_no, %out_refund_no, "refund notification for an unknown refund");
        return Err(NotificationRejection::Unknown("refund"));
    };

    // (5) the amount is the one requested
    if get(&inner, "refund_fee").and_then(|f| parse_fen(&f)) != Some(amount) {
        tracing::warn!(%out_trade_no, %out_refund_no, "refund notification refund_fee differs from the refund");
        return Err(NotificationRejection::Mismatch {
            field: "refund_fee",
        });
    }

    // (6) the status it reports
    let status_text = get(&inner, "refund_status").unwrap_or_default();
    let status = match refund_status(&status_text) {
        Some(status) if status != RefundStatus::Processing => status,
        _ => {
            return Err(NotificationRejection::Unsupported(format!(
                "refund_status {}",
                status_text.chars().take(32).collect::<String>()
            )));
        }
    };
    let refund_id = get(&inner, "refund_id")
        .ok_or_else(|| NotificationRejection::Undecodable("missing refund_id".to_owned()))?;
    let succeeded_at = match status {
        RefundStatus::Succeeded => {
            let at = get(&inner, "success_time").and_then(|t| beijing::parse_dashed(&t));
            if at.is_none() {
                tracing::warn!(%out_refund_no, "refund SUCCESS notification without a readable success_time");
            }
            at
        }
        _ => None,
    };
    tracing::info!(%out_trade_no, %out_refund_no, %refund_id, refund_status = %status_text, "refund notification verified");
    Ok(ProviderEvent::Refund(RefundEvent {
        out_trade_no,
        out_refund_no,
        event_id: format!("{refund_id}:{status_text}"),
        provider_refund_no: Some(refund_id),
        amount,
        status,
        succeeded_at,
    }))
}

#[cfg(test)]
#[path = "refund_notify_tests.rs"]
mod tests;
