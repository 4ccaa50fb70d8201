//! The HTTP error contract: `{"error": {"code", "message", "field"?}}` with a fitting status.
//! Handlers report rule breaks as the use cases' [`Failure`]; `ApiError` adds the status.

use crate::api::views::{ErrorBody, ErrorDetail};
use crate::store::StoreError;
use crate::usecases::{Failure, FailureKind};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

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

    /// 401.
    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or unknown API key: send `Authorization: Bearer <tenant API key>`",
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

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        use FailureKind as K;
        let status = match f.kind {
            K::Invalid => StatusCode::BAD_REQUEST,
            K::NotFound => StatusCode::NOT_FOUND,
            K::Conflict => StatusCode::CONFLICT,
            K::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            K::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            K::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            K::ProviderFailed => StatusCode::BAD_GATEWAY,
            K::ProviderTimeout => StatusCode::GATEWAY_TIMEOUT,
            K::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            K::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            code: f.code,
            message: f.message,
            field: f.field,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::from(Failure::from(e))
    }
}
