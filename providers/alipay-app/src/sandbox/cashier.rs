//! What the Alipay app does with an orderString (PROTOCOLS §C.3): decode it once, verify its
//! signature with the app public key, check the app-pay parameters, and open the trade.

use chrono::NaiveDateTime;
use serde_json::Value;

use super::form::{self, REQUEST_EXCLUDED};
use super::merchants::Registry;
use super::money::{Amount, MAX_TOTAL};
use super::trades::{TIMESTAMP_FORMAT, Trade, TradeBook, TradeStatus, beijing_stamp, new_buyer};

/// Why an orderString was refused, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// e.g. `sign`, `biz_content.total_amount`.
    pub(crate) field: String,
    /// What is wrong.
    pub(crate) message: String,
}

fn refuse(field: &str, message: impl Into<String>) -> Refusal {
    Refusal {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// A verified `alipay.trade.app.pay` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppPayOrder {
    /// The app.
    pub(crate) app_id: String,
    /// The merchant's order number.
    pub(crate) out_trade_no: String,
    /// `total_amount`.
    pub(crate) total: Amount,
    /// `subject`.
    pub(crate) subject: String,
    /// `body`.
    pub(crate) body: Option<String>,
    /// `passback_params`, kept as received.
    pub(crate) passback_params: Option<String>,
    /// `notify_url`.
    pub(crate) notify_url: String,
}

/// Reads and checks an orderString the way the Alipay app and cashier do.
pub(crate) fn read_order_string(
    registry: &Registry,
    order_string: &str,
) -> Result<AppPayOrder, Refusal> {
    let params = form::decode(order_string.trim().as_bytes())
        .map_err(|e| refuse("order_string", format!("not a form-encoded string: {e}")))?;
    let text = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let require = |name: &str| text(name).ok_or_else(|| refuse(name, "required"));

    let app_id = require("app_id")?;
    let (account, merchant) =
        registry
            .resolve(app_id, text("app_auth_token"))
            .map_err(|unknown| match unknown {
                super::merchants::Unknown::App => refuse(
                    "app_id",
                    format!("{app_id} is not configured for any tenant of this sandbox"),
                ),
                super::merchants::Unknown::Token => refuse(
                    "app_auth_token",
                    format!("no merchant granted this token to app {app_id}"),
                ),
            })?;
    expect(require("method")?, "alipay.trade.app.pay", "method")?;
    let charset = require("charset")?;
    if !charset.eq_ignore_ascii_case("utf-8") {
        return Err(refuse("charset", format!("{charset:?}: only utf-8")));
    }
    expect(require("sign_type")?, "RSA2", "sign_type")?;
    expect(require("version")?, "1.0", "version")?;
    if let Some(cert) = &merchant.cert {
        expect(require("app_cert_sn")?, &cert.app_cert_sn, "app_cert_sn")?;
        expect(
            require("alipay_root_cert_sn")?,
            &cert.root_cert_sn,
            "alipay_root_cert_sn",
        )?;
    }
    if let Some(format) = text("format").filter(|f| !f.eq_ignore_ascii_case("json")) {
        return Err(refuse("format", format!("{format:?}: only JSON")));
    }
    let timestamp = require("timestamp")?;
    NaiveDateTime::parse_from_str(timestamp, TIMESTAMP_FORMAT)
        .ok()
        .filter(|t| t.format(TIMESTAMP_FORMAT).to_string() == timestamp)
        .ok_or_else(|| {
            refuse(
                "timestamp",
                format!("{timestamp:?} is not yyyy-MM-dd HH:mm:ss"),
            )
        })?;
    let sign = require("sign")?;
    let content = form::sign_content(&params, REQUEST_EXCLUDED);
    if !merchant.app_public_key.verify(&content, sign) {
        return Err(refuse(
            "sign",
            format!("does not verify with the app public key over: {content}"),
        ));
    }
    let notify_url = require("notify_url")?;
    if !(notify_url.starts_with("http://") || notify_url.starts_with("https://"))
        || notify_url.chars().count() > 256
    {
        return Err(refuse(
            "notify_url",
            "must be an http(s) URL of at most 256 characters",
        ));
    }
    let Ok(Value::Object(biz)) = serde_json::from_str::<Value>(require("biz_content")?) else {
        return Err(refuse("biz_content", "not a JSON object"));
    };
    let biz_text = |name: &'static str| -> Result<Option<&str>, Refusal> {
        match biz.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(refuse(
                &format!("biz_content.{name}"),
                format!("must be a JSON string, got {other}"),
            )),
        }
    };
    let biz_require = |name: &'static str| {
        biz_text(name)?.ok_or_else(|| refuse(&format!("biz_content.{name}"), "required"))
    };
    let at_most = |name: &'static str, value: &str, max: usize| {
        if value.chars().count() > max {
            Err(refuse(
                &format!("biz_content.{name}"),
                format!("longer than {max} characters"),
            ))
        } else {
            Ok(())
        }
    };

    expect(
        biz_require("product_code")?,
        "QUICK_MSECURITY_PAY",
        "biz_content.product_code",
    )?;
    let out_trade_no = biz_require("out_trade_no")?;
    at_most("out_trade_no", out_trade_no, 64)?;
    let total = Amount::parse_strict(biz_require("total_amount")?)
        .map_err(|e| refuse("biz_content.total_amount", e))?;
    if total < Amount(1) || total > MAX_TOTAL {
        return Err(refuse(
            "biz_content.total_amount",
            format!("{total} is outside [0.01, 100000000.00]"),
        ));
    }
    let subject = biz_require("subject")?;
    at_most("subject", subject, 256)?;
    let body = biz_text("body")?;
    if let Some(body) = body {
        at_most("body", body, 128)?;
    }
    if let Some(timeout) = biz_text("timeout_express")? {
        check_timeout_express(timeout).map_err(|e| refuse("biz_content.timeout_express", e))?;
    }
    let passback_params = biz_text("passback_params")?;
    if let Some(passback) = passback_params {
        at_most("passback_params", passback, 512)?;
    }
    Ok(AppPayOrder {
        app_id: account,
        out_trade_no: out_trade_no.to_owned(),
        total,
        subject: subject.to_owned(),
        body: body.map(str::to_owned),
        passback_params: passback_params.map(str::to_owned),
        notify_url: notify_url.to_owned(),
    })
}

fn expect(value: &str, wanted: &str, field: &str) -> Result<(), Refusal> {
    if value == wanted {
        Ok(())
    } else {
        Err(refuse(field, format!("{value:?}: must be {wanted}")))
    }
}

/// `1m`–`15d` in whole minutes, hours or days, or `1c` (until midnight).
fn check_timeout_express(value: &str) -> Result<(), String> {
    let refuse = || format!("{value:?}: must be 1m–15d (m, h, d; whole numbers) or 1c");
    if value == "1c" {
        return Ok(());
    }
    let split = value.len().saturating_sub(1);
    let (number, unit) = (value.get(..split).unwrap_or_default(), value.get(split..));
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) || number.starts_with('0') {
        return Err(refuse());
    }
    let number: u32 = number.parse().map_err(|_| refuse())?;
    let max = match unit {
        Some("m") => 15 * 24 * 60,
        Some("h") => 15 * 24,
        Some("d") => 15,
        _ => return Err(refuse()),
    };
    if number > max {
        return Err(refuse());
    }
    Ok(())
}

/// Why the cashier will not take an orderString whose trade already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conflict {
    /// The same `out_trade_no` was opened with other parameters.
    DifferentParameters,
    /// The trade is already paid.
    Paid,
    /// The trade is closed.
    Closed,
}

/// Opens the trade of `order`: a new one in `WAIT_BUYER_PAY`, or the existing unpaid trade when
/// the orderString is opened again with the same parameters.
pub(crate) fn open_trade(book: &mut TradeBook, order: &AppPayOrder) -> Result<(), Conflict> {
    if let Some(existing) = book.get(&order.app_id, &order.out_trade_no) {
        if existing.total != order.total
            || existing.subject != order.subject
            || existing.body != order.body
            || existing.notify_url != order.notify_url
        {
            return Err(Conflict::DifferentParameters);
        }
        return match existing.status {
            TradeStatus::WaitBuyerPay => Ok(()),
            TradeStatus::TradeSuccess | TradeStatus::TradeFinished => Err(Conflict::Paid),
            TradeStatus::TradeClosed if existing.is_paid() => Err(Conflict::Paid),
            TradeStatus::TradeClosed => Err(Conflict::Closed),
        };
    }
    let (buyer_id, buyer_logon_id) = new_buyer();
    let trade_no = book.new_trade_no();
    book.insert(Trade {
        app_id: order.app_id.clone(),
        out_trade_no: order.out_trade_no.clone(),
        trade_no,
        total: order.total,
        subject: order.subject.clone(),
        body: order.body.clone(),
        passback_params: order.passback_params.clone(),
        notify_url: order.notify_url.clone(),
        status: TradeStatus::WaitBuyerPay,
        buyer_id,
        buyer_logon_id,
        gmt_create: beijing_stamp(),
        gmt_payment: None,
        gmt_close: None,
        refunds: Vec::new(),
        notifications: Vec::new(),
        deliveries: Vec::new(),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_express_takes_whole_units_up_to_fifteen_days() {
        for good in ["1m", "30m", "90m", "2h", "15d", "1c", "21600m"] {
            assert!(check_timeout_express(good).is_ok(), "{good}");
        }
        for bad in [
            "0m", "1.5h", "16d", "m", "30", "30s", "2c", "01m", "-1m", "21601m", "",
        ] {
            assert!(check_timeout_express(bad).is_err(), "{bad}");
        }
    }
}
