//! The OpenAPI 2.0 call pipeline (PROTOCOLS.md §C.1, §C.5), one step per function:
//! common params + `biz_content` → sign → POST form → read a capped body → verify the response
//! signature over its exact text → public `code`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use paybridge_core::provider::ProviderError;
use serde_json::{Map, Value};

use crate::config::AlipayConfig;
use crate::keys::AlipayPublicKey;
use crate::response::{self, ResponseKind};
use crate::sign;
use crate::sign::OnBehalf;
use paybridge_core::beijing;

/// Responses larger than this are refused (real ones are a few KiB).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Connect timeout ceiling; the overall timeout comes from the build context.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The time source: `Utc::now` in production, fixed in tests.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// A verified `40004` ("Business Failed"): the caller decides by `sub_code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessFailure {
    /// e.g. `ACQ.TRADE_NOT_EXIST`.
    pub sub_code: String,
    /// Alipay's text.
    pub sub_msg: String,
}

impl BusinessFailure {
    /// `Rejected` with a stable paybridge `code` and Alipay's sub-code and text.
    pub fn rejected(&self, code: &'static str) -> ProviderError {
        ProviderError::Rejected {
            code,
            message: format!("Alipay 40004 {}: {}", self.sub_code, self.sub_msg),
        }
    }

    /// A retryable failure whose outcome is unknown (`ACQ.SYSTEM_ERROR`).
    pub fn unavailable(&self) -> ProviderError {
        ProviderError::Unavailable(format!("Alipay 40004 {}: {}", self.sub_code, self.sub_msg))
    }
}

/// The outcome of a call whose transport and signature checked out.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `code=10000`: every field of the response object.
    Success(Map<String, Value>),
    /// `code=40004`.
    BusinessFailed(BusinessFailure),
}

/// Build the HTTP client: overall timeout, connect timeout, extra roots, no redirects (a payment
/// API never redirects, and following one would send a signed body elsewhere).
pub fn http_client(
    config: &AlipayConfig,
    timeout: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("paybridge-alipay/", env!("CARGO_PKG_VERSION")))
        .tls_certs_merge(config.ca_certs.iter().cloned())
        .build()
}

/// A transport error as the caller sees it.
pub fn transport_error(error: reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        return ProviderError::Timeout;
    }
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    ProviderError::Unavailable(message)
}

/// Read the body as UTF-8 text, refusing non-2xx statuses and anything larger than `cap` bytes.
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<String, ProviderError> {
    let status = response.status();
    if !status.is_success() {
        return Err(ProviderError::Unavailable(format!("HTTP {status}")));
    }
    let too_large = || ProviderError::Unavailable(format!("response larger than {cap} bytes"));
    if let Some(length) = response.content_length()
        && usize::try_from(length).map_or(true, |l| l > cap)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len().saturating_add(chunk.len()) > cap {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body)
        .map_err(|_| ProviderError::Unavailable("response is not UTF-8".to_owned()))
}

fn text(fields: &Map<String, Value>, key: &str) -> String {
    let value = fields.get(key).and_then(Value::as_str).unwrap_or_default();
    redact_token(value).chars().take(128).collect()
}

/// Alipay's `isv.invalid-signature` answer quotes the string it verified, which holds a third
/// party app's `app_auth_token`: its value never reaches an error message or a log.
fn redact_token(text: &str) -> std::borrow::Cow<'_, str> {
    const NAME: &str = "app_auth_token=";
    let Some(start) = text.find(NAME) else {
        return std::borrow::Cow::Borrowed(text);
    };
    let value = start + NAME.len();
    let end = text[value..].find('&').map_or(text.len(), |i| value + i);
    std::borrow::Cow::Owned(format!("{}[REDACTED]{}", &text[..value], &text[end..]))
}

/// The public `code` (§C.5): 10000 and 40004 go to the caller; the rest are errors here.
pub fn classify(kind: ResponseKind, fields: Map<String, Value>) -> Result<Reply, ProviderError> {
    let code = text(&fields, "code");
    let sub_code = text(&fields, "sub_code");
    let sub_msg = text(&fields, "sub_msg");
    let described = || {
        let msg = text(&fields, "msg");
        format!("Alipay {code} {msg} {sub_code}: {sub_msg}")
    };
    match code.as_str() {
        "10000" if kind == ResponseKind::Method => Ok(Reply::Success(fields)),
        "40004" => Ok(Reply::BusinessFailed(BusinessFailure { sub_code, sub_msg })),
        "20000" => Err(ProviderError::Unavailable(format!(
            "{} (outcome unknown; retry or query)",
            described()
        ))),
        "20001" | "40001" | "40002" | "40006" => Err(ProviderError::Rejected {
            code: "provider_rejected",
            message: format!("{} (check the provider config)", described()),
        }),
        _ => Err(ProviderError::Unavailable(format!(
            "unexpected answer: {}",
            described()
        ))),
    }
}

/// An OpenAPI client for one merchant. Holds one HTTP client for the provider's life.
#[derive(Clone)]
pub struct Gateway {
    http: reqwest::Client,
    config: Arc<AlipayConfig>,
    clock: Clock,
    /// Certificate mode: one download of an Alipay certificate at a time.
    downloads: Arc<tokio::sync::Mutex<()>>,
}

/// The method that fetches an Alipay certificate by number (certificate mode).
pub const CERT_DOWNLOAD: &str = "alipay.open.app.alipaycert.download";

impl Gateway {
    /// A client for this merchant.
    pub fn new(
        config: Arc<AlipayConfig>,
        timeout: Duration,
        clock: Clock,
    ) -> Result<Self, reqwest::Error> {
        Ok(Gateway {
            http: http_client(&config, timeout)?,
            config,
            clock,
            downloads: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// The merchant config.
    pub fn config(&self) -> &AlipayConfig {
        &self.config
    }

    /// The HTTP client (timeouts, roots, no redirects).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The current time from the injected clock.
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Run the whole pipeline for `method` (e.g. `alipay.trade.query`) with this `biz_content`.
    pub async fn call(&self, method: &str, biz_content: String) -> Result<Reply, ProviderError> {
        self.call_as(method, biz_content, OnBehalf::Merchant).await
    }

    /// [`Gateway::call`] acting for `on_behalf` (the app alone: no `app_auth_token`).
    pub async fn call_as(
        &self,
        method: &str,
        biz_content: String,
        on_behalf: OnBehalf,
    ) -> Result<Reply, ProviderError> {
        let body = self.send(method, biz_content, on_behalf).await?;
        let key = self.answer_key(&body).await?;
        let verified = response::verify_response(&body, method, &key).map_err(|e| {
            tracing::warn!(method, error = %e, "Alipay response refused");
            ProviderError::Unavailable(e.to_string())
        })?;
        let reply = classify(verified.kind, verified.fields)?;
        match &reply {
            Reply::Success(_) => tracing::debug!(method, "Alipay call succeeded"),
            Reply::BusinessFailed(f) => {
                tracing::info!(method, sub_code = %f.sub_code, "Alipay business failure")
            }
        }
        Ok(reply)
    }

    /// The key an answer is verified with: `alipay_public_key`, or in certificate mode the
    /// certificate its `alipay_cert_sn` names (configured, downloaded before, or downloaded now
    /// and trusted only through its chain to `alipay_root_cert`).
    async fn answer_key(&self, body: &str) -> Result<AlipayPublicKey, ProviderError> {
        let configured = self.config.alipay_public_key.clone();
        let Some(mode) = &self.config.cert_mode else {
            return Ok(configured);
        };
        let Some(sn) = response::alipay_cert_sn(body).filter(|sn| *sn != mode.alipay_cert_sn)
        else {
            return Ok(configured);
        };
        if let Some(key) = mode.downloaded(&sn) {
            return Ok(key);
        }
        let refused = || {
            ProviderError::Unavailable(format!(
                "Alipay answered with certificate {sn}, which is not trusted (not under alipay_root_cert)"
            ))
        };
        if mode.refused_recently(&sn, self.now()) {
            return Err(refused());
        }
        let _one_at_a_time = self.downloads.lock().await;
        if let Some(key) = mode.downloaded(&sn) {
            return Ok(key);
        }
        let pem = self.download_certificate(&sn).await?;
        mode.trust_download(&sn, &pem, self.now()).map_err(|e| {
            tracing::warn!(alipay_cert_sn = %sn, error = %e, "Alipay certificate refused");
            mode.remember_refused(&sn, self.now());
            refused()
        })
    }

    /// `alipay.open.app.alipaycert.download` for `sn`: the certificate file (PEM), unverified
    /// (its chain is what makes it trusted).
    async fn download_certificate(&self, sn: &str) -> Result<String, ProviderError> {
        let biz = serde_json::json!({ "alipay_cert_sn": sn }).to_string();
        let body = self.send(CERT_DOWNLOAD, biz, OnBehalf::Merchant).await?;
        let top: Map<String, Value> = serde_json::from_str(&body).map_err(|_| {
            ProviderError::Unavailable("certificate download: not a JSON answer".to_owned())
        })?;
        let fields = top
            .get(&response::response_key(CERT_DOWNLOAD))
            .and_then(Value::as_object)
            .ok_or_else(|| {
                ProviderError::Unavailable(format!("certificate {sn} could not be downloaded"))
            })?;
        let content = fields
            .get("alipay_cert_content")
            .and_then(Value::as_str)
            .filter(|_| fields.get("code").and_then(Value::as_str) == Some("10000"))
            .ok_or_else(|| {
                let code = text(fields, "sub_code");
                ProviderError::Unavailable(format!(
                    "certificate {sn} could not be downloaded ({code})"
                ))
            })?;
        use base64::Engine;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(content.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                ProviderError::Unavailable(
                    "certificate download: content is not base64 PEM".to_owned(),
                )
            })?;
        tracing::info!(alipay_cert_sn = %sn, "Alipay certificate downloaded");
        Ok(pem)
    }

    /// Sign and send one call; the answer's text (capped), not yet verified.
    async fn send(
        &self,
        method: &str,
        biz_content: String,
        on_behalf: OnBehalf,
    ) -> Result<String, ProviderError> {
        let params = sign::signed_request_as(
            &self.config,
            method,
            beijing::format_dashed(self.now()),
            [("biz_content".to_owned(), biz_content)],
            on_behalf,
        )
        .map_err(|e| ProviderError::Misconfigured {
            field: "private_key".to_owned(),
            message: e.to_string(),
        })?;
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let response = self
            .http
            .post(&self.config.gateway_url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded;charset=utf-8",
            )
            .body(body)
            .send()
            .await
            .map_err(transport_error)
            .inspect_err(|e| tracing::warn!(method, error = %e, "Alipay gateway call failed"))?;
        read_capped(response, MAX_RESPONSE_BYTES).await
    }
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
pub(crate) mod tests;
