//! The v3 side of the `wechat_miniprogram` provider: what a tenant with `apiv3_key` can do in v3.
//! The provider (`lib.rs`) sends new orders here when `api_version = "v3"`, an existing order
//! when it was made in v3 (`provider_data.api_version`), and a notification when it is signed in
//! `Wechatpay-*` headers.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use paybridge_core::provider::{
    CloseOutcome, CreatePayment, CreatedPayment, IncomingNotification, NotificationRejection,
    NotifyChannel, OrderLookup, OrderRef, PaymentState, ProviderError, ProviderEvent,
    RefundRequest, RefundState,
};
use secrecy::ExposeSecret;

use super::certificates::PlatformCertificates;
use super::client::{V3Client, V3Setup};
use super::notify::{Merchant as NotifyMerchant, SignedHeaders};
use super::orders::{self, Merchant, Sub};
use super::refunds;
use crate::config::{V3Config, WechatConfig};

/// Whether an order was made in v3.
pub fn is_v3(order: &OrderRef) -> bool {
    order
        .provider_data
        .get("api_version")
        .and_then(serde_json::Value::as_str)
        == Some("v3")
}

/// A tenant's v3 client and keys.
pub struct V3Provider {
    client: V3Client,
    config: V3Config,
    appid: String,
    mchid: String,
    partner: Option<crate::config::Partner>,
}

impl V3Provider {
    /// Build from a validated config (its `v3` part must be set).
    pub fn new(
        config: &WechatConfig,
        v3: &V3Config,
        timeout: Duration,
    ) -> Result<V3Provider, reqwest::Error> {
        let http = crate::client::http_client(config, timeout, None)?;
        let certificates = v3.platform_certificates.then(|| {
            Arc::new(PlatformCertificates::new(
                v3.apiv3_key.expose_secret(),
                Vec::new(),
            ))
        });
        let client = V3Client::new(V3Setup {
            http,
            base: config.api_base.clone(),
            mchid: config.mch_id.clone(),
            serial_no: v3.serial_no.clone(),
            key: v3.key.clone(),
            public_key: v3.public_key.clone(),
            certificates,
        });
        Ok(V3Provider {
            client,
            config: v3.clone(),
            appid: config.appid.clone(),
            mchid: config.mch_id.clone(),
            partner: config.partner.clone(),
        })
    }

    fn merchant(&self) -> Merchant<'_> {
        Merchant {
            appid: &self.appid,
            mchid: &self.mchid,
            sub: self.partner.as_ref().map(|p| Sub {
                sub_mchid: &p.sub_mchid,
                sub_appid: p.sub_appid.as_deref(),
            }),
        }
    }

    fn sub_mchid(&self) -> Option<&str> {
        self.partner.as_ref().map(|p| p.sub_mchid.as_str())
    }

    /// `POST /v3/pay/transactions/jsapi` and the client's `paySign`.
    pub async fn create_payment(
        &self,
        req: &CreatePayment,
    ) -> Result<CreatedPayment, ProviderError> {
        orders::create_payment(&self.client, self.merchant(), &self.config.key, req).await
    }

    /// The order's state.
    pub async fn query_payment(&self, order: &OrderRef) -> Result<PaymentState, ProviderError> {
        orders::query_payment(&self.client, self.merchant(), order).await
    }

    /// Close the order.
    pub async fn close_payment(&self, order: &OrderRef) -> Result<CloseOutcome, ProviderError> {
        orders::close_payment(&self.client, self.merchant(), order).await
    }

    /// Send a refund.
    /// The day's trade bill (of the sub-merchant, for a service provider), gzipped, its hash
    /// checked.
    pub async fn download_bill(
        &self,
        day: chrono::NaiveDate,
        dest: &mut (dyn std::io::Write + Send),
    ) -> Result<paybridge_core::statement::BillDownload, ProviderError> {
        super::bills::download_bill(&self.client, self.sub_mchid(), day, dest).await
    }

    pub async fn refund(&self, req: &RefundRequest) -> Result<RefundState, ProviderError> {
        refunds::refund(&self.client, self.sub_mchid(), req).await
    }

    /// A refund's state.
    pub async fn query_refund(
        &self,
        order: &OrderRef,
        out_refund_no: &str,
    ) -> Result<RefundState, ProviderError> {
        refunds::query_refund(&self.client, self.sub_mchid(), order, out_refund_no).await
    }

    /// A notification signed in `Wechatpay-*` headers.
    pub async fn verify_notification(
        &self,
        n: &IncomingNotification<'_>,
        orders: &dyn OrderLookup,
    ) -> Result<ProviderEvent, NotificationRejection> {
        let header = |name: &str| n.header(name).ok_or(NotificationRejection::BadSignature);
        let headers = SignedHeaders {
            serial: header("wechatpay-serial")?,
            signature: header("wechatpay-signature")?,
            timestamp: header("wechatpay-timestamp")?,
            nonce: header("wechatpay-nonce")?,
            signature_type: n.header("wechatpay-signature-type"),
        };
        let keys = self.client.keys();
        let merchant = NotifyMerchant {
            who: self.merchant(),
            apiv3_key: self.config.apiv3_key.expose_secret(),
        };
        let now = Utc::now().timestamp();
        match n.channel {
            NotifyChannel::Payment => {
                super::notify::verify_payment(&headers, n.body, &keys, &merchant, now, orders).await
            }
            NotifyChannel::Refund => {
                super::notify::verify_refund(&headers, n.body, &keys, &merchant, now, orders).await
            }
        }
    }
}
