//! The API v2 call pipeline, one step per function:
//! build params → sign → POST XML → read a capped body → parse → `return_code` → verify the
//! response `sign` → `result_code`/`err_code`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use paybridge_core::provider::ProviderError;
use rand::Rng;
use rand::distr::Alphanumeric;

use crate::config::WechatConfig;
use crate::sign::{self, SignType};
use crate::xml;

/// Responses larger than this are refused (real ones are a few KiB).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Connect timeout ceiling; the overall timeout comes from the build context.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The business outcome of a call whose transport, `return_code` and signature all checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `result_code=SUCCESS`: every field of the response.
    Success(BTreeMap<String, String>),
    /// `result_code` other than SUCCESS.
    BusinessError {
        /// `err_code`, e.g. `ORDERPAID`.
        err_code: String,
        /// `err_code_des`, WeChat's text.
        err_code_des: String,
    },
}

/// The path prefix of the APIs that need the merchant API certificate (mutual TLS).
pub const SECURE_PREFIX: &str = "/secapi/";

/// A WeChat Pay API v2 client for one merchant. Holds its HTTP clients for the provider's life:
/// one without a client certificate, and one presenting the merchant API certificate, used only
/// for `/secapi/` paths (so the certificate is never shown to anything else).
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    secure_http: Option<reqwest::Client>,
    config: Arc<WechatConfig>,
}

/// Why the HTTP clients could not be built.
#[derive(Debug)]
pub enum ClientBuildError {
    /// The plain client (bad `ca_file` roots, TLS backend set-up).
    Plain(reqwest::Error),
    /// The client presenting the merchant API certificate.
    Secure(reqwest::Error),
}

/// Build an HTTP client: overall timeout, connect timeout, extra roots, no redirects (a payment API
/// never redirects, and following one would send a signed body elsewhere), and the client
/// certificate when one is given.
pub fn http_client(
    config: &WechatConfig,
    timeout: Duration,
    identity: Option<reqwest::Identity>,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("paybridge-wechat/", env!("CARGO_PKG_VERSION")))
        .tls_certs_merge(config.ca_certs.iter().cloned());
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    builder.build()
}

/// How long a bill's whole download may take.
pub const BILL_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// 32 random letters and digits (`nonce_str`, `nonceStr`).
pub fn nonce() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// Step 1–2: the business params plus `appid`, `mch_id`, `nonce_str`, `sign_type`, and the `sign`.
pub fn signed_request(
    config: &WechatConfig,
    sign_type: SignType,
    mut params: BTreeMap<String, String>,
    nonce_str: String,
) -> BTreeMap<String, String> {
    params.insert("appid".to_owned(), config.appid.clone());
    params.insert("mch_id".to_owned(), config.mch_id.clone());
    if let Some(partner) = &config.partner {
        // Service-provider mode: every v2 call names the sub-merchant (and its mini-program).
        params.insert("sub_mch_id".to_owned(), partner.sub_mchid.clone());
        if let Some(sub_appid) = &partner.sub_appid {
            params.insert("sub_appid".to_owned(), sub_appid.clone());
        }
    }
    params.insert("nonce_str".to_owned(), nonce_str);
    params.insert("sign_type".to_owned(), sign_type.as_str().to_owned());
    params.remove("sign");
    let signature = sign::sign(&params, sign_type, &config.api_key);
    params.insert("sign".to_owned(), signature);
    params
}

/// A transport error as the caller sees it. The URL is dropped from the text: login URLs carry the
/// AppSecret in the query.
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

/// Step 4: read the body, refusing anything larger than `cap` bytes, and non-2xx statuses.
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, ProviderError> {
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
    Ok(body)
}

/// Step 5: parse, and step 6: `return_code` (protocol level).
pub fn parse_and_check_return_code(body: &[u8]) -> Result<BTreeMap<String, String>, ProviderError> {
    let fields = xml::decode(body, "xml")
        .map_err(|e| ProviderError::Unavailable(format!("unreadable WeChat Pay response: {e}")))?;
    match fields.get("return_code").map(String::as_str) {
        Some("SUCCESS") => Ok(fields),
        Some("FAIL") => {
            let msg: String = fields
                .get("return_msg")
                .map_or("", String::as_str)
                .chars()
                .take(128)
                .collect();
            Err(ProviderError::Unavailable(format!(
                "WeChat Pay return_code FAIL: {msg}"
            )))
        }
        _ => Err(ProviderError::Unavailable(
            "WeChat Pay response without a valid return_code".to_owned(),
        )),
    }
}

/// Step 7: the response must be signed with the request's sign type and the merchant's key.
pub fn check_response_signature(
    fields: &BTreeMap<String, String>,
    sign_type: SignType,
    config: &WechatConfig,
) -> Result<(), ProviderError> {
    if sign::verify(fields, sign_type, &config.api_key) {
        Ok(())
    } else {
        Err(ProviderError::Unavailable(
            "response signature did not verify".to_owned(),
        ))
    }
}

/// Step 7b: a signed answer must still be about this merchant: its `appid` and `mch_id`, when it
/// has them, are the config's. An answer for another merchant (a proxy or a key shared by
/// mistake) is not trusted.
pub fn check_merchant(
    fields: &BTreeMap<String, String>,
    config: &WechatConfig,
) -> Result<(), ProviderError> {
    for (name, ours) in merchant_fields(config) {
        if let Some(theirs) = fields.get(name).filter(|v| !v.is_empty())
            && theirs != ours
        {
            return Err(ProviderError::Unavailable(format!(
                "WeChat Pay answered with {name} {theirs}, not this merchant's {ours}"
            )));
        }
    }
    Ok(())
}

/// The fields that name the merchant in a v2 answer or notification, with this config's values:
/// `appid`, `mch_id`, and in service-provider mode `sub_mch_id` (and `sub_appid`).
pub fn merchant_fields(config: &WechatConfig) -> Vec<(&'static str, &String)> {
    let mut fields = vec![("appid", &config.appid), ("mch_id", &config.mch_id)];
    if let Some(partner) = &config.partner {
        fields.push(("sub_mch_id", &partner.sub_mchid));
        if let Some(sub_appid) = &partner.sub_appid {
            fields.push(("sub_appid", sub_appid));
        }
    }
    fields
}

/// Step 8: `result_code` (business level).
pub fn business_result(fields: BTreeMap<String, String>) -> Reply {
    if fields.get("result_code").map(String::as_str) == Some("SUCCESS") {
        return Reply::Success(fields);
    }
    let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
    Reply::BusinessError {
        err_code: get("err_code"),
        err_code_des: get("err_code_des"),
    }
}

impl ApiClient {
    /// A client for this merchant.
    pub fn new(config: Arc<WechatConfig>, timeout: Duration) -> Result<Self, ClientBuildError> {
        let http = http_client(&config, timeout, None).map_err(ClientBuildError::Plain)?;
        let secure_http = match &config.client_identity {
            None => None,
            Some(identity) => {
                let identity = identity
                    .reqwest_identity()
                    .map_err(ClientBuildError::Secure)?;
                Some(
                    http_client(&config, timeout, Some(identity))
                        .map_err(ClientBuildError::Secure)?,
                )
            }
        };
        Ok(ApiClient {
            http,
            secure_http,
            config,
        })
    }

    /// The merchant config.
    pub fn config(&self) -> &WechatConfig {
        &self.config
    }

    /// The shared HTTP client (also used for login).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The HTTP client for `path`: the one with the merchant API certificate for `/secapi/`
    /// paths (an error before any network call when there is none), the plain one otherwise.
    fn client_for(&self, path: &str) -> Result<&reqwest::Client, ProviderError> {
        if !path.starts_with(SECURE_PREFIX) {
            return Ok(&self.http);
        }
        self.config.client_identity()?;
        self.secure_http
            .as_ref()
            .ok_or_else(|| ProviderError::Misconfigured {
                field: "client_cert".to_owned(),
                message: crate::config::REFUND_NEEDS_CERT.to_owned(),
            })
    }

    /// Whether `/secapi/` calls can be made.
    pub fn has_client_certificate(&self) -> bool {
        self.secure_http.is_some()
    }

    /// `POST /pay/downloadbill` for a Beijing `day` (`bill_type=ALL`): the bill's text is written
    /// to `dest` as it arrives (a bill is never held in memory); an XML answer is a refusal:
    /// `No Bill Exist` is a day without trades, `StatementCreating` a bill not made yet. The
    /// bill is not signed (WeChat signs only XML answers); its summary is checked when parsed.
    pub async fn download_bill(
        &self,
        day: chrono::NaiveDate,
        sign_type: SignType,
        dest: &mut (dyn std::io::Write + Send),
    ) -> Result<paybridge_core::statement::BillDownload, ProviderError> {
        use paybridge_core::statement::BillDownload;
        let business = BTreeMap::from([
            ("bill_date".to_owned(), day.format("%Y%m%d").to_string()),
            ("bill_type".to_owned(), "ALL".to_owned()),
        ]);
        let params = signed_request(&self.config, sign_type, business, nonce());
        let body = xml::encode("xml", &params).map_err(|e| ProviderError::InvalidRequest {
            field: None,
            message: e.to_string(),
        })?;
        let url = format!("{}/pay/downloadbill", self.config.api_base);
        let mut response = self
            .http
            .post(&url)
            // A bill of a busy day is large: the whole download gets longer than an API call
            // (the client's timeout), and is still bounded.
            .timeout(BILL_DOWNLOAD_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(ProviderError::Unavailable(format!("HTTP {status}")));
        }
        let mut first = true;
        let mut refusal: Option<Vec<u8>> = None;
        let mut written = 0usize;
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if first {
                first = false;
                if chunk.trim_ascii_start().starts_with(b"<xml") {
                    refusal = Some(Vec::new());
                }
            }
            match refusal.as_mut() {
                Some(xml) if xml.len() + chunk.len() > MAX_RESPONSE_BYTES => {
                    return Err(ProviderError::Unavailable(
                        "an XML answer to downloadbill is too large".to_owned(),
                    ));
                }
                Some(xml) => xml.extend_from_slice(&chunk),
                None => {
                    written = written.saturating_add(chunk.len());
                    dest.write_all(&chunk).map_err(|e| {
                        ProviderError::Unavailable(format!("cannot keep the bill: {e}"))
                    })?;
                }
            }
        }
        let Some(xml) = refusal else {
            return if written == 0 {
                Err(ProviderError::Unavailable(
                    "an empty answer to downloadbill".to_owned(),
                ))
            } else {
                Ok(BillDownload::Written)
            };
        };
        let fields = xml::decode(&xml, "xml").map_err(|e| {
            ProviderError::Unavailable(format!("unreadable WeChat Pay response: {e}"))
        })?;
        let message = fields.get("return_msg").cloned().unwrap_or_default();
        let code = fields.get("err_code").cloned().unwrap_or_default();
        if message.contains("No Bill Exist") || code == "NO_BILL_EXIST" || code == "20002" {
            return Ok(BillDownload::Empty);
        }
        if message.contains("StatementCreating") || code == "STATEMENT_CREATING" {
            return Ok(BillDownload::NotReady(message));
        }
        Err(ProviderError::Rejected {
            code: "bill_refused",
            message: format!("WeChat Pay refused the bill: {message} {code}"),
        })
    }

    /// Run the whole pipeline for `path` (e.g. `/pay/unifiedorder`) with these business params.
    pub async fn call(
        &self,
        path: &str,
        business: BTreeMap<String, String>,
        sign_type: SignType,
    ) -> Result<Reply, ProviderError> {
        let http = self.client_for(path)?;
        let params = signed_request(&self.config, sign_type, business, nonce());
        let body = xml::encode("xml", &params).map_err(|e| ProviderError::InvalidRequest {
            field: None,
            message: e.to_string(),
        })?;
        let url = format!("{}{path}", self.config.api_base);
        let response = http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(transport_error)?;
        let body = read_capped(response, MAX_RESPONSE_BYTES).await?;
        let fields = parse_and_check_return_code(&body).inspect_err(|e| {
            tracing::warn!(path, error = %e, "WeChat Pay call failed at protocol level");
        })?;
        check_response_signature(&fields, sign_type, &self.config).inspect_err(|_| {
            tracing::warn!(
                path,
                sign_type = sign_type.as_str(),
                "WeChat Pay response signature did not verify"
            );
        })?;
        check_merchant(&fields, &self.config).inspect_err(|e| {
            tracing::warn!(path, error = %e, "WeChat Pay answer for another merchant");
        })?;
        let reply = business_result(fields);
        match &reply {
            Reply::Success(_) => tracing::debug!(path, "WeChat Pay call succeeded"),
            Reply::BusinessError { err_code, .. } => {
                tracing::info!(path, err_code, "WeChat Pay business error")
            }
        }
        Ok(reply)
    }
}

/// At most the first 6 characters of an openid, for logs.
pub fn openid_prefix(openid: &str) -> String {
    let prefix: String = openid.chars().take(6).collect();
    format!("{prefix}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_is_32_random_alphanumerics() {
        let a = nonce();
        let b = nonce();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn openid_prefix_never_shows_the_whole_id() {
        assert_eq!(openid_prefix("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"), "oUpF8u…");
        assert_eq!(openid_prefix("ab"), "ab…");
    }

    #[test]
    fn an_answer_for_another_appid_or_mch_id_is_not_trusted() {
        let config = WechatConfig {
            appid: "wx0000000000000001".into(),
            mch_id: "1900000101".into(),
            api_key: secrecy::SecretString::from("k"),
            app_secret: None,
            sign_type: crate::sign::SignType::Md5,
            client_identity: None,
            ca_certs: Vec::new(),
            api_base: String::new(),
            login_base: String::new(),
            spbill_create_ip: String::new(),
            api_version: crate::config::ApiVersion::V2,
            v3: None,
            partner: None,
        };
        let fields = |appid: &str, mch: &str| -> BTreeMap<String, String> {
            [
                ("appid", appid),
                ("mch_id", mch),
                ("result_code", "SUCCESS"),
            ]
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
        };
        assert!(check_merchant(&fields("wx0000000000000001", "1900000101"), &config).is_ok());
        assert!(check_merchant(&fields("", ""), &config).is_ok());
        for (a, m) in [
            ("wx0000000000000002", "1900000101"),
            ("wx0000000000000001", "1900000102"),
        ] {
            let e = check_merchant(&fields(a, m), &config).expect_err("refused");
            assert!(matches!(e, ProviderError::Unavailable(_)), "{e:?}");
        }
    }

    #[test]
    fn business_result_reads_result_and_err_codes() {
        let ok: BTreeMap<String, String> = [("result_code", "SUCCESS"), ("x", "1")]
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        assert_eq!(business_result(ok.clone()), Reply::Success(ok));
        let fail: BTreeMap<String, String> = [
            ("result_code", "FAIL"),
            ("err_code", "ORDERPAID"),
            ("err_code_des", "paid"),
        ]
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
        assert_eq!(
            business_result(fail),
            Reply::BusinessError {
                err_code: "ORDERPAID".into(),
                err_code_des: "paid".into()
            }
        );
    }
}
