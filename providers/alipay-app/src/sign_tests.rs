//! The sign strings, pinned to PROTOCOLS.md §D.3/§D.4 and the official SDK vectors.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::*;
use crate::keys::{AlipayPublicKey, AppPrivateKey};
use crate::test_support::fixture;

const D4_CONTENT: &str = "app_id=2021000122671080&biz_content={\"out_trade_no\":\"20240101000001\",\"total_amount\":\"0.01\",\"subject\":\"Test Order 1\",\"product_code\":\"QUICK_MSECURITY_PAY\",\"timeout_express\":\"30m\"}&charset=utf-8&format=JSON&method=alipay.trade.app.pay&notify_url=https://example.com/notify/alipay&sign_type=RSA2&timestamp=2024-01-01 12:00:00&version=1.0";
const D4_SHA256: &str = "789b152d988d252344fbc2d02c2ae71d222917397f20465c84cfcca341a70cff";
pub(crate) const D4_SIGN: &str = "V3wmUCbFurbxS9HgPLMZoCPuJg3GejCsQ55RZaC6rcm9D4syaqm0z0lNITryj/aEg6fHjd36j7E/EPvANw0prRa+C4LNWxgmadUL0+mcG9FpbcqUZAaU0F00hcd3DgQUVV02Pw3sDYM78rOXGu4LZ+qTBT27+LCr4/WvycvG4DSmkEXg9teLp8G7Y3CEokOXbV7AHIhFcD0zHIfHO1V1FT/73yF+b6kvkBhFrkPrZqIchoO1TNTzMdRg8FqXNoCXbjVEU0NUFEzuYV80PVk9HHdHuX5yx4P6oLK9q9OgRFGU9WEPKnBIZ8QHtAVUPAY4AE6TQ++d8F1ZjKyAA2/pfQ==";

pub(crate) const D3_PUBLIC_KEY: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAqObrdC7hrgAVM98tK0nv3hSQRGGKT4lBsQjHiGjeYZjOPIPHR5knm2jnnz/YGIXIofVHkA/tAlBAd5DrY7YpvI4tP5EONLtZKC2ghBMx7McI2wRD0xiqzxOQr1FuhZGJ8/AUokBzJrzY+aGX2xcOrxFYRlFilvVLTXg4LWjR1tdPkO6+i7wQZAIVMClPkwVRZEbaERRHlKqTzv2gGv5rDU8gRoe1LeaN+6BlbTqHWkQcNCUNrA8C6l17XAXGKDsm/9TFWwO8EPHHHCaQdjtV5/FdcWIt+L8SR1ss7EXTjYDFtxcKVv9rEoY1lX8T4mX+GbXfZHraG5NCF1+XioL5JwIDAQAB";
pub(crate) const D3_CONTENT: &str = "app_id=2019073166072302&auth_app_id=2019073166072302&buyer_id=2088102534368455&buyer_logon_id=xud***@126.com&buyer_pay_amount=0.10&charset=utf-8&fund_bill_list=[{\"amount\":\"0.10\",\"fundChannel\":\"ALIPAYACCOUNT\"}]&gmt_create=2019-08-15 15:56:22&gmt_payment=2019-08-15 15:56:24&invoice_amount=0.10&notify_id=2019081500222155624068450559358070&notify_time=2019-08-15 15:56:25&notify_type=trade_status_sync&out_trade_no=20190815155618536-564-57&point_amount=0.00&receipt_amount=0.10&seller_email=z97-yuquerevenue@service.aliyun.com&seller_id=2088531891668739&subject=语雀空间 500人规模&total_amount=0.10&trade_no=2019081522001468450512505578&trade_status=TRADE_SUCCESS&version=1.0";
pub(crate) const D3_SIGN: &str = "QfTb8tqE1BMhS5qAnXtvsF3/jBkEvu9q9en0pdbBUDDjvKycZhQb7h8GDs4FKfi049PynaNuatxSgLb/nLWZpXyyh0LEWdK2S6Ri7nPwrVgOs08zugLO20vOQz44y3ti2Ncm8/wZts1Fr2gZ7pShnVX3d1B50hbsXnObT1r/U8ONNQjWXd0HIul4TG+Q3fm3svmSvFEy0WnzuhcyHPX5Gm4ELNctL6Qd5YniGJFNcc7kopHYtI/XD9YCKCH6Ct02rzUs9i11C9CsadtZn+WhxF26Dqt9sGEFajkJ8cxUTLi8+VCpLHsgPE8P0y095uQcDdK0YjCh4x7wVSov+lrmOQ==";

/// `k=v&k=v` (values without `&`) → map.
pub(crate) fn split_content(content: &str) -> BTreeMap<String, String> {
    content
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("k=v");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn pairs(map: &BTreeMap<String, String>) -> impl Iterator<Item = (&str, &str)> {
    map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

#[test]
fn d4_sign_string_digest_and_signature_match_exactly() {
    let params = split_content(D4_CONTENT);
    let content = request_sign_content(pairs(&params));
    assert_eq!(content, D4_CONTENT);
    assert_eq!(content.len(), 333);
    assert_eq!(hex::encode(Sha256::digest(content.as_bytes())), D4_SHA256);
    // D.4 was computed with the Node SDK's published test key, kept in fixtures/alipay-sdk/.
    for key_file in [
        "alipay-sdk/d4_app_private_pkcs8.pem",
        "alipay-sdk/d4_app_private_pkcs1.pem",
    ] {
        let key = AppPrivateKey::parse(&fixture(key_file)).expect("key");
        assert_eq!(
            sign_request(&key, &params).expect("sign"),
            D4_SIGN,
            "{key_file}"
        );
    }
    let public = AlipayPublicKey::parse(&fixture("alipay-sdk/d4_app_public.pem")).expect("public");
    assert!(public.verify_rsa2(D4_CONTENT.as_bytes(), D4_SIGN));
    // The workspace's vector key is another key: its signature differs and does not verify here.
    let other = AppPrivateKey::parse(&fixture("vectors/app_private_pkcs8.pem")).expect("key");
    let theirs = sign_request(&other, &params).expect("sign");
    assert_ne!(theirs, D4_SIGN);
    assert!(!public.verify_rsa2(D4_CONTENT.as_bytes(), &theirs));
}

#[test]
fn request_content_keeps_sign_type_and_drops_sign_and_empty_values() {
    let content = request_sign_content([
        ("sign", "zzz"),
        ("b", "2"),
        ("sign_type", "RSA2"),
        ("a", ""),
        ("a_b", "x y"),
        ("aB", "%20+"),
        ("0", "0"),
    ]);
    // Byte order: digits < uppercase < '_' < lowercase. A literal 0 is not empty.
    assert_eq!(content, "0=0&aB=%20+&a_b=x y&b=2&sign_type=RSA2");
}

#[test]
fn d3_notification_verifies_with_rsa_check_v1_only() {
    let key = AlipayPublicKey::parse(D3_PUBLIC_KEY).expect("key");
    let mut params = split_content(D3_CONTENT);
    params.insert("sign".to_owned(), D3_SIGN.to_owned());
    params.insert("sign_type".to_owned(), "RSA2".to_owned());
    assert_eq!(notification_check_content(pairs(&params)), D3_CONTENT);
    assert!(verify_notification_params(&key, &params));
    // rsaCheckV2 (sign_type kept) must not verify this V1 vector.
    let v2 = request_sign_content(pairs(&params));
    assert!(v2.contains("&sign_type=RSA2&"));
    assert!(!key.verify_rsa2(v2.as_bytes(), D3_SIGN));
    // One changed character anywhere breaks it.
    let mut tampered = params.clone();
    tampered.insert("total_amount".to_owned(), "0.11".to_owned());
    assert!(!verify_notification_params(&key, &tampered));
    tampered = params.clone();
    tampered.remove("sign");
    assert!(!verify_notification_params(&key, &tampered));
}

#[test]
fn sdk_vectors_sign_strings_and_signatures_match_byte_for_byte() {
    let doc: serde_json::Value =
        serde_json::from_str(&fixture("vectors/sdk-vectors.json")).expect("json");
    let cases = doc["alipay"]["cases"].as_array().expect("cases");
    assert!(cases.len() >= 5);
    let key = AppPrivateKey::parse(&fixture("vectors/app_private_pkcs1.pem")).expect("key");
    let public = AlipayPublicKey::parse(&fixture("vectors/app_public.pem")).expect("public");
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let decoded: BTreeMap<String, String> =
            serde_json::from_value(case["order_string_decoded"].clone()).expect("decoded");
        let mut params = decoded.clone();
        let sdk_sign = params.remove("sign").expect("sign");
        assert_eq!(sdk_sign, case["sign"].as_str().expect("sign"), "{name}");
        assert_eq!(
            request_sign_content(pairs(&params)),
            case["sign_string"].as_str().expect("sign_string"),
            "{name}"
        );
        assert_eq!(
            sign_request(&key, &params).expect("sign"),
            sdk_sign,
            "{name}"
        );

        // Our encoding of the same params decodes back to them, and the signature verifies.
        let mut ours = params.clone();
        ours.insert("sign".to_owned(), sdk_sign.clone());
        let order_string = crate::order_string::encode_params(&ours);
        let round_trip = crate::notify::decode_form(order_string.as_bytes()).expect("decodes");
        assert_eq!(round_trip, decoded, "{name}");
        // And the SDK's own orderString, decoded once, is the same set.
        let sdk = crate::notify::decode_form(case["order_string"].as_str().expect("os").as_bytes())
            .expect("decodes");
        assert_eq!(sdk, decoded, "{name}");
        assert!(
            public.verify_rsa2(
                request_sign_content(pairs(&round_trip)).as_bytes(),
                &sdk_sign
            ),
            "{name}"
        );
    }
}
