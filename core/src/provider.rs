//! The plugin interface: what a payment provider can do, and how it is built from a tenant's config.
//!
//! A provider crate implements [`PaymentProvider`] and submits one [`ProviderFactory`] with
//! `inventory::submit!`. Core, the admin and the HTTP layer know no provider by name.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::money::Fen;
use crate::refund::RefundStatus;

/// What the merchant asked for, already validated by the server.
#[derive(Debug, Clone)]
pub struct CreatePayment {
    /// The merchant's order number (6–32 of `[A-Za-z0-9_\-|*]`).
    pub out_trade_no: String,
    /// Amount in fen, positive.
    pub amount: Fen,
    /// Shown to the payer; 1–127 UTF-8 bytes, passed verbatim.
    pub description: String,
    /// The payer's provider identity, e.g. a WeChat openid.
    pub payer_openid: Option<String>,
    /// The IP of the payer's device or of the caller, as the merchant reported it.
    pub client_ip: Option<String>,
    /// Absolute expiry of the order.
    pub expires_at: DateTime<Utc>,
    /// Echoed back by the provider.
    pub attach: Option<String>,
    /// Where the provider must send the payment notification.
    pub notify_url: String,
    /// The provider data stored with the order by an earlier attempt, if any (e.g. the sign type
    /// the order was first created with, so a retry sends identical parameters).
    pub previous_provider_data: Option<serde_json::Value>,
}

/// What the client app needs to pay, plus what the provider wants stored with the order.
#[derive(Debug, Clone)]
pub struct CreatedPayment {
    /// Provider-specific parameters for the client, e.g. the five `wx.requestPayment` params.
    /// The server wraps them as `{"<kind>": …}`.
    pub client_payment: serde_json::Value,
    /// Opaque data the provider needs later for this order (e.g. the sign type used). Never shown
    /// to the merchant.
    pub provider_data: serde_json::Value,
    /// Whether the provider was asked (a network call), or the client parameters were made here
    /// alone (Alipay's signed orderString): an order's timeline shows only real provider calls.
    pub remote: bool,
}

/// Identifies an order at the provider.
#[derive(Debug, Clone)]
pub struct OrderRef {
    /// The merchant's order number.
    pub out_trade_no: String,
    /// The provider's trade number, when known.
    pub provider_trade_no: Option<String>,
    /// The order amount.
    pub amount: Fen,
    /// What the provider stored at creation.
    pub provider_data: serde_json::Value,
}

/// A verified, successful payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentEvent {
    /// The merchant's order number.
    pub out_trade_no: String,
    /// The provider's trade number.
    pub provider_trade_no: String,
    /// The amount the provider says was paid (before any coupon), compared with the order.
    pub amount: Fen,
    /// The provider's payment time.
    pub paid_at: DateTime<Utc>,
    /// The provider's own identity of this event, for deduplication.
    pub event_id: String,
}

/// A verified refund status report. For providers whose notification carries only a cumulative
/// refunded total (Alipay), `amount` is the refund's recorded amount, taken from
/// [`OrderLookup::find_refund`] after the refund was matched by number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundEvent {
    /// The merchant's order number.
    pub out_trade_no: String,
    /// The merchant's refund number.
    pub out_refund_no: String,
    /// The provider's refund number, when given.
    pub provider_refund_no: Option<String>,
    /// The refund amount as the provider reports it.
    pub amount: Fen,
    /// The reported status.
    pub status: RefundStatus,
    /// When the money went back, for a succeeded refund.
    pub succeeded_at: Option<DateTime<Utc>>,
    /// The provider's own identity of this event, for deduplication.
    pub event_id: String,
}

/// What a verified notification says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProviderEvent {
    /// The order was paid.
    Payment(PaymentEvent),
    /// The provider closed the order without payment.
    Closed {
        /// The merchant's order number.
        out_trade_no: String,
        /// The provider's own identity of this event.
        event_id: String,
    },
    /// A refund changed status.
    Refund(RefundEvent),
    /// A refund of this order that paybridge did not make (no refund of that number exists):
    /// acknowledged, and the order is flagged `refunded_outside` for an operator.
    RefundedOutside {
        /// The merchant's order number.
        out_trade_no: String,
        /// The refund's number as the provider reported it, if it did.
        out_refund_no: Option<String>,
        /// The provider's own identity of this event.
        event_id: String,
    },
}

impl ProviderEvent {
    /// The order this event is about.
    pub fn out_trade_no(&self) -> &str {
        match self {
            ProviderEvent::Payment(p) => &p.out_trade_no,
            ProviderEvent::Closed { out_trade_no, .. } => out_trade_no,
            ProviderEvent::Refund(r) => &r.out_trade_no,
            ProviderEvent::RefundedOutside { out_trade_no, .. } => out_trade_no,
        }
    }

    /// The provider's identity of the event, for deduplication.
    pub fn event_id(&self) -> &str {
        match self {
            ProviderEvent::Payment(p) => &p.event_id,
            ProviderEvent::Closed { event_id, .. } => event_id,
            ProviderEvent::Refund(r) => &r.event_id,
            ProviderEvent::RefundedOutside { event_id, .. } => event_id,
        }
    }
}

/// The provider's view of a payment, from a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentState {
    /// Not paid yet (or unknown to the provider, which for an unpaid order is the same).
    NotPaid,
    /// Paid.
    Paid(PaymentEvent),
    /// Closed at the provider without payment.
    Closed,
    /// The payment failed.
    Failed,
}

/// What a close call achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseOutcome {
    /// The order is closed at the provider (now or before).
    Closed,
    /// The provider says it is paid: it must not be closed.
    AlreadyPaid(PaymentEvent),
}

/// A refund to send.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    /// The order.
    pub order: OrderRef,
    /// The merchant's refund number; the same number is the same refund at the provider.
    pub out_refund_no: String,
    /// This refund's amount.
    pub amount: Fen,
    /// Shown to the payer.
    pub reason: Option<String>,
    /// Where the provider sends the refund result, if it sends one.
    pub notify_url: String,
}

/// The provider's view of a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundState {
    /// The status.
    pub status: RefundStatus,
    /// The provider's refund number.
    pub provider_refund_no: Option<String>,
    /// When it succeeded.
    pub succeeded_at: Option<DateTime<Utc>>,
    /// This refund's amount as the provider reported it, when it did. The server compares it
    /// with the refund it recorded: a provider that reports another amount is not believed.
    pub amount: Option<Fen>,
}

/// A merchant's grant to a platform, exchanged for its authorisation (Alipay
/// `alipay.open.auth.token.app`): the code of a new authorisation, or a refresh token. With
/// neither, the provider refreshes with the refresh token it was configured with.
#[derive(Clone, Default)]
pub struct AuthorizationGrant {
    /// The one-time code of the merchant's (re-)authorisation (`app_auth_code`).
    pub code: Option<SecretString>,
    /// A refresh token (`app_refresh_token`).
    pub refresh_token: Option<SecretString>,
}

impl std::fmt::Debug for AuthorizationGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationGrant")
            .field("code", &self.code.as_ref().map(|_| "[REDACTED]"))
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

/// A new authorisation: the provider-table keys to write into the tenant's config (the token
/// among them), and how long it lasts.
#[derive(Clone)]
pub struct Authorization {
    /// `(key, value)` of the provider table, e.g. `app_auth_token`.
    pub config: Vec<(String, SecretString)>,
    /// Seconds the authorisation is valid, if the provider says.
    pub expires_in: Option<i64>,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorization")
            .field(
                "keys",
                &self.config.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// A WeChat-style login: a one-time code exchanged for the payer's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginSession {
    /// The payer's id for this app.
    pub openid: String,
    /// The payer's id across the platform's apps, when bound.
    pub unionid: Option<String>,
}

/// Which notify endpoint a notification came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyChannel {
    /// `/notify/{tenant}/{kind}`
    Payment,
    /// `/notify/{tenant}/{kind}/refund`
    Refund,
}

/// A raw notification as the HTTP layer received it.
#[derive(Debug, Clone)]
pub struct IncomingNotification<'a> {
    /// The endpoint it arrived on.
    pub channel: NotifyChannel,
    /// The `Content-Type` header, if any.
    pub content_type: Option<&'a str>,
    /// The raw body.
    pub body: &'a [u8],
    /// The request's headers with a UTF-8 value, names in lowercase (WeChat Pay v3 signs its
    /// notifications in `Wechatpay-*` headers).
    pub headers: &'a [(&'a str, &'a str)],
}

impl IncomingNotification<'_> {
    /// A header's value by name, in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// What the provider needs to know about an order while verifying its notification.
#[derive(Debug, Clone)]
pub struct OrderSnapshot {
    /// The order amount.
    pub amount: Fen,
    /// What the provider stored at creation.
    pub provider_data: serde_json::Value,
}

/// Looks orders up for a provider during notification checks. Implemented by the server; scoped
/// to the tenant and provider of the notify URL.
#[async_trait]
pub trait OrderLookup: Send + Sync {
    /// The order with this number, if this tenant has one for this provider.
    async fn find_order(&self, out_trade_no: &str) -> Option<OrderSnapshot>;
    /// The amount of this refund of this order, if it exists.
    async fn find_refund(&self, out_trade_no: &str, out_refund_no: &str) -> Option<Fen>;
}

/// Why a notification was refused. Each maps to the provider's failure acknowledgement; the
/// message is short and safe to send back (no internals).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationRejection {
    /// The body could not be decoded at all (not XML/form, DTD, bad encoding). A 4xx.
    #[error("undecodable notification: {0}")]
    Undecodable(String),
    /// The signature did not verify.
    #[error("signature mismatch")]
    BadSignature,
    /// A field does not match the tenant or the order (appid, mch_id, amount, seller…).
    #[error("{field} does not match")]
    Mismatch {
        /// The protocol field that did not match.
        field: &'static str,
    },
    /// The order or refund is unknown for this tenant.
    #[error("unknown {0}")]
    Unknown(&'static str),
    /// The provider reports a failure in the notification itself (`return_code=FAIL` etc.).
    #[error("notification reports failure: {0}")]
    ReportedFailure(String),
    /// The notification is well-formed and authentic but not something paybridge acts on.
    #[error("unsupported notification: {0}")]
    Unsupported(String),
}

/// The exact HTTP response a provider expects as acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckBody {
    /// HTTP status. Providers want 200 even for "fail".
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body, byte for byte.
    pub body: Vec<u8>,
}

/// Errors from a provider call. The server maps them to the HTTP contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider does not offer this capability.
    #[error("{kind} does not support {capability}")]
    NotSupported {
        /// The provider kind.
        kind: &'static str,
        /// What was asked.
        capability: &'static str,
    },
    /// The tenant's config cannot serve this call (e.g. a refund without a client certificate).
    /// Detected before any network call.
    #[error("{field}: {message}")]
    Misconfigured {
        /// The config key, relative to the provider table (e.g. `client_cert`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The request is not acceptable for this provider (e.g. JSAPI without an openid).
    #[error("{message}")]
    InvalidRequest {
        /// The request field at fault, if one.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The provider refused the request for a reason the caller must fix or accept, with the
    /// provider's own code (e.g. WeChat login `40029`).
    #[error("{message}")]
    Rejected {
        /// A stable paybridge error code, e.g. `invalid_code`.
        code: &'static str,
        /// The provider's code and text.
        message: String,
    },
    /// The provider rate-limited the call.
    #[error("rate limited by the provider: {0}")]
    RateLimited(String),
    /// The order number is taken at the provider with other parameters.
    #[error("out_trade_no already used at the provider with different parameters")]
    OutTradeNoUsed,
    /// The provider says the order is already paid.
    #[error("the provider reports the order paid")]
    AlreadyPaid,
    /// The provider says the order is closed.
    #[error("the provider reports the order closed")]
    AlreadyClosed,
    /// The provider failed, or answered in a way that could not be verified. Retry later.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The provider did not answer in time. The outcome is unknown: query before deciding.
    #[error("provider timed out")]
    Timeout,
}

impl ProviderError {
    /// The stable error code the HTTP API answers for this error (e.g. `provider_timeout`).
    pub fn code(&self) -> &'static str {
        match self {
            ProviderError::NotSupported { .. } => "not_supported",
            ProviderError::Misconfigured { .. } => "provider_misconfigured",
            ProviderError::InvalidRequest { .. } => "invalid_request",
            ProviderError::Rejected { code, .. } => code,
            ProviderError::RateLimited(_) => "rate_limited",
            ProviderError::OutTradeNoUsed => "out_trade_no_used",
            ProviderError::AlreadyPaid => "order_paid",
            ProviderError::AlreadyClosed => "order_closed",
            ProviderError::Unavailable(_) => "provider_unavailable",
            ProviderError::Timeout => "provider_timeout",
        }
    }
}

/// A payment provider bound to one tenant's config.
///
/// Every capability but creating a payment and verifying notifications has a default that
/// returns [`ProviderError::NotSupported`], so a provider implements what it offers and nothing
/// more.
#[async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// The kind, e.g. `wechat_miniprogram`.
    fn kind(&self) -> &'static str;

    /// Create (or re-create with identical parameters) the payment at the provider and return what
    /// the client app needs.
    async fn create_payment(&self, req: &CreatePayment) -> Result<CreatedPayment, ProviderError>;

    /// Ask the provider for the payment's state.
    async fn query_payment(&self, order: &OrderRef) -> Result<PaymentState, ProviderError> {
        let _ = order;
        Err(ProviderError::NotSupported {
            kind: self.kind(),
            capability: "query",
        })
    }

    /// Close an unpaid order at the provider.
    async fn close_payment(&self, order: &OrderRef) -> Result<CloseOutcome, ProviderError> {
        let _ = order;
        Err(ProviderError::NotSupported {
            kind: self.kind(),
            capability: "close",
        })
    }

    /// Send a refund. Success means accepted; the final state comes later.
    async fn refund(&self, req: &RefundRequest) -> Result<RefundState, ProviderError> {
        let _ = req;
        Err(ProviderError::NotSupported {
            kind: self.kind(),
            capability: "refund",
        })
    }

    /// Ask the provider for a refund's state.
    async fn query_refund(
        &self,
        order: &OrderRef,
        out_refund_no: &str,
    ) -> Result<RefundState, ProviderError> {
        let _ = (order, out_refund_no);
        Err(ProviderError::NotSupported {
            kind: self.kind(),
            capability: "refund query",
        })
    }

    /// Exchange a merchant's grant to the platform for its authorisation (Alipay third-party
    /// apps). An admin action, never on the hot path.
    async fn authorize(&self, grant: &AuthorizationGrant) -> Result<Authorization, ProviderError> {
        let _ = grant;
        Err(ProviderError::NotSupported {
            kind: self.kind(),
            capability: "authorization",
        })
    }

    /// Whether this provider (as configured) has daily bills to reconcile.
    fn has_bills(&self) -> bool {
        false
    }

    /// Download the merchant's trade bill of a Beijing `day` into `dest`, streaming. Providers
    /// without bills answer `NotSupported`.
    async fn download_bill(
        &self,
        day: chrono::NaiveDate,
        dest: &mut (dyn std::io::Write + Send),
    ) -> Result<crate::statement::BillDownload, ProviderError> {
        let _ = (day, dest);
        Err(ProviderError::NotSupported {
            kind: self.kind(),
            capability: "statements",
        })
    }

    /// Parse a bill [`PaymentProvider::download_bill`] wrote, line by line.
    fn parse_bill(
        &self,
        reader: &mut dyn crate::statement::BillSource,
        each: &mut dyn FnMut(crate::statement::BillLine) -> Result<(), crate::statement::BillError>,
    ) -> Result<crate::statement::BillSummary, crate::statement::BillError> {
        let _ = (reader, each);
        Err(crate::statement::BillError::Malformed {
            line: 0,
            reason: format!("{} has no bills", self.kind()),
        })
    }

    /// Exchange a client login code for the payer's identity (WeChat mini-programs).
    async fn login(&self, code: &str) -> Result<LoginSession, ProviderError> {
        let _ = code;
        Err(ProviderError::NotSupported {
            kind: self.kind(),
            capability: "login",
        })
    }

    /// Verify a notification and parse it into a typed event. Checks run in the provider's
    /// documented order; the order lookup is scoped to the notify URL's tenant.
    async fn verify_notification(
        &self,
        notification: &IncomingNotification<'_>,
        orders: &dyn OrderLookup,
    ) -> Result<ProviderEvent, NotificationRejection>;

    /// The exact acknowledgement body: success when `outcome` is `Ok`, the provider's failure body
    /// with a short reason otherwise.
    fn acknowledgement(&self, outcome: Result<(), &NotificationRejection>) -> AckBody;

    /// The acknowledgement of this notification. A provider that speaks two protocols on one
    /// notify URL (WeChat Pay v2 and v3) answers each in its own; by default, [`acknowledgement`].
    ///
    /// [`acknowledgement`]: PaymentProvider::acknowledgement
    fn acknowledgement_for(
        &self,
        notification: &IncomingNotification<'_>,
        outcome: Result<(), &NotificationRejection>,
    ) -> AckBody {
        let _ = notification;
        self.acknowledgement(outcome)
    }
}

/// Context for building a provider from a tenant's config.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The folder relative file paths in the tenant's config are resolved against.
    pub base_dir: PathBuf,
    /// Timeout for every outbound call the provider makes.
    pub http_timeout: Duration,
}

/// A config problem, with the path of the offending key relative to the provider table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// e.g. `mch_id`.
    pub field: String,
    /// e.g. `required`.
    pub message: String,
}

impl FieldError {
    /// A new field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Describes one config key of a provider, for the admin and the docs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FieldSpec {
    /// The key.
    pub name: &'static str,
    /// Whether it must be present.
    pub required: bool,
    /// Whether its value is a secret (never shown).
    pub secret: bool,
    /// What it is.
    pub description: &'static str,
}

/// A provider's server side, simulated for the sandbox. Framework-agnostic: the server routes
/// `/sandbox/<kind>/<path>` here.
#[async_trait]
pub trait Simulator: Send + Sync + 'static {
    /// Learn a merchant from a tenant's provider table (the simulator parses it with its own
    /// code), so it can check that merchant's signatures. File paths in the table are relative
    /// to `base_dir`, the tenant's folder.
    fn register_merchant(&self, provider_config: &toml::Table, base_dir: &std::path::Path);

    /// Serve one request. `path` is what follows `/sandbox/<kind>`, starting with `/`.
    async fn handle(&self, request: SimRequest) -> SimResponse;
}

/// A request to a simulator.
#[derive(Debug, Clone)]
pub struct SimRequest {
    /// HTTP method.
    pub method: String,
    /// The path below the simulator's mount point, starting with `/`.
    pub path: String,
    /// The mount point as the caller addressed it (`http://127.0.0.1:8080/sandbox/<kind>`): the
    /// base of links the simulator hands out, such as a bill's download URL.
    pub base: String,
    /// The raw query string (without `?`).
    pub query: String,
    /// The headers, names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: bytes::Bytes,
    /// How the request arrived: `None` over plain HTTP; over TLS, the DER of the client
    /// certificate the peer presented, if any (a simulator of an mTLS endpoint demands it).
    pub tls: Option<TlsPeer>,
}

/// The TLS side of a simulator request.
#[derive(Debug, Clone, Default)]
pub struct TlsPeer {
    /// The client certificate (DER) the peer presented, verified against the server's client CA.
    pub client_cert_der: Option<Vec<u8>>,
}

/// A simulator's response.
#[derive(Debug, Clone)]
pub struct SimResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Further headers (a signed answer's signature, for example).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl SimRequest {
    /// The value of a header (the name in lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How a provider kind works under a platform.
#[derive(Debug, Clone, Copy)]
pub struct PlatformMode {
    /// The keys a tenant of a platform may set in its provider table (besides `enabled` and
    /// `platform`): its own identity.
    pub tenant_fields: &'static [&'static str],
    /// Of `tenant_fields`, those a platform may set too, as a default its tenants may replace
    /// (the `app_secret` of the service provider's own mini-program).
    pub shared: &'static [&'static str],
    /// `(a, b)`: a tenant that sets `a` must set `b` too, even when the platform sets `b`
    /// (`sub_appid` needs the sub-merchant's own `app_secret`, not the service provider's).
    pub requires: &'static [(&'static str, &'static str)],
    /// The identity every tenant of a platform must set, each with a placeholder value used to
    /// validate a platform's section on its own (the factory builds the section with them).
    pub probe: &'static [(&'static str, &'static str)],
}

/// Validates a provider table and builds the provider, or returns every bad field.
pub type BuildProvider =
    fn(&toml::Table, &BuildContext) -> Result<Arc<dyn PaymentProvider>, Vec<FieldError>>;

/// Builds a provider of one kind from a tenant's config table. Each provider crate submits one
/// with `inventory::submit!`.
pub struct ProviderFactory {
    /// The kind, e.g. `wechat_miniprogram`; also the key under `[providers]`.
    pub kind: &'static str,
    /// A human name, e.g. "WeChat Pay (mini-program)".
    pub display_name: &'static str,
    /// The config keys it understands (besides `enabled`).
    pub fields: &'static [FieldSpec],
    /// Validate the table and build the provider. Errors name each bad field.
    pub build: BuildProvider,
    /// The sandbox simulator of this provider's server side, if it has one.
    pub simulator: Option<fn(Duration) -> Arc<dyn Simulator>>,
    /// How tenants use this provider under a platform's credentials; `None`: no platform mode.
    pub platform: Option<&'static PlatformMode>,
}

inventory::collect!(ProviderFactory);

/// Every registered provider factory, sorted by kind.
pub fn factories() -> Vec<&'static ProviderFactory> {
    let mut all: Vec<_> = inventory::iter::<ProviderFactory>.into_iter().collect();
    all.sort_by_key(|f| f.kind);
    all
}

/// The factory of one kind.
pub fn factory(kind: &str) -> Option<&'static ProviderFactory> {
    inventory::iter::<ProviderFactory>
        .into_iter()
        .find(|f| f.kind == kind)
}
