//! The tenant's `[providers.wechat_miniprogram]` table, validated. Every bad key is reported, and no
//! error message ever contains a secret value.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use paybridge_core::provider::{BuildContext, FieldError, FieldSpec};
use secrecy::{ExposeSecret, SecretString};

use crate::certs::ClientIdentity;
use crate::sign::SignType;

/// Default `api_base`.
pub const DEFAULT_API_BASE: &str = "https://api.mch.weixin.qq.com";
/// Default `login_base`.
pub const DEFAULT_LOGIN_BASE: &str = "https://api.weixin.qq.com";
/// Default `spbill_create_ip` when the merchant reports no client IP.
pub const DEFAULT_SPBILL_CREATE_IP: &str = "127.0.0.1";

/// The config keys, for the admin and the docs.
pub const FIELDS: &[FieldSpec] = &[
    FieldSpec {
        name: "appid",
        required: true,
        secret: false,
        description: "Mini-program AppID bound to mch_id",
    },
    FieldSpec {
        name: "mch_id",
        required: true,
        secret: false,
        description: "WeChat Pay merchant id",
    },
    FieldSpec {
        name: "api_key",
        required: false,
        secret: true,
        description: "API v2 key (32 characters): required with api_version v2, and kept on a v3 tenant while its v2 orders are open",
    },
    FieldSpec {
        name: "app_secret",
        required: false,
        secret: true,
        description: "Mini-program AppSecret, needed for login (jscode2session)",
    },
    FieldSpec {
        name: "sign_type",
        required: false,
        secret: false,
        description: "\"MD5\" or \"HMAC-SHA256\" (default)",
    },
    FieldSpec {
        name: "client_cert",
        required: false,
        secret: false,
        description: "Path to apiclient_cert.pem (refunds); with client_key",
    },
    FieldSpec {
        name: "client_key",
        required: false,
        secret: false,
        description: "Path to apiclient_key.pem (refunds)",
    },
    FieldSpec {
        name: "client_p12",
        required: false,
        secret: false,
        description: "Path to apiclient_cert.p12 (refunds; password = mch_id), instead of the PEM pair",
    },
    FieldSpec {
        name: "ca_file",
        required: false,
        secret: false,
        description: "Path to extra trusted root certificates (PEM) for api_base/login_base",
    },
    FieldSpec {
        name: "api_base",
        required: false,
        secret: false,
        description: "WeChat Pay API base URL",
    },
    FieldSpec {
        name: "login_base",
        required: false,
        secret: false,
        description: "WeChat login API base URL",
    },
    FieldSpec {
        name: "spbill_create_ip",
        required: false,
        secret: false,
        description: "IP sent when the merchant gives no client_ip (default 127.0.0.1)",
    },
    FieldSpec {
        name: "api_version",
        required: false,
        secret: false,
        description: "\"v2\" (default) or \"v3\": the protocol of new orders; each order keeps its own",
    },
    FieldSpec {
        name: "apiv3_key",
        required: false,
        secret: true,
        description: "API v3 key (32 characters): decrypts v3 notifications and certificates; required for v3",
    },
    FieldSpec {
        name: "merchant_serial_no",
        required: false,
        secret: false,
        description: "Serial of the merchant API certificate (v3); default: read from client_cert",
    },
    FieldSpec {
        name: "wechatpay_public_key",
        required: false,
        secret: false,
        description: "v3 public-key mode: the WeChat Pay public key (PEM, file path or inline), with wechatpay_public_key_id",
    },
    FieldSpec {
        name: "wechatpay_public_key_id",
        required: false,
        secret: false,
        description: "v3 public-key mode: the key's ID (PUB_KEY_ID_…)",
    },
    FieldSpec {
        name: "sp_mchid",
        required: false,
        secret: false,
        description: "Service-provider mode (a platform's section): the service provider's merchant id, instead of mch_id",
    },
    FieldSpec {
        name: "sp_appid",
        required: false,
        secret: false,
        description: "Service-provider mode: the service provider's AppID, instead of appid",
    },
    FieldSpec {
        name: "sub_mchid",
        required: false,
        secret: false,
        description: "Service-provider mode (the tenant's): the sub-merchant id the service provider pays for",
    },
    FieldSpec {
        name: "sub_appid",
        required: false,
        secret: false,
        description: "Service-provider mode: the sub-merchant's own mini-program, with its app_secret; payers are then sub_openid",
    },
    FieldSpec {
        name: "platform_certificates",
        required: false,
        secret: false,
        description: "v3 certificate mode: download WeChat Pay platform certificates (true/false); both modes may be on",
    },
];

/// The protocol of new orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// XML, MD5/HMAC keys.
    V2,
    /// JSON, RSA signatures, AES-GCM.
    V3,
}

/// The API v3 part of a merchant config, present when `apiv3_key` is set.
#[derive(Clone)]
pub struct V3Config {
    /// The APIv3 key.
    pub apiv3_key: secrecy::SecretSlice<u8>,
    /// The merchant API certificate's serial (uppercase hex).
    pub serial_no: String,
    /// The merchant API private key (`client_key`).
    pub key: std::sync::Arc<crate::v3::crypto::MerchantKey>,
    /// Public-key mode: the key's ID and the key.
    pub public_key: Option<(String, crate::v3::crypto::VerifyingKey)>,
    /// Certificate mode.
    pub platform_certificates: bool,
}

impl fmt::Debug for V3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("V3Config")
            .field("apiv3_key", &"[REDACTED]")
            .field("serial_no", &self.serial_no)
            .field("public_key_id", &self.public_key.as_ref().map(|(id, _)| id))
            .field("platform_certificates", &self.platform_certificates)
            .finish_non_exhaustive()
    }
}

/// A validated WeChat Pay merchant config.
#[derive(Clone)]
pub struct WechatConfig {
    /// Mini-program AppID.
    pub appid: String,
    /// Merchant id.
    pub mch_id: String,
    /// API v2 key: signs every v2 request and verifies every v2 response and notification.
    /// Empty on a v3 tenant that has none ([`WechatConfig::has_api_key`]); the provider then
    /// refuses v2 work before anything is signed with it.
    pub api_key: SecretString,
    /// AppSecret for jscode2session.
    pub app_secret: Option<SecretString>,
    /// Sign type for new orders.
    pub sign_type: SignType,
    /// The merchant API certificate for `/secapi/` calls (refunds), from `client_cert` +
    /// `client_key` or `client_p12`, already checked.
    pub client_identity: Option<ClientIdentity>,
    /// Extra trusted roots (PEM), already parsed into certificates.
    pub ca_certs: Vec<reqwest::Certificate>,
    /// WeChat Pay API base, without a trailing `/`.
    pub api_base: String,
    /// Login API base, without a trailing `/`.
    pub login_base: String,
    /// Default `spbill_create_ip`.
    pub spbill_create_ip: String,
    /// The protocol of new orders.
    pub api_version: ApiVersion,
    /// The v3 credentials, when `apiv3_key` is set (required for `api_version = "v3"`).
    pub v3: Option<V3Config>,
    /// Service-provider mode: the sub-merchant this tenant is. `appid` and `mch_id` are then the
    /// service provider's (`sp_appid`, `sp_mchid`), which sign and are signed for.
    pub partner: Option<Partner>,
}

/// A sub-merchant of a service provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partner {
    /// `sub_mchid` (v2: `sub_mch_id`).
    pub sub_mchid: String,
    /// `sub_appid`: the sub-merchant's own mini-program, whose payers are `sub_openid`s.
    pub sub_appid: Option<String>,
}

impl fmt::Debug for WechatConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatConfig")
            .field("appid", &self.appid)
            .field("mch_id", &self.mch_id)
            .field("api_key", &"[REDACTED]")
            .field(
                "app_secret",
                &self.app_secret.as_ref().map(|_| "[REDACTED]"),
            )
            .field("sign_type", &self.sign_type)
            .field("client_identity", &self.client_identity)
            .field("ca_certs", &self.ca_certs.len())
            .field("api_base", &self.api_base)
            .field("login_base", &self.login_base)
            .field("spbill_create_ip", &self.spbill_create_ip)
            .field("api_version", &self.api_version)
            .field("v3", &self.v3)
            .field("partner", &self.partner)
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

impl Reader<'_> {
    /// The string at `key`; a wrong type or (if `required`) absence is recorded.
    fn string(&mut self, key: &str, required: bool) -> Option<String> {
        match self.table.get(key) {
            None if required => {
                self.errors.push(FieldError::new(key, "required"));
                None
            }
            None => None,
            Some(toml::Value::String(s)) if s.is_empty() && required => {
                self.errors
                    .push(FieldError::new(key, "required: must not be empty"));
                None
            }
            Some(toml::Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.errors.push(FieldError::new(
                    key,
                    format!("must be a string, found {}", type_name(other)),
                ));
                None
            }
        }
    }

    fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(key, message));
    }

    /// An identifier such as appid: 1–32 visible ASCII characters.
    fn identifier(&mut self, key: &str) -> Option<String> {
        let value = self.string(key, true)?;
        if value.len() <= 32 && value.bytes().all(|b| b.is_ascii_graphic()) {
            Some(value)
        } else {
            let shown: String = value.chars().take(40).collect();
            self.error(
                key,
                format!("must be 1-32 visible ASCII characters without spaces, found {shown:?}"),
            );
            None
        }
    }

    fn url(&mut self, key: &str, default: &str) -> String {
        let Some(value) = self.string(key, false) else {
            return default.to_owned();
        };
        match url::Url::parse(&value) {
            Ok(u) if u.scheme() == "http" && u.host().is_some() && !is_loopback(&u) => {
                // The login answer is unsigned and the login URL carries the AppSecret.
                self.error(
                    key,
                    format!(
                        "must use https (plain http only for a loopback host), found {value:?}"
                    ),
                );
                default.to_owned()
            }
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.query().is_none() =>
            {
                value.trim_end_matches('/').to_owned()
            }
            _ => {
                self.error(
                    key,
                    format!("must be an absolute http(s) URL without a query, found {value:?}"),
                );
                default.to_owned()
            }
        }
    }

    /// Read the file at `key` (relative to `base_dir`).
    fn file(&mut self, key: &str, base_dir: &Path) -> Option<(PathBuf, Vec<u8>)> {
        let value = self.string(key, false)?;
        if value.is_empty() {
            self.error(key, "must be a file path, found an empty string");
            return None;
        }
        let path = base_dir.join(&value);
        match std::fs::read(&path) {
            Ok(bytes) if bytes.is_empty() => {
                self.error(key, format!("file {} is empty", path.display()));
                None
            }
            Ok(bytes) => Some((path, bytes)),
            Err(e) => {
                self.error(key, format!("cannot read file {}: {e}", path.display()));
                None
            }
        }
    }
}

/// Validate the provider table (`enabled` already removed) and read the files it names.
pub fn parse(table: &toml::Table, ctx: &BuildContext) -> Result<WechatConfig, Vec<FieldError>> {
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

    let (appid, mch_id, partner) = identity(&mut r, table);
    let api_version = match r.string("api_version", false).as_deref() {
        None | Some("v2") => ApiVersion::V2,
        Some("v3") => ApiVersion::V3,
        Some(other) => {
            r.error(
                "api_version",
                format!("must be \"v2\" or \"v3\", found {other:?}"),
            );
            ApiVersion::V2
        }
    };
    let api_key = r
        .string("api_key", api_version == ApiVersion::V2)
        .and_then(|key| {
            let count = key.chars().count();
            if count == 32 {
                Some(SecretString::from(key))
            } else {
                r.error(
                    "api_key",
                    format!("must be exactly 32 characters (the API v2 key), found {count}"),
                );
                None
            }
        });
    let app_secret = match r.string("app_secret", false) {
        Some(s) if s.is_empty() => {
            r.error("app_secret", "must not be empty; omit the key instead");
            None
        }
        other => other.map(SecretString::from),
    };
    let sign_type = match r.string("sign_type", false) {
        None => SignType::HmacSha256,
        Some(s) => SignType::parse(&s).unwrap_or_else(|| {
            r.error(
                "sign_type",
                format!("must be \"MD5\" or \"HMAC-SHA256\", found {s:?}"),
            );
            SignType::HmacSha256
        }),
    };

    let client_cert = r.file("client_cert", &ctx.base_dir);
    let client_key = r.file("client_key", &ctx.base_dir);
    let client_p12 = r.file("client_p12", &ctx.base_dir);
    match (
        table.contains_key("client_cert"),
        table.contains_key("client_key"),
    ) {
        (true, false) => r.error("client_key", "required together with client_cert"),
        // API v3 signs with the key alone when merchant_serial_no names its certificate.
        (false, true) if table.contains_key("merchant_serial_no") => {}
        (false, true) => r.error("client_cert", "required together with client_key"),
        _ => {}
    }
    if table.contains_key("client_p12") && table.contains_key("client_cert") {
        r.error(
            "client_p12",
            "set either client_p12 or client_cert + client_key, not both",
        );
    }
    let client_identity = match (&client_cert, &client_key, &client_p12, &mch_id) {
        (Some((_, cert)), Some((_, key)), None, _) => {
            match ClientIdentity::from_pem_pair(cert, key) {
                Ok(identity) => Some(identity),
                Err(errors) => {
                    for e in errors {
                        let path = match e.field {
                            "client_key" => client_key.as_ref().map(|(p, _)| p),
                            _ => client_cert.as_ref().map(|(p, _)| p),
                        };
                        let shown = path.map(|p| p.display().to_string()).unwrap_or_default();
                        r.error(e.field, format!("file {shown} {}", e.message));
                    }
                    None
                }
            }
        }
        // The password of WeChat's .p12 is the mch_id; without a valid mch_id it cannot be opened
        // (the mch_id error is already recorded).
        (None, None, Some((path, p12)), Some(mch_id)) => {
            match ClientIdentity::from_pkcs12(p12, mch_id) {
                Ok(identity) => Some(identity),
                Err(e) => {
                    r.error(e.field, format!("file {}: {}", path.display(), e.message));
                    None
                }
            }
        }
        _ => None,
    };

    let mut ca_certs = Vec::new();
    if let Some((path, bytes)) = r.file("ca_file", &ctx.base_dir) {
        match reqwest::Certificate::from_pem_bundle(&bytes) {
            Ok(certs) if !certs.is_empty() => ca_certs = certs,
            _ => r.error(
                "ca_file",
                format!("file {} holds no PEM certificate", path.display()),
            ),
        }
    }

    let api_base = r.url("api_base", DEFAULT_API_BASE);
    let login_base = r.url("login_base", DEFAULT_LOGIN_BASE);
    let spbill_create_ip = match r.string("spbill_create_ip", false) {
        None => DEFAULT_SPBILL_CREATE_IP.to_owned(),
        Some(ip) if ip.parse::<IpAddr>().is_ok() => ip,
        Some(ip) => {
            r.error(
                "spbill_create_ip",
                format!("must be an IPv4 or IPv6 address, found {ip:?}"),
            );
            DEFAULT_SPBILL_CREATE_IP.to_owned()
        }
    };

    let v3 = parse_v3(&mut r, table, ctx, api_version, &client_cert, &client_key);

    let errors = r.errors;
    let api_key = match (api_key, api_version) {
        (Some(key), _) => Some(key),
        // Only a v3 tenant may go without (the reader already reported a missing v2 key).
        (None, ApiVersion::V3) if !table.contains_key("api_key") => {
            Some(SecretString::from(String::new()))
        }
        (None, _) => None,
    };
    match (appid, mch_id, api_key) {
        (Some(appid), Some(mch_id), Some(api_key)) if errors.is_empty() => Ok(WechatConfig {
            appid,
            mch_id,
            api_key,
            app_secret,
            sign_type,
            client_identity,
            ca_certs,
            api_base,
            login_base,
            spbill_create_ip,
            api_version,
            v3,
            partner,
        }),
        _ => Err(errors),
    }
}

/// `appid` and `mch_id` of a merchant, or `sp_appid`, `sp_mchid` and the sub-merchant of a
/// service provider's tenant.
fn identity(
    r: &mut Reader<'_>,
    table: &toml::Table,
) -> (Option<String>, Option<String>, Option<Partner>) {
    if !table.contains_key("sp_mchid") && !table.contains_key("sp_appid") {
        for key in ["sub_mchid", "sub_appid"] {
            if table.contains_key(key) {
                r.error(
                    key,
                    "only in service-provider mode: name the platform (platform = \"<id>\") whose section has sp_mchid and sp_appid",
                );
            }
        }
        return (r.identifier("appid"), r.identifier("mch_id"), None);
    }
    for key in ["appid", "mch_id"] {
        if table.contains_key(key) {
            r.error(
                key,
                format!(
                    "a service provider's section uses sp_{} instead",
                    key.replace('_', "")
                ),
            );
        }
    }
    let sp_appid = r.identifier("sp_appid");
    let sp_mchid = r.identifier("sp_mchid");
    let sub_mchid = r.identifier("sub_mchid");
    let sub_appid = table
        .contains_key("sub_appid")
        .then(|| r.identifier("sub_appid"))
        .flatten();
    if let (Some(sp), Some(sub)) = (&sp_mchid, &sub_mchid)
        && sp == sub
    {
        r.error(
            "sub_mchid",
            "is the service provider's own sp_mchid; set the sub-merchant's id",
        );
    }
    let partner = sub_mchid.map(|sub_mchid| Partner {
        sub_mchid,
        sub_appid,
    });
    (sp_appid, sp_mchid, partner)
}

type FileRead = Option<(PathBuf, Vec<u8>)>;

/// The v3 credentials: present when `apiv3_key` is set, required for `api_version = "v3"`.
fn parse_v3(
    r: &mut Reader<'_>,
    table: &toml::Table,
    ctx: &BuildContext,
    api_version: ApiVersion,
    client_cert: &FileRead,
    client_key: &FileRead,
) -> Option<V3Config> {
    use crate::v3::crypto::{MerchantKey, PUBLIC_KEY_ID_PREFIX, PlatformCertificate, VerifyingKey};
    let v3_keys = [
        "merchant_serial_no",
        "wechatpay_public_key",
        "wechatpay_public_key_id",
        "platform_certificates",
    ];
    let Some(apiv3_key) = r.string("apiv3_key", api_version == ApiVersion::V3) else {
        if api_version == ApiVersion::V2 {
            for key in v3_keys.iter().filter(|k| table.contains_key(**k)) {
                r.error(
                    key,
                    "a v3 setting without apiv3_key; set apiv3_key (32 characters)",
                );
            }
        }
        return None;
    };
    let count = apiv3_key.len();
    if count != 32 {
        r.error(
            "apiv3_key",
            format!("must be exactly 32 bytes (the APIv3 key set in the merchant platform), found {count}"),
        );
    }
    let key = match client_key {
        Some((path, bytes)) => match std::str::from_utf8(bytes)
            .map_err(|_| "is not PEM text".to_owned())
            .and_then(|text| MerchantKey::from_pem(text, "client_key").map_err(|e| e.to_string()))
        {
            Ok(key) => Some(key),
            Err(e) => {
                r.error("client_key", format!("file {}: {e}", path.display()));
                None
            }
        },
        None => {
            if !table.contains_key("client_key") {
                r.error(
                    "client_key",
                    "required for API v3: the merchant API private key (apiclient_key.pem) signs every v3 request",
                );
            }
            None
        }
    };
    let serial_no = match r.string("merchant_serial_no", false) {
        Some(serial)
            if !serial.is_empty()
                && serial.len() <= 64
                && serial.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Some(serial.to_ascii_uppercase())
        }
        Some(serial) => {
            let shown: String = serial.chars().take(70).collect();
            r.error(
                "merchant_serial_no",
                format!("must be the certificate serial in hex, found {shown:?}"),
            );
            None
        }
        None => match client_cert {
            Some((path, bytes)) => match std::str::from_utf8(bytes)
                .map_err(|_| "is not PEM text".to_owned())
                .and_then(|text| {
                    PlatformCertificate::from_pem(text, "client_cert").map_err(|e| e.to_string())
                }) {
                Ok(cert) => Some(cert.serial),
                Err(e) => {
                    r.error("client_cert", format!("file {}: {e}", path.display()));
                    None
                }
            },
            None => {
                r.error(
                    "merchant_serial_no",
                    "required for API v3 (or set client_cert, whose serial is used)",
                );
                None
            }
        },
    };
    let public_key_text = match r.string("wechatpay_public_key", false) {
        Some(text) if text.contains("-----BEGIN") => Some(text),
        Some(_) => r
            .file("wechatpay_public_key", &ctx.base_dir)
            .and_then(|(path, bytes)| match String::from_utf8(bytes) {
                Ok(text) => Some(text),
                Err(_) => {
                    r.error(
                        "wechatpay_public_key",
                        format!("file {} is not PEM text", path.display()),
                    );
                    None
                }
            }),
        None => None,
    };
    let public_key = public_key_text.and_then(|text| {
        VerifyingKey::from_public_key_pem(&text, "wechatpay_public_key")
            .map_err(|e| r.error("wechatpay_public_key", e.to_string()))
            .ok()
    });
    let public_key_id = r.string("wechatpay_public_key_id", false);
    if let Some(id) = &public_key_id
        && (!id.starts_with(PUBLIC_KEY_ID_PREFIX) || id.len() > 128)
    {
        r.error(
            "wechatpay_public_key_id",
            format!("must start with {PUBLIC_KEY_ID_PREFIX}"),
        );
    }
    match (
        table.contains_key("wechatpay_public_key"),
        table.contains_key("wechatpay_public_key_id"),
    ) {
        (true, false) => r.error(
            "wechatpay_public_key_id",
            "required together with wechatpay_public_key",
        ),
        (false, true) => r.error(
            "wechatpay_public_key",
            "required together with wechatpay_public_key_id",
        ),
        _ => {}
    }
    let platform_certificates = match table.get("platform_certificates") {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(other) => {
            r.error(
                "platform_certificates",
                format!("must be true or false, found {}", type_name(other)),
            );
            false
        }
    };
    if !table.contains_key("wechatpay_public_key") && !platform_certificates {
        r.error(
            "wechatpay_public_key",
            "API v3 needs a key to verify WeChat Pay: set wechatpay_public_key + wechatpay_public_key_id, or platform_certificates = true (both during a switch)",
        );
    }
    Some(V3Config {
        apiv3_key: secrecy::SecretSlice::from(apiv3_key.into_bytes()),
        serial_no: serial_no?,
        key: std::sync::Arc::new(key?),
        public_key: public_key.zip(public_key_id).map(|(k, id)| (id, k)),
        platform_certificates,
    })
}

/// What a refund without a client certificate gets (before any network call).
pub const REFUND_NEEDS_CERT: &str =
    "refunds need the merchant API certificate: set client_cert + client_key, or client_p12";

impl WechatConfig {
    /// Whether the tenant has an API v2 key (a v3 tenant may have none).
    pub fn has_api_key(&self) -> bool {
        use secrecy::ExposeSecret;
        !self.api_key.expose_secret().is_empty()
    }

    /// The merchant API certificate, or the error a `/secapi/` call without it gets.
    pub fn client_identity(
        &self,
    ) -> Result<&ClientIdentity, paybridge_core::provider::ProviderError> {
        self.client_identity.as_ref().ok_or_else(|| {
            paybridge_core::provider::ProviderError::Misconfigured {
                field: "client_cert".to_owned(),
                message: REFUND_NEEDS_CERT.to_owned(),
            }
        })
    }

    /// The appid the payer's openid belongs to, and whose `paySign` the client checks: the
    /// sub-merchant's own mini-program in service-provider mode with `sub_appid`, else `appid`.
    pub fn payer_appid(&self) -> &str {
        self.partner
            .as_ref()
            .and_then(|p| p.sub_appid.as_deref())
            .unwrap_or(&self.appid)
    }

    /// The AppSecret, or the error a login without it gets.
    pub fn app_secret(&self) -> Result<&str, paybridge_core::provider::ProviderError> {
        self.app_secret
            .as_ref()
            .map(|s| s.expose_secret())
            .ok_or_else(|| paybridge_core::provider::ProviderError::Misconfigured {
                field: "app_secret".to_owned(),
                message: "required for login (jscode2session); set the mini-program AppSecret"
                    .to_owned(),
            })
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
