//! Injected failures: "the next n calls of this API fail this way".

use serde::{Deserialize, Serialize};

/// An API that failures can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Api {
    /// `/pay/unifiedorder`
    #[serde(rename = "unifiedorder")]
    UnifiedOrder,
    /// `/pay/orderquery`
    #[serde(rename = "orderquery")]
    OrderQuery,
    /// `/pay/closeorder`
    #[serde(rename = "closeorder")]
    CloseOrder,
    /// `/secapi/pay/refund`
    #[serde(rename = "refund")]
    Refund,
    /// `/pay/refundquery`
    #[serde(rename = "refundquery")]
    RefundQuery,
    /// `/sns/jscode2session`
    #[serde(rename = "jscode2session")]
    Jscode2session,
    /// `/pay/downloadbill`
    #[serde(rename = "downloadbill")]
    DownloadBill,
    /// v3 `POST /v3/pay/transactions/jsapi`
    #[serde(rename = "v3_jsapi")]
    V3Jsapi,
    /// v3 `GET /v3/pay/transactions/out-trade-no/{no}`
    #[serde(rename = "v3_query")]
    V3Query,
    /// v3 `POST /v3/pay/transactions/out-trade-no/{no}/close`
    #[serde(rename = "v3_close")]
    V3Close,
    /// v3 `POST /v3/refund/domestic/refunds`
    #[serde(rename = "v3_refund")]
    V3Refund,
    /// v3 `GET /v3/refund/domestic/refunds/{no}`
    #[serde(rename = "v3_refundquery")]
    V3RefundQuery,
    /// v3 `GET /v3/certificates`
    #[serde(rename = "v3_certificates")]
    V3Certificates,
    /// Any of them.
    #[serde(rename = "*")]
    Any,
}

/// How an injected failure shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum FaultMode {
    /// A signed business failure `err_code=SYSTEMERROR` (login: `errcode -1`). Nothing is done.
    #[serde(rename = "SYSTEMERROR")]
    SystemError,
    /// HTTP 500 with a non-XML body. Nothing is done.
    #[serde(rename = "http500")]
    Http500,
    /// The call is done, but the response's `sign` is wrong. Pay APIs only.
    #[serde(rename = "bad_sign")]
    BadSign,
    /// The call is done, but the answer comes later than the client's timeout.
    #[serde(rename = "timeout")]
    Timeout,
}

impl FaultMode {
    /// Whether calls of `api` can fail this way (login answers are not signed).
    pub(crate) fn applies_to(self, api: Api) -> bool {
        !(self == FaultMode::BadSign && api == Api::Jscode2session)
    }
}

/// A pending injected failure.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Fault {
    api: Api,
    mode: FaultMode,
    remaining: u32,
}

/// Pending failures, consumed in the order they were added.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pending: Vec<Fault>,
}

impl Faults {
    /// Arms `times` failures of `api`; `times == 0` disarms every pending failure of `api`
    /// (`*`: all of them).
    pub(crate) fn arm(&mut self, api: Api, mode: FaultMode, times: u32) {
        if times == 0 {
            self.pending.retain(|f| api != Api::Any && f.api != api);
        } else {
            self.pending.push(Fault {
                api,
                mode,
                remaining: times,
            });
        }
    }

    /// Takes one failure for a call of `api`, if one is armed.
    pub(crate) fn take(&mut self, api: Api) -> Option<FaultMode> {
        let index = self
            .pending
            .iter()
            .position(|f| (f.api == api || f.api == Api::Any) && f.mode.applies_to(api))?;
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
    fn a_fault_fires_the_given_number_of_times() {
        let mut faults = Faults::default();
        faults.arm(Api::OrderQuery, FaultMode::Http500, 2);
        assert_eq!(faults.take(Api::UnifiedOrder), None);
        assert_eq!(faults.take(Api::OrderQuery), Some(FaultMode::Http500));
        assert_eq!(faults.take(Api::OrderQuery), Some(FaultMode::Http500));
        assert_eq!(faults.take(Api::OrderQuery), None);
    }

    #[test]
    fn bad_sign_for_any_api_skips_login() {
        let mut faults = Faults::default();
        faults.arm(Api::Any, FaultMode::BadSign, 1);
        assert_eq!(faults.take(Api::Jscode2session), None);
        assert_eq!(faults.take(Api::CloseOrder), Some(FaultMode::BadSign));
        faults.arm(Api::Refund, FaultMode::SystemError, 1);
        assert_eq!(faults.take(Api::RefundQuery), None);
        assert_eq!(faults.take(Api::Refund), Some(FaultMode::SystemError));
    }

    #[test]
    fn zero_times_disarms() {
        let mut faults = Faults::default();
        faults.arm(Api::OrderQuery, FaultMode::Timeout, 5);
        faults.arm(Api::CloseOrder, FaultMode::Timeout, 5);
        faults.arm(Api::OrderQuery, FaultMode::Timeout, 0);
        assert_eq!(faults.pending().len(), 1);
        faults.arm(Api::Any, FaultMode::Timeout, 0);
        assert!(faults.pending().is_empty());
    }
}
