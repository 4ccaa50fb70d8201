//! One v3 call: sign the request, send it, read a capped body, and trust a 2xx answer only if
//! its signature verifies with the key its `Wechatpay-Serial` names (PROTOCOLS.md §G).
//!
//! Error answers (4xx, 5xx) are not signed by WeChat Pay: their `code` and `message` are passed on
//! for the caller to map, never trusted as a success.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use paybridge_core::provider::ProviderError;
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use serde::Deserialize;

use super::certificates::{CertificateDownload, PlatformCertificates};
use super::crypto::{
    MerchantKey, V3Error, VerifyingKey, authorization, check_timestamp, request_message,
    response_message,
};
use super::notify::Keys;
use crate::client::{MAX_RESPONSE_BYTES, nonce, transport_error};

/// A v3 answer whose signature verified (2xx), or WeChat Pay's error (`code`, `message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V3Reply {
    /// 2xx, signed and verified. The body may be empty (204).
    Success {
        /// The HTTP status.
        status: u16,
        /// The raw body.
        body: Vec<u8>,
    },
    /// 4xx or 5xx with WeChat Pay's error object.
    Error {
        /// The HTTP status.
        status: u16,
        /// E.g. `ORDER_NOT_EXIST`; empty when the body had none.
        code: String,
        /// WeChat Pay's text, shortened.
        message: String,
    },
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// A v3 client for one merchant.
pub struct V3Client {
    http: reqwest::Client,
    base: String,
    mchid: String,
    serial_no: String,
    key: Arc<MerchantKey>,
    public_key: Option<(String, VerifyingKey)>,
    certificates: Option<Arc<PlatformCertificates>>,
}

impl std::fmt::Debug for V3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V3Client")
            .field("base", &self.base)
            .field("mchid", &self.mchid)
            .finish_non_exhaustive()
    }
}

/// What a [`V3Client`] is made of.
pub struct V3Setup {
    /// The HTTP client (timeouts, roots, no redirects: `client::http_client`).
    pub http: reqwest::Client,
    /// `api_base`, e.g. `https://api.mch.weixin.qq.com`.
    pub base: String,
    /// `mchid`.
    pub mchid: String,
    /// The merchant API certificate's serial.
    pub serial_no: String,
    /// The merchant API private key.
    pub key: Arc<MerchantKey>,
    /// Public-key mode: its ID and the key.
    pub public_key: Option<(String, VerifyingKey)>,
    /// Certificate mode: the merchant's platform certificates.
    pub certificates: Option<Arc<PlatformCertificates>>,
}

impl V3Client {
    /// A client for one merchant.
    pub fn new(setup: V3Setup) -> V3Client {
        V3Client {
            http: setup.http,
            base: setup.base.trim_end_matches('/').to_owned(),
            mchid: setup.mchid,
            serial_no: setup.serial_no,
            key: setup.key,
            public_key: setup.public_key,
            certificates: setup.certificates,
        }
    }

    /// The keys this merchant verifies WeChat Pay with, answers and notifications alike; unknown
    /// platform certificates are downloaded through this client.
    pub fn keys(&self) -> Keys<'_> {
        let source: &dyn CertificateDownload = self;
        Keys {
            public_key: self.public_key.as_ref().map(|(id, k)| (id.as_str(), k)),
            certificates: self.certificates.as_deref().map(|c| (c, source)),
        }
    }

    /// Call `method path` (path with its query) with an optional JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> Result<V3Reply, ProviderError> {
        let (status, headers, answer) = self.send(method, path, body).await?;
        if !(200..300).contains(&status) {
            let error: Option<ErrorBody> = serde_json::from_slice(&answer).ok();
            let (code, message) = error.map_or_else(Default::default, |e| (e.code, e.message));
            return Ok(V3Reply::Error {
                status,
                code: code.chars().take(64).collect(),
                message: message.chars().take(256).collect(),
            });
        }
        self.verify_answer(&headers, &answer).await.map_err(|e| {
            tracing::warn!(path, error = %e, "v3 answer not trusted");
            ProviderError::Unavailable(format!("WeChat Pay answer not trusted: {e}"))
        })?;
        Ok(V3Reply::Success {
            status,
            body: answer,
        })
    }

    async fn verify_answer(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), V3Error> {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or(V3Error::BadSignature)
        };
        let (serial, signature) = (get("wechatpay-serial")?, get("wechatpay-signature")?);
        let (timestamp, nonce) = (get("wechatpay-timestamp")?, get("wechatpay-nonce")?);
        let now = Utc::now().timestamp();
        let key = self.keys().key_for(serial, now).await?;
        key.verify(&response_message(timestamp, nonce, body), signature)?;
        check_timestamp(timestamp, now)
    }

    /// The signed request for `method path` (path with its query, below `base`).
    fn signed(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let timestamp = Utc::now().timestamp();
        let nonce = nonce();
        let bytes = body.unwrap_or_default().as_bytes();
        let message = request_message(method.as_str(), path, timestamp, &nonce, bytes);
        let signature = self
            .key
            .sign(&message)
            .map_err(|e| ProviderError::Misconfigured {
                field: "client_key".to_owned(),
                message: e.to_string(),
            })?;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(
                AUTHORIZATION,
                authorization(&self.mchid, &nonce, &signature, timestamp, &self.serial_no),
            )
            .header(ACCEPT, "application/json");
        // The answer is signed with the key this names (public-key mode), so that a merchant in
        // the middle of a switch can verify it.
        if let Some((id, _)) = &self.public_key {
            request = request.header("Wechatpay-Serial", id.as_str());
        }
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_owned());
        }
        Ok(request)
    }

    /// The path (with its query) of a URL WeChat Pay gave for this merchant, e.g. a bill's
    /// `download_url`: only below `base`, so that the signed `Authorization` never goes to
    /// another host.
    pub fn path_of(&self, url: &str) -> Option<String> {
        let rest = url.strip_prefix(&self.base)?;
        rest.starts_with('/').then(|| rest.to_owned())
    }

    /// `GET path` for a file WeChat Pay serves unsigned (a bill): signed like any call, the
    /// answer not verifiable (WeChat Pay does not sign files; the caller checks the file's hash).
    /// Each chunk goes to `sink` as it arrives, within `timeout` for the whole download. Returns
    /// the bytes written; an error answer is WeChat Pay's `code` and `message`.
    pub async fn download_file(
        &self,
        path: &str,
        timeout: std::time::Duration,
        sink: &mut (dyn std::io::Write + Send),
    ) -> Result<u64, ProviderError> {
        let mut response = self
            .signed(Method::GET, path, None)?
            .timeout(timeout)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let mut answer = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
                if answer.len() < MAX_RESPONSE_BYTES {
                    answer.extend_from_slice(&chunk);
                }
            }
            let error: Option<ErrorBody> = serde_json::from_slice(&answer).ok();
            let (code, message) = error.map_or_else(Default::default, |e| (e.code, e.message));
            return Err(ProviderError::Rejected {
                code: "bill_refused",
                message: format!(
                    "WeChat Pay refused the bill's download: HTTP {status} {} {}",
                    code.chars().take(64).collect::<String>(),
                    message.chars().take(256).collect::<String>()
                ),
            });
        }
        let mut written = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            sink.write_all(&chunk)
                .map_err(|e| ProviderError::Unavailable(format!("cannot keep the bill: {e}")))?;
            written = written.saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
        }
        Ok(written)
    }

    /// Sign and send; the status, headers and capped body, whatever the status.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, HeaderMap, Vec<u8>), ProviderError> {
        let request = self.signed(method, path, body)?;
        let mut response = request.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if answer.len().saturating_add(chunk.len()) > MAX_RESPONSE_BYTES {
                return Err(ProviderError::Unavailable(format!(
                    "response larger than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            answer.extend_from_slice(&chunk);
        }
        Ok((status, headers, answer))
    }
}

#[async_trait]
impl CertificateDownload for V3Client {
    /// `GET /v3/certificates`, unverified on purpose: each certificate in it is trusted only if
    /// it decrypts under the APIv3 key (and the answer's own signature may need one of them).
    async fn download(&self) -> Result<Vec<u8>, String> {
        let (status, _, body) = self
            .send(Method::GET, "/v3/certificates", None)
            .await
            .map_err(|e| e.to_string())?;
        if status != 200 {
            let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            return Err(format!("HTTP {status}: {text}"));
        }
        Ok(body)
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
