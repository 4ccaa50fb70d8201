//! Request logging and request ids. Only method, path, status and latency are logged: never the
//! query string (it can carry secrets, e.g. a sandbox login's `secret=`), headers or bodies.
//!
//! `X-Request-Id`: an incoming value of 1–128 printable ASCII characters is kept, anything else
//! is replaced by a new id (never refused); the answer echoes it, and every line logged while
//! serving the request carries it ([`crate::logging`]).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, web};
use tracing::Instrument;

use crate::metrics::HttpLabels;
use crate::state::AppState;

/// The request id header.
pub const REQUEST_ID: &str = "x-request-id";

/// The request's id: its own when valid, else a new one.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(REQUEST_ID)
        .map(HeaderValue::as_bytes)
        .filter(|v| (1..=128).contains(&v.len()) && v.iter().all(|b| (b' '..=b'~').contains(b)))
        .and_then(|v| std::str::from_utf8(v).ok())
        .map_or_else(new_id, str::to_owned)
}

/// A new id: 32 hex digits, a random prefix drawn once per process and a counter, so that ids
/// are unique across instances and cost no system call (a random UUID each would be one
/// `getrandom` per request).
fn new_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    format!(
        "{prefix:016x}{:016x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Time the request in `paybridge_http_request_duration_seconds` by its route pattern.
fn observe(
    state: Option<&web::Data<AppState>>,
    method: &str,
    route: Option<String>,
    status: u16,
    took: std::time::Duration,
) {
    if let Some(state) = state {
        // Any token is a method to HTTP: only the standard ones become label values.
        let method = match method {
            "GET" => "GET",
            "POST" => "POST",
            "PUT" => "PUT",
            "DELETE" => "DELETE",
            "PATCH" => "PATCH",
            "HEAD" => "HEAD",
            "OPTIONS" => "OPTIONS",
            _ => "other",
        };
        state.metrics.http_request(
            &HttpLabels {
                method,
                route: route.unwrap_or_else(|| "unmatched".to_owned()),
                status,
            },
            took,
        );
    }
}

/// Serve the request inside its `request` span, echo its id, time it, and log one line for it.
pub async fn log_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, Error> {
    let started = Instant::now();
    let id = request_id(&req);
    // At error level, so that the span (and its id) exists whatever the filter lets through: a
    // warning of this request carries the id even with RUST_LOG=warn.
    let span = tracing::error_span!("request", request_id = %id);
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let route = req.match_pattern();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let served = next.call(req).instrument(span.clone()).await;
    // An `Err` is answered by actix (the request cannot be kept to answer here: routing needs it
    // unshared); it is still timed and logged with its id.
    let status = match &served {
        Ok(res) => res.status(),
        Err(e) => e.as_response_error().status_code(),
    }
    .as_u16();
    observe(state.as_ref(), &method, route, status, started.elapsed());
    span.in_scope(|| {
        tracing::info!(
            %method,
            %path,
            status,
            ms = started.elapsed().as_millis(),
            "request"
        );
    });
    let mut res = served?.map_into_boxed_body();
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID), value);
    }
    Ok(res)
}
