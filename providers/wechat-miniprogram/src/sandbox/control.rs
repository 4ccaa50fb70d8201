//! The control API: pay an order, (re)send its notification, inject failures, look at an order.
//! Refunds are in `control_refund`.
//! JSON in, JSON out; errors are `{"error": {"code", "message"}}`.

use serde::Deserialize;
use serde_json::{Value, json};

use paybridge_core::provider::SimResponse;

use super::WechatSimulator;
use super::faults::{Api, FaultMode};
use super::notify;
use super::orders::{Delivery, Lookup, Order, Payment, Protocol, TradeState, beijing_now};
use super::{json_error, json_response};

/// The most notification copies one call may send.
const MAX_COPIES: u32 = 50;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum NotifyMode {
    #[default]
    Deliver,
    Drop,
    Duplicate,
    Return,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PayCommand {
    out_trade_no: String,
    mch_id: Option<String>,
    #[serde(default)]
    notify: NotifyMode,
    copies: Option<u32>,
    #[serde(default)]
    force: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyCommand {
    out_trade_no: String,
    mch_id: Option<String>,
    copies: Option<u32>,
    /// v3: send WeChat's signature probe (`WECHATPAY/SIGNTEST/…`), which must be refused.
    #[serde(default)]
    probe: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailCommand {
    api: Api,
    mode: FaultMode,
    times: Option<u32>,
}

pub(super) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, SimResponse> {
    serde_json::from_slice(body)
        .map_err(|e| json_error(400, "invalid_request", &format!("control body: {e}")))
}

fn lookup_error(lookup: Lookup, out_trade_no: &str) -> SimResponse {
    match lookup {
        Lookup::NotFound => json_error(
            404,
            "order_not_found",
            &format!("no order {out_trade_no:?} (create it with unifiedorder first)"),
        ),
        Lookup::Ambiguous => json_error(
            409,
            "ambiguous_order",
            &format!("several merchants have an order {out_trade_no:?}: give mch_id"),
        ),
    }
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

impl WechatSimulator {
    /// `POST /control/pay`
    pub(super) async fn control_pay(&self, body: &[u8]) -> SimResponse {
        let command: PayCommand = match parse(body) {
            Ok(command) => command,
            Err(response) => return response,
        };
        let copies = match copies(
            command.copies,
            if command.notify == NotifyMode::Duplicate {
                2
            } else {
                1
            },
        ) {
            Ok(copies) => copies,
            Err(response) => return response,
        };
        let (mch_id, notify_url, payment) = match self.mark_paid(&command) {
            Ok(paid) => paid,
            Err(response) => return response,
        };
        let deliveries = match command.notify {
            NotifyMode::Deliver | NotifyMode::Duplicate => {
                self.send(
                    &mch_id,
                    &command.out_trade_no,
                    &notify_url,
                    &payment,
                    copies,
                    false,
                )
                .await
            }
            NotifyMode::Drop | NotifyMode::Return => Vec::new(),
        };
        json_response(
            200,
            &json!({
                "mch_id": mch_id,
                "out_trade_no": command.out_trade_no,
                "transaction_id": payment.transaction_id,
                "time_end": payment.time_end,
                "notification": payment.notification,
                "deliveries": deliveries,
            }),
        )
    }

    /// Marks the order paid and builds its notification; returns its merchant, URL and payment.
    fn mark_paid(&self, command: &PayCommand) -> Result<(String, String, Payment), SimResponse> {
        let mut state = self.lock();
        let state = &mut *state;
        let out_trade_no = command.out_trade_no.as_str();
        let mch_id = state
            .orders
            .find(out_trade_no, command.mch_id.as_deref())
            .map_err(|e| lookup_error(e, out_trade_no))?;
        let Some(merchant) = state.registry.merchant(&mch_id).cloned() else {
            return Err(json_error(
                409,
                "merchant_unknown",
                &format!("merchant {mch_id} is no longer registered"),
            ));
        };
        let current = state.orders.get(&mch_id, out_trade_no).map(|o| o.state);
        match current {
            Some(TradeState::NotPay) => {}
            Some(TradeState::Closed) if command.force => {}
            Some(TradeState::Closed) => {
                return Err(json_error(
                    409,
                    "order_closed",
                    "the order is CLOSED; send \"force\": true to pay it anyway (money arriving after close)",
                ));
            }
            Some(TradeState::Success) => {
                return Err(json_error(409, "order_paid", "the order is already paid"));
            }
            None => return Err(lookup_error(Lookup::NotFound, out_trade_no)),
        }
        let is_v3 = state
            .orders
            .get(&mch_id, out_trade_no)
            .is_some_and(Order::is_v3);
        let apiv3_key = merchant.v3.as_ref().map(|v3| v3.apiv3_key.as_str());
        if is_v3 && apiv3_key.is_none() {
            return Err(json_error(
                409,
                "merchant_unknown",
                &format!(
                    "merchant {mch_id} no longer has an apiv3_key: a v3 order cannot be notified"
                ),
            ));
        }
        let transaction_id = state.orders.new_transaction_id(&mch_id, out_trade_no);
        let Some(order) = state.orders.get_mut(&mch_id, out_trade_no) else {
            return Err(lookup_error(Lookup::NotFound, out_trade_no));
        };
        let time_end = beijing_now().format("%Y%m%d%H%M%S").to_string();
        let openid = order.openid.clone().unwrap_or_else(|| {
            super::login::openid_for(&order.appid, &format!("payer-of-{out_trade_no}"))
        });
        let notification = match order.protocol {
            Protocol::V2(sign_type) => notify::build(
                order,
                &merchant,
                sign_type,
                &transaction_id,
                &time_end,
                &openid,
            ),
            Protocol::V3 => String::new(),
        };
        let mut payment = Payment {
            transaction_id,
            time_end,
            openid,
            notification,
        };
        order.paid_after_close = order.state == TradeState::Closed;
        order.state = TradeState::Success;
        order.payment = Some(payment.clone());
        if order.is_v3() {
            // The v3 resource is the transaction as a query shows it once paid.
            payment.notification =
                super::v3::notify::payment_notification(order, apiv3_key.unwrap_or_default());
            order.payment = Some(payment.clone());
        }
        Ok((mch_id, order.notify_url.clone(), payment))
    }

    /// Delivers and records the attempts on the order. A v3 notification is signed for each
    /// copy by the merchant's key mode (`probe`: with a signature that cannot verify, as WeChat
    /// probes merchants).
    async fn send(
        &self,
        mch_id: &str,
        out_trade_no: &str,
        url: &str,
        payment: &Payment,
        copies: u32,
        probe: bool,
    ) -> Vec<Delivery> {
        let requests = {
            let mut state = self.lock();
            let state = &mut *state;
            let v3 = state
                .orders
                .get(mch_id, out_trade_no)
                .is_some_and(Order::is_v3);
            // A sub-merchant's notifications are signed for its service provider.
            let signer = state.registry.signing_id(mch_id);
            (0..copies)
                .map(|_| {
                    if v3 {
                        state.v3.outgoing(&signer, &payment.notification, probe)
                    } else {
                        notify::Outgoing::xml(&payment.notification)
                    }
                })
                .collect()
        };
        let deliveries = notify::deliver_each(self.http.as_ref(), url, requests).await;
        if let Some(order) = self.lock().orders.get_mut(mch_id, out_trade_no) {
            order.deliveries.extend(deliveries.iter().cloned());
        }
        deliveries
    }

    /// `POST /control/notify`
    pub(super) async fn control_notify(&self, body: &[u8]) -> SimResponse {
        let command: NotifyCommand = match parse(body) {
            Ok(command) => command,
            Err(response) => return response,
        };
        let copies = match copies(command.copies, 1) {
            Ok(copies) => copies,
            Err(response) => return response,
        };
        let found = {
            let state = self.lock();
            let out_trade_no = command.out_trade_no.as_str();
            state
                .orders
                .find(out_trade_no, command.mch_id.as_deref())
                .map_err(|e| lookup_error(e, out_trade_no))
                .and_then(|mch_id| {
                    let order = state.orders.get(&mch_id, out_trade_no);
                    match order.and_then(|o| o.payment.clone().map(|p| (o.notify_url.clone(), p))) {
                        Some((url, payment)) => Ok((mch_id, url, payment)),
                        None => Err(json_error(
                            409,
                            "order_not_paid",
                            "the order is not paid: use /control/pay",
                        )),
                    }
                })
        };
        let (mch_id, url, payment) = match found {
            Ok(found) => found,
            Err(response) => return response,
        };
        let deliveries = self
            .send(
                &mch_id,
                &command.out_trade_no,
                &url,
                &payment,
                copies,
                command.probe,
            )
            .await;
        json_response(200, &json!({ "deliveries": deliveries }))
    }

    /// `POST /control/fail`
    pub(super) fn control_fail(&self, body: &[u8]) -> SimResponse {
        let command: FailCommand = match parse(body) {
            Ok(command) => command,
            Err(response) => return response,
        };
        if !command.mode.applies_to(command.api) {
            return json_error(
                400,
                "invalid_request",
                "bad_sign does not apply to jscode2session (its answers are not signed)",
            );
        }
        let mut state = self.lock();
        state
            .faults
            .arm(command.api, command.mode, command.times.unwrap_or(1));
        json_response(200, &json!({ "pending": state.faults.pending() }))
    }

    /// `GET /control/orders/{out_trade_no}[?mch_id=…]`
    pub(super) fn control_order(&self, out_trade_no: &str, query: &str) -> SimResponse {
        let mch_id = url::form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "mch_id")
            .map(|(_, value)| value.into_owned());
        let state = self.lock();
        let view: Option<Value> = match state.orders.find(out_trade_no, mch_id.as_deref()) {
            Ok(mch_id) => state.orders.get(&mch_id, out_trade_no).map(|o| {
                let mut view = o.view();
                let refunds: Vec<Value> = state
                    .refunds
                    .of_order(&mch_id, out_trade_no)
                    .into_iter()
                    .map(|r| r.view())
                    .collect();
                if let Some(object) = view.as_object_mut() {
                    object.insert("refunds".into(), Value::Array(refunds));
                }
                view
            }),
            Err(e) => return lookup_error(e, out_trade_no),
        };
        match view {
            Some(view) => json_response(200, &view),
            None => lookup_error(Lookup::NotFound, out_trade_no),
        }
    }
}
