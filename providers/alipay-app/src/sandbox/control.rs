//! The control API (see the module doc of `sandbox`): open and pay an orderString, (re)send a
//! notification, inject failures, look at a trade.

use serde::Deserialize;
use serde_json::json;

use paybridge_core::provider::SimResponse;

use super::cashier::{self, Conflict};
use super::faults::{Api, FaultMode};
use super::form;
use super::notify::{self, Outgoing};
use super::rsa2::Rsa2Signer;
use super::trade_api::Dispatch;
use super::trades::{Lookup, TradeStatus, beijing_stamp};
use super::{AlipaySimulator, State, json_error, json_response};

/// The most notification copies one call may send.
const MAX_COPIES: u32 = 50;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum NotifyMode {
    #[default]
    Deliver,
    Drop,
    Duplicate,
    Tamper,
    Return,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CashierCommand {
    order_string: String,
    #[serde(default = "yes")]
    pay: bool,
    #[serde(default)]
    notify: NotifyMode,
    copies: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyCommand {
    out_trade_no: String,
    app_id: Option<String>,
    trade_status: Option<TradeStatus>,
    copies: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailCommand {
    method: Api,
    mode: FaultMode,
    times: Option<u32>,
}

pub(super) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, SimResponse> {
    serde_json::from_slice(body)
        .map_err(|e| json_error(400, "invalid_request", &format!("control body: {e}")))
}

fn copies(requested: Option<u32>, default: u32) -> Result<u32, SimResponse> {
    let copies = requested.unwrap_or(default);
    if (1..=MAX_COPIES).contains(&copies) {
        Ok(copies)
    } else {
        Err(json_error(
            400,
            "invalid_request",
            &format!("copies must be 1..={MAX_COPIES}, got {copies}"),
        ))
    }
}

fn lookup_error(lookup: Lookup, out_trade_no: &str) -> SimResponse {
    match lookup {
        Lookup::NotFound => json_error(
            404,
            "trade_not_found",
            &format!(
                "no trade {out_trade_no:?} (open its orderString with /control/cashier first)"
            ),
        ),
        Lookup::Ambiguous => json_error(
            409,
            "ambiguous_trade",
            &format!("several apps have a trade {out_trade_no:?}: give app_id"),
        ),
    }
}

fn wrong_status(message: &str) -> SimResponse {
    json_error(409, "wrong_trade_status", message)
}

/// Builds a notification reporting `status` for the trade (with its latest refund's fields when
/// `refund`, altered after signing when `tamper`), keeps it on the trade, and returns what to
/// send. The trade's app must still be registered.
fn prepare(
    state: &mut State,
    platform: &Rsa2Signer,
    app_id: &str,
    out_trade_no: &str,
    (status, refund, tamper): (TradeStatus, bool, bool),
) -> Result<Dispatch, SimResponse> {
    let Some(merchant) = state.registry.get(app_id) else {
        return Err(json_error(
            409,
            "app_unknown",
            &format!("app {app_id} is no longer registered"),
        ));
    };
    let Some(trade) = state.trades.get_mut(app_id, out_trade_no) else {
        return Err(lookup_error(Lookup::NotFound, out_trade_no));
    };
    let outgoing = notify::build(trade, merchant, platform, status, refund, tamper);
    trade.notifications.push(outgoing.notification.clone());
    Ok(Dispatch {
        app_id: app_id.to_owned(),
        out_trade_no: out_trade_no.to_owned(),
        url: trade.notify_url.clone(),
        outgoing,
    })
}

impl AlipaySimulator {
    /// `POST /control/cashier`
    pub(super) async fn control_cashier(&self, platform: &Rsa2Signer, body: &[u8]) -> SimResponse {
        let command: CashierCommand = match parse(body) {
            Ok(command) => command,
            Err(response) => return response,
        };
        let default_copies = if command.notify == NotifyMode::Duplicate {
            2
        } else {
            1
        };
        let copies = match copies(command.copies, default_copies) {
            Ok(copies) => copies,
            Err(response) => return response,
        };
        let opened = {
            let mut state = self.lock();
            let state = &mut *state;
            open_and_pay(state, platform, &command)
        };
        let (order, dispatch) = match opened {
            Ok(opened) => opened,
            Err(response) => return response,
        };
        let notification = dispatch.as_ref().map(|d| d.outgoing.body.clone());
        let notify_id = dispatch
            .as_ref()
            .map(|d| d.outgoing.notification.notify_id.clone());
        let deliveries = match (dispatch, command.notify) {
            (Some(dispatch), NotifyMode::Deliver | NotifyMode::Duplicate | NotifyMode::Tamper) => {
                self.deliver(dispatch, copies).await
            }
            _ => Vec::new(),
        };
        let state = self.lock();
        let trade = state.trades.get(&order.app_id, &order.out_trade_no);
        json_response(
            200,
            &json!({
                "app_id": order.app_id,
                "out_trade_no": order.out_trade_no,
                "trade_no": trade.map(|t| t.trade_no.clone()),
                "trade_status": trade.map(|t| t.status.as_str()),
                "notify_id": notify_id,
                "notification": notification,
                "deliveries": deliveries,
            }),
        )
    }

    /// `POST /control/notify`
    pub(super) async fn control_notify(&self, platform: &Rsa2Signer, body: &[u8]) -> SimResponse {
        let command: NotifyCommand = match parse(body) {
            Ok(command) => command,
            Err(response) => return response,
        };
        let copies = match copies(command.copies, 1) {
            Ok(copies) => copies,
            Err(response) => return response,
        };
        let prepared = {
            let mut state = self.lock();
            notify_dispatch(&mut state, platform, &command)
        };
        let dispatch = match prepared {
            Ok(dispatch) => dispatch,
            Err(response) => return response,
        };
        let notify_id = dispatch.outgoing.notification.notify_id.clone();
        let trade_status = dispatch.outgoing.notification.trade_status;
        let notification = dispatch.outgoing.body.clone();
        let deliveries = self.deliver(dispatch, copies).await;
        json_response(
            200,
            &json!({
                "notify_id": notify_id,
                "trade_status": trade_status.as_str(),
                "notification": notification,
                "deliveries": deliveries,
            }),
        )
    }

    /// `POST /control/fail`
    pub(super) fn control_fail(&self, body: &[u8]) -> SimResponse {
        let command: FailCommand = match parse(body) {
            Ok(command) => command,
            Err(response) => return response,
        };
        let mut state = self.lock();
        state
            .faults
            .arm(command.method, command.mode, command.times.unwrap_or(1));
        json_response(200, &json!({ "pending": state.faults.pending() }))
    }

    /// `GET /control/trades/{out_trade_no}[?app_id=…]`
    pub(super) fn control_trade(&self, out_trade_no: &str, query: &str) -> SimResponse {
        let app_id = form::decode(query.as_bytes())
            .ok()
            .and_then(|mut params| params.remove("app_id"));
        let state = self.lock();
        match state.trades.find(out_trade_no, app_id.as_deref()) {
            Ok(app_id) => match state.trades.get(&app_id, out_trade_no) {
                Some(trade) => json_response(200, &trade.view()),
                None => lookup_error(Lookup::NotFound, out_trade_no),
            },
            Err(e) => lookup_error(e, out_trade_no),
        }
    }
}

/// Opens the orderString's trade and, if asked, pays it and builds its notification.
fn open_and_pay(
    state: &mut State,
    platform: &Rsa2Signer,
    command: &CashierCommand,
) -> Result<(cashier::AppPayOrder, Option<Dispatch>), SimResponse> {
    let order =
        cashier::read_order_string(&state.registry, &command.order_string).map_err(|r| {
            json_response(
                400,
                &json!({ "error": {
                    "code": "invalid_order_string",
                    "message": format!("{}: {}", r.field, r.message),
                    "field": r.field,
                }}),
            )
        })?;
    cashier::open_trade(&mut state.trades, &order).map_err(|conflict| match conflict {
        Conflict::DifferentParameters => json_error(
            409,
            "order_string_conflict",
            "this out_trade_no was opened with another amount, subject, body or notify_url",
        ),
        Conflict::Paid => json_error(409, "trade_paid", "the trade is already paid"),
        Conflict::Closed => json_error(409, "trade_closed", "the trade is closed"),
    })?;
    if !command.pay {
        return Ok((order, None));
    }
    if let Some(trade) = state.trades.get_mut(&order.app_id, &order.out_trade_no) {
        trade.status = TradeStatus::TradeSuccess;
        trade.gmt_payment = Some(beijing_stamp());
    }
    let tamper = command.notify == NotifyMode::Tamper;
    let dispatch = prepare(
        state,
        platform,
        &order.app_id,
        &order.out_trade_no,
        (TradeStatus::TradeSuccess, false, tamper),
    )?;
    Ok((order, Some(dispatch)))
}

/// What `/control/notify` sends: the latest notification again, or a new one.
fn notify_dispatch(
    state: &mut State,
    platform: &Rsa2Signer,
    command: &NotifyCommand,
) -> Result<Dispatch, SimResponse> {
    let out_trade_no = command.out_trade_no.as_str();
    let app_id = state
        .trades
        .find(out_trade_no, command.app_id.as_deref())
        .map_err(|e| lookup_error(e, out_trade_no))?;
    let Some(trade) = state.trades.get_mut(&app_id, out_trade_no) else {
        return Err(lookup_error(Lookup::NotFound, out_trade_no));
    };
    let current = trade.status;
    let has_refunds = !trade.refunds.is_empty();
    let status = match command.trade_status {
        None => {
            if let Some(latest) = trade
                .notifications
                .last()
                .filter(|n| n.trade_status == current)
            {
                return Ok(Dispatch {
                    app_id: app_id.clone(),
                    out_trade_no: out_trade_no.to_owned(),
                    url: trade.notify_url.clone(),
                    outgoing: Outgoing {
                        body: latest.body.clone(),
                        notification: latest.clone(),
                        tampered: false,
                    },
                });
            }
            if current == TradeStatus::WaitBuyerPay {
                return Err(wrong_status(
                    "an unpaid trade has nothing to notify: pay it with /control/cashier, or send trade_status TRADE_CLOSED",
                ));
            }
            current
        }
        Some(TradeStatus::WaitBuyerPay) => {
            return Err(json_error(
                400,
                "invalid_request",
                "WAIT_BUYER_PAY is never notified for app pay",
            ));
        }
        Some(TradeStatus::TradeSuccess) if current != TradeStatus::TradeSuccess => {
            return Err(wrong_status(&format!(
                "the trade is {}, not TRADE_SUCCESS",
                current.as_str()
            )));
        }
        Some(TradeStatus::TradeFinished)
            if !matches!(
                current,
                TradeStatus::TradeSuccess | TradeStatus::TradeFinished
            ) =>
        {
            return Err(wrong_status(&format!(
                "only a paid trade finishes; it is {}",
                current.as_str()
            )));
        }
        Some(TradeStatus::TradeClosed)
            if matches!(
                current,
                TradeStatus::TradeSuccess | TradeStatus::TradeFinished
            ) =>
        {
            return Err(wrong_status(
                "a paid trade closes only by a full refund (alipay.trade.refund)",
            ));
        }
        Some(status) => status,
    };
    if status == TradeStatus::TradeClosed && current == TradeStatus::WaitBuyerPay {
        trade.gmt_close = Some(beijing_stamp());
    }
    trade.status = status;
    let refund_fields = has_refunds && status != TradeStatus::TradeFinished;
    prepare(
        state,
        platform,
        &app_id,
        out_trade_no,
        (status, refund_fields, false),
    )
}
