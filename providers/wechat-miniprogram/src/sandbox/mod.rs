//! The sandbox simulator of WeChat's server side, mounted at `/sandbox/wechat_miniprogram`.
//!
//! It serves `GET /sns/jscode2session` and `POST /pay/unifiedorder`, `/pay/orderquery`,
//! `/pay/closeorder` like WeChat does, checking every request with its own XML reader and its
//! own MD5 / HMAC-SHA256 signer (never the merchant client's), and signing its answers with the
//! request's `sign_type`. Merchants come from the tenants' `[providers.wechat_miniprogram]`
//! tables. Everything is in memory.
//!
//! Login codes: any code works once (then `40163`); `invalid…` → `40029`, `busy` → `-1`,
//! `ratelimit` → `45011`, `blocked` → `40226`; a code starting with `union` also gets a
//! `unionid`. The openid is the same for the same appid and code. JSAPI orders need an openid
//! this simulator issued for the order's appid.
//!
//! # Control API
//!
//! JSON in and out. Errors are `{"error": {"code": …, "message": …}}`: bad JSON or an unknown
//! key gets a 400 (`invalid_request`), an unknown order a 404 (`order_not_found`), and an order
//! number that several merchants use, given without `mch_id`, a 409 (`ambiguous_order`).
//!
//! - `POST /control/pay`
//!   `{"out_trade_no": "…", "mch_id": "…", "notify": "deliver", "copies": 2, "force": false}`.
//!   Only `out_trade_no` is required. `mch_id` is needed only when several merchants have that
//!   order number. This marks the order paid: a new `transaction_id` ("4200000…") and a
//!   `time_end` of now in Beijing time. Then, depending on `notify`, the signed notification
//!   (signed with the order's `sign_type`, but with no `sign_type` field, as WeChat sends it) is:
//!   - `deliver` (the default): POSTed once to the order's `notify_url`;
//!   - `duplicate`: POSTed `copies` times (default 2, at most 50) at the same moment;
//!   - `drop`: not sent, as if the notification were lost;
//!   - `return`: not sent; take it from the response and send it yourself.
//!
//!   The answer is `{"mch_id", "out_trade_no", "transaction_id", "time_end", "notification":
//!   "<xml>…</xml>", "deliveries": [{"at", "status": 200, "acknowledged": true, "body": "…",
//!   "error"?}]}`. A delivery is acknowledged only when the answer is HTTP 200 with XML whose
//!   `return_code` is `SUCCESS`; each attempt is bounded by the simulator's HTTP timeout, and the
//!   call answers when all are done. Only a `NOTPAY` order can be paid, or a `CLOSED` one when
//!   `"force": true` is given (money arriving after the close). Anything else gets a 409
//!   (`order_paid`, `order_closed`).
//! - `POST /control/notify` `{"out_trade_no": "…", "mch_id"?: "…", "copies"?: 1}` sends a paid
//!   order's notification again, the same bytes as before, and answers `{"deliveries": […]}`.
//!   An unpaid order gets a 409 (`order_not_paid`).
//! - `POST /control/fail` `{"api": "unifiedorder" | "orderquery" | "closeorder" |
//!   "jscode2session" | "*", "mode": "SYSTEMERROR" | "http500" | "bad_sign" | "timeout",
//!   "times": 1}` makes the next `times` matching calls fail, and answers
//!   `{"pending": [{"api", "mode", "remaining"}]}`. `"times": 0` disarms every pending failure
//!   of that `api` (`"*"`: all of them). The modes:
//!   - `SYSTEMERROR`: a signed `result_code=FAIL`, `err_code=SYSTEMERROR` (login: `errcode -1`),
//!     and nothing is done;
//!   - `http500`: HTTP 500 with a plain-text body, and nothing is done;
//!   - `bad_sign`: the call is done, but the answer's `sign` is wrong (Pay APIs only);
//!   - `timeout`: the call is done, but the answer comes 1 s after the simulator's HTTP timeout.
//! - `GET /control/orders/{out_trade_no}[?mch_id=…]` returns the simulator's view of the order:
//!   `{"mch_id", "appid", "out_trade_no", "trade_state", "prepay_id", "total_fee", "notify_url",
//!   "trade_type", "sign_type", "openid", "attach", "transaction_id", "time_end",
//!   "paid_after_close", "deliveries"}`.
//!
//! An unknown path gets a 404, and a known path with the wrong method gets a 405.

mod control;
mod envelope;
mod faults;
mod login;
mod merchants;
mod notify;
mod orders;
mod query_close;
mod signature;
mod unifiedorder;
mod xml;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use paybridge_core::provider::{SimRequest, SimResponse, Simulator};
use serde_json::{Value, json};

use envelope::Reply;
use faults::{Api, FaultMode, Faults};
use login::Logins;
use merchants::Registry;
use orders::OrderBook;

/// How much later than the HTTP timeout a `timeout` failure answers.
const TIMEOUT_OVERSHOOT: Duration = Duration::from_secs(1);

/// Builds the simulator. `timeout` bounds each notification delivery, and a `timeout` failure
/// answers later than it.
pub fn simulator(timeout: Duration) -> Arc<dyn Simulator> {
    Arc::new(WechatSimulator::new(timeout))
}

/// The WeChat simulator: login, Pay API v2 and the control API, all in memory.
pub struct WechatSimulator {
    state: Mutex<State>,
    http: Option<reqwest::Client>,
    timeout: Duration,
}

#[derive(Debug, Default)]
struct State {
    registry: Registry,
    logins: Logins,
    orders: OrderBook,
    faults: Faults,
}

enum Route<'a> {
    Login,
    Pay(Api),
    ControlPay,
    ControlNotify,
    ControlFail,
    ControlOrder(&'a str),
}

impl Route<'_> {
    /// The route of a path, and the one method it answers.
    fn of(path: &str) -> Option<(Route<'_>, &'static str)> {
        let route = match path {
            "/sns/jscode2session" => (Route::Login, "GET"),
            "/pay/unifiedorder" => (Route::Pay(Api::UnifiedOrder), "POST"),
            "/pay/orderquery" => (Route::Pay(Api::OrderQuery), "POST"),
            "/pay/closeorder" => (Route::Pay(Api::CloseOrder), "POST"),
            "/control/pay" => (Route::ControlPay, "POST"),
            "/control/notify" => (Route::ControlNotify, "POST"),
            "/control/fail" => (Route::ControlFail, "POST"),
            other => {
                let number = other
                    .strip_prefix("/control/orders/")
                    .filter(|n| !n.is_empty() && !n.contains('/'))?;
                (Route::ControlOrder(number), "GET")
            }
        };
        Some(route)
    }
}

impl WechatSimulator {
    /// A simulator with no merchants yet.
    pub fn new(timeout: Duration) -> Self {
        WechatSimulator {
            state: Mutex::new(State::default()),
            http: notify::http_client(timeout),
            timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_fault(&self, api: Api) -> Option<FaultMode> {
        self.lock().faults.take(api)
    }

    async fn answer_late(&self, fault: Option<FaultMode>) {
        if fault == Some(FaultMode::Timeout) {
            tokio::time::sleep(self.timeout.saturating_add(TIMEOUT_OVERSHOOT)).await;
        }
    }

    async fn login(&self, query: &str) -> SimResponse {
        let fault = self.take_fault(Api::Jscode2session);
        if fault == Some(FaultMode::Http500) {
            return http_500();
        }
        let answer = {
            let mut state = self.lock();
            let state = &mut *state;
            login::jscode2session(
                &state.registry,
                &mut state.logins,
                query,
                fault == Some(FaultMode::SystemError),
            )
        };
        self.answer_late(fault).await;
        // WeChat answers JSON with a text/plain content type; clients must parse it anyway.
        SimResponse {
            status: 200,
            content_type: "text/plain",
            body: answer.to_string().into_bytes(),
        }
    }

    async fn pay_api(&self, api: Api, body: &[u8]) -> SimResponse {
        let fault = self.take_fault(api);
        if fault == Some(FaultMode::Http500) {
            return http_500();
        }
        let reply = {
            let mut state = self.lock();
            let state = &mut *state;
            match envelope::authenticate(&state.registry, body) {
                Err(refusal) => refusal,
                Ok(auth) if fault == Some(FaultMode::SystemError) => {
                    Reply::business_error(&auth, "SYSTEMERROR", "系统超时,请稍后重试")
                }
                Ok(auth) => match api {
                    Api::UnifiedOrder => {
                        unifiedorder::unifiedorder(&mut state.orders, &state.logins, &auth)
                    }
                    Api::OrderQuery => query_close::orderquery(&state.orders, &auth),
                    Api::CloseOrder => query_close::closeorder(&mut state.orders, &auth),
                    Api::Jscode2session | Api::Any => Reply::Refused("not a Pay API".into()),
                },
            }
        };
        let response = reply.render(fault == Some(FaultMode::BadSign));
        self.answer_late(fault).await;
        response
    }
}

#[async_trait]
impl Simulator for WechatSimulator {
    fn register_merchant(&self, provider_config: &toml::Table) {
        self.lock().registry.register(provider_config);
    }

    async fn handle(&self, request: SimRequest) -> SimResponse {
        let Some((route, method)) = Route::of(&request.path) else {
            return json_error(
                404,
                "not_found",
                &format!("no simulator endpoint {}", request.path),
            );
        };
        if request.method != method {
            return json_error(
                405,
                "method_not_allowed",
                &format!("{} takes {method}", request.path),
            );
        }
        match route {
            Route::Login => self.login(&request.query).await,
            Route::Pay(api) => self.pay_api(api, &request.body).await,
            Route::ControlPay => self.control_pay(&request.body).await,
            Route::ControlNotify => self.control_notify(&request.body).await,
            Route::ControlFail => self.control_fail(&request.body),
            Route::ControlOrder(number) => {
                self.control_order(&percent_decode(number), &request.query)
            }
        }
    }
}

fn http_500() -> SimResponse {
    SimResponse {
        status: 500,
        content_type: "text/plain",
        body: b"Internal Server Error".to_vec(),
    }
}

fn json_response(status: u16, value: &Value) -> SimResponse {
    SimResponse {
        status,
        content_type: "application/json",
        body: value.to_string().into_bytes(),
    }
}

fn json_error(status: u16, code: &str, message: &str) -> SimResponse {
    json_response(
        status,
        &json!({ "error": { "code": code, "message": message } }),
    )
}

/// Decodes `%XX` in a path segment (an order number may carry `|` or `*`, which clients encode).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b, hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
