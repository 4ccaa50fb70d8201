//! The v3 simulator through `handle`, with requests signed and answers verified by code written
//! here (aws-lc-rs called directly), independently of both the simulator's and the client's.

use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use paybridge_core::provider::{SimRequest, SimResponse, Simulator};
use serde_json::{Value, json};

use crate::sandbox::WechatSimulator;
use crate::sandbox::tests::{APPID, fake_merchant, login};

const MCH_ID: &str = "10000100";
const APIV3_KEY: &str = "sandboxApiV3KeySandboxApiV3Key32";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/wechatpay-v3");
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sandbox-keys");
const NOTIFY_URL: &str = "https://merchant.example/notify/demo/wechat_miniprogram";

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn pem_der(text: &str) -> Vec<u8> {
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

fn merchant_serial() -> String {
    let v: Value = serde_json::from_str(&read(&format!("{FIXTURES}/vectors.json"))).unwrap();
    v["merchant_serial_no"].as_str().unwrap().to_owned()
}

/// A simulator knowing a v3 merchant (the fixtures' merchant key); `public_key`: its table names
/// a public key id, so it starts in public-key mode.
fn simulator(public_key: bool) -> WechatSimulator {
    let sim = WechatSimulator::new(Duration::from_secs(2));
    let mut table = format!(
        "appid = \"{APPID}\"\nmch_id = \"{MCH_ID}\"\napp_secret = \"{}\"\napiv3_key = \"{APIV3_KEY}\"\n\
         client_key = \"merchant_key.pem\"\nmerchant_serial_no = \"{}\"\napi_version = \"v3\"\n",
        crate::sandbox::tests::APP_SECRET,
        merchant_serial()
    );
    if public_key {
        table.push_str(&format!(
            "wechatpay_public_key_id = \"{}\"\n",
            super::merchant::public_key_id(MCH_ID)
        ));
    }
    sim.register_merchant(&table.parse().unwrap(), std::path::Path::new(FIXTURES));
    sim
}

/// The test's own request signer.
fn authorization(
    method: &str,
    path_and_query: &str,
    body: &str,
    timestamp: i64,
    serial: &str,
) -> String {
    let key =
        KeyPair::from_pkcs8(&pem_der(&read(&format!("{FIXTURES}/merchant_key.pem")))).unwrap();
    let nonce = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS";
    let message = format!("{method}\n{path_and_query}\n{timestamp}\n{nonce}\n{body}\n");
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        message.as_bytes(),
        &mut signature,
    )
    .unwrap();
    format!(
        "WECHATPAY2-SHA256-RSA2048 signature=\"{}\",mchid=\"{MCH_ID}\",serial_no=\"{serial}\",timestamp=\"{timestamp}\",nonce_str=\"{nonce}\"",
        STANDARD.encode(signature)
    )
}

async fn v3_call_with(
    sim: &WechatSimulator,
    method: &str,
    path: &str,
    query: &str,
    body: &str,
    headers: Vec<(String, String)>,
) -> SimResponse {
    sim.handle(SimRequest {
        method: method.into(),
        path: path.into(),
        base: "http://sandbox.test".into(),
        query: query.into(),
        headers,
        body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        tls: None,
    })
    .await
}

async fn v3_call(
    sim: &WechatSimulator,
    method: &str,
    path: &str,
    query: &str,
    body: &str,
) -> SimResponse {
    let signed = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    };
    let auth = authorization(
        method,
        &signed,
        body,
        Utc::now().timestamp(),
        &merchant_serial(),
    );
    v3_call_with(
        sim,
        method,
        path,
        query,
        body,
        vec![("authorization".into(), auth)],
    )
    .await
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
}

/// Which key verified: "public_key" or "certificate" (panics if neither does).
fn verify_signed(headers: &[(String, String)], body: &str) -> &'static str {
    let message = format!(
        "{}\n{}\n{body}\n",
        header(headers, "wechatpay-timestamp"),
        header(headers, "wechatpay-nonce")
    );
    let signature = STANDARD
        .decode(header(headers, "wechatpay-signature"))
        .unwrap();
    let serial = header(headers, "wechatpay-serial");
    let (kind, spki) = if serial.starts_with("PUB_KEY_ID_") {
        assert_eq!(serial, super::merchant::public_key_id(MCH_ID));
        (
            "public_key",
            pem_der(&read(&format!("{KEYS}/wechatpay_sandbox_pub_key.pem"))),
        )
    } else {
        let der = pem_der(&read(&format!(
            "{KEYS}/wechatpay_sandbox_platform_cert.pem"
        )));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(
            serial,
            cert.raw_serial_as_string().replace(':', "").to_uppercase()
        );
        ("certificate", cert.public_key().raw.to_vec())
    };
    let (_, info) = <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<
        x509_parser::error::X509Error,
    >>::from_der(&spki)
    .unwrap();
    UnparsedPublicKey::new(
        &RSA_PKCS1_2048_8192_SHA256,
        info.subject_public_key.data.as_ref(),
    )
    .verify(message.as_bytes(), &signature)
    .unwrap_or_else(|_| panic!("{kind} signature does not verify"));
    kind
}

fn open(resource: &Value) -> Value {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, APIV3_KEY.as_bytes()).unwrap());
    let nonce =
        Nonce::try_assume_unique_for_key(resource["nonce"].as_str().unwrap().as_bytes()).unwrap();
    let mut data = STANDARD
        .decode(resource["ciphertext"].as_str().unwrap())
        .unwrap();
    let aad = resource["associated_data"].as_str().unwrap();
    let plain = key
        .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut data)
        .unwrap();
    serde_json::from_slice(plain).unwrap()
}

fn json_body(response: &SimResponse) -> Value {
    serde_json::from_slice(&response.body).unwrap()
}

fn prepay_body(out_trade_no: &str, openid: &str) -> String {
    json!({
        "appid": APPID, "mchid": MCH_ID, "description": "咖啡",
        "out_trade_no": out_trade_no, "notify_url": NOTIFY_URL,
        "amount": {"total": 150, "currency": "CNY"}, "payer": {"openid": openid},
    })
    .to_string()
}

async fn control(sim: &WechatSimulator, path: &str, body: Value) -> SimResponse {
    v3_call_with(sim, "POST", path, "", &body.to_string(), Vec::new()).await
}

async fn new_order(sim: &WechatSimulator, out_trade_no: &str) -> String {
    let openid = login(sim, &format!("code-{out_trade_no}")).await;
    let body = prepay_body(out_trade_no, &openid);
    let answer = v3_call(sim, "POST", "/v3/pay/transactions/jsapi", "", &body).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let text = String::from_utf8(answer.body.clone()).unwrap();
    assert_eq!(verify_signed(&answer.headers, &text), "public_key");
    // A re-entry with the same parameters gets the same prepay_id.
    let again = v3_call(sim, "POST", "/v3/pay/transactions/jsapi", "", &body).await;
    assert_eq!(json_body(&again), json_body(&answer));
    json_body(&answer)["prepay_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_v3_order_is_created_paid_queried_and_refunded_with_sealed_notifications() {
    let sim = simulator(true);
    let prepay_id = new_order(&sim, "PB3-0001").await;
    assert!(prepay_id.starts_with("wx"));
    let query = format!("mchid={MCH_ID}");
    let path = "/v3/pay/transactions/out-trade-no/PB3-0001";
    let unpaid = json_body(&v3_call(&sim, "GET", path, &query, "").await);
    assert_eq!(unpaid["trade_state"], "NOTPAY");

    let paid = control(
        &sim,
        "/control/pay",
        json!({"out_trade_no": "PB3-0001", "notify": "return"}),
    )
    .await;
    assert_eq!(paid.status, 200);
    let notification: Value =
        serde_json::from_str(json_body(&paid)["notification"].as_str().unwrap()).unwrap();
    assert_eq!(notification["event_type"], "TRANSACTION.SUCCESS");
    assert_eq!(notification["resource"]["associated_data"], "transaction");
    let transaction = open(&notification["resource"]);
    assert_eq!(transaction["trade_state"], "SUCCESS");
    assert_eq!(transaction["amount"]["total"], 150);
    assert_eq!(transaction["mchid"], MCH_ID);
    assert_eq!(transaction["appid"], APPID);
    let queried = v3_call(&sim, "GET", path, &query, "").await;
    let text = String::from_utf8(queried.body.clone()).unwrap();
    verify_signed(&queried.headers, &text);
    let queried = json_body(&queried);
    assert_eq!(queried["trade_state"], "SUCCESS");
    assert_eq!(queried["transaction_id"], transaction["transaction_id"]);
    assert!(
        queried["success_time"]
            .as_str()
            .unwrap()
            .ends_with("+08:00")
    );

    let refund = json!({
        "out_trade_no": "PB3-0001", "out_refund_no": "RF3-0001", "notify_url": NOTIFY_URL,
        "amount": {"refund": 100, "total": 150, "currency": "CNY"},
    })
    .to_string();
    let answer =
        json_body(&v3_call(&sim, "POST", "/v3/refund/domestic/refunds", "", &refund).await);
    assert_eq!(answer["status"], "PROCESSING");
    assert_eq!(answer["amount"]["refund"], 100);
    let too_much = refund
        .replace("\"refund\":100", "\"refund\":51")
        .replace("RF3-0001", "RF3-0002");
    let refused = v3_call(&sim, "POST", "/v3/refund/domestic/refunds", "", &too_much).await;
    assert_eq!(
        (refused.status, json_body(&refused)["code"].clone()),
        (400, json!("INVALID_REQUEST"))
    );

    let settled = control(
        &sim,
        "/control/refund",
        json!({"out_refund_no": "RF3-0001", "status": "SUCCESS", "notify": "return"}),
    )
    .await;
    let notification: Value =
        serde_json::from_str(json_body(&settled)["notification"].as_str().unwrap()).unwrap();
    assert_eq!(notification["event_type"], "REFUND.SUCCESS");
    let resource = open(&notification["resource"]);
    assert_eq!(resource["refund_status"], "SUCCESS");
    assert_eq!(resource["amount"]["refund"], 100);
    let queried =
        json_body(&v3_call(&sim, "GET", "/v3/refund/domestic/refunds/RF3-0001", "", "").await);
    assert_eq!(queried["status"], "SUCCESS");
    // v3 names for the v2 statuses are accepted by the control API.
    let closed_name = control(
        &sim,
        "/control/refund",
        json!({"out_refund_no": "RF3-0001", "status": "CLOSED"}),
    )
    .await;
    assert_eq!(closed_name.status, 409, "a final refund stays final");
}

#[tokio::test]
async fn requests_that_do_not_verify_get_401_sign_error() {
    let sim = simulator(true);
    let openid = login(&sim, "code-auth").await;
    let body = prepay_body("PB3-AUTH", &openid);
    let path = "/v3/pay/transactions/jsapi";
    let now = Utc::now().timestamp();
    let serial = merchant_serial();
    let cases = [
        (
            "tampered body",
            authorization("POST", path, &body.replace("150", "1"), now, &serial),
        ),
        (
            "wrong serial",
            authorization("POST", path, &body, now, "0123456789ABCDEF"),
        ),
        (
            "stale timestamp",
            authorization("POST", path, &body, now - 301, &serial),
        ),
        (
            "other path",
            authorization("POST", "/v3/pay/transactions/native", &body, now, &serial),
        ),
        (
            "unknown merchant",
            authorization("POST", path, &body, now, &serial).replace(MCH_ID, "1999999999"),
        ),
        (
            "not the scheme",
            authorization("POST", path, &body, now, &serial)
                .replace("WECHATPAY2-SHA256-RSA2048", "Bearer"),
        ),
    ];
    for (what, auth) in cases {
        let answer = v3_call_with(
            &sim,
            "POST",
            path,
            "",
            &body,
            vec![("authorization".into(), auth)],
        )
        .await;
        assert_eq!(answer.status, 401, "{what}");
        assert_eq!(json_body(&answer)["code"], "SIGN_ERROR", "{what}");
    }
    let unsigned = v3_call_with(&sim, "POST", path, "", &body, Vec::new()).await;
    assert_eq!(unsigned.status, 401);
    // The genuine request passes.
    assert_eq!(v3_call(&sim, "POST", path, "", &body).await.status, 200);
}

#[tokio::test]
async fn close_answers_204_signed_over_the_empty_body_and_never_closes_a_paid_order() {
    let sim = simulator(true);
    new_order(&sim, "PB3-CLOSE").await;
    let body = json!({"mchid": MCH_ID}).to_string();
    let closed = v3_call(
        &sim,
        "POST",
        "/v3/pay/transactions/out-trade-no/PB3-CLOSE/close",
        "",
        &body,
    )
    .await;
    assert_eq!(closed.status, 204);
    assert!(closed.body.is_empty());
    verify_signed(&closed.headers, "");
    let query = format!("mchid={MCH_ID}");
    let state = json_body(
        &v3_call(
            &sim,
            "GET",
            "/v3/pay/transactions/out-trade-no/PB3-CLOSE",
            &query,
            "",
        )
        .await,
    );
    assert_eq!(state["trade_state"], "CLOSED");

    new_order(&sim, "PB3-PAID").await;
    control(
        &sim,
        "/control/pay",
        json!({"out_trade_no": "PB3-PAID", "notify": "drop"}),
    )
    .await;
    let refused = v3_call(
        &sim,
        "POST",
        "/v3/pay/transactions/out-trade-no/PB3-PAID/close",
        "",
        &body,
    )
    .await;
    assert_eq!(
        (refused.status, json_body(&refused)["code"].clone()),
        (400, json!("ORDERPAID"))
    );
    let missing = v3_call(
        &sim,
        "GET",
        "/v3/pay/transactions/out-trade-no/PB3-NONE",
        &query,
        "",
    )
    .await;
    assert_eq!(
        (missing.status, json_body(&missing)["code"].clone()),
        (404, json!("ORDER_NOT_EXIST"))
    );
}

#[tokio::test]
async fn certificates_are_served_sealed_in_certificate_mode_and_404_in_public_key_mode() {
    let sim = simulator(false);
    let answer = v3_call(&sim, "GET", "/v3/certificates", "", "").await;
    assert_eq!(answer.status, 200);
    let text = String::from_utf8(answer.body.clone()).unwrap();
    assert_eq!(verify_signed(&answer.headers, &text), "certificate");
    let entry = &json_body(&answer)["data"][0];
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, APIV3_KEY.as_bytes()).unwrap());
    let sealed = &entry["encrypt_certificate"];
    let nonce =
        Nonce::try_assume_unique_for_key(sealed["nonce"].as_str().unwrap().as_bytes()).unwrap();
    let mut data = STANDARD
        .decode(sealed["ciphertext"].as_str().unwrap())
        .unwrap();
    let pem = key
        .open_in_place(nonce, Aad::from(b"certificate"), &mut data)
        .unwrap();
    assert_eq!(
        std::str::from_utf8(pem).unwrap(),
        read(&format!("{KEYS}/wechatpay_sandbox_platform_cert.pem"))
    );

    let switched = control(
        &sim,
        "/control/v3/keys",
        json!({"mch_id": MCH_ID, "mode": "public_key"}),
    )
    .await;
    assert_eq!(json_body(&switched)["mode"], "public_key");
    let gone = v3_call(&sim, "GET", "/v3/certificates", "", "").await;
    assert_eq!(
        (gone.status, json_body(&gone)["code"].clone()),
        (404, json!("RESOURCE_NOT_EXISTS"))
    );
    let bad = control(
        &sim,
        "/control/v3/keys",
        json!({"mch_id": MCH_ID, "mode": "switching"}),
    )
    .await;
    assert_eq!(bad.status, 400, "switching needs public_key_percent");
}

#[tokio::test]
async fn a_switch_signs_notifications_both_ways_and_answers_follow_the_named_serial() {
    let sim = simulator(false);
    let merchant = fake_merchant(204, "");
    let openid = login(&sim, "code-switch").await;
    let body = prepay_body("PB3-SWITCH", &openid).replace(NOTIFY_URL, &merchant.url);
    assert_eq!(
        v3_call(&sim, "POST", "/v3/pay/transactions/jsapi", "", &body)
            .await
            .status,
        200
    );
    let keys = control(
        &sim,
        "/control/v3/keys",
        json!({"mch_id": MCH_ID, "mode": "switching", "public_key_percent": 50}),
    )
    .await;
    assert_eq!(json_body(&keys)["public_key_percent"], 50);
    let paid = control(
        &sim,
        "/control/pay",
        json!({"out_trade_no": "PB3-SWITCH", "notify": "drop"}),
    )
    .await;
    assert_eq!(paid.status, 200);
    let sent = control(
        &sim,
        "/control/notify",
        json!({"out_trade_no": "PB3-SWITCH", "copies": 4}),
    )
    .await;
    let deliveries = json_body(&sent)["deliveries"].as_array().unwrap().clone();
    assert_eq!(deliveries.len(), 4);
    assert!(
        deliveries.iter().all(|d| d["acknowledged"] == true),
        "{deliveries:?}"
    );
    let heads = merchant.heads.lock().unwrap().clone();
    let bodies = merchant.received.lock().unwrap().clone();
    let mut kinds: Vec<&str> = heads
        .iter()
        .zip(&bodies)
        .map(|(head, body)| {
            let headers: Vec<(String, String)> = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(": "))
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect();
            verify_signed(&headers, body)
        })
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        ["certificate", "certificate", "public_key", "public_key"]
    );

    // An answer follows the serial the request named.
    let query = format!("mchid={MCH_ID}");
    let path = "/v3/pay/transactions/out-trade-no/PB3-SWITCH";
    let signed = format!("{path}?{query}");
    let auth = authorization(
        "GET",
        &signed,
        "",
        Utc::now().timestamp(),
        &merchant_serial(),
    );
    let named = vec![
        ("authorization".to_owned(), auth),
        (
            "wechatpay-serial".to_owned(),
            super::merchant::public_key_id(MCH_ID),
        ),
    ];
    let answer = v3_call_with(&sim, "GET", path, &query, "", named).await;
    let text = String::from_utf8(answer.body.clone()).unwrap();
    assert_eq!(verify_signed(&answer.headers, &text), "public_key");

    // WeChat's probe carries a signature that cannot verify.
    let probe = control(
        &sim,
        "/control/notify",
        json!({"out_trade_no": "PB3-SWITCH", "probe": true}),
    )
    .await;
    assert_eq!(probe.status, 200);
    let last = merchant.heads.lock().unwrap().last().cloned().unwrap();
    assert!(
        last.to_ascii_lowercase()
            .contains("wechatpay-signature: wechatpay/signtest/"),
        "{last}"
    );
}

/// Whether the answer's signature verifies (without panicking).
fn signature_verifies(response: &SimResponse) -> bool {
    let body = String::from_utf8(response.body.clone()).unwrap();
    std::panic::catch_unwind(|| verify_signed(&response.headers, &body)).is_ok()
}

#[tokio::test]
async fn injected_failures_apply_to_the_v3_endpoints() {
    let sim = simulator(true);
    let openid = login(&sim, "code-faults").await;
    let body = prepay_body("PB3-FAULT", &openid);
    let path = "/v3/pay/transactions/jsapi";
    let fail = |api: &str, mode: &str| json!({"api": api, "mode": mode, "times": 1});

    // SYSTEMERROR: a signed 500, and nothing is created.
    assert_eq!(
        control(&sim, "/control/fail", fail("v3_jsapi", "SYSTEMERROR"))
            .await
            .status,
        200
    );
    let answer = v3_call(&sim, "POST", path, "", &body).await;
    assert_eq!(
        (answer.status, json_body(&answer)["code"].clone()),
        (500, json!("SYSTEM_ERROR"))
    );
    assert!(signature_verifies(&answer));
    let query = format!("mchid={MCH_ID}");
    let order = "/v3/pay/transactions/out-trade-no/PB3-FAULT";
    assert_eq!(v3_call(&sim, "GET", order, &query, "").await.status, 404);

    // http500: a plain 500, nothing created.
    control(&sim, "/control/fail", fail("v3_jsapi", "http500")).await;
    let answer = v3_call(&sim, "POST", path, "", &body).await;
    assert_eq!(answer.status, 500);
    assert!(
        serde_json::from_slice::<Value>(&answer.body).is_err(),
        "not JSON"
    );
    assert_eq!(v3_call(&sim, "GET", order, &query, "").await.status, 404);

    // bad_sign: the order is created, but the answer's signature does not verify.
    control(&sim, "/control/fail", fail("v3_jsapi", "bad_sign")).await;
    let answer = v3_call(&sim, "POST", path, "", &body).await;
    assert_eq!(answer.status, 200);
    assert!(!signature_verifies(&answer));
    assert_eq!(v3_call(&sim, "GET", order, &query, "").await.status, 200);
    // Each failure is used once: the next call is normal again.
    let answer = v3_call(&sim, "POST", path, "", &body).await;
    assert!(signature_verifies(&answer));
    // A v2 API name does not catch v3 calls.
    control(&sim, "/control/fail", fail("orderquery", "http500")).await;
    assert_eq!(v3_call(&sim, "GET", order, &query, "").await.status, 200);
}

/// A simulator that knows service provider `MCH_ID` (the fixtures' key) with sub-merchant
/// 1900000201, whose payers are sp_openids of the service provider's mini-program.
fn partner_simulator() -> WechatSimulator {
    let sim = WechatSimulator::new(Duration::from_secs(2));
    let table = format!(
        "sp_appid = \"{APPID}\"\nsp_mchid = \"{MCH_ID}\"\nsub_mchid = \"1900000201\"\napp_secret = \"{}\"\n\
         apiv3_key = \"{APIV3_KEY}\"\nclient_key = \"merchant_key.pem\"\nmerchant_serial_no = \"{}\"\n\
         api_version = \"v3\"\nwechatpay_public_key_id = \"{}\"\n",
        crate::sandbox::tests::APP_SECRET,
        merchant_serial(),
        super::merchant::public_key_id(MCH_ID)
    );
    sim.register_merchant(&table.parse().unwrap(), std::path::Path::new(FIXTURES));
    sim
}

fn partner_prepay(sub_mchid: &str, out_trade_no: &str, openid: &str) -> String {
    json!({
        "sp_appid": APPID, "sp_mchid": MCH_ID, "sub_mchid": sub_mchid,
        "description": "tea", "out_trade_no": out_trade_no, "notify_url": NOTIFY_URL,
        "amount": {"total": 100, "currency": "CNY"}, "payer": {"sp_openid": openid},
    })
    .to_string()
}

#[tokio::test]
async fn the_partner_api_acts_only_for_bound_sub_merchants() {
    let sim = partner_simulator();
    let openid = login(&sim, "partner-code").await;
    let jsapi = "/v3/pay/partner/transactions/jsapi";

    // A sub-merchant that is not bound to this service provider: 403 NO_AUTH.
    let refused = v3_call(
        &sim,
        "POST",
        jsapi,
        "",
        &partner_prepay("1900000299", "P000001", &openid),
    )
    .await;
    assert_eq!(refused.status, 403);
    assert!(String::from_utf8_lossy(&refused.body).contains("NO_AUTH"));

    // The bound one: a prepay id, and the order is the sub-merchant's, naming both merchants.
    let created = v3_call(
        &sim,
        "POST",
        jsapi,
        "",
        &partner_prepay("1900000201", "P000001", &openid),
    )
    .await;
    assert_eq!(
        created.status,
        200,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let query = format!("sp_mchid={MCH_ID}&sub_mchid=1900000201");
    let path = "/v3/pay/partner/transactions/out-trade-no/P000001";
    let found = v3_call(&sim, "GET", path, &query, "").await;
    let t: Value = serde_json::from_slice(&found.body).unwrap();
    assert_eq!(found.status, 200, "{t}");
    assert_eq!(
        (
            t["sp_mchid"].as_str(),
            t["sub_mchid"].as_str(),
            t["sp_appid"].as_str()
        ),
        (Some(MCH_ID), Some("1900000201"), Some(APPID)),
        "{t}"
    );
    assert_eq!(t["payer"]["sp_openid"], openid.as_str(), "{t}");
    assert!(t.get("mchid").is_none(), "{t}");
    // Answers are signed for the service provider.
    let body = String::from_utf8(found.body.clone()).unwrap();
    assert_eq!(verify_signed(&found.headers, &body), "public_key");
    // Another sub-merchant's id in the query finds nothing of this one.
    let other = v3_call(
        &sim,
        "GET",
        path,
        &format!("sp_mchid={MCH_ID}&sub_mchid=1900000299"),
        "",
    )
    .await;
    assert_eq!(other.status, 403);
    // The direct API does not see the sub-merchant's order.
    let direct = v3_call(
        &sim,
        "GET",
        "/v3/pay/transactions/out-trade-no/P000001",
        &format!("mchid={MCH_ID}"),
        "",
    )
    .await;
    assert_eq!(direct.status, 404);
}
