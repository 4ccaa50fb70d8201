//! The apps the simulator knows, learnt from tenants' `[providers.alipay_app]` tables. Alipay
//! holds each app's uploaded public key; the simulator derives it from the configured private key.

use std::collections::HashMap;

use super::rsa2::{Rsa2Verifier, parse_private_key};

/// An app: what its requests are checked with and what its notifications carry.
#[derive(Debug, Clone)]
pub(crate) struct Merchant {
    /// The payee (`seller_id`, "2088…").
    pub(crate) seller_id: String,
    /// The app public key.
    pub(crate) app_public_key: Rsa2Verifier,
}

impl Merchant {
    /// The payee's e-mail as the sandbox shows it in notifications.
    pub(crate) fn seller_email(&self) -> String {
        format!("{}@sandbox.alipaydev.com", self.seller_id)
    }
}

/// Apps by `app_id`.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    merchants: HashMap<String, Merchant>,
}

impl Registry {
    /// Learns (or re-learns) the app of a provider table. A table without `app_id`, `seller_id`
    /// and a readable `private_key` is skipped: nothing could be checked for it.
    pub(crate) fn register(&mut self, table: &toml::Table) {
        let text = |key: &str| {
            table
                .get(key)
                .and_then(toml::Value::as_str)
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let (Some(app_id), Some(seller_id), Some(private_key)) =
            (text("app_id"), text("seller_id"), text("private_key"))
        else {
            tracing::debug!(
                "alipay sandbox: provider table without app_id/seller_id/private_key ignored"
            );
            return;
        };
        let key = match parse_private_key(private_key) {
            Ok(key) => key,
            Err(e) => {
                tracing::warn!("alipay sandbox: app {app_id} ignored: private_key: {e}");
                return;
            }
        };
        self.merchants.insert(
            app_id.to_owned(),
            Merchant {
                seller_id: seller_id.to_owned(),
                app_public_key: Rsa2Verifier::new(key.to_public_key()),
            },
        );
    }

    /// The app with this id.
    pub(crate) fn get(&self, app_id: &str) -> Option<&Merchant> {
        self.merchants.get(app_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PKCS8: &str = include_str!("../../../../fixtures/vectors/app_private_pkcs8.pem");

    fn table(app_id: &str, seller_id: &str, key: &str) -> toml::Table {
        let mut table = toml::Table::new();
        table.insert("enabled".into(), true.into());
        table.insert("app_id".into(), app_id.into());
        table.insert("seller_id".into(), seller_id.into());
        table.insert("private_key".into(), key.into());
        table
    }

    #[test]
    fn registering_again_replaces_the_app() {
        let mut registry = Registry::default();
        registry.register(&table("2021001", "2088000000000001", PKCS8));
        registry.register(&table("2021001", "2088000000000002", PKCS8));
        assert_eq!(
            registry.get("2021001").unwrap().seller_id,
            "2088000000000002"
        );
    }

    #[test]
    fn tables_without_usable_credentials_are_skipped() {
        let mut registry = Registry::default();
        registry.register(&table("2021001", "2088000000000001", "not a key"));
        registry.register(&table("2021002", "", PKCS8));
        let mut no_key = table("2021003", "2088000000000001", PKCS8);
        no_key.remove("private_key");
        registry.register(&no_key);
        for app_id in ["2021001", "2021002", "2021003"] {
            assert!(registry.get(app_id).is_none(), "{app_id}");
        }
    }
}
