//! What every Pay API v2 call shares: reading and authenticating the request (XML, merchant,
//! appid, `sign`), and the two shapes of answer (`return_code=FAIL`, or signed SUCCESS).

use rand::Rng;
use rand::distr::Alphanumeric;

use paybridge_core::provider::SimResponse;

use super::merchants::{Merchant, Registry};
use super::signature::{self, SignType};
use super::xml::{self, Fields, XmlError};

/// Bodies above this are refused before parsing.
const MAX_BODY: usize = 64 * 1024;

/// A request whose merchant, appid and signature checked out.
#[derive(Debug, Clone)]
pub(crate) struct Authed {
    /// The request's fields.
    pub(crate) fields: Fields,
    /// The merchant it is for.
    pub(crate) merchant: Merchant,
    /// The algorithm it was signed with; the answer is signed with it too.
    pub(crate) sign_type: SignType,
}

impl Authed {
    /// A non-empty request field.
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// An answer to a Pay API v2 call.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// `return_code=FAIL`: refused at the protocol level, unsigned.
    Refused(String),
    /// `return_code=SUCCESS`, signed with the merchant's key.
    Answer {
        /// The merchant.
        merchant: Merchant,
        /// The algorithm.
        sign_type: SignType,
        /// Every field but `sign`.
        fields: Fields,
    },
}

/// A random `nonce_str` of 32 letters and digits.
pub(crate) fn nonce() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

impl Reply {
    /// `return_code=SUCCESS`, `result_code=SUCCESS`, plus the API's fields.
    pub(crate) fn success(
        auth: &Authed,
        api_fields: impl IntoIterator<Item = (&'static str, String)>,
    ) -> Reply {
        let mut fields = base_fields(auth);
        fields.insert("result_code".into(), "SUCCESS".into());
        for (name, value) in api_fields
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
        {
            fields.insert(name.into(), value);
        }
        Reply::Answer {
            merchant: auth.merchant.clone(),
            sign_type: auth.sign_type,
            fields,
        }
    }

    /// [`Reply::success`] with field names built at run time (refundquery's `_$n` fields).
    pub(crate) fn success_owned(
        auth: &Authed,
        api_fields: impl IntoIterator<Item = (String, String)>,
    ) -> Reply {
        let mut fields = base_fields(auth);
        fields.insert("result_code".into(), "SUCCESS".into());
        fields.extend(
            api_fields
                .into_iter()
                .filter(|(_, value)| !value.is_empty()),
        );
        Reply::Answer {
            merchant: auth.merchant.clone(),
            sign_type: auth.sign_type,
            fields,
        }
    }

    /// `return_code=SUCCESS`, `result_code=FAIL` with `err_code` and `err_code_des`.
    pub(crate) fn business_error(auth: &Authed, err_code: &str, err_code_des: &str) -> Reply {
        let mut fields = base_fields(auth);
        fields.insert("result_code".into(), "FAIL".into());
        fields.insert("err_code".into(), err_code.into());
        fields.insert("err_code_des".into(), err_code_des.into());
        Reply::Answer {
            merchant: auth.merchant.clone(),
            sign_type: auth.sign_type,
            fields,
        }
    }

    /// The HTTP response; `corrupt_sign` (an injected `bad_sign`) alters one hex digit of `sign`.
    pub(crate) fn render(self, corrupt_sign: bool) -> SimResponse {
        let fields = match self {
            Reply::Refused(message) => {
                let mut fields = Fields::new();
                fields.insert("return_code".into(), "FAIL".into());
                fields.insert("return_msg".into(), message);
                fields
            }
            Reply::Answer {
                merchant,
                sign_type,
                mut fields,
            } => {
                let mut sign = signature::sign(&fields, &merchant.api_key, sign_type);
                if corrupt_sign {
                    let flipped = if sign.starts_with('0') { "1" } else { "0" };
                    sign.replace_range(..1, flipped);
                }
                fields.insert("sign".into(), sign);
                fields
            }
        };
        SimResponse {
            status: 200,
            content_type: "text/xml; charset=utf-8",
            headers: Vec::new(),
            body: xml::write(&fields).into_bytes(),
        }
    }
}

fn base_fields(auth: &Authed) -> Fields {
    let mut fields = Fields::new();
    fields.insert("return_code".into(), "SUCCESS".into());
    fields.insert("return_msg".into(), "OK".into());
    fields.insert("appid".into(), auth.merchant.appid.clone());
    fields.extend(
        auth.merchant
            .v2_ids()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value)),
    );
    fields.insert("nonce_str".into(), nonce());
    if let Some(device_info) = auth.field("device_info") {
        fields.insert("device_info".into(), device_info.into());
    }
    fields
}

/// Reads a request and checks it in WeChat's order: body, XML, merchant, appid, sign type,
/// signature, `nonce_str`.
pub(crate) fn authenticate(registry: &Registry, body: &[u8]) -> Result<Authed, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Reply::Refused("post数据为空".into()));
    }
    if body.len() > MAX_BODY {
        return Err(Reply::Refused(format!(
            "XML格式错误: body above {MAX_BODY} bytes"
        )));
    }
    let fields = xml::parse(body).map_err(|e| match e {
        XmlError::NotUtf8 => Reply::Refused("编码格式错误,请使用UTF-8".into()),
        other => Reply::Refused(format!("XML格式错误: {other}")),
    })?;
    let text = |name: &str| {
        fields
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let Some(mch_id) = text("mch_id") else {
        return Err(Reply::Refused("缺少参数mch_id".into()));
    };
    let Some(merchant) = registry.signer(mch_id) else {
        return Err(Reply::Refused("mch_id参数错误: 商户号不存在".into()));
    };
    if text("appid") != Some(merchant.appid.as_str()) {
        return Err(Reply::Refused("appid和mch_id不匹配".into()));
    }
    if merchant.api_key.is_empty() {
        return Err(Reply::Refused(
            "商户未配置API v2密钥 (the tenant has no api_key: use API v3)".into(),
        ));
    }
    let sign_type = SignType::from_field(text("sign_type"))
        .map_err(|e| Reply::Refused(format!("sign_type参数错误: {e}")))?;
    if !signature::verify(&fields, &merchant.api_key, sign_type) {
        return Err(Reply::Refused("签名错误".into()));
    }
    let mut auth = Authed {
        merchant: merchant.clone(),
        sign_type,
        fields,
    };
    // A service provider's call for a sub-merchant: it must be bound, and its sub_appid the
    // sub-merchant's. The call then acts for the sub-merchant (its orders and refunds).
    if let Some(sub_mch_id) = auth.field("sub_mch_id").map(str::to_owned) {
        let Some(sub) = registry
            .sub_merchant(&merchant.mch_id, &sub_mch_id)
            .cloned()
        else {
            return Err(Reply::business_error(
                &auth,
                "NO_AUTH",
                "子商户号与服务商未建立受理关系",
            ));
        };
        let bound_appid = sub.partner.as_ref().and_then(|p| p.sub_appid.as_deref());
        if auth.field("sub_appid") != bound_appid {
            return Err(Reply::business_error(
                &auth,
                "PARAM_ERROR",
                "sub_appid与sub_mch_id不匹配",
            ));
        }
        auth.merchant = sub;
    }
    match auth.field("nonce_str") {
        None => Err(Reply::business_error(
            &auth,
            "LACK_PARAMS",
            "缺少参数nonce_str",
        )),
        Some(nonce) if nonce.chars().count() > 32 => Err(Reply::business_error(
            &auth,
            "PARAM_ERROR",
            "nonce_str长度不能超过32个字符",
        )),
        Some(_) => Ok(auth),
    }
}
