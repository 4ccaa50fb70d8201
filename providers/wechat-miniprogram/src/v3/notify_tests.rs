//! v3 notifications signed by the official SDK's vectors, in both key modes, and every way one
//! must be refused.

use async_trait::async_trait;
use paybridge_core::money::Fen;
use paybridge_core::provider::{NotificationRejection, OrderLookup, OrderSnapshot, ProviderEvent};
use paybridge_core::refund::RefundStatus;
use serde_json::Value;

use super::*;
use crate::v3::certificates::{CertificateDownload, PlatformCertificates};
use crate::v3::crypto::{PlatformCertificate, VerifyingKey};

const VECTORS: &str = include_str!("../../../../fixtures/wechatpay-v3/vectors.json");
const PUBLIC_KEY: &str = include_str!("../../../../fixtures/wechatpay-v3/wechatpay_public_key.pem");
const PLATFORM_CERT: &str = include_str!("../../../../fixtures/wechatpay-v3/platform_cert.pem");

struct Orders {
    order_amount: i64,
    refund_amount: i64,
}

#[async_trait]
impl OrderLookup for Orders {
    async fn find_order(&self, out_trade_no: &str) -> Option<OrderSnapshot> {
        (out_trade_no == "PB2026120600001").then(|| OrderSnapshot {
            amount: Fen::new(self.order_amount),
            provider_data: Value::Null,
        })
    }
    async fn find_refund(&self, out_trade_no: &str, out_refund_no: &str) -> Option<Fen> {
        (out_trade_no == "PB2026120600001" && out_refund_no == "RF2026120600001")
            .then(|| Fen::new(self.refund_amount))
    }
}

const ORDERS: Orders = Orders {
    order_amount: 150,
    refund_amount: 50,
};

/// Never called: the configured certificate is the one the vectors use.
struct NoDownload;

#[async_trait]
impl CertificateDownload for NoDownload {
    async fn download(&self) -> Result<Vec<u8>, String> {
        Err("no download in this test".to_owned())
    }
}

struct Fixture {
    v: Value,
    public_key: VerifyingKey,
    certificates: PlatformCertificates,
}

impl Fixture {
    fn new() -> Fixture {
        let v: Value = serde_json::from_str(VECTORS).unwrap();
        let apiv3 = v["apiv3_key"].as_str().unwrap().as_bytes().to_vec();
        let cert = PlatformCertificate::from_pem(PLATFORM_CERT, "platform_certificates").unwrap();
        Fixture {
            public_key: VerifyingKey::from_public_key_pem(PUBLIC_KEY, "wechatpay_public_key")
                .unwrap(),
            certificates: PlatformCertificates::new(&apiv3, vec![cert]),
            v,
        }
    }

    fn keys(&self) -> Keys<'_> {
        Keys {
            public_key: Some((self.v["public_key_id"].as_str().unwrap(), &self.public_key)),
            certificates: Some((&self.certificates, &NoDownload)),
        }
    }

    fn merchant(&self) -> Merchant<'_> {
        Merchant {
            who: crate::v3::merchant::Merchant {
                mchid: self.v["mchid"].as_str().unwrap(),
                appid: self.v["appid"].as_str().unwrap(),
                sub: None,
            },
            apiv3_key: self.v["apiv3_key"].as_str().unwrap().as_bytes(),
        }
    }

    /// (mode, headers, body) of each notification of `event_type`.
    fn notifications(&self, event_type: &str) -> Vec<(String, SignedHeaders<'_>, String)> {
        let all: Vec<_> = self.v["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["body"].as_str().unwrap().contains(event_type))
            .map(|n| {
                let h = &n["headers"];
                let get = |k: &str| h[k].as_str().unwrap();
                (
                    n["mode"].as_str().unwrap().to_owned(),
                    SignedHeaders {
                        serial: get("Wechatpay-Serial"),
                        signature: get("Wechatpay-Signature"),
                        timestamp: get("Wechatpay-Timestamp"),
                        nonce: get("Wechatpay-Nonce"),
                        signature_type: Some(get("Wechatpay-Signature-Type")),
                    },
                    n["body"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(all.len(), 2, "one per key mode");
        all
    }
}

fn now_of(h: &SignedHeaders<'_>) -> i64 {
    h.timestamp.parse::<i64>().unwrap() + 10
}

#[tokio::test]
async fn payments_signed_with_either_key_become_payment_events() {
    let f = Fixture::new();
    for (mode, h, body) in f.notifications("TRANSACTION.SUCCESS") {
        let event = verify_payment(
            &h,
            body.as_bytes(),
            &f.keys(),
            &f.merchant(),
            now_of(&h),
            &ORDERS,
        )
        .await
        .unwrap_or_else(|e| panic!("{mode}: {e}"));
        let ProviderEvent::Payment(p) = event else {
            panic!("{mode}: not a payment");
        };
        assert_eq!(p.out_trade_no, "PB2026120600001");
        assert_eq!(p.provider_trade_no, "4200000000202612060000000001");
        assert_eq!(p.event_id, p.provider_trade_no);
        assert_eq!(p.amount, Fen::new(150));
        assert_eq!(p.paid_at.to_rfc3339(), "2026-12-06T08:00:05+00:00");
    }
}

#[tokio::test]
async fn refunds_signed_with_either_key_become_refund_events() {
    let f = Fixture::new();
    for (mode, h, body) in f.notifications("REFUND.SUCCESS") {
        let event = verify_refund(
            &h,
            body.as_bytes(),
            &f.keys(),
            &f.merchant(),
            now_of(&h),
            &ORDERS,
        )
        .await
        .unwrap_or_else(|e| panic!("{mode}: {e}"));
        let ProviderEvent::Refund(r) = event else {
            panic!("{mode}: not a refund");
        };
        assert_eq!(r.out_refund_no, "RF2026120600001");
        assert_eq!(r.status, RefundStatus::Succeeded);
        assert_eq!(r.amount, Fen::new(50));
        assert_eq!(r.event_id, "50000000382019052709732678859:SUCCESS");
        assert!(r.succeeded_at.is_some());
    }
}

async fn refused(
    h: &SignedHeaders<'_>,
    body: &str,
    keys: &Keys<'_>,
    merchant: &Merchant<'_>,
    now: i64,
    orders: &Orders,
) -> NotificationRejection {
    verify_payment(h, body.as_bytes(), keys, merchant, now, orders)
        .await
        .expect_err("accepted")
}

#[tokio::test]
async fn tampered_wrong_serial_stale_wrong_amount_foreign_mchid_and_wrong_key_are_refused() {
    let f = Fixture::new();
    let (keys, merchant) = (f.keys(), f.merchant());
    for (mode, h, body) in f.notifications("TRANSACTION.SUCCESS") {
        let now = now_of(&h);
        // One byte more in the body.
        let tampered = body.replace("\"summary\":\"", "\"summary\":\" ");
        assert_eq!(
            refused(&h, &tampered, &keys, &merchant, now, &ORDERS).await,
            NotificationRejection::BadSignature,
            "{mode}: tampered"
        );
        // The other mode's serial: the signature does not verify with that key.
        let other = if mode == "public_key" {
            f.v["platform_serial_no"].as_str().unwrap()
        } else {
            f.v["public_key_id"].as_str().unwrap()
        };
        let wrong_serial = SignedHeaders { serial: other, ..h };
        assert_eq!(
            refused(&wrong_serial, &body, &keys, &merchant, now, &ORDERS).await,
            NotificationRejection::BadSignature,
            "{mode}: wrong serial"
        );
        // A serial nobody configured (no download possible).
        let unknown = SignedHeaders {
            serial: "PUB_KEY_ID_0000",
            ..h
        };
        assert_eq!(
            refused(&unknown, &body, &keys, &merchant, now, &ORDERS).await,
            NotificationRejection::BadSignature,
            "{mode}: unknown serial"
        );
        // Replayed six minutes later.
        assert_eq!(
            refused(&h, &body, &keys, &merchant, now + 360, &ORDERS).await,
            NotificationRejection::Mismatch {
                field: "Wechatpay-Timestamp"
            },
            "{mode}: stale"
        );
        // The order is for another amount.
        let other_amount = Orders {
            order_amount: 151,
            refund_amount: 50,
        };
        assert_eq!(
            refused(&h, &body, &keys, &merchant, now, &other_amount).await,
            NotificationRejection::Mismatch {
                field: "amount.total"
            },
            "{mode}: amount"
        );
        // A tenant with another mchid (or appid).
        let foreign = Merchant {
            who: crate::v3::merchant::Merchant {
                mchid: "1900000110",
                ..merchant.who
            },
            ..merchant
        };
        assert_eq!(
            refused(&h, &body, &keys, &foreign, now, &ORDERS).await,
            NotificationRejection::Mismatch { field: "mchid" },
            "{mode}: mchid"
        );
        let other_app = Merchant {
            who: crate::v3::merchant::Merchant {
                appid: "wx0000000000000000",
                ..merchant.who
            },
            ..merchant
        };
        assert_eq!(
            refused(&h, &body, &keys, &other_app, now, &ORDERS).await,
            NotificationRejection::Mismatch { field: "appid" },
            "{mode}: appid"
        );
        // A configured APIv3 key that is not the merchant's.
        let wrong_key = Merchant {
            apiv3_key: b"0123456789abcdef0123456789abcdef",
            ..merchant
        };
        assert_eq!(
            refused(&h, &body, &keys, &wrong_key, now, &ORDERS).await,
            NotificationRejection::Mismatch { field: "apiv3_key" },
            "{mode}: apiv3_key"
        );
        // A refund notification sent to the payment endpoint.
        let (_, rh, rbody) = f
            .notifications("REFUND.SUCCESS")
            .into_iter()
            .find(|(m, _, _)| *m == mode)
            .unwrap();
        assert!(matches!(
            refused(&rh, &rbody, &keys, &merchant, now_of(&rh), &ORDERS).await,
            NotificationRejection::Unsupported(_)
        ));
    }
}

#[tokio::test]
async fn a_tenant_with_only_one_kind_of_key_refuses_the_other_kind() {
    let f = Fixture::new();
    let merchant = f.merchant();
    let public_only = Keys {
        certificates: None,
        ..f.keys()
    };
    let certificates_only = Keys {
        public_key: None,
        ..f.keys()
    };
    for (mode, h, body) in f.notifications("TRANSACTION.SUCCESS") {
        let keys = if mode == "public_key" {
            &certificates_only
        } else {
            &public_only
        };
        assert_eq!(
            refused(&h, &body, keys, &merchant, now_of(&h), &ORDERS).await,
            NotificationRejection::BadSignature,
            "{mode}"
        );
    }
}

#[test]
fn a_v3_notification_is_acknowledged_in_v3_and_a_v2_one_in_xml() {
    use paybridge_core::provider::{IncomingNotification, NotifyChannel, PaymentProvider};
    let ok = acknowledgement(Ok(()));
    assert_eq!((ok.status, ok.body.len()), (204, 0));
    let refused = acknowledgement(Err(&NotificationRejection::BadSignature));
    assert_eq!(refused.status, 500);
    let body: Value = serde_json::from_slice(&refused.body).unwrap();
    assert_eq!(body["code"], "FAIL");
    assert_eq!(body["message"], "signature mismatch");

    let provider = crate::api_tests::provider(
        "http://127.0.0.1:9",
        "HMAC-SHA256",
        std::time::Duration::from_secs(1),
    );
    let v3_headers = [("wechatpay-signature", "x")];
    let v3 = IncomingNotification {
        channel: NotifyChannel::Payment,
        content_type: Some("application/json"),
        body: b"{}",
        headers: &v3_headers,
    };
    assert_eq!(provider.acknowledgement_for(&v3, Ok(())).status, 204);
    let v2 = IncomingNotification {
        headers: &[],
        content_type: Some("text/xml"),
        ..v3
    };
    let xml = provider.acknowledgement_for(&v2, Ok(()));
    assert_eq!(xml.content_type, "application/xml");
    assert!(String::from_utf8(xml.body).unwrap().contains("SUCCESS"));
}
