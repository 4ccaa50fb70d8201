//! `gateway.do`: authentication, signed answers, query and close.

use serde_json::json;

use super::*;

async fn opened(sim: &AlipaySimulator, out_trade_no: &str, pay: bool) -> String {
    let answer = cashier(
        sim,
        &order_string(out_trade_no, "12.30", NOTIFY_URL),
        json!({ "pay": pay, "notify": "drop" }),
    )
    .await;
    answer["trade_no"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_request_signed_with_another_key_is_an_invalid_signature() {
    let sim = simulator();
    let mut params = gateway_params("alipay.trade.query", &json!({ "out_trade_no": "X-1" }));
    let sign = test_sign(&params, OTHER_KEY);
    params.insert("sign".into(), sign);
    let answer = post_gateway(&sim, "", &encode_params(&params, true)).await;
    assert_eq!(answer.code(), "40002");
    assert_eq!(answer.inner["msg"], "Invalid Arguments");
    assert_eq!(answer.sub_code(), "isv.invalid-signature");
    // The sandbox shows the sign content it built, as Alipay does.
    assert!(
        answer
            .field("sub_msg")
            .contains("app_id=2021001100600001&biz_content=")
    );
    assert!(answer.raw.starts_with("{\"alipay_trade_query_response\":"));
    assert!(answer.sign_verifies);
}

#[tokio::test]
async fn a_changed_parameter_or_a_sign_over_encoded_values_is_refused() {
    let sim = simulator();
    let body = sign_encode(
        gateway_params("alipay.trade.query", &json!({ "out_trade_no": "X-1" })),
        true,
    );
    let answer = post_gateway(&sim, "", &body.replace("X-1", "X-2")).await;
    assert_eq!(answer.sub_code(), "isv.invalid-signature");

    let mut params = gateway_params("alipay.trade.query", &json!({ "out_trade_no": "X 1" }));
    let encoded: Params = params
        .iter()
        .map(|(k, v)| (k.clone(), encode_value(v, false)))
        .collect();
    params.insert("sign".into(), test_sign(&encoded, APP_KEY_PKCS1));
    let answer = post_gateway(&sim, "", &encode_params(&params, false)).await;
    assert_eq!(answer.sub_code(), "isv.invalid-signature");
}

#[tokio::test]
async fn common_parameters_are_checked_before_the_signature() {
    let sim = simulator();
    let cases: [(&str, &str, &str, &str); 6] = [
        (
            "timestamp",
            &beijing_timestamp(11),
            "40002",
            "isv.invalid-timestamp",
        ),
        (
            "timestamp",
            &beijing_timestamp(-8 * 60),
            "40002",
            "isv.invalid-timestamp",
        ),
        ("app_id", "2021009999999999", "40002", "isv.invalid-app-id"),
        ("charset", "GBK", "40002", "isv.invalid-charset"),
        ("sign_type", "RSA", "40002", "isv.invalid-signature-type"),
        ("method", "alipay.trade.pay", "40002", "isv.invalid-method"),
    ];
    for (name, value, code, sub_code) in cases {
        let mut params = gateway_params("alipay.trade.query", &json!({ "out_trade_no": "X-1" }));
        params.insert(name.into(), value.into());
        let answer = post_gateway(&sim, "", &sign_encode(params, true)).await;
        assert_eq!(
            (answer.code(), answer.sub_code()),
            (code, sub_code),
            "{name}={value}"
        );
        assert!(answer.sign_verifies);
    }
    let mut params = gateway_params("alipay.trade.query", &json!({ "out_trade_no": "X-1" }));
    params.remove("method");
    let answer = post_gateway(&sim, "", &sign_encode(params, true)).await;
    assert_eq!(answer.sub_code(), "isv.missing-method");
    assert!(answer.raw.starts_with("{\"error_response\":"));
}

#[tokio::test]
async fn common_parameters_in_the_query_string_are_signed_with_the_body() {
    let sim = simulator();
    opened(&sim, "Q-QS-1", false).await;
    let mut params = gateway_params("alipay.trade.query", &json!({ "out_trade_no": "Q-QS-1" }));
    let sign = test_sign(&params, APP_KEY_PKCS1);
    params.insert("sign".into(), sign);
    let body = params::split_off(&mut params, "biz_content");
    let answer = post_gateway(
        &sim,
        &encode_params(&params, false),
        &encode_params(&body, true),
    )
    .await;
    assert_eq!(answer.code(), "10000", "{}", answer.raw);
    assert_eq!(answer.field("trade_status"), "WAIT_BUYER_PAY");
}

mod params {
    use super::Params;

    /// Moves `name` out of `params` into a map of its own.
    pub(super) fn split_off(params: &mut Params, name: &str) -> Params {
        let value = params.remove(name).unwrap();
        [(name.to_owned(), value)].into_iter().collect()
    }
}

#[tokio::test]
async fn a_trade_exists_only_once_the_cashier_opened_it() {
    let sim = simulator();
    let answer = gateway(
        &sim,
        "alipay.trade.query",
        json!({ "out_trade_no": "Q-NE-1" }),
    )
    .await;
    assert_eq!(
        (answer.code(), answer.sub_code()),
        ("40004", "ACQ.TRADE_NOT_EXIST")
    );
    assert_eq!(answer.inner["msg"], "Business Failed");
    assert!(answer.sign_verifies);
    let answer = gateway(
        &sim,
        "alipay.trade.close",
        json!({ "out_trade_no": "Q-NE-1" }),
    )
    .await;
    assert_eq!(answer.sub_code(), "ACQ.TRADE_NOT_EXIST");
}

#[tokio::test]
async fn query_reports_unpaid_then_paid_with_payment_details() {
    let sim = simulator();
    let trade_no = opened(&sim, "Q-ST-1", false).await;
    let unpaid = gateway(
        &sim,
        "alipay.trade.query",
        json!({ "out_trade_no": "Q-ST-1" }),
    )
    .await;
    assert_eq!(unpaid.field("trade_status"), "WAIT_BUYER_PAY");
    assert_eq!(unpaid.field("trade_no"), trade_no);
    assert!(unpaid.inner.get("send_pay_date").is_none());

    cashier(
        &sim,
        &order_string("Q-ST-1", "12.30", NOTIFY_URL),
        json!({ "notify": "drop" }),
    )
    .await;
    // By trade_no this time.
    let paid = gateway(&sim, "alipay.trade.query", json!({ "trade_no": trade_no })).await;
    assert!(paid.sign_verifies);
    assert_eq!(paid.field("trade_status"), "TRADE_SUCCESS");
    assert_eq!(paid.field("out_trade_no"), "Q-ST-1");
    assert_eq!(paid.field("total_amount"), "12.30");
    assert!(paid.field("buyer_user_id").starts_with("2088"));
    assert!(!paid.field("buyer_logon_id").is_empty());
    assert_eq!(paid.field("send_pay_date").len(), 19);
    // A nested array of objects inside the signed text.
    assert_eq!(paid.inner["fund_bill_list"][0]["amount"], "12.30");

    let mismatch = gateway(
        &sim,
        "alipay.trade.query",
        json!({ "trade_no": trade_no, "out_trade_no": "Q-OTHER" }),
    )
    .await;
    assert_eq!(mismatch.sub_code(), "ACQ.TRADE_NOT_EXIST");
}

#[tokio::test]
async fn close_closes_only_an_unpaid_trade() {
    let sim = simulator();
    opened(&sim, "C-1", false).await;
    let closed = gateway(&sim, "alipay.trade.close", json!({ "out_trade_no": "C-1" })).await;
    assert_eq!(closed.code(), "10000");
    assert_eq!(closed.field("out_trade_no"), "C-1");
    let status = gateway(&sim, "alipay.trade.query", json!({ "out_trade_no": "C-1" })).await;
    assert_eq!(status.field("trade_status"), "TRADE_CLOSED");
    let again = gateway(&sim, "alipay.trade.close", json!({ "out_trade_no": "C-1" })).await;
    assert_eq!(again.sub_code(), "ACQ.TRADE_STATUS_ERROR");
    let (status, answer) = control(
        &sim,
        "/control/cashier",
        json!({ "order_string": order_string("C-1", "12.30", NOTIFY_URL) }),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("trade_closed"))
    );

    opened(&sim, "C-2", true).await;
    let paid = gateway(&sim, "alipay.trade.close", json!({ "out_trade_no": "C-2" })).await;
    assert_eq!(
        (paid.code(), paid.sub_code()),
        ("40004", "ACQ.REASON_TRADE_STATUS_INVALID")
    );
    assert!(paid.sign_verifies);
}

#[tokio::test]
async fn routing_refuses_unknown_paths_and_wrong_methods() {
    let sim = simulator();
    assert_eq!(call(&sim, "GET", "/gateway.do", "", b"").await.status, 405);
    assert_eq!(call(&sim, "POST", "/nope", "", b"").await.status, 404);
    assert_eq!(
        call(&sim, "GET", "/control/trades/none", "", b"")
            .await
            .status,
        404
    );
}

/// A merchant of a third-party app is reached by its token: another token, or the token with
/// another app id, is `20001 aop.invalid-app-auth-token`; without a token the ISV's app id is
/// no merchant at all.
#[tokio::test]
async fn a_third_party_apps_calls_act_by_the_merchants_token() {
    let sim = AlipaySimulator::new(std::time::Duration::from_millis(500));
    let bare: String = APP_KEY_PKCS8
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let mut table = toml::Table::new();
    table.insert("app_id".into(), APP_ID.into());
    table.insert("seller_id".into(), SELLER_ID.into());
    table.insert("private_key".into(), bare.into());
    table.insert("app_auth_token".into(), "202612BBgranted".into());
    table.insert("auth_app_id".into(), "2021000000000777".into());
    sim.register_merchant(&table, std::path::Path::new("."));
    let biz = serde_json::json!({"out_trade_no": "NOPE"});
    let with_token = |token: Option<&str>, app: &str| {
        let mut params = gateway_params("alipay.trade.query", &biz);
        params.insert("app_id".into(), app.into());
        if let Some(token) = token {
            params.insert("app_auth_token".into(), token.into());
        }
        sign_encode(params, true)
    };
    let granted = post_gateway(&sim, "", &with_token(Some("202612BBgranted"), APP_ID)).await;
    assert_eq!(
        (granted.code(), granted.sub_code()),
        ("40004", "ACQ.TRADE_NOT_EXIST")
    );
    let other = post_gateway(&sim, "", &with_token(Some("202612BBother"), APP_ID)).await;
    assert_eq!(
        (other.code(), other.sub_code()),
        ("20001", "aop.invalid-app-auth-token")
    );
    let wrong_app = post_gateway(
        &sim,
        "",
        &with_token(Some("202612BBgranted"), "2021000000000999"),
    )
    .await;
    assert_eq!(wrong_app.sub_code(), "aop.invalid-app-auth-token");
    let no_token = post_gateway(&sim, "", &with_token(None, APP_ID)).await;
    assert_eq!(no_token.sub_code(), "isv.invalid-app-id");
}
