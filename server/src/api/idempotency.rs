//! `Idempotency-Key` on every merchant `POST` under `/v1` (DESIGN.md, "Operators and
//! integrators"), as a middleware around the handlers: the rules are the use case's
//! ([`crate::usecases::idempotency`]), the rows the store's.
//!
//! - A replay of a key with the same method, path and body (as a JSON value) gets the stored
//!   status and body, with `Idempotent-Replayed: true`.
//! - The same key with another request: `422 idempotency_key_reused`.
//! - While the key's first request runs: `409 idempotency_key_in_use`, whatever the body.
//! - A malformed key: `400 invalid_request` naming `Idempotency-Key`.
//! - Kept are the 2xx and 4xx a request produced after validation; a 5xx, 400, 401, 413 or 429
//!   lets the key go, so a retry runs again.
//! - A request without a valid API key passes through (its handler answers 401).

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse, ResponseError, web};

use crate::api::auth::bearer_tenant;
use crate::api::error::ApiError;
use crate::state::AppState;
use crate::store::idempotency::Claim;
use crate::usecases::idempotency::{self, HEADER, Held};

/// The header of a replayed answer.
pub const REPLAYED: &str = "idempotent-replayed";

fn error(req: ServiceRequest, e: ApiError) -> ServiceResponse<BoxBody> {
    req.into_response(e.error_response())
}

/// The middleware.
pub async fn idempotency(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let applies = req.method() == actix_web::http::Method::POST && req.path().starts_with("/v1/");
    let Some(raw_key) = req.headers().get(HEADER).filter(|_| applies).cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let key = match idempotency::check_key(raw_key.as_bytes()) {
        Ok(key) => key.to_owned(),
        Err(f) => return Ok(error(req, f.into())),
    };
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let Some(tenant_id) = bearer_tenant(req.request(), &state).map(|t| t.id.clone()) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    // The body, read once (within the body limit) and put back for the handler.
    let body = match req.extract::<web::Bytes>().await {
        Ok(body) => body,
        Err(e) => {
            let refused = if e.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the request body is larger than [http] max_body_bytes",
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!("the request body could not be read: {e}"),
                )
            };
            return Ok(error(req, refused));
        }
    };
    req.set_payload(actix_web::dev::Payload::from(body.clone()));
    let fingerprint = idempotency::fingerprint(req.method().as_str(), req.path(), &body);

    match idempotency::claim(&state, &tenant_id, &key, fingerprint).await {
        Err(f) => Ok(error(req, f.into())),
        Ok(Claim::InUse) => Ok(error(
            req,
            ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_use",
                "a request with this Idempotency-Key is still running; retry once it has finished",
            ),
        )),
        Ok(Claim::Reused) => Ok(error(
            req,
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with another request (method, path or body); use a new key",
            ),
        )),
        Ok(Claim::Replay {
            status,
            content_type,
            body,
        }) => {
            let mut answer = HttpResponse::build(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            );
            if let Some(content_type) = content_type {
                answer.insert_header((CONTENT_TYPE, content_type));
            }
            answer.insert_header((
                HeaderName::from_static(REPLAYED),
                HeaderValue::from_static("true"),
            ));
            Ok(req.into_response(answer.body(body)))
        }
        Ok(Claim::Fresh { lock }) => {
            // Settled once the answer is known; if the request is dropped first (its client went
            // away), the guard lets the key go, so that the retry is not told it is in use.
            let pending = Pending {
                state: state.clone(),
                held: Some(Held {
                    tenant_id,
                    key,
                    lock,
                }),
            };
            let res = next.call(req).await?;
            let status = res.status().as_u16();
            let content_type = res
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let (req, res) = res.into_parts();
            let (head, body) = res.into_parts();
            let Ok(bytes) = actix_web::body::to_bytes(body).await else {
                // Nothing to keep: the key goes, and the client sees a failure to retry.
                pending.settle(None).await;
                return Ok(ServiceResponse::new(
                    req,
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "internal error; it has been logged",
                    )
                    .error_response(),
                ));
            };
            let text = String::from_utf8_lossy(&bytes).into_owned();
            pending.settle(Some((status, content_type, text))).await;
            Ok(ServiceResponse::new(
                req,
                head.set_body(bytes).map_into_boxed_body(),
            ))
        }
    }
}

/// A claimed key not settled yet.
struct Pending {
    state: web::Data<AppState>,
    held: Option<Held>,
}

impl Pending {
    /// Settle with this answer (`None`: none to keep). A failure is logged, and the answer still
    /// goes out (the key then stays `running` until its lock ends; a retry meanwhile gets 409).
    async fn settle(mut self, answer: Option<(u16, Option<String>, String)>) {
        if let Some(held) = self.held.take() {
            settle_or_log(self.state.clone(), held, answer).await;
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(held) = self.held.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let state = self.state.clone();
            runtime.spawn(settle_or_log(state, held, None));
        }
    }
}

async fn settle_or_log(
    state: web::Data<AppState>,
    held: Held,
    answer: Option<(u16, Option<String>, String)>,
) {
    let tenant = held.tenant_id.clone();
    if let Err(e) = idempotency::settle(&state, held, answer).await {
        tracing::error!(%tenant, error = %e, "Idempotency-Key not settled");
    }
}
