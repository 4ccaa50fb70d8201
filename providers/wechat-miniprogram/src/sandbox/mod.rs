//! The sandbox simulator of WeChat's server side, mounted at `/sandbox/wechat_miniprogram`.
//!
//! It serves `GET /sns/jscode2session` and `POST /pay/unifiedorder`, `/pay/orderquery`,
//! `/pay/closeorder`, `/secapi/pay/refund`, `/pay/refundquery` like WeChat does, checking every
//! request with its own XML reader and its own MD5 / HMAC-SHA256 signer (never the merchant
//! client's), and signing its answers with the request's `sign_type`. Merchants come from the
//! tenants' `[providers.wechat_miniprogram]` tables. Everything is in memory.
//!
//! Refunds: `/secapi/pay/refund` needs a paid (`SUCCESS`) order, `total_fee` equal to the
//! order's, and keeps the sum of the order's refunds (REFUNDCLOSE ones excepted) within it
//! (`err_code=ERROR`, "退款金额大于支付金额"); at most 50 refunds per order. The same
//! `out_refund_no` with the same amounts is the same refund (same `refund_id`); with other
//! amounts it is `ERROR`. An accepted refund is `PROCESSING` until `/control/refund` (or the
//! automatic mode) settles it. Served over HTTPS (`SimRequest.tls` is `Some`) without a client
//! certificate, `/secapi/` answers HTTP 200 `return_code=FAIL`, `return_msg` "证书错误: …", like
//! WeChat without the merchant API certificate, before reading the body; over plain HTTP (the
//! sandbox mounted in paybridge) no certificate is asked for. `/pay/refundquery` takes
//! `refund_id` > `out_refund_no` > `transaction_id` > `out_trade_no`, answers `refund_count` and
//! the `_$n` fields (10 per page, `offset` pages), or `REFUNDNOTEXIST`.
//!
//! API v3 (`/v3/pay/transactions/jsapi`, query, close, refunds, `/v3/certificates`, sealed
//! notifications signed in `Wechatpay-*` headers) is in [`v3`], on the same order and refund
//! books: the control API below pays, notifies and settles v2 and v3 orders alike, and a v3
//! tenant without `api_key` gets its v2 calls refused. `POST /control/v3/keys` sets which of
//! WeChat's keys signs for a merchant (certificate, public key, or the gradual switch).
//!
//! Service providers (服务商): a tenant table with `sp_mchid`, `sp_appid` and `sub_mchid` (a
//! platform's section plus its tenant's identity) teaches the service provider, and binds the
//! sub-merchant to it. The service provider signs every call; a call for a sub-merchant names it
//! (v2 `sub_mch_id` and `sub_appid`; v3 the partner APIs `/v3/pay/partner/transactions/…`, and
//! `sub_mchid` on refunds) and acts on that sub-merchant's orders and refunds, which the control
//! API finds under `"mch_id": "<sub_mchid>"`. A sub-merchant that is not bound gets `NO_AUTH`
//! (v3: 403). Answers and notifications name both (`mch_id` + `sub_mch_id`; v3 `sp_mchid` +
//! `sub_mchid`), the payer as `sub_openid` when the mini-program is the sub-merchant's, and are
//! signed with the service provider's keys and v3 key mode.
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
//!   A v3 order's copies are signed one by one at sending, by the merchant's key mode, and
//!   `"probe": true` sends WeChat's signature probe instead (`WECHATPAY/SIGNTEST/…`, which a
//!   merchant must refuse).
//! - `POST /control/fail` `{"api": "unifiedorder" | "orderquery" | "closeorder" | "refund" |
//!   "refundquery" | "jscode2session" | "v3_jsapi" | "v3_query" | "v3_close" | "v3_refund" |
//!   "v3_refundquery" | "v3_certificates" | "*", "mode": "SYSTEMERROR" | "http500" | "bad_sign" |
//!   "timeout",
//!   "times": 1}` makes the next `times` matching calls fail, and answers
//!   `{"pending": [{"api", "mode", "remaining"}]}`. `"times": 0` disarms every pending failure
//!   of that `api` (`"*"`: all of them). The modes:
//!   - `SYSTEMERROR`: a signed `result_code=FAIL`, `err_code=SYSTEMERROR` (login: `errcode -1`;
//!     v3: a signed HTTP 500 `{"code": "SYSTEM_ERROR"}`), and nothing is done;
//!   - `http500`: HTTP 500 with a plain-text body, and nothing is done;
//!   - `bad_sign`: the call is done, but the answer's `sign` is wrong (Pay APIs only);
//!   - `timeout`: the call is done, but the answer comes 1 s after the simulator's HTTP timeout.
//! - `POST /control/refund` `{"out_refund_no": "…", "mch_id"?: "…", "status": "SUCCESS" |
//!   "REFUNDCLOSE" | "CHANGE" (v3's names "CLOSED" and "ABNORMAL" too), "notify"?: "deliver" | "drop" | "return"}` settles a refund:
//!   `PROCESSING` may become any of the three, `CHANGE` may become `SUCCESS` or `REFUNDCLOSE`
//!   (an operator's fix); `SUCCESS` stamps `success_time` (Beijing `yyyy-MM-dd HH:mm:ss`).
//!   Giving the refund's current status again resends the same notification bytes; anything
//!   else gets a 409 (`refund_final`). An unknown refund gets a 404 (`refund_not_found`), a
//!   number several merchants use without `mch_id` a 409 (`ambiguous_refund`). The refund
//!   notification (outer `return_code`, `appid`, `mch_id`, `nonce_str`, `req_info`; no `sign`;
//!   `req_info` is the `<root>` of the refund's details, AES-256-ECB encrypted under
//!   hex(MD5(API key)) by the simulator's own code) goes to the refund's `notify_url` with
//!   `deliver` (the default), is not sent with `drop` or `return` (nor when the refund request
//!   had no `notify_url`). The answer is the refund's view plus `"notification"` and
//!   `"deliveries"`.
//! - `POST /control/settings` `{"auto_refund": "SUCCESS" | "REFUNDCLOSE" | "CHANGE" | null}`:
//!   with a status set, every newly accepted refund takes it at once (a refundquery right after
//!   the refund answer already shows it), and its notification is POSTed 300 ms after the answer,
//!   again every second until acknowledged (4 attempts at most). `null` turns it off; `{}` only
//!   reads. The answer is `{"auto_refund": …}`.
//! - `GET /control/orders/{out_trade_no}[?mch_id=…]` returns the simulator's view of the order:
//!   `{"mch_id", "appid", "out_trade_no", "trade_state", "prepay_id", "total_fee", "notify_url",
//!   "trade_type", "sign_type", "openid", "attach", "transaction_id", "time_end",
//!   "paid_after_close", "deliveries", "refunds"}`; each refund is `{"mch_id", "out_trade_no",
//!   "transaction_id", "out_refund_no", "refund_id", "total_fee", "refund_fee", "notify_url",
//!   "refund_status", "success_time", "deliveries"}`.
//! - Bills: `POST /pay/downloadbill` (v2) and `GET /v3/bill/tradebill` + `GET
//!   /v3/billdownload/file` (v3, the file unsigned) serve a merchant's day from its v2 and v3
//!   trades alike (`bills`, `v3::bills`). `POST /control/bill` `{"mch_id", "drop"?, "amounts"?,
//!   "foreign_refunds"?, "corrupt"?: "summary" | "truncate" | "encoding" | "hash"}` sets the
//!   differences its bills show from then on.
//!
//! An unknown path gets a 404, and a known path with the wrong method gets a 405.

pub(crate) mod bills;
mod control;
mod control_refund;
mod envelope;
mod faults;
mod login;
mod merchants;
mod notify;
mod orders;
mod query_close;
mod refund_crypto;
mod refund_notify;
mod refunds;
mod signature;
mod unifiedorder;
mod v3;
mod xml;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use paybridge_core::provider::{SimRequest, SimResponse, Simulator, TlsPeer};
use serde_json::{Value, json};

use envelope::Reply;
use faults::{Api, FaultMode, Faults};
use login::Logins;
use merchants::Registry;
use orders::OrderBook;
use refunds::{RefundBook, RefundStatus};

/// How much later than the HTTP timeout a `timeout` failure answers.
const TIMEOUT_OVERSHOOT: Duration = Duration::from_secs(1);

/// Builds the simulator. `timeout` bounds each notification delivery, and a `timeout` failure
/// answers later than it.
pub fn simulator(timeout: Duration) -> Arc<dyn Simulator> {
    Arc::new(WechatSimulator::new(timeout))
}

/// The WeChat simulator: login, Pay API v2 and the control API, all in memory.
pub struct WechatSimulator {
    // Shared with the tasks that deliver automatic refund notifications after the answer.
    state: Arc<Mutex<State>>,
    http: Option<reqwest::Client>,
    timeout: Duration,
}

#[derive(Debug, Default)]
struct State {
    registry: Registry,
    logins: Logins,
    orders: OrderBook,
    refunds: RefundBook,
    faults: Faults,
    settings: Settings,
    bill_edits: std::collections::HashMap<String, bills::BillEdits>,
    /// v3 bill files handed out through `download_url`.
    bill_files: v3::bills::BillFiles,
    v3: v3::V3State,
}

/// Behaviour switches of `POST /control/settings`.
#[derive(Debug, Default, Clone, Copy)]
struct Settings {
    /// Every newly accepted refund at once moves to this status and its notification is sent.
    auto_refund: Option<RefundStatus>,
}

enum Route<'a> {
    Login,
    DownloadBill,
    ControlBill,
    Pay(Api),
    ControlPay,
    ControlNotify,
    ControlFail,
    ControlRefund,
    ControlSettings,
    ControlOrder(&'a str),
    V3(v3::api::V3Api),
    ControlV3Keys,
}

impl Route<'_> {
    /// The route of a path, and the one method it answers.
    fn of(path: &str) -> Option<(Route<'_>, &'static str)> {
        let route = match path {
            "/sns/jscode2session" => (Route::Login, "GET"),
            "/pay/unifiedorder" => (Route::Pay(Api::UnifiedOrder), "POST"),
            "/pay/orderquery" => (Route::Pay(Api::OrderQuery), "POST"),
            "/pay/closeorder" => (Route::Pay(Api::CloseOrder), "POST"),
            "/secapi/pay/refund" => (Route::Pay(Api::Refund), "POST"),
            "/pay/refundquery" => (Route::Pay(Api::RefundQuery), "POST"),
            "/pay/downloadbill" => (Route::DownloadBill, "POST"),
            "/control/pay" => (Route::ControlPay, "POST"),
            "/control/notify" => (Route::ControlNotify, "POST"),
            "/control/fail" => (Route::ControlFail, "POST"),
            "/control/refund" => (Route::ControlRefund, "POST"),
            "/control/settings" => (Route::ControlSettings, "POST"),
            "/control/bill" => (Route::ControlBill, "POST"),
            "/control/v3/keys" => (Route::ControlV3Keys, "POST"),
            other if other.starts_with("/v3/") => {
                let (api, method) = v3::api::V3Api::of(other)?;
                (Route::V3(api), method)
            }
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
            state: Arc::new(Mutex::new(State::default())),
            http: notify::http_client(timeout),
            timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
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
            headers: Vec::new(),
            body: answer.to_string().into_bytes(),
        }
    }

    /// `POST /control/bill` `{"mch_id", "drop"?, "amounts"?, "foreign_refunds"?, "corrupt"?}`: the
    /// differences this merchant's bills show from now on (replacing earlier ones).
    fn control_bill(&self, body: &[u8]) -> SimResponse {
        let invalid = |message: String| {
            json_response(
                400,
                &serde_json::json!({"error": {"code": "invalid_request", "message": message}}),
            )
        };
        let mut fields: serde_json::Map<String, Value> = match serde_json::from_slice(body) {
            Ok(f) => f,
            Err(e) => return invalid(e.to_string()),
        };
        let Some(Value::String(mch_id)) = fields.remove("mch_id") else {
            return invalid("mch_id is required".to_owned());
        };
        let edits: bills::BillEdits = match serde_json::from_value(Value::Object(fields.clone())) {
            Ok(e) => e,
            Err(e) => {
                return invalid(format!(
                    "{e}; known: drop, amounts, foreign_refunds, corrupt (summary, truncate, encoding, hash)"
                ));
            }
        };
        self.lock().bill_edits.insert(mch_id.clone(), edits);
        json_response(
            200,
            &serde_json::json!({"mch_id": mch_id, "bill": Value::Object(fields)}),
        )
    }

    fn download_bill(&self, body: &[u8]) -> SimResponse {
        let fault = self.take_fault(Api::DownloadBill);
        if fault == Some(FaultMode::Http500) {
            return http_500();
        }
        let state = self.lock();
        let bill = envelope::authenticate(&state.registry, body).and_then(|auth| {
            let edits = state.bill_edits.get(&auth.merchant.mch_id);
            bills::downloadbill(&state.orders, &state.refunds, edits, &auth)
        });
        match bill {
            Ok(bytes) => SimResponse {
                status: 200,
                content_type: "text/plain; charset=utf-8",
                headers: Vec::new(),
                body: bytes,
            },
            Err(reply) => reply.render(false),
        }
    }

    async fn pay_api(&self, api: Api, body: &[u8], tls: Option<&TlsPeer>) -> SimResponse {
        // The TLS layer comes first: over HTTPS, /secapi/ refuses a peer without the merchant
        // API certificate before reading anything.
        if api == Api::Refund && tls.is_some_and(|peer| peer.client_cert_der.is_none()) {
            return Reply::Refused(NO_CERTIFICATE.into()).render(false);
        }
        let fault = self.take_fault(api);
        if fault == Some(FaultMode::Http500) {
            return http_500();
        }
        let mut new_refund = None;
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
                    Api::Refund => {
                        let (reply, created) =
                            refunds::refund(&state.orders, &mut state.refunds, &auth);
                        new_refund = created.map(|no| (auth.merchant.mch_id.clone(), no));
                        reply
                    }
                    Api::RefundQuery => refunds::refundquery(&state.orders, &state.refunds, &auth),
                    Api::Jscode2session
                    | Api::DownloadBill
                    | Api::Any
                    | Api::V3Jsapi
                    | Api::V3Query
                    | Api::V3Close
                    | Api::V3Refund
                    | Api::V3RefundQuery
                    | Api::V3Certificates => Reply::Refused("not a Pay API v2 call".into()),
                },
            }
        };
        if let Some((mch_id, out_refund_no)) = new_refund {
            self.auto_complete_refund(&mch_id, &out_refund_no);
        }
        let response = reply.render(fault == Some(FaultMode::BadSign));
        self.answer_late(fault).await;
        response
    }
}

#[async_trait]
impl Simulator for WechatSimulator {
    fn register_merchant(&self, provider_config: &toml::Table, base_dir: &std::path::Path) {
        let mut state = self.lock();
        // A merchant's key mode starts when it is first seen with v3 credentials (a v2 tenant
        // that moves to v3 later starts then, in the mode its v3 settings name).
        for mch_id in state.registry.register(provider_config, base_dir) {
            if state
                .registry
                .merchant(&mch_id)
                .is_some_and(|m| m.v3.is_some())
            {
                state
                    .v3
                    .modes
                    .entry(mch_id)
                    .or_insert_with(|| v3::merchant::KeyState::initial(provider_config));
            }
        }
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
            Route::DownloadBill => self.download_bill(&request.body),
            Route::ControlBill => self.control_bill(&request.body),
            Route::Pay(api) => self.pay_api(api, &request.body, request.tls.as_ref()).await,
            Route::ControlPay => self.control_pay(&request.body).await,
            Route::ControlNotify => self.control_notify(&request.body).await,
            Route::ControlFail => self.control_fail(&request.body),
            Route::ControlRefund => self.control_refund(&request.body).await,
            Route::ControlSettings => self.control_settings(&request.body),
            Route::ControlOrder(number) => {
                self.control_order(&percent_decode(number), &request.query)
            }
            Route::V3(api) => {
                let fault = self.take_fault(api.fault_api());
                if fault == Some(FaultMode::Http500) {
                    return http_500();
                }
                let served = v3::api::serve(&mut self.lock(), &api, &request, fault);
                if let Some((mch_id, out_refund_no)) = served.new_refund {
                    self.auto_complete_refund(&mch_id, &out_refund_no);
                }
                self.answer_late(fault).await;
                served.response
            }
            Route::ControlV3Keys => self.control_v3_keys(&request.body),
        }
    }
}

/// `return_msg` of a `/secapi/` call over HTTPS without a client certificate.
const NO_CERTIFICATE: &str = "证书错误: 请求未携带商户API证书 (client certificate required)";

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn http_500() -> SimResponse {
    SimResponse {
        status: 500,
        content_type: "text/plain",
        headers: Vec::new(),
        body: b"Internal Server Error".to_vec(),
    }
}

fn json_response(status: u16, value: &Value) -> SimResponse {
    SimResponse {
        status,
        content_type: "application/json",
        headers: Vec::new(),
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
