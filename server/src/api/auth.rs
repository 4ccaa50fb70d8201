//! Bearer authentication of merchants by tenant API key (compared by SHA-256 digest).

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use paybridge_core::tenant::Tenant;

use crate::api::error::ApiError;
use crate::state::AppState;

/// The tenant whose API key authenticated the request.
pub struct AuthTenant(pub Arc<Tenant>);

/// The tenant whose API key the request's `Authorization: Bearer …` carries, if any.
pub fn bearer_tenant(req: &HttpRequest, state: &AppState) -> Option<Arc<Tenant>> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, key) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    state.tenants.by_api_key(key.trim())
}

impl FromRequest for AuthTenant {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let tenant = req
            .app_data::<web::Data<AppState>>()
            .and_then(|state| bearer_tenant(req, state));
        let Some(tenant) = tenant else {
            return ready(Err(ApiError::unauthorized()));
        };
        let allowed = req
            .app_data::<web::Data<AppState>>()
            .is_none_or(|state| state.limits.api(&tenant.id));
        ready(if allowed {
            Ok(AuthTenant(tenant))
        } else {
            Err(ApiError::new(
                actix_web::http::StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests with this tenant's API keys: slow down and retry ([limits] api_per_tenant_per_second)",
            ))
        })
    }
}
