//! Provider logins: a client's login code for the payer's identity (WeChat `wx.login()` code →
//! openid). The session key never leaves the server.

use paybridge_core::provider::LoginSession;
use paybridge_core::tenant::Tenant;

use super::orders::enabled_provider;
use super::{Failure, provider_failure};
use crate::state::AppState;

/// Exchange a login code with the tenant's provider of this kind.
#[tracing::instrument(level = "error", name = "login", skip_all, fields(tenant = %tenant.id, provider = %kind))]
pub async fn login(
    state: &AppState,
    tenant: &Tenant,
    kind: &str,
    code: &str,
) -> Result<LoginSession, Failure> {
    let provider = enabled_provider(tenant, kind)?;
    if code.is_empty() || code.len() > 128 {
        return Err(Failure::invalid(
            "code",
            "must be the 1-128 character code from wx.login()",
        ));
    }
    let session = super::activity::call(
        state,
        provider.as_ref(),
        "login",
        None,
        provider.login(code),
    )
    .await;
    session.map_err(|e| provider_failure(kind, e))
}
