//! The simulator's trades: created when the cashier opens an orderString, and what happened to
//! them since (payment, close, refunds, notifications).

use std::collections::HashMap;

use chrono::{NaiveDateTime, TimeDelta, Utc};
use rand::Rng;
use serde::Serialize;
use serde_json::{Value, json};

use super::money::Amount;

/// `trade_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum TradeStatus {
    /// Created in the cashier, not paid.
    WaitBuyerPay,
    /// Paid, refundable.
    TradeSuccess,
    /// Paid, no longer refundable.
    TradeFinished,
    /// Closed unpaid, or fully refunded.
    TradeClosed,
}

impl TradeStatus {
    /// The wire name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TradeStatus::WaitBuyerPay => "WAIT_BUYER_PAY",
            TradeStatus::TradeSuccess => "TRADE_SUCCESS",
            TradeStatus::TradeFinished => "TRADE_FINISHED",
            TradeStatus::TradeClosed => "TRADE_CLOSED",
        }
    }
}

/// An accepted refund.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Refund {
    /// `out_request_no` (the `out_trade_no` for a refund sent without one).
    pub(crate) out_request_no: String,
    /// This refund's amount.
    #[serde(serialize_with = "as_yuan")]
    pub(crate) refund_amount: Amount,
    /// `refund_reason`, if given.
    pub(crate) refund_reason: Option<String>,
    /// When the money went back (Beijing time).
    pub(crate) gmt_refund_pay: String,
    /// The same instant with milliseconds, as notifications carry it in `gmt_refund`.
    pub(crate) gmt_refund: String,
}

/// A signed notification, kept so a redelivery sends the same bytes with the same `notify_id`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Notification {
    /// `notify_id`.
    pub(crate) notify_id: String,
    /// The `trade_status` it reports.
    pub(crate) trade_status: TradeStatus,
    /// `out_biz_no`, for refund notifications.
    pub(crate) out_biz_no: Option<String>,
    /// The form body.
    #[serde(skip)]
    pub(crate) body: String,
}

/// One attempt to deliver a notification.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Delivery {
    /// When it was sent (RFC 3339, UTC).
    pub(crate) at: String,
    /// The notification's `notify_id`.
    pub(crate) notify_id: String,
    /// The `trade_status` it reported.
    pub(crate) trade_status: TradeStatus,
    /// Whether its `total_amount` was altered after signing (a `tamper` delivery).
    pub(crate) tampered: bool,
    /// The merchant's HTTP status; absent when there was no HTTP answer.
    pub(crate) status: Option<u16>,
    /// HTTP 200 with a body of exactly `success`.
    pub(crate) acknowledged: bool,
    /// The merchant's answer (cut at 2 KiB).
    pub(crate) body: String,
    /// Why there was no HTTP answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// A trade.
#[derive(Debug, Clone)]
pub(crate) struct Trade {
    /// The app.
    pub(crate) app_id: String,
    /// The merchant's order number.
    pub(crate) out_trade_no: String,
    /// Alipay's trade number (28 digits).
    pub(crate) trade_no: String,
    /// `total_amount`.
    pub(crate) total: Amount,
    /// `subject`.
    pub(crate) subject: String,
    /// `body`, if given.
    pub(crate) body: Option<String>,
    /// `passback_params`, echoed as received.
    pub(crate) passback_params: Option<String>,
    /// `notify_url`.
    pub(crate) notify_url: String,
    /// The status.
    pub(crate) status: TradeStatus,
    /// The buyer (`buyer_id`, "2088…" 16 digits).
    pub(crate) buyer_id: String,
    /// The buyer's masked logon id.
    pub(crate) buyer_logon_id: String,
    /// `gmt_create` (Beijing).
    pub(crate) gmt_create: String,
    /// `gmt_payment`, once paid.
    pub(crate) gmt_payment: Option<String>,
    /// `gmt_close`, once closed.
    pub(crate) gmt_close: Option<String>,
    /// Accepted refunds, in order.
    pub(crate) refunds: Vec<Refund>,
    /// Every notification built, in order.
    pub(crate) notifications: Vec<Notification>,
    /// Every delivery attempt.
    pub(crate) deliveries: Vec<Delivery>,
}

impl Trade {
    /// Paid at some point (money moved).
    pub(crate) fn is_paid(&self) -> bool {
        self.gmt_payment.is_some()
    }

    /// The sum of the accepted refunds.
    pub(crate) fn refunded(&self) -> Amount {
        self.refunds
            .iter()
            .fold(Amount::default(), |sum, r| sum.plus(r.refund_amount))
    }

    /// The refund with this `out_request_no`.
    pub(crate) fn refund(&self, out_request_no: &str) -> Option<&Refund> {
        self.refunds
            .iter()
            .find(|r| r.out_request_no == out_request_no)
    }

    /// The control API's view.
    pub(crate) fn view(&self) -> Value {
        json!({
            "app_id": self.app_id,
            "out_trade_no": self.out_trade_no,
            "trade_no": self.trade_no,
            "trade_status": self.status.as_str(),
            "total_amount": self.total.to_string(),
            "refunded_amount": self.refunded().to_string(),
            "subject": self.subject,
            "body": self.body,
            "passback_params": self.passback_params,
            "notify_url": self.notify_url,
            "buyer_id": self.buyer_id,
            "buyer_logon_id": self.buyer_logon_id,
            "gmt_create": self.gmt_create,
            "gmt_payment": self.gmt_payment,
            "gmt_close": self.gmt_close,
            "refunds": self.refunds,
            "notifications": self.notifications,
            "deliveries": self.deliveries,
        })
    }
}

fn as_yuan<S: serde::Serializer>(amount: &Amount, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&amount.to_string())
}

/// Why a trade could not be picked by number alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// No such trade.
    NotFound,
    /// Several apps have a trade with this number.
    Ambiguous,
}

/// Trades by `(app_id, out_trade_no)`, with an index by `trade_no`.
#[derive(Debug, Default)]
pub(crate) struct TradeBook {
    trades: HashMap<(String, String), Trade>,
    by_trade_no: HashMap<String, (String, String)>,
    issued: u64,
}

impl TradeBook {
    /// The app's trade with this number.
    pub(crate) fn get(&self, app_id: &str, out_trade_no: &str) -> Option<&Trade> {
        self.trades
            .get(&(app_id.to_owned(), out_trade_no.to_owned()))
    }

    /// The app's trades, in no order.
    pub(crate) fn of_app<'a>(&'a self, app_id: &'a str) -> impl Iterator<Item = &'a Trade> + 'a {
        self.trades.values().filter(move |t| t.app_id == app_id)
    }

    /// The same, to change it.
    pub(crate) fn get_mut(&mut self, app_id: &str, out_trade_no: &str) -> Option<&mut Trade> {
        self.trades
            .get_mut(&(app_id.to_owned(), out_trade_no.to_owned()))
    }

    /// The `out_trade_no` of the app's trade named by `trade_no` (which wins) or `out_trade_no`.
    /// Both given but naming different trades: none.
    pub(crate) fn resolve(
        &self,
        app_id: &str,
        trade_no: Option<&str>,
        out_trade_no: Option<&str>,
    ) -> Option<String> {
        let found = match trade_no {
            Some(trade_no) => {
                let (owner, number) = self.by_trade_no.get(trade_no)?;
                (owner == app_id).then(|| number.clone())?
            }
            None => out_trade_no?.to_owned(),
        };
        let trade = self.get(app_id, &found)?;
        match out_trade_no {
            Some(given) if given != trade.out_trade_no => None,
            _ => Some(found),
        }
    }

    /// The app of the trade numbered `out_trade_no`: the given one, or the only one.
    pub(crate) fn find(&self, out_trade_no: &str, app_id: Option<&str>) -> Result<String, Lookup> {
        if let Some(app_id) = app_id {
            return self
                .get(app_id, out_trade_no)
                .map(|t| t.app_id.clone())
                .ok_or(Lookup::NotFound);
        }
        let mut matching = self
            .trades
            .values()
            .filter(|t| t.out_trade_no == out_trade_no);
        match (matching.next(), matching.next()) {
            (Some(trade), None) => Ok(trade.app_id.clone()),
            (Some(_), Some(_)) => Err(Lookup::Ambiguous),
            (None, _) => Err(Lookup::NotFound),
        }
    }

    /// Adds a trade and indexes its `trade_no`.
    pub(crate) fn insert(&mut self, trade: Trade) {
        let key = (trade.app_id.clone(), trade.out_trade_no.clone());
        self.by_trade_no.insert(trade.trade_no.clone(), key.clone());
        self.trades.insert(key, trade);
    }

    /// A fresh `trade_no`: Beijing `yyyyMMdd` + `22001` + 15 digits (28 digits, like
    /// `2019081522001468450512505578`).
    pub(crate) fn new_trade_no(&mut self) -> String {
        loop {
            self.issued = self.issued.wrapping_add(1);
            let tail: u64 = rand::rng().random_range(0..1_000_000_000);
            let id = format!(
                "{}22001{:06}{tail:09}",
                beijing_now().format("%Y%m%d"),
                self.issued % 1_000_000
            );
            if !self.by_trade_no.contains_key(&id) {
                return id;
            }
        }
    }
}

/// A fresh `notify_id`: 34 digits, like `2019081500222155624068450559358070`.
pub(crate) fn new_notify_id() -> String {
    let tail: u64 = rand::rng().random_range(0..1_000_000_000_000_000);
    let now = beijing_now();
    format!(
        "{}00222{}{tail:015}",
        now.format("%Y%m%d"),
        now.format("%H%M%S")
    )
}

/// A made-up sandbox buyer: `buyer_id` ("2088" + 12 digits) and a masked logon id.
pub(crate) fn new_buyer() -> (String, String) {
    let id: u64 = rand::rng().random_range(0..1_000_000_000_000);
    (
        format!("2088{id:012}"),
        "sandbox***@alipaydev.com".to_owned(),
    )
}

/// Now, as Beijing wall-clock time (UTC+8, no daylight saving).
pub(crate) fn beijing_now() -> NaiveDateTime {
    Utc::now().naive_utc() + TimeDelta::hours(8)
}

/// Now, Beijing time, `yyyy-MM-dd HH:mm:ss`.
pub(crate) fn beijing_stamp() -> String {
    beijing_now().format(TIMESTAMP_FORMAT).to_string()
}

/// Now, Beijing time, `yyyy-MM-dd HH:mm:ss` and the same with milliseconds.
pub(crate) fn beijing_stamps() -> (String, String) {
    let now = beijing_now();
    (
        now.format(TIMESTAMP_FORMAT).to_string(),
        now.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
    )
}

/// Alipay's time format.
pub(crate) const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_have_alipays_shapes() {
        let mut book = TradeBook::default();
        let trade_no = book.new_trade_no();
        assert_eq!(trade_no.len(), 28);
        assert!(trade_no.starts_with("20"));
        assert!(trade_no.bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(book.new_trade_no(), trade_no);
        let notify_id = new_notify_id();
        assert_eq!(notify_id.len(), 34, "{notify_id}");
        assert!(notify_id.bytes().all(|b| b.is_ascii_digit()));
        let (buyer_id, _) = new_buyer();
        assert_eq!(buyer_id.len(), 16);
        assert!(buyer_id.starts_with("2088"));
    }
}
