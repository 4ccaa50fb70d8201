//! Gateway response signatures (PROTOCOLS.md §C.5): the signed content is the exact text of the
//! `<method>_response` (or `error_response`) object as it appears in the raw body, never a
//! re-serialization.

use serde_json::{Map, Value};

use crate::keys::AlipayPublicKey;

/// Why a response could not be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Not the JSON shape Alipay answers with.
    #[error("unreadable Alipay response: {0}")]
    Malformed(String),
    /// No `sign` next to the response object. `claims` is what the unverified object says,
    /// reduced to safe characters, for the operator only.
    #[error("response signature did not verify (unsigned answer claiming {claims})")]
    Unsigned {
        /// `code`/`sub_code` of the unsigned object.
        claims: String,
    },
    /// The `sign` does not verify with Alipay's public key.
    #[error("response signature did not verify")]
    BadSignature,
}

/// Which object the answer carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    /// `<method>_response`.
    Method,
    /// `error_response` (gateway-level failure).
    Error,
}

/// A response whose signature verified: the fields of the signed object.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedResponse {
    /// Which object it was.
    pub kind: ResponseKind,
    /// Its fields, parsed from the exact signed text.
    pub fields: Map<String, Value>,
}

/// `alipay.trade.query` → `alipay_trade_query_response`.
pub fn response_key(method: &str) -> String {
    format!("{}_response", method.replace('.', "_"))
}

/// The byte index just past the `}` matching the `{` at `open`, tracking JSON strings and
/// backslash escapes so braces inside strings do not count.
pub fn matching_brace_end(text: &str, open: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    if bytes.get(open) != Some(&b'{') {
        return None;
    }
    let mut depth: usize = 0;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => depth = depth.checked_add(1)?,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return i.checked_add(1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Every candidate `"<key>": { … }` substring of `body`, in order. A candidate may sit inside
/// a string value; the caller keeps the one that equals the parsed top-level member.
fn candidates<'a>(body: &'a str, key: &str) -> Vec<&'a str> {
    let needle = format!("\"{key}\"");
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(pos) = body.get(from..).and_then(|rest| rest.find(&needle)) {
        let after_key = from + pos + needle.len();
        from = after_key;
        let rest = &body[after_key..];
        let trimmed = rest.trim_start();
        let Some(after_colon) = trimmed.strip_prefix(':') else {
            continue;
        };
        let value = after_colon.trim_start();
        if !value.starts_with('{') {
            continue;
        }
        let open = body.len() - value.len();
        if let Some(end) = matching_brace_end(body, open) {
            found.push(&body[open..end]);
        }
    }
    found
}

/// The exact signed text of the `key` object of `body`, checked to be the top-level member.
pub fn extract_signed_content<'a>(
    body: &'a str,
    top: &Map<String, Value>,
    key: &str,
) -> Option<&'a str> {
    let member = top.get(key)?;
    candidates(body, key)
        .into_iter()
        .find(|text| serde_json::from_str::<Value>(text).is_ok_and(|v| &v == member))
}

/// `alipay_cert_sn` beside the answer (certificate mode), if any.
pub fn alipay_cert_sn(body: &str) -> Option<String> {
    let top: Map<String, Value> = serde_json::from_str(body).ok()?;
    top.get("alipay_cert_sn")
        .and_then(Value::as_str)
        .filter(|sn| !sn.is_empty() && sn.len() <= 128)
        .map(str::to_owned)
}

fn safe(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(64)
        .collect()
}

/// Locate, verify and parse a gateway answer for `method`.
pub fn verify_response(
    body: &str,
    method: &str,
    key: &AlipayPublicKey,
) -> Result<VerifiedResponse, ResponseError> {
    let top: Map<String, Value> = serde_json::from_str(body)
        .map_err(|_| ResponseError::Malformed("not a JSON object".to_owned()))?;
    let method_key = response_key(method);
    let (kind, name) = if top.contains_key(&method_key) {
        (ResponseKind::Method, method_key.as_str())
    } else if top.contains_key("error_response") {
        (ResponseKind::Error, "error_response")
    } else {
        return Err(ResponseError::Malformed(format!(
            "neither {method_key} nor error_response in the answer"
        )));
    };
    let content = extract_signed_content(body, &top, name)
        .ok_or_else(|| ResponseError::Malformed(format!("{name} is not an object")))?;
    let fields: Map<String, Value> = serde_json::from_str(content)
        .map_err(|_| ResponseError::Malformed(format!("{name} is not an object")))?;
    let signature = top.get("sign").and_then(Value::as_str).unwrap_or_default();
    if signature.is_empty() {
        let get = |k: &str| fields.get(k).and_then(Value::as_str).map(safe);
        return Err(ResponseError::Unsigned {
            claims: format!(
                "code {} {}",
                get("code").unwrap_or_default(),
                get("sub_code").unwrap_or_default()
            ),
        });
    }
    let verified = key.verify_rsa2(content.as_bytes(), signature)
        || (content.contains("\\/")
            && key.verify_rsa2(content.replace("\\/", "/").as_bytes(), signature));
    if !verified {
        return Err(ResponseError::BadSignature);
    }
    Ok(VerifiedResponse { kind, fields })
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
