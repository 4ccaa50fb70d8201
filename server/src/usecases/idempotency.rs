//! `Idempotency-Key` (DESIGN.md, "Operators and integrators"): the rules of a key, the fingerprint
//! of a request, which answers are kept, and claiming and settling a key through the store.

use std::time::Duration;

use chrono::Utc;
use sha2::{Digest, Sha256};

use super::Failure;
use crate::state::AppState;
use crate::store::idempotency::{self, Claim, Window};

/// The header.
pub const HEADER: &str = "idempotency-key";

/// A key is 1–255 printable ASCII characters.
pub fn check_key(key: &[u8]) -> Result<&str, Failure> {
    let ok = (1..=255).contains(&key.len()) && key.iter().all(|b| (b' '..=b'~').contains(b));
    match std::str::from_utf8(key) {
        Ok(text) if ok => Ok(text),
        _ => Err(Failure::invalid(
            "Idempotency-Key",
            "must be 1-255 printable ASCII characters",
        )),
    }
}

/// The request's fingerprint: hex SHA-256 of the method, the path and the body as a JSON value
/// (key order and whitespace do not count; a body that is not JSON counts byte for byte).
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let canonical = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => {
            let mut out = String::new();
            canonical_json(&value, &mut out);
            out.into_bytes()
        }
        Err(_) => body.to_vec(),
    };
    let mut hash = Sha256::new();
    hash.update(method.as_bytes());
    hash.update(b"\n");
    hash.update(path.as_bytes());
    hash.update(b"\n");
    hash.update(&canonical);
    hex::encode(hash.finalize())
}

/// JSON with object keys sorted at every depth.
fn canonical_json(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    canonical_json(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Whether an answer is kept for replay: every 2xx and 4xx the request produced after it passed
/// validation. Not: 5xx (the retry runs again), 400 (validation), 401, 413, 415 (the body was
/// refused before it was read: a retry with the right `Content-Type` has the same fingerprint)
/// and 429.
pub fn kept(status: u16) -> bool {
    (200..300).contains(&status)
        || ((400..500).contains(&status) && !matches!(status, 400 | 401 | 413 | 415 | 429))
}

/// How long a running request holds its key: long enough for its provider calls; after it, a
/// request whose instance went away no longer blocks its key.
fn lock_for(state: &AppState) -> Duration {
    Duration::from_secs(60) + state.config.outbound_timeout() * 3
}

/// Claim `key` for this request.
pub async fn claim(
    state: &AppState,
    tenant_id: &str,
    key: &str,
    fingerprint: String,
) -> Result<Claim, Failure> {
    // Microseconds, as PostgreSQL keeps them: the lock is compared when the claim is settled.
    let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
    let ttl = chrono::Duration::seconds(
        i64::try_from(state.config.idempotency.ttl_seconds.max(1)).unwrap_or(i64::MAX),
    );
    let lock = chrono::Duration::from_std(lock_for(state)).unwrap_or(chrono::TimeDelta::MAX);
    let window = Window {
        now,
        expired_before: now - ttl,
        lock_until: now + lock,
    };
    let (tenant_id, key) = (tenant_id.to_owned(), key.to_owned());
    Ok(state
        .store
        .write(move |txn| {
            Box::pin(async move {
                idempotency::claim(txn, &tenant_id, &key, &fingerprint, window).await
            })
        })
        .await?)
}

/// What a request that claimed a key must settle.
#[derive(Debug, Clone)]
pub struct Held {
    /// The tenant.
    pub tenant_id: String,
    /// The key.
    pub key: String,
    /// The claim's lock.
    pub lock: chrono::DateTime<Utc>,
}

/// Keep the answer of the key's request, or let the key go when the answer is not kept (`None`:
/// the request ended without an answer, e.g. its client went away).
pub async fn settle(
    state: &AppState,
    held: Held,
    answer: Option<(u16, Option<String>, String)>,
) -> Result<(), Failure> {
    let Held {
        tenant_id,
        key,
        lock,
    } = held;
    Ok(state
        .store
        .write(move |txn| {
            Box::pin(async move {
                match answer {
                    Some((status, content_type, body)) if kept(status) => {
                        idempotency::finish(txn, &tenant_id, &key, lock, status, content_type, body)
                            .await
                    }
                    _ => idempotency::release(txn, &tenant_id, &key, lock).await,
                }
            })
        })
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_ignores_key_order_and_whitespace_but_not_values() {
        let a = fingerprint(
            "POST",
            "/v1/orders",
            br#"{"a": 1, "b": {"y": [1, 2], "x": "s"}}"#,
        );
        let b = fingerprint("POST", "/v1/orders", br#"{"b":{"x":"s","y":[1,2]},"a":1}"#);
        assert_eq!(a, b);
        assert_ne!(
            a,
            fingerprint(
                "POST",
                "/v1/orders",
                br#"{"a": 2, "b": {"y": [1, 2], "x": "s"}}"#
            )
        );
        assert_ne!(
            a,
            fingerprint(
                "POST",
                "/v1/orders",
                br#"{"a": 1, "b": {"y": [2, 1], "x": "s"}}"#
            )
        );
        assert_ne!(
            a,
            fingerprint(
                "POST",
                "/v1/orders/x/close",
                br#"{"a": 1, "b": {"y": [1, 2], "x": "s"}}"#
            )
        );
    }

    #[test]
    fn keys_are_printable_ascii_up_to_255() {
        assert!(check_key(b"order-1 retry").is_ok());
        assert!(check_key(&[b'k'; 255]).is_ok());
        for bad in [&b""[..], &[b'k'; 256][..], b"tab\there", "ключ".as_bytes()] {
            assert_eq!(
                check_key(bad).err().and_then(|f| f.field).as_deref(),
                Some("Idempotency-Key")
            );
        }
    }

    #[test]
    fn only_answers_after_validation_are_kept() {
        for status in [200, 201, 202, 404, 409, 422] {
            assert!(kept(status), "{status}");
        }
        for status in [400, 401, 413, 415, 429, 500, 502, 503, 504] {
            assert!(!kept(status), "{status}");
        }
    }
}
