//! Locating the signed text in a raw response, and verifying it.

use super::*;
use crate::keys::AppPrivateKey;
use crate::test_support::{alipay_signer, sandbox_key};

const METHOD: &str = "alipay.trade.query";

fn public() -> AlipayPublicKey {
    AlipayPublicKey::parse(&sandbox_key("alipay_sandbox_public.pem")).expect("key")
}

fn signed_body(key: &str, inner: &str, signer: &AppPrivateKey) -> String {
    let sign = signer.sign_rsa2(inner.as_bytes()).expect("sign");
    format!("{{\"{key}\":{inner},\"sign\":\"{sign}\"}}")
}

#[test]
fn brace_matching_tracks_strings_and_escapes() {
    let cases = [
        (r#"{"a":1}"#, r#"{"a":1}"#),
        (
            r#"{"a":{"b":{"c":[{}]}}},"x":{}"#,
            r#"{"a":{"b":{"c":[{}]}}}"#,
        ),
        (r#"{"m":"}{}}"}tail"#, r#"{"m":"}{}}"}"#),
        (r#"{"m":"say \"}\" ok"},"#, r#"{"m":"say \"}\" ok"}"#),
        (
            r#"{"m":"ends in backslash \\"}}"#,
            r#"{"m":"ends in backslash \\"}"#,
        ),
        (r#"{"m":"\\\"}"},"#, r#"{"m":"\\\"}"}"#),
    ];
    for (text, expected) in cases {
        let end = matching_brace_end(text, 0).unwrap_or_else(|| panic!("no match in {text}"));
        assert_eq!(&text[..end], expected);
    }
    assert_eq!(matching_brace_end(r#"{"a":"}"#, 0), None);
    assert_eq!(matching_brace_end(r#"{"a":{}"#, 0), None);
    assert_eq!(matching_brace_end("x{}", 0), None);
}

#[test]
fn the_exact_inner_text_is_verified_not_a_reserialization() {
    // Odd spacing, key order and unicode escapes survive because the raw text is signed.
    let inner = "{ \"code\" : \"10000\",\"msg\":\"Success\", \"nested\":{\"s\":\"{ } \\\" \\u4e2d\"},\"trade_status\":\"TRADE_SUCCESS\" }";
    let body = signed_body("alipay_trade_query_response", inner, &alipay_signer());
    let verified = verify_response(&body, METHOD, &public()).expect("verifies");
    assert_eq!(verified.kind, ResponseKind::Method);
    assert_eq!(verified.fields["trade_status"], "TRADE_SUCCESS");
    assert_eq!(verified.fields["nested"]["s"], "{ } \" 中");
}

#[test]
fn sign_before_the_response_object_and_whitespace_are_fine() {
    let inner = r#"{"code":"10000","msg":"Success"}"#;
    let sign = alipay_signer().sign_rsa2(inner.as_bytes()).expect("sign");
    let body =
        format!("{{ \"sign\" : \"{sign}\" ,\n \"alipay_trade_query_response\" :\n {inner} }}");
    assert!(verify_response(&body, METHOD, &public()).is_ok());
}

#[test]
fn escaped_slashes_are_retried_unescaped_once() {
    // Signed over `/`, sent with `\/` (a JSON serializer's choice).
    let signed_over = r#"{"code":"10000","msg":"Success","url":"https://a/b"}"#;
    let sent = r#"{"code":"10000","msg":"Success","url":"https:\/\/a\/b"}"#;
    let sign = alipay_signer()
        .sign_rsa2(signed_over.as_bytes())
        .expect("sign");
    let body = format!("{{\"alipay_trade_query_response\":{sent},\"sign\":\"{sign}\"}}");
    let verified = verify_response(&body, METHOD, &public()).expect("verifies after retry");
    assert_eq!(verified.fields["url"], "https://a/b");
    // Signed over the escaped text as sent: verifies directly.
    let body = signed_body("alipay_trade_query_response", sent, &alipay_signer());
    assert!(verify_response(&body, METHOD, &public()).is_ok());
}

#[test]
fn error_response_is_located_when_the_method_object_is_absent() {
    let inner = r#"{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature","sub_msg":"bad"}"#;
    let body = signed_body("error_response", inner, &alipay_signer());
    let verified = verify_response(&body, METHOD, &public()).expect("verifies");
    assert_eq!(verified.kind, ResponseKind::Error);
    assert_eq!(verified.fields["sub_code"], "isv.invalid-signature");
}

#[test]
fn unverifiable_answers_are_refused() {
    let inner = r#"{"code":"10000","msg":"Success","trade_status":"TRADE_SUCCESS"}"#;
    let other_key = AppPrivateKey::parse(&crate::test_support::app_private_pem()).expect("key");
    let body = signed_body("alipay_trade_query_response", inner, &other_key);
    assert_eq!(
        verify_response(&body, METHOD, &public()),
        Err(ResponseError::BadSignature)
    );

    let tampered = signed_body("alipay_trade_query_response", inner, &alipay_signer())
        .replace("TRADE_SUCCESS", "TRADE_CLOSED");
    assert_eq!(
        verify_response(&tampered, METHOD, &public()),
        Err(ResponseError::BadSignature)
    );

    let unsigned = r#"{"error_response":{"code":"40002","sub_code":"isv.invalid-app-id"}}"#;
    let err = verify_response(unsigned, METHOD, &public()).expect_err("unsigned");
    assert_eq!(
        err.to_string(),
        "response signature did not verify (unsigned answer claiming code 40002 isv.invalid-app-id)"
    );

    for malformed in [
        "",
        "<html>502</html>",
        "{\"other_response\":{},\"sign\":\"x\"}",
        "{\"alipay_trade_query_response\":\"s\",\"sign\":\"x\"}",
    ] {
        assert!(
            matches!(
                verify_response(malformed, METHOD, &public()),
                Err(ResponseError::Malformed(_))
            ),
            "{malformed}"
        );
    }
}

#[test]
fn a_decoy_inside_a_string_or_a_duplicate_key_cannot_borrow_a_signature() {
    let real = r#"{"code":"10000","msg":"Success","trade_status":"WAIT_BUYER_PAY"}"#;
    let sign = alipay_signer().sign_rsa2(real.as_bytes()).expect("sign");
    // The signed object sits nested under another member; the real member is something else.
    let fake = r#"{"code":"10000","msg":"Success","trade_status":"TRADE_SUCCESS"}"#;
    let decoy = format!("{{\"alipay_trade_query_response\":{real}}}");
    let body =
        format!("{{\"note\":{decoy},\"alipay_trade_query_response\":{fake},\"sign\":\"{sign}\"}}");
    assert_eq!(
        verify_response(&body, METHOD, &public()),
        Err(ResponseError::BadSignature)
    );
    // A second member with the same name wins in the parse: it must be the one verified.
    let body = format!(
        "{{\"alipay_trade_query_response\":{real},\"sign\":\"{sign}\",\"alipay_trade_query_response\":{fake}}}"
    );
    assert_eq!(
        verify_response(&body, METHOD, &public()),
        Err(ResponseError::BadSignature)
    );
    // While the decoy is still found and skipped when the real member is the signed one.
    let body =
        format!("{{\"note\":{decoy},\"alipay_trade_query_response\":{real},\"sign\":\"{sign}\"}}");
    assert!(verify_response(&body, METHOD, &public()).is_ok());
}

#[test]
fn response_key_replaces_dots() {
    assert_eq!(
        response_key("alipay.trade.fastpay.refund.query"),
        "alipay_trade_fastpay_refund_query_response"
    );
}
