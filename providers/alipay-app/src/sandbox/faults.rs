//! Injected failures: "the next n calls of this gateway method fail this way".

use serde::{Deserialize, Serialize};

/// A gateway method (and the failure-injection target `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Api {
    /// `alipay.trade.query`
    #[serde(rename = "alipay.trade.query")]
    Query,
    /// `alipay.trade.close`
    #[serde(rename = "alipay.trade.close")]
    Close,
    /// `alipay.trade.refund`
    #[serde(rename = "alipay.trade.refund")]
    Refund,
    /// `alipay.trade.fastpay.refund.query`
    #[serde(rename = "alipay.trade.fastpay.refund.query")]
    RefundQuery,
    /// `alipay.open.app.alipaycert.download` (certificate mode)
    #[serde(rename = "alipay.open.app.alipaycert.download")]
    CertDownload,
    /// `alipay.open.auth.token.app` (third-party apps: a merchant's token)
    #[serde(rename = "alipay.open.auth.token.app")]
    AuthToken,
    /// `alipay.data.dataservice.bill.downloadurl.query` (statements)
    #[serde(rename = "alipay.data.dataservice.bill.downloadurl.query")]
    BillDownloadUrl,
    /// Any of them.
    #[serde(rename = "*")]
    Any,
}

impl Api {
    /// The gateway method named `method`.
    pub(crate) fn of_method(method: &str) -> Option<Api> {
        match method {
            "alipay.trade.query" => Some(Api::Query),
            "alipay.trade.close" => Some(Api::Close),
            "alipay.trade.refund" => Some(Api::Refund),
            "alipay.trade.fastpay.refund.query" => Some(Api::RefundQuery),
            "alipay.open.app.alipaycert.download" => Some(Api::CertDownload),
            "alipay.open.auth.token.app" => Some(Api::AuthToken),
            "alipay.data.dataservice.bill.downloadurl.query" => Some(Api::BillDownloadUrl),
            _ => None,
        }
    }

    /// The key of the response object: the method with `.` replaced by `_`, plus `_response`.
    pub(crate) fn response_key(self) -> &'static str {
        match self {
            Api::Query => "alipay_trade_query_response",
            Api::Close => "alipay_trade_close_response",
            Api::Refund => "alipay_trade_refund_response",
            Api::RefundQuery => "alipay_trade_fastpay_refund_query_response",
            Api::CertDownload => "alipay_open_app_alipaycert_download_response",
            Api::AuthToken => "alipay_open_auth_token_app_response",
            Api::BillDownloadUrl => "alipay_data_dataservice_bill_downloadurl_query_response",
            Api::Any => "error_response",
        }
    }
}

/// How an injected failure shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum FaultMode {
    /// A signed `code=20000` (`isp.unknow-error`) answer. Nothing is done.
    #[serde(rename = "20000")]
    Unavailable,
    /// HTTP 500 with a plain-text body. Nothing is done.
    #[serde(rename = "http500")]
    Http500,
    /// The call is done, but the answer's `sign` is wrong.
    #[serde(rename = "bad_sign")]
    BadSign,
    /// The call is done, but the answer comes 1 s after the simulator's timeout.
    #[serde(rename = "timeout")]
    Timeout,
}

/// A pending injected failure.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Fault {
    method: Api,
    mode: FaultMode,
    remaining: u32,
}

/// Pending failures, consumed in the order they were armed.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pending: Vec<Fault>,
}

impl Faults {
    /// Arms `times` failures of `method`; `times == 0` disarms every pending failure of
    /// `method` (`*`: all of them).
    pub(crate) fn arm(&mut self, method: Api, mode: FaultMode, times: u32) {
        if times == 0 {
            self.pending
                .retain(|f| method != Api::Any && f.method != method);
        } else {
            self.pending.push(Fault {
                method,
                mode,
                remaining: times,
            });
        }
    }

    /// Takes one failure for a call of `method`, if one is armed.
    pub(crate) fn take(&mut self, method: Api) -> Option<FaultMode> {
        let index = self
            .pending
            .iter()
            .position(|f| f.method == method || f.method == Api::Any)?;
        let fault = self.pending.get_mut(index)?;
        let mode = fault.mode;
        fault.remaining = fault.remaining.saturating_sub(1);
        if fault.remaining == 0 {
            self.pending.remove(index);
        }
        Some(mode)
    }

    /// What is still armed.
    pub(crate) fn pending(&self) -> &[Fault] {
        &self.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_fires_the_given_number_of_times_for_its_method() {
        let mut faults = Faults::default();
        faults.arm(Api::Refund, FaultMode::Unavailable, 2);
        assert_eq!(faults.take(Api::Query), None);
        assert_eq!(faults.take(Api::Refund), Some(FaultMode::Unavailable));
        assert_eq!(faults.take(Api::Refund), Some(FaultMode::Unavailable));
        assert_eq!(faults.take(Api::Refund), None);
    }

    #[test]
    fn a_wildcard_fault_matches_every_method_and_zero_disarms() {
        let mut faults = Faults::default();
        faults.arm(Api::Any, FaultMode::BadSign, 5);
        assert_eq!(faults.take(Api::Close), Some(FaultMode::BadSign));
        faults.arm(Api::Query, FaultMode::Timeout, 1);
        faults.arm(Api::Query, FaultMode::Timeout, 0);
        assert_eq!(faults.pending().len(), 1);
        faults.arm(Api::Any, FaultMode::Timeout, 0);
        assert!(faults.pending().is_empty());
    }

    #[test]
    fn modes_and_methods_have_their_wire_names() {
        let mode: FaultMode = serde_json::from_str("\"20000\"").unwrap();
        assert_eq!(mode, FaultMode::Unavailable);
        let api: Api = serde_json::from_str("\"alipay.trade.fastpay.refund.query\"").unwrap();
        assert_eq!(api, Api::RefundQuery);
        assert_eq!(
            Api::of_method("alipay.trade.fastpay.refund.query").map(Api::response_key),
            Some("alipay_trade_fastpay_refund_query_response")
        );
    }
}
