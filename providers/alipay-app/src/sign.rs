//! The RSA2 signature of OpenAPI 2.0 (PROTOCOLS.md §C.2, §C.4): which parameters are signed and
//! how they are joined. The RSA operations themselves live in [`crate::keys`].
//!
//! - Requests: every parameter except `sign` (so `sign_type` IS signed).
//! - Notifications (rsaCheckV1): every parameter except `sign` and `sign_type`.
//!
//! In both, empty values are dropped, keys are sorted by ASCII (byte order) and `key=value` pairs
//! are joined with `&`, values raw: never URL-encoded, never decoded a second time.

use std::collections::BTreeMap;

use crate::config::{AlipayConfig, SIGN_TYPE_RSA2};
use crate::keys::{AlipayPublicKey, AppPrivateKey, SignError};

/// `charset`: the only one paybridge sends or accepts.
pub const CHARSET: &str = "utf-8";

/// The common parameters of §C.1 for `method`, plus `extra` (`notify_url`, `biz_content`…),
/// signed: the returned map includes `sign`.
pub fn signed_request(
    config: &AlipayConfig,
    method: &str,
    timestamp: String,
    extra: impl IntoIterator<Item = (String, String)>,
) -> Result<BTreeMap<String, String>, SignError> {
    signed_request_as(config, method, timestamp, extra, OnBehalf::Merchant)
}

/// Whom a call acts for: the merchant (with its `app_auth_token` in third-party app mode), or
/// the app itself (the token exchange, which has no token yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBehalf {
    /// The tenant's merchant.
    Merchant,
    /// The app alone.
    App,
}

/// [`signed_request`] for a call that acts for `on_behalf`.
pub fn signed_request_as(
    config: &AlipayConfig,
    method: &str,
    timestamp: String,
    extra: impl IntoIterator<Item = (String, String)>,
    on_behalf: OnBehalf,
) -> Result<BTreeMap<String, String>, SignError> {
    let mut params: BTreeMap<String, String> = extra.into_iter().collect();
    for (k, v) in [
        ("app_id", config.app_id.as_str()),
        ("method", method),
        ("format", "JSON"),
        ("charset", CHARSET),
        ("sign_type", SIGN_TYPE_RSA2),
        ("version", "1.0"),
    ] {
        params.insert(k.to_owned(), v.to_owned());
    }
    params.insert("timestamp".to_owned(), timestamp);
    // Third-party app: the merchant's token (signed, like every common parameter).
    if let Some(isv) = config
        .isv
        .as_ref()
        .filter(|_| on_behalf == OnBehalf::Merchant)
    {
        use secrecy::ExposeSecret;
        params.insert(
            "app_auth_token".to_owned(),
            isv.app_auth_token.expose_secret().to_owned(),
        );
    }
    // Certificate mode: which app certificate and which roots (both signed).
    if let Some(mode) = &config.cert_mode {
        params.insert("app_cert_sn".to_owned(), mode.app_cert_sn.clone());
        params.insert("alipay_root_cert_sn".to_owned(), mode.root_cert_sn.clone());
    }
    params.remove("sign");
    let signature = sign_request(&config.private_key, &params)?;
    params.insert("sign".to_owned(), signature);
    Ok(params)
}

fn content<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>, excluded: &[&str]) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .into_iter()
        .filter(|(k, v)| !k.is_empty() && !v.is_empty() && !excluded.contains(k))
        .collect();
    pairs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// The string a request is signed over: all params but `sign`, non-empty, sorted, raw.
pub fn request_sign_content<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    content(params, &["sign"])
}

/// The string a notification is verified over (rsaCheckV1): all params but `sign` and
/// `sign_type`, non-empty, sorted, values as decoded once.
pub fn notification_check_content<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    content(params, &["sign", "sign_type"])
}

/// Sign request params: the base64 RSA2 signature over [`request_sign_content`].
pub fn sign_request(
    key: &AppPrivateKey,
    params: &BTreeMap<String, String>,
) -> Result<String, SignError> {
    let message = request_sign_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    key.sign_rsa2(message.as_bytes())
}

/// rsaCheckV1 over decoded notification params (which must include `sign`).
pub fn verify_notification_params(
    key: &AlipayPublicKey,
    params: &BTreeMap<String, String>,
) -> bool {
    let Some(signature) = params.get("sign").filter(|s| !s.is_empty()) else {
        return false;
    };
    let message = notification_check_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    key.verify_rsa2(message.as_bytes(), signature)
}

#[cfg(test)]
#[path = "sign_tests.rs"]
pub(crate) mod tests;
