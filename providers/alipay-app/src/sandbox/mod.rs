//! The sandbox simulator of Alipay's server side, mounted at `/sandbox/alipay_app`.
//!
//! It serves `POST /gateway.do` like Alipay's OpenAPI gateway for `alipay.trade.query`,
//! `alipay.trade.close`, `alipay.trade.refund` and `alipay.trade.fastpay.refund.query`, and
//! plays the Alipay app's cashier for orderStrings. Every request is checked with the
//! simulator's own form decoder, sign-content builder and RSA2 verifier (the `rsa` crate, never
//! the merchant client's code), against the app public key derived from each tenant's
//! `[providers.alipay_app]` `private_key`. Answers and notifications are signed with the sandbox
//! platform key, whose public half `sandbox-keys/alipay_sandbox_public.pem` tenants configure as
//! `alipay_public_key`. Everything is in memory.
//!
//! # Gateway
//!
//! Common parameters may come in the query string, the form body, or both (none twice).
//! Checked in this order: `method` (40001 `isv.missing-method`, 40002 `isv.invalid-method`),
//! `app_id` present, `charset` = `utf-8`, `format` absent or `JSON`, `sign_type` = `RSA2`,
//! `timestamp` = `yyyy-MM-dd HH:mm:ss` within ±10 min of Beijing time (`isv.invalid-timestamp`),
//! `version` = `1.0`, `app_id` known (`isv.invalid-app-id`), `sign` over every parameter but
//! `sign`, empties dropped, sorted, raw values (40002 `isv.invalid-signature`; the `sub_msg`
//! shows the sign content the sandbox built), `biz_content` a JSON object. Answers are
//! `{"<method_with_underscores>_response": {…}, "sign": "…"}`, the `sign` over the exact inner
//! JSON text; refusals before the method is known use `error_response`. The state rules:
//! - query: `WAIT_BUYER_PAY`, `TRADE_SUCCESS`, `TRADE_FINISHED` or `TRADE_CLOSED`; a trade exists
//!   only once its orderString was opened in the cashier (else 40004 `ACQ.TRADE_NOT_EXIST`).
//! - close: `WAIT_BUYER_PAY` → `TRADE_CLOSED`; paid → `ACQ.REASON_TRADE_STATUS_INVALID`; closed →
//!   `ACQ.TRADE_STATUS_ERROR`.
//! - refund: only `TRADE_SUCCESS` (`TRADE_FINISHED` → `ACQ.TRADE_HAS_FINISHED`, others →
//!   `ACQ.TRADE_STATUS_ERROR`); `refund_amount` strict 2-decimal yuan (`ACQ.INVALID_PARAMETER`),
//!   zero → `ACQ.REASON_TRADE_REFUND_FEE_ERR`, beyond the refundable rest (or a partial amount
//!   without `out_request_no`) → `ACQ.REFUND_AMT_NOT_EQUAL_TOTAL`. The same `out_request_no`
//!   again: same amount → success with `fund_change=N`, other amount →
//!   `ACQ.DISCORDANT_REPEAT_REQUEST` (checked before the status, so a repeat after a full refund
//!   still succeeds). An accepted refund answers `fund_change=Y`, `refund_fee` = cumulative,
//!   closes the trade when the total is reached, and sends a notification (`refund_fee`,
//!   `gmt_refund` with milliseconds, `out_biz_no` = `out_request_no`, `trade_status`
//!   `TRADE_SUCCESS` or `TRADE_CLOSED`). The answer waits up to 0.5 s (or the timeout, if
//!   shorter) for that delivery, then lets it finish in the background: a prompt merchant has it
//!   first, one whose notify handler waits for the refund answer is not deadlocked.
//! - refund query: `REFUND_SUCCESS` with amounts; an unknown `out_request_no` is `10000` with no
//!   refund fields.
//!
//! # Control API
//!
//! JSON in and out. Errors are `{"error": {"code", "message", "field"?}}`: bad JSON or an
//! unknown key is a 400 (`invalid_request`), an unknown trade a 404 (`trade_not_found`), an
//! order number several apps use, given without `app_id`, a 409 (`ambiguous_trade`).
//!
//! - `POST /control/cashier` `{"order_string": "…", "pay": true, "notify": "deliver",
//!   "copies": 2}` — what the Alipay app does with an orderString. It is form-decoded once
//!   (`%20` and `+` are both spaces), its `sign` verified with the app public key, and
//!   `app_id` (known), `method` = `alipay.trade.app.pay`, `charset` = `utf-8`, `sign_type` =
//!   `RSA2`, `version` = `1.0`, `timestamp` format (not its age), `notify_url` (http/https),
//!   `biz_content.product_code` = `QUICK_MSECURITY_PAY`, `out_trade_no` (≤64), `subject`
//!   (≤256), `total_amount` (a JSON string, strict 2-decimal yuan in [0.01, 100000000.00]),
//!   `body` (≤128) and `timeout_express` (`1m`–`15d`, `1c`) checked. A refusal is a 400
//!   `invalid_order_string` naming the `field` (e.g. `sign`, `biz_content.total_amount`).
//!   Then the trade is opened (`WAIT_BUYER_PAY`, a 28-digit `trade_no`); opening the same
//!   orderString again reuses an unpaid trade, while a paid or closed one, or the same
//!   `out_trade_no` with another amount, subject, body or notify_url, is a 409 (`trade_paid`,
//!   `trade_closed`, `order_string_conflict`). With `"pay": true` (the default) the trade is
//!   paid (`TRADE_SUCCESS`, `gmt_payment` now) and its signed notification, depending on
//!   `notify`:
//!   - `deliver` (the default): POSTed to the `notify_url` (`copies` times, default 1);
//!   - `duplicate`: POSTed `copies` times (default 2, at most 50) at once, same `notify_id`;
//!   - `tamper`: POSTed (`copies` times, default 1) with `total_amount` raised by 1.00 after
//!     signing (a merchant must refuse it; the trade stays paid at the simulator);
//!   - `drop`: not sent (lost); `return`: not sent, take it from the answer.
//!
//!   The answer is `{"app_id", "out_trade_no", "trade_no", "trade_status", "notify_id",
//!   "notification": "<form body as sent>", "deliveries": [{"at", "notify_id",
//!   "trade_status", "tampered", "status", "acknowledged", "body", "error"?}]}`
//!   (`notify_id`/`notification` are null and `deliveries` empty when not paid). A delivery is
//!   acknowledged only by HTTP 200 with the body exactly `success`; each attempt is bounded by
//!   the simulator's timeout, and the call answers when all are done.
//! - `POST /control/notify` `{"out_trade_no": "…", "app_id"?: "…", "trade_status"?:
//!   "TRADE_SUCCESS" | "TRADE_FINISHED" | "TRADE_CLOSED", "copies"?: 1}` — without
//!   `trade_status`, redelivers the trade's latest notification byte for byte (same `notify_id`)
//!   if it reports the current status, else builds one for the current status. With
//!   `trade_status`, builds a new notification (new `notify_id`): `TRADE_SUCCESS` needs a
//!   `TRADE_SUCCESS` trade (refund fields of its latest refund included, if any);
//!   `TRADE_FINISHED` moves a paid trade to `TRADE_FINISHED` (no more refunds);
//!   `TRADE_CLOSED` closes an unpaid trade first (a paid one cannot be closed this way). A
//!   status the trade cannot report is a 409 (`wrong_trade_status`). Answers
//!   `{"notify_id", "trade_status", "notification", "deliveries": […]}`.
//! - `POST /control/fail` `{"method": "alipay.trade.query" | "alipay.trade.close" |
//!   "alipay.trade.refund" | "alipay.trade.fastpay.refund.query" | "*", "mode": "20000" |
//!   "http500" | "bad_sign" | "timeout", "times": 1}` — the next `times` matching gateway calls
//!   fail: `20000` = a signed `code 20000`/`isp.unknow-error` answer, nothing done; `http500` =
//!   HTTP 500 plain text, nothing done; `bad_sign` = done, but the answer's `sign` is wrong;
//!   `timeout` = done, answered 1 s after the simulator's timeout. `"times": 0` disarms that
//!   method's pending failures (`"*"`: all). Answers `{"pending": [{"method", "mode",
//!   "remaining"}]}`.
//! - `POST /control/auth_code` `{"auth_app_id": "…"}` — a merchant of a third-party app
//!   authorises it again: answers `{"app_auth_code"}`, a one-time code that
//!   `alipay.open.auth.token.app` (`grant_type=authorization_code`, signed by the third-party
//!   app alone, without `app_auth_token`) exchanges for a new `app_auth_token` and
//!   `app_refresh_token` (`grant_type=refresh_token` uses the latter). Either exchange ends the
//!   merchant's earlier tokens; an unknown or used code is `40004 isv.code-invalid`, a refresh
//!   token `isv.refresh-token-invalid`.
//! - `GET /control/trades/{out_trade_no}[?app_id=…]` — `{"app_id", "out_trade_no", "trade_no",
//!   "trade_status", "total_amount", "refunded_amount", "subject", "body", "passback_params",
//!   "notify_url", "buyer_id", "buyer_logon_id", "gmt_create", "gmt_payment", "gmt_close",
//!   "refunds": [{"out_request_no", "refund_amount", "refund_reason", "gmt_refund_pay",
//!   "gmt_refund"}], "notifications": [{"notify_id", "trade_status", "out_biz_no"}],
//!   "deliveries": […]}`.
//!
//! - Bills: `alipay.data.dataservice.bill.downloadurl.query` (`bill_type=trade`) answers a
//!   `bill_download_url` (`GET /downloadBillFile.resource?…&token=`, good for 30 s) to the
//!   day's zip written from the app's trades (`bills`). `POST /control/bill` `{"app_id",
//!   "drop"?, "amounts"?, "foreign_refunds"?: [{"out_trade_no", "out_request_no", "amount"}],
//!   "corrupt"?: "summary" | "truncate" | "encoding"}` sets the differences its bills show.
//!
//! An unknown path is a 404; a known path with the wrong method a 405.

mod auth;
mod bills;
mod cashier;
mod certs;
mod control;
mod faults;
mod form;
mod gateway;
mod merchants;
mod money;
mod notify;
mod rsa2;
mod trade_api;
mod trades;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use paybridge_core::provider::{SimRequest, SimResponse, Simulator};
use serde_json::{Value, json};

use faults::{Api, FaultMode, Faults};
use gateway::Reply;
use merchants::Registry;
use rsa2::Rsa2Signer;
use trade_api::Dispatch;
use trades::{Delivery, TradeBook};

/// How long a gateway answer waits for the notification its call caused.
const NOTIFY_GRACE: Duration = Duration::from_millis(500);

/// How much later than the timeout a `timeout` failure answers.
const TIMEOUT_OVERSHOOT: Duration = Duration::from_secs(1);

/// Builds the simulator. `timeout` bounds each notification delivery, and a `timeout` failure
/// answers later than it.
pub fn simulator(timeout: Duration) -> Arc<dyn Simulator> {
    Arc::new(AlipaySimulator::new(timeout))
}

/// The Alipay simulator: gateway, cashier and control API, all in memory.
pub struct AlipaySimulator {
    state: Arc<Mutex<State>>,
    platform: Result<Rsa2Signer, String>,
    certs: Result<certs::Certs, String>,
    http: Option<reqwest::Client>,
    timeout: Duration,
}

#[derive(Debug, Default)]
struct State {
    registry: Registry,
    trades: TradeBook,
    faults: Faults,
    /// Which certificate signs answers to apps in certificate mode.
    answer_cert: certs::Which,
    /// Bills handed out through `bill_download_url`.
    bill_files: bills::BillFiles,
    /// Differences injected into an app's bills, by app id.
    bill_edits: std::collections::HashMap<String, bills::BillEdits>,
}

enum Route<'a> {
    Gateway,
    Cashier,
    Notify,
    Fail,
    Cert,
    AuthCode,
    Bill,
    BillFile,
    Trade(&'a str),
}

impl Route<'_> {
    /// The route of a path, and the one method it answers.
    fn of(path: &str) -> Option<(Route<'_>, &'static str)> {
        let route = match path {
            "/gateway.do" => (Route::Gateway, "POST"),
            "/control/cashier" => (Route::Cashier, "POST"),
            "/control/notify" => (Route::Notify, "POST"),
            "/control/fail" => (Route::Fail, "POST"),
            "/control/cert" => (Route::Cert, "POST"),
            "/control/auth_code" => (Route::AuthCode, "POST"),
            "/control/bill" => (Route::Bill, "POST"),
            "/downloadBillFile.resource" => (Route::BillFile, "GET"),
            other => {
                let number = other
                    .strip_prefix("/control/trades/")
                    .filter(|n| !n.is_empty() && !n.contains('/'))?;
                (Route::Trade(number), "GET")
            }
        };
        Some(route)
    }
}

impl AlipaySimulator {
    /// A simulator with no apps yet.
    pub fn new(timeout: Duration) -> Self {
        let platform = Rsa2Signer::platform();
        let certs = platform
            .as_ref()
            .map_err(Clone::clone)
            .and_then(certs::Certs::load);
        AlipaySimulator {
            state: Arc::new(Mutex::new(State::default())),
            platform,
            certs,
            http: notify::http_client(timeout),
            timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    async fn gateway(&self, platform: &Rsa2Signer, request: &SimRequest) -> SimResponse {
        let (query, body) = (request.query.as_str(), &request.body[..]);
        let parsed = gateway::read_params(query, body)
            .and_then(|params| gateway::method(&params).map(|api| (params, api)));
        let (params, api) = match parsed {
            Ok(parsed) => parsed,
            Err(refusal) => return refusal.render(platform, None, false),
        };
        let fault = self.lock().faults.take(api);
        if fault == Some(FaultMode::Http500) {
            return SimResponse {
                status: 500,
                content_type: "text/plain",
                headers: Vec::new(),
                body: b"Internal Server Error".to_vec(),
            };
        }
        let (reply, dispatch, signed_by) = {
            let mut state = self.lock();
            let state = &mut *state;
            let authenticated = gateway::authenticate(&state.registry, api, &params);
            // An app in certificate mode gets answers that name the signing certificate.
            let cert_mode = authenticated.as_ref().is_ok_and(|call| {
                state
                    .registry
                    .get(&call.app_id)
                    .is_some_and(|m| m.cert.is_some())
            });
            let signed_by = match (&self.certs, cert_mode) {
                (Ok(certs), true) => Some(certs.get(state.answer_cert).clone()),
                _ => None,
            };
            let (reply, dispatch) = match authenticated {
                Err(refusal) => (refusal, None),
                Ok(_) if fault == Some(FaultMode::Unavailable) => (Reply::unavailable(api), None),
                Ok(call) => match (api, state.registry.get(&call.app_id)) {
                    (Api::CertDownload, _) => (self.cert_download(&call), None),
                    (Api::AuthToken, _) => (auth::token(&mut state.registry, &call), None),
                    (Api::Query, _) => (trade_api::query(&state.trades, &call), None),
                    (Api::Close, _) => (trade_api::close(&mut state.trades, &call), None),
                    (Api::RefundQuery, _) => (trade_api::refund_query(&state.trades, &call), None),
                    (Api::Refund, Some(merchant)) => {
                        trade_api::refund(&mut state.trades, &call, merchant, platform)
                    }
                    (Api::BillDownloadUrl, Some(merchant)) => (
                        bills::downloadurl_query(
                            &state.trades,
                            &mut state.bill_files,
                            state.bill_edits.get(&call.app_id),
                            &merchant.seller_id,
                            &call,
                            &request.base,
                        ),
                        None,
                    ),
                    (Api::Refund | Api::BillDownloadUrl | Api::Any, _) => {
                        (Reply::unavailable(api), None)
                    }
                },
            };
            (reply, dispatch, signed_by)
        };
        if let Some(dispatch) = dispatch {
            self.deliver_in_background(dispatch).await;
        }
        let bad_sign = fault == Some(FaultMode::BadSign);
        let response = match &signed_by {
            Some(cert) => reply.render(&cert.signer, Some(&cert.sn), bad_sign),
            None => reply.render(platform, None, bad_sign),
        };
        if fault == Some(FaultMode::Timeout) {
            tokio::time::sleep(self.timeout.saturating_add(TIMEOUT_OVERSHOOT)).await;
        }
        response
    }

    /// Sends a notification and records the attempts; the caller waits.
    async fn deliver(&self, dispatch: Dispatch, copies: u32) -> Vec<Delivery> {
        deliver_and_record(self.state.clone(), self.http.clone(), dispatch, copies).await
    }

    /// Sends a notification in the background. The caller waits at most [`NOTIFY_GRACE`] (or
    /// the timeout, if shorter) for it: a prompt merchant has the notification before the
    /// gateway answer, as usually happens with Alipay, while a merchant whose notify handler
    /// waits for that very answer (e.g. on a database lock) is not deadlocked.
    async fn deliver_in_background(&self, dispatch: Dispatch) {
        let task = deliver_and_record(self.state.clone(), self.http.clone(), dispatch, 1);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("alipay sandbox: no tokio runtime, notification not sent");
            return;
        };
        let delivery = runtime.spawn(task);
        let _ = tokio::time::timeout(NOTIFY_GRACE.min(self.timeout), delivery).await;
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn deliver_and_record(
    state: Arc<Mutex<State>>,
    http: Option<reqwest::Client>,
    dispatch: Dispatch,
    copies: u32,
) -> Vec<Delivery> {
    let Dispatch {
        app_id,
        out_trade_no,
        url,
        outgoing,
    } = dispatch;
    let deliveries = notify::deliver(http, url, outgoing, copies).await;
    if let Some(trade) = lock(&state).trades.get_mut(&app_id, &out_trade_no) {
        trade.deliveries.extend(deliveries.iter().cloned());
    }
    deliveries
}

#[async_trait]
impl Simulator for AlipaySimulator {
    fn register_merchant(&self, provider_config: &toml::Table, base_dir: &std::path::Path) {
        self.lock().registry.register(provider_config, base_dir);
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
        let platform = match &self.platform {
            Ok(platform) => platform,
            Err(e) => {
                return json_error(500, "sandbox_broken", &format!("platform key: {e}"));
            }
        };
        match route {
            Route::Gateway => self.gateway(platform, &request).await,
            Route::Bill => self.control_bill(&request.body),
            Route::BillFile => bills::download(&self.lock().bill_files, &request.query),
            Route::Cashier => self.control_cashier(platform, &request.body).await,
            Route::Notify => self.control_notify(platform, &request.body).await,
            Route::Fail => self.control_fail(&request.body),
            Route::Cert => self.control_cert(&request.body),
            Route::AuthCode => auth::issue_code(&mut self.lock().registry, &request.body),
            Route::Trade(number) => {
                // An order number may carry `|` or `*`, which clients percent-encode in a path.
                let number = percent_encoding::percent_decode_str(number).decode_utf8_lossy();
                self.control_trade(&number, &request.query)
            }
        }
    }
}

impl AlipaySimulator {
    /// `POST /control/bill` `{"app_id", "drop"?, "amounts"?, "foreign_refunds"?, "corrupt"?}`:
    /// the differences this app's bills show from now on (replacing earlier ones).
    fn control_bill(&self, body: &[u8]) -> SimResponse {
        let invalid = |message: String| json_error(400, "invalid_request", &message);
        let mut fields: serde_json::Map<String, Value> = match serde_json::from_slice(body) {
            Ok(f) => f,
            Err(e) => return invalid(e.to_string()),
        };
        let Some(Value::String(app_id)) = fields.remove("app_id") else {
            return invalid("app_id is required".to_owned());
        };
        let edits: bills::BillEdits = match serde_json::from_value(Value::Object(fields.clone())) {
            Ok(e) => e,
            Err(e) => {
                return invalid(format!(
                    "{e}; known: drop, amounts, foreign_refunds, corrupt (summary, truncate, encoding)"
                ));
            }
        };
        self.lock().bill_edits.insert(app_id.clone(), edits);
        json_response(
            200,
            &json!({"app_id": app_id, "bill": Value::Object(fields)}),
        )
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
