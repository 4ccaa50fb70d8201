//! A provider that exists only in the tests, to prove that adding a provider needs one crate (here:
//! one module) and no change to core, the HTTP layer or storage. Its "protocol": a JSON
//! notification `{out_trade_no, amount, trade_no, secret}` authenticated by a shared secret, in
//! the body or in an `X-Fake-Secret` header (headers reach providers, as WeChat Pay v3 needs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use async_trait::async_trait;
use paybridge_core::money::Fen;
use paybridge_core::provider::{
    AckBody, BuildContext, CreatePayment, CreatedPayment, FieldError, FieldSpec,
    IncomingNotification, NotificationRejection, OrderLookup, PaymentEvent, PaymentProvider,
    ProviderError, ProviderEvent, ProviderFactory,
};

/// The kind.
pub const KIND: &str = "test_fake";

struct Fake {
    secret: String,
}

#[async_trait]
impl PaymentProvider for Fake {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn create_payment(&self, req: &CreatePayment) -> Result<CreatedPayment, ProviderError> {
        Ok(CreatedPayment {
            client_payment: serde_json::json!({ "token": format!("fake-{}", req.out_trade_no) }),
            provider_data: serde_json::json!({}),
            remote: true,
        })
    }

    async fn verify_notification(
        &self,
        n: &IncomingNotification<'_>,
        orders: &dyn OrderLookup,
    ) -> Result<ProviderEvent, NotificationRejection> {
        let v: serde_json::Value = serde_json::from_slice(n.body)
            .map_err(|e| NotificationRejection::Undecodable(e.to_string()))?;
        let secret = n.header("x-fake-secret").or_else(|| v["secret"].as_str());
        if secret != Some(self.secret.as_str()) {
            return Err(NotificationRejection::BadSignature);
        }
        let no = v["out_trade_no"].as_str().unwrap_or_default().to_owned();
        let order = orders
            .find_order(&no)
            .await
            .ok_or(NotificationRejection::Unknown("order"))?;
        let amount = Fen::new(v["amount"].as_i64().unwrap_or_default());
        if amount != order.amount {
            return Err(NotificationRejection::Mismatch { field: "amount" });
        }
        Ok(ProviderEvent::Payment(PaymentEvent {
            out_trade_no: no,
            provider_trade_no: v["trade_no"].as_str().unwrap_or_default().to_owned(),
            amount,
            paid_at: chrono::Utc::now(),
            event_id: v["trade_no"].as_str().unwrap_or_default().to_owned(),
        }))
    }

    fn acknowledgement(&self, outcome: Result<(), &NotificationRejection>) -> AckBody {
        let body = if outcome.is_ok() { "ok" } else { "no" };
        AckBody {
            status: 200,
            content_type: "text/plain",
            body: body.as_bytes().to_vec(),
        }
    }
}

fn build(
    table: &toml::Table,
    _: &BuildContext,
) -> Result<Arc<dyn PaymentProvider>, Vec<FieldError>> {
    match table.get("secret").and_then(|v| v.as_str()) {
        Some(s) if !s.is_empty() => Ok(Arc::new(Fake {
            secret: s.to_owned(),
        })),
        _ => Err(vec![FieldError::new("secret", "required")]),
    }
}

paybridge_core::inventory::submit! {
    ProviderFactory {
        kind: KIND,
        display_name: "Test fake provider",
        fields: &[FieldSpec { name: "secret", required: true, secret: true, description: "shared secret" }],
        build,
        simulator: None,
        platform: None,
    }
}

/// Referenced by the tests so the linker keeps this module's registration.
pub fn linked() -> &'static str {
    KIND
}
