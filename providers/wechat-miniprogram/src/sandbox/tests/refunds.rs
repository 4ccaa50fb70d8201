use aes::cipher::{BlockCipherDecrypt, KeyInit};
use base64::Engine;
use paybridge_core::provider::TlsPeer;
use serde_json::json;

use super::*;

/// A paid order of 1990 fen (notification dropped); returns its transaction_id.
async fn paid_order(sim: &WechatSimulator, out_trade_no: &str) -> String {
    let openid = login(sim, &format!("code-{out_trade_no}")).await;
    let answer = post(
        sim,
        "/pay/unifiedorder",
        signed_body(order_fields(out_trade_no, &openid), API_KEY, None),
    )
    .await;
    assert_eq!(answer["result_code"], "SUCCESS", "{answer:?}");
    let paid = json_of(
        &control(
            sim,
            "/control/pay",
            json!({"out_trade_no": out_trade_no, "notify": "drop"}),
        )
        .await,
    );
    paid["transaction_id"].as_str().unwrap().to_owned()
}

fn refund_fields(
    out_trade_no: &str,
    out_refund_no: &str,
    refund_fee: &str,
    notify_url: &str,
) -> BTreeMap<String, String> {
    params(&[
        ("appid", APPID),
        ("mch_id", MCH_ID),
        ("nonce_str", "n0nce"),
        ("out_trade_no", out_trade_no),
        ("out_refund_no", out_refund_no),
        ("total_fee", "1990"),
        ("refund_fee", refund_fee),
        ("refund_fee_type", "CNY"),
        ("refund_desc", "洒了"),
        ("notify_url", notify_url),
    ])
}

async fn refund(
    sim: &WechatSimulator,
    fields: BTreeMap<String, String>,
    tls: Option<TlsPeer>,
) -> BTreeMap<String, String> {
    let request = SimRequest {
        method: "POST".into(),
        path: "/secapi/pay/refund".into(),
        base: "http://sandbox.test".into(),
        query: String::new(),
        headers: Vec::new(),
        body: bytes::Bytes::from(signed_body(fields, API_KEY, Some("HMAC-SHA256"))),
        tls,
    };
    xml_of(&sim.handle(request).await)
}

async fn query(sim: &WechatSimulator, pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut fields = params(&[("appid", APPID), ("mch_id", MCH_ID), ("nonce_str", "q")]);
    fields.extend(params(pairs));
    let answer = post(sim, "/pay/refundquery", signed_body(fields, API_KEY, None)).await;
    assert_signed(&answer, false);
    answer
}

/// The test's own `req_info` decryption: AES-256-ECB, key = hex(md5(api key)) as ASCII.
fn decrypt(req_info: &str) -> String {
    use md5::Digest;
    let key = hex::encode(Md5::digest(API_KEY.as_bytes()));
    let cipher = aes::Aes256::new_from_slice(key.as_bytes()).unwrap();
    let mut data = base64::engine::general_purpose::STANDARD
        .decode(req_info)
        .unwrap();
    for chunk in data.chunks_exact_mut(16) {
        cipher.decrypt_block(<&mut aes::Block>::try_from(chunk).unwrap());
    }
    let pad = usize::from(*data.last().unwrap());
    assert!((1..=16).contains(&pad));
    assert!(
        data[data.len() - pad..]
            .iter()
            .all(|&b| usize::from(b) == pad)
    );
    data.truncate(data.len() - pad);
    String::from_utf8(data).unwrap()
}

/// `<root>…</root>` read by a few lines written here.
fn root_fields(plain: &str) -> BTreeMap<String, String> {
    let xml = plain
        .strip_prefix("<root>")
        .and_then(|x| x.strip_suffix("</root>"))
        .unwrap();
    super::super::xml::parse(format!("<xml>{xml}</xml>").as_bytes()).unwrap()
}

const NOTIFY: &str = "https://merchant.example/notify/demo/wechat_miniprogram/refund";

#[tokio::test]
async fn a_paid_order_is_refunded_once_per_number_within_its_amount() {
    let sim = simulator();
    let transaction_id = paid_order(&sim, "order-r001").await;

    let first = refund(&sim, refund_fields("order-r001", "R1", "990", NOTIFY), None).await;
    assert_signed(&first, true);
    assert_eq!(first["result_code"], "SUCCESS", "{first:?}");
    assert_eq!(first["refund_fee"], "990");
    assert_eq!(first["transaction_id"], transaction_id);
    let refund_id = first["refund_id"].clone();
    assert!(
        refund_id.starts_with("503") && refund_id.len() == 29,
        "{refund_id}"
    );

    // Same number, same amounts: the same refund.
    let again = refund(&sim, refund_fields("order-r001", "R1", "990", NOTIFY), None).await;
    assert_eq!(again["refund_id"], refund_id);
    // Same number, another amount: an error.
    let other = refund(&sim, refund_fields("order-r001", "R1", "991", NOTIFY), None).await;
    assert_eq!(
        (other["result_code"].as_str(), other["err_code"].as_str()),
        ("FAIL", "ERROR")
    );
    // More than what is left: 990 + 1001 > 1990.
    let over = refund(
        &sim,
        refund_fields("order-r001", "R2", "1001", NOTIFY),
        None,
    )
    .await;
    assert_eq!(over["err_code"], "ERROR");
    assert!(
        over["err_code_des"].contains("退款金额大于支付金额"),
        "{over:?}"
    );
    // Exactly what is left.
    let rest = refund(
        &sim,
        refund_fields("order-r001", "R2", "1000", NOTIFY),
        None,
    )
    .await;
    assert_eq!(rest["result_code"], "SUCCESS", "{rest:?}");
    assert_ne!(rest["refund_id"], refund_id);

    // A total_fee that is not the order's.
    let mut wrong_total = refund_fields("order-r001", "R3", "1", NOTIFY);
    wrong_total.insert("total_fee".into(), "1991".into());
    let answer = refund(&sim, wrong_total, None).await;
    assert_eq!(answer["err_code"], "PARAM_ERROR");
}

#[tokio::test]
async fn unpaid_unknown_and_malformed_refunds_are_refused() {
    let sim = simulator();
    let openid = login(&sim, "code-unpaid").await;
    post(
        &sim,
        "/pay/unifiedorder",
        signed_body(order_fields("order-unpaid", &openid), API_KEY, None),
    )
    .await;
    let unpaid = refund(&sim, refund_fields("order-unpaid", "R1", "1", NOTIFY), None).await;
    assert_eq!(unpaid["err_code"], "ORDERNOTEXIST");
    let unknown = refund(&sim, refund_fields("order-none", "R1", "1", NOTIFY), None).await;
    assert_eq!(unknown["err_code"], "ORDERNOTEXIST");
    for (field, value, code) in [
        ("out_refund_no", "bad number!", "PARAM_ERROR"),
        ("refund_fee", "0", "PARAM_ERROR"),
        ("refund_fee", "1.00", "PARAM_ERROR"),
        ("refund_fee_type", "USD", "PARAM_ERROR"),
        ("notify_url", "https://x.example/n?a=1", "PARAM_ERROR"),
        ("refund_fee", "", "LACK_PARAMS"),
    ] {
        let mut fields = refund_fields("order-unpaid", "R1", "1", NOTIFY);
        fields.insert(field.into(), value.into());
        let answer = refund(&sim, fields, None).await;
        assert_eq!(answer["err_code"], code, "{field}={value}: {answer:?}");
    }
    let mut long = refund_fields("order-unpaid", "R1", "1", NOTIFY);
    long.insert("refund_desc".into(), "退".repeat(81));
    assert_eq!(refund(&sim, long, None).await["err_code"], "PARAM_ERROR");
    // A bad signature is refused at the protocol level.
    let mut body = String::from_utf8(signed_body(
        refund_fields("order-unpaid", "R1", "1", NOTIFY),
        API_KEY,
        None,
    ))
    .unwrap();
    body = body.replace("<refund_fee><![CDATA[1]]>", "<refund_fee><![CDATA[2]]>");
    let answer = post(&sim, "/secapi/pay/refund", body.into_bytes()).await;
    assert_eq!(answer["return_code"], "FAIL");
}

#[tokio::test]
async fn over_tls_the_refund_needs_a_client_certificate() {
    let sim = simulator();
    paid_order(&sim, "order-tls1").await;
    let no_cert = refund(
        &sim,
        refund_fields("order-tls1", "R1", "1", NOTIFY),
        Some(TlsPeer {
            client_cert_der: None,
        }),
    )
    .await;
    assert_eq!(no_cert["return_code"], "FAIL");
    assert!(no_cert["return_msg"].contains("证书错误"), "{no_cert:?}");
    assert!(!no_cert.contains_key("sign"));
    let view = json_of(&call(&sim, "GET", "/control/orders/order-tls1", "", b"").await);
    assert_eq!(view["refunds"], json!([]));

    let with_cert = refund(
        &sim,
        refund_fields("order-tls1", "R1", "1", NOTIFY),
        Some(TlsPeer {
            client_cert_der: Some(vec![0x30, 0x00]),
        }),
    )
    .await;
    assert_eq!(with_cert["result_code"], "SUCCESS", "{with_cert:?}");
}

#[tokio::test]
async fn refundquery_lists_refunds_by_any_reference() {
    let sim = simulator();
    let transaction_id = paid_order(&sim, "order-q001").await;
    let none = query(&sim, &[("out_trade_no", "order-q001")]).await;
    assert_eq!(none["err_code"], "REFUNDNOTEXIST");
    let r1 = refund(&sim, refund_fields("order-q001", "R1", "100", NOTIFY), None).await;
    refund(&sim, refund_fields("order-q001", "R2", "200", NOTIFY), None).await;

    for reference in [
        ("out_trade_no", "order-q001"),
        ("transaction_id", transaction_id.as_str()),
    ] {
        let all = query(&sim, &[reference]).await;
        assert_eq!(all["result_code"], "SUCCESS", "{all:?}");
        assert_eq!(all["refund_count"], "2");
        assert_eq!(all["out_refund_no_0"], "R1");
        assert_eq!(all["refund_fee_0"], "100");
        assert_eq!(all["out_refund_no_1"], "R2");
        assert_eq!(all["refund_status_1"], "PROCESSING");
        assert_eq!(all["total_fee"], "1990");
    }
    for reference in [
        ("out_refund_no", "R1"),
        ("refund_id", r1["refund_id"].as_str()),
    ] {
        let one = query(&sim, &[reference]).await;
        assert_eq!(one["refund_count"], "1", "{one:?}");
        assert_eq!(one["out_refund_no_0"], "R1");
        assert_eq!(one["refund_id_0"], r1["refund_id"]);
        assert!(!one.contains_key("refund_success_time_0"));
    }
    let paged = query(&sim, &[("out_trade_no", "order-q001"), ("offset", "1")]).await;
    assert_eq!(
        (
            paged["refund_count"].as_str(),
            paged["total_refund_count"].as_str()
        ),
        ("1", "2")
    );
    assert_eq!(paged["out_refund_no_0"], "R2");
    assert_eq!(
        query(&sim, &[("out_refund_no", "R9")]).await["err_code"],
        "REFUNDNOTEXIST"
    );
}

#[tokio::test]
async fn control_refund_settles_and_notifies_with_encrypted_req_info() {
    let sim = simulator();
    let merchant = fake_merchant(200, ACK_SUCCESS);
    let transaction_id = paid_order(&sim, "order-n001").await;
    let accepted = refund(
        &sim,
        refund_fields("order-n001", "R1", "990", &merchant.url),
        None,
    )
    .await;
    let settled = json_of(
        &control(
            &sim,
            "/control/refund",
            json!({"out_refund_no": "R1", "status": "SUCCESS"}),
        )
        .await,
    );
    assert_eq!(settled["refund_status"], "SUCCESS");
    assert_eq!(settled["deliveries"][0]["acknowledged"], true, "{settled}");
    let received = merchant.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0], settled["notification"].as_str().unwrap());

    let outer = super::super::xml::parse(received[0].as_bytes()).unwrap();
    assert_eq!(outer["return_code"], "SUCCESS");
    assert_eq!(outer["appid"], APPID);
    assert_eq!(outer["mch_id"], MCH_ID);
    assert!(!outer.contains_key("sign"), "{outer:?}");
    let inner = root_fields(&decrypt(&outer["req_info"]));
    for (k, v) in [
        ("out_refund_no", "R1"),
        ("out_trade_no", "order-n001"),
        ("transaction_id", transaction_id.as_str()),
        ("refund_id", accepted["refund_id"].as_str()),
        ("refund_fee", "990"),
        ("total_fee", "1990"),
        ("refund_status", "SUCCESS"),
        ("refund_request_source", "API"),
    ] {
        assert_eq!(inner.get(k).map(String::as_str), Some(v), "{k}: {inner:?}");
    }
    let success_time = inner["success_time"].clone();
    assert_eq!(success_time.len(), 19, "{success_time}");

    let queried = query(&sim, &[("out_refund_no", "R1")]).await;
    assert_eq!(queried["refund_status_0"], "SUCCESS");
    assert_eq!(queried["refund_success_time_0"], success_time);

    // The same status again resends the same bytes; the opposite outcome is refused.
    let again = json_of(
        &control(
            &sim,
            "/control/refund",
            json!({"out_refund_no": "R1", "status": "SUCCESS", "notify": "return"}),
        )
        .await,
    );
    assert_eq!(again["notification"], settled["notification"]);
    assert_eq!(again["deliveries"], json!([]));
    let refused = control(
        &sim,
        "/control/refund",
        json!({"out_refund_no": "R1", "status": "REFUNDCLOSE"}),
    )
    .await;
    assert_eq!(refused.status, 409);
    assert_eq!(json_of(&refused)["error"]["code"], "refund_final");
}

#[tokio::test]
async fn change_can_be_resolved_and_closed_refunds_free_the_amount() {
    let sim = simulator();
    paid_order(&sim, "order-c001").await;
    refund(
        &sim,
        refund_fields("order-c001", "R1", "1990", NOTIFY),
        None,
    )
    .await;
    let change = json_of(
        &control(
            &sim,
            "/control/refund",
            json!({"out_refund_no": "R1", "status": "CHANGE", "notify": "drop"}),
        )
        .await,
    );
    assert_eq!(change["refund_status"], "CHANGE");
    let inner = root_fields(&decrypt(
        &super::super::xml::parse(change["notification"].as_str().unwrap().as_bytes()).unwrap()["req_info"],
    ));
    assert_eq!(inner["refund_status"], "CHANGE");
    assert!(!inner.contains_key("success_time"));
    let closed = control(
        &sim,
        "/control/refund",
        json!({"out_refund_no": "R1", "status": "REFUNDCLOSE", "notify": "drop"}),
    )
    .await;
    assert_eq!(closed.status, 200);
    // The closed refund no longer counts: the whole amount can be refunded again.
    let second = refund(
        &sim,
        refund_fields("order-c001", "R2", "1990", NOTIFY),
        None,
    )
    .await;
    assert_eq!(second["result_code"], "SUCCESS", "{second:?}");

    for (body, status) in [
        (json!({"out_refund_no": "R9", "status": "SUCCESS"}), 404),
        (json!({"out_refund_no": "R2", "status": "PROCESSING"}), 400),
        (json!({"out_refund_no": "R2", "status": "DONE"}), 400),
        (
            json!({"out_refund_no": "R2", "status": "SUCCESS", "x": 1}),
            400,
        ),
    ] {
        assert_eq!(
            control(&sim, "/control/refund", body.clone()).await.status,
            status,
            "{body}"
        );
    }
}

#[tokio::test]
async fn auto_refund_settles_at_once_and_delivers_after_the_answer() {
    let sim = simulator();
    let merchant = fake_merchant(200, ACK_SUCCESS);
    paid_order(&sim, "order-a001").await;
    let settings =
        json_of(&control(&sim, "/control/settings", json!({"auto_refund": "SUCCESS"})).await);
    assert_eq!(settings, json!({"auto_refund": "SUCCESS"}));
    assert_eq!(
        json_of(&control(&sim, "/control/settings", json!({})).await),
        json!({"auto_refund": "SUCCESS"})
    );
    let accepted = refund(
        &sim,
        refund_fields("order-a001", "R1", "500", &merchant.url),
        None,
    )
    .await;
    assert_eq!(accepted["result_code"], "SUCCESS");
    assert_eq!(
        query(&sim, &[("out_refund_no", "R1")]).await["refund_status_0"],
        "SUCCESS"
    );
    let mut waited = 0;
    while merchant.received.lock().unwrap().is_empty() && waited < 50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    let received = merchant.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let outer = super::super::xml::parse(received[0].as_bytes()).unwrap();
    assert_eq!(
        root_fields(&decrypt(&outer["req_info"]))["out_refund_no"],
        "R1"
    );

    // A replay does not settle or notify again; turning it off keeps new refunds processing.
    refund(
        &sim,
        refund_fields("order-a001", "R1", "500", &merchant.url),
        None,
    )
    .await;
    assert_eq!(
        json_of(&control(&sim, "/control/settings", json!({"auto_refund": null})).await),
        json!({"auto_refund": null})
    );
    refund(
        &sim,
        refund_fields("order-a001", "R2", "500", &merchant.url),
        None,
    )
    .await;
    assert_eq!(
        query(&sim, &[("out_refund_no", "R2")]).await["refund_status_0"],
        "PROCESSING"
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(merchant.received.lock().unwrap().len(), 1);
    for bad in [json!({"auto_refund": "PROCESSING"}), json!({"auto": null})] {
        assert_eq!(control(&sim, "/control/settings", bad).await.status, 400);
    }
}

#[tokio::test]
async fn refund_failures_can_be_injected() {
    let sim = simulator();
    paid_order(&sim, "order-f001").await;
    let armed = control(
        &sim,
        "/control/fail",
        json!({"api": "refund", "mode": "SYSTEMERROR"}),
    )
    .await;
    assert_eq!(armed.status, 200);
    let failed = refund(&sim, refund_fields("order-f001", "R1", "1", NOTIFY), None).await;
    assert_eq!(failed["err_code"], "SYSTEMERROR");
    assert_eq!(
        query(&sim, &[("out_refund_no", "R1")]).await["err_code"],
        "REFUNDNOTEXIST",
        "nothing was done"
    );
    control(
        &sim,
        "/control/fail",
        json!({"api": "refundquery", "mode": "http500"}),
    )
    .await;
    let response = call(
        &sim,
        "POST",
        "/pay/refundquery",
        "",
        &signed_body(
            params(&[
                ("appid", APPID),
                ("mch_id", MCH_ID),
                ("nonce_str", "q"),
                ("out_refund_no", "R1"),
            ]),
            API_KEY,
            None,
        ),
    )
    .await;
    assert_eq!(response.status, 500);
    let ok = refund(&sim, refund_fields("order-f001", "R1", "1", NOTIFY), None).await;
    assert_eq!(ok["result_code"], "SUCCESS");
}
