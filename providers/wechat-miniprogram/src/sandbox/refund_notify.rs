//! The refund notification (PROTOCOLS §B.10), built by the simulator's own code when a refund
//! reaches a final status.

use super::envelope::nonce;
use super::merchants::Merchant;
use super::orders::beijing_now;
use super::refund_crypto::encrypt_req_info;
use super::refunds::{Refund, RefundStatus};
use super::xml::{self, Fields};

/// Move a refund to a final status (stamping `success_time` on SUCCESS) and build its
/// notification, kept for redeliveries.
pub(crate) fn finish(refund: &mut Refund, status: RefundStatus, merchant: &Merchant) -> String {
    refund.status = status;
    if status == RefundStatus::Success && refund.success_time.is_none() {
        refund.success_time = Some(beijing_now().format("%Y-%m-%d %H:%M:%S").to_string());
    }
    let notification = if refund.v3 {
        let apiv3_key = merchant.v3.as_ref().map(|v3| v3.apiv3_key.as_str());
        super::v3::notify::refund_notification(refund, apiv3_key.unwrap_or_default())
    } else {
        build(refund, merchant)
    };
    refund.notification = Some(notification.clone());
    notification
}

/// The refund notification: outer `<xml>` with `return_code`, `appid`, `mch_id`, `nonce_str` and
/// `req_info` (the encrypted `<root>` of the refund's details). No `sign`, as WeChat sends it.
fn build(refund: &Refund, merchant: &Merchant) -> String {
    let mut inner = Fields::new();
    let mut put = |name: &str, value: String| {
        inner.insert(name.to_owned(), value);
    };
    put("transaction_id", refund.transaction_id.clone());
    put("out_trade_no", refund.out_trade_no.clone());
    put("refund_id", refund.refund_id.clone());
    put("out_refund_no", refund.out_refund_no.clone());
    put("total_fee", refund.total_fee.to_string());
    put("settlement_total_fee", refund.total_fee.to_string());
    put("refund_fee", refund.refund_fee.to_string());
    put("settlement_refund_fee", refund.refund_fee.to_string());
    put("refund_status", refund.status.as_str().to_owned());
    if let Some(time) = &refund.success_time {
        put("success_time", time.clone());
    }
    put("refund_recv_accout", "支付用户零钱".to_owned());
    put("refund_account", "REFUND_SOURCE_UNSETTLED_FUNDS".to_owned());
    put("refund_request_source", "API".to_owned());
    let plaintext = xml::write_root("root", &inner);

    let mut outer = Fields::new();
    outer.insert("return_code".into(), "SUCCESS".into());
    outer.insert("appid".into(), refund.appid.clone());
    for (name, value) in merchant.v2_ids() {
        outer.insert(name.into(), value);
    }
    outer.insert("nonce_str".into(), nonce());
    outer.insert(
        "req_info".into(),
        encrypt_req_info(&plaintext, &merchant.api_key),
    );
    xml::write(&outer)
}
