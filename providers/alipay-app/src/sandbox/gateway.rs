//! What every `gateway.do` call shares: reading the parameters (query string and form body),
//! checking the common parameters and the RSA2 signature, and the signed JSON answer (§C.1,
//! §C.2, §C.5).

use chrono::{NaiveDateTime, TimeDelta};
use serde_json::{Map, Value};

use paybridge_core::provider::SimResponse;

use super::faults::Api;
use super::form::{self, Params, REQUEST_EXCLUDED};
use super::merchants::{Registry, Unknown};
use super::rsa2::Rsa2Signer;
use super::trades::{TIMESTAMP_FORMAT, beijing_now};

/// Bodies above this are refused before parsing.
const MAX_BODY: usize = 64 * 1024;

/// How far a request `timestamp` may be from the simulator's clock.
const MAX_SKEW: TimeDelta = TimeDelta::minutes(10);

/// An authenticated call.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// The method.
    pub(crate) api: Api,
    /// The app.
    pub(crate) app_id: String,
    /// `biz_content`, parsed.
    pub(crate) biz: Map<String, Value>,
}

impl Call {
    /// A non-empty string field of `biz_content`.
    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        self.biz
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// A gateway answer: `{"<key>": {inner}, "sign": "…"}`.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    key: &'static str,
    inner: Map<String, Value>,
}

impl Reply {
    /// `code=10000` plus the method's fields (`None` values are left out).
    pub(crate) fn success(
        api: Api,
        fields: impl IntoIterator<Item = (&'static str, Option<Value>)>,
    ) -> Reply {
        let mut inner = Map::new();
        inner.insert("code".into(), "10000".into());
        inner.insert("msg".into(), "Success".into());
        for (name, value) in fields {
            if let Some(value) = value {
                inner.insert(name.into(), value);
            }
        }
        Reply {
            key: api.response_key(),
            inner,
        }
    }

    /// A failure with `code`, its public `msg`, `sub_code` and `sub_msg`.
    pub(crate) fn error(api: Api, code: &str, sub_code: &str, sub_msg: &str) -> Reply {
        let msg = match code {
            "20000" => "Service Currently Unavailable",
            "40001" => "Missing Required Arguments",
            "40002" => "Invalid Arguments",
            "40004" => "Business Failed",
            _ => "Unknown Error",
        };
        let mut inner = Map::new();
        for (name, value) in [
            ("code", code),
            ("msg", msg),
            ("sub_code", sub_code),
            ("sub_msg", sub_msg),
        ] {
            inner.insert(name.into(), value.into());
        }
        Reply {
            key: api.response_key(),
            inner,
        }
    }

    /// A business failure (`40004`) with an `ACQ.*` sub-code.
    pub(crate) fn business(api: Api, sub_code: &str, sub_msg: &str) -> Reply {
        Reply::error(api, "40004", sub_code, sub_msg)
    }

    /// The injected or real `20000`: outcome unknown, nothing done.
    pub(crate) fn unavailable(api: Api) -> Reply {
        Reply::error(api, "20000", "isp.unknow-error", "系统繁忙")
    }

    /// The HTTP answer. The inner object is serialised once, and that exact text is both signed
    /// and written into the body. `corrupt_sign` (an injected `bad_sign`) signs other content.
    /// In certificate mode `cert_sn` names the certificate of `signer`, written between the
    /// answer and `sign` as `alipay_cert_sn`.
    pub(crate) fn render(
        &self,
        signer: &Rsa2Signer,
        cert_sn: Option<&str>,
        corrupt_sign: bool,
    ) -> SimResponse {
        let inner = Value::Object(self.inner.clone()).to_string();
        let signed = if corrupt_sign {
            format!("{inner} ")
        } else {
            inner.clone()
        };
        let sign = signer.sign(&signed).unwrap_or_default();
        let cert = cert_sn.map_or_else(String::new, |sn| {
            format!(",\"alipay_cert_sn\":{}", Value::String(sn.to_owned()))
        });
        let body = format!(
            "{{\"{key}\":{inner}{cert},\"sign\":{sign}}}",
            key = self.key,
            sign = Value::String(sign)
        );
        SimResponse {
            status: 200,
            content_type: "application/json;charset=utf-8",
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }
}

/// The request's parameters: the query string's and the form body's together (SDKs split the
/// common parameters and `biz_content` between them; all are signed together).
pub(crate) fn read_params(query: &str, body: &[u8]) -> Result<Params, Reply> {
    let invalid =
        |message: String| Reply::error(Api::Any, "40002", "isv.invalid-parameter", &message);
    if body.len() > MAX_BODY {
        return Err(invalid(format!("body above {MAX_BODY} bytes")));
    }
    let mut params =
        form::decode(query.as_bytes()).map_err(|e| invalid(format!("query string: {e}")))?;
    for (name, value) in form::decode(body).map_err(|e| invalid(format!("body: {e}")))? {
        if params.contains_key(&name) {
            return Err(invalid(format!(
                "parameter {name} is in both the query string and the body"
            )));
        }
        params.insert(name, value);
    }
    Ok(params)
}

/// The method a request calls, or the answer refusing it.
pub(crate) fn method(params: &Params) -> Result<Api, Reply> {
    match params.get("method").map(String::as_str) {
        None | Some("") => Err(Reply::error(
            Api::Any,
            "40001",
            "isv.missing-method",
            "缺少方法名参数",
        )),
        Some(method) => Api::of_method(method).ok_or_else(|| {
            Reply::error(
                Api::Any,
                "40002",
                "isv.invalid-method",
                &format!("不存在的方法名: {method} (the sandbox serves alipay.trade.query, .close, .refund, .fastpay.refund.query)"),
            )
        }),
    }
}

/// Checks the common parameters and the signature, in Alipay's order, and parses `biz_content`.
pub(crate) fn authenticate(registry: &Registry, api: Api, params: &Params) -> Result<Call, Reply> {
    let text = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let missing = |sub_code: &str, what: &str| {
        Reply::error(api, "40001", sub_code, &format!("缺少{what}参数"))
    };
    let invalid = |sub_code: &str, message: String| Reply::error(api, "40002", sub_code, &message);

    let app_id = text("app_id").ok_or_else(|| missing("isv.missing-app-id", "app_id"))?;
    match text("charset") {
        Some(charset) if charset.eq_ignore_ascii_case("utf-8") => {}
        Some(other) => {
            return Err(invalid(
                "isv.invalid-charset",
                format!("charset {other:?}: the sandbox accepts only utf-8"),
            ));
        }
        None => return Err(missing("isv.missing-charset", "charset")),
    }
    if let Some(format) = text("format").filter(|f| !f.eq_ignore_ascii_case("json")) {
        return Err(invalid(
            "isv.invalid-format",
            format!("format {format:?}: only JSON"),
        ));
    }
    match text("sign_type") {
        Some("RSA2") => {}
        Some(other) => {
            return Err(invalid(
                "isv.invalid-signature-type",
                format!("sign_type {other:?}: the sandbox accepts only RSA2"),
            ));
        }
        None => return Err(missing("isv.missing-signature-type", "sign_type")),
    }
    let timestamp =
        text("timestamp").ok_or_else(|| missing("isv.missing-timestamp", "timestamp"))?;
    check_timestamp(timestamp).map_err(|e| invalid("isv.invalid-timestamp", e))?;
    match text("version") {
        Some("1.0") => {}
        Some(other) => {
            return Err(invalid(
                "isv.invalid-version",
                format!("version {other:?}: only 1.0"),
            ));
        }
        None => return Err(missing("isv.missing-version", "version")),
    }
    // The token exchange is the third-party app's own call: no merchant token yet.
    let resolved = if api == Api::AuthToken {
        registry
            .isv(app_id)
            .map(|m| (app_id.to_owned(), m))
            .ok_or(Unknown::App)
    } else {
        registry.resolve(app_id, text("app_auth_token"))
    };
    let (account, merchant) = resolved.map_err(|unknown| match unknown {
        Unknown::App => invalid(
            "isv.invalid-app-id",
            format!("无效的AppID参数: {app_id} is not configured for any tenant of this sandbox"),
        ),
        Unknown::Token => Reply::error(
            api,
            "20001",
            "aop.invalid-app-auth-token",
            "无效的应用授权令牌",
        ),
    })?;
    if let Some(cert) = &merchant.cert {
        match text("app_cert_sn") {
            None => {
                return Err(invalid(
                    "isv.missing-app-cert-sn",
                    "缺少app_cert_sn参数 (certificate mode)".into(),
                ));
            }
            Some(sn) if sn != cert.app_cert_sn => {
                return Err(invalid(
                    "isv.app-cert-not-exist",
                    format!("应用公钥证书不存在: app_cert_sn {sn}"),
                ));
            }
            Some(_) => {}
        }
        match text("alipay_root_cert_sn") {
            None => {
                return Err(invalid(
                    "isv.missing-alipay-root-cert-sn",
                    "缺少alipay_root_cert_sn参数 (certificate mode)".into(),
                ));
            }
            Some(sn) if sn != cert.root_cert_sn => {
                return Err(invalid(
                    "isv.invalid-alipay-root-cert-sn",
                    format!("支付宝根证书SN无效: {sn}"),
                ));
            }
            Some(_) => {}
        }
    }
    let sign = text("sign").ok_or_else(|| missing("isv.missing-signature", "sign"))?;
    let content = form::sign_content(params, REQUEST_EXCLUDED);
    if !merchant.app_public_key.verify(&content, sign) {
        return Err(invalid(
            "isv.invalid-signature",
            format!(
                "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为：{content}"
            ),
        ));
    }
    let biz =
        text("biz_content").ok_or_else(|| missing("isv.missing-biz-content", "biz_content"))?;
    let Ok(Value::Object(biz)) = serde_json::from_str::<Value>(biz) else {
        return Err(invalid(
            "isv.invalid-parameter",
            "biz_content is not a JSON object".into(),
        ));
    };
    Ok(Call {
        api,
        // The account the trades belong to: the merchant's own app id.
        app_id: account,
        biz,
    })
}

/// `yyyy-MM-dd HH:mm:ss`, Beijing time, within ten minutes of now.
fn check_timestamp(timestamp: &str) -> Result<(), String> {
    let parsed = NaiveDateTime::parse_from_str(timestamp, TIMESTAMP_FORMAT)
        .ok()
        .filter(|t| t.format(TIMESTAMP_FORMAT).to_string() == timestamp)
        .ok_or_else(|| format!("timestamp {timestamp:?} is not yyyy-MM-dd HH:mm:ss"))?;
    let now = beijing_now();
    if (parsed - now).abs() > MAX_SKEW {
        return Err(format!(
            "非法的时间戳参数: {timestamp} is more than 10 minutes from now in Beijing time ({})",
            now.format(TIMESTAMP_FORMAT)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_must_be_exact_beijing_time_within_ten_minutes() {
        let at = |delta: TimeDelta| (beijing_now() + delta).format(TIMESTAMP_FORMAT).to_string();
        assert!(check_timestamp(&at(TimeDelta::zero())).is_ok());
        assert!(check_timestamp(&at(TimeDelta::minutes(9))).is_ok());
        assert!(check_timestamp(&at(TimeDelta::minutes(-9))).is_ok());
        assert!(check_timestamp(&at(TimeDelta::minutes(11))).is_err());
        // UTC instead of Beijing time: eight hours off.
        assert!(check_timestamp(&at(TimeDelta::hours(-8))).is_err());
        let now = beijing_now();
        assert!(check_timestamp(&now.format("%Y-%m-%dT%H:%M:%S").to_string()).is_err());
        assert!(check_timestamp(&format!("{} ", now.format(TIMESTAMP_FORMAT))).is_err());
    }

    #[test]
    fn query_and_body_parameters_merge_but_may_not_repeat() {
        let params =
            read_params("app_id=1&method=alipay.trade.query", b"biz_content=%7B%7D").unwrap();
        assert_eq!(params.len(), 3);
        assert!(read_params("app_id=1", b"app_id=1").is_err());
    }
}
