//! A merchant's authorisation of a third-party app: `alipay.open.auth.token.app`, which exchanges
//! the code of a (re-)authorisation or a refresh token for a new `app_auth_token` (PROTOCOLS.md
//! §G). An admin action: the call is the app's own (no `app_auth_token`), and the answer's token
//! goes into the tenant's config, never into a log.

use paybridge_core::provider::{Authorization, AuthorizationGrant, ProviderError};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::gateway::{Gateway, Reply};
use crate::sign::OnBehalf;

/// The token exchange.
pub const AUTH_TOKEN_METHOD: &str = "alipay.open.auth.token.app";

fn field<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    // The answer has flat fields and a `tokens` list; either carries them.
    fields.get(name).or_else(|| {
        fields
            .get("tokens")
            .and_then(Value::as_array)
            .and_then(|t| t.first())
            .and_then(|t| t.get(name))
    })
}

fn text(fields: &Map<String, Value>, name: &str) -> Option<String> {
    field(fields, name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Exchange `grant` (or, without one, the configured `app_refresh_token`) for a new token of
/// this tenant's merchant. The answer must be about the configured `auth_app_id`.
pub async fn authorize(
    gateway: &Gateway,
    grant: &AuthorizationGrant,
) -> Result<Authorization, ProviderError> {
    let isv = gateway
        .config()
        .isv
        .as_ref()
        .ok_or_else(|| ProviderError::Misconfigured {
            field: "app_auth_token".to_owned(),
            message: "only a merchant of a third-party app (app_auth_token and auth_app_id) has an authorisation to renew".to_owned(),
        })?;
    let refresh = grant.refresh_token.as_ref().or(isv.refresh_token.as_ref());
    let biz = match (&grant.code, refresh) {
        (Some(code), _) => {
            serde_json::json!({"grant_type": "authorization_code", "code": code.expose_secret()})
        }
        (None, Some(token)) => {
            serde_json::json!({"grant_type": "refresh_token", "refresh_token": token.expose_secret()})
        }
        (None, None) => {
            return Err(ProviderError::InvalidRequest {
                field: Some("app_auth_code".to_owned()),
                message: "send app_auth_code (from the merchant's new authorisation) or refresh_token; none is configured".to_owned(),
            });
        }
    };
    let fields = match gateway
        .call_as(AUTH_TOKEN_METHOD, biz.to_string(), OnBehalf::App)
        .await?
    {
        Reply::Success(fields) => fields,
        Reply::BusinessFailed(f) => {
            return Err(ProviderError::Rejected {
                code: "authorization_refused",
                message: format!("Alipay refused the grant: {}: {}", f.sub_code, f.sub_msg),
            });
        }
    };
    let token = text(&fields, "app_auth_token").ok_or_else(|| {
        ProviderError::Unavailable("the token exchange answered without app_auth_token".to_owned())
    })?;
    let auth_app_id = text(&fields, "auth_app_id").unwrap_or_default();
    if auth_app_id != isv.auth_app_id {
        return Err(ProviderError::Rejected {
            code: "authorization_refused",
            message: format!(
                "the authorisation is for app {auth_app_id:?}, but this tenant is app {:?} (auth_app_id); was the right merchant's code used?",
                isv.auth_app_id
            ),
        });
    }
    let mut config = vec![("app_auth_token".to_owned(), SecretString::from(token))];
    if let Some(refresh) = text(&fields, "app_refresh_token") {
        config.push(("app_refresh_token".to_owned(), SecretString::from(refresh)));
    }
    let expires_in = field(&fields, "expires_in").and_then(|v| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    });
    tracing::info!(auth_app_id = %isv.auth_app_id, "Alipay authorisation renewed");
    Ok(Authorization { config, expires_in })
}
