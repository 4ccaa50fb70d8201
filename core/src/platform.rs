//! Platform credentials: a service provider's (WeChat Pay 服务商) or third-party app's (Alipay
//! ISV) provider sections, which tenants name with `platform = "<id>"` in a provider table and
//! complete with their own identity (`sub_mchid`, `app_auth_token`, …).
//!
//! A platform document:
//! ```toml
//! id = "acme"
//! name = "Acme Platform"
//! [wechat_miniprogram]
//! sp_mchid = "1900000100"
//! # …the service provider's keys
//! [alipay_app]
//! app_id = "2021…"
//! # …the ISV app's keys
//! ```
//! A tenant's provider table is the platform's section plus the tenant's identity fields (those
//! the factory lists in [`PlatformMode::tenant_fields`]); file paths resolve against the
//! platform's folder. A tenant sets nothing else, so it cannot override a platform's keys; an
//! identity field that the platform also sets (`app_secret` of the service provider's own
//! mini-program) is the tenant's where the tenant sets it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::document::{ConfigErrors, is_valid_id, wipe_table, wipe_value};
pub use crate::provider::PlatformMode;
use crate::provider::{BuildContext, FieldError, factories, factory};

/// The key of a tenant's provider table that names its platform.
pub const PLATFORM_KEY: &str = "platform";

/// A validated platform: its sections by provider kind, kept as tables until a tenant's
/// provider is built from them.
#[derive(Clone)]
pub struct Platform {
    /// 1–64 of `[a-z0-9_-]`, as tenant ids.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The provider sections by kind (plaintext secrets: wipe with [`Platform::wipe`]).
    pub sections: BTreeMap<String, toml::Table>,
    /// The folder relative file paths of the sections resolve against.
    pub base_dir: PathBuf,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("id", &self.id)
            .field("kinds", &self.sections.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Platform {
    /// Zero every string of the sections in place.
    pub fn wipe(&mut self) {
        self.sections.values_mut().for_each(wipe_table);
    }
}

/// The platforms tenants may name, by id.
#[derive(Debug, Clone, Default)]
pub struct Platforms(pub BTreeMap<String, Platform>);

impl Platforms {
    /// No platforms.
    pub fn none() -> &'static Platforms {
        static NONE: Platforms = Platforms(BTreeMap::new());
        &NONE
    }

    /// Zero every platform's secrets in place.
    pub fn wipe(&mut self) {
        self.0.values_mut().for_each(Platform::wipe);
    }
}

/// The platform a provider table names, if any (`platform = "<id>"`).
pub fn platform_of(provider_table: &toml::Table) -> Option<&str> {
    provider_table
        .get(PLATFORM_KEY)
        .and_then(toml::Value::as_str)
}

/// A tenant's provider table resolved against its platform: the table the factory builds and
/// the folder its file paths resolve against. Without `platform`, the table as it is. Errors
/// name fields relative to the tenant's provider table.
pub fn resolve_provider_table(
    kind: &str,
    table: &toml::Table,
    tenant_base: &Path,
    platforms: &Platforms,
) -> Result<(toml::Table, PathBuf), Vec<FieldError>> {
    let Some(value) = table.get(PLATFORM_KEY) else {
        return Ok((table.clone(), tenant_base.to_path_buf()));
    };
    let Some(id) = value.as_str() else {
        return Err(vec![FieldError::new(
            PLATFORM_KEY,
            "must be a string: the id of a platform",
        )]);
    };
    let Some(platform) = platforms.0.get(id) else {
        let known: Vec<&str> = platforms.0.keys().map(String::as_str).collect();
        return Err(vec![FieldError::new(
            PLATFORM_KEY,
            format!(
                "no platform {id:?}; create it under /admin/api/platforms first (known: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        )]);
    };
    let Some(section) = platform.sections.get(kind) else {
        return Err(vec![FieldError::new(
            PLATFORM_KEY,
            format!("platform {id:?} has no [{kind}] section"),
        )]);
    };
    let mode = factory(kind).and_then(|f| f.platform);
    let tenant_fields = mode.map_or(&[][..], |m| m.tenant_fields);
    let mut merged = section.clone();
    let mut errors = Vec::new();
    for (key, value) in table {
        if key == PLATFORM_KEY || key == "enabled" {
            continue;
        }
        if !tenant_fields.contains(&key.as_str()) {
            let hint = if section.contains_key(key) {
                format!("is set by platform {id:?}")
            } else {
                "belongs in the platform, not in one of its tenants".to_owned()
            };
            errors.push(FieldError::new(
                key.clone(),
                format!(
                    "{hint}; a tenant of a platform sets only {}",
                    tenant_fields.join(", ")
                ),
            ));
            continue;
        }
        // The tenant's own identity wins (the `app_secret` of its own mini-program over the
        // service provider's, say).
        if let Some(mut replaced) = merged.insert(key.clone(), value.clone()) {
            wipe_value(&mut replaced);
        }
    }
    for (set, needs) in mode.map_or(&[][..], |m| m.requires) {
        if table.contains_key(*set) && !table.contains_key(*needs) {
            errors.push(FieldError::new(
                *needs,
                format!("required with {set}: the tenant's own, not the platform's"),
            ));
        }
    }
    for (required, _) in mode.map_or(&[][..], |m| m.probe) {
        if !table.contains_key(*required) {
            errors.push(FieldError::new(
                *required,
                format!("required: each tenant of platform {id:?} sets its own"),
            ));
        }
    }
    if errors.is_empty() {
        Ok((merged, platform.base_dir.clone()))
    } else {
        wipe_table(&mut merged);
        Err(errors)
    }
}

/// Errors of a factory build on a resolved table, renamed so a platform's own field reads as
/// such (`platform: platform "acme" [kind].client_key: …`) and a tenant's field keeps its name.
pub fn attribute_errors(
    errors: Vec<FieldError>,
    tenant_table: &toml::Table,
    kind: &str,
) -> Vec<FieldError> {
    let Some(id) = platform_of(tenant_table) else {
        return errors;
    };
    errors
        .into_iter()
        .map(|e| {
            if tenant_table.contains_key(&e.field) {
                e
            } else {
                FieldError::new(
                    PLATFORM_KEY,
                    format!("platform {id:?} [{kind}].{}: {}", e.field, e.message),
                )
            }
        })
        .collect()
}

/// Validate a platform document: its id and name, and each section built by its factory with
/// the factory's placeholder identity. Every problem is reported with its path.
pub fn build_platform(
    doc: &toml::Table,
    base_dir: &Path,
    http_timeout: Duration,
) -> Result<Platform, ConfigErrors> {
    let mut errors = Vec::new();
    let id = match doc.get("id") {
        Some(toml::Value::String(s)) if is_valid_id(s) => s.clone(),
        Some(toml::Value::String(_)) => {
            errors.push(FieldError::new(
                "id",
                "must be 1-64 characters of a-z, 0-9, '_' or '-'",
            ));
            String::new()
        }
        Some(_) => {
            errors.push(FieldError::new("id", "must be a string"));
            String::new()
        }
        None => {
            errors.push(FieldError::new("id", "required"));
            String::new()
        }
    };
    let name = match doc.get("name") {
        None => id.clone(),
        Some(toml::Value::String(s)) => s.clone(),
        Some(_) => {
            errors.push(FieldError::new("name", "must be a string"));
            String::new()
        }
    };
    let ctx = BuildContext {
        base_dir: base_dir.to_path_buf(),
        http_timeout,
    };
    let mut sections = BTreeMap::new();
    for (key, value) in doc {
        if key == "id" || key == "name" {
            continue;
        }
        let Some(factory) = factory(key) else {
            let kinds: Vec<_> = factories()
                .iter()
                .filter(|f| f.platform.is_some())
                .map(|f| f.kind)
                .collect();
            errors.push(FieldError::new(
                key.clone(),
                format!(
                    "unknown key; a platform has id, name and a section per provider kind ({})",
                    kinds.join(", ")
                ),
            ));
            continue;
        };
        let Some(mode) = factory.platform else {
            errors.push(FieldError::new(
                key.clone(),
                "this provider has no platform (service-provider) mode",
            ));
            continue;
        };
        let Some(section) = value.as_table() else {
            errors.push(FieldError::new(key.clone(), "must be a table"));
            continue;
        };
        let mut section_errors = Vec::new();
        for field in section.keys() {
            if field == "enabled"
                || field == PLATFORM_KEY
                || (mode.tenant_fields.contains(&field.as_str())
                    && !mode.shared.contains(&field.as_str()))
            {
                section_errors.push(FieldError::new(
                    field.clone(),
                    "is set by each tenant of the platform, not by the platform",
                ));
            }
        }
        if section_errors.is_empty() {
            let mut probe = section.clone();
            for (k, v) in mode.probe {
                probe.insert((*k).to_owned(), toml::Value::String((*v).to_owned()));
            }
            let built = (factory.build)(&probe, &ctx);
            wipe_table(&mut probe);
            if let Err(e) = built {
                section_errors.extend(e);
            }
        }
        if section_errors.is_empty() {
            sections.insert(key.clone(), section.clone());
        } else {
            errors.extend(
                section_errors
                    .into_iter()
                    .map(|e| FieldError::new(format!("{key}.{}", e.field), e.message)),
            );
        }
    }
    if errors.is_empty() {
        Ok(Platform {
            id,
            name,
            sections,
            base_dir: base_dir.to_path_buf(),
        })
    } else {
        let mut sections = sections;
        sections.values_mut().for_each(wipe_table);
        Err(ConfigErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::provider::{
        AckBody, CreatePayment, CreatedPayment, FieldSpec, IncomingNotification,
        NotificationRejection, OrderLookup, PaymentProvider, ProviderError, ProviderEvent,
        ProviderFactory,
    };
    use crate::tenant::build_tenant_with;

    const KIND: &str = "platform_test_kind";

    /// Builds when `key` (the platform's) and `member` (the tenant's) are set; `key = "bad"`
    /// fails, and so does a `path` file that does not exist under the build folder.
    struct Built;

    #[async_trait::async_trait]
    impl PaymentProvider for Built {
        fn kind(&self) -> &'static str {
            KIND
        }
        async fn create_payment(&self, _: &CreatePayment) -> Result<CreatedPayment, ProviderError> {
            Err(ProviderError::Timeout)
        }
        async fn verify_notification(
            &self,
            _: &IncomingNotification<'_>,
            _: &dyn OrderLookup,
        ) -> Result<ProviderEvent, NotificationRejection> {
            Err(NotificationRejection::BadSignature)
        }
        fn acknowledgement(&self, _: Result<(), &NotificationRejection>) -> AckBody {
            AckBody {
                status: 200,
                content_type: "text/plain",
                body: Vec::new(),
            }
        }
    }

    fn build(
        table: &toml::Table,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn PaymentProvider>, Vec<FieldError>> {
        let mut errors = Vec::new();
        match table.get("key").and_then(toml::Value::as_str) {
            Some("bad") => errors.push(FieldError::new("key", "is bad")),
            Some(_) => {}
            None => errors.push(FieldError::new("key", "required")),
        }
        if table.get("member").is_none() {
            errors.push(FieldError::new("member", "required"));
        }
        if let Some(path) = table.get("path").and_then(toml::Value::as_str)
            && !ctx.base_dir.join(path).exists()
        {
            errors.push(FieldError::new("path", "no such file"));
        }
        if errors.is_empty() {
            Ok(Arc::new(Built))
        } else {
            Err(errors)
        }
    }

    static MODE: PlatformMode = PlatformMode {
        tenant_fields: &["member", "secret", "own_app"],
        shared: &["secret"],
        requires: &[("own_app", "secret")],
        probe: &[("member", "probe")],
    };

    inventory::submit! {
        ProviderFactory {
            kind: KIND,
            display_name: "platform test",
            fields: &[FieldSpec { name: "key", required: true, secret: true, description: "" }],
            build,
            simulator: None,
            platform: Some(&MODE),
        }
    }

    fn doc(text: &str) -> toml::Table {
        text.parse().expect("toml")
    }

    fn book(section: &str, base: &Path) -> Platforms {
        let platform = build_platform(
            &doc(&format!("id = \"acme\"\n[{KIND}]\n{section}")),
            base,
            Duration::from_secs(1),
        )
        .expect("platform builds");
        Platforms([("acme".to_owned(), platform)].into_iter().collect())
    }

    fn tenant(provider: &str) -> toml::Table {
        doc(&format!(
            "id = \"t1\"\napi_keys = []\n[providers.{KIND}]\n{provider}"
        ))
    }

    fn errors_of(result: Result<crate::tenant::Tenant, ConfigErrors>) -> String {
        result.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn a_tenant_is_its_platforms_section_plus_its_identity() {
        let platforms = book("key = \"k\"\nsecret = \"sp-secret\"", Path::new("."));
        let built = build_tenant_with(
            &tenant("platform = \"acme\"\nmember = \"m1\""),
            Path::new("."),
            Duration::from_secs(1),
            &platforms,
        );
        assert!(built.is_ok(), "{}", errors_of(built));
        let (resolved, _) = resolve_provider_table(
            KIND,
            &doc("platform = \"acme\"\nmember = \"m1\"\nsecret = \"own\""),
            Path::new("."),
            &platforms,
        )
        .expect("resolves");
        assert_eq!(resolved["key"].as_str(), Some("k"));
        assert_eq!(resolved["member"].as_str(), Some("m1"));
        // A shared identity field is the tenant's where it sets one.
        assert_eq!(resolved["secret"].as_str(), Some("own"));
        assert!(!resolved.contains_key(PLATFORM_KEY));
        // …and must be when the tenant names its own app.
        let refused = resolve_provider_table(
            KIND,
            &doc("platform = \"acme\"\nmember = \"m1\"\nown_app = \"a\""),
            Path::new("."),
            &platforms,
        )
        .expect_err("own_app without its secret");
        assert_eq!(refused[0].field, "secret", "{refused:?}");
    }

    #[test]
    fn a_tenant_cannot_override_the_platform_nor_skip_its_identity() {
        let platforms = book("key = \"k\"", Path::new("."));
        let text = errors_of(build_tenant_with(
            &tenant("platform = \"acme\"\nkey = \"mine\""),
            Path::new("."),
            Duration::from_secs(1),
            &platforms,
        ));
        assert!(
            text.contains(&format!(
                "providers.{KIND}.key: is set by platform \"acme\""
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("providers.{KIND}.member: required: each tenant")),
            "{text}"
        );
        let text = errors_of(build_tenant_with(
            &tenant("platform = \"nope\"\nmember = \"m\""),
            Path::new("."),
            Duration::from_secs(1),
            &platforms,
        ));
        assert!(
            text.contains(&format!("providers.{KIND}.platform: no platform \"nope\"")),
            "{text}"
        );
    }

    #[test]
    fn platform_files_resolve_against_the_platforms_folder() {
        let dir = std::env::temp_dir().join(format!("pb-platform-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("cert.pem"), "x").expect("file");
        let platforms = book("key = \"k\"\npath = \"cert.pem\"", &dir);
        // The tenant's own folder has no cert.pem: the platform's folder is used.
        let built = build_tenant_with(
            &tenant("platform = \"acme\"\nmember = \"m\""),
            Path::new("/nonexistent"),
            Duration::from_secs(1),
            &platforms,
        );
        assert!(built.is_ok(), "{}", errors_of(built));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_platform_document_is_checked_section_by_section() {
        let errors = build_platform(
            &doc(&format!(
                "id = \"Acme!\"\ncolour = 1\n[{KIND}]\nkey = \"bad\"\nmember = \"m\"\n[nope]\nx = 1"
            )),
            Path::new("."),
            Duration::from_secs(1),
        )
        .expect_err("invalid")
        .to_string();
        for needle in [
            "id: must be 1-64 characters",
            "colour: unknown key",
            &format!("{KIND}.member: is set by each tenant"),
            "nope: unknown key",
        ] {
            assert!(errors.contains(needle), "{needle:?} missing from {errors}");
        }
        // Without the tenant-only field, the section itself is built (with the probe identity).
        let errors = build_platform(
            &doc(&format!("id = \"acme\"\n[{KIND}]\nkey = \"bad\"")),
            Path::new("."),
            Duration::from_secs(1),
        )
        .expect_err("invalid")
        .to_string();
        assert!(errors.contains(&format!("{KIND}.key: is bad")), "{errors}");
    }
}
