//! `POST /pay/orderquery` (PROTOCOLS §B.5) and `POST /pay/closeorder` (§B.6).

use super::envelope::{Authed, Reply};
use super::orders::{Order, OrderBook, TradeState};

const NOT_EXIST: (&str, &str) = ("ORDERNOTEXIST", "订单不存在");

/// Serves one authenticated query; `transaction_id` wins over `out_trade_no`.
pub(crate) fn orderquery(orders: &OrderBook, auth: &Authed) -> Reply {
    let mch_id = &auth.merchant.mch_id;
    let order = match (auth.field("transaction_id"), auth.field("out_trade_no")) {
        (Some(transaction_id), _) => orders.by_transaction(mch_id, transaction_id),
        (None, Some(out_trade_no)) => orders.get(mch_id, out_trade_no),
        (None, None) => {
            return Reply::business_error(
                auth,
                "LACK_PARAMS",
                "缺少参数out_trade_no或transaction_id",
            );
        }
    };
    match order {
        Some(order) => Reply::success(auth, query_fields(order)),
        None => Reply::business_error(auth, NOT_EXIST.0, NOT_EXIST.1),
    }
}

fn query_fields(order: &Order) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("out_trade_no", order.out_trade_no.clone()),
        ("trade_state", order.state.as_str().to_owned()),
        ("trade_state_desc", order.state.description().to_owned()),
    ];
    if let (TradeState::Success, Some(payment)) = (order.state, &order.payment) {
        fields.extend([
            ("openid", payment.openid.clone()),
            ("is_subscribe", "N".to_owned()),
            ("trade_type", order.trade_type.clone()),
            ("bank_type", "OTHERS".to_owned()),
            ("total_fee", order.total_fee.to_string()),
            ("cash_fee", order.total_fee.to_string()),
            ("fee_type", "CNY".to_owned()),
            ("transaction_id", payment.transaction_id.clone()),
            ("attach", order.attach.clone().unwrap_or_default()),
            ("time_end", payment.time_end.clone()),
        ]);
    }
    fields
}

/// Serves one authenticated close: `NOTPAY` becomes `CLOSED`; anything else is refused.
pub(crate) fn closeorder(orders: &mut OrderBook, auth: &Authed) -> Reply {
    let Some(out_trade_no) = auth.field("out_trade_no") else {
        return Reply::business_error(auth, "LACK_PARAMS", "缺少参数out_trade_no");
    };
    let Some(order) = orders.get_mut(&auth.merchant.mch_id, out_trade_no) else {
        return Reply::business_error(auth, NOT_EXIST.0, NOT_EXIST.1);
    };
    match order.state {
        TradeState::Success => Reply::business_error(auth, "ORDERPAID", "订单已支付"),
        TradeState::Closed => Reply::business_error(auth, "ORDERCLOSED", "订单已关闭"),
        TradeState::NotPay => {
            order.state = TradeState::Closed;
            Reply::success(auth, [("result_msg", "OK".to_owned())])
        }
    }
}
