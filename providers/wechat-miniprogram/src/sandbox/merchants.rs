//! The merchants and mini-programs the simulator knows, learnt from tenants' provider tables.

use std::collections::HashMap;
use std::path::Path;

use super::v3::merchant::{self as v3_merchant, V3Merchant};

/// A merchant account: what Pay API v2 calls are checked and signed with.
#[derive(Debug, Clone)]
pub(crate) struct Merchant {
    /// The merchant id.
    pub(crate) mch_id: String,
    /// The mini-program bound to this merchant.
    pub(crate) appid: String,
    /// The API v2 key; empty for a v3-only merchant (whose v2 calls are refused).
    pub(crate) api_key: String,
    /// The API v3 credentials, when the tenant has `apiv3_key`.
    pub(crate) v3: Option<std::sync::Arc<V3Merchant>>,
    /// A sub-merchant: its service provider, which holds the credentials above and makes
    /// every call for it (a sub-merchant never signs itself).
    pub(crate) partner: Option<std::sync::Arc<PartnerOf>>,
}

impl Merchant {
    /// The fields that name this merchant in a v2 answer or notification: `mch_id`, and for a
    /// sub-merchant the service provider's `mch_id` with `sub_mch_id` (and `sub_appid`).
    pub(crate) fn v2_ids(&self) -> Vec<(&'static str, String)> {
        match &self.partner {
            None => vec![("mch_id", self.mch_id.clone())],
            Some(p) => {
                let mut ids = vec![
                    ("mch_id", p.sp_mchid.clone()),
                    ("sub_mch_id", self.mch_id.clone()),
                ];
                if let Some(sub_appid) = &p.sub_appid {
                    ids.push(("sub_appid", sub_appid.clone()));
                }
                ids
            }
        }
    }

    /// The appid a JSAPI payer's openid belongs to, and the request field that carries it:
    /// `sub_openid` of the sub-merchant's own mini-program, else `openid` of `appid`.
    pub(crate) fn payer(&self) -> (&str, &'static str) {
        match self.partner.as_ref().and_then(|p| p.sub_appid.as_deref()) {
            Some(sub_appid) => (sub_appid, "sub_openid"),
            None => (&self.appid, "openid"),
        }
    }
}

/// The service provider of a sub-merchant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartnerOf {
    /// `sp_mchid`.
    pub(crate) sp_mchid: String,
    /// The sub-merchant's own mini-program, if it has one.
    pub(crate) sub_appid: Option<String>,
}

/// A mini-program: what `jscode2session` checks.
#[derive(Debug, Clone)]
pub(crate) struct App {
    /// The AppSecret, when the tenant configured one.
    pub(crate) app_secret: Option<String>,
}

/// Merchants by `mch_id` and mini-programs by `appid`.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    merchants: HashMap<String, Merchant>,
    apps: HashMap<String, App>,
}

impl Registry {
    /// Learns (or re-learns) the merchant and app of a `[providers.wechat_miniprogram]` table.
    /// A table without `appid`, `mch_id`, and `api_key` or `apiv3_key` strings is ignored: the
    /// simulator cannot check anything for it. Files named in it are relative to `base_dir`.
    /// A service provider's tenant (`sp_mchid`, `sp_appid`, `sub_mchid`: the platform's section
    /// with the tenant's identity) teaches the service provider and binds the sub-merchant to it.
    /// Returns the ids of the merchants learnt.
    pub(crate) fn register(&mut self, table: &toml::Table, base_dir: &Path) -> Vec<String> {
        let text = |key: &str| {
            table
                .get(key)
                .and_then(toml::Value::as_str)
                .filter(|v| !v.is_empty())
        };
        let v3 = v3_merchant::from_table(table, base_dir).map(std::sync::Arc::new);
        if let (Some(sp_mchid), Some(sp_appid), Some(sub_mchid)) =
            (text("sp_mchid"), text("sp_appid"), text("sub_mchid"))
        {
            let api_key = text("api_key").unwrap_or_default();
            if api_key.is_empty() && v3.is_none() {
                return Vec::new();
            }
            let sp = Merchant {
                mch_id: sp_mchid.to_owned(),
                appid: sp_appid.to_owned(),
                api_key: api_key.to_owned(),
                v3,
                partner: None,
            };
            let sub_appid = text("sub_appid").map(str::to_owned);
            let sub = Merchant {
                mch_id: sub_mchid.to_owned(),
                partner: Some(std::sync::Arc::new(PartnerOf {
                    sp_mchid: sp_mchid.to_owned(),
                    sub_appid: sub_appid.clone(),
                })),
                ..sp.clone()
            };
            self.merchants.insert(sp_mchid.to_owned(), sp);
            self.merchants.insert(sub_mchid.to_owned(), sub);
            self.apps.insert(
                sub_appid.unwrap_or_else(|| sp_appid.to_owned()),
                App {
                    app_secret: text("app_secret").map(str::to_owned),
                },
            );
            return vec![sp_mchid.to_owned(), sub_mchid.to_owned()];
        }
        let (Some(appid), Some(mch_id)) = (text("appid"), text("mch_id")) else {
            tracing::debug!("wechat sandbox: provider table without appid/mch_id ignored");
            return Vec::new();
        };
        let api_key = text("api_key").unwrap_or_default();
        if api_key.is_empty() && v3.is_none() {
            tracing::debug!("wechat sandbox: provider table without api_key or apiv3_key ignored");
            return Vec::new();
        }
        self.merchants.insert(
            mch_id.to_owned(),
            Merchant {
                mch_id: mch_id.to_owned(),
                appid: appid.to_owned(),
                api_key: api_key.to_owned(),
                v3,
                partner: None,
            },
        );
        self.apps.insert(
            appid.to_owned(),
            App {
                app_secret: text("app_secret").map(str::to_owned),
            },
        );
        vec![mch_id.to_owned()]
    }

    /// The merchant with this id (a sub-merchant too).
    pub(crate) fn merchant(&self, mch_id: &str) -> Option<&Merchant> {
        self.merchants.get(mch_id)
    }

    /// A merchant that signs its own calls: not a sub-merchant.
    pub(crate) fn signer(&self, mch_id: &str) -> Option<&Merchant> {
        self.merchants.get(mch_id).filter(|m| m.partner.is_none())
    }

    /// The merchant whose WeChat keys and key mode sign for `mch_id`: its service provider for a
    /// sub-merchant, else itself.
    pub(crate) fn signing_id(&self, mch_id: &str) -> String {
        self.merchants
            .get(mch_id)
            .and_then(|m| m.partner.as_ref())
            .map_or_else(|| mch_id.to_owned(), |p| p.sp_mchid.clone())
    }

    /// Sub-merchant `sub_mchid` of service provider `sp_mchid`, if it is bound to it.
    pub(crate) fn sub_merchant(&self, sp_mchid: &str, sub_mchid: &str) -> Option<&Merchant> {
        self.merchants
            .get(sub_mchid)
            .filter(|m| m.partner.as_ref().is_some_and(|p| p.sp_mchid == sp_mchid))
    }

    /// The mini-program with this appid.
    pub(crate) fn app(&self, appid: &str) -> Option<&App> {
        self.apps.get(appid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn registering_again_replaces_the_credentials() {
        let mut registry = Registry::default();
        registry.register(
            &table("appid = \"wx1\"\nmch_id = \"m1\"\napi_key = \"k1\"\napp_secret = \"s1\""),
            Path::new("."),
        );
        registry.register(
            &table("appid = \"wx1\"\nmch_id = \"m1\"\napi_key = \"k2\"\nenabled = true"),
            Path::new("."),
        );
        assert_eq!(registry.merchant("m1").unwrap().api_key, "k2");
        assert_eq!(registry.app("wx1").unwrap().app_secret, None);
    }

    #[test]
    fn a_table_without_credentials_is_skipped() {
        let mut registry = Registry::default();
        registry.register(&table("appid = \"wx1\"\nmch_id = \"m1\""), Path::new("."));
        registry.register(
            &table("appid = \"wx2\"\nmch_id = \"m2\"\napi_key = 42"),
            Path::new("."),
        );
        assert!(registry.merchant("m1").is_none());
        assert!(registry.merchant("m2").is_none());
        assert!(registry.app("wx1").is_none());
    }
}
