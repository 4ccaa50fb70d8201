use super::*;
use serde_json::json;

/// Creates a JSAPI order whose notify_url is `notify_url`; returns the openid.
async fn create(
    sim: &WechatSimulator,
    out_trade_no: &str,
    notify_url: &str,
    sign_type: Option<&str>,
) -> String {
    let openid = login(sim, &format!("code-{out_trade_no}")).await;
    let mut fields = order_fields(out_trade_no, &openid);
    fields.insert("notify_url".into(), notify_url.into());
    let answer = post(
        sim,
        "/pay/unifiedorder",
        signed_body(fields, API_KEY, sign_type),
    )
    .await;
    assert_eq!(answer["result_code"], "SUCCESS", "{answer:?}");
    openid
}

/// Parses a notification with a reader written here, so the simulator's writer is checked too.
fn read_notification(xml: &str) -> BTreeMap<String, String> {
    let inner = xml
        .strip_prefix("<xml>")
        .and_then(|x| x.strip_suffix("</xml>"))
        .unwrap();
    let mut fields = BTreeMap::new();
    let mut rest = inner;
    while let Some(open_end) = rest.find('>') {
        let name = &rest[1..open_end];
        let close = format!("</{name}>");
        let close_at = rest.find(&close).unwrap();
        let raw = &rest[open_end + 1..close_at];
        let value = raw
            .strip_prefix("<![CDATA[")
            .and_then(|v| v.strip_suffix("]]>"))
            .unwrap_or(raw);
        fields.insert(name.to_owned(), value.to_owned());
        rest = &rest[close_at + close.len()..];
    }
    fields
}

fn assert_notification(
    xml: &str,
    out_trade_no: &str,
    openid: &str,
    transaction_id: &str,
    hmac: bool,
) {
    let fields = read_notification(xml);
    assert!(!fields.contains_key("sign_type"), "{fields:?}");
    assert_eq!(
        fields["sign"],
        test_sign(&fields, API_KEY, hmac),
        "{fields:?}"
    );
    for (name, value) in [
        ("return_code", "SUCCESS"),
        ("result_code", "SUCCESS"),
        ("appid", APPID),
        ("mch_id", MCH_ID),
        ("openid", openid),
        ("is_subscribe", "N"),
        ("trade_type", "JSAPI"),
        ("bank_type", "OTHERS"),
        ("total_fee", "1990"),
        ("cash_fee", "1990"),
        ("fee_type", "CNY"),
        ("transaction_id", transaction_id),
        ("out_trade_no", out_trade_no),
        ("attach", "table=7"),
    ] {
        assert_eq!(
            fields.get(name).map(String::as_str),
            Some(value),
            "{name} in {fields:?}"
        );
    }
    assert_eq!(fields["time_end"].len(), 14);
    assert!(!fields["nonce_str"].is_empty());
}

#[tokio::test]
async fn pay_with_deliver_posts_a_verifiable_notification() {
    let sim = simulator();
    let merchant = fake_merchant(200, ACK_SUCCESS);
    let openid = create(&sim, "order-0001", &merchant.url, None).await;
    let response = control(&sim, "/control/pay", json!({"out_trade_no": "order-0001"})).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.content_type, "application/json");
    let paid = json_of(&response);
    let transaction_id = paid["transaction_id"].as_str().unwrap();
    assert_eq!(paid["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(paid["deliveries"][0]["status"], 200);
    assert_eq!(paid["deliveries"][0]["acknowledged"], true);
    assert!(
        paid["deliveries"][0]["body"]
            .as_str()
            .unwrap()
            .contains("SUCCESS")
    );

    let received = merchant.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert_notification(&received[0], "order-0001", &openid, transaction_id, false);
    assert_eq!(received[0], paid["notification"].as_str().unwrap());

    let view = json_of(&call(&sim, "GET", "/control/orders/order-0001", "", b"").await);
    assert_eq!(view["trade_state"], "SUCCESS");
    assert_eq!(view["total_fee"], 1990);
    assert_eq!(view["notify_url"], merchant.url.as_str());
    assert_eq!(view["deliveries"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn pay_with_return_gives_hmac_signed_xml_without_sign_type_and_sends_nothing() {
    let sim = simulator();
    let merchant = fake_merchant(200, ACK_SUCCESS);
    let openid = create(&sim, "order-0001", &merchant.url, Some("HMAC-SHA256")).await;
    let paid = json_of(
        &control(
            &sim,
            "/control/pay",
            json!({"out_trade_no": "order-0001", "notify": "return"}),
        )
        .await,
    );
    let xml = paid["notification"].as_str().unwrap();
    assert_notification(
        xml,
        "order-0001",
        &openid,
        paid["transaction_id"].as_str().unwrap(),
        true,
    );
    assert_eq!(read_notification(xml)["sign"].len(), 64);
    assert!(paid["deliveries"].as_array().unwrap().is_empty());
    assert!(merchant.received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn duplicate_sends_identical_copies_and_notify_resends() {
    let sim = simulator();
    let merchant = fake_merchant(200, ACK_SUCCESS);
    create(&sim, "order-0001", &merchant.url, None).await;
    let paid = json_of(
        &control(
            &sim,
            "/control/pay",
            json!({"out_trade_no": "order-0001", "notify": "duplicate", "copies": 3}),
        )
        .await,
    );
    assert_eq!(paid["deliveries"].as_array().unwrap().len(), 3);
    let resent = json_of(
        &control(
            &sim,
            "/control/notify",
            json!({"out_trade_no": "order-0001", "mch_id": MCH_ID}),
        )
        .await,
    );
    assert_eq!(resent["deliveries"][0]["acknowledged"], true);
    let received = merchant.received.lock().unwrap().clone();
    assert_eq!(received.len(), 4);
    assert!(
        received
            .iter()
            .all(|body| body == paid["notification"].as_str().unwrap())
    );
    let view = json_of(
        &call(
            &sim,
            "GET",
            "/control/orders/order-0001",
            &format!("mch_id={MCH_ID}"),
            b"",
        )
        .await,
    );
    assert_eq!(view["deliveries"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn only_a_200_success_xml_acknowledges() {
    let sim = simulator();
    let refusing = fake_merchant(
        200,
        "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg>签名失败</return_msg></xml>",
    );
    let erroring = fake_merchant(500, ACK_SUCCESS);
    let plain = fake_merchant(200, "success");
    let closed_port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/notify", listener.local_addr().unwrap())
    };
    for (number, url) in [
        ("order-0001", &refusing.url),
        ("order-0002", &erroring.url),
        ("order-0003", &plain.url),
        ("order-0004", &closed_port),
    ] {
        create(&sim, number, url, None).await;
        let paid = json_of(&control(&sim, "/control/pay", json!({"out_trade_no": number})).await);
        assert_eq!(
            paid["deliveries"][0]["acknowledged"], false,
            "{number}: {paid}"
        );
    }
    let unreachable = json_of(&call(&sim, "GET", "/control/orders/order-0004", "", b"").await);
    assert!(unreachable["deliveries"][0]["status"].is_null());
    assert!(unreachable["deliveries"][0]["error"].is_string());
}

#[tokio::test]
async fn paying_twice_or_a_closed_order_needs_force() {
    let sim = simulator();
    create(&sim, "order-0001", "http://127.0.0.1:9/notify", None).await;
    assert_eq!(
        control(
            &sim,
            "/control/pay",
            json!({"out_trade_no": "order-0001", "notify": "drop"})
        )
        .await
        .status,
        200
    );
    let again = control(
        &sim,
        "/control/pay",
        json!({"out_trade_no": "order-0001", "notify": "drop"}),
    )
    .await;
    assert_eq!(again.status, 409);
    assert_eq!(json_of(&again)["error"]["code"], "order_paid");

    create(&sim, "order-0002", "http://127.0.0.1:9/notify", None).await;
    let close = params(&[
        ("appid", APPID),
        ("mch_id", MCH_ID),
        ("nonce_str", "n"),
        ("out_trade_no", "order-0002"),
    ]);
    post(&sim, "/pay/closeorder", signed_body(close, API_KEY, None)).await;
    let refused = control(
        &sim,
        "/control/pay",
        json!({"out_trade_no": "order-0002", "notify": "drop"}),
    )
    .await;
    assert_eq!(refused.status, 409);
    let forced = control(
        &sim,
        "/control/pay",
        json!({"out_trade_no": "order-0002", "notify": "drop", "force": true}),
    )
    .await;
    assert_eq!(forced.status, 200);
    let view = json_of(&call(&sim, "GET", "/control/orders/order-0002", "", b"").await);
    assert_eq!(view["trade_state"], "SUCCESS");
    assert_eq!(view["paid_after_close"], true);
}

#[tokio::test]
async fn control_errors_are_json() {
    let sim = simulator();
    let unknown = control(&sim, "/control/pay", json!({"out_trade_no": "order-none"})).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(json_of(&unknown)["error"]["code"], "order_not_found");
    assert_eq!(
        control(
            &sim,
            "/control/pay",
            json!({"out_trade_no": "x", "notfy": "drop"})
        )
        .await
        .status,
        400
    );
    assert_eq!(
        control(
            &sim,
            "/control/pay",
            json!({"out_trade_no": "x", "notify": "later"})
        )
        .await
        .status,
        400
    );
    assert_eq!(
        control(
            &sim,
            "/control/fail",
            json!({"api": "payment", "mode": "http500"})
        )
        .await
        .status,
        400
    );
    create(&sim, "order-0001", "http://127.0.0.1:9/notify", None).await;
    assert_eq!(
        control(
            &sim,
            "/control/notify",
            json!({"out_trade_no": "order-0001"})
        )
        .await
        .status,
        409
    );
    assert_eq!(
        call(&sim, "GET", "/control/orders/none-000", "", b"")
            .await
            .status,
        404
    );
    assert_eq!(call(&sim, "GET", "/nope", "", b"").await.status, 404);
    assert_eq!(call(&sim, "GET", "/control/pay", "", b"").await.status, 405);
    assert_eq!(
        call(&sim, "POST", "/control/orders/order-0001", "", b"")
            .await
            .status,
        405
    );
}

#[tokio::test]
async fn an_order_number_used_by_two_merchants_needs_mch_id() {
    let sim = simulator();
    let second = "appid = \"wx2222222222222222\"\nmch_id = \"20000200\"\napi_key = \"22222222222222222222222222222222\"";
    sim.register_merchant(&second.parse().unwrap(), std::path::Path::new("."));
    create(&sim, "order-0001", "http://127.0.0.1:9/notify", None).await;
    let mut other = params(&[
        ("appid", "wx2222222222222222"),
        ("mch_id", "20000200"),
        ("nonce_str", "n"),
        ("body", "b"),
        ("out_trade_no", "order-0001"),
        ("total_fee", "1"),
        ("spbill_create_ip", "127.0.0.1"),
        ("notify_url", "http://127.0.0.1:9/notify"),
        ("trade_type", "NATIVE"),
        ("product_id", "p1"),
    ]);
    let body = signed_body(
        std::mem::take(&mut other),
        "22222222222222222222222222222222",
        None,
    );
    assert_eq!(
        post(&sim, "/pay/unifiedorder", body).await["result_code"],
        "SUCCESS"
    );
    let ambiguous = control(
        &sim,
        "/control/pay",
        json!({"out_trade_no": "order-0001", "notify": "drop"}),
    )
    .await;
    assert_eq!(ambiguous.status, 409);
    let paid = control(
        &sim,
        "/control/pay",
        json!({"out_trade_no": "order-0001", "mch_id": "20000200", "notify": "drop"}),
    )
    .await;
    assert_eq!(paid.status, 200);
    let view = json_of(
        &call(
            &sim,
            "GET",
            "/control/orders/order-0001",
            "mch_id=10000100",
            b"",
        )
        .await,
    );
    assert_eq!(view["trade_state"], "NOTPAY");
}

#[tokio::test]
async fn order_numbers_in_the_path_are_percent_decoded() {
    let sim = simulator();
    create(&sim, "order|0001*", "http://127.0.0.1:9/notify", None).await;
    let view = call(&sim, "GET", "/control/orders/order%7C0001%2A", "", b"").await;
    assert_eq!(view.status, 200);
    assert_eq!(json_of(&view)["out_trade_no"], "order|0001*");
}
