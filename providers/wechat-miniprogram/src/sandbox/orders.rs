//! The simulator's orders: what `unifiedorder` created, and what happened to them since.

use std::collections::HashMap;

use chrono::{NaiveDateTime, TimeDelta, Utc};
use rand::Rng;
use serde::Serialize;
use serde_json::{Value, json};

use super::signature::SignType;
use super::xml::Fields;

/// `trade_state` of a JSAPI order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TradeState {
    /// Created, not paid.
    NotPay,
    /// Paid.
    Success,
    /// Closed by `closeorder`.
    Closed,
}

impl TradeState {
    /// The wire name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TradeState::NotPay => "NOTPAY",
            TradeState::Success => "SUCCESS",
            TradeState::Closed => "CLOSED",
        }
    }

    /// `trade_state_desc`, as WeChat words it.
    pub(crate) fn description(self) -> &'static str {
        match self {
            TradeState::NotPay => "订单未支付",
            TradeState::Success => "支付成功",
            TradeState::Closed => "订单已关闭",
        }
    }
}

/// One attempt to deliver a notification (of a payment or a refund).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Delivery {
    /// When it was sent (RFC 3339).
    pub(crate) at: String,
    /// The merchant's HTTP status, absent when there was no HTTP answer.
    pub(crate) status: Option<u16>,
    /// v2: HTTP 200 with XML whose `return_code` is `SUCCESS`; v3: any 2xx.
    pub(crate) acknowledged: bool,
    /// The merchant's response body (truncated to 2 KiB).
    pub(crate) body: String,
    /// Why there was no HTTP answer (connection refused, timeout…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// v3: the `Wechatpay-Serial` it was signed under (the key a switch used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) serial: Option<String>,
}

/// A completed payment.
#[derive(Debug, Clone)]
pub(crate) struct Payment {
    /// `transaction_id`, "4200000…" (28 digits).
    pub(crate) transaction_id: String,
    /// `time_end`, Beijing time `yyyyMMddHHmmss`.
    pub(crate) time_end: String,
    /// The payer: the order's `openid`, or one made up for non-JSAPI orders.
    pub(crate) openid: String,
    /// The signed notification; redeliveries send exactly these bytes, as WeChat does.
    pub(crate) notification: String,
}

/// An order created by `unifiedorder`.
#[derive(Debug, Clone)]
pub(crate) struct Order {
    /// The merchant.
    pub(crate) mch_id: String,
    /// The mini-program.
    pub(crate) appid: String,
    /// The merchant's order number.
    pub(crate) out_trade_no: String,
    /// Every request field a re-entry must repeat identically (all but `nonce_str`, `sign`,
    /// `spbill_create_ip`), empty values dropped.
    pub(crate) business: Fields,
    /// The API it was created with (v2: and the algorithm its notification is signed with).
    pub(crate) protocol: Protocol,
    /// `prepay_id`, the same for every re-entry.
    pub(crate) prepay_id: String,
    /// `total_fee` in fen.
    pub(crate) total_fee: u64,
    /// `notify_url`.
    pub(crate) notify_url: String,
    /// `trade_type`.
    pub(crate) trade_type: String,
    /// `openid`, for JSAPI.
    pub(crate) openid: Option<String>,
    /// `attach`, echoed in the query and the notification.
    pub(crate) attach: Option<String>,
    /// The state.
    pub(crate) state: TradeState,
    /// Set once paid.
    pub(crate) payment: Option<Payment>,
    /// Whether it was paid after being closed (a forced payment).
    pub(crate) paid_after_close: bool,
    /// Every notification attempt.
    pub(crate) deliveries: Vec<Delivery>,
    /// A service provider's order for its sub-merchant `mch_id` (v3 partner API).
    pub(crate) partner: Option<OrderPartner>,
}

/// The service-provider side of a partner order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OrderPartner {
    /// `sp_mchid`.
    pub(crate) sp_mchid: String,
    /// `sub_appid`, when the payer is a `sub_openid` of the sub-merchant's mini-program.
    pub(crate) sub_appid: Option<String>,
}

/// The API an order was created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// `/pay/unifiedorder`, signed with this algorithm (its notification is too).
    V2(SignType),
    /// `/v3/pay/transactions/jsapi`: its notification is v3 JSON.
    V3,
}

impl Order {
    /// Whether it was made through API v3.
    pub(crate) fn is_v3(&self) -> bool {
        self.protocol == Protocol::V3
    }

    /// The control API's view of the order.
    pub(crate) fn view(&self) -> Value {
        json!({
            "mch_id": self.mch_id,
            "appid": self.appid,
            "out_trade_no": self.out_trade_no,
            "trade_state": self.state.as_str(),
            "prepay_id": self.prepay_id,
            "total_fee": self.total_fee,
            "notify_url": self.notify_url,
            "trade_type": self.trade_type,
            "api_version": if self.is_v3() { "v3" } else { "v2" },
            "sign_type": match self.protocol {
                Protocol::V2(sign_type) => sign_type.as_str(),
                Protocol::V3 => "RSA",
            },
            "openid": self.openid,
            "attach": self.attach,
            "transaction_id": self.payment.as_ref().map(|p| &p.transaction_id),
            "time_end": self.payment.as_ref().map(|p| &p.time_end),
            "paid_after_close": self.paid_after_close,
            "deliveries": self.deliveries,
            "sp_mchid": self.partner.as_ref().map(|p| &p.sp_mchid),
        })
    }
}

/// Why an order could not be picked by number alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// No such order.
    NotFound,
    /// Several merchants have an order with this number.
    Ambiguous,
}

/// Orders by `(mch_id, out_trade_no)`, and an index by `transaction_id`.
#[derive(Debug, Default)]
pub(crate) struct OrderBook {
    orders: HashMap<(String, String), Order>,
    by_transaction: HashMap<String, (String, String)>,
    payments: u64,
}

impl OrderBook {
    /// Every order.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Order> {
        self.orders.values()
    }

    /// The order of this merchant with this number.
    pub(crate) fn get(&self, mch_id: &str, out_trade_no: &str) -> Option<&Order> {
        self.orders
            .get(&(mch_id.to_owned(), out_trade_no.to_owned()))
    }

    /// The same, to change it.
    pub(crate) fn get_mut(&mut self, mch_id: &str, out_trade_no: &str) -> Option<&mut Order> {
        self.orders
            .get_mut(&(mch_id.to_owned(), out_trade_no.to_owned()))
    }

    /// The order of this merchant with this `transaction_id`.
    pub(crate) fn by_transaction(&self, mch_id: &str, transaction_id: &str) -> Option<&Order> {
        let key = self.by_transaction.get(transaction_id)?;
        self.orders.get(key).filter(|o| o.mch_id == mch_id)
    }

    /// Adds a new order.
    pub(crate) fn insert(&mut self, order: Order) {
        self.orders
            .insert((order.mch_id.clone(), order.out_trade_no.clone()), order);
    }

    /// The `mch_id` of the order numbered `out_trade_no`: of the given merchant, or the only one
    /// when no merchant is given.
    pub(crate) fn find(&self, out_trade_no: &str, mch_id: Option<&str>) -> Result<String, Lookup> {
        if let Some(mch_id) = mch_id {
            return self
                .get(mch_id, out_trade_no)
                .map(|o| o.mch_id.clone())
                .ok_or(Lookup::NotFound);
        }
        let mut matching = self
            .orders
            .values()
            .filter(|o| o.out_trade_no == out_trade_no);
        match (matching.next(), matching.next()) {
            (Some(order), None) => Ok(order.mch_id.clone()),
            (Some(_), Some(_)) => Err(Lookup::Ambiguous),
            (None, _) => Err(Lookup::NotFound),
        }
    }

    /// A fresh, unique `transaction_id`, and records that it belongs to this order.
    pub(crate) fn new_transaction_id(&mut self, mch_id: &str, out_trade_no: &str) -> String {
        loop {
            self.payments = self.payments.wrapping_add(1);
            let date = beijing_now().format("%Y%m%d");
            let tail: u32 = rand::rng().random_range(0..10_000_000);
            let id = format!("4200000{date}{:06}{tail:07}", self.payments % 1_000_000);
            if !self.by_transaction.contains_key(&id) {
                self.by_transaction
                    .insert(id.clone(), (mch_id.to_owned(), out_trade_no.to_owned()));
                return id;
            }
        }
    }
}

/// Now, as Beijing wall-clock time (UTC+8, no daylight saving).
pub(crate) fn beijing_now() -> NaiveDateTime {
    Utc::now().naive_utc() + TimeDelta::hours(8)
}

/// A new `prepay_id`: "wx" + Beijing `yyyyMMddHHmmss` + 20 random hex digits (36 characters).
pub(crate) fn new_prepay_id() -> String {
    let random: [u8; 10] = rand::rng().random();
    format!(
        "wx{}{}",
        beijing_now().format("%Y%m%d%H%M%S"),
        hex::encode(random)
    )
}
