//! The Pay API v2 `sign` (PROTOCOLS §B.2), computed by the simulator's own code so that a bug in the
//! merchant client's signer cannot agree with itself here.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The two v2 signature algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignType {
    /// `MD5`, the default when a request has no `sign_type`.
    Md5,
    /// `HMAC-SHA256`.
    HmacSha256,
}

impl SignType {
    /// The algorithm a request asks for: its `sign_type` field, MD5 when absent or empty.
    pub(crate) fn from_field(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("") | Some("MD5") => Ok(SignType::Md5),
            Some("HMAC-SHA256") => Ok(SignType::HmacSha256),
            Some(other) => Err(format!(
                "sign_type must be MD5 or HMAC-SHA256, got {other:?}"
            )),
        }
    }

    /// The wire name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SignType::Md5 => "MD5",
            SignType::HmacSha256 => "HMAC-SHA256",
        }
    }
}

/// stringA: every non-empty field but `sign`, sorted by name in byte order, joined as `k=v&…`.
pub(crate) fn string_to_sign(fields: &BTreeMap<String, String>) -> String {
    // BTreeMap<String, _> iterates in byte order, which is the ASCII order WeChat specifies.
    let mut out = String::new();
    for (name, value) in fields {
        if name == "sign" || value.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// The upper-case hex `sign` of `fields` under `api_key`.
pub(crate) fn sign(
    fields: &BTreeMap<String, String>,
    api_key: &str,
    sign_type: SignType,
) -> String {
    let message = format!("{}&key={}", string_to_sign(fields), api_key);
    let digest = match sign_type {
        SignType::Md5 => Md5::digest(message.as_bytes()).to_vec(),
        SignType::HmacSha256 => match Hmac::<Sha256>::new_from_slice(api_key.as_bytes()) {
            Ok(mut mac) => {
                mac.update(message.as_bytes());
                mac.finalize().into_bytes().to_vec()
            }
            // HMAC takes keys of any length; an empty result can never equal a received sign.
            Err(_) => return String::new(),
        },
    };
    hex::encode_upper(digest)
}

/// Whether the `sign` field of `fields` is exactly (case-sensitively) the sign of the other fields.
pub(crate) fn verify(
    fields: &BTreeMap<String, String>,
    api_key: &str,
    sign_type: SignType,
) -> bool {
    let Some(received) = fields.get("sign") else {
        return false;
    };
    let expected = sign(fields, api_key, sign_type);
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(received.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fixtures/vectors/sdk-vectors.json wechat.cases[0] (the WeChat documentation example).
    fn doc_example() -> BTreeMap<String, String> {
        [
            ("appid", "wxd930ea5d5a258f4f"),
            ("mch_id", "10000100"),
            ("device_info", "1000"),
            ("body", "test"),
            ("nonce_str", "ibuaiVcKdpRxkhJA"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
    const DOC_KEY: &str = "192006250b4c09247ec02edce69f6a2d";

    #[test]
    fn doc_example_string_to_sign_is_sorted_and_joined() {
        assert_eq!(
            string_to_sign(&doc_example()),
            "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA"
        );
    }

    #[test]
    fn doc_example_md5_sign_matches_vector() {
        assert_eq!(
            sign(&doc_example(), DOC_KEY, SignType::Md5),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
    }

    #[test]
    fn doc_example_hmac_sha256_sign_matches_vector() {
        assert_eq!(
            sign(&doc_example(), DOC_KEY, SignType::HmacSha256),
            "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
        );
    }

    #[test]
    fn empty_values_and_sign_are_left_out() {
        let mut fields = doc_example();
        fields.insert("attach".into(), String::new());
        fields.insert("sign".into(), "whatever".into());
        assert_eq!(
            sign(&fields, DOC_KEY, SignType::Md5),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
    }

    #[test]
    fn verify_is_case_sensitive_and_algorithm_specific() {
        let mut fields = doc_example();
        fields.insert("sign".into(), "9A0A8659F005D6984697E2CA0A9CF3B7".into());
        assert!(verify(&fields, DOC_KEY, SignType::Md5));
        assert!(!verify(&fields, DOC_KEY, SignType::HmacSha256));
        fields.insert("sign".into(), "9a0a8659f005d6984697e2ca0a9cf3b7".into());
        assert!(!verify(&fields, DOC_KEY, SignType::Md5));
    }

    #[test]
    fn sign_type_field_defaults_to_md5_and_refuses_others() {
        assert_eq!(SignType::from_field(None), Ok(SignType::Md5));
        assert_eq!(SignType::from_field(Some("")), Ok(SignType::Md5));
        assert_eq!(
            SignType::from_field(Some("HMAC-SHA256")),
            Ok(SignType::HmacSha256)
        );
        assert!(SignType::from_field(Some("hmac-sha256")).is_err());
    }
}
