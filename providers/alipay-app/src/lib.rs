//! paybridge-alipay: Alipay app pay (OpenAPI 2.0, RSA2).
//!
//! - [`config`] validates the tenant's provider table ([`config::FIELDS`]).
//! - [`keys`] reads the app private key and Alipay's public key; [`sign`] builds the RSA2 sign
//!   strings (requests, and rsaCheckV1 for notifications).
//! - [`order_string`] builds the signed orderString of `alipay.trade.app.pay` for the app.
//! - [`gateway`] runs server-to-server calls; [`response`] verifies their signatures over the
//!   exact response text; [`trade`] maps query, close, refund and refund query.
//! - [`notify`] verifies notifications and builds the `success`/`fail` acknowledgement.
//! - [`sandbox`] simulates Alipay's side.

pub mod auth;
pub mod bill;
pub mod cert_mode;
pub mod cert_sn;
pub mod config;
pub mod gateway;
pub mod keys;
pub mod notify;
pub mod order_string;
pub mod response;
pub mod sandbox;
pub mod sign;
pub mod trade;

use std::sync::Arc;

use async_trait::async_trait;
use paybridge_core::platform::PlatformMode;
use paybridge_core::provider::{
    AckBody, BuildContext, CloseOutcome, CreatePayment, CreatedPayment, FieldError,
    IncomingNotification, NotificationRejection, NotifyChannel, OrderLookup, OrderRef,
    PaymentProvider, PaymentState, ProviderError, ProviderEvent, ProviderFactory, RefundRequest,
    RefundState,
};

pub use crate::config::{AlipayConfig, FIELDS};
use crate::gateway::{Clock, Gateway};

/// The provider kind, also the key under `[providers]`.
pub const KIND: &str = "alipay_app";

/// Alipay app pay bound to one tenant's merchant config.
pub struct AlipayApp {
    gateway: Gateway,
}

impl std::fmt::Debug for AlipayApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipayApp")
            .field("config", self.gateway.config())
            .finish()
    }
}

impl AlipayApp {
    /// Validate the provider table and build the provider (one HTTP client for its whole life).
    pub fn new(table: &toml::Table, ctx: &BuildContext) -> Result<Self, Vec<FieldError>> {
        Self::with_clock(table, ctx, gateway::system_clock())
    }

    /// As [`AlipayApp::new`], with the clock that stamps `timestamp` and computes
    /// `timeout_express` (tests).
    pub fn with_clock(
        table: &toml::Table,
        ctx: &BuildContext,
        clock: Clock,
    ) -> Result<Self, Vec<FieldError>> {
        let config = Arc::new(config::parse(table, ctx)?);
        let gateway = Gateway::new(config, ctx.http_timeout, clock).map_err(|e| {
            let field = if table.contains_key("ca_file") {
                "ca_file"
            } else {
                "gateway_url"
            };
            vec![FieldError::new(
                field,
                format!("cannot build the HTTPS client: {}", e.without_url()),
            )]
        })?;
        Ok(AlipayApp { gateway })
    }

    /// The validated config.
    pub fn config(&self) -> &AlipayConfig {
        self.gateway.config()
    }
}

/// The factory's constructor.
pub fn build(
    table: &toml::Table,
    ctx: &BuildContext,
) -> Result<Arc<dyn PaymentProvider>, Vec<FieldError>> {
    Ok(Arc::new(AlipayApp::new(table, ctx)?))
}

paybridge_core::inventory::submit! {
    ProviderFactory {
        kind: KIND,
        display_name: "Alipay (app pay)",
        fields: FIELDS,
        build,
        simulator: Some(sandbox::simulator),
        platform: Some(&PLATFORM_MODE),
    }
}

/// Under a platform (an ISV app), a tenant adds its authorisation and its own identity.
static PLATFORM_MODE: PlatformMode = PlatformMode {
    tenant_fields: &[
        "app_auth_token",
        "auth_app_id",
        "seller_id",
        "app_refresh_token",
    ],
    shared: &[],
    requires: &[],
    probe: &[
        ("app_auth_token", "platform-probe"),
        ("auth_app_id", "2021000000000000"),
        ("seller_id", "2088000000000000"),
    ],
};

#[async_trait]
impl PaymentProvider for AlipayApp {
    fn kind(&self) -> &'static str {
        KIND
    }

    /// The orderString is built and signed locally: Alipay creates the trade only when the payer
    /// confirms in the Alipay app.
    async fn create_payment(&self, req: &CreatePayment) -> Result<CreatedPayment, ProviderError> {
        let order_string =
            order_string::build_order_string(self.config(), req, self.gateway.now())?;
        tracing::debug!(out_trade_no = %req.out_trade_no, "Alipay orderString built");
        Ok(CreatedPayment {
            client_payment: serde_json::json!({ "order_string": order_string }),
            provider_data: serde_json::json!({}),
            remote: false,
        })
    }

    async fn query_payment(&self, order: &OrderRef) -> Result<PaymentState, ProviderError> {
        trade::query_payment(&self.gateway, order).await
    }

    async fn close_payment(&self, order: &OrderRef) -> Result<CloseOutcome, ProviderError> {
        trade::close_payment(&self.gateway, order).await
    }

    async fn refund(&self, req: &RefundRequest) -> Result<RefundState, ProviderError> {
        trade::refund(&self.gateway, req).await
    }

    async fn query_refund(
        &self,
        order: &OrderRef,
        out_refund_no: &str,
    ) -> Result<RefundState, ProviderError> {
        trade::query_refund(&self.gateway, order, out_refund_no).await
    }

    fn has_bills(&self) -> bool {
        true
    }

    async fn download_bill(
        &self,
        day: chrono::NaiveDate,
        dest: &mut (dyn std::io::Write + Send),
    ) -> Result<paybridge_core::statement::BillDownload, ProviderError> {
        bill::download_bill(&self.gateway, day, dest).await
    }

    fn parse_bill(
        &self,
        reader: &mut dyn paybridge_core::statement::BillSource,
        each: &mut dyn FnMut(
            paybridge_core::statement::BillLine,
        ) -> Result<(), paybridge_core::statement::BillError>,
    ) -> Result<paybridge_core::statement::BillSummary, paybridge_core::statement::BillError> {
        bill::parse_trade_bill(reader, each)
    }

    async fn authorize(
        &self,
        grant: &paybridge_core::provider::AuthorizationGrant,
    ) -> Result<paybridge_core::provider::Authorization, ProviderError> {
        auth::authorize(&self.gateway, grant).await
    }

    async fn verify_notification(
        &self,
        notification: &IncomingNotification<'_>,
        orders: &dyn OrderLookup,
    ) -> Result<ProviderEvent, NotificationRejection> {
        match notification.channel {
            NotifyChannel::Payment => {
                notify::verify_payment_notification(
                    self.config(),
                    notification.body,
                    notification.content_type,
                    orders,
                )
                .await
            }
            NotifyChannel::Refund => Err(NotificationRejection::Unsupported(
                "Alipay reports refunds on the payment notify URL".to_owned(),
            )),
        }
    }

    fn acknowledgement(&self, outcome: Result<(), &NotificationRejection>) -> AckBody {
        notify::acknowledgement(outcome)
    }
}

#[cfg(test)]
mod test_support;

#[cfg(test)]
mod test_server;

#[cfg(test)]
mod fixture_tests;

#[cfg(test)]
mod trade_tests;
