//! Statements of each provider's bill format, downloaded from the sandbox and reconciled, on
//! SQLite and (with `DATABASE_URL`) PostgreSQL: Alipay's GBK zip (each injected difference, the
//! healing of a payment whose notification was dropped, the totals of the bill's own summary),
//! WeChat Pay API v3's gzipped bill behind a hash, and each kind of bill that cannot be trusted
//! (a bad hash, a truncated file, a summary that disagrees, the wrong encoding): `failed` with
//! a clear reason, and nothing changed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paybridge_server::usecases::statements::run;
use paybridge_tests::{Gateway, TestTenant, alipay, backends, kept_bill, wechat, wechat_v3};
use serde_json::json;

fn today() -> chrono::NaiveDate {
    paybridge_core::beijing::local(chrono::Utc::now()).date_naive()
}

async fn order(gw: &Gateway, t: &str, no: &str) -> serde_json::Value {
    let (status, body) = gw.get(t, &format!("/v1/orders/{no}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// An Alipay order of `t`, paid at the cashier; `notify` is `deliver` or `drop`.
async fn alipay_paid(gw: &Gateway, t: &str, amount: i64, notify: &str) -> String {
    let (no, created) = alipay::create_order(gw, t, amount).await;
    alipay::cashier(gw, &alipay::order_string(&created), notify).await;
    no
}

fn counts(s: &paybridge_server::db::entities::statement::Model) -> serde_json::Value {
    serde_json::from_str(&s.counts).unwrap()
}

async fn discrepancies(
    gw: &Gateway,
    s: &paybridge_server::db::entities::statement::Model,
) -> Vec<paybridge_server::db::entities::statement_discrepancy::Model> {
    paybridge_server::store::statements::discrepancies(gw.state.store.db(), &s.id, s.version)
        .await
        .unwrap()
}

/// Alipay's bill, downloaded through `alipay.data.dataservice.bill.downloadurl.query` and its
/// link, parsed from the GBK zip: each injected difference classified, the payment whose
/// notification was dropped healed, fees recorded, totals as the bill's summary states them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alipay_day_is_reconciled_from_its_gbk_zip() {
    for backend in backends() {
        let name = backend.name();
        let t = TestTenant::wechat("stmt_ali", 71, "MD5");
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let tenant = gw.state.tenants.get(&t.id).unwrap();
        let a = alipay_paid(&gw, &t.id, 1000, "deliver").await;
        let b = alipay_paid(&gw, &t.id, 2000, "deliver").await;
        let c = alipay_paid(&gw, &t.id, 3000, "deliver").await;
        let d = alipay_paid(&gw, &t.id, 4000, "drop").await;
        assert_eq!(order(&gw, &t.id, &d).await["status"], "pending", "{name}");
        let (status, body) = gw
            .post(
                &t.id,
                &format!("/v1/orders/{a}/refunds"),
                &json!({"out_refund_no": "ALI-R1", "amount": 400}),
            )
            .await;
        assert_eq!(
            (status, &body["status"]),
            (201, &json!("succeeded")),
            "{name}: {body}"
        );
        let (status, body) = gw
            .sandbox_of(
                "alipay_app",
                "/control/bill",
                &json!({
                    "app_id": t.alipay_app_id(),
                    "drop": [b],
                    "amounts": {&c: 3001},
                    "foreign_refunds": [{"out_trade_no": a, "out_request_no": "CONSOLE-9", "amount": 100}],
                }),
            )
            .await;
        assert_eq!(status, 200, "{name}: {body}");

        let s = run(&gw.state, &tenant, "alipay_app", today())
            .await
            .unwrap();
        assert_eq!(s.status, "reconciled", "{name}: {s:?}");
        assert_eq!(
            counts(&s),
            json!({"amount_mismatch": 1, "foreign": 1, "paybridge_only": 1, "provider_only": 1}),
            "{name}"
        );
        let found = discrepancies(&gw, &s).await;
        let of = |kind: &str| found.iter().find(|f| f.kind == kind).unwrap();
        assert_eq!(of("paybridge_only").out_trade_no, b, "{name}");
        assert_eq!(of("amount_mismatch").out_trade_no, c, "{name}");
        assert_eq!(of("foreign").out_refund_no.as_deref(), Some("CONSOLE-9"));
        assert_eq!(
            (
                of("provider_only").out_trade_no.as_str(),
                of("provider_only").healed
            ),
            (d.as_str(), true),
            "{name}"
        );
        // Healed by asking Alipay, not from the bill: paid, with its fee (0.6 % of 40.00).
        let healed = order(&gw, &t.id, &d).await;
        assert_eq!(
            (&healed["status"], &healed["fee"]),
            (&json!("paid"), &json!(24)),
            "{name}"
        );
        // a, c (at 30.01) and d paid; a's refund and the console's: the bill's own totals.
        let gross = 1000 + 3001 + 4000;
        let fees = 6 + 18 + 24 - 2 - 1;
        assert_eq!(
            (s.lines, s.matched, s.gross, s.refunds, s.fees, s.net),
            (5, 2, gross, 500, fees, gross - 500 - fees),
            "{name}: {s:?}"
        );
        let view = order(&gw, &t.id, &a).await;
        assert_eq!(view["fee"], 6, "{name}: {view}");
        let (_, refund) = gw
            .get(&t.id, &format!("/v1/orders/{a}/refunds/ALI-R1"))
            .await;
        assert_eq!(refund["fee_returned"], 2, "{name}: {refund}");

        // The raw zip is kept as downloaded.
        let (_, raw) = kept_bill(&gw, &s.id, s.version).await;
        assert!(raw.starts_with(b"PK\x03\x04"), "{name}");

        // A day without trades, long enough ago: empty; today for another tenant: no bill yet.
        let empty = run(
            &gw.state,
            &tenant,
            "alipay_app",
            today() - chrono::Duration::days(3),
        )
        .await
        .unwrap();
        assert_eq!(
            (empty.status.as_str(), empty.lines),
            ("reconciled", 0),
            "{name}: {empty:?}"
        );
        gw.finish().await;
    }
}

/// A tenant on WeChat Pay API v3 fetches its bill with v3: the gzipped file behind
/// `download_url`, trusted once the SHA-1 of its text equals `hash_value`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wechat_v3_day_is_reconciled_from_its_gzipped_bill() {
    for backend in backends() {
        let name = backend.name();
        let t = wechat_v3::tenant("stmt_v3", 72, &wechat_v3::public_key_settings("1900000172"));
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let tenant = gw.state.tenants.get(&t.id).unwrap();
        let (a, _) = wechat::create_order(&gw, &t.id, 1990).await;
        wechat::pay(&gw, &t, &a, "deliver").await;
        let (b, _) = wechat::create_order(&gw, &t.id, 500).await;
        wechat::pay(&gw, &t, &b, "drop").await;
        assert_eq!(order(&gw, &t.id, &a).await["status"], "paid", "{name}");

        let s = run(&gw.state, &tenant, "wechat_miniprogram", today())
            .await
            .unwrap();
        assert_eq!(s.status, "reconciled", "{name}: {s:?}");
        assert_eq!(
            (s.lines, s.matched, s.gross, s.fees),
            (2, 1, 2490, 15),
            "{name}: {s:?}"
        );
        assert_eq!(counts(&s), json!({"provider_only": 1}), "{name}");
        assert_eq!(order(&gw, &t.id, &b).await["status"], "paid", "{name}");
        // Kept as WeChat Pay served it: gzip.
        let (_, raw) = kept_bill(&gw, &s.id, s.version).await;
        assert!(raw.starts_with(&[0x1f, 0x8b]), "{name}");
        gw.finish().await;
    }
}

/// What a run must not have touched.
async fn untouched(gw: &Gateway, t: &str, pending: &str, paid: &str, name: &str) {
    let p = order(gw, t, pending).await;
    assert_eq!(
        p["status"], "pending",
        "{name}: healed from an untrusted bill"
    );
    let q = order(gw, t, paid).await;
    assert!(
        q["fee"].is_null(),
        "{name}: a fee from an untrusted bill: {q}"
    );
}

/// Each bill that cannot be trusted fails its run with a reason that names what is wrong, and
/// changes nothing: no discrepancy, no fee, no healing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bill_that_cannot_be_trusted_fails_and_changes_nothing() {
    for backend in backends() {
        let name = backend.name();
        let v2 = TestTenant::wechat("stmt_bad2", 73, "MD5");
        let v3 = wechat_v3::tenant(
            "stmt_bad3",
            74,
            &wechat_v3::public_key_settings("1900000174"),
        );
        let ali = TestTenant::wechat("stmt_bada", 75, "MD5");
        let gw = Gateway::start(&backend, &[v2.clone(), v3.clone(), ali.clone()]).await;
        let mut orders = Vec::new();
        for t in [&v2, &v3] {
            let (paid, _) = wechat::create_order(&gw, &t.id, 1000).await;
            wechat::pay(&gw, t, &paid, "deliver").await;
            let (pending, _) = wechat::create_order(&gw, &t.id, 500).await;
            wechat::pay(&gw, t, &pending, "drop").await;
            orders.push((paid, pending));
        }
        let paid = alipay_paid(&gw, &ali.id, 1000, "deliver").await;
        let pending = alipay_paid(&gw, &ali.id, 500, "drop").await;
        orders.push((paid, pending));
        let cases = [
            (
                &v2,
                "wechat_miniprogram",
                "summary",
                "应结订单总金额 is 1501 in its summary, 1500 in its lines",
            ),
            (&v2, "wechat_miniprogram", "truncate", "truncated"),
            (&v2, "wechat_miniprogram", "encoding", "not valid UTF-8"),
            (&v3, "wechat_miniprogram", "hash", "SHA1"),
            (&v3, "wechat_miniprogram", "truncate", "truncated"),
            (
                &ali,
                "alipay_app",
                "summary",
                "商家实收（元） is 1501 in its summary, 1500 in its lines",
            ),
            (&ali, "alipay_app", "truncate", "truncated"),
            (&ali, "alipay_app", "encoding", "not valid GBK"),
        ];
        for (t, kind, corrupt, reason) in cases {
            let (who, control) = if kind == "alipay_app" {
                (
                    json!({"app_id": t.alipay_app_id(), "corrupt": corrupt}),
                    kind,
                )
            } else {
                (json!({"mch_id": t.mch_id, "corrupt": corrupt}), kind)
            };
            let (status, body) = gw.sandbox_of(control, "/control/bill", &who).await;
            assert_eq!(status, 200, "{name}: {body}");
            let tenant = gw.state.tenants.get(&t.id).unwrap();
            let s = run(&gw.state, &tenant, kind, today()).await.unwrap();
            let why = s.reason.clone().unwrap_or_default();
            assert_eq!(s.status, "failed", "{name} {kind} {corrupt}: {s:?}");
            assert!(why.contains(reason), "{name} {kind} {corrupt}: {why}");
            assert!(
                discrepancies(&gw, &s).await.is_empty(),
                "{name} {kind} {corrupt}"
            );
            assert_eq!((s.lines, s.matched, s.gross), (0, 0, 0), "{name} {corrupt}");
        }
        for ((paid, pending), t) in orders.iter().zip([&v2, &v3, &ali]) {
            untouched(&gw, &t.id, pending, paid, name).await;
        }
        gw.finish().await;
    }
}
