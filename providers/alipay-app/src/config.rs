//! The tenant's `[providers.alipay_app]` table, validated. Every bad key is reported, and no error
//! message ever contains key material.

use std::fmt;
use std::path::Path;

use paybridge_core::provider::{BuildContext, FieldError, FieldSpec};

use crate::cert_mode::CertMode;
use crate::keys::{AlipayPublicKey, AppPrivateKey};

/// The one `sign_type` paybridge signs and accepts (SHA256withRSA).
pub const SIGN_TYPE_RSA2: &str = "RSA2";

/// Default `gateway_url` (production).
pub const DEFAULT_GATEWAY_URL: &str = "https://openapi.alipay.com/gateway.do";

/// The config keys, for the admin and the docs.
pub const FIELDS: &[FieldSpec] = &[
    FieldSpec {
        name: "app_id",
        required: true,
        secret: false,
        description: "Alipay app id (digits, e.g. 2021000122671080)",
    },
    FieldSpec {
        name: "private_key",
        required: true,
        secret: true,
        description: "App private key (RSA 2048): PKCS#1 or PKCS#8, PEM or one-line base64",
    },
    FieldSpec {
        name: "alipay_public_key",
        required: false,
        secret: false,
        description: "Alipay's public key (SPKI, PEM or one-line base64) from the Alipay console; not the app's own public key. Or certificate mode: app_cert, alipay_public_cert and alipay_root_cert",
    },
    FieldSpec {
        name: "app_auth_token",
        required: false,
        secret: true,
        description: "Third-party app (ISV) mode: the merchant's authorisation token (app_auth_token), sent with every call; app_id and private_key are then the ISV app's",
    },
    FieldSpec {
        name: "auth_app_id",
        required: false,
        secret: false,
        description: "Third-party app (ISV) mode: the merchant's own app id, which every notification's auth_app_id must equal; required with app_auth_token",
    },
    FieldSpec {
        name: "app_refresh_token",
        required: false,
        secret: true,
        description: "Third-party app (ISV) mode: the refresh token of the merchant's authorisation; the admin's authorize action writes it with the new app_auth_token",
    },
    FieldSpec {
        name: "app_cert",
        required: false,
        secret: false,
        description: "Certificate mode: the app's certificate (appCertPublicKey_<app_id>.crt), PEM file or inline",
    },
    FieldSpec {
        name: "alipay_public_cert",
        required: false,
        secret: false,
        description: "Certificate mode: Alipay's certificate (alipayCertPublicKey_RSA2.crt), PEM file or inline",
    },
    FieldSpec {
        name: "alipay_root_cert",
        required: false,
        secret: false,
        description: "Certificate mode: Alipay's root bundle (alipayRootCert.crt), PEM file or inline",
    },
    FieldSpec {
        name: "seller_id",
        required: true,
        secret: false,
        description: "The merchant's Alipay user id (2088 + 12 digits), checked on every notification",
    },
    FieldSpec {
        name: "gateway_url",
        required: false,
        secret: false,
        description: "OpenAPI gateway (default https://openapi.alipay.com/gateway.do)",
    },
    FieldSpec {
        name: "sign_type",
        required: false,
        secret: false,
        description: "\"RSA2\" (the default and only value)",
    },
    FieldSpec {
        name: "ca_file",
        required: false,
        secret: false,
        description: "Path to extra trusted root certificates (PEM) for gateway_url",
    },
];

/// A validated Alipay app-pay merchant config.
/// A merchant served through a third-party app (ISV): `app_id` and `private_key` are the ISV's,
/// and every call acts for the merchant by its token.
pub struct Isv {
    /// `app_auth_token`, a common parameter of every call and orderString. Never shown.
    pub app_auth_token: secrecy::SecretString,
    /// The merchant's own app: `auth_app_id` of its notifications.
    pub auth_app_id: String,
    /// `app_refresh_token`, which refreshes the token (an admin action).
    pub refresh_token: Option<secrecy::SecretString>,
}

pub struct AlipayConfig {
    /// The app id.
    pub app_id: String,
    /// Signs every request and orderString.
    pub private_key: AppPrivateKey,
    /// Verifies every gateway response and notification (in certificate mode: the key of
    /// `alipay_public_cert`).
    pub alipay_public_key: AlipayPublicKey,
    /// Certificate mode, when configured: the numbers every request carries, and the Alipay
    /// certificates trusted for answers.
    pub cert_mode: Option<std::sync::Arc<CertMode>>,
    /// Third-party app (ISV) mode: the merchant's token and its own app id.
    pub isv: Option<Isv>,
    /// The payee every notification must name.
    pub seller_id: String,
    /// The gateway URL, as configured.
    pub gateway_url: String,
    /// Extra trusted roots for the gateway.
    pub ca_certs: Vec<reqwest::Certificate>,
}

impl fmt::Debug for AlipayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlipayConfig")
            .field("app_id", &self.app_id)
            .field("private_key", &self.private_key)
            .field("alipay_public_key", &self.alipay_public_key)
            .field("seller_id", &self.seller_id)
            .field("gateway_url", &self.gateway_url)
            .field("ca_certs", &self.ca_certs.len())
            .field("cert_mode", &self.cert_mode.is_some())
            .field("isv", &self.isv.as_ref().map(|i| &i.auth_app_id))
            .finish()
    }
}

fn type_name(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

struct Reader<'a> {
    table: &'a toml::Table,
    errors: Vec<FieldError>,
}

impl<'a> Reader<'a> {
    fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(key, message));
    }

    /// The string at `key`; a wrong type, or absence/emptiness when `required`, is recorded.
    fn string(&mut self, key: &str, required: bool) -> Option<&'a str> {
        let table = self.table;
        match table.get(key) {
            None if required => {
                self.error(key, "required");
                None
            }
            None => None,
            Some(toml::Value::String(s)) if s.trim().is_empty() => {
                self.error(key, "must not be empty");
                None
            }
            Some(toml::Value::String(s)) => Some(s.as_str()),
            Some(other) => {
                let found = type_name(other);
                self.error(key, format!("must be a string, found {found}"));
                None
            }
        }
    }

    fn app_id(&mut self) -> Option<String> {
        let value = self.string("app_id", true)?;
        if (1..=32).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit()) {
            Some(value.to_owned())
        } else {
            let shown: String = value.chars().take(40).collect();
            self.error(
                "app_id",
                format!("must be the Alipay app id: 1-32 digits (e.g. 2021000122671080), found {shown:?}"),
            );
            None
        }
    }

    /// `app_auth_token` with `auth_app_id`: both or neither.
    fn isv(&mut self) -> Option<Isv> {
        let token = self.string("app_auth_token", false);
        let app = self.string("auth_app_id", false);
        match (token, app) {
            (None, None) => {
                if self.table.contains_key("app_refresh_token") {
                    self.error(
                        "app_refresh_token",
                        "only with app_auth_token (third-party app mode)",
                    );
                }
                None
            }
            (Some(token), Some(app)) => {
                let token_ok = token.len() <= 128
                    && token
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
                let app_ok =
                    (1..=32).contains(&app.len()) && app.bytes().all(|b| b.is_ascii_digit());
                if !token_ok {
                    self.error(
                        "app_auth_token",
                        "must be the token Alipay issued (letters, digits, '.', '_', '-'; at most 128)",
                    );
                }
                if !app_ok {
                    let shown: String = app.chars().take(40).collect();
                    self.error(
                        "auth_app_id",
                        format!(
                            "must be the merchant's Alipay app id: 1-32 digits, found {shown:?}"
                        ),
                    );
                }
                let refresh_token = self
                    .string("app_refresh_token", false)
                    .map(|t| secrecy::SecretString::from(t.to_owned()));
                (token_ok && app_ok).then(|| Isv {
                    app_auth_token: secrecy::SecretString::from(token.to_owned()),
                    auth_app_id: app.to_owned(),
                    refresh_token,
                })
            }
            (Some(_), None) => {
                self.error(
                    "auth_app_id",
                    "required with app_auth_token: the merchant's own app id, checked on every notification",
                );
                None
            }
            (None, Some(_)) => {
                self.error(
                    "app_auth_token",
                    "required with auth_app_id: the token the merchant granted the third-party app",
                );
                None
            }
        }
    }

    fn seller_id(&mut self) -> Option<String> {
        let value = self.string("seller_id", true)?;
        let ok = value.len() == 16
            && value.starts_with("2088")
            && value.bytes().all(|b| b.is_ascii_digit());
        if ok {
            Some(value.to_owned())
        } else {
            let shown: String = value.chars().take(40).collect();
            self.error(
                "seller_id",
                format!("must be the merchant's Alipay user id: 2088 followed by 12 digits, found {shown:?}"),
            );
            None
        }
    }

    fn gateway_url(&mut self) -> String {
        let Some(value) = self.string("gateway_url", false) else {
            return DEFAULT_GATEWAY_URL.to_owned();
        };
        let value = value.to_owned();
        match url::Url::parse(&value) {
            Ok(u) if u.scheme() == "http" && u.host().is_some() && !is_loopback(&u) => {
                // Signed answers carry no nonce: in cleartext an old one could be replayed.
                self.error(
                    "gateway_url",
                    format!(
                        "must use https (plain http only for a loopback host), found {value:?}"
                    ),
                );
                DEFAULT_GATEWAY_URL.to_owned()
            }
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.query().is_none()
                    && u.fragment().is_none() =>
            {
                value
            }
            _ => {
                self.error(
                    "gateway_url",
                    format!("must be an absolute http(s) URL without a query, found {value:?}"),
                );
                DEFAULT_GATEWAY_URL.to_owned()
            }
        }
    }

    fn sign_type(&mut self) {
        match self.string("sign_type", false) {
            None => {}
            Some(SIGN_TYPE_RSA2) => {}
            Some("RSA") => self.error(
                "sign_type",
                "RSA (SHA1withRSA) is legacy and not supported; use \"RSA2\" (the default)",
            ),
            Some(other) => {
                let shown: String = other.chars().take(40).collect();
                self.error("sign_type", format!("must be \"RSA2\", found {shown:?}"));
            }
        }
    }

    /// A PEM text given inline (it contains `-----BEGIN`) or as a file path relative to
    /// `base_dir`.
    fn pem(&mut self, key: &'static str, base_dir: &Path) -> Option<String> {
        let value = self.string(key, false)?;
        if value.contains("-----BEGIN") {
            return Some(value.to_owned());
        }
        let path = base_dir.join(value);
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) => {
                self.error(key, format!("cannot read file {}: {e}", path.display()));
                None
            }
        }
    }

    /// Alipay's key: `alipay_public_key`, or certificate mode's three files.
    fn alipay_keys(
        &mut self,
        base_dir: &Path,
        private_key: Option<&AppPrivateKey>,
    ) -> Option<(AlipayPublicKey, Option<std::sync::Arc<CertMode>>)> {
        const CERTS: [&str; 3] = ["app_cert", "alipay_public_cert", "alipay_root_cert"];
        let table = self.table;
        let given: Vec<&str> = CERTS
            .into_iter()
            .filter(|k| table.contains_key(*k))
            .collect();
        let has_key = table.contains_key("alipay_public_key");
        if has_key && !given.is_empty() {
            self.error(
                "alipay_public_key",
                "set either alipay_public_key or certificate mode (app_cert, alipay_public_cert, alipay_root_cert), not both",
            );
            return None;
        }
        if given.is_empty() {
            if !has_key {
                self.error(
                    "alipay_public_key",
                    "required (or certificate mode: app_cert, alipay_public_cert and alipay_root_cert)",
                );
                return None;
            }
            let key = self
                .string("alipay_public_key", true)
                .map(AlipayPublicKey::parse)?
                .map_err(|m| self.error("alipay_public_key", m))
                .ok()?;
            return Some((key, None));
        }
        for missing in CERTS.into_iter().filter(|k| !given.contains(k)) {
            self.error(
                missing,
                "required in certificate mode, together with app_cert, alipay_public_cert and alipay_root_cert",
            );
        }
        let (Some(app), Some(alipay), Some(root)) = (
            self.pem("app_cert", base_dir),
            self.pem("alipay_public_cert", base_dir),
            self.pem("alipay_root_cert", base_dir),
        ) else {
            return None;
        };
        let spki = private_key.map(AppPrivateKey::public_key_spki);
        match CertMode::new(&app, &alipay, &root, spki, chrono::Utc::now()) {
            Ok((mode, key)) => Some((key, Some(std::sync::Arc::new(mode)))),
            Err(problems) => {
                for (field, message) in problems {
                    self.error(field, message);
                }
                None
            }
        }
    }

    fn ca_certs(&mut self, base_dir: &Path) -> Vec<reqwest::Certificate> {
        let Some(value) = self.string("ca_file", false) else {
            return Vec::new();
        };
        let path = base_dir.join(value);
        match std::fs::read(&path) {
            Ok(bytes) => match reqwest::Certificate::from_pem_bundle(&bytes) {
                Ok(certs) if !certs.is_empty() => certs,
                _ => {
                    self.error(
                        "ca_file",
                        format!("file {} holds no PEM certificate", path.display()),
                    );
                    Vec::new()
                }
            },
            Err(e) => {
                self.error(
                    "ca_file",
                    format!("cannot read file {}: {e}", path.display()),
                );
                Vec::new()
            }
        }
    }
}

/// Validate the provider table (`enabled` already removed), parse both keys and read `ca_file`.
pub fn parse(table: &toml::Table, ctx: &BuildContext) -> Result<AlipayConfig, Vec<FieldError>> {
    let mut r = Reader {
        table,
        errors: Vec::new(),
    };
    for key in table.keys() {
        if !FIELDS.iter().any(|f| f.name == key) {
            let known: Vec<&str> = FIELDS.iter().map(|f| f.name).collect();
            r.error(
                key,
                format!("unknown key; expected one of: {}", known.join(", ")),
            );
        }
    }

    let app_id = r.app_id();
    let private_key = r
        .string("private_key", true)
        .map(AppPrivateKey::parse)
        .and_then(|parsed| parsed.map_err(|m| r.error("private_key", m)).ok());
    let alipay_keys = r.alipay_keys(&ctx.base_dir, private_key.as_ref());
    if let (Some(private), Some((public, cert_mode))) = (&private_key, &alipay_keys)
        && private.public_key_spki() == public.spki()
    {
        let field = if cert_mode.is_some() {
            "alipay_public_cert"
        } else {
            "alipay_public_key"
        };
        r.error(
            field,
            "this is the app's own public key; use the Alipay public key from the Alipay console",
        );
    }
    let seller_id = r.seller_id();
    let isv = r.isv();
    let gateway_url = r.gateway_url();
    r.sign_type();
    let ca_certs = r.ca_certs(&ctx.base_dir);

    let errors = r.errors;
    match (app_id, private_key, alipay_keys, seller_id) {
        (
            Some(app_id),
            Some(private_key),
            Some((alipay_public_key, cert_mode)),
            Some(seller_id),
        ) if errors.is_empty() => Ok(AlipayConfig {
            app_id,
            private_key,
            alipay_public_key,
            cert_mode,
            isv,
            seller_id,
            gateway_url,
            ca_certs,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

/// Whether a URL's host is this machine (plain http is allowed there: the sandbox, test doubles).
fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
