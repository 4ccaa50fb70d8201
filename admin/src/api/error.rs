//! Errors of the admin API: the server's shape `{"error": {"code", "message", "field"?}}`, plus
//! `fields` listing every bad field of an invalid document (422 `invalid_config`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use paybridge_core::tenant::ConfigErrors;
use serde::Serialize;
use utoipa::ToSchema;

use crate::secrets::SecretsError;
use crate::store::StoreError;

/// The error body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdminErrorBody {
    /// The error.
    pub error: AdminErrorDetail,
}

/// The error itself.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdminErrorDetail {
    /// Stable code, e.g. `invalid_config`, `not_found`, `unauthorized`.
    pub code: String,
    /// What was wrong and what to do.
    pub message: String,
    /// The field at fault, when one applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `invalid_config`: every bad field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldProblem>,
}

/// One bad field of a tenant document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldProblem {
    /// The key path, e.g. `providers.alipay_app.private_key`, or `(document)` for syntax.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// An error answer of the admin API.
#[derive(Debug, Clone)]
pub struct AdminError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Human message.
    pub message: String,
    /// Field at fault.
    pub field: Option<String>,
    /// Every bad field (invalid documents).
    pub fields: Vec<FieldProblem>,
}

impl AdminError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AdminError {
            status,
            code,
            message: message.into(),
            field: None,
            fields: Vec::new(),
        }
    }

    /// 401: no or an unknown admin token.
    pub fn unauthorized(message: &str) -> Self {
        AdminError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        AdminError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 422 `invalid_config` listing every problem.
    pub fn invalid_config(errors: &ConfigErrors) -> Self {
        let count = errors.0.len();
        let message = match errors.0.first() {
            Some(first) if count == 1 => {
                format!("invalid tenant config: {}: {}", first.field, first.message)
            }
            _ => format!("invalid tenant config: {count} problems"),
        };
        AdminError {
            fields: errors
                .0
                .iter()
                .map(|e| FieldProblem {
                    field: e.field.clone(),
                    message: e.message.clone(),
                })
                .collect(),
            ..AdminError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_config", message)
        }
    }

    /// 500 without internals; the detail goes to the log.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "admin API internal error");
        AdminError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status)
            .insert_header(("Cache-Control", "no-store"))
            .json(AdminErrorBody {
                error: AdminErrorDetail {
                    code: self.code.to_owned(),
                    message: self.message.clone(),
                    field: self.field.clone(),
                    fields: self.fields.clone(),
                },
            })
    }
}

impl From<ConfigErrors> for AdminError {
    fn from(e: ConfigErrors) -> Self {
        AdminError::invalid_config(&e)
    }
}

/// A provider call of an admin action that failed: the caller's input (400), the provider's
/// refusal or the config (422), or the provider being unreachable (502).
fn provider_error(e: paybridge_core::provider::ProviderError) -> AdminError {
    use paybridge_core::provider::ProviderError as P;
    let message = e.to_string();
    match e {
        P::InvalidRequest { field, .. } => AdminError {
            field,
            ..AdminError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
        },
        P::NotSupported { .. } => {
            AdminError::new(StatusCode::BAD_REQUEST, "not_supported", message)
        }
        P::Misconfigured { field, .. } => AdminError {
            field: Some(field),
            ..AdminError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "provider_misconfigured",
                message,
            )
        },
        P::Rejected { code, .. } => {
            AdminError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
        }
        _ => AdminError::new(StatusCode::BAD_GATEWAY, "provider_unavailable", message),
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(errors) => AdminError::invalid_config(&errors),
            StoreError::Secrets(SecretsError::PlaintextNotPermitted { ref field }) => {
                let field = field.clone();
                AdminError {
                    field: Some(field),
                    ..AdminError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "master_key_required",
                        e.to_string(),
                    )
                }
            }
            StoreError::NotFound(m) => AdminError::new(StatusCode::NOT_FOUND, "not_found", m),
            StoreError::Provider(p) => provider_error(p),
            StoreError::Conflict(m) => AdminError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::VersionMismatch { .. } => AdminError::new(
                StatusCode::PRECONDITION_FAILED,
                "version_mismatch",
                e.to_string(),
            ),
            other => AdminError::internal(&other),
        }
    }
}
