//! The apps the simulator knows, learnt from tenants' `[providers.alipay_app]` tables. Alipay
//! holds each app's uploaded public key; the simulator derives it from the configured private key.

use std::collections::HashMap;
use std::path::Path;

use super::rsa2::{Rsa2Verifier, parse_private_key};

/// An app: what its requests are checked with and what its notifications carry.
#[derive(Debug, Clone)]
pub(crate) struct Merchant {
    /// The payee (`seller_id`, "2088…").
    pub(crate) seller_id: String,
    /// The app public key.
    pub(crate) app_public_key: Rsa2Verifier,
    /// Certificate mode: the numbers its requests must carry.
    pub(crate) cert: Option<CertNumbers>,
    /// Served through a third-party app (ISV): that app's id. The merchant's own app id is the
    /// key it is registered under (`auth_app_id`).
    pub(crate) isv_app_id: Option<String>,
}

/// Why a call names no known merchant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unknown {
    /// No app with this id.
    App,
    /// No merchant granted this `app_auth_token` to this app.
    Token,
}

/// The `app_cert_sn` and `alipay_root_cert_sn` of an app in certificate mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertNumbers {
    pub(crate) app_cert_sn: String,
    pub(crate) root_cert_sn: String,
}

/// The numbers of a table's `app_cert` and `alipay_root_cert` (PEM inline or a file under
/// `base_dir`). Alipay issued the app's certificate, so it knows its number; the simulator
/// computes it with the crate's function, which the official SDK's vectors pin
/// (`fixtures/alipay-cert`), so a wrong number cannot pass on both sides.
fn cert_numbers(table: &toml::Table, base_dir: &Path) -> Option<CertNumbers> {
    let pem = |key: &str| -> Option<String> {
        let value = table.get(key)?.as_str()?;
        if value.contains("-----BEGIN") {
            return Some(value.to_owned());
        }
        std::fs::read_to_string(base_dir.join(value))
            .map_err(|e| tracing::warn!("alipay sandbox: {key}: {e}"))
            .ok()
    };
    let app = crate::cert_sn::first_cert_sn(&pem("app_cert")?).ok()?;
    let root = crate::cert_sn::root_cert_sn(&pem("alipay_root_cert")?).ok()?;
    Some(CertNumbers {
        app_cert_sn: app,
        root_cert_sn: root,
    })
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
    /// `app_auth_token` → the merchant's own app id.
    tokens: HashMap<String, String>,
    /// One-time authorisation codes (`app_auth_code`) → the merchant's own app id.
    codes: HashMap<String, String>,
    /// `app_refresh_token` → the merchant's own app id.
    refresh_tokens: HashMap<String, String>,
}

/// A token the exchange issued.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub(crate) app_auth_token: String,
    pub(crate) app_refresh_token: String,
    pub(crate) auth_app_id: String,
    pub(crate) user_id: String,
}

/// A grant of `alipay.open.auth.token.app`.
pub(crate) enum Grant<'a> {
    Code(&'a str),
    Refresh(&'a str),
}

fn random_token(prefix: &str) -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    format!("{prefix}{}", hex::encode(bytes))
}

impl Registry {
    /// Learns (or re-learns) the app of a provider table. A table without `app_id`, `seller_id`
    /// and a readable `private_key` is skipped: nothing could be checked for it.
    pub(crate) fn register(&mut self, table: &toml::Table, base_dir: &Path) {
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
        // A merchant of a third-party app is known by its own app id, and its token.
        let (account, isv_app_id) = match (text("app_auth_token"), text("auth_app_id")) {
            (Some(token), Some(own)) => {
                self.tokens.insert(token.to_owned(), own.to_owned());
                (own, Some(app_id.to_owned()))
            }
            _ => (app_id, None),
        };
        self.merchants.insert(
            account.to_owned(),
            Merchant {
                seller_id: seller_id.to_owned(),
                app_public_key: Rsa2Verifier::new(key.to_public_key()),
                cert: cert_numbers(table, base_dir),
                isv_app_id,
            },
        );
    }

    /// The merchant a call acts for, and its account id (the merchant's own app id): by
    /// `app_auth_token` when the call carries one (then `app_id` must be the app it was granted
    /// to), else by `app_id`.
    pub(crate) fn resolve(
        &self,
        app_id: &str,
        token: Option<&str>,
    ) -> Result<(String, &Merchant), Unknown> {
        match token {
            Some(token) => {
                let account = self.tokens.get(token).ok_or(Unknown::Token)?;
                let merchant = self
                    .merchants
                    .get(account)
                    .filter(|m| m.isv_app_id.as_deref() == Some(app_id))
                    .ok_or(Unknown::Token)?;
                Ok((account.clone(), merchant))
            }
            None => self
                .merchants
                .get(app_id)
                .filter(|m| m.isv_app_id.is_none())
                .map(|m| (app_id.to_owned(), m))
                .ok_or(Unknown::App),
        }
    }

    /// The app with this id.
    pub(crate) fn get(&self, app_id: &str) -> Option<&Merchant> {
        self.merchants.get(app_id)
    }

    /// A third-party app (known from any merchant it serves): its public key.
    pub(crate) fn isv(&self, app_id: &str) -> Option<&Merchant> {
        self.merchants
            .values()
            .find(|m| m.isv_app_id.as_deref() == Some(app_id))
    }

    /// A one-time code of a new authorisation by merchant `auth_app_id` (as when it scans the
    /// third-party app's authorisation page). `None`: no third-party app serves it.
    pub(crate) fn issue_code(&mut self, auth_app_id: &str) -> Option<String> {
        self.merchants.get(auth_app_id)?.isv_app_id.as_ref()?;
        let code = random_token("sandbox-code-");
        self.codes.insert(code.clone(), auth_app_id.to_owned());
        Some(code)
    }

    /// Exchange a grant to app `isv_app_id` for a new token: the merchant's earlier tokens stop
    /// working, as after a re-authorisation. `Err` is the sub-code.
    pub(crate) fn exchange(
        &mut self,
        isv_app_id: &str,
        grant: Grant<'_>,
    ) -> Result<Issued, &'static str> {
        let account = match grant {
            Grant::Code(code) => self.codes.remove(code).ok_or("isv.code-invalid")?,
            Grant::Refresh(token) => self
                .refresh_tokens
                .remove(token)
                .ok_or("isv.refresh-token-invalid")?,
        };
        let merchant = self
            .merchants
            .get(&account)
            .filter(|m| m.isv_app_id.as_deref() == Some(isv_app_id))
            .ok_or("isv.code-invalid")?;
        let user_id = merchant.seller_id.clone();
        self.tokens.retain(|_, a| *a != account);
        self.refresh_tokens.retain(|_, a| *a != account);
        let issued = Issued {
            app_auth_token: random_token("202612BB"),
            app_refresh_token: random_token("202612BBr"),
            auth_app_id: account.clone(),
            user_id,
        };
        self.tokens
            .insert(issued.app_auth_token.clone(), account.clone());
        self.refresh_tokens
            .insert(issued.app_refresh_token.clone(), account);
        Ok(issued)
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
        registry.register(&table("2021001", "2088000000000001", PKCS8), Path::new("."));
        registry.register(&table("2021001", "2088000000000002", PKCS8), Path::new("."));
        assert_eq!(
            registry.get("2021001").unwrap().seller_id,
            "2088000000000002"
        );
    }

    #[test]
    fn tables_without_usable_credentials_are_skipped() {
        let mut registry = Registry::default();
        registry.register(
            &table("2021001", "2088000000000001", "not a key"),
            Path::new("."),
        );
        registry.register(&table("2021002", "", PKCS8), Path::new("."));
        let mut no_key = table("2021003", "2088000000000001", PKCS8);
        no_key.remove("private_key");
        registry.register(&no_key, Path::new("."));
        for app_id in ["2021001", "2021002", "2021003"] {
            assert!(registry.get(app_id).is_none(), "{app_id}");
        }
    }
}
