//! Secrets at rest: AES-256-GCM under a 32-byte master key, one random 96-bit nonce per value,
//! and the tenant id plus the field path as associated data, so a ciphertext copied to another
//! tenant or another field does not decrypt.
//!
//! A stored secret is the string `enc:v1:<base64(nonce || ciphertext || tag)>`.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::document::{self, ENCRYPTED_PREFIX};

/// Why a secret could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    /// The master key is malformed. Never carries the key material.
    #[error("{0}")]
    BadMasterKey(String),
    /// A stored value is encrypted but no master key is configured.
    #[error(
        "{field}: the stored value is encrypted but no master key is configured; set the environment variable named by [secrets] master_key_env"
    )]
    MissingMasterKey {
        /// The field path.
        field: String,
    },
    /// A stored value does not decrypt under this key for this tenant and field (wrong key, or
    /// a value moved between tenants or fields, or tampering).
    #[error("{field}: the stored secret does not decrypt with the configured master key")]
    Undecryptable {
        /// The field path.
        field: String,
    },
    /// No master key is configured and the store is not allowed to keep plaintext secrets.
    #[error(
        "{field}: a secret cannot be stored without a master key; set the environment variable named by [secrets] master_key_env (32 bytes, base64), or use plaintext mode, which is allowed only for sandbox-only deployments"
    )]
    PlaintextNotPermitted {
        /// The field path.
        field: String,
    },
    /// The crypto library failed (e.g. no randomness).
    #[error("encryption failed")]
    Crypto,
}

/// The key that encrypts tenant secrets. Its Debug output never shows the key.
#[derive(Clone)]
pub struct MasterKey {
    key: Arc<RandomizedNonceKey>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    /// A key from its 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretsError> {
        if bytes.len() != 32 {
            return Err(SecretsError::BadMasterKey(format!(
                "the master key must be 32 bytes (got {})",
                bytes.len()
            )));
        }
        let key = RandomizedNonceKey::new(&AES_256_GCM, bytes).map_err(|_| SecretsError::Crypto)?;
        Ok(MasterKey { key: Arc::new(key) })
    }

    /// A key from standard base64 of 32 bytes (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Self, SecretsError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| {
            SecretsError::BadMasterKey(
                "the master key is not valid base64 (expected 32 random bytes in standard base64, e.g. from `openssl rand -base64 32`)".to_owned(),
            )
        })?;
        Self::from_bytes(&bytes)
    }

    /// The key from the environment variable `name`: `Ok(None)` when it is unset or empty, an
    /// error (naming the variable, never its value) when it is malformed.
    pub fn from_env(name: &str) -> Result<Option<Self>, SecretsError> {
        match std::env::var(name) {
            Ok(v) if !v.trim().is_empty() => Self::from_base64(&v)
                .map(Some)
                .map_err(|e| SecretsError::BadMasterKey(format!("{name}: {e}"))),
            _ => Ok(None),
        }
    }

    /// A fresh random key and its base64 form (for `paybridge-admin gen-master-key` and tests).
    pub fn generate() -> Result<(Self, String), SecretsError> {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| SecretsError::Crypto)?;
        let text = STANDARD.encode(bytes);
        Ok((Self::from_bytes(&bytes)?, text))
    }

    /// Encrypt one value of one tenant's field.
    pub fn encrypt(
        &self,
        tenant_id: &str,
        field: &str,
        plaintext: &str,
    ) -> Result<String, SecretsError> {
        let mut in_out = plaintext.as_bytes().to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(aad(tenant_id, field)), &mut in_out)
            .map_err(|_| SecretsError::Crypto)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + in_out.len());
        blob.extend_from_slice(nonce.as_ref());
        blob.extend_from_slice(&in_out);
        Ok(format!("{ENCRYPTED_PREFIX}{}", STANDARD.encode(blob)))
    }

    /// Decrypt a value made by [`MasterKey::encrypt`] for the same tenant and field.
    pub fn decrypt(
        &self,
        tenant_id: &str,
        field: &str,
        stored: &str,
    ) -> Result<String, SecretsError> {
        let bad = || SecretsError::Undecryptable {
            field: field.to_owned(),
        };
        let b64 = stored.strip_prefix(ENCRYPTED_PREFIX).ok_or_else(bad)?;
        let blob = STANDARD.decode(b64).map_err(|_| bad())?;
        if blob.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let mut in_out = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad(tenant_id, field)), &mut in_out)
            .map_err(|_| bad())?;
        String::from_utf8(plain.to_vec()).map_err(|_| bad())
    }
}

/// The associated data: the tenant id and the field path, separated by a NUL that neither can
/// contain, so ("a", "b.c") and ("a\0b", "c")-style collisions are impossible.
fn aad(tenant_id: &str, field: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(tenant_id.len() + field.len() + 1);
    aad.extend_from_slice(tenant_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(field.as_bytes());
    aad
}

/// How the store treats secrets.
#[derive(Debug, Clone)]
pub struct SecretPolicy {
    /// The master key, if one is configured.
    pub key: Option<MasterKey>,
    /// Without a key: whether plaintext secrets may be stored (the server allows it only when
    /// every tenant is a sandbox tenant).
    pub plaintext_permitted: bool,
    /// With plaintext permitted: only for documents whose every provider endpoint starts with
    /// this prefix (the server's own `/sandbox/`), see [`is_sandbox_document`].
    pub sandbox_prefix: Option<String>,
}

/// Whether every provider of a tenant document talks only to the sandbox at `prefix`: each
/// provider table has at least one endpoint key (`*_base`, `*_url`), and every such value starts
/// with `prefix`. A provider without an endpoint key would use its production default.
pub fn is_sandbox_document(doc: &toml::Table, prefix: &str) -> bool {
    let Some(providers) = doc.get("providers").and_then(toml::Value::as_table) else {
        return true;
    };
    providers
        .values()
        .all(|p| p.as_table().is_some_and(|t| is_sandbox_provider(t, prefix)))
}

/// The document as far as its endpoints go: a provider table that names a platform gets that
/// platform's endpoint keys (`*_base`, `*_url`), so that [`is_sandbox_document`] judges a
/// platform's tenant by where its calls really go. A platform that is missing adds nothing (the
/// table then has no endpoint and is not a sandbox one).
pub fn with_platform_endpoints(
    doc: &toml::Table,
    platforms: &paybridge_core::platform::Platforms,
) -> toml::Table {
    let mut view = doc.clone();
    let Some(providers) = view
        .get_mut("providers")
        .and_then(toml::Value::as_table_mut)
    else {
        return view;
    };
    for (kind, table) in providers.iter_mut() {
        let Some(table) = table.as_table_mut() else {
            continue;
        };
        let section = paybridge_core::platform::platform_of(table)
            .and_then(|id| platforms.0.get(id))
            .and_then(|p| p.sections.get(kind));
        for (key, value) in section.into_iter().flatten() {
            if key.ends_with("_base") || key.ends_with("_url") {
                table.insert(key.clone(), value.clone());
            }
        }
    }
    view
}

/// Whether one provider table talks only to the sandbox at `prefix`: it has endpoint keys
/// (`*_base`, `*_url`) and each starts with `prefix`.
pub fn is_sandbox_provider(table: &toml::Table, prefix: &str) -> bool {
    let mut endpoints = table
        .iter()
        .filter(|(k, _)| k.ends_with("_base") || k.ends_with("_url"))
        .peekable();
    endpoints.peek().is_some()
        && endpoints.all(|(_, v)| v.as_str().is_some_and(|s| s.starts_with(prefix)))
}

impl SecretPolicy {
    /// Encrypt every secret field of a plaintext document (the factories' `secret: true` fields
    /// and `webhook_secret`). Without a key, a non-empty secret is kept in plaintext only when
    /// plaintext is permitted, and is an error otherwise.
    pub fn seal(&self, tenant_id: &str, doc: &toml::Table) -> Result<toml::Table, SecretsError> {
        self.seal_as(tenant_id, doc, doc)
    }

    /// [`SecretPolicy::seal`], judging whether the document is a sandbox one by `endpoints` (the
    /// document with its platforms' endpoints, [`with_platform_endpoints`]).
    pub fn seal_as(
        &self,
        tenant_id: &str,
        doc: &toml::Table,
        endpoints: &toml::Table,
    ) -> Result<toml::Table, SecretsError> {
        let mut out = doc.clone();
        let plaintext_ok = self.plaintext_permitted
            && self
                .sandbox_prefix
                .as_deref()
                .is_none_or(|prefix| is_sandbox_document(endpoints, prefix));
        for path in document::present_secret_paths(doc) {
            let Some(toml::Value::String(plain)) = document::get_path(&out, &path) else {
                continue;
            };
            let field = document::path_string(&path);
            let sealed = match &self.key {
                Some(key) => key.encrypt(tenant_id, &field, plain)?,
                None if plain.is_empty() || plaintext_ok => continue,
                None => return Err(SecretsError::PlaintextNotPermitted { field }),
            };
            document::set_path(&mut out, &path, toml::Value::String(sealed));
        }
        Ok(out)
    }

    /// Decrypt every `enc:v1:` string of a stored document, wherever it is (so a value stays
    /// readable even if its provider stopped declaring the field secret). Plaintext values,
    /// written in plaintext mode, are returned as they are.
    pub fn open(&self, tenant_id: &str, stored: &toml::Table) -> Result<toml::Table, SecretsError> {
        let mut out = stored.clone();
        for (path, value) in document::string_leaves(stored) {
            if !value.starts_with(ENCRYPTED_PREFIX) {
                continue;
            }
            let field = document::path_string(&path);
            let key = self
                .key
                .as_ref()
                .ok_or_else(|| SecretsError::MissingMasterKey {
                    field: field.clone(),
                })?;
            let plain = key.decrypt(tenant_id, &field, &value)?;
            document::set_path(&mut out, &path, toml::Value::String(plain));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        MasterKey::generate().unwrap().0
    }

    #[test]
    fn a_secret_round_trips_and_each_encryption_differs() {
        let k = key();
        let a = k.encrypt("t1", "webhook_secret", "s3cret").unwrap();
        let b = k.encrypt("t1", "webhook_secret", "s3cret").unwrap();
        assert!(a.starts_with(ENCRYPTED_PREFIX));
        assert_ne!(a, b, "a fresh nonce per value");
        assert!(!a.contains("s3cret"));
        assert_eq!(k.decrypt("t1", "webhook_secret", &a).unwrap(), "s3cret");
    }

    #[test]
    fn a_wrong_key_tenant_or_field_does_not_decrypt() {
        let k = key();
        let sealed = k.encrypt("t1", "providers.x.api_key", "v").unwrap();
        assert!(key().decrypt("t1", "providers.x.api_key", &sealed).is_err());
        assert!(k.decrypt("t2", "providers.x.api_key", &sealed).is_err());
        assert!(k.decrypt("t1", "providers.x.app_secret", &sealed).is_err());
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(k.decrypt("t1", "providers.x.api_key", &tampered).is_err());
    }

    #[test]
    fn master_key_is_checked_and_never_echoed() {
        let err = MasterKey::from_base64("c2hvcnQ=").unwrap_err().to_string();
        assert!(err.contains("32 bytes (got 5)"), "{err}");
        let err = MasterKey::from_base64("not base64 !!")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("not base64 !!"));
        assert_eq!(format!("{:?}", key()), "MasterKey(***)");
        assert!(
            MasterKey::from_env("PAYBRIDGE_TEST_SURELY_UNSET_KEY")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn without_a_key_secrets_need_plaintext_permission() {
        let doc: toml::Table = "id = \"t\"\nwebhook_secret = \"w\"\n".parse().unwrap();
        let strict = SecretPolicy {
            key: None,
            plaintext_permitted: false,
            sandbox_prefix: None,
        };
        assert_eq!(
            strict.seal("t", &doc).unwrap_err(),
            SecretsError::PlaintextNotPermitted {
                field: "webhook_secret".to_owned()
            }
        );
        let sandbox = SecretPolicy {
            key: None,
            plaintext_permitted: true,
            sandbox_prefix: None,
        };
        assert_eq!(sandbox.seal("t", &doc).unwrap(), doc);
        let empty: toml::Table = "id = \"t\"\nwebhook_secret = \"\"\n".parse().unwrap();
        assert!(strict.seal("t", &empty).is_ok());
    }

    #[test]
    fn sealed_documents_open_only_with_the_key() {
        let policy = SecretPolicy {
            key: Some(key()),
            plaintext_permitted: false,
            sandbox_prefix: None,
        };
        let doc: toml::Table = "id = \"t\"\nwebhook_secret = \"w\"\n".parse().unwrap();
        let sealed = policy.seal("t", &doc).unwrap();
        assert_ne!(sealed, doc);
        assert_eq!(policy.open("t", &sealed).unwrap(), doc);
        let keyless = SecretPolicy {
            key: None,
            plaintext_permitted: true,
            sandbox_prefix: None,
        };
        assert!(matches!(
            keyless.open("t", &sealed),
            Err(SecretsError::MissingMasterKey { .. })
        ));
    }
}
