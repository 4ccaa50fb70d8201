//! WeChat Pay API v2 signatures (PROTOCOLS.md §B.2).
//!
//! The sign string is every parameter except `sign` and empty values, sorted by name in byte order,
//! joined as `k=v&…`, then `&key=<API key>`. MD5 hashes that text; HMAC-SHA256 keys the HMAC with the
//! API key *and* still appends `&key=…` to the message. Both are written as uppercase hex.

use std::collections::BTreeMap;
use std::fmt;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The two signature algorithms of API v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignType {
    /// `MD5`: the protocol default when `sign_type` is absent.
    Md5,
    /// `HMAC-SHA256`.
    HmacSha256,
}

impl SignType {
    /// Parse the wire name (`MD5` or `HMAC-SHA256`, exact case).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "MD5" => Some(SignType::Md5),
            "HMAC-SHA256" => Some(SignType::HmacSha256),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SignType::Md5 => "MD5",
            SignType::HmacSha256 => "HMAC-SHA256",
        }
    }

    /// The algorithm, keyed with the API key where the algorithm takes a key.
    pub fn signer(self, api_key: &SecretString) -> Box<dyn MessageSigner + '_> {
        match self {
            SignType::Md5 => Box::new(Md5Signer),
            SignType::HmacSha256 => Box::new(HmacSha256Signer {
                key: api_key.expose_secret().as_bytes(),
            }),
        }
    }
}

impl fmt::Display for SignType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Signs a message into uppercase hex, and verifies such a signature in constant time.
pub trait MessageSigner {
    /// The uppercase hex signature of `message`.
    fn sign(&self, message: &[u8]) -> String;

    /// Whether `signature` is exactly (case-sensitively) the signature of `message`.
    fn verify(&self, message: &[u8], signature: &str) -> bool {
        constant_time_eq(self.sign(message).as_bytes(), signature.as_bytes())
    }
}

/// MD5 of the message (the API key is already inside the message).
#[derive(Debug, Clone, Copy)]
pub struct Md5Signer;

impl MessageSigner for Md5Signer {
    fn sign(&self, message: &[u8]) -> String {
        hex::encode_upper(Md5::digest(message))
    }
}

/// HMAC-SHA256 keyed with the API key.
pub struct HmacSha256Signer<'k> {
    key: &'k [u8],
}

impl fmt::Debug for HmacSha256Signer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacSha256Signer { key: [REDACTED] }")
    }
}

impl MessageSigner for HmacSha256Signer<'_> {
    fn sign(&self, message: &[u8]) -> String {
        // HMAC accepts keys of any length, so this cannot fail; an empty string is never a valid
        // signature, so a failure could only make verification fail, never pass.
        match Hmac::<Sha256>::new_from_slice(self.key) {
            Ok(mut mac) => {
                mac.update(message);
                hex::encode_upper(mac.finalize().into_bytes())
            }
            Err(_) => String::new(),
        }
    }

    fn verify(&self, message: &[u8], signature: &str) -> bool {
        let expected = self.sign(message);
        !expected.is_empty() && constant_time_eq(expected.as_bytes(), signature.as_bytes())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Length is not secret (32 or 64 hex digits); the content comparison is constant-time.
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// stringA of §B.2: every parameter except `sign` and empty values, in byte order of the names,
/// joined as `k=v&k=v`. Values are used verbatim (no trimming, no URL-encoding).
pub fn sign_string(params: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    // BTreeMap<String, _> iterates in byte order of the keys, which is what WeChat sorts by.
    for (name, value) in params {
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

fn message_with_key(params: &BTreeMap<String, String>, api_key: &SecretString) -> String {
    let mut message = sign_string(params);
    message.push_str("&key=");
    message.push_str(api_key.expose_secret());
    message
}

/// The `sign` value for `params` (any `sign` entry in `params` is ignored).
pub fn sign(
    params: &BTreeMap<String, String>,
    sign_type: SignType,
    api_key: &SecretString,
) -> String {
    sign_type
        .signer(api_key)
        .sign(message_with_key(params, api_key).as_bytes())
}

/// Whether `params["sign"]` is the signature of all the other (non-empty) parameters. A missing
/// `sign` never verifies.
pub fn verify(
    params: &BTreeMap<String, String>,
    sign_type: SignType,
    api_key: &SecretString,
) -> bool {
    let Some(received) = params.get("sign") else {
        return false;
    };
    sign_type
        .signer(api_key)
        .verify(message_with_key(params, api_key).as_bytes(), received)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_KEY: &str = "192006250b4c09247ec02edce69f6a2d";

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn key(k: &str) -> SecretString {
        SecretString::from(k)
    }

    #[test]
    fn sign_type_names_round_trip_and_are_case_sensitive() {
        for t in [SignType::Md5, SignType::HmacSha256] {
            assert_eq!(SignType::parse(t.as_str()), Some(t));
        }
        assert_eq!(SignType::parse("md5"), None);
        assert_eq!(SignType::parse("HMAC_SHA256"), None);
        assert_eq!(SignType::parse(""), None);
    }

    #[test]
    fn official_doc_example_d1() {
        let p = params(&[
            ("appid", "wxd930ea5d5a258f4f"),
            ("mch_id", "10000100"),
            ("device_info", "1000"),
            ("body", "test"),
            ("nonce_str", "ibuaiVcKdpRxkhJA"),
        ]);
        assert_eq!(
            sign_string(&p),
            "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA"
        );
        assert_eq!(
            sign(&p, SignType::Md5, &key(DOC_KEY)),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
        assert_eq!(
            sign(&p, SignType::HmacSha256, &key(DOC_KEY)),
            "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
        );
    }

    #[test]
    fn wechatpy_test_vectors_d2() {
        let p = params(&[("test1", "test1"), ("test2", "test2")]);
        assert_eq!(
            sign(&p, SignType::Md5, &key(DOC_KEY)),
            "1E3A8D73B5A4AEE787C0F68B5DAB8520"
        );
        assert_eq!(
            sign(&p, SignType::HmacSha256, &key(DOC_KEY)),
            "EDAC6D70D2FDF5A2382F8204FC96A1918017E46ACC5297F565ED1A7610ACF659"
        );
    }

    #[test]
    fn ijpay_primitive_vectors_d2() {
        let hmac = HmacSha256Signer { key: b"123" }.sign(b"IJPay");
        assert_eq!(
            hmac,
            "8ae6af1a6f6e75f20b8240f320f33e1a376105c5668f1b57a591cd61fe409ee3".to_uppercase()
        );
        assert_eq!(
            Md5Signer.sign(b"IJPay"),
            "cbfc2149d454ecf4ab0f32e58430fcdd".to_uppercase()
        );
    }

    #[test]
    fn pay_sign_self_computed_vectors_d2() {
        let mut p = params(&[
            ("appId", "wxd930ea5d5a258f4f"),
            ("timeStamp", "1414561699"),
            ("nonceStr", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"),
            ("package", "prepay_id=wx201410272009395522657a690389285100"),
            ("signType", "MD5"),
        ]);
        assert_eq!(
            sign_string(&p),
            "appId=wxd930ea5d5a258f4f&nonceStr=5K8264ILTKCH16CQ2502SI8ZNMTM67VS\
             &package=prepay_id=wx201410272009395522657a690389285100&signType=MD5&timeStamp=1414561699"
        );
        assert_eq!(
            sign(&p, SignType::Md5, &key(DOC_KEY)),
            "FD19D752A746E5F238A6E53BD99EEBD0"
        );
        p.insert("signType".to_owned(), "HMAC-SHA256".to_owned());
        assert_eq!(
            sign(&p, SignType::HmacSha256, &key(DOC_KEY)),
            "FC7A79E4918B4FFA96E836F5AD4A510F31241FB46C14C971D6D7B4F8E15AF262"
        );
    }

    #[test]
    fn sign_and_empty_values_are_excluded_but_zero_is_not() {
        let p = params(&[("a", "1"), ("b", ""), ("sign", "XYZ"), ("c", "0")]);
        assert_eq!(sign_string(&p), "a=1&c=0");
    }

    #[test]
    fn names_sort_by_bytes_so_uppercase_comes_first() {
        let p = params(&[("b", "1"), ("B", "2"), ("a_b", "3"), ("aB", "4")]);
        assert_eq!(sign_string(&p), "B=2&aB=4&a_b=3&b=1");
    }

    #[test]
    fn verify_accepts_the_signature_and_refuses_any_change() {
        let k = key(DOC_KEY);
        for t in [SignType::Md5, SignType::HmacSha256] {
            let mut p = params(&[("appid", "wx1"), ("total_fee", "100"), ("body", " x ")]);
            let s = sign(&p, t, &k);
            p.insert("sign".to_owned(), s.clone());
            assert!(verify(&p, t, &k), "{t}");
            let other = if t == SignType::Md5 {
                SignType::HmacSha256
            } else {
                SignType::Md5
            };
            assert!(!verify(&p, other, &k), "{t} verified as {other}");
            assert!(
                !verify(&p, t, &key("0123456789abcdef0123456789abcdef")),
                "{t} wrong key"
            );
            p.insert("sign".to_owned(), s.to_lowercase());
            assert!(
                !verify(&p, t, &k),
                "{t} lowercase signature must not verify"
            );
            p.insert("sign".to_owned(), s);
            p.insert("total_fee".to_owned(), "1".to_owned());
            assert!(!verify(&p, t, &k), "{t} tampered amount");
            p.insert("total_fee".to_owned(), "100".to_owned());
            p.insert("body".to_owned(), "x".to_owned());
            assert!(!verify(&p, t, &k), "{t} trimmed value must not verify");
            p.remove("sign");
            assert!(!verify(&p, t, &k), "{t} missing sign");
        }
    }

    mod sdk_vectors {
        use super::*;

        fn cases() -> Vec<serde_json::Value> {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../fixtures/vectors/sdk-vectors.json"
            );
            let text = std::fs::read_to_string(path)
                .expect("fixtures/vectors/sdk-vectors.json is readable");
            let doc: serde_json::Value =
                serde_json::from_str(&text).expect("sdk-vectors.json is JSON");
            doc["wechat"]["cases"]
                .as_array()
                .expect("wechat.cases is an array")
                .clone()
        }

        fn case_params(case: &serde_json::Value) -> BTreeMap<String, String> {
            case["params"]
                .as_object()
                .expect("params object")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("string param").to_owned()))
                .collect()
        }

        #[test]
        fn every_wechat_case_matches_byte_for_byte() {
            let cases = cases();
            assert!(
                cases.len() >= 7,
                "expected at least 7 wechat cases, got {}",
                cases.len()
            );
            for case in &cases {
                let name = case["name"].as_str().unwrap_or("?");
                let p = case_params(case);
                let k = key(case["key"].as_str().expect("key"));
                assert_eq!(
                    sign_string(&p),
                    case["sign_string"].as_str().expect("sign_string"),
                    "{name}"
                );
                assert_eq!(
                    message_with_key(&p, &k),
                    case["sign_string_with_key"]
                        .as_str()
                        .expect("sign_string_with_key"),
                    "{name}"
                );
                assert_eq!(
                    sign(&p, SignType::Md5, &k),
                    case["md5"].as_str().expect("md5"),
                    "{name}"
                );
                assert_eq!(
                    sign(&p, SignType::HmacSha256, &k),
                    case["hmac_sha256"].as_str().expect("hmac_sha256"),
                    "{name}"
                );
            }
        }

        #[test]
        fn every_wechat_xml_md5_parses_back_to_its_params_and_verifies() {
            let mut seen = 0;
            for case in &cases() {
                let Some(xml) = case["xml_md5"].as_str() else {
                    continue;
                };
                let name = case["name"].as_str().unwrap_or("?");
                let mut decoded = crate::xml::decode(xml.as_bytes(), "xml").expect(name);
                let signature = decoded.remove("sign").expect("sign field");
                assert_eq!(signature, case["md5"].as_str().expect("md5"), "{name}");
                assert_eq!(decoded, case_params(case), "{name}");
                decoded.insert("sign".to_owned(), signature);
                assert!(
                    verify(
                        &decoded,
                        SignType::Md5,
                        &key(case["key"].as_str().expect("key"))
                    ),
                    "{name}"
                );
                seen += 1;
            }
            assert!(seen >= 6, "only {seen} cases carried xml_md5");
        }
    }
}
