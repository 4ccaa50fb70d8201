//! The v3 cryptography against the vectors the official SDK (PyPI `wechatpayv3` 2.0.4) made:
//! `fixtures/wechatpay-v3/gen.py`. Every output must match byte for byte, and every case the SDK
//! refused must be refused.

use serde_json::Value;

use super::crypto::*;

const VECTORS: &str = include_str!("../../../../fixtures/wechatpay-v3/vectors.json");
const MERCHANT_KEY: &str = include_str!("../../../../fixtures/wechatpay-v3/merchant_key.pem");
const PUBLIC_KEY: &str = include_str!("../../../../fixtures/wechatpay-v3/wechatpay_public_key.pem");
const PLATFORM_CERT: &str = include_str!("../../../../fixtures/wechatpay-v3/platform_cert.pem");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn list<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    let items = v[key].as_array().unwrap();
    assert!(!items.is_empty(), "no {key} vectors");
    items
}

/// The key `Wechatpay-Serial` names, as a tenant configured with both kinds would choose it.
fn key_for(serial: &str) -> VerifyingKey {
    let v = vectors();
    if serial.starts_with(PUBLIC_KEY_ID_PREFIX) {
        assert_eq!(serial, s(&v, "public_key_id"));
        return VerifyingKey::from_public_key_pem(PUBLIC_KEY, "wechatpay_public_key").unwrap();
    }
    let (cert_serial, key) =
        VerifyingKey::from_certificate_pem(PLATFORM_CERT, "platform_certificates").unwrap();
    assert_eq!(cert_serial, normalize_serial(serial));
    key
}

#[test]
fn authorization_headers_match_the_sdk_byte_for_byte() {
    let v = vectors();
    let key = MerchantKey::from_pem(MERCHANT_KEY, "private_key").unwrap();
    for case in list(&v, "authorization") {
        let ts: i64 = s(case, "timestamp").parse().unwrap();
        let message = request_message(
            s(case, "method"),
            s(case, "path"),
            ts,
            s(case, "nonce"),
            s(case, "body").as_bytes(),
        );
        assert_eq!(message, s(case, "sign_str").as_bytes());
        let signature = key.sign(&message).unwrap();
        assert_eq!(signature, s(case, "signature"), "{}", s(case, "path"));
        assert_eq!(
            authorization(
                s(case, "mchid"),
                s(case, "nonce"),
                &signature,
                ts,
                s(case, "serial_no")
            ),
            s(case, "authorization")
        );
    }
}

#[test]
fn answers_verify_as_the_sdk_says_with_either_kind_of_key() {
    let v = vectors();
    for case in list(&v, "answers") {
        let key = key_for(s(case, "serial"));
        let good = response_message(
            s(case, "timestamp"),
            s(case, "nonce"),
            s(case, "body").as_bytes(),
        );
        assert_eq!(case["sdk_verifies"], Value::Bool(true));
        key.verify(&good, s(case, "signature")).unwrap();
        assert_eq!(case["sdk_verifies_other_nonce"], Value::Bool(false));
        let other = response_message(
            s(case, "timestamp"),
            &format!("{}0", s(case, "nonce")),
            s(case, "body").as_bytes(),
        );
        assert_eq!(
            key.verify(&other, s(case, "signature")),
            Err(V3Error::BadSignature)
        );
    }
}

#[test]
fn notifications_verify_and_decrypt_to_what_the_sdk_decrypted() {
    let v = vectors();
    let apiv3_key = s(&v, "apiv3_key").as_bytes();
    for case in list(&v, "notifications") {
        let h = &case["headers"];
        assert_eq!(s(h, "Wechatpay-Signature-Type"), SCHEME);
        let key = key_for(s(h, "Wechatpay-Serial"));
        let message = response_message(
            s(h, "Wechatpay-Timestamp"),
            s(h, "Wechatpay-Nonce"),
            s(case, "body").as_bytes(),
        );
        key.verify(&message, s(h, "Wechatpay-Signature")).unwrap();
        let body: Value = serde_json::from_str(s(case, "body")).unwrap();
        let r = &body["resource"];
        assert_eq!(s(r, "algorithm"), "AEAD_AES_256_GCM");
        let plain = decrypt(
            apiv3_key,
            s(r, "nonce"),
            s(r, "associated_data"),
            s(r, "ciphertext"),
        )
        .unwrap();
        assert_eq!(String::from_utf8(plain).unwrap(), s(case, "sdk_plaintext"));

        // One byte more in the body: the SDK refused it, and so does this.
        assert_eq!(case["sdk_tampered_body_plaintext"], Value::Null);
        let tampered = response_message(
            s(h, "Wechatpay-Timestamp"),
            s(h, "Wechatpay-Nonce"),
            s(case, "tampered_body").as_bytes(),
        );
        assert_eq!(
            key.verify(&tampered, s(h, "Wechatpay-Signature")),
            Err(V3Error::BadSignature)
        );
    }
}

#[test]
fn a_signature_made_with_one_kind_of_key_does_not_verify_with_the_other() {
    let v = vectors();
    let public = key_for(s(&v, "public_key_id"));
    let cert = key_for(s(&v, "platform_serial_no"));
    for case in list(&v, "notifications") {
        let h = &case["headers"];
        let message = response_message(
            s(h, "Wechatpay-Timestamp"),
            s(h, "Wechatpay-Nonce"),
            s(case, "body").as_bytes(),
        );
        let wrong = if s(h, "Wechatpay-Serial").starts_with(PUBLIC_KEY_ID_PREFIX) {
            &cert
        } else {
            &public
        };
        assert_eq!(
            wrong.verify(&message, s(h, "Wechatpay-Signature")),
            Err(V3Error::BadSignature)
        );
    }
}

#[test]
fn resources_open_as_in_the_sdk_and_a_wrong_aad_or_key_does_not() {
    let v = vectors();
    for case in list(&v, "resources") {
        let key = s(case, "apiv3_key").as_bytes();
        let (nonce, aad, ct) = (
            s(case, "nonce"),
            s(case, "associated_data"),
            s(case, "ciphertext"),
        );
        let plain = decrypt(key, nonce, aad, ct).unwrap();
        assert_eq!(String::from_utf8(plain).unwrap(), s(case, "sdk_plaintext"));
        assert_eq!(case["sdk_with_wrong_aad"], Value::Null);
        assert_eq!(
            decrypt(key, nonce, &format!("{aad}x"), ct),
            Err(V3Error::Decrypt)
        );
        let mut other_key = key.to_vec();
        other_key[0] ^= 1;
        assert_eq!(decrypt(&other_key, nonce, aad, ct), Err(V3Error::Decrypt));
        assert!(matches!(
            decrypt(&key[..31], nonce, aad, ct),
            Err(V3Error::Key {
                field: "apiv3_key",
                ..
            })
        ));
    }
}

#[test]
fn pay_sign_matches_the_sdk() {
    let v = vectors();
    let key = MerchantKey::from_pem(MERCHANT_KEY, "private_key").unwrap();
    for case in list(&v, "pay_sign") {
        assert_eq!(s(case, "signType"), "RSA");
        let message = pay_sign_message(
            s(case, "appId"),
            s(case, "timeStamp"),
            s(case, "nonceStr"),
            s(case, "package"),
        );
        assert_eq!(key.sign(message.as_bytes()).unwrap(), s(case, "paySign"));
    }
}

#[test]
fn a_timestamp_five_minutes_or_more_off_is_refused() {
    let now = 1_765_008_000;
    check_timestamp("1765008000", now).unwrap();
    check_timestamp("1765007701", now).unwrap();
    check_timestamp("1765008299", now).unwrap();
    for stale in ["1765007700", "1765008300", "", "17650080a0", "-1"] {
        assert!(
            matches!(check_timestamp(stale, now), Err(V3Error::StaleTimestamp(_))),
            "{stale:?}"
        );
    }
}

#[test]
fn keys_in_the_wrong_format_are_refused_naming_the_field() {
    let e = MerchantKey::from_pem(PUBLIC_KEY, "private_key").unwrap_err();
    assert!(
        matches!(
            e,
            V3Error::Key {
                field: "private_key",
                ..
            }
        ),
        "{e}"
    );
    let e = VerifyingKey::from_public_key_pem(MERCHANT_KEY, "wechatpay_public_key").unwrap_err();
    assert!(
        matches!(
            e,
            V3Error::Key {
                field: "wechatpay_public_key",
                ..
            }
        ),
        "{e}"
    );
    assert!(
        !e.to_string().contains("MII"),
        "no key material in errors: {e}"
    );
    let e = VerifyingKey::from_certificate_pem(PUBLIC_KEY, "platform_certificates").unwrap_err();
    assert!(
        matches!(
            e,
            V3Error::Key {
                field: "platform_certificates",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn serials_compare_without_case_or_leading_zeros() {
    assert_eq!(normalize_serial("00ab12"), "AB12");
    assert_eq!(normalize_serial("AB12"), normalize_serial("ab12"));
    assert_eq!(normalize_serial("000"), "0");
}
