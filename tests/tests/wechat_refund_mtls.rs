//! WeChat refunds over mutual TLS: the provider against its simulator served over HTTPS by
//! `paybridge_tests::tls`, with a test CA, a server certificate and a merchant client certificate
//! made at run time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use paybridge_core::money::Fen;
use paybridge_core::provider::{
    BuildContext, CreatePayment, IncomingNotification, NotifyChannel, OrderLookup, OrderRef,
    OrderSnapshot, PaymentProvider, ProviderError, ProviderEvent, RefundRequest, Simulator,
};
use paybridge_core::refund::RefundStatus;
use paybridge_tests::tls::{SimServer, TestPki, serve_simulator};
use paybridge_tests::wechat::{parse_xml, sign, to_xml};
use paybridge_wechat::WechatMiniprogram;

const APPID: &str = "wx00000000000000a1";
const MCH_ID: &str = "1900000109";
const API_KEY: &str = "0123456789abcdefghijklmnopqrstuv";
const SIGN_TYPE: &str = "HMAC-SHA256";

fn merchant_table() -> String {
    format!(
        "appid = \"{APPID}\"\nmch_id = \"{MCH_ID}\"\napi_key = \"{API_KEY}\"\n\
         app_secret = \"test-app-secret\"\nsign_type = \"{SIGN_TYPE}\"\n"
    )
}

/// How the provider under test holds its certificate.
enum Cert<'a> {
    None,
    PemPair,
    P12(&'a std::path::Path),
}

fn provider(server: &SimServer, pki: &TestPki, cert: Cert<'_>) -> WechatMiniprogram {
    let mut text = merchant_table();
    text.push_str(&format!(
        "api_base = \"{base}\"\nlogin_base = \"{base}\"\nca_file = \"{ca}\"\n",
        base = server.base,
        ca = pki.ca_pem_path.display(),
    ));
    match cert {
        Cert::None => {}
        Cert::PemPair => text.push_str(&format!(
            "client_cert = \"{}\"\nclient_key = \"{}\"\n",
            pki.client_cert_path.display(),
            pki.client_key_path.display()
        )),
        Cert::P12(path) => text.push_str(&format!("client_p12 = \"{}\"\n", path.display())),
    }
    let table: toml::Table = text.parse().unwrap();
    let ctx = BuildContext {
        base_dir: pki.path().to_path_buf(),
        http_timeout: Duration::from_secs(10),
    };
    WechatMiniprogram::new(&table, &ctx).unwrap()
}

/// The tenant's orders and refunds, as the server would look them up.
#[derive(Default)]
struct Book {
    orders: Mutex<HashMap<String, OrderSnapshot>>,
    refunds: Mutex<HashMap<(String, String), Fen>>,
}

#[async_trait]
impl OrderLookup for Book {
    async fn find_order(&self, out_trade_no: &str) -> Option<OrderSnapshot> {
        self.orders.lock().unwrap().get(out_trade_no).cloned()
    }
    async fn find_refund(&self, out_trade_no: &str, out_refund_no: &str) -> Option<Fen> {
        self.refunds
            .lock()
            .unwrap()
            .get(&(out_trade_no.to_owned(), out_refund_no.to_owned()))
            .copied()
    }
}

struct World {
    pki: TestPki,
    server: SimServer,
    book: Book,
}

async fn world() -> World {
    let pki = TestPki::generate(MCH_ID);
    let sim: Arc<dyn Simulator> = paybridge_wechat::sandbox::simulator(Duration::from_secs(5));
    sim.register_merchant(
        &merchant_table().parse().unwrap(),
        std::path::Path::new("."),
    );
    let server = serve_simulator(sim, &pki).await;
    World {
        pki,
        server,
        book: Book::default(),
    }
}

/// Log in, create the order through the provider, pay it through the simulator (notification
/// dropped); returns the order as the server would hold it.
async fn paid_order(w: &World, p: &WechatMiniprogram, out_trade_no: &str) -> OrderRef {
    let session = p
        .login(&format!("code-{out_trade_no}"))
        .await
        .expect("login over HTTPS");
    let created = p
        .create_payment(&CreatePayment {
            out_trade_no: out_trade_no.into(),
            amount: Fen::new(1990),
            description: "Flat white".into(),
            payer_openid: Some(session.openid),
            client_ip: None,
            expires_at: Utc::now() + chrono::TimeDelta::hours(2),
            attach: None,
            notify_url: "https://paybridge.example/notify/demo/wechat_miniprogram".into(),
            previous_provider_data: None,
        })
        .await
        .expect("unifiedorder over HTTPS");
    let paid = w
        .pki
        .client_without_identity()
        .post(format!("{}/control/pay", w.server.base))
        .json(&serde_json::json!({"out_trade_no": out_trade_no, "notify": "drop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    let paid: serde_json::Value = paid.json().await.unwrap();
    w.book.orders.lock().unwrap().insert(
        out_trade_no.to_owned(),
        OrderSnapshot {
            amount: Fen::new(1990),
            provider_data: created.provider_data.clone(),
        },
    );
    OrderRef {
        out_trade_no: out_trade_no.into(),
        provider_trade_no: paid["transaction_id"].as_str().map(str::to_owned),
        amount: Fen::new(1990),
        provider_data: created.provider_data,
    }
}

fn refund_request(order: &OrderRef, out_refund_no: &str, amount: i64) -> RefundRequest {
    RefundRequest {
        order: order.clone(),
        out_refund_no: out_refund_no.into(),
        amount: Fen::new(amount),
        reason: Some("customer changed their mind".into()),
        notify_url: "https://paybridge.example/notify/demo/wechat_miniprogram/refund".into(),
    }
}

/// Refund through `p`, settle it with SUCCESS (notification returned), verify that notification
/// through the provider, and query the refund.
async fn refund_succeeds(
    w: &World,
    p: &WechatMiniprogram,
    order: &OrderRef,
    no: &str,
    amount: i64,
) {
    let before = w.server.requests_to("/secapi/pay/refund").len();
    let accepted = p
        .refund(&refund_request(order, no, amount))
        .await
        .expect("refund accepted");
    assert_eq!(accepted.status, RefundStatus::Processing);
    let refund_id = accepted.provider_refund_no.clone().expect("refund_id");
    let seen = w.server.requests_to("/secapi/pay/refund");
    assert_eq!(seen.len(), before + 1);
    assert!(
        seen.last().unwrap().client_certificate,
        "the refund call presented the merchant certificate"
    );
    w.book.refunds.lock().unwrap().insert(
        (order.out_trade_no.clone(), no.to_owned()),
        Fen::new(amount),
    );

    let settled: serde_json::Value = w
        .pki
        .client_without_identity()
        .post(format!("{}/control/refund", w.server.base))
        .json(&serde_json::json!({"out_refund_no": no, "status": "SUCCESS", "notify": "return"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let body = settled["notification"].as_str().expect("notification");
    let event = p
        .verify_notification(
            &IncomingNotification {
                channel: NotifyChannel::Refund,
                content_type: Some("text/xml"),
                body: body.as_bytes(),
                headers: &[],
            },
            &w.book,
        )
        .await
        .expect("refund notification verifies");
    let ProviderEvent::Refund(event) = event else {
        panic!("not a refund event: {event:?}");
    };
    assert_eq!(event.status, RefundStatus::Succeeded);
    assert_eq!(event.amount, Fen::new(amount));
    assert_eq!(event.out_trade_no, order.out_trade_no);
    assert_eq!(event.out_refund_no, no);
    assert_eq!(
        event.provider_refund_no.as_deref(),
        Some(refund_id.as_str())
    );
    assert_eq!(event.event_id, format!("{refund_id}:SUCCESS"));
    let succeeded_at = event.succeeded_at.expect("success time");
    assert!(
        (Utc::now() - succeeded_at).num_seconds().abs() < 60,
        "{succeeded_at}"
    );

    let queried = p.query_refund(order, no).await.expect("refundquery");
    assert_eq!(queried.status, RefundStatus::Succeeded);
    assert_eq!(
        queried.provider_refund_no.as_deref(),
        Some(refund_id.as_str())
    );
    assert_eq!(queried.succeeded_at, Some(succeeded_at));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_need_the_merchant_certificate_end_to_end() {
    let w = world().await;
    let with_pem = provider(&w.server, &w.pki, Cert::PemPair);
    let order = paid_order(&w, &with_pem, "mtls-order-01").await;

    // (a) No certificate configured: refused before any network call.
    let without = provider(&w.server, &w.pki, Cert::None);
    let err = without
        .refund(&refund_request(&order, "R-none", 100))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::Misconfigured {
            field: "client_cert".into(),
            message: "refunds need the merchant API certificate: set client_cert + client_key, or client_p12".into(),
        }
    );
    assert!(w.server.requests_to("/secapi/pay/refund").is_empty());

    // (b) The server demands the certificate: a correctly signed refund over TLS without one
    // is refused, and nothing is refunded.
    let mut fields: BTreeMap<String, String> = [
        ("appid", APPID),
        ("mch_id", MCH_ID),
        ("nonce_str", "rawnonce"),
        ("sign_type", SIGN_TYPE),
        ("out_trade_no", "mtls-order-01"),
        ("out_refund_no", "R-raw"),
        ("total_fee", "1990"),
        ("refund_fee", "100"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let signature = sign(&fields, API_KEY, SIGN_TYPE);
    fields.insert("sign".into(), signature);
    let raw = w
        .pki
        .client_without_identity()
        .post(format!("{}/secapi/pay/refund", w.server.base))
        .body(to_xml(&fields))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    let answer = parse_xml(&raw.text().await.unwrap());
    assert_eq!(answer["return_code"], "FAIL", "{answer:?}");
    assert!(answer["return_msg"].contains("证书错误"), "{answer:?}");
    let seen = w.server.requests_to("/secapi/pay/refund");
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].client_certificate);
    // The same bytes with the certificate are accepted: it was only the certificate.
    let with_identity = w
        .pki
        .client_with_identity()
        .post(format!("{}/secapi/pay/refund", w.server.base))
        .body(to_xml(&fields))
        .send()
        .await
        .unwrap();
    let answer = parse_xml(&with_identity.text().await.unwrap());
    assert_eq!(answer["result_code"], "SUCCESS", "{answer:?}");
    w.book.refunds.lock().unwrap().insert(
        ("mtls-order-01".to_owned(), "R-raw".to_owned()),
        Fen::new(100),
    );

    // (c) With the PEM pair: accepted, settled, notified, queried.
    refund_succeeds(&w, &with_pem, &order, "R-pem-1", 990).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p12_certificate_works_like_the_pem_pair() {
    let w = world().await;
    let p12 = w.pki.write_p12(MCH_ID);
    let with_p12 = provider(&w.server, &w.pki, Cert::P12(&p12));
    let order = paid_order(&w, &with_p12, "mtls-order-02").await;
    refund_succeeds(&w, &with_p12, &order, "R-p12-1", 1990).await;

    // The whole amount is refunded: one more fen is refused by the simulator.
    let err = with_p12
        .refund(&refund_request(&order, "R-p12-2", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Rejected { code: "provider_rejected", message } if message.contains("ERROR")),
        "{err:?}"
    );
}

fn build_with_p12(
    pki: &TestPki,
    p12: &std::path::Path,
) -> Result<WechatMiniprogram, Vec<paybridge_core::provider::FieldError>> {
    let mut text = merchant_table();
    text.push_str(&format!("client_p12 = \"{}\"\n", p12.display()));
    let table: toml::Table = text.parse().unwrap();
    let ctx = BuildContext {
        base_dir: pki.path().to_path_buf(),
        http_timeout: Duration::from_secs(1),
    };
    WechatMiniprogram::new(&table, &ctx)
}

#[test]
fn a_p12_made_without_openssl_opens_too() {
    let pki = TestPki::generate(MCH_ID);
    let p12 = pki.write_p12_with_rust(MCH_ID);
    build_with_p12(&pki, &p12).expect("3DES p12 from p12-keystore");
}

#[test]
fn a_p12_for_another_mch_id_is_refused_at_config_load() {
    let pki = TestPki::generate(MCH_ID);
    let p12 = pki.write_p12("1900000108");
    let errors = build_with_p12(&pki, &p12).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.field == "client_p12" && e.message.contains("password mch_id")),
        "{errors:?}"
    );
}
