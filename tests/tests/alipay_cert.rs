//! Alipay's public-key certificate mode end to end, through the HTTP API and the Alipay sandbox,
//! on SQLite and (with `DATABASE_URL`) PostgreSQL: the numbers in every signed request, answers
//! verified with the certificate they name, a rotated certificate downloaded and trusted through
//! its chain, and a certificate outside the root refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paybridge_tests::alipay::{self, cashier, create_order, order_string, parse_form};
use paybridge_tests::{Gateway, TestTenant, backends};
use serde_json::json;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/alipay-cert");
const KEYS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../providers/alipay-app/sandbox-keys"
);

fn tenant(id: &str, n: u32) -> TestTenant {
    let mut t = TestTenant::wechat(id, n, "MD5");
    t.alipay_cert_mode = true;
    t
}

async fn status(gw: &Gateway, t: &str, no: &str) -> String {
    gw.get(t, &format!("/v1/orders/{no}")).await.1["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn signer(gw: &Gateway, which: &str) -> String {
    let (code, answer) = gw
        .sandbox_of("alipay_app", "/control/cert", &json!({"signer": which}))
        .await;
    assert_eq!(code, 200, "{answer}");
    answer["alipay_cert_sn"].as_str().unwrap().to_owned()
}

/// `GET /v1/orders/{no}?sync=true`: the order as the provider's query answer leaves it.
async fn sync(gw: &Gateway, t: &TestTenant, no: &str) -> (u16, serde_json::Value) {
    gw.get(&t.id, &format!("/v1/orders/{no}?sync=true")).await
}

/// An order paid at the cashier whose notification was dropped: only a query can find it.
async fn paid_quietly(gw: &Gateway, t: &TestTenant) -> String {
    let (no, created) = create_order(gw, &t.id, 990).await;
    cashier(gw, &order_string(&created), "drop").await;
    assert_eq!(status(gw, &t.id, &no).await, "pending");
    no
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_mode_pays_queries_and_refunds_across_a_rotation() {
    // The numbers are the official SDK's for the committed test certificates.
    let vectors: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/vectors.json")).unwrap())
            .unwrap();
    let app_sn = paybridge_alipay::cert_sn::first_cert_sn(
        &std::fs::read_to_string(format!("{FIXTURES}/app_cert.crt")).unwrap(),
    )
    .unwrap();
    assert_eq!(app_sn, vectors["app_cert_sn"]);
    let sandbox_app_sn = paybridge_alipay::cert_sn::first_cert_sn(
        &std::fs::read_to_string(format!("{KEYS}/app_cert.crt")).unwrap(),
    )
    .unwrap();
    let sandbox_root_sn = paybridge_alipay::cert_sn::root_cert_sn(
        &std::fs::read_to_string(format!("{KEYS}/alipay_root_cert.crt")).unwrap(),
    )
    .unwrap();

    for backend in backends() {
        let name = backend.name();
        let t = tenant("ali_cert", 81);
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        signer(&gw, "current").await;

        // The orderString carries both numbers, signed; the cashier checks them.
        let (no, created) = create_order(&gw, &t.id, 1990).await;
        let os = order_string(&created);
        assert!(alipay::order_string_verifies(&os));
        let params = parse_form(&os);
        assert_eq!(params["app_cert_sn"], sandbox_app_sn);
        assert_eq!(params["alipay_root_cert_sn"], sandbox_root_sn);
        let paid = cashier(&gw, &os, "deliver").await;
        assert_eq!(
            paid["deliveries"][0]["acknowledged"], true,
            "{name}: {paid}"
        );
        assert_eq!(status(&gw, &t.id, &no).await, "paid");

        // Answers signed by the configured certificate.
        let quiet = paid_quietly(&gw, &t).await;
        let (code, order) = sync(&gw, &t, &quiet).await;
        assert_eq!(
            (code, order["status"].as_str()),
            (200, Some("paid")),
            "{name}: {order}"
        );

        // Alipay rotates its certificate: the answer names a new one, downloaded once and
        // trusted through its chain.
        let rotated = signer(&gw, "rotated").await;
        let quiet = paid_quietly(&gw, &t).await;
        let (code, order) = sync(&gw, &t, &quiet).await;
        assert_eq!(
            (code, order["status"].as_str()),
            (200, Some("paid")),
            "{name}: {order}"
        );
        let (code, refund) = gw
            .post(
                &t.id,
                &format!("/v1/orders/{no}/refunds"),
                &json!({"out_refund_no": "RC-1", "amount": 990}),
            )
            .await;
        assert_eq!(
            (code, refund["status"].as_str()),
            (201, Some("succeeded")),
            "{name}: {refund}"
        );

        // A certificate with Alipay's names but outside the configured root is refused, and
        // nothing changes.
        let rogue = signer(&gw, "rogue").await;
        assert_ne!(rogue, rotated);
        let quiet = paid_quietly(&gw, &t).await;
        let (code, err) = sync(&gw, &t, &quiet).await;
        assert_eq!(code, 502, "{name}: {err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(&rogue),
            "{err}"
        );
        assert_eq!(status(&gw, &t.id, &quiet).await, "pending");
        // Asked again at once: refused without a second download.
        let (code, _) = sync(&gw, &t, &quiet).await;
        assert_eq!(code, 502);
        signer(&gw, "rotated").await;
        let (code, order) = sync(&gw, &t, &quiet).await;
        assert_eq!(
            (code, order["status"].as_str()),
            (200, Some("paid")),
            "{order}"
        );
        gw.finish().await;
    }
}

/// The simulator holds a certificate-mode app to its numbers: a request without them, or with
/// another app certificate's, is refused before anything is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_refuses_a_certificate_mode_request_without_the_right_numbers() {
    let backend = &backends()[0];
    let t = tenant("ali_cert_sim", 82);
    let gw = Gateway::start(backend, std::slice::from_ref(&t)).await;
    let (_, created) = create_order(&gw, &t.id, 100).await;
    let os = order_string(&created);
    let mut params = parse_form(&os);
    params.insert(
        "app_cert_sn".into(),
        "0123456789abcdef0123456789abcdef".into(),
    );
    let (code, answer) = gw
        .sandbox_of(
            "alipay_app",
            "/control/cashier",
            &json!({"order_string": alipay::to_form(&params), "notify": "drop"}),
        )
        .await;
    assert_ne!(code, 200, "{answer}");
    assert!(answer.to_string().contains("app_cert_sn"), "{answer}");
    params.remove("app_cert_sn");
    let (code, answer) = gw
        .sandbox_of(
            "alipay_app",
            "/control/cashier",
            &json!({"order_string": alipay::to_form(&params), "notify": "drop"}),
        )
        .await;
    assert_ne!(code, 200, "{answer}");
    assert!(answer.to_string().contains("app_cert_sn"), "{answer}");
    gw.finish().await;
}
