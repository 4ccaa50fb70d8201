//! A tenant's config document: parsing, validation through the provider factories, and the built
//! providers.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::document::is_valid_id as is_valid_tenant_id;
pub use crate::document::{ConfigErrors, wipe_table, wipe_value};
use crate::platform::{Platforms, attribute_errors, resolve_provider_table};
use crate::provider::{BuildContext, FieldError, PaymentProvider, factories, factory};

/// One provider enabled (or configured but disabled) for a tenant.
#[derive(Clone)]
pub struct TenantProvider {
    /// Whether new orders may use it. A disabled provider still verifies notifications for its
    /// existing orders, because that money already moved.
    pub enabled: bool,
    /// The built provider. It holds its secrets as `SecretString`s and key objects; the table it
    /// was built from is wiped, not kept.
    pub provider: Arc<dyn PaymentProvider>,
}

/// A validated tenant with its providers built.
#[derive(Clone)]
pub struct Tenant {
    /// Stable id, used in notify URLs: 1–64 of `[a-z0-9_-]`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// SHA-256 hex digests of the tenant's API keys (never the plaintext).
    pub api_key_hashes: Vec<String>,
    /// Where merchant webhooks go.
    pub webhook_url: Option<String>,
    /// Signs merchant webhooks.
    pub webhook_secret: Option<SecretString>,
    /// Providers by kind.
    pub providers: BTreeMap<String, TenantProvider>,
}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenant")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// `sha256:<hex>` of a plaintext API key, the form stored in tenant configs.
pub fn hash_api_key(plaintext: &str) -> String {
    format!("sha256:{}", api_key_digest(plaintext))
}

/// The bare hex SHA-256 of a plaintext API key, as held in [`Tenant::api_key_hashes`].
pub fn api_key_digest(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

/// Parse and validate a tenant document. `base_dir` resolves relative file paths (the folder of
/// the tenant file). Every bad field is reported, not just the first.
pub fn parse_tenant(
    text: &str,
    base_dir: &Path,
    http_timeout: Duration,
) -> Result<Tenant, ConfigErrors> {
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ConfigErrors(vec![FieldError::new("(document)", e.message().to_owned())])
    })?;
    build_tenant(&doc, base_dir, http_timeout)
}

/// Validate an already-parsed tenant document and build its providers (a tenant that names no
/// platform).
pub fn build_tenant(
    doc: &toml::Table,
    base_dir: &Path,
    http_timeout: Duration,
) -> Result<Tenant, ConfigErrors> {
    build_tenant_with(doc, base_dir, http_timeout, Platforms::none())
}

/// Validate an already-parsed tenant document and build its providers; a provider table that
/// names a platform is built from that platform's section plus the tenant's identity.
pub fn build_tenant_with(
    doc: &toml::Table,
    base_dir: &Path,
    http_timeout: Duration,
    platforms: &Platforms,
) -> Result<Tenant, ConfigErrors> {
    let mut errors = Vec::new();
    let known = [
        "id",
        "name",
        "api_keys",
        "webhook_url",
        "webhook_secret",
        "providers",
    ];
    for key in doc.keys() {
        if !known.contains(&key.as_str()) {
            errors.push(FieldError::new(key.clone(), "unknown key"));
        }
    }
    let string = |key: &str, errors: &mut Vec<FieldError>, required: bool| -> Option<String> {
        match doc.get(key) {
            None if required => {
                errors.push(FieldError::new(key, "required"));
                None
            }
            None => None,
            Some(toml::Value::String(s)) => Some(s.clone()),
            Some(_) => {
                errors.push(FieldError::new(key, "must be a string"));
                None
            }
        }
    };
    let id = string("id", &mut errors, true).unwrap_or_default();
    if !id.is_empty() && !is_valid_tenant_id(&id) {
        errors.push(FieldError::new(
            "id",
            "must be 1-64 characters of a-z, 0-9, '_' or '-'",
        ));
    }
    let name = string("name", &mut errors, false).unwrap_or_else(|| id.clone());
    let webhook_url = string("webhook_url", &mut errors, false);
    if let Some(url) = &webhook_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        errors.push(FieldError::new("webhook_url", "must be an http(s) URL"));
    }
    let webhook_secret = string("webhook_secret", &mut errors, false).map(SecretString::from);

    let mut api_key_hashes = Vec::new();
    match doc.get("api_keys") {
        None => errors.push(FieldError::new(
            "api_keys",
            "required: a list of \"sha256:<hex>\" key digests",
        )),
        Some(toml::Value::Array(keys)) => {
            for (i, k) in keys.iter().enumerate() {
                match k.as_str().and_then(|s| s.strip_prefix("sha256:")) {
                    Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                        api_key_hashes.push(h.to_ascii_lowercase());
                    }
                    _ => errors.push(FieldError::new(
                        format!("api_keys[{i}]"),
                        "must be \"sha256:<64 hex digits>\" (the digest, never the plaintext key)",
                    )),
                }
            }
        }
        Some(_) => errors.push(FieldError::new("api_keys", "must be a list of strings")),
    }

    let mut providers = BTreeMap::new();
    match doc.get("providers") {
        None => {}
        Some(toml::Value::Table(tables)) => {
            for (kind, value) in tables {
                let prefix = format!("providers.{kind}");
                let Some(factory) = factory(kind) else {
                    let kinds: Vec<_> = factories().iter().map(|f| f.kind).collect();
                    errors.push(FieldError::new(
                        prefix,
                        format!("unknown provider kind; known kinds: {}", kinds.join(", ")),
                    ));
                    continue;
                };
                let Some(table) = value.as_table() else {
                    errors.push(FieldError::new(prefix, "must be a table"));
                    continue;
                };
                let mut table = table.clone();
                let enabled = match table.remove("enabled") {
                    None => true,
                    Some(toml::Value::Boolean(b)) => b,
                    Some(_) => {
                        errors.push(FieldError::new(
                            format!("{prefix}.enabled"),
                            "must be true or false",
                        ));
                        true
                    }
                };
                let built = resolve_provider_table(kind, &table, base_dir, platforms).and_then(
                    |(mut resolved, resolved_base)| {
                        let ctx = BuildContext {
                            base_dir: resolved_base,
                            http_timeout,
                        };
                        let built = (factory.build)(&resolved, &ctx);
                        wipe_table(&mut resolved);
                        built.map_err(|e| attribute_errors(e, &table, kind))
                    },
                );
                wipe_table(&mut table);
                match built {
                    Ok(provider) => {
                        providers.insert(kind.clone(), TenantProvider { enabled, provider });
                    }
                    Err(field_errors) => errors.extend(
                        field_errors
                            .into_iter()
                            .map(|e| FieldError::new(format!("{prefix}.{}", e.field), e.message)),
                    ),
                }
            }
        }
        Some(_) => errors.push(FieldError::new(
            "providers",
            "must be a table of provider kinds",
        )),
    }

    if errors.is_empty() {
        Ok(Tenant {
            id,
            name,
            api_key_hashes,
            webhook_url,
            webhook_secret,
            providers,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

impl Tenant {
    /// The provider of this kind if the tenant has it enabled.
    pub fn enabled_provider(&self, kind: &str) -> Option<&Arc<dyn PaymentProvider>> {
        self.providers
            .get(kind)
            .filter(|p| p.enabled)
            .map(|p| &p.provider)
    }

    /// Every enabled provider with its kind.
    pub fn enabled_providers(&self) -> impl Iterator<Item = (&str, &Arc<dyn PaymentProvider>)> {
        self.providers
            .iter()
            .filter(|(_, p)| p.enabled)
            .map(|(kind, p)| (kind.as_str(), &p.provider))
    }

    /// The provider of this kind, enabled or not (for notifications of existing orders).
    pub fn any_provider(&self, kind: &str) -> Option<&Arc<dyn PaymentProvider>> {
        self.providers.get(kind).map(|p| &p.provider)
    }

    /// Whether this plaintext key is one of the tenant's (compares digests).
    pub fn accepts_api_key(&self, plaintext: &str) -> bool {
        let digest = api_key_digest(plaintext);
        self.api_key_hashes.iter().any(|h| h == &digest)
    }

    /// The webhook secret, exposed for signing only.
    pub fn webhook_secret_bytes(&self) -> Option<&[u8]> {
        self.webhook_secret
            .as_ref()
            .map(|s| s.expose_secret().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wiping_a_document_empties_every_string_at_every_depth() {
        let mut doc: toml::Table = toml::from_str(
            "id = \"t\"\n[providers.x]\napi_key = \"secret-1\"\nkeys = [\"secret-2\", 3]\n[providers.x.nested]\nk = \"secret-3\"",
        )
        .expect("toml");
        wipe_table(&mut doc);
        let text = toml::to_string(&doc).expect("render");
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("api_key = \"\""), "{text}");
        assert!(text.contains('3'), "non-strings stay: {text}");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let doc = r#"
            name = 3
            api_keys = ["plaintext-key"]
            colour = "blue"
            [providers.nope]
            x = 1
        "#;
        let errors = parse_tenant(doc, Path::new("."), Duration::from_secs(1))
            .err()
            .map(|e| e.to_string());
        let text = errors.unwrap_or_default();
        for needle in [
            "id: required",
            "name: must be a string",
            "api_keys[0]: must be",
            "colour: unknown key",
            "providers.nope: unknown provider kind",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from {text:?}");
        }
    }

    #[test]
    fn api_keys_are_compared_by_digest() {
        let doc = format!(
            "id = \"t1\"\napi_keys = [\"{}\"]\n",
            hash_api_key("secret-key")
        );
        let tenant = parse_tenant(&doc, Path::new("."), Duration::from_secs(1));
        let Ok(tenant) = tenant else {
            panic!("valid tenant refused")
        };
        assert!(tenant.accepts_api_key("secret-key"));
        assert!(!tenant.accepts_api_key("secret-key2"));
    }

    #[test]
    fn tenant_ids_are_url_safe() {
        assert!(is_valid_tenant_id("demo_1-x"));
        assert!(!is_valid_tenant_id("Demo"));
        assert!(!is_valid_tenant_id("a/b"));
        assert!(!is_valid_tenant_id(""));
    }
}

/// Fuzzing (issue 8): validating any TOML document, however wrong its keys, types and nesting,
/// returns errors and never panics. `PROPTEST_CASES` sets the number of cases.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = toml::Value> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(toml::Value::Boolean),
            any::<i64>().prop_map(toml::Value::Integer),
            any::<f64>().prop_map(toml::Value::Float),
            "\\PC{0,20}".prop_map(toml::Value::String),
            prop::sample::select(
                &["https://x.example/h", "sha256:00", "wechat_miniprogram", ""][..]
            )
            .prop_map(|s| toml::Value::String(s.to_owned())),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
                prop::collection::btree_map(key(), inner, 0..5)
                    .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
            ]
        })
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(
                &[
                    "id",
                    "name",
                    "api_keys",
                    "webhook_url",
                    "webhook_secret",
                    "providers",
                    "wechat_miniprogram",
                    "alipay_app",
                    "enabled",
                    "appid",
                ][..]
            )
            .prop_map(str::to_owned),
            "\\PC{0,8}",
        ]
    }

    proptest! {
        #[test]
        fn any_document_is_validated_without_a_panic(
            doc in prop::collection::btree_map(key(), value(), 0..8),
        ) {
            let doc: toml::Table = doc.into_iter().collect();
            let _ = build_tenant(&doc, Path::new("."), Duration::from_secs(1));
        }
    }
}
