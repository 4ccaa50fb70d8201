//! `/control/cashier`: what the Alipay app accepts, and the payment notification it causes.

use serde_json::{Value, json};

use super::*;

async fn refused_field(sim: &AlipaySimulator, order_string: &str) -> String {
    let (status, answer) = control(
        sim,
        "/control/cashier",
        json!({ "order_string": order_string, "pay": false }),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_order_string");
    answer["error"]["field"].as_str().unwrap().to_owned()
}

fn biz(out_trade_no: &str, total_amount: Value) -> Value {
    json!({
        "out_trade_no": out_trade_no,
        "total_amount": total_amount,
        "subject": "Latte",
        "product_code": "QUICK_MSECURITY_PAY",
    })
}

#[tokio::test]
async fn cashier_refuses_an_order_string_whose_signature_does_not_verify() {
    let sim = simulator();
    // Altered after signing.
    let good = order_string("T-SIG-1", "9.90", NOTIFY_URL);
    let altered = good.replace("9.90", "0.01");
    assert_ne!(altered, good);
    assert_eq!(refused_field(&sim, &altered).await, "sign");
    // Signed with another key.
    let mut params = app_pay_params(&biz("T-SIG-2", json!("9.90")), NOTIFY_URL);
    let sign = test_sign(&params, OTHER_KEY);
    params.insert("sign".into(), sign);
    assert_eq!(
        refused_field(&sim, &encode_params(&params, true)).await,
        "sign"
    );
    // Signed over the encoded values instead of the raw ones.
    let mut params = app_pay_params(&biz("T-SIG-3", json!("9.90")), NOTIFY_URL);
    let encoded: Params = params
        .iter()
        .map(|(k, v)| (k.clone(), encode_value(v, true)))
        .collect();
    params.insert("sign".into(), test_sign(&encoded, APP_KEY_PKCS1));
    assert_eq!(
        refused_field(&sim, &encode_params(&params, true)).await,
        "sign"
    );
    // A `+` of the base64 signature left unencoded decodes to a space.
    let unencoded_sign = good.split('&').find(|p| p.starts_with("sign=")).unwrap();
    let raw = unencoded_sign
        .replace("%2B", "+")
        .replace("%2F", "/")
        .replace("%3D", "=");
    if raw.contains('+') {
        assert_eq!(
            refused_field(&sim, &good.replace(unencoded_sign, &raw)).await,
            "sign"
        );
    }
}

#[tokio::test]
async fn cashier_refuses_a_wrong_product_code_or_method() {
    let sim = simulator();
    let mut wrong = biz("T-PC-1", json!("9.90"));
    wrong["product_code"] = json!("FAST_INSTANT_TRADE_PAY");
    let order = sign_encode(app_pay_params(&wrong, NOTIFY_URL), true);
    assert_eq!(
        refused_field(&sim, &order).await,
        "biz_content.product_code"
    );

    let mut params = app_pay_params(&biz("T-PC-2", json!("9.90")), NOTIFY_URL);
    params.insert("method".into(), "alipay.trade.page.pay".into());
    assert_eq!(
        refused_field(&sim, &sign_encode(params, true)).await,
        "method"
    );
}

#[tokio::test]
async fn cashier_refuses_float_ish_and_out_of_range_amounts() {
    let sim = simulator();
    for (i, amount) in [
        json!("9.9"),
        json!("10"),
        json!(9.90),
        json!("0.00"),
        json!("1.005"),
        json!("100000000.01"),
    ]
    .into_iter()
    .enumerate()
    {
        let order = sign_encode(
            app_pay_params(&biz(&format!("T-AMT-{i}"), amount.clone()), NOTIFY_URL),
            true,
        );
        assert_eq!(
            refused_field(&sim, &order).await,
            "biz_content.total_amount",
            "{amount}"
        );
    }
}

#[tokio::test]
async fn cashier_refuses_missing_or_malformed_fields_by_name() {
    let sim = simulator();
    type Spoil = fn(&mut Params, &mut Value);
    let cases: [(&str, Spoil); 6] = [
        ("notify_url", |p, _| {
            p.remove("notify_url");
        }),
        ("notify_url", |p, _| {
            p.insert("notify_url".into(), "ftp://merchant.example/notify".into());
        }),
        ("charset", |p, _| {
            p.insert("charset".into(), "GBK".into());
        }),
        ("biz_content.subject", |_, b| {
            b.as_object_mut().unwrap().remove("subject");
        }),
        ("biz_content.out_trade_no", |_, b| {
            b.as_object_mut().unwrap().remove("out_trade_no");
        }),
        ("biz_content.timeout_express", |_, b| {
            b["timeout_express"] = json!("1.5h");
        }),
    ];
    for (i, (field, spoil)) in cases.into_iter().enumerate() {
        let mut biz = biz(&format!("T-F-{i}"), json!("1.00"));
        let mut params = app_pay_params(&biz, NOTIFY_URL);
        spoil(&mut params, &mut biz);
        if params.contains_key("biz_content") {
            params.insert("biz_content".into(), biz.to_string());
        }
        assert_eq!(refused_field(&sim, &sign_encode(params, true)).await, field);
    }
}

#[tokio::test]
async fn cashier_accepts_the_official_node_sdk_order_strings() {
    let sim = simulator();
    let vectors: Value = serde_json::from_str(include_str!(
        "../../../../../fixtures/vectors/sdk-vectors.json"
    ))
    .unwrap();
    for case in vectors["alipay"]["cases"].as_array().unwrap() {
        let order_string = case["order_string"].as_str().unwrap();
        let amount = case["params"]["bizContent"]["totalAmount"]
            .as_str()
            .unwrap();
        let (status, answer) = control(
            &sim,
            "/control/cashier",
            json!({ "order_string": order_string, "pay": false }),
        )
        .await;
        if amount.contains('.') {
            assert_eq!(status, 200, "{}: {answer}", case["name"]);
            assert_eq!(answer["trade_status"], "WAIT_BUYER_PAY");
            let view = json_of(
                &call(
                    &sim,
                    "GET",
                    &format!(
                        "/control/trades/{}",
                        answer["out_trade_no"].as_str().unwrap()
                    ),
                    "",
                    b"",
                )
                .await,
            );
            assert_eq!(view["subject"], case["params"]["bizContent"]["subject"]);
        } else {
            // `"totalAmount": "100"` is not a two-decimal amount.
            assert_eq!(status, 400, "{}: {answer}", case["name"]);
            assert_eq!(answer["error"]["field"], "biz_content.total_amount");
        }
    }
}

#[tokio::test]
async fn spaces_encoded_as_plus_or_percent_20_both_verify() {
    let sim = simulator();
    for (i, plus) in [true, false].into_iter().enumerate() {
        let mut biz = biz(&format!("T-SP-{i}"), json!("0.01"));
        biz["subject"] = json!("a  b + c %20 d");
        let order = sign_encode(app_pay_params(&biz, NOTIFY_URL), plus);
        assert_eq!(order.contains('+'), plus);
        let answer = cashier(&sim, &order, json!({ "pay": false })).await;
        assert_eq!(answer["trade_status"], "WAIT_BUYER_PAY");
    }
}

#[tokio::test]
async fn cashier_pays_and_the_notification_verifies_with_the_sandbox_public_key() {
    let sim = simulator();
    let merchant = fake_merchant(200, "success").await;
    let answer = cashier(
        &sim,
        &order_string("T-PAY-1", "19.90", &merchant.url),
        json!({}),
    )
    .await;
    assert_eq!(answer["trade_status"], "TRADE_SUCCESS");
    let trade_no = answer["trade_no"].as_str().unwrap();
    assert_eq!(trade_no.len(), 28);
    let deliveries = answer["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["status"], 200);
    assert_eq!(deliveries[0]["acknowledged"], true);

    let bodies = merchant.bodies();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0], answer["notification"].as_str().unwrap());
    assert!(notification_verifies(&bodies[0]));
    let fields = notification_fields(&bodies[0]);
    for (name, value) in [
        ("notify_type", "trade_status_sync"),
        ("app_id", APP_ID),
        ("auth_app_id", APP_ID),
        ("charset", "utf-8"),
        ("version", "1.0"),
        ("sign_type", "RSA2"),
        ("trade_no", trade_no),
        ("out_trade_no", "T-PAY-1"),
        ("seller_id", SELLER_ID),
        ("trade_status", "TRADE_SUCCESS"),
        ("total_amount", "19.90"),
        ("receipt_amount", "19.90"),
        ("buyer_pay_amount", "19.90"),
        ("invoice_amount", "19.90"),
        ("point_amount", "0.00"),
        ("subject", "咖啡 拿铁 {大杯}"),
        ("passback_params", "table%3D7"),
        ("notify_id", answer["notify_id"].as_str().unwrap()),
    ] {
        assert_eq!(fields.get(name).map(String::as_str), Some(value), "{name}");
    }
    assert!(fields["buyer_id"].starts_with("2088"));
    let fund_bills: Value = serde_json::from_str(&fields["fund_bill_list"]).unwrap();
    assert_eq!(fund_bills[0]["amount"], "19.90");
    for name in [
        "notify_time",
        "gmt_create",
        "gmt_payment",
        "seller_email",
        "buyer_logon_id",
    ] {
        assert!(fields.contains_key(name), "{name}");
    }
    assert!(!fields.contains_key("refund_fee"));

    // rsaCheckV2 (sign_type kept) must not verify: the platform signs V1 content.
    let mut v2 = fields.clone();
    let sign = v2.remove("sign").unwrap();
    let content: Vec<String> = v2.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert!(!rsa2_verifies(&platform_key(), &content.join("&"), &sign));
}

#[tokio::test]
async fn reopening_an_order_string_reuses_an_unpaid_trade_and_refuses_a_paid_one() {
    let sim = simulator();
    let order = order_string("T-RE-1", "5.00", NOTIFY_URL);
    let first = cashier(&sim, &order, json!({ "pay": false })).await;
    let second = cashier(&sim, &order, json!({ "notify": "drop" })).await;
    assert_eq!(first["trade_no"], second["trade_no"]);
    assert_eq!(second["trade_status"], "TRADE_SUCCESS");
    assert!(second["deliveries"].as_array().unwrap().is_empty());

    let (status, answer) =
        control(&sim, "/control/cashier", json!({ "order_string": order })).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("trade_paid"))
    );
    let other_amount = order_string("T-RE-1", "6.00", NOTIFY_URL);
    let (status, answer) = control(
        &sim,
        "/control/cashier",
        json!({ "order_string": other_amount }),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("order_string_conflict"))
    );
}
