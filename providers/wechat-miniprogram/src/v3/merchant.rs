//! Who a v3 call or notification is for: a merchant, or a service provider and its
//! sub-merchant, and the check of the merchant fields an answer or a notification carries.

use serde::Deserialize;

/// Who the orders are for.
#[derive(Debug, Clone, Copy)]
pub struct Merchant<'a> {
    /// `appid` of the mini-program (service-provider mode: `sp_appid`).
    pub appid: &'a str,
    /// `mchid` (service-provider mode: `sp_mchid`), whose key signs.
    pub mchid: &'a str,
    /// Service-provider mode: the sub-merchant, which the partner APIs name.
    pub sub: Option<Sub<'a>>,
}

/// A service provider's sub-merchant.
#[derive(Debug, Clone, Copy)]
pub struct Sub<'a> {
    /// `sub_mchid`.
    pub sub_mchid: &'a str,
    /// `sub_appid`, when the mini-program is the sub-merchant's.
    pub sub_appid: Option<&'a str>,
}

/// The merchant fields of a v3 transaction or refund (an answer or a notification's resource):
/// `mchid`/`appid` of a merchant, or `sp_*`/`sub_*` of a partner order.
#[derive(Debug, Default, Deserialize)]
pub struct MerchantIds {
    mchid: Option<String>,
    appid: Option<String>,
    sp_mchid: Option<String>,
    sp_appid: Option<String>,
    sub_mchid: Option<String>,
    sub_appid: Option<String>,
}

impl Merchant<'_> {
    /// The appid of the payer's openid and of `paySign`: the `sub_appid` when the mini-program is
    /// the sub-merchant's, else the (service provider's) appid.
    pub fn payer_appid(&self) -> &str {
        self.sub.and_then(|s| s.sub_appid).unwrap_or(self.appid)
    }

    /// The first merchant field of `ids` that is not this merchant's (appids only when
    /// `with_appid`: refunds carry none).
    pub fn mismatch(&self, ids: &MerchantIds, with_appid: bool) -> Option<&'static str> {
        let same = |theirs: &Option<String>, ours: &str| theirs.as_deref() == Some(ours);
        match self.sub {
            None => {
                if !same(&ids.mchid, self.mchid) {
                    return Some("mchid");
                }
                (with_appid && !same(&ids.appid, self.appid)).then_some("appid")
            }
            Some(sub) => {
                if !same(&ids.sp_mchid, self.mchid) {
                    return Some("sp_mchid");
                }
                if !same(&ids.sub_mchid, sub.sub_mchid) {
                    return Some("sub_mchid");
                }
                if with_appid && !same(&ids.sp_appid, self.appid) {
                    return Some("sp_appid");
                }
                let sub_appid_differs = match (sub.sub_appid, ids.sub_appid.as_deref()) {
                    (Some(ours), theirs) => theirs != Some(ours),
                    (None, theirs) => theirs.is_some_and(|t| !t.is_empty()),
                };
                (with_appid && sub_appid_differs).then_some("sub_appid")
            }
        }
    }
}
