//! The HTTP error contract: `{"error": {"code", "message", "field"?}}` with a fitting status.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use paybridge_core::ids::IdError;
use paybridge_core::provider::ProviderError;

use crate::store::{ApplyError, StoreError};
use crate::views::{ErrorBody, ErrorDetail};

/// An error answer of the merchant API.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Human message.
    pub message: String,
    /// Field at fault.
    pub field: Option<String>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// Name the field at fault.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400 for a request that breaks a rule, naming the field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message).field(field)
    }

    /// 404 for a resource this tenant does not have.
    pub fn not_found(what: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 401.
    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or unknown API key: send `Authorization: Bearer <tenant API key>`",
        )
    }

    /// 500 without internals; the detail goes to the log.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                field: self.field.clone(),
            },
        })
    }
}

impl From<IdError> for ApiError {
    fn from(e: IdError) -> Self {
        ApiError::invalid(e.field, e.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(&e)
    }
}

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Transition(t) => {
                ApiError::new(StatusCode::CONFLICT, "invalid_transition", t.to_string())
            }
            ApplyError::RefundTransition(t) => {
                ApiError::new(StatusCode::CONFLICT, "invalid_transition", t.to_string())
            }
            // The provider reported something that does not match this order: its answer cannot
            // be trusted as is. Logged for an operator; the order is unchanged.
            ApplyError::AmountMismatch { expected, got } => {
                tracing::warn!(expected, got, "provider reported another amount");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "provider_unavailable",
                    format!("the provider reported {got} fen for an order of {expected} fen"),
                )
            }
            other => ApiError::internal(&other),
        }
    }
}

/// The provider-facing part of the contract: 422 for config, 502 for failures, 504 for timeouts.
pub fn provider_error(kind: &str, e: ProviderError) -> ApiError {
    use ProviderError as P;
    match e {
        P::NotSupported { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_supported",
            e.to_string(),
        ),
        P::Misconfigured { ref field, .. } => {
            let field = format!("providers.{kind}.{field}");
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "provider_misconfigured",
                e.to_string(),
            )
            .field(field)
        }
        P::InvalidRequest { field, message } => {
            let err = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message);
            match field {
                Some(f) => err.field(f),
                None => err,
            }
        }
        P::Rejected { code, message } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
        }
        P::RateLimited(_) => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string())
        }
        P::OutTradeNoUsed => {
            ApiError::new(StatusCode::CONFLICT, "out_trade_no_used", e.to_string())
        }
        P::AlreadyPaid => ApiError::new(StatusCode::CONFLICT, "order_paid", e.to_string()),
        P::AlreadyClosed => ApiError::new(StatusCode::CONFLICT, "order_closed", e.to_string()),
        P::Unavailable(_) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "provider_unavailable",
            e.to_string(),
        ),
        P::Timeout => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "provider_timeout",
            "the provider did not answer in time; the outcome is unknown, repeat the request or query",
        ),
    }
}
