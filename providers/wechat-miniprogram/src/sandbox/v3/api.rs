//! The v3 Pay API endpoints: who is calling (the `Authorization` check), then JSAPI prepay,
//! query, close, refund, refund query and the platform certificates.

use std::sync::Arc;

use chrono::Utc;
use paybridge_core::provider::{SimRequest, SimResponse};
use serde::Deserialize;
use serde_json::json;

use super::keys::verify_merchant;
use super::merchant::V3Merchant;
use super::{SCHEME, error, error_body};
use crate::sandbox::State;
use crate::sandbox::faults::{Api, FaultMode};
use crate::sandbox::merchants::Merchant;
use crate::sandbox::orders::{Order, OrderPartner, Protocol, TradeState, new_prepay_id};
use crate::sandbox::refunds::{Refund, RefundStatus, refunded, valid_out_refund_no};
use crate::sandbox::unifiedorder::{valid_notify_url, valid_out_trade_no};
use crate::sandbox::xml::Fields;

/// Requests older or newer than this are refused.
const MAX_SKEW_SECONDS: i64 = 300;
/// Bodies above this are refused.
const MAX_BODY: usize = 64 * 1024;
/// At most this many refunds of one order.
const MAX_REFUNDS_PER_ORDER: usize = 50;

/// A v3 endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum V3Api {
    Jsapi,
    Query(String),
    Close(String),
    /// The service providers' `/v3/pay/partner/transactions/…` APIs.
    PartnerJsapi,
    PartnerQuery(String),
    PartnerClose(String),
    Refund,
    RefundQuery(String),
    Certificates,
    /// `/v3/bill/tradebill`.
    TradeBill,
    /// `/v3/billdownload/file`: a bill, unsigned.
    BillFile,
}

impl V3Api {
    /// The name `/control/fail` knows this endpoint by.
    pub(crate) fn fault_api(&self) -> Api {
        match self {
            V3Api::Jsapi | V3Api::PartnerJsapi => Api::V3Jsapi,
            V3Api::Query(_) | V3Api::PartnerQuery(_) => Api::V3Query,
            V3Api::Close(_) | V3Api::PartnerClose(_) => Api::V3Close,
            V3Api::Refund => Api::V3Refund,
            V3Api::RefundQuery(_) => Api::V3RefundQuery,
            V3Api::Certificates => Api::V3Certificates,
            V3Api::TradeBill | V3Api::BillFile => Api::DownloadBill,
        }
    }

    /// The endpoint of a path below `/v3/`, and the one method it answers.
    pub(crate) fn of(path: &str) -> Option<(V3Api, &'static str)> {
        let decode = |segment: &str| -> Option<String> {
            (!segment.is_empty() && !segment.contains('/'))
                .then(|| crate::sandbox::percent_decode(segment))
        };
        if path == "/v3/pay/transactions/jsapi" {
            return Some((V3Api::Jsapi, "POST"));
        }
        if path == "/v3/pay/partner/transactions/jsapi" {
            return Some((V3Api::PartnerJsapi, "POST"));
        }
        if let Some(rest) = path.strip_prefix("/v3/pay/partner/transactions/out-trade-no/") {
            if let Some(no) = rest.strip_suffix("/close") {
                return Some((V3Api::PartnerClose(decode(no)?), "POST"));
            }
            return Some((V3Api::PartnerQuery(decode(rest)?), "GET"));
        }
        if path == "/v3/refund/domestic/refunds" {
            return Some((V3Api::Refund, "POST"));
        }
        if path == "/v3/certificates" {
            return Some((V3Api::Certificates, "GET"));
        }
        if path == "/v3/bill/tradebill" {
            return Some((V3Api::TradeBill, "GET"));
        }
        if path == "/v3/billdownload/file" {
            return Some((V3Api::BillFile, "GET"));
        }
        if let Some(rest) = path.strip_prefix("/v3/pay/transactions/out-trade-no/") {
            if let Some(no) = rest.strip_suffix("/close") {
                return Some((V3Api::Close(decode(no)?), "POST"));
            }
            return Some((V3Api::Query(decode(rest)?), "GET"));
        }
        if let Some(no) = path.strip_prefix("/v3/refund/domestic/refunds/") {
            return Some((V3Api::RefundQuery(decode(no)?), "GET"));
        }
        None
    }
}

/// The parameters of an `Authorization` header, by name.
fn authorization_params(header: &str) -> Option<Vec<(&str, &str)>> {
    let rest = header.strip_prefix(SCHEME)?.strip_prefix(' ')?;
    rest.split(',')
        .map(|part| {
            let (name, value) = part.trim().split_once('=')?;
            let value = value.strip_prefix('"')?.strip_suffix('"')?;
            Some((name, value))
        })
        .collect()
}

/// Checks the request's signature in WeChat's order; the merchant it came from.
fn authenticate(
    state: &State,
    request: &SimRequest,
) -> Result<(Merchant, Arc<V3Merchant>), SimResponse> {
    let sign_error = |message: &str| error(401, "SIGN_ERROR", message);
    let header = request
        .header("authorization")
        .ok_or_else(|| sign_error("缺少Authorization请求头"))?;
    let params = authorization_params(header)
        .ok_or_else(|| sign_error("Authorization格式错误: WECHATPAY2-SHA256-RSA2048 k=\"v\",…"))?;
    let param = |name: &str| {
        params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_empty())
    };
    let (Some(mchid), Some(nonce), Some(timestamp), Some(serial), Some(signature)) = (
        param("mchid"),
        param("nonce_str"),
        param("timestamp"),
        param("serial_no"),
        param("signature"),
    ) else {
        return Err(sign_error(
            "Authorization缺少mchid、nonce_str、timestamp、serial_no或signature",
        ));
    };
    let merchant = state
        .registry
        .signer(mchid)
        .cloned()
        .ok_or_else(|| sign_error("商户号不存在"))?;
    let v3 = merchant
        .v3
        .clone()
        .ok_or_else(|| sign_error("商户未开通APIv3 (the tenant has no apiv3_key)"))?;
    if !serial.eq_ignore_ascii_case(&v3.serial_no) {
        return Err(sign_error("商户证书序列号有误"));
    }
    let sent: i64 = timestamp
        .parse()
        .map_err(|_| sign_error("timestamp格式错误"))?;
    if (Utc::now().timestamp() - sent).abs() >= MAX_SKEW_SECONDS {
        return Err(sign_error("请求时间戳与当前时间相差超过5分钟"));
    }
    let path = if request.query.is_empty() {
        request.path.clone()
    } else {
        format!("{}?{}", request.path, request.query)
    };
    let body = String::from_utf8_lossy(&request.body);
    let message = format!("{}\n{path}\n{timestamp}\n{nonce}\n{body}\n", request.method);
    if !verify_merchant(&v3.public_key, message.as_bytes(), signature) {
        return Err(sign_error("签名错误"));
    }
    Ok((merchant, v3))
}

/// What a served call produced.
pub(crate) struct Served {
    /// The answer.
    pub(crate) response: SimResponse,
    /// `(mch_id, out_refund_no)` of a refund it created.
    pub(crate) new_refund: Option<(String, String)>,
}

/// Serves one v3 call; `fault` is the injected failure it takes, if any (`http500` and
/// `timeout` are the caller's: nothing is served, or the answer is late).
pub(crate) fn serve(
    state: &mut State,
    api: &V3Api,
    request: &SimRequest,
    fault: Option<FaultMode>,
) -> Served {
    let plain = |response| Served {
        response,
        new_refund: None,
    };
    if request.body.len() > MAX_BODY {
        return plain(error(400, "PARAM_ERROR", "请求体过大"));
    }
    let (merchant, v3) = match authenticate(state, request) {
        Ok(found) => found,
        Err(response) => return plain(response),
    };
    let mch_id = merchant.mch_id.clone();
    if *api == V3Api::BillFile {
        // WeChat Pay does not sign files.
        return plain(super::bills::file(state, &mch_id, &request.query));
    }
    let named = state.v3.named(&mch_id, request.header("wechatpay-serial"));
    if fault == Some(FaultMode::SystemError) {
        let body = error_body("SYSTEM_ERROR", "系统错误");
        return plain(state.v3.answer(&mch_id, named, 500, body, false));
    }
    let mut new_refund = None;
    let (status, body) = match acting_for(state, &merchant, api, request) {
        Err(answer) => answer,
        Ok(acting) => match api {
            V3Api::Jsapi => jsapi(state, &merchant, &request.body),
            V3Api::PartnerJsapi => partner_jsapi(state, &acting, &request.body),
            V3Api::Query(no) => query(state, &merchant, no, &request.query),
            V3Api::PartnerQuery(no) => partner_query(state, &acting, no),
            V3Api::Close(no) | V3Api::PartnerClose(no) => close_order(state, &acting, no),
            V3Api::Refund => {
                let (status, body, created) = refund(state, &acting, &request.body);
                new_refund = created.map(|no| (acting.mch_id.clone(), no));
                (status, body)
            }
            V3Api::RefundQuery(no) => refund_query(state, &acting, no),
            V3Api::Certificates => certificates(state, &merchant, &v3),
            V3Api::TradeBill => {
                super::bills::tradebill(state, &mch_id, &acting, &request.query, &request.base)
            }
            // Served before the answer-signing path (files are not signed).
            V3Api::BillFile => fail(500, "SYSTEM_ERROR", "the bill file is served unsigned"),
        },
    };
    Served {
        response: state.v3.answer(
            &mch_id,
            named,
            status,
            body,
            fault == Some(FaultMode::BadSign),
        ),
        new_refund,
    }
}

type Answer = (u16, String);

/// The merchant a call acts for: the caller itself, or for a service provider the sub-merchant
/// the call names (body or query `sub_mchid`, with `sp_mchid` its own), which must be bound to
/// it (`403 NO_AUTH` otherwise). A direct close is checked here too (`mchid` in the body).
fn acting_for(
    state: &State,
    caller: &Merchant,
    api: &V3Api,
    request: &SimRequest,
) -> Result<Merchant, Answer> {
    #[derive(Deserialize)]
    struct Ids {
        mchid: Option<String>,
        sp_mchid: Option<String>,
        sub_mchid: Option<String>,
    }
    let from_query = |name: &str| query_param(&request.query, name);
    let ids = match api {
        V3Api::PartnerQuery(_) => Ids {
            mchid: None,
            sp_mchid: from_query("sp_mchid"),
            sub_mchid: from_query("sub_mchid"),
        },
        V3Api::RefundQuery(_) | V3Api::TradeBill => Ids {
            mchid: None,
            sp_mchid: None,
            sub_mchid: from_query("sub_mchid"),
        },
        V3Api::PartnerJsapi | V3Api::PartnerClose(_) | V3Api::Close(_) | V3Api::Refund => {
            parse(&request.body)?
        }
        V3Api::Jsapi | V3Api::Query(_) | V3Api::Certificates | V3Api::BillFile => {
            return Ok(caller.clone());
        }
    };
    if matches!(api, V3Api::Close(_)) && ids.mchid.as_deref() != Some(caller.mch_id.as_str()) {
        return Err(fail(400, "PARAM_ERROR", "mchid与请求头中的商户号不一致"));
    }
    let partner_api = matches!(
        api,
        V3Api::PartnerJsapi | V3Api::PartnerQuery(_) | V3Api::PartnerClose(_)
    );
    if partner_api && ids.sp_mchid.as_deref() != Some(caller.mch_id.as_str()) {
        return Err(fail(
            400,
            "PARAM_ERROR",
            "sp_mchid缺失或与请求头中的商户号不一致",
        ));
    }
    match ids.sub_mchid.filter(|s| !s.is_empty()) {
        None if partner_api => Err(fail(400, "PARAM_ERROR", "缺少参数sub_mchid")),
        None => Ok(caller.clone()),
        Some(sub_mchid) => state
            .registry
            .sub_merchant(&caller.mch_id, &sub_mchid)
            .cloned()
            .ok_or_else(|| fail(403, "NO_AUTH", "子商户号与服务商未建立受理关系")),
    }
}

fn fail(status: u16, code: &str, message: &str) -> Answer {
    (status, error_body(code, message))
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Answer> {
    serde_json::from_slice(body)
        .map_err(|e| fail(400, "PARAM_ERROR", &format!("请求体格式错误: {e}")))
}

#[derive(Deserialize)]
struct Amount {
    total: i64,
    currency: Option<String>,
}

#[derive(Deserialize)]
struct Payer {
    openid: String,
}

/// What a JSAPI prepay asks, direct or partner.
#[derive(Deserialize)]
struct Prepay {
    description: String,
    out_trade_no: String,
    notify_url: String,
    amount: Amount,
    attach: Option<String>,
    time_expire: Option<String>,
}

#[derive(Deserialize)]
struct DirectPrepay {
    appid: String,
    mchid: String,
    payer: Payer,
    #[serde(flatten)]
    prepay: Prepay,
}

#[derive(Deserialize)]
struct PartnerPayer {
    sp_openid: Option<String>,
    sub_openid: Option<String>,
}

#[derive(Deserialize)]
struct PartnerPrepay {
    sp_appid: String,
    sub_appid: Option<String>,
    payer: PartnerPayer,
    #[serde(flatten)]
    prepay: Prepay,
}

/// `POST /v3/pay/transactions/jsapi`
fn jsapi(state: &mut State, merchant: &Merchant, body: &[u8]) -> Answer {
    let d: DirectPrepay = match parse(body) {
        Ok(d) => d,
        Err(answer) => return answer,
    };
    if d.mchid != merchant.mch_id {
        return fail(400, "PARAM_ERROR", "mchid与请求头中的商户号不一致");
    }
    if d.appid != merchant.appid {
        return fail(400, "APPID_MCHID_NOT_MATCH", "appid和mchid不匹配");
    }
    create(state, merchant, d.prepay, &d.appid, d.payer.openid, None)
}

/// `POST /v3/pay/partner/transactions/jsapi`, for the sub-merchant `merchant` (already bound
/// to the caller): the payer is a `sub_openid` of `sub_appid` or an `sp_openid` of `sp_appid`.
fn partner_jsapi(state: &mut State, merchant: &Merchant, body: &[u8]) -> Answer {
    let p: PartnerPrepay = match parse(body) {
        Ok(p) => p,
        Err(answer) => return answer,
    };
    let Some(partner) = &merchant.partner else {
        return fail(403, "NO_AUTH", "子商户号与服务商未建立受理关系");
    };
    if p.sp_appid != merchant.appid {
        return fail(400, "APPID_MCHID_NOT_MATCH", "sp_appid和sp_mchid不匹配");
    }
    if p.sub_appid.is_some() && p.sub_appid != partner.sub_appid {
        return fail(400, "APPID_MCHID_NOT_MATCH", "sub_appid和sub_mchid不匹配");
    }
    let (payer_appid, openid) = match (&p.sub_appid, p.payer.sub_openid, p.payer.sp_openid) {
        (Some(sub_appid), Some(openid), None) => (sub_appid.clone(), openid),
        (None, None, Some(openid)) => (p.sp_appid.clone(), openid),
        _ => {
            return fail(
                400,
                "PARAM_ERROR",
                "payer须为sp_openid(无sub_appid时)或sub_openid(有sub_appid时)之一",
            );
        }
    };
    let order_partner = OrderPartner {
        sp_mchid: partner.sp_mchid.clone(),
        sub_appid: p.sub_appid,
    };
    create(
        state,
        merchant,
        p.prepay,
        &payer_appid,
        openid,
        Some(order_partner),
    )
}

/// Checks and books a JSAPI prepay of `merchant` for the payer `openid` of `payer_appid`.
fn create(
    state: &mut State,
    merchant: &Merchant,
    p: Prepay,
    payer_appid: &str,
    openid: String,
    partner: Option<OrderPartner>,
) -> Answer {
    if !(1..=127).contains(&p.description.chars().count()) {
        return fail(400, "PARAM_ERROR", "description长度须为1-127个字符");
    }
    if !valid_out_trade_no(&p.out_trade_no) {
        return fail(
            400,
            "PARAM_ERROR",
            "out_trade_no格式错误: 6-32位字母、数字或_-|*",
        );
    }
    if let Err(des) = valid_notify_url(&p.notify_url) {
        return fail(400, "PARAM_ERROR", &des);
    }
    if p.amount.total <= 0 || p.amount.currency.as_deref().is_some_and(|c| c != "CNY") {
        return fail(
            400,
            "PARAM_ERROR",
            "amount.total须为正整数(分), currency只支持CNY",
        );
    }
    if p.attach.as_deref().is_some_and(|a| a.chars().count() > 128) {
        return fail(400, "PARAM_ERROR", "attach长度不能超过128个字符");
    }
    if !state.logins.issued(payer_appid, &openid) {
        return fail(
            400,
            "PARAM_ERROR",
            "openid与appid不匹配(请先用该小程序登录获取openid)",
        );
    }
    let mut business = Fields::new();
    business.insert("description".into(), p.description.clone());
    business.insert("total".into(), p.amount.total.to_string());
    business.insert("notify_url".into(), p.notify_url.clone());
    business.insert("openid".into(), openid.clone());
    business.insert("attach".into(), p.attach.clone().unwrap_or_default());
    business.insert("time_expire".into(), p.time_expire.unwrap_or_default());
    if let Some(existing) = state.orders.get(&merchant.mch_id, &p.out_trade_no) {
        return match existing.state {
            TradeState::Success => fail(400, "ORDERPAID", "该订单已支付"),
            TradeState::Closed => fail(400, "ORDER_CLOSED", "该订单已关闭"),
            TradeState::NotPay if !existing.is_v3() || existing.business != business => {
                fail(403, "OUT_TRADE_NO_USED", "商户订单号重复")
            }
            TradeState::NotPay => (200, json!({"prepay_id": existing.prepay_id}).to_string()),
        };
    }
    let order = Order {
        mch_id: merchant.mch_id.clone(),
        appid: merchant.appid.clone(),
        out_trade_no: p.out_trade_no,
        business,
        protocol: Protocol::V3,
        prepay_id: new_prepay_id(),
        total_fee: p.amount.total.unsigned_abs(),
        notify_url: p.notify_url,
        trade_type: "JSAPI".into(),
        openid: Some(openid),
        attach: p.attach,
        state: TradeState::NotPay,
        payment: None,
        paid_after_close: false,
        deliveries: Vec::new(),
        partner,
    };
    let answer = json!({"prepay_id": order.prepay_id}).to_string();
    state.orders.insert(order);
    (200, answer)
}

fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

/// `GET /v3/pay/transactions/out-trade-no/{no}?mchid=…` (v2 orders of the merchant too).
fn query(state: &State, merchant: &Merchant, out_trade_no: &str, query: &str) -> Answer {
    if query_param(query, "mchid").as_deref() != Some(merchant.mch_id.as_str()) {
        return fail(400, "PARAM_ERROR", "缺少参数mchid或与请求头不一致");
    }
    match state.orders.get(&merchant.mch_id, out_trade_no) {
        Some(order) => (200, super::notify::transaction(order).to_string()),
        None => fail(404, "ORDER_NOT_EXIST", "订单不存在"),
    }
}

/// `POST /v3/pay/[partner/]transactions/out-trade-no/{no}/close` of the merchant acted for
/// (ids checked by [`acting_for`]): 204, signed over the empty body.
fn close_order(state: &mut State, merchant: &Merchant, out_trade_no: &str) -> Answer {
    let Some(order) = state.orders.get_mut(&merchant.mch_id, out_trade_no) else {
        return fail(404, "ORDER_NOT_EXIST", "订单不存在");
    };
    match order.state {
        TradeState::Success => fail(400, "ORDERPAID", "订单已支付"),
        TradeState::NotPay | TradeState::Closed => {
            order.state = TradeState::Closed;
            (204, String::new())
        }
    }
}

/// `GET /v3/pay/partner/transactions/out-trade-no/{no}?sp_mchid=…&sub_mchid=…` of the
/// sub-merchant acted for.
fn partner_query(state: &State, merchant: &Merchant, out_trade_no: &str) -> Answer {
    match state.orders.get(&merchant.mch_id, out_trade_no) {
        Some(order) => (200, super::notify::transaction(order).to_string()),
        None => fail(404, "ORDER_NOT_EXIST", "订单不存在"),
    }
}

#[derive(Deserialize)]
struct RefundAmount {
    refund: i64,
    total: i64,
    currency: Option<String>,
}

#[derive(Deserialize)]
struct RefundBody {
    transaction_id: Option<String>,
    out_trade_no: Option<String>,
    out_refund_no: String,
    reason: Option<String>,
    notify_url: Option<String>,
    amount: RefundAmount,
}

/// `POST /v3/refund/domestic/refunds`: the answer, and the `out_refund_no` of a new refund.
fn refund(state: &mut State, merchant: &Merchant, body: &[u8]) -> (u16, String, Option<String>) {
    match try_refund(state, merchant, body) {
        Ok((answer, created)) => (200, answer, created),
        Err((status, body)) => (status, body, None),
    }
}

fn try_refund(
    state: &mut State,
    merchant: &Merchant,
    body: &[u8],
) -> Result<(String, Option<String>), Answer> {
    let r: RefundBody = parse(body)?;
    if r.amount.currency.as_deref() != Some("CNY") {
        return Err(fail(
            400,
            "PARAM_ERROR",
            "amount.currency为必填项, 只支持CNY",
        ));
    }
    if !valid_out_refund_no(&r.out_refund_no) {
        return Err(fail(
            400,
            "PARAM_ERROR",
            "out_refund_no格式错误: 1-64位字母、数字或_-|*@",
        ));
    }
    if r.amount.refund <= 0 || r.amount.total <= 0 {
        return Err(fail(
            400,
            "PARAM_ERROR",
            "amount.refund和amount.total须为正整数(分)",
        ));
    }
    if r.reason.as_deref().is_some_and(|t| t.chars().count() > 80) {
        return Err(fail(400, "PARAM_ERROR", "reason长度不能超过80个字符"));
    }
    if let Some(url) = &r.notify_url {
        valid_notify_url(url).map_err(|des| fail(400, "PARAM_ERROR", &des))?;
    }
    let mch_id = merchant.mch_id.as_str();
    let order = match (&r.transaction_id, &r.out_trade_no) {
        (Some(id), _) => state.orders.by_transaction(mch_id, id),
        (None, Some(no)) => state.orders.get(mch_id, no),
        (None, None) => {
            return Err(fail(
                400,
                "PARAM_ERROR",
                "transaction_id和out_trade_no必须二选一",
            ));
        }
    }
    .ok_or_else(|| fail(404, "RESOURCE_NOT_EXISTS", "订单不存在"))?;
    let (refund_fee, total_fee) = (
        r.amount.refund.unsigned_abs(),
        r.amount.total.unsigned_abs(),
    );
    if let Some(existing) = state.refunds.get(mch_id, &r.out_refund_no) {
        if existing.out_trade_no != order.out_trade_no
            || existing.refund_fee != refund_fee
            || existing.total_fee != total_fee
        {
            return Err(fail(400, "INVALID_REQUEST", "退款请求参数与原请求不一致"));
        }
        return Ok((super::notify::refund(existing).to_string(), None));
    }
    let Some(payment) = order
        .payment
        .as_ref()
        .filter(|_| order.state == TradeState::Success)
    else {
        return Err(fail(400, "INVALID_REQUEST", "订单未支付,不能退款"));
    };
    if total_fee != order.total_fee {
        return Err(fail(400, "PARAM_ERROR", "amount.total与订单金额不一致"));
    }
    let earlier = state.refunds.of_order(mch_id, &order.out_trade_no);
    if earlier.len() >= MAX_REFUNDS_PER_ORDER {
        return Err(fail(
            403,
            "INVALID_REQUEST",
            "退款次数超过限制,一笔订单最多退款50次",
        ));
    }
    if refunded(&earlier).saturating_add(refund_fee) > order.total_fee {
        // (NOT_ENOUGH is the merchant's balance, retried; this is the order's refundable sum.)
        return Err(fail(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额"));
    }
    let refund = Refund {
        seq: 0,
        mch_id: mch_id.to_owned(),
        appid: merchant.appid.clone(),
        out_trade_no: order.out_trade_no.clone(),
        transaction_id: payment.transaction_id.clone(),
        out_refund_no: r.out_refund_no.clone(),
        refund_id: state.refunds.new_refund_id(),
        total_fee,
        refund_fee,
        notify_url: r.notify_url,
        status: RefundStatus::Processing,
        success_time: None,
        notification: None,
        deliveries: Vec::new(),
        v3: true,
        sp_mchid: merchant.partner.as_ref().map(|p| p.sp_mchid.clone()),
    };
    let answer = super::notify::refund(&refund).to_string();
    state.refunds.insert(refund);
    Ok((answer, Some(r.out_refund_no)))
}

/// `GET /v3/refund/domestic/refunds/{out_refund_no}`
fn refund_query(state: &State, merchant: &Merchant, out_refund_no: &str) -> Answer {
    match state.refunds.get(&merchant.mch_id, out_refund_no) {
        Some(refund) => (200, super::notify::refund(refund).to_string()),
        None => fail(404, "RESOURCE_NOT_EXISTS", "退款单不存在"),
    }
}

/// `GET /v3/certificates`
fn certificates(state: &mut State, merchant: &Merchant, v3: &V3Merchant) -> Answer {
    if !state.v3.mode_of(&merchant.mch_id).has_certificates() {
        return fail(404, "RESOURCE_NOT_EXISTS", "无可用的平台证书");
    }
    match state
        .v3
        .keys
        .as_ref()
        .map(|k| k.certificates_body(v3.apiv3_key.as_bytes()))
    {
        Some(Ok(body)) => (200, body),
        Some(Err(e)) => fail(500, "SYSTEM_ERROR", &e),
        None => fail(500, "SYSTEM_ERROR", "the sandbox's v3 keys did not load"),
    }
}
