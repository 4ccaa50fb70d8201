//! `alipay.trade.refund` and `alipay.trade.fastpay.refund.query`.

use serde_json::json;

use super::*;

/// A paid trade of 10.00 whose notifications go to `notify_url`.
async fn paid(sim: &AlipaySimulator, out_trade_no: &str, notify_url: &str) {
    cashier(
        sim,
        &order_string(out_trade_no, "10.00", notify_url),
        json!({ "notify": "drop" }),
    )
    .await;
}

async fn refund(sim: &AlipaySimulator, out_trade_no: &str, amount: &str, request: &str) -> Answer {
    let answer = gateway(
        sim,
        "alipay.trade.refund",
        json!({
            "out_trade_no": out_trade_no,
            "refund_amount": amount,
            "out_request_no": request,
            "refund_reason": "顾客退货 {\"size\": \"L\"} }",
        }),
    )
    .await;
    assert!(answer.sign_verifies, "{}", answer.raw);
    answer
}

#[tokio::test]
async fn partial_then_full_refund_adds_up_closes_the_trade_and_notifies_each() {
    let sim = simulator();
    let merchant = fake_merchant(200, "success").await;
    paid(&sim, "R-1", &merchant.url).await;

    let first = refund(&sim, "R-1", "3.00", "R-1-a").await;
    assert_eq!(first.code(), "10000", "{}", first.raw);
    assert_eq!(first.field("fund_change"), "Y");
    assert_eq!(first.field("refund_fee"), "3.00");
    assert_eq!(first.field("gmt_refund_pay").len(), 19);
    let query = gateway(&sim, "alipay.trade.query", json!({ "out_trade_no": "R-1" })).await;
    assert_eq!(query.field("trade_status"), "TRADE_SUCCESS");

    let second = refund(&sim, "R-1", "7.00", "R-1-b").await;
    assert_eq!(second.field("fund_change"), "Y");
    assert_eq!(second.field("refund_fee"), "10.00");
    let query = gateway(&sim, "alipay.trade.query", json!({ "out_trade_no": "R-1" })).await;
    assert_eq!(query.field("trade_status"), "TRADE_CLOSED");

    let bodies = merchant.wait_for(2).await;
    let mut notes: Vec<Params> = bodies.iter().map(|b| notification_fields(b)).collect();
    notes.sort_by(|a, b| a["out_biz_no"].cmp(&b["out_biz_no"]));
    for (note, body) in notes.iter().zip(&bodies) {
        assert!(notification_verifies(body));
        assert_eq!(note["total_amount"], "10.00");
        assert!(note["gmt_refund"].len() >= 19);
    }
    assert_eq!(
        (
            notes[0]["refund_fee"].as_str(),
            notes[0]["out_biz_no"].as_str()
        ),
        ("3.00", "R-1-a")
    );
    assert_eq!(notes[0]["trade_status"], "TRADE_SUCCESS");
    assert_eq!(
        (
            notes[1]["refund_fee"].as_str(),
            notes[1]["out_biz_no"].as_str()
        ),
        ("10.00", "R-1-b")
    );
    assert_eq!(notes[1]["trade_status"], "TRADE_CLOSED");
    assert_ne!(notes[0]["notify_id"], notes[1]["notify_id"]);

    // The deliveries are recorded on the trade.
    for _ in 0..50 {
        let view = json_of(&call(&sim, "GET", "/control/trades/R-1", "", b"").await);
        if view["deliveries"].as_array().unwrap().len() == 2 {
            assert_eq!(view["refunded_amount"], "10.00");
            assert_eq!(view["refunds"][1]["out_request_no"], "R-1-b");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("deliveries not recorded");
}

#[tokio::test]
async fn the_same_out_request_no_is_idempotent_even_after_a_full_refund() {
    let sim = simulator();
    paid(&sim, "R-2", NOTIFY_URL).await;
    assert_eq!(
        refund(&sim, "R-2", "4.00", "R-2-a")
            .await
            .field("fund_change"),
        "Y"
    );
    let again = refund(&sim, "R-2", "4.00", "R-2-a").await;
    assert_eq!(again.code(), "10000");
    assert_eq!(again.field("fund_change"), "N");
    assert_eq!(again.field("refund_fee"), "4.00");
    let discordant = refund(&sim, "R-2", "5.00", "R-2-a").await;
    assert_eq!(
        (discordant.code(), discordant.sub_code()),
        ("40004", "ACQ.DISCORDANT_REPEAT_REQUEST")
    );
    assert_eq!(
        refund(&sim, "R-2", "6.00", "R-2-b")
            .await
            .field("refund_fee"),
        "10.00"
    );
    let after_close = refund(&sim, "R-2", "6.00", "R-2-b").await;
    assert_eq!(after_close.field("fund_change"), "N");
    let new_after_close = refund(&sim, "R-2", "0.01", "R-2-c").await;
    assert_eq!(new_after_close.sub_code(), "ACQ.TRADE_STATUS_ERROR");
}

#[tokio::test]
async fn refund_amounts_are_checked_against_the_refundable_rest() {
    let sim = simulator();
    paid(&sim, "R-3", NOTIFY_URL).await;
    assert_eq!(refund(&sim, "R-3", "9.99", "R-3-a").await.code(), "10000");
    let over = refund(&sim, "R-3", "0.02", "R-3-b").await;
    assert_eq!(over.sub_code(), "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL");
    let zero = refund(&sim, "R-3", "0.00", "R-3-c").await;
    assert_eq!(zero.sub_code(), "ACQ.REASON_TRADE_REFUND_FEE_ERR");
    for float_ish in ["0.1", "1", "0.010"] {
        let answer = refund(&sim, "R-3", float_ish, "R-3-d").await;
        assert_eq!(
            (answer.code(), answer.sub_code()),
            ("40004", "ACQ.INVALID_PARAMETER"),
            "{float_ish}"
        );
    }
    assert_eq!(
        refund(&sim, "R-3", "0.01", "R-3-e")
            .await
            .field("refund_fee"),
        "10.00"
    );
}

#[tokio::test]
async fn a_refund_without_out_request_no_must_be_full() {
    let sim = simulator();
    paid(&sim, "R-4", NOTIFY_URL).await;
    let partial = gateway(
        &sim,
        "alipay.trade.refund",
        json!({ "out_trade_no": "R-4", "refund_amount": "1.00" }),
    )
    .await;
    assert_eq!(partial.sub_code(), "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL");
    let full = gateway(
        &sim,
        "alipay.trade.refund",
        json!({ "out_trade_no": "R-4", "refund_amount": "10.00" }),
    )
    .await;
    assert_eq!(full.field("fund_change"), "Y");
    let by_trade_number = gateway(
        &sim,
        "alipay.trade.fastpay.refund.query",
        json!({ "out_trade_no": "R-4", "out_request_no": "R-4" }),
    )
    .await;
    assert_eq!(by_trade_number.field("refund_amount"), "10.00");
}

#[tokio::test]
async fn only_a_paid_trade_is_refunded() {
    let sim = simulator();
    cashier(
        &sim,
        &order_string("R-5", "10.00", NOTIFY_URL),
        json!({ "pay": false }),
    )
    .await;
    let unpaid = refund(&sim, "R-5", "1.00", "R-5-a").await;
    assert_eq!(unpaid.sub_code(), "ACQ.TRADE_STATUS_ERROR");
    let unknown = refund(&sim, "R-NONE", "1.00", "R-x").await;
    assert_eq!(unknown.sub_code(), "ACQ.TRADE_NOT_EXIST");
}

#[tokio::test]
async fn refund_query_reports_known_refunds_and_nothing_for_unknown_ones() {
    let sim = simulator();
    paid(&sim, "R-6", NOTIFY_URL).await;
    refund(&sim, "R-6", "2.50", "R-6-a").await;
    let known = gateway(
        &sim,
        "alipay.trade.fastpay.refund.query",
        json!({ "out_trade_no": "R-6", "out_request_no": "R-6-a" }),
    )
    .await;
    // The reason holds braces and quotes inside the signed text.
    assert!(known.sign_verifies, "{}", known.raw);
    assert_eq!(known.field("refund_status"), "REFUND_SUCCESS");
    assert_eq!(known.field("refund_amount"), "2.50");
    assert_eq!(known.field("total_amount"), "10.00");
    assert_eq!(known.field("out_request_no"), "R-6-a");
    assert_eq!(known.field("refund_reason"), "顾客退货 {\"size\": \"L\"} }");
    assert_eq!(known.field("gmt_refund_pay").len(), 19);

    let unknown = gateway(
        &sim,
        "alipay.trade.fastpay.refund.query",
        json!({ "out_trade_no": "R-6", "out_request_no": "R-6-zzz" }),
    )
    .await;
    assert_eq!(unknown.code(), "10000");
    for absent in [
        "refund_status",
        "refund_amount",
        "out_request_no",
        "gmt_refund_pay",
    ] {
        assert!(
            unknown.inner.get(absent).is_none(),
            "{absent}: {}",
            unknown.raw
        );
    }
    let no_trade = gateway(
        &sim,
        "alipay.trade.fastpay.refund.query",
        json!({ "out_trade_no": "R-NONE", "out_request_no": "x" }),
    )
    .await;
    assert_eq!(no_trade.sub_code(), "ACQ.TRADE_NOT_EXIST");
}
