//! The use cases: what the merchant API, the notify endpoints and the reconciler ask for. They
//! call the providers and the storage, build the merchant's webhook events from each change, and
//! know nothing of HTTP: a [`Failure`] says what went wrong, and the HTTP layer picks the status.

pub mod activity;
pub mod console;
mod day_book;
pub mod events;
pub mod health;
pub mod idempotency;
pub mod notifications;
pub mod orders;
pub mod refunds;
pub mod resources;
pub mod sessions;
pub mod statements;

use paybridge_core::ids::IdError;
use paybridge_core::provider::ProviderError;

use crate::store::{ApplyError, StoreError};

/// What kind of failure, for the caller to map (HTTP: to a status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The request breaks a rule (400).
    Invalid,
    /// No such resource for this tenant (404).
    NotFound,
    /// It contradicts what exists (409).
    Conflict,
    /// It cannot be served as configured, or the provider refused it (422).
    Unprocessable,
    /// The body is too large (413).
    TooLarge,
    /// The provider rate-limits (429).
    RateLimited,
    /// The provider failed or answered unverifiably (502).
    ProviderFailed,
    /// The provider did not answer in time (504).
    ProviderTimeout,
    /// The database is unreachable or busy (503); nothing was changed, retry later.
    Unavailable,
    /// A bug or a storage failure (500); the detail was logged.
    Internal,
}

/// A use case's failure: a stable code, a message that says what to do, and the field at fault.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What kind.
    pub kind: FailureKind,
    /// Stable machine-readable code, e.g. `out_trade_no_conflict`.
    pub code: &'static str,
    /// What went wrong and what to do.
    pub message: String,
    /// The request field (or config key) at fault.
    pub field: Option<String>,
}

impl Failure {
    /// A new failure.
    pub fn new(kind: FailureKind, code: &'static str, message: impl Into<String>) -> Self {
        Failure {
            kind,
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

    /// A request that breaks a rule, naming the field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Failure::new(FailureKind::Invalid, "invalid_request", message).field(field)
    }

    /// A resource this tenant does not have.
    pub fn not_found(what: &str) -> Self {
        Failure::new(
            FailureKind::NotFound,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// A conflict with what exists.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Failure::new(FailureKind::Conflict, code, message)
    }

    /// An internal error without internals; the detail goes to the log.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Failure::new(
            FailureKind::Internal,
            "internal",
            "internal error; it has been logged",
        )
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl From<IdError> for Failure {
    fn from(e: IdError) -> Self {
        Failure::invalid(e.field, e.message)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            tracing::error!(error = %e, "storage unavailable");
            return Failure::new(
                FailureKind::Unavailable,
                "storage_unavailable",
                "the database is unavailable; retry the request later (repeating it is safe: orders, refunds and closes are idempotent by their numbers)",
            );
        }
        Failure::internal(&e)
    }
}

impl From<ApplyError> for Failure {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Transition(t) => Failure::conflict("invalid_transition", t.to_string()),
            ApplyError::RefundTransition(t) => {
                Failure::conflict("invalid_transition", t.to_string())
            }
            // The provider reported something that does not match this order: its answer cannot
            // be trusted as is. Logged for an operator; the order is unchanged.
            ApplyError::AmountMismatch { expected, got } => {
                tracing::warn!(expected, got, "provider reported another amount");
                Failure::new(
                    FailureKind::ProviderFailed,
                    "provider_unavailable",
                    format!("the provider reported {got} fen for an order of {expected} fen"),
                )
            }
            ApplyError::RefundNoMismatch { known, reported } => {
                tracing::warn!(%known, %reported, "provider reported another refund number");
                Failure::new(
                    FailureKind::ProviderFailed,
                    "provider_unavailable",
                    format!(
                        "the provider reported refund {reported} for the refund it numbered {known}"
                    ),
                )
            }
            ApplyError::Store(e) => Failure::from(e),
            other => Failure::internal(&other),
        }
    }
}

/// The provider-facing part of the contract: config problems, refusals, failures and timeouts.
pub fn provider_failure(kind: &str, e: ProviderError) -> Failure {
    use FailureKind as K;
    use ProviderError as P;
    let code = e.code();
    match e {
        P::Misconfigured { ref field, .. } => {
            let field = format!("providers.{kind}.{field}");
            Failure::new(K::Unprocessable, code, e.to_string()).field(field)
        }
        P::InvalidRequest { field, message } => {
            let failure = Failure::new(K::Unprocessable, code, message);
            match field {
                Some(f) => failure.field(f),
                None => failure,
            }
        }
        P::Rejected { message, .. } => Failure::new(K::Unprocessable, code, message),
        P::NotSupported { .. } => Failure::new(K::Unprocessable, code, e.to_string()),
        P::RateLimited(_) => Failure::new(K::RateLimited, code, e.to_string()),
        P::OutTradeNoUsed | P::AlreadyPaid | P::AlreadyClosed => {
            Failure::conflict(code, e.to_string())
        }
        P::Unavailable(_) => Failure::new(K::ProviderFailed, code, e.to_string()),
        P::Timeout => Failure::new(
            K::ProviderTimeout,
            code,
            "the provider did not answer in time; the outcome is unknown, repeat the request or query",
        ),
    }
}
