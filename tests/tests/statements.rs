//! Reconciling a WeChat Pay trade bill against paybridge's books (DESIGN.md, "Statements"), on
//! SQLite and (with `DATABASE_URL`) PostgreSQL: every kind of discrepancy, the healing of a
//! payment whose notification never came, fees, totals; and a bill that disagrees with itself
//! fails the run and changes nothing.
//!
//! The bill is written here in WeChat's published layout from what the sandbox and paybridge
//! hold, with the differences injected by hand; the sandbox's own bills, downloaded, are
//! reconciled in `the_sandbox_bill_of_a_day_is_downloaded_and_reconciled`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use paybridge_core::statement::{BillError, BillLine, BillSource, BillSummary};
use paybridge_server::usecases::statements::{Bill, OpenBill, ParseBill, reconcile, run};
use paybridge_tests::wechat::{create_order, pay};
use paybridge_tests::{Gateway, TestTenant, backends, kept_bill};
use serde_json::json;

const HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
const SUMMARY: &str =
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";

fn yuan(fen: i64) -> String {
    paybridge_core::money::Fen::new(fen).to_yuan()
}

struct BillText {
    lines: Vec<String>,
    count: i64,
    gross: i64,
    refunds: i64,
    fees: i64,
}

impl BillText {
    fn new() -> Self {
        BillText {
            lines: Vec::new(),
            count: 0,
            gross: 0,
            refunds: 0,
            fees: 0,
        }
    }

    fn push(&mut self, fields: [&str; 27]) {
        self.lines.push(
            fields
                .iter()
                .map(|f| format!("`{f}"))
                .collect::<Vec<_>>()
                .join(","),
        );
        self.count += 1;
    }

    fn payment(&mut self, trade_no: &str, out_trade_no: &str, fen: i64, fee: i64) {
        let (amount, fee_text) = (yuan(fen), yuan(fee));
        self.push([
            "2026-12-05 10:00:00",
            "wx0000000000000001",
            "1900000001",
            "0",
            "",
            trade_no,
            out_trade_no,
            "openid",
            "JSAPI",
            "SUCCESS",
            "OTHERS",
            "CNY",
            &amount,
            "0.00",
            "0",
            "0",
            "0.00",
            "0.00",
            "",
            "",
            "Tea",
            "",
            &fee_text,
            "0.60%",
            &amount,
            "0.00",
            "",
        ]);
        self.gross += fen;
        self.fees += fee;
    }

    fn refund(&mut self, trade_no: &str, out_trade_no: &str, out_refund_no: &str, fen: i64) {
        let amount = yuan(fen);
        self.push([
            "2026-12-05 12:00:00",
            "wx0000000000000001",
            "1900000001",
            "0",
            "",
            trade_no,
            out_trade_no,
            "openid",
            "JSAPI",
            "REFUND",
            "OTHERS",
            "CNY",
            "0.00",
            "0.00",
            "50300000012026120500000000001",
            out_refund_no,
            &amount,
            "0.00",
            "ORIGINAL",
            "SUCCESS",
            "Tea",
            "",
            "-0.01",
            "0.60%",
            "0.00",
            &amount,
            "",
        ]);
        self.refunds += fen;
        self.fees -= 1;
    }

    fn text(&self, summary_gross: i64) -> String {
        let mut out = format!("\u{feff}{HEADER}\r\n");
        for l in &self.lines {
            out.push_str(l);
            out.push_str("\r\n");
        }
        out.push_str(SUMMARY);
        out.push_str("\r\n");
        out.push_str(&format!(
            "`{},`{},`{},`0.00,`{},`{},`{}\r\n",
            self.count,
            yuan(summary_gross),
            yuan(self.refunds),
            yuan(self.fees),
            yuan(summary_gross),
            yuan(self.refunds)
        ));
        out
    }
}

fn source(text: String) -> Arc<OpenBill> {
    let bytes = Arc::new(text.into_bytes());
    Arc::new(move || {
        let reader: Box<dyn BillSource> = Box::new(std::io::Cursor::new(bytes.as_ref().clone()));
        Ok(reader)
    })
}

fn wechat_parser() -> Arc<ParseBill> {
    Arc::new(
        |r: &mut dyn BillSource,
         each: &mut dyn FnMut(BillLine) -> Result<(), BillError>|
         -> Result<BillSummary, BillError> {
            paybridge_wechat::bill::parse_trade_bill(r, each)
        },
    )
}

fn bill_of(text: String) -> Bill {
    Bill {
        open: source(text),
        parse: wechat_parser(),
    }
}

async fn order(gw: &Gateway, t: &str, no: &str) -> serde_json::Value {
    let (status, body) = gw.get(t, &format!("/v1/orders/{no}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Count every fee written into `order_fees` from now on (a row inserted or updated, even to the
/// same value), in a table `fee_writes`; [`fee_writes`] reads the count.
async fn count_fee_writes(gw: &Gateway, backend: &paybridge_tests::Backend) {
    use sea_orm::ConnectionTrait;
    let sql: &[&str] = match backend {
        paybridge_tests::Backend::Sqlite => &[
            "CREATE TABLE fee_writes (n INTEGER NOT NULL)",
            "CREATE TRIGGER fee_inserted AFTER INSERT ON order_fees \
             BEGIN INSERT INTO fee_writes VALUES (1); END",
            "CREATE TRIGGER fee_updated AFTER UPDATE ON order_fees \
             BEGIN INSERT INTO fee_writes VALUES (1); END",
        ],
        paybridge_tests::Backend::Postgres(_) => &[
            "CREATE TABLE fee_writes (n INTEGER NOT NULL)",
            "CREATE FUNCTION count_fee_write() RETURNS trigger AS \
             $$ BEGIN INSERT INTO fee_writes VALUES (1); RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER fee_written AFTER INSERT OR UPDATE ON order_fees \
             FOR EACH ROW EXECUTE FUNCTION count_fee_write()",
        ],
    };
    for sql in sql {
        gw.state.store.db().execute_unprepared(sql).await.unwrap();
    }
}

/// The fees written since [`count_fee_writes`] (or the last call), the count then reset.
async fn fee_writes(gw: &Gateway) -> i64 {
    use sea_orm::ConnectionTrait;
    let db = gw.state.store.db();
    let n = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM fee_writes",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    db.execute_unprepared("DELETE FROM fee_writes")
        .await
        .unwrap();
    n
}

/// The fee recorded for an order (`order_fees`), as its JSON shows it.
async fn fee_of(gw: &Gateway, o: &paybridge_server::db::entities::order::Model) -> Option<i64> {
    paybridge_server::store::orders::order_fee(gw.state.store.db(), &o.id)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_is_reconciled_line_by_line_and_a_suppressed_payment_is_healed() {
    for backend in backends() {
        let name = backend.name();
        let t = TestTenant::wechat("stmt_shop", 91, "MD5");
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let tenant = gw.state.tenants.get(&t.id).unwrap();
        let provider = "wechat_miniprogram";

        // A: paid and refunded in part; B: paid (the bill says another amount); C: paid at the
        // provider, its notification dropped; D: closed here; E: paid, missing from the bill.
        let (a, _) = create_order(&gw, &t.id, 500).await;
        pay(&gw, &t, &a, "deliver").await;
        let (status, body) = gw
            .post(
                &t.id,
                &format!("/v1/orders/{a}/refunds"),
                &json!({"out_refund_no": "RA-1", "amount": 200}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = gw
            .sandbox(
                "/control/refund",
                &json!({"out_refund_no": "RA-1", "mch_id": t.mch_id, "status": "SUCCESS", "notify": "deliver"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (b, _) = create_order(&gw, &t.id, 300).await;
        pay(&gw, &t, &b, "deliver").await;
        let (c, _) = create_order(&gw, &t.id, 700).await;
        pay(&gw, &t, &c, "drop").await;
        let (d, _) = create_order(&gw, &t.id, 100).await;
        let (status, body) = gw
            .post(&t.id, &format!("/v1/orders/{d}/close"), &json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
        let (e, _) = create_order(&gw, &t.id, 900).await;
        pay(&gw, &t, &e, "deliver").await;
        assert_eq!(order(&gw, &t.id, &c).await["status"], "pending");

        let a_view = order(&gw, &t.id, &a).await;
        let trade = |v: &serde_json::Value| v["provider_trade_no"].as_str().unwrap().to_owned();
        let paid_at = paybridge_core::beijing::local(
            chrono::DateTime::parse_from_rfc3339(a_view["paid_at"].as_str().unwrap())
                .unwrap()
                .with_timezone(&chrono::Utc),
        );
        let day = paid_at.date_naive();

        let mut bill = BillText::new();
        bill.payment(&trade(&a_view), &a, 500, 3);
        bill.payment(&trade(&order(&gw, &t.id, &b).await), &b, 301, 2);
        bill.payment("4200000000000000000000000099", &c, 700, 4);
        bill.payment("4200000000000000000000000098", &d, 100, 1);
        bill.payment("4200000000000000000000000097", "FOREIGN-1", 50, 0);
        bill.refund(&trade(&a_view), &a, "RA-1", 200);
        bill.refund(&trade(&a_view), &a, "CONSOLE-9", 100);

        // A bill whose summary disagrees with its lines: failed, and nothing applied.
        let bad = bill.text(bill.gross + 1);
        let run = reconcile(&gw.state, &tenant, provider, day, Some(bill_of(bad)))
            .await
            .unwrap();
        assert_eq!(run.status, "failed", "{name}: {run:?}");
        assert!(
            run.reason.as_deref().unwrap().contains("应结订单总金额"),
            "{name}: {run:?}"
        );
        assert_eq!(order(&gw, &t.id, &c).await["status"], "pending", "{name}");
        let none = paybridge_server::store::statements::discrepancies(
            gw.state.store.db(),
            &run.id,
            run.version,
        )
        .await
        .unwrap();
        assert!(none.is_empty(), "{name}: {none:?}");

        // The same day with a bill that agrees with itself: a second run.
        let good = bill.text(bill.gross);
        let run = reconcile(&gw.state, &tenant, provider, day, Some(bill_of(good)))
            .await
            .unwrap();
        assert_eq!(
            (run.status.as_str(), run.version),
            ("reconciled", 2),
            "{name}: {run:?}"
        );
        let found = paybridge_server::store::statements::discrepancies(
            gw.state.store.db(),
            &run.id,
            run.version,
        )
        .await
        .unwrap();
        let mut kinds: Vec<(String, String, Option<String>, bool)> = found
            .iter()
            .map(|d| {
                (
                    d.kind.clone(),
                    d.out_trade_no.clone(),
                    d.out_refund_no.clone(),
                    d.healed,
                )
            })
            .collect();
        kinds.sort();
        let mut want = vec![
            ("amount_mismatch".to_owned(), b.clone(), None, false),
            ("foreign".to_owned(), "FOREIGN-1".to_owned(), None, false),
            (
                "foreign".to_owned(),
                a.clone(),
                Some("CONSOLE-9".to_owned()),
                false,
            ),
            ("paybridge_only".to_owned(), e.clone(), None, false),
            ("provider_only".to_owned(), c.clone(), None, true),
            ("status_mismatch".to_owned(), d.clone(), None, false),
        ];
        want.sort();
        assert_eq!(kinds, want, "{name}");
        // Healed: asked of the provider and applied, as a notification would have been.
        assert_eq!(order(&gw, &t.id, &c).await["status"], "paid", "{name}");
        // Totals are the bill's own; the matched lines are A's payment and its refund.
        let fees = 3 + 2 + 4 + 1 - 2;
        assert_eq!(
            (
                run.lines,
                run.matched,
                run.gross,
                run.refunds,
                run.fees,
                run.net
            ),
            (7, 2, 1651, 300, fees, 1651 - 300 - fees),
            "{name}: {run:?}"
        );
        let counts: serde_json::Value = serde_json::from_str(&run.counts).unwrap();
        assert_eq!(
            counts,
            json!({"amount_mismatch": 1, "foreign": 2, "paybridge_only": 1, "provider_only": 1, "status_mismatch": 1}),
            "{name}"
        );
        // The matched payment has its fee; the matched refund the fee returned.
        let stored = paybridge_server::store::orders::find_order(gw.state.store.db(), &t.id, &a)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(fee_of(&gw, &stored).await, Some(3), "{name}");
        let refund = gw
            .state
            .store
            .find_refund(&t.id, &a, "RA-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(refund.fee_returned, Some(1), "{name}");
        gw.finish().await;
    }
}

/// The whole way: the sandbox writes the day's bill from its own records, paybridge downloads
/// it (`/pay/downloadbill`), parses and reconciles it. A payment whose notification was dropped
/// is healed; everything else matches and gets its fee. A day without trades is an empty
/// statement; a day to come is not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_bill_of_a_day_is_downloaded_and_reconciled() {
    for backend in backends() {
        let name = backend.name();
        let t = TestTenant::wechat("stmt_e2e", 92, "HMAC-SHA256");
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let tenant = gw.state.tenants.get(&t.id).unwrap();
        let kind = "wechat_miniprogram";
        let (a, _) = create_order(&gw, &t.id, 1990).await;
        pay(&gw, &t, &a, "deliver").await;
        let (b, _) = create_order(&gw, &t.id, 500).await;
        pay(&gw, &t, &b, "drop").await;
        let (status, body) = gw
            .post(
                &t.id,
                &format!("/v1/orders/{a}/refunds"),
                &json!({"out_refund_no": "E2E-R1", "amount": 990}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = gw
            .sandbox(
                "/control/refund",
                &json!({"out_refund_no": "E2E-R1", "mch_id": t.mch_id, "status": "SUCCESS", "notify": "deliver"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let today = paybridge_core::beijing::local(chrono::Utc::now()).date_naive();

        let statement = run(&gw.state, &tenant, kind, today).await.unwrap();
        assert_eq!(statement.status, "reconciled", "{name}: {statement:?}");
        // a, b and the refund; b was pending here: healed, and its line is no match.
        assert_eq!(
            (statement.lines, statement.matched),
            (3, 2),
            "{name}: {statement:?}"
        );
        // 0.6 % fees rounded to the fen: 12 + 3 - 6 (returned on the refund).
        assert_eq!(
            (
                statement.gross,
                statement.refunds,
                statement.fees,
                statement.net
            ),
            (2490, 990, 9, 2490 - 990 - 9),
            "{name}: {statement:?}"
        );
        let found = paybridge_server::store::statements::discrepancies(
            gw.state.store.db(),
            &statement.id,
            statement.version,
        )
        .await
        .unwrap();
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        assert_eq!(
            (
                found[0].kind.as_str(),
                found[0].out_trade_no.as_str(),
                found[0].healed
            ),
            ("provider_only", b.as_str(), true),
            "{name}"
        );
        let healed = order(&gw, &t.id, &b).await;
        assert_eq!(
            (&healed["status"], &healed["fee"]),
            (&json!("paid"), &json!(3)),
            "{name}"
        );
        let stored = paybridge_server::store::orders::find_order(gw.state.store.db(), &t.id, &a)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(fee_of(&gw, &stored).await, Some(12), "{name}");

        // The merchant hears of it, and the metrics count it.
        let events = gw.state.store.outbox(&t.id).await.unwrap();
        let reconciled: Vec<_> = events
            .iter()
            .filter(|e| e.event_type == "statement.reconciled")
            .collect();
        assert_eq!(reconciled.len(), 1, "{name}");
        let data: serde_json::Value = serde_json::from_str(&reconciled[0].data).unwrap();
        assert_eq!(
            (
                &data["date"],
                &data["totals"]["net"],
                &data["discrepancies"]["provider_only"]
            ),
            (&json!(today.to_string()), &json!(2490 - 990 - 9), &json!(1)),
            "{name}: {data}"
        );
        let metrics = gw.state.metrics.render();
        assert!(
            metrics.contains(
                "paybridge_statements_total{provider=\"wechat_miniprogram\",status=\"reconciled\"} 1"
            ) && metrics.contains(
                "paybridge_statement_lines_total{provider=\"wechat_miniprogram\",result=\"matched\"} 2"
            ),
            "{name}: {metrics}"
        );
        let view = order(&gw, &t.id, &a).await;
        assert_eq!(view["fee"], 12, "{name}: {view}");

        // The raw bill is kept, compressed, with the hash of the file as downloaded.
        let (kept, raw) = kept_bill(&gw, &statement.id, statement.version).await;
        use sha2::Digest;
        assert_eq!(
            kept.sha256,
            hex::encode(sha2::Sha256::digest(&raw)),
            "{name}"
        );
        assert_eq!(kept.size, i64::try_from(raw.len()).unwrap(), "{name}");
        let reparsed =
            paybridge_wechat::bill::parse_trade_bill(raw.as_slice(), |_| Ok(())).unwrap();
        assert_eq!(reparsed.gross_fen, statement.gross, "{name}");

        // Run again: a new version, now without a discrepancy (b is paid).
        let again = run(&gw.state, &tenant, kind, today).await.unwrap();
        assert_eq!(
            (again.status.as_str(), again.version, again.matched),
            ("reconciled", 2, 3),
            "{name}: {again:?}"
        );

        // The first run's bill is kept beside the second's.
        for version in [1, 2] {
            assert!(
                paybridge_server::store::statements::file(gw.state.store.db(), &again.id, version)
                    .await
                    .unwrap()
                    .is_some(),
                "{name}: version {version}"
            );
        }

        // A third run finds every fee recorded as its bill gives it, and writes none again; a
        // fee changed since is written back, alone.
        count_fee_writes(&gw, &backend).await;
        let third = run(&gw.state, &tenant, kind, today).await.unwrap();
        assert_eq!(
            (third.status.as_str(), third.version, third.matched),
            ("reconciled", 3, 3),
            "{name}: {third:?}"
        );
        assert_eq!(fee_writes(&gw).await, 0, "{name}: the third run");
        {
            use sea_orm::ConnectionTrait;
            gw.state
                .store
                .db()
                .execute_unprepared(&format!(
                    "UPDATE order_fees SET fee = 99 WHERE order_id IN \
                     (SELECT id FROM orders WHERE out_trade_no = '{a}')"
                ))
                .await
                .unwrap();
        }
        assert_eq!(fee_writes(&gw).await, 1, "{name}: the fee changed by hand");
        let fourth = run(&gw.state, &tenant, kind, today).await.unwrap();
        assert_eq!(fourth.status, "reconciled", "{name}: {fourth:?}");
        assert_eq!(fee_writes(&gw).await, 1, "{name}: the fourth run");
        assert_eq!(order(&gw, &t.id, &a).await["fee"], 12, "{name}");

        // A day without trades: an empty statement, not a failure.
        let before = today - chrono::Duration::days(3);
        let empty = run(&gw.state, &tenant, kind, before).await.unwrap();
        assert_eq!(
            (empty.status.as_str(), empty.lines),
            ("reconciled", 0),
            "{name}: {empty:?}"
        );
        // Tomorrow's bill is not made yet.
        let later = run(&gw.state, &tenant, kind, today + chrono::Duration::days(1))
            .await
            .unwrap();
        assert_eq!(later.status, "not_ready", "{name}: {later:?}");
        gw.finish().await;
    }
}

/// The admin API of statements: a run answered `202 running` and carried on in the background,
/// the list, one statement with its discrepancies and runs, the CSV, a read-only token refused,
/// a day to come refused, and the run audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_are_run_and_read_through_the_admin_api() {
    const ADMIN: &str = "stmt-admin";
    const READER: &str = "stmt-reader";
    for backend in backends() {
        let name = backend.name();
        let t = TestTenant::wechat("stmt_api", 93, "MD5");
        let gw = Gateway::start_with(&backend, std::slice::from_ref(&t), |c| {
            c.admin.tokens = vec![paybridge_core::tenant::hash_api_key(ADMIN)];
            c.admin.read_only_tokens = vec![paybridge_core::tenant::hash_api_key(READER)];
        })
        .await;
        let (a, _) = create_order(&gw, &t.id, 100).await;
        pay(&gw, &t, &a, "drop").await;
        let today = paybridge_core::beijing::local(chrono::Utc::now()).date_naive();
        let call = |method: reqwest::Method, path: String, token: &'static str| {
            let req = gw
                .http
                .request(method, format!("{}/admin/api{path}", gw.base))
                .bearer_auth(token);
            async move {
                let res = req.send().await.unwrap();
                let status = res.status().as_u16();
                (status, res.text().await.unwrap())
            }
        };
        let base = format!("/statements/{}/wechat_miniprogram/{today}", t.id);
        let (status, body) = call(reqwest::Method::POST, format!("{base}/run"), READER).await;
        assert_eq!(status, 403, "{name}: {body}");
        let tomorrow = today + chrono::Duration::days(1);
        let (status, body) = call(
            reqwest::Method::POST,
            format!("/statements/{}/wechat_miniprogram/{tomorrow}/run", t.id),
            ADMIN,
        )
        .await;
        assert_eq!(status, 422, "{name}: {body}");
        let (status, body) = call(reqwest::Method::POST, format!("{base}/run"), ADMIN).await;
        assert_eq!(status, 202, "{name}: {body}");
        let started: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(started["statement"]["status"], "running", "{name}: {body}");
        // Carried on in the background: bounded wait for its end.
        let mut statement = serde_json::Value::Null;
        for _ in 0..100 {
            let (status, body) = call(reqwest::Method::GET, base.clone(), READER).await;
            assert_eq!(status, 200, "{name}: {body}");
            statement = serde_json::from_str(&body).unwrap();
            if statement["status"] != "running" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(statement["status"], "reconciled", "{name}: {statement}");
        assert_eq!(statement["totals"]["lines"], 1, "{name}: {statement}");
        assert_eq!(statement["discrepancies"][0]["kind"], "provider_only");
        assert_eq!(statement["discrepancies"][0]["healed"], true);
        assert_eq!(statement["discrepancy_counts"]["provider_only"], 1);
        assert_eq!(statement["runs"].as_array().unwrap().len(), 1);
        let (status, list) = call(
            reqwest::Method::GET,
            format!("/statements?tenant={}&from={today}&to={today}", t.id),
            READER,
        )
        .await;
        assert_eq!(status, 200, "{name}: {list}");
        let list: serde_json::Value = serde_json::from_str(&list).unwrap();
        assert_eq!(list["statements"][0]["date"], today.to_string(), "{name}");
        assert_eq!(list["statements"][0]["discrepancies"]["provider_only"], 1);
        let (status, csv) = call(
            reqwest::Method::GET,
            format!("{base}/discrepancies.csv"),
            READER,
        )
        .await;
        assert_eq!(status, 200, "{name}: {csv}");
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(
            rows[0],
            "kind,out_trade_no,out_refund_no,provider_trade_no,healed,bill_amount,paybridge_amount,bill_status,paybridge_status"
        );
        assert!(
            rows[1].starts_with(&format!("provider_only,{a},,"))
                && rows[1].contains(",true,100,100,SUCCESS,pending"),
            "{name}: {csv}"
        );
        let audit = gw.state.tenant_store.audit(Some(&t.id), 10).await.unwrap();
        assert!(
            audit.iter().any(|e| e.action == "run_statement"),
            "{name}: {audit:?}"
        );
        gw.finish().await;
    }
}

/// The worker: the days within the look-back that have no statement are reconciled, each once
/// even with two instances at it together; a second pass finds nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_reconciles_each_missing_day_once_across_two_instances() {
    for backend in backends() {
        let name = backend.name();
        let t = TestTenant::wechat("stmt_worker", 94, "MD5");
        let tweak = |c: &mut paybridge_server::config::Config| {
            c.statements.lookback_days = 3;
            c.statements.ready_after = chrono::NaiveTime::from_hms_opt(0, 0, 0).unwrap();
        };
        let gw = Gateway::start_with(&backend, std::slice::from_ref(&t), tweak).await;
        let other = gw.second_instance(std::slice::from_ref(&t), tweak).await;
        let now = chrono::Utc::now();
        let (a, b) = tokio::join!(
            paybridge_server::statements::run_once(&gw.state, now),
            paybridge_server::statements::run_once(&other.state, now),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let listed = paybridge_server::store::statements::list(
            gw.state.store.db(),
            &paybridge_server::store::statements::StatementFilter::default(),
            100,
        )
        .await
        .unwrap();
        let days: Vec<(String, String, i64, String)> = listed
            .iter()
            .map(|s| {
                (
                    s.provider.clone(),
                    s.day.clone(),
                    s.version,
                    s.status.clone(),
                )
            })
            .collect();
        // Three days of each provider with bills (WeChat Pay and Alipay), each once.
        assert_eq!(days.len(), 6, "{name}: {days:?} {a:?} {b:?}");
        let beijing = paybridge_core::beijing::local(now);
        let yesterday = (beijing.date_naive() - chrono::Duration::days(1)).to_string();
        assert!(
            days.iter().all(|(kind, day, v, s)| *v == 1
                && (s == "reconciled"
                    // Alipay's "no bill" before noon of the next day: not made yet.
                    || (kind == "alipay_app"
                        && *day == yesterday
                        && s == "not_ready"
                        && beijing.time() < chrono::NaiveTime::from_hms_opt(12, 0, 0).unwrap()))),
            "{name}: each day once: {days:?}"
        );
        assert_eq!(a.runs + b.runs, 6, "{name}: {a:?} {b:?}");
        let again = paybridge_server::statements::run_once(&gw.state, now)
            .await
            .unwrap();
        assert_eq!(again.runs, 0, "{name}: {again:?}");
        other.finish().await;
        gw.finish().await;
    }
}

/// Each difference the sandbox can inject, classified: a payment left out of the bill, another
/// amount, a refund made in the merchant's console, a payment whose notification was dropped
/// (healed). The totals are the bill's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_injected_difference_is_classified() {
    for backend in backends() {
        let name = backend.name();
        let t = TestTenant::wechat("stmt_diff", 95, "MD5");
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let tenant = gw.state.tenants.get(&t.id).unwrap();
        let mut numbers = Vec::new();
        for (amount, notify) in [
            (1000, "deliver"),
            (2000, "deliver"),
            (3000, "deliver"),
            (4000, "drop"),
        ] {
            let (no, _) = create_order(&gw, &t.id, amount).await;
            pay(&gw, &t, &no, notify).await;
            numbers.push(no);
        }
        let [a, b, c, d] = [&numbers[0], &numbers[1], &numbers[2], &numbers[3]];
        let (status, body) = gw
            .sandbox(
                "/control/bill",
                &json!({
                    "mch_id": t.mch_id,
                    "drop": [b],
                    "amounts": {c: 3001},
                    "foreign_refunds": [{"out_trade_no": a, "out_refund_no": "CONSOLE-1", "amount": 500}],
                }),
            )
            .await;
        assert_eq!(status, 200, "{name}: {body}");
        let today = paybridge_core::beijing::local(chrono::Utc::now()).date_naive();
        let s = run(&gw.state, &tenant, "wechat_miniprogram", today)
            .await
            .unwrap();
        assert_eq!(s.status, "reconciled", "{name}: {s:?}");
        let counts: serde_json::Value = serde_json::from_str(&s.counts).unwrap();
        assert_eq!(
            counts,
            json!({"amount_mismatch": 1, "foreign": 1, "paybridge_only": 1, "provider_only": 1}),
            "{name}"
        );
        let found = paybridge_server::store::statements::discrepancies(
            gw.state.store.db(),
            &s.id,
            s.version,
        )
        .await
        .unwrap();
        let of = |kind: &str| found.iter().find(|f| f.kind == kind).unwrap();
        assert_eq!(of("paybridge_only").out_trade_no, *b);
        assert_eq!(of("amount_mismatch").out_trade_no, *c);
        assert_eq!(of("foreign").out_refund_no.as_deref(), Some("CONSOLE-1"));
        assert_eq!(
            (
                of("provider_only").out_trade_no.as_str(),
                of("provider_only").healed
            ),
            (d.as_str(), true)
        );
        // a, c and d paid in the bill (b left out), the console refund: 1000 + 3001 + 4000.
        assert_eq!(
            (s.lines, s.matched, s.gross, s.refunds),
            (4, 1, 8001, 500),
            "{name}: {s:?}"
        );
        gw.finish().await;
    }
}

/// A run holds the day's paid orders in a table of UUIDs; an order it cannot hold (an id that
/// is no UUID, as an import from an older system may have), and every order of the day after
/// it, is checked the full way. Both ways give the same answer: matched lines get their fees,
/// and the orders the bill lacks are `paybridge_only`, held or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_the_day_table_cannot_hold_are_checked_the_full_way() {
    use paybridge_server::db::entities::order;
    use sea_orm::{ActiveValue::Set, EntityTrait};
    for backend in backends() {
        let name = backend.name();
        let t = TestTenant::wechat("stmt_legacy", 92, "MD5");
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let tenant = gw.state.tenants.get(&t.id).unwrap();
        let day = paybridge_core::beijing::local(chrono::Utc::now()).date_naive()
            - chrono::Duration::days(1);
        let (start, _) = paybridge_core::beijing::day_range(day).unwrap();
        // In the order of the day's walk: U0 and U1 are held; L1 is not, so neither are U2
        // and L2 after it, which are checked the full way.
        let ids = [
            ("U0", uuid::Uuid::now_v7().to_string()),
            ("U1", uuid::Uuid::now_v7().to_string()),
            ("L1", "legacy-000001".to_owned()),
            ("U2", uuid::Uuid::now_v7().to_string()),
            ("L2", "legacy-000002".to_owned()),
        ];
        let rows: Vec<order::ActiveModel> = ids
            .iter()
            .enumerate()
            .map(|(i, (no, id))| {
                let paid_at = start + chrono::Duration::hours(1 + i64::try_from(i).unwrap());
                order::ActiveModel {
                    id: Set(id.clone()),
                    tenant_id: Set(t.id.clone()),
                    out_trade_no: Set(format!("LEG-{no}")),
                    provider: Set("wechat_miniprogram".to_owned()),
                    amount: Set(100 + i64::try_from(i).unwrap()),
                    currency: Set("CNY".to_owned()),
                    description: Set("Tea".to_owned()),
                    payer_openid: Set(Some("openid".to_owned())),
                    client_ip: Set(None),
                    attach: Set(None),
                    expires_at: Set(paid_at + chrono::Duration::hours(2)),
                    status: Set("paid".to_owned()),
                    flags: Set("[]".to_owned()),
                    provider_trade_no: Set(Some(format!("42000000000000000000000000{i:02}"))),
                    refunded_amount: Set(0),
                    paid_at: Set(Some(paid_at)),
                    client_payment: Set(None),
                    provider_data: Set("{}".to_owned()),
                    last_notified_at: Set(Some(paid_at)),
                    created_at: Set(paid_at - chrono::Duration::minutes(1)),
                    next_check_at: Set(None),
                    updated_at: Set(paid_at),
                }
            })
            .collect();
        order::Entity::insert_many(rows.clone())
            .exec_without_returning(gw.state.store.db())
            .await
            .unwrap();
        // U0 has a fee from an earlier run; it is not in this bill, and keeps it.
        let fees: Vec<Option<i64>> = (0..rows.len()).map(|i| (i == 0).then_some(9)).collect();
        paybridge_server::db::entities::order_fee::Entity::insert(
            paybridge_server::db::entities::order_fee::ActiveModel {
                order_id: rows[0].id.clone(),
                fee: Set(9),
            },
        )
        .exec_without_returning(gw.state.store.db())
        .await
        .unwrap();
        // The day's walk reads them back as written, in its order: a page through sea-orm, and
        // the run's own walk (on SQLite, each row looked at where it is read).
        let walked = paybridge_server::store::statements::paid_between(
            gw.state.store.reader(),
            &t.id,
            "wechat_miniprogram",
            paybridge_core::beijing::day_range(day).unwrap(),
            None,
            100,
        )
        .await
        .unwrap();
        let read: Vec<_> = walked
            .iter()
            .map(|o| {
                (
                    o.id.clone(),
                    o.out_trade_no.clone(),
                    o.provider.clone(),
                    o.status.clone(),
                    o.amount,
                    o.provider_trade_no.clone(),
                    o.paid_at,
                    o.fee,
                )
            })
            .collect();
        let written: Vec<_> = rows
            .into_iter()
            .zip(fees)
            .map(|(r, fee)| {
                (
                    r.id.unwrap(),
                    r.out_trade_no.unwrap(),
                    r.provider.unwrap(),
                    r.status.unwrap(),
                    r.amount.unwrap(),
                    r.provider_trade_no.unwrap(),
                    r.paid_at.unwrap(),
                    fee,
                )
            })
            .collect();
        assert_eq!(read, written, "{name}");
        let mut looked = Vec::new();
        let page = paybridge_server::store::statements::each_paid_between(
            &gw.state.store,
            &t.id,
            "wechat_miniprogram",
            paybridge_core::beijing::day_range(day).unwrap(),
            None,
            100,
            &mut |o| {
                looked.push((
                    o.id.to_owned(),
                    o.out_trade_no.to_owned(),
                    o.status.to_owned(),
                    o.amount,
                    o.provider_trade_no.map(str::to_owned),
                ));
                true
            },
        )
        .await
        .unwrap();
        let wanted: Vec<_> = written
            .iter()
            .map(|(id, no, _, status, amount, trade, _, _)| {
                (
                    id.clone(),
                    no.clone(),
                    status.clone(),
                    *amount,
                    trade.clone(),
                )
            })
            .collect();
        assert_eq!(looked, wanted, "{name}");
        // The fees recorded for them, read apart by their ids' range: U0's only.
        let mut ids: Vec<&String> = written.iter().map(|w| &w.0).collect();
        ids.sort();
        let mut recorded = Vec::new();
        let (read, _) = paybridge_server::store::statements::each_fee_between(
            &gw.state.store,
            (ids[0], ids[ids.len() - 1]),
            None,
            100,
            &mut |id, fee| recorded.push((id.to_owned(), fee)),
        )
        .await
        .unwrap();
        let wanted_fees: Vec<_> = written
            .iter()
            .filter_map(|w| w.7.map(|fee| (w.0.clone(), fee)))
            .collect();
        assert_eq!((read, recorded), (1, wanted_fees), "{name}");
        let last = written.last().unwrap();
        assert_eq!(
            (page.read, page.refused, page.last_taken),
            (5, false, Some((last.6.unwrap(), last.0.clone()))),
            "{name}"
        );
        // L1, the first order not held, is not in the bill: the rest of the day is walked from it,
        // not after it.
        let mut bill = BillText::new();
        bill.payment("4200000000000000000000000001", "LEG-U1", 101, 5);
        bill.payment("4200000000000000000000000003", "LEG-U2", 103, 7);
        bill.payment("4200000000000000000000000004", "LEG-L2", 104, 8);
        let run = reconcile(
            &gw.state,
            &tenant,
            "wechat_miniprogram",
            day,
            Some(bill_of(bill.text(bill.gross))),
        )
        .await
        .unwrap();
        assert_eq!(run.status, "reconciled", "{name}: {run:?}");
        assert_eq!((run.lines, run.matched), (3, 3), "{name}: {run:?}");
        let found = paybridge_server::store::statements::discrepancies(
            gw.state.store.db(),
            &run.id,
            run.version,
        )
        .await
        .unwrap();
        let mut missing: Vec<(String, String)> = found
            .iter()
            .map(|d| (d.kind.clone(), d.out_trade_no.clone()))
            .collect();
        missing.sort();
        let want: Vec<(String, String)> = ["LEG-L1", "LEG-U0"]
            .iter()
            .map(|no| ("paybridge_only".to_owned(), (*no).to_owned()))
            .collect();
        assert_eq!(missing, want, "{name}");
        for (no, fee) in [
            ("LEG-U1", Some(5)),
            ("LEG-U2", Some(7)),
            ("LEG-L2", Some(8)),
            ("LEG-U0", Some(9)),
            ("LEG-L1", None),
        ] {
            let stored =
                paybridge_server::store::orders::find_order(gw.state.store.db(), &t.id, no)
                    .await
                    .unwrap()
                    .unwrap();
            assert_eq!(fee_of(&gw, &stored).await, fee, "{name} {no}");
        }
        gw.finish().await;
    }
}

/// A run writes the differences it finds as it reads the bill, a batch at a time, and keeps
/// heals and fees for after its end. When the bill turns out not to agree with itself at its end,
/// the run keeps none of the differences, heals nothing and records no fee.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bill_found_wrong_at_its_end_keeps_none_of_what_was_read_before() {
    for backend in backends() {
        let name = backend.name();
        let t = TestTenant::wechat("stmt_late_bad", 93, "MD5");
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let tenant = gw.state.tenants.get(&t.id).unwrap();
        // Q paid; P paid at the provider, its notification dropped.
        let (q, _) = create_order(&gw, &t.id, 400).await;
        pay(&gw, &t, &q, "deliver").await;
        let (p, _) = create_order(&gw, &t.id, 600).await;
        pay(&gw, &t, &p, "drop").await;
        let q_view = order(&gw, &t.id, &q).await;
        let day = paybridge_core::beijing::local(
            chrono::DateTime::parse_from_rfc3339(q_view["paid_at"].as_str().unwrap())
                .unwrap()
                .with_timezone(&chrono::Utc),
        )
        .date_naive();
        // Q and P first, then more foreign lines than a batch: the first batches are decided
        // before the summary is read.
        let mut bill = BillText::new();
        bill.payment(q_view["provider_trade_no"].as_str().unwrap(), &q, 400, 2);
        bill.payment("4200000000000000000000000096", &p, 600, 4);
        for i in 0..2_500 {
            bill.payment(
                &format!("4200000000000000000000{i:06}"),
                &format!("FOREIGN-{i}"),
                100,
                1,
            );
        }
        let run = reconcile(
            &gw.state,
            &tenant,
            "wechat_miniprogram",
            day,
            Some(bill_of(bill.text(bill.gross + 1))),
        )
        .await
        .unwrap();
        assert_eq!(run.status, "failed", "{name}: {run:?}");
        let kept = paybridge_server::store::statements::discrepancies(
            gw.state.store.db(),
            &run.id,
            run.version,
        )
        .await
        .unwrap();
        assert!(kept.is_empty(), "{name}: {} kept", kept.len());
        assert_eq!(order(&gw, &t.id, &p).await["status"], "pending", "{name}");
        assert!(order(&gw, &t.id, &q).await["fee"].is_null(), "{name}");
        // The same lines with a summary that agrees.
        let run = reconcile(
            &gw.state,
            &tenant,
            "wechat_miniprogram",
            day,
            Some(bill_of(bill.text(bill.gross))),
        )
        .await
        .unwrap();
        assert_eq!(
            (run.status.as_str(), run.lines, run.matched),
            ("reconciled", 2_502, 1),
            "{name}: {run:?}"
        );
        assert_eq!(order(&gw, &t.id, &p).await["status"], "paid", "{name}");
        assert_eq!(order(&gw, &t.id, &q).await["fee"], 2, "{name}");
        gw.finish().await;
    }
}

/// One run at a time per instance holds its day in memory: a run asked for while another holds
/// the turn stays `running`, without its day read or its bill matched, until the turn is free;
/// then it reconciles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_runs_of_one_instance_take_turns() {
    for backend in backends() {
        let name = backend.name();
        let t = TestTenant::wechat("stmt_turns", 95, "MD5");
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let tenant = gw.state.tenants.get(&t.id).unwrap();
        let (a, _) = create_order(&gw, &t.id, 100).await;
        pay(&gw, &t, &a, "deliver").await;
        let today = paybridge_core::beijing::local(chrono::Utc::now()).date_naive();
        let kind = "wechat_miniprogram";

        // Another run holds the turn.
        let held = gw.state.statement_runs.acquire().await.unwrap();
        let waiting = {
            let (state, tenant) = (gw.state.clone(), tenant.clone());
            tokio::spawn(async move { run(&state, &tenant, kind, today).await })
        };
        // Bounded: it stays running for as long as the turn is held.
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert!(!waiting.is_finished(), "{name}: ran without its turn");
        let rows = paybridge_server::store::statements::list(
            gw.state.store.db(),
            &paybridge_server::store::statements::StatementFilter {
                tenant_id: Some(t.id.clone()),
                ..Default::default()
            },
            10,
        )
        .await
        .unwrap();
        assert_eq!(rows.len(), 1, "{name}: {rows:?}");
        assert_eq!(
            (rows[0].status.as_str(), rows[0].lines),
            ("running", 0),
            "{name}"
        );
        drop(held);
        let done = tokio::time::timeout(std::time::Duration::from_secs(20), waiting)
            .await
            .expect("the run ends once it has the turn")
            .unwrap()
            .unwrap();
        assert_eq!(
            (done.status.as_str(), done.lines, done.matched),
            ("reconciled", 1, 1),
            "{name}: {done:?}"
        );
        gw.finish().await;
    }
}
