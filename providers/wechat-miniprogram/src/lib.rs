//! paybridge-wechat: WeChat Pay API v2 for mini-programs (`trade_type=JSAPI`) and mini-program login.
//!
//! - [`config`] validates the tenant's provider table ([`config::FIELDS`]).
//! - [`certs`] loads and checks the merchant API certificate (PEM pair or `.p12`) for refunds.
//! - [`sign`] computes and verifies the MD5 / HMAC-SHA256 `sign` of §B.2.
//! - [`xml`] encodes and strictly decodes the flat `<xml>` documents.
//! - [`client`] runs the call pipeline (sign → POST → verify → result codes).
//! - [`orders`] calls unifiedorder, orderquery, closeorder and builds the `wx.requestPayment` params.
//! - [`login`] exchanges a `wx.login()` code (`jscode2session`).
//! - [`refunds`] calls `/secapi/pay/refund` (mutual TLS) and `/pay/refundquery`.
//! - [`notify`] verifies payment notifications and builds the acknowledgement.
//! - [`refund_notify`] decrypts and verifies refund notifications (`req_info`).
//! - [`sandbox`] simulates WeChat's side.

pub mod bill;
pub mod certs;
pub mod client;
pub mod config;
pub mod login;
pub mod notify;
pub mod orders;
pub mod refund_notify;
pub mod refunds;
pub mod sandbox;
pub mod sign;
pub mod v3;
pub mod xml;

use std::sync::Arc;

use async_trait::async_trait;
use paybridge_core::platform::PlatformMode;
use paybridge_core::provider::{
    AckBody, BuildContext, CloseOutcome, CreatePayment, CreatedPayment, FieldError,
    IncomingNotification, LoginSession, NotificationRejection, NotifyChannel, OrderLookup,
    OrderRef, PaymentProvider, PaymentState, ProviderError, ProviderEvent, ProviderFactory,
    RefundRequest, RefundState,
};

use crate::client::{ApiClient, ClientBuildError};
pub use crate::config::{FIELDS, WechatConfig};
pub use crate::sign::SignType;

/// The provider kind, also the key under `[providers]`.
pub const KIND: &str = "wechat_miniprogram";

/// WeChat Pay (mini-program, API v2 and v3) bound to one tenant's merchant config.
pub struct WechatMiniprogram {
    client: ApiClient,
    /// The v3 side, when the tenant has `apiv3_key`.
    v3: Option<v3::provider::V3Provider>,
}

impl std::fmt::Debug for WechatMiniprogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatMiniprogram")
            .field("config", self.client.config())
            .finish()
    }
}

impl WechatMiniprogram {
    /// Validate the provider table and build the provider (one HTTP client for its whole life).
    pub fn new(table: &toml::Table, ctx: &BuildContext) -> Result<Self, Vec<FieldError>> {
        let config = Arc::new(config::parse(table, ctx)?);
        let config_ref = Arc::clone(&config);
        let identity_field = config.client_identity.as_ref().map(|i| i.source().field());
        let client = ApiClient::new(config, ctx.http_timeout).map_err(|e| {
            let (field, e) = match e {
                ClientBuildError::Secure(e) => (identity_field.unwrap_or("client_cert"), e),
                ClientBuildError::Plain(e) if table.contains_key("ca_file") => ("ca_file", e),
                ClientBuildError::Plain(e) => ("api_base", e),
            };
            vec![FieldError::new(
                field,
                format!("cannot build the HTTPS client: {}", e.without_url()),
            )]
        })?;
        let v3 = match &config_ref.v3 {
            Some(v3) => Some(
                v3::provider::V3Provider::new(&config_ref, v3, ctx.http_timeout).map_err(|e| {
                    vec![FieldError::new(
                        "api_base",
                        format!("cannot build the HTTPS client: {}", e.without_url()),
                    )]
                })?,
            ),
            None => None,
        };
        Ok(WechatMiniprogram { client, v3 })
    }

    /// The v3 side, or why an order of v3 cannot be served.
    fn v3(&self) -> Result<&v3::provider::V3Provider, ProviderError> {
        self.v3.as_ref().ok_or_else(|| ProviderError::Misconfigured {
            field: "apiv3_key".to_owned(),
            message: "this order was made with WeChat Pay API v3; keep apiv3_key and the v3 keys configured until its orders are done".to_owned(),
        })
    }

    /// The v2 side, or why a v2 order cannot be served: a v3 tenant without `api_key`.
    fn v2(&self) -> Result<&client::ApiClient, ProviderError> {
        if self.config().has_api_key() {
            Ok(&self.client)
        } else {
            Err(ProviderError::Misconfigured {
                field: "api_key".to_owned(),
                message: "this order was made with WeChat Pay API v2; keep api_key configured until its v2 orders are done".to_owned(),
            })
        }
    }

    /// The validated config.
    pub fn config(&self) -> &WechatConfig {
        self.client.config()
    }
}

/// The factory's constructor.
pub fn build(
    table: &toml::Table,
    ctx: &BuildContext,
) -> Result<Arc<dyn PaymentProvider>, Vec<FieldError>> {
    Ok(Arc::new(WechatMiniprogram::new(table, ctx)?))
}

paybridge_core::inventory::submit! {
    ProviderFactory {
        kind: KIND,
        display_name: "WeChat Pay (mini-program, API v2 and v3)",
        fields: FIELDS,
        build,
        simulator: Some(sandbox::simulator),
        platform: Some(&PLATFORM_MODE),
    }
}

/// Under a platform (a service provider), a tenant adds its sub-merchant id, and its own
/// mini-program (`sub_appid` with its `app_secret`) when the mini-program is the merchant's.
static PLATFORM_MODE: PlatformMode = PlatformMode {
    tenant_fields: &["sub_mchid", "sub_appid", "app_secret"],
    shared: &["app_secret"],
    requires: &[("sub_appid", "app_secret")],
    probe: &[("sub_mchid", "1900000000")],
};

#[async_trait]
impl PaymentProvider for WechatMiniprogram {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn create_payment(&self, req: &CreatePayment) -> Result<CreatedPayment, ProviderError> {
        // A retry of an order keeps the protocol it was first made with.
        let earlier_v3 = req
            .previous_provider_data
            .as_ref()
            .and_then(|d| d.get("api_version"))
            .and_then(serde_json::Value::as_str)
            .map(|v| v == "v3");
        if earlier_v3.unwrap_or(self.config().api_version == config::ApiVersion::V3) {
            return self.v3()?.create_payment(req).await;
        }
        orders::create_payment(self.v2()?, req).await
    }

    async fn query_payment(&self, order: &OrderRef) -> Result<PaymentState, ProviderError> {
        if v3::provider::is_v3(order) {
            return self.v3()?.query_payment(order).await;
        }
        orders::query_payment(self.v2()?, order).await
    }

    async fn close_payment(&self, order: &OrderRef) -> Result<CloseOutcome, ProviderError> {
        if v3::provider::is_v3(order) {
            return self.v3()?.close_payment(order).await;
        }
        orders::close_payment(self.v2()?, order).await
    }

    async fn refund(&self, req: &RefundRequest) -> Result<RefundState, ProviderError> {
        if v3::provider::is_v3(&req.order) {
            return self.v3()?.refund(req).await;
        }
        refunds::refund(self.v2()?, req).await
    }

    async fn query_refund(
        &self,
        order: &OrderRef,
        out_refund_no: &str,
    ) -> Result<RefundState, ProviderError> {
        if v3::provider::is_v3(order) {
            return self.v3()?.query_refund(order, out_refund_no).await;
        }
        refunds::query_refund(self.v2()?, order, out_refund_no).await
    }

    fn has_bills(&self) -> bool {
        // A tenant on v3 fetches its bill with v3 (DESIGN.md: once, not also with v2).
        match self.config().api_version {
            config::ApiVersion::V3 => self.v3.is_some(),
            _ => self.config().has_api_key(),
        }
    }

    async fn download_bill(
        &self,
        day: chrono::NaiveDate,
        dest: &mut (dyn std::io::Write + Send),
    ) -> Result<paybridge_core::statement::BillDownload, ProviderError> {
        if self.config().api_version == config::ApiVersion::V3 {
            return self.v3()?.download_bill(day, dest).await;
        }
        self.v2()?
            .download_bill(day, self.config().sign_type, dest)
            .await
    }

    fn parse_bill(
        &self,
        reader: &mut dyn paybridge_core::statement::BillSource,
        each: &mut dyn FnMut(
            paybridge_core::statement::BillLine,
        ) -> Result<(), paybridge_core::statement::BillError>,
    ) -> Result<paybridge_core::statement::BillSummary, paybridge_core::statement::BillError> {
        bill::parse_downloaded(reader, each)
    }

    async fn login(&self, code: &str) -> Result<LoginSession, ProviderError> {
        login::login(self.client.http(), self.client.config(), code).await
    }

    async fn verify_notification(
        &self,
        notification: &IncomingNotification<'_>,
        orders: &dyn OrderLookup,
    ) -> Result<ProviderEvent, NotificationRejection> {
        if notification.header("wechatpay-signature").is_some() {
            return match &self.v3 {
                Some(v3) => v3.verify_notification(notification, orders).await,
                None => Err(NotificationRejection::Unsupported(
                    "a v3 notification for a tenant without apiv3_key".to_owned(),
                )),
            };
        }
        if !self.config().has_api_key() {
            return Err(NotificationRejection::Unsupported(
                "a v2 notification for a tenant without api_key".to_owned(),
            ));
        }
        match notification.channel {
            NotifyChannel::Payment => {
                notify::verify_payment(self.client.config(), notification.body, orders).await
            }
            NotifyChannel::Refund => {
                refund_notify::verify_refund(self.client.config(), notification.body, orders).await
            }
        }
    }

    fn acknowledgement(&self, outcome: Result<(), &NotificationRejection>) -> AckBody {
        notify::acknowledgement(outcome)
    }

    /// A notification signed in `Wechatpay-*` headers is a v3 one and gets v3's answer (an HTTP
    /// status, a JSON body on failure); any other gets v2's XML.
    fn acknowledgement_for(
        &self,
        notification: &IncomingNotification<'_>,
        outcome: Result<(), &NotificationRejection>,
    ) -> AckBody {
        if notification.header("wechatpay-signature").is_some() {
            v3::notify::acknowledgement(outcome)
        } else {
            notify::acknowledgement(outcome)
        }
    }
}

#[cfg(test)]
mod test_server;

#[cfg(test)]
mod api_tests;

#[cfg(test)]
mod pipeline_tests;

#[cfg(test)]
mod refund_tests;
