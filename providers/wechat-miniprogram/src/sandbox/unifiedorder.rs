//! `POST /pay/unifiedorder` (PROTOCOLS §B.3): field rules, then create or re-enter the order.

use chrono::NaiveDateTime;

use super::envelope::{Authed, Reply};
use super::login::Logins;
use super::orders::{Order, OrderBook, OrderPartner, Protocol, TradeState, new_prepay_id};
use super::xml::Fields;

const REQUIRED: [&str; 6] = [
    "body",
    "out_trade_no",
    "total_fee",
    "spbill_create_ip",
    "notify_url",
    "trade_type",
];
const TRADE_TYPES: [&str; 4] = ["JSAPI", "NATIVE", "APP", "MWEB"];
/// Fields that may change between a first call and its re-entry.
const NOT_BUSINESS: [&str; 3] = ["nonce_str", "sign", "spbill_create_ip"];

/// A field rule that failed: `err_code`, `err_code_des`.
type Refusal = (&'static str, String);

fn param_error(des: impl Into<String>) -> Refusal {
    ("PARAM_ERROR", des.into())
}

/// `out_trade_no`: 6–32 of `[A-Za-z0-9_\-|*]`.
pub(crate) fn valid_out_trade_no(value: &str) -> bool {
    (6..=32).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*'))
}

/// A positive integer of fen, written without sign, leading zeros or decimals.
fn parse_fee(value: &str) -> Option<u64> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u64>().ok().filter(|fee| *fee > 0)
}

fn valid_timestamp(value: &str) -> bool {
    value.len() == 14
        && value.bytes().all(|b| b.is_ascii_digit())
        && NaiveDateTime::parse_from_str(value, "%Y%m%d%H%M%S").is_ok()
}

pub(crate) fn valid_notify_url(value: &str) -> Result<(), String> {
    let url = url::Url::parse(value).map_err(|e| format!("notify_url不是合法的URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("notify_url必须是http或https的绝对地址".into());
    }
    if url.query().is_some() {
        return Err("notify_url不能携带参数".into());
    }
    if value.len() > 256 {
        return Err("notify_url长度不能超过256".into());
    }
    Ok(())
}

/// Checks every field rule; returns the amount in fen.
fn check_fields(auth: &Authed, logins: &Logins) -> Result<u64, Refusal> {
    if let Some(missing) = REQUIRED.iter().find(|name| auth.field(name).is_none()) {
        return Err(("LACK_PARAMS", format!("缺少参数{missing}")));
    }
    let field = |name: &str| auth.field(name).unwrap_or_default();
    if !valid_out_trade_no(field("out_trade_no")) {
        return Err(param_error("out_trade_no格式错误: 6-32位字母、数字或_-|*"));
    }
    let Some(total_fee) = parse_fee(field("total_fee")) else {
        return Err(param_error("total_fee必须为正整数(单位: 分)"));
    };
    if field("body").len() > 127 {
        return Err(param_error("body长度不能超过127字节"));
    }
    if field("attach").len() > 127 {
        return Err(param_error("attach长度不能超过127字节"));
    }
    if field("spbill_create_ip").len() > 64 {
        return Err(param_error("spbill_create_ip格式错误"));
    }
    valid_notify_url(field("notify_url")).map_err(param_error)?;
    if let Some(fee_type) = auth.field("fee_type")
        && fee_type != "CNY"
    {
        return Err(param_error("fee_type只支持CNY"));
    }
    for name in ["time_start", "time_expire"] {
        if let Some(value) = auth.field(name)
            && !valid_timestamp(value)
        {
            return Err(param_error(format!("{name}格式错误, 应为yyyyMMddHHmmss")));
        }
    }
    let trade_type = field("trade_type");
    if !TRADE_TYPES.contains(&trade_type) {
        return Err(param_error(format!("trade_type参数错误: {trade_type}")));
    }
    if trade_type == "JSAPI" {
        // A sub-merchant's own mini-program pays with sub_openid; otherwise openid of appid.
        let (payer_appid, payer_field) = auth.merchant.payer();
        let Some(openid) = auth.field(payer_field) else {
            return Err(param_error(format!("JSAPI支付必须传{payer_field}")));
        };
        if !logins.issued(payer_appid, openid) {
            return Err(param_error(format!("appid和{payer_field}不匹配")));
        }
    }
    if trade_type == "NATIVE" && auth.field("product_id").is_none() {
        return Err(param_error("NATIVE支付必须传product_id"));
    }
    Ok(total_fee)
}

fn business_fields(auth: &Authed) -> Fields {
    auth.fields
        .iter()
        .filter(|(name, value)| !value.is_empty() && !NOT_BUSINESS.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// Serves one authenticated call.
pub(crate) fn unifiedorder(orders: &mut OrderBook, logins: &Logins, auth: &Authed) -> Reply {
    let total_fee = match check_fields(auth, logins) {
        Ok(fee) => fee,
        Err((code, des)) => return Reply::business_error(auth, code, &des),
    };
    let out_trade_no = auth.field("out_trade_no").unwrap_or_default();
    let business = business_fields(auth);
    if let Some(existing) = orders.get(&auth.merchant.mch_id, out_trade_no) {
        return match existing.state {
            TradeState::Success => Reply::business_error(auth, "ORDERPAID", "该订单已支付"),
            TradeState::Closed => Reply::business_error(auth, "ORDERCLOSED", "该订单已关闭"),
            TradeState::NotPay if existing.business != business => {
                Reply::business_error(auth, "INVALID_REQUEST", "201 商户订单号重复")
            }
            TradeState::NotPay => answer(auth, existing),
        };
    }
    let order = Order {
        mch_id: auth.merchant.mch_id.clone(),
        appid: auth.merchant.appid.clone(),
        out_trade_no: out_trade_no.to_owned(),
        business,
        protocol: Protocol::V2(auth.sign_type),
        prepay_id: new_prepay_id(),
        total_fee,
        notify_url: auth.field("notify_url").unwrap_or_default().to_owned(),
        trade_type: auth.field("trade_type").unwrap_or_default().to_owned(),
        openid: auth.field(auth.merchant.payer().1).map(str::to_owned),
        attach: auth.field("attach").map(str::to_owned),
        state: TradeState::NotPay,
        payment: None,
        paid_after_close: false,
        deliveries: Vec::new(),
        partner: auth.merchant.partner.as_ref().map(|p| OrderPartner {
            sp_mchid: p.sp_mchid.clone(),
            sub_appid: p.sub_appid.clone(),
        }),
    };
    let reply = answer(auth, &order);
    orders.insert(order);
    reply
}

fn answer(auth: &Authed, order: &Order) -> Reply {
    Reply::success(
        auth,
        [
            ("trade_type", order.trade_type.clone()),
            ("prepay_id", order.prepay_id.clone()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_trade_no_rules() {
        assert!(valid_out_trade_no("abc-12|*_"));
        assert!(!valid_out_trade_no("abc12"));
        assert!(!valid_out_trade_no(&"a".repeat(33)));
        assert!(!valid_out_trade_no("abc@123"));
    }

    #[test]
    fn fee_must_be_a_plain_positive_integer() {
        assert_eq!(parse_fee("1"), Some(1));
        for bad in [
            "0",
            "-1",
            "+1",
            "1.00",
            "01",
            "",
            "1e3",
            "99999999999999999999",
        ] {
            assert_eq!(parse_fee(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamps_are_fourteen_digit_calendar_times() {
        assert!(valid_timestamp("20240101120000"));
        assert!(!valid_timestamp("20241301120000"));
        assert!(!valid_timestamp("2024-01-01T12:00"));
    }
}
