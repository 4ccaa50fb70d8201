//! Admin tokens: `sha256:<hex>` digests from `[admin] tokens`, plus the plaintext token of env
//! `PAYBRIDGE_ADMIN_TOKEN`. A request presents `Authorization: Bearer <token>`; its SHA-256 is
//! compared with each digest in constant time. A merchant API key is not an admin token.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use sha2::{Digest, Sha256};

use super::AdminState;
use super::error::AdminError;

/// The env var whose plaintext value is accepted as one more admin token.
pub const ADMIN_TOKEN_ENV: &str = "PAYBRIDGE_ADMIN_TOKEN";

/// The accepted admin tokens, as digests.
#[derive(Clone, Default)]
pub struct AdminTokens {
    digests: Vec<[u8; 32]>,
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
        let mut digests = Vec::new();
        for (i, d) in configured.iter().enumerate() {
            let parsed = d
                .strip_prefix("sha256:")
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok());
            match parsed {
                Some(bytes) => digests.push(bytes),
                None => {
                    return Err(format!(
                        "[admin] tokens[{i}]: must be \"sha256:<64 hex digits>\" (`paybridge-admin hash-token <token>` prints it)"
                    ));
                }
            }
        }
        if let Some(token) = plaintext.map(str::trim).filter(|t| !t.is_empty()) {
            digests.push(Sha256::digest(token.as_bytes()).into());
        }
        Ok(AdminTokens { digests })
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

    /// The actor name of a valid token (`admin:<first 12 hex of its digest>`), or `None`.
    pub fn check(&self, presented: &str) -> Option<String> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = false;
        for d in &self.digests {
            let diff = d
                .iter()
                .zip(digest.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            found |= diff == 0;
        }
        found.then(|| format!("admin:{}", &hex::encode(digest)[..12]))
    }
}

/// An authenticated admin request; `actor` goes into the audit log.
#[derive(Debug, Clone)]
pub struct AdminAuth {
    /// `admin:<digest prefix>`.
    pub actor: String,
}

impl FromRequest for AdminAuth {
    type Error = AdminError;
    type Future = Ready<Result<Self, AdminError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
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
        Some(actor) if !state.allowed(&actor) => Err(AdminError::new(
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests with this admin token: slow down and retry ([limits] admin_per_token_per_second)",
        )),
        Some(actor) => Ok(AdminAuth { actor }),
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
        assert!(tokens.check("admin-one").unwrap().starts_with("admin:"));
        assert!(tokens.check("from-env").is_some());
        assert!(tokens.check("admin-two").is_none());
        assert!(tokens.check("").is_none());
        assert!(AdminTokens::new(&["plaintext".into()], None).is_err());
        assert!(AdminTokens::new(&[], Some("  ")).unwrap().is_empty());
    }
}
