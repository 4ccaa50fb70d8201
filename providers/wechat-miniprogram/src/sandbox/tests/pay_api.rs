use super::*;
use serde_json::json;

pub(super) async fn unifiedorder(
    sim: &WechatSimulator,
    fields: BTreeMap<String, String>,
    sign_type: Option<&str>,
) -> BTreeMap<String, String> {
    post(
        sim,
        "/pay/unifiedorder",
        signed_body(fields, API_KEY, sign_type),
    )
    .await
}

pub(super) fn assert_business_error(answer: &BTreeMap<String, String>, err_code: &str, des: &str) {
    assert_eq!(answer["return_code"], "SUCCESS", "{answer:?}");
    assert_eq!(answer["result_code"], "FAIL", "{answer:?}");
    assert_eq!(answer["err_code"], err_code, "{answer:?}");
    assert!(answer["err_code_des"].contains(des), "{answer:?}");
}

fn assert_refused(answer: &BTreeMap<String, String>, message: &str) {
    assert_eq!(answer["return_code"], "FAIL", "{answer:?}");
    assert!(answer["return_msg"].contains(message), "{answer:?}");
    assert!(!answer.contains_key("sign"));
}

pub(super) async fn query(sim: &WechatSimulator, by: (&str, &str)) -> BTreeMap<String, String> {
    let fields = params(&[
        ("appid", APPID),
        ("mch_id", MCH_ID),
        ("nonce_str", "q1"),
        by,
    ]);
    post(sim, "/pay/orderquery", signed_body(fields, API_KEY, None)).await
}

pub(super) async fn close(sim: &WechatSimulator, out_trade_no: &str) -> BTreeMap<String, String> {
    let fields = params(&[
        ("appid", APPID),
        ("mch_id", MCH_ID),
        ("nonce_str", "c1"),
        ("out_trade_no", out_trade_no),
    ]);
    post(
        sim,
        "/pay/closeorder",
        signed_body(fields, API_KEY, Some("HMAC-SHA256")),
    )
    .await
}

#[tokio::test]
async fn unifiedorder_without_sign_type_is_md5_and_answers_signed() {
    let sim = simulator();
    let openid = login(&sim, "u1").await;
    let answer = unifiedorder(&sim, order_fields("order-0001", &openid), None).await;
    assert_eq!(answer["return_code"], "SUCCESS", "{answer:?}");
    assert_eq!(answer["result_code"], "SUCCESS", "{answer:?}");
    assert_eq!(answer["appid"], APPID);
    assert_eq!(answer["mch_id"], MCH_ID);
    assert_eq!(answer["trade_type"], "JSAPI");
    assert!(
        answer["prepay_id"].starts_with("wx") && answer["prepay_id"].len() == 36,
        "{answer:?}"
    );
    assert!(!answer.contains_key("sign_type") && !answer.contains_key("err_code"));
    assert_signed(&answer, false);
}

#[tokio::test]
async fn hmac_requests_get_hmac_answers() {
    let sim = simulator();
    let openid = login(&sim, "u1").await;
    let answer = unifiedorder(
        &sim,
        order_fields("order-0001", &openid),
        Some("HMAC-SHA256"),
    )
    .await;
    assert_eq!(answer["result_code"], "SUCCESS", "{answer:?}");
    assert_eq!(answer["sign"].len(), 64);
    assert_signed(&answer, true);
}

#[tokio::test]
async fn a_wrong_signature_is_refused() {
    let sim = simulator();
    let openid = login(&sim, "u1").await;
    let fields = order_fields("order-0001", &openid);

    let wrong_key = signed_body(fields.clone(), "00000000000000000000000000000000", None);
    assert_refused(
        &post(&sim, "/pay/unifiedorder", wrong_key).await,
        "签名错误",
    );

    // Signed with MD5 but claiming HMAC-SHA256, and the reverse.
    let mut claims_hmac = fields.clone();
    claims_hmac.insert("sign_type".into(), "HMAC-SHA256".into());
    let md5_sign = test_sign(&claims_hmac, API_KEY, false);
    claims_hmac.insert("sign".into(), md5_sign);
    assert_refused(
        &post(&sim, "/pay/unifiedorder", signed_xml(&claims_hmac)).await,
        "签名错误",
    );
    let mut claims_md5 = fields.clone();
    claims_md5.insert("sign_type".into(), "MD5".into());
    let hmac_sign = test_sign(&claims_md5, API_KEY, true);
    claims_md5.insert("sign".into(), hmac_sign);
    assert_refused(
        &post(&sim, "/pay/unifiedorder", signed_xml(&claims_md5)).await,
        "签名错误",
    );

    // A lower-case sign, a tampered field, a missing sign.
    let mut lower = fields.clone();
    let sign = test_sign(&lower, API_KEY, false).to_lowercase();
    lower.insert("sign".into(), sign);
    assert_refused(
        &post(&sim, "/pay/unifiedorder", signed_xml(&lower)).await,
        "签名错误",
    );
    let mut tampered = fields.clone();
    let sign = test_sign(&tampered, API_KEY, false);
    tampered.insert("sign".into(), sign);
    tampered.insert("total_fee".into(), "1".into());
    assert_refused(
        &post(&sim, "/pay/unifiedorder", signed_xml(&tampered)).await,
        "签名错误",
    );
    assert_refused(
        &post(&sim, "/pay/unifiedorder", signed_xml(&fields)).await,
        "签名错误",
    );

    let mut unknown_type = fields;
    unknown_type.insert("sign_type".into(), "SHA1".into());
    assert_refused(
        &post(&sim, "/pay/unifiedorder", signed_xml(&unknown_type)).await,
        "sign_type",
    );
}

fn signed_xml(fields: &BTreeMap<String, String>) -> Vec<u8> {
    let inner: String = fields
        .iter()
        .map(|(k, v)| format!("<{k}><![CDATA[{v}]]></{k}>"))
        .collect();
    format!("<xml>{inner}</xml>").into_bytes()
}

#[tokio::test]
async fn merchant_appid_and_xml_are_checked_first() {
    let sim = simulator();
    let mut other_merchant = order_fields("order-0001", "o1");
    other_merchant.insert("mch_id".into(), "1234".into());
    assert_refused(
        &post(
            &sim,
            "/pay/unifiedorder",
            signed_body(other_merchant, API_KEY, None),
        )
        .await,
        "mch_id",
    );
    let mut other_app = order_fields("order-0001", "o1");
    other_app.insert("appid".into(), "wx0000000000000000".into());
    assert_refused(
        &post(
            &sim,
            "/pay/unifiedorder",
            signed_body(other_app, API_KEY, None),
        )
        .await,
        "appid和mch_id不匹配",
    );
    let dtd = b"<!DOCTYPE xml [<!ENTITY e \"x\">]><xml><mch_id>&e;</mch_id></xml>".to_vec();
    assert_refused(&post(&sim, "/pay/unifiedorder", dtd).await, "XML格式错误");
    assert_refused(
        &post(&sim, "/pay/unifiedorder", b"mch_id=1".to_vec()).await,
        "XML格式错误",
    );
    assert_refused(
        &post(&sim, "/pay/unifiedorder", Vec::new()).await,
        "post数据为空",
    );
}

#[tokio::test]
async fn field_rules_give_lack_params_and_param_error() {
    let sim = simulator();
    let openid = login(&sim, "u1").await;
    let cases: Vec<(&str, Option<&str>, &str, &str)> = vec![
        ("notify_url", None, "LACK_PARAMS", "notify_url"),
        ("spbill_create_ip", None, "LACK_PARAMS", "spbill_create_ip"),
        ("total_fee", Some("0"), "PARAM_ERROR", "total_fee"),
        ("total_fee", Some("19.90"), "PARAM_ERROR", "total_fee"),
        ("out_trade_no", Some("abc"), "PARAM_ERROR", "out_trade_no"),
        (
            "out_trade_no",
            Some("order#0001"),
            "PARAM_ERROR",
            "out_trade_no",
        ),
        (
            "time_expire",
            Some("2024-01-01 12:00:00"),
            "PARAM_ERROR",
            "time_expire",
        ),
        (
            "notify_url",
            Some("https://merchant.example/notify?x=1"),
            "PARAM_ERROR",
            "notify_url",
        ),
        (
            "openid",
            Some("oSomeoneElse"),
            "PARAM_ERROR",
            "appid和openid不匹配",
        ),
        ("openid", None, "PARAM_ERROR", "openid"),
    ];
    for (name, value, err_code, des) in cases {
        let mut fields = order_fields("order-0001", &openid);
        match value {
            Some(value) => fields.insert(name.into(), value.into()),
            None => fields.remove(name),
        };
        assert_business_error(&unifiedorder(&sim, fields, None).await, err_code, des);
    }
    let mut long_body = order_fields("order-0001", &openid);
    long_body.insert("body".into(), "咖".repeat(43)); // 129 bytes
    assert_business_error(
        &unifiedorder(&sim, long_body, None).await,
        "PARAM_ERROR",
        "body",
    );
    let mut ok_body = order_fields("order-0001", &openid);
    ok_body.insert("body".into(), format!("{}a", "咖".repeat(42))); // 127 bytes
    ok_body.insert("time_expire".into(), "20300101120000".into());
    assert_eq!(
        unifiedorder(&sim, ok_body, None).await["result_code"],
        "SUCCESS"
    );
}

#[tokio::test]
async fn reentry_with_the_same_params_returns_the_same_prepay_id() {
    let sim = simulator();
    let openid = login(&sim, "u1").await;
    let first = unifiedorder(
        &sim,
        order_fields("order-0001", &openid),
        Some("HMAC-SHA256"),
    )
    .await;
    let mut retry = order_fields("order-0001", &openid);
    retry.insert("nonce_str".into(), "another-nonce".into());
    retry.insert("spbill_create_ip".into(), "10.0.0.9".into());
    let second = unifiedorder(&sim, retry, Some("HMAC-SHA256")).await;
    assert_eq!(second["result_code"], "SUCCESS", "{second:?}");
    assert_eq!(first["prepay_id"], second["prepay_id"]);

    let mut changed = order_fields("order-0001", &openid);
    changed.insert("total_fee".into(), "1991".into());
    assert_business_error(
        &unifiedorder(&sim, changed, Some("HMAC-SHA256")).await,
        "INVALID_REQUEST",
        "201 商户订单号重复",
    );
    let mut without_attach = order_fields("order-0001", &openid);
    without_attach.remove("attach");
    assert_business_error(
        &unifiedorder(&sim, without_attach, Some("HMAC-SHA256")).await,
        "INVALID_REQUEST",
        "201",
    );
    // Another sign type is another parameter set.
    let as_md5 = unifiedorder(&sim, order_fields("order-0001", &openid), None).await;
    assert_business_error(&as_md5, "INVALID_REQUEST", "201");
}

#[tokio::test]
async fn reentry_after_payment_or_close_is_refused() {
    let sim = simulator();
    let openid = login(&sim, "u1").await;
    unifiedorder(&sim, order_fields("order-paid", &openid), None).await;
    unifiedorder(&sim, order_fields("order-closed", &openid), None).await;
    let paid = control(
        &sim,
        "/control/pay",
        json!({"out_trade_no": "order-paid", "notify": "drop"}),
    )
    .await;
    assert_eq!(paid.status, 200);
    assert_eq!(close(&sim, "order-closed").await["result_code"], "SUCCESS");
    assert_business_error(
        &unifiedorder(&sim, order_fields("order-paid", &openid), None).await,
        "ORDERPAID",
        "",
    );
    assert_business_error(
        &unifiedorder(&sim, order_fields("order-closed", &openid), None).await,
        "ORDERCLOSED",
        "",
    );
}

#[tokio::test]
async fn orderquery_follows_the_order_through_its_states() {
    let sim = simulator();
    let openid = login(&sim, "u1").await;
    assert_business_error(
        &query(&sim, ("out_trade_no", "order-0001")).await,
        "ORDERNOTEXIST",
        "",
    );
    unifiedorder(&sim, order_fields("order-0001", &openid), None).await;
    let unpaid = query(&sim, ("out_trade_no", "order-0001")).await;
    assert_eq!(unpaid["result_code"], "SUCCESS");
    assert_eq!(unpaid["trade_state"], "NOTPAY");
    assert!(!unpaid.contains_key("transaction_id"));
    assert_signed(&unpaid, false);

    let paid = json_of(
        &control(
            &sim,
            "/control/pay",
            json!({"out_trade_no": "order-0001", "notify": "drop"}),
        )
        .await,
    );
    let transaction_id = paid["transaction_id"].as_str().unwrap();
    assert!(
        transaction_id.starts_with("42000") && transaction_id.len() == 28,
        "{transaction_id}"
    );
    for by in [
        ("out_trade_no", "order-0001"),
        ("transaction_id", transaction_id),
    ] {
        let answer = query(&sim, by).await;
        assert_eq!(answer["trade_state"], "SUCCESS", "{answer:?}");
        assert_eq!(answer["transaction_id"], transaction_id);
        assert_eq!(answer["out_trade_no"], "order-0001");
        assert_eq!(answer["total_fee"], "1990");
        assert_eq!(answer["cash_fee"], "1990");
        assert_eq!(answer["fee_type"], "CNY");
        assert_eq!(answer["openid"], openid);
        assert_eq!(answer["trade_type"], "JSAPI");
        assert_eq!(answer["attach"], "table=7");
        assert_eq!(answer["time_end"], paid["time_end"].as_str().unwrap());
        assert_eq!(answer["time_end"].len(), 14);
        assert!(answer.contains_key("bank_type") && answer.contains_key("trade_state_desc"));
        assert_signed(&answer, false);
    }
    assert_business_error(
        &query(&sim, ("transaction_id", "4200000000000000000000000000")).await,
        "ORDERNOTEXIST",
        "",
    );
}

#[tokio::test]
async fn closeorder_closes_only_unpaid_orders() {
    let sim = simulator();
    let openid = login(&sim, "u1").await;
    assert_business_error(&close(&sim, "order-none").await, "ORDERNOTEXIST", "");
    unifiedorder(&sim, order_fields("order-0001", &openid), None).await;
    let closed = close(&sim, "order-0001").await;
    assert_eq!(closed["result_code"], "SUCCESS", "{closed:?}");
    assert_signed(&closed, true);
    assert_eq!(
        query(&sim, ("out_trade_no", "order-0001")).await["trade_state"],
        "CLOSED"
    );
    assert_business_error(&close(&sim, "order-0001").await, "ORDERCLOSED", "");

    unifiedorder(&sim, order_fields("order-0002", &openid), None).await;
    control(
        &sim,
        "/control/pay",
        json!({"out_trade_no": "order-0002", "notify": "drop"}),
    )
    .await;
    assert_business_error(&close(&sim, "order-0002").await, "ORDERPAID", "");
}
