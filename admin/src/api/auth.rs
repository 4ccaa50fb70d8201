//! Admin tokens: `sha256:<hex>` digests from `[admin] tokens`, plus the plaintext token of env
//! `PAYBRIDGE_ADMIN_TOKEN`. A request presents `Authorization: Bearer <token>`; its SHA-256 is
//! compared with each digest in constant time. A merchant API key is not an admin token.
//!
//! Roles: `[admin] read_only_tokens` read everything and may validate a document; a change or an
//! action needs a full token. Handlers that change something take [`AdminWrite`] instead of
//! [`AdminAuth`], so a read-only token cannot reach them (`403 forbidden`).

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use sha2::{Digest, Sha256};

use super::AdminState;
use super::error::AdminError;

/// The env var whose plaintext value is accepted as one more admin token.
pub const ADMIN_TOKEN_ENV: &str = "PAYBRIDGE_ADMIN_TOKEN";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Read, and validate documents.
    ReadOnly,
}

/// The accepted admin tokens, as digests with their role.
#[derive(Clone, Default)]
pub struct AdminTokens {
    digests: Vec<([u8; 32], Role)>,
}

impl std::fmt::Debug for AdminTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminTokens({} tokens)", self.digests.len())
    }
}

impl AdminTokens {
    /// From the configured `sha256:<64 hex>` digests and an optional plaintext token. A
    /// malformed digest is an error naming its position (never a token).
    pub fn new(configured: &[String], plaintext: Option<&str>) -> Result<Self, String> {
        let mut tokens = AdminTokens::default();
        tokens.add("tokens", configured, Role::Admin)?;
        if let Some(token) = plaintext.map(str::trim).filter(|t| !t.is_empty()) {
            tokens
                .digests
                .push((Sha256::digest(token.as_bytes()).into(), Role::Admin));
        }
        Ok(tokens)
    }

    /// Also accept these `sha256:<hex>` digests (`[admin] read_only_tokens`) as read-only.
    pub fn with_read_only(mut self, configured: &[String]) -> Result<Self, String> {
        self.add("read_only_tokens", configured, Role::ReadOnly)?;
        Ok(self)
    }

    fn add(&mut self, key: &str, configured: &[String], role: Role) -> Result<(), String> {
        for (i, d) in configured.iter().enumerate() {
            let parsed = d
                .strip_prefix("sha256:")
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok());
            match parsed {
                Some(bytes) => self.digests.push((bytes, role)),
                None => {
                    return Err(format!(
                        "[admin] {key}[{i}]: must be \"sha256:<64 hex digits>\" (`paybridge-admin hash-token <token>` prints it)"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The configured digests plus the token in env [`ADMIN_TOKEN_ENV`], if set.
    pub fn from_config_and_env(configured: &[String]) -> Result<Self, String> {
        let env = std::env::var(ADMIN_TOKEN_ENV).ok();
        Self::new(configured, env.as_deref())
    }

    /// Whether no token is configured (then every admin request is refused).
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// The actor name of a valid token (`admin:<first 12 hex of its digest>`, or
    /// `readonly:<…>`) and its role, or `None`. A token listed under both roles is an admin.
    pub fn check(&self, presented: &str) -> Option<(String, Role)> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found: Option<Role> = None;
        for (d, role) in &self.digests {
            let diff = d
                .iter()
                .zip(digest.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 && found != Some(Role::Admin) {
                found = Some(*role);
            }
        }
        let prefix = &hex::encode(digest)[..12];
        found.map(|role| match role {
            Role::Admin => (format!("admin:{prefix}"), role),
            Role::ReadOnly => (format!("readonly:{prefix}"), role),
        })
    }
}

/// An authenticated admin request (a full or a read-only token).
#[derive(Debug, Clone)]
pub struct AdminAuth {
    /// `admin:<digest prefix>` or `readonly:<digest prefix>`.
    pub actor: String,
    /// What the token may do.
    pub role: Role,
}

impl FromRequest for AdminAuth {
    type Error = AdminError;
    type Future = Ready<Result<Self, AdminError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

/// An admin request that may change something: a full token; a read-only one gets `403`.
/// `actor` goes into the audit log.
#[derive(Debug, Clone)]
pub struct AdminWrite {
    /// `admin:<digest prefix>`.
    pub actor: String,
}

impl FromRequest for AdminWrite {
    type Error = AdminError;
    type Future = Ready<Result<Self, AdminError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).and_then(|auth| match auth.role {
            Role::Admin => Ok(AdminWrite { actor: auth.actor }),
            Role::ReadOnly => Err(AdminError::new(
                actix_web::http::StatusCode::FORBIDDEN,
                "forbidden",
                "this admin token is read-only: it may read and validate, not change anything or act",
            )),
        }))
    }
}

fn authenticate(req: &HttpRequest) -> Result<AdminAuth, AdminError> {
    let state = req
        .app_data::<web::Data<AdminState>>()
        .ok_or_else(|| AdminError::internal(&"AdminState is not registered as app_data"))?;
    if state.tokens.is_empty() {
        return Err(AdminError::unauthorized(
            "no admin token is configured: set [admin] tokens or PAYBRIDGE_ADMIN_TOKEN",
        ));
    }
    let token = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    match token.and_then(|t| state.tokens.check(t)) {
        Some((actor, _)) if !state.allowed(&actor) => Err(AdminError::new(
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests with this admin token: slow down and retry ([limits] admin_per_token_per_second)",
        )),
        Some((actor, role)) => Ok(AdminAuth { actor, role }),
        None => Err(AdminError::unauthorized(
            "missing or unknown admin token: send `Authorization: Bearer <admin token>`",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_by_digest_only() {
        let digest = paybridge_core::tenant::hash_api_key("admin-one");
        let tokens = AdminTokens::new(&[digest], Some("from-env")).unwrap();
        assert!(tokens.check("admin-one").unwrap().0.starts_with("admin:"));
        let both = tokens
            .clone()
            .with_read_only(&[paybridge_core::tenant::hash_api_key("reader")])
            .unwrap();
        assert_eq!(both.check("reader").map(|c| c.1), Some(Role::ReadOnly));
        assert!(both.check("reader").unwrap().0.starts_with("readonly:"));
        assert_eq!(both.check("admin-one").map(|c| c.1), Some(Role::Admin));
        assert!(tokens.check("from-env").is_some());
        assert!(tokens.check("admin-two").is_none());
        assert!(tokens.check("").is_none());
        assert!(AdminTokens::new(&["plaintext".into()], None).is_err());
        assert!(AdminTokens::new(&[], Some("  ")).unwrap().is_empty());
    }
}
