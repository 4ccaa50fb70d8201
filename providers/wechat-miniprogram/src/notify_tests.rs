//! Notification checks and their order. Notifications are signed here by an independent few lines
//! (not `crate::sign`), so a bug shared by signer and verifier cannot pass.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use paybridge_core::money::Fen;
use paybridge_core::provider::{
    BuildContext, IncomingNotification, NotificationRejection, NotifyChannel, OrderLookup,
    OrderSnapshot, PaymentEvent, PaymentProvider, ProviderEvent,
};
use sha2::Sha256;

use super::*;
use crate::WechatMiniprogram;

const KEY: &str = "192006250b4c09247ec02edce69f6a2d";
const APPID: &str = "wxd678efh567hg6787";
const MCH: &str = "1900000109";

struct FakeOrders {
    orders: HashMap<String, OrderSnapshot>,
    lookups: Mutex<Vec<String>>,
}

#[async_trait]
impl OrderLookup for FakeOrders {
    async fn find_order(&self, out_trade_no: &str) -> Option<OrderSnapshot> {
        self.lookups
            .lock()
            .expect("lock")
            .push(out_trade_no.to_owned());
        self.orders.get(out_trade_no).cloned()
    }
    async fn find_refund(&self, _: &str, _: &str) -> Option<Fen> {
        None
    }
}

fn orders(provider_data: serde_json::Value) -> FakeOrders {
    let snapshot = OrderSnapshot {
        amount: Fen::new(1990),
        provider_data,
    };
    FakeOrders {
        orders: HashMap::from([("ORDER0001".to_owned(), snapshot)]),
        lookups: Mutex::new(Vec::new()),
    }
}

fn provider(sign_type: &str) -> WechatMiniprogram {
    let table: toml::Table =
        format!("appid = \"{APPID}\"\nmch_id = \"{MCH}\"\napi_key = \"{KEY}\"\nsign_type = \"{sign_type}\"\n")
            .parse()
            .expect("toml");
    let ctx = BuildContext {
        base_dir: Path::new(".").to_path_buf(),
        http_timeout: Duration::from_secs(1),
    };
    WechatMiniprogram::new(&table, &ctx).expect("valid")
}

#[derive(Clone, Copy)]
enum Alg {
    Md5,
    Hmac,
}

/// Sign `fields` by hand: sorted, non-empty, `&key=`, uppercase hex.
fn independent_sign(fields: &[(&str, &str)], alg: Alg) -> String {
    let mut sorted: Vec<&(&str, &str)> = fields.iter().filter(|(_, v)| !v.is_empty()).collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let joined: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let message = format!("{}&key={KEY}", joined.join("&"));
    match alg {
        Alg::Md5 => hex::encode_upper(Md5::digest(message.as_bytes())),
        Alg::Hmac => {
            let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).expect("key");
            mac.update(message.as_bytes());
            hex::encode_upper(mac.finalize().into_bytes())
        }
    }
}

fn base_fields() -> Vec<(&'static str, &'static str)> {
    vec![
        ("appid", APPID),
        ("mch_id", MCH),
        ("bank_type", "CFT"),
        ("cash_fee", "990"),
        ("coupon_fee", "1000"),
        ("fee_type", "CNY"),
        ("is_subscribe", "N"),
        ("nonce_str", "5d2b6c2a8db53831f7eda20af46e531c"),
        ("openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
        ("out_trade_no", "ORDER0001"),
        ("result_code", "SUCCESS"),
        ("return_code", "SUCCESS"),
        ("time_end", "20240101080102"),
        ("total_fee", "1990"),
        ("trade_type", "JSAPI"),
        ("transaction_id", "4200000001202401010000000001"),
        ("attach", "  spaced  "),
        ("some_future_field", "kept & signed"),
    ]
}

/// The notification XML with these fields, signed with `alg` (plus `extra` added after signing).
fn notification(fields: &[(&str, &str)], alg: Alg, extra: &[(&str, &str)]) -> String {
    let sign = independent_sign(fields, alg);
    let mut xml = String::from("<xml>\n");
    for (k, v) in fields
        .iter()
        .chain(extra)
        .chain([("sign", sign.as_str())].iter())
    {
        xml.push_str(&format!("<{k}><![CDATA[{v}]]></{k}>\n"));
    }
    xml + "</xml>"
}

fn with(changes: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut fields = base_fields();
    for (k, v) in changes {
        match fields.iter_mut().find(|(name, _)| name == k) {
            Some(entry) => entry.1 = v,
            None => fields.push((k, v)),
        }
    }
    fields
}

async fn verify(
    p: &WechatMiniprogram,
    body: &str,
    lookup: &FakeOrders,
) -> Result<ProviderEvent, NotificationRejection> {
    let n = IncomingNotification {
        channel: NotifyChannel::Payment,
        content_type: Some("text/xml"),
        body: body.as_bytes(),
        headers: &[],
    };
    p.verify_notification(&n, lookup).await
}

fn expected_event() -> ProviderEvent {
    let paid_at: DateTime<Utc> = DateTime::parse_from_rfc3339("2024-01-01T00:01:02Z")
        .expect("time")
        .with_timezone(&Utc);
    ProviderEvent::Payment(PaymentEvent {
        out_trade_no: "ORDER0001".into(),
        provider_trade_no: "4200000001202401010000000001".into(),
        amount: Fen::new(1990),
        paid_at,
        event_id: "4200000001202401010000000001".into(),
    })
}

#[tokio::test]
async fn hmac_notification_without_sign_type_verifies_with_the_orders_sign_type() {
    // Tenant now says MD5, the order was created with HMAC-SHA256, the notification names neither.
    let p = provider("MD5");
    let lookup = orders(serde_json::json!({"sign_type": "HMAC-SHA256", "prepay_id": "wx1"}));
    let body = notification(&base_fields(), Alg::Hmac, &[]);
    assert_eq!(verify(&p, &body, &lookup).await, Ok(expected_event()));
    assert_eq!(
        lookup.lookups.lock().expect("lock").len(),
        1,
        "the order is looked up once"
    );
    // The same notification signed with MD5 does not verify for that order.
    let body = notification(&base_fields(), Alg::Md5, &[]);
    assert_eq!(
        verify(&p, &body, &lookup).await,
        Err(NotificationRejection::BadSignature)
    );
}

#[tokio::test]
async fn without_order_data_the_sign_type_is_inferred_from_the_signature_length() {
    let lookup = orders(serde_json::Value::Null);
    // Whatever the tenant's current sign_type: 32 hex digits are MD5, 64 are HMAC-SHA256.
    for tenant in ["MD5", "HMAC-SHA256"] {
        for alg in [Alg::Md5, Alg::Hmac] {
            assert_eq!(
                verify(
                    &provider(tenant),
                    &notification(&base_fields(), alg, &[]),
                    &lookup
                )
                .await,
                Ok(expected_event()),
                "{tenant}"
            );
        }
    }
    let tampered = notification(&base_fields(), Alg::Hmac, &[]).replace("ORDER0001", "ORDER0002");
    assert_eq!(
        verify(&provider("MD5"), &tampered, &lookup).await,
        Err(NotificationRejection::BadSignature)
    );
}

#[tokio::test]
async fn a_sign_type_field_must_agree_with_the_orders() {
    let lookup = orders(serde_json::json!({"sign_type": "HMAC-SHA256"}));
    // A notification claiming MD5 for an HMAC-SHA256 order is refused, even if it verifies.
    let body = notification(&with(&[("sign_type", "MD5")]), Alg::Md5, &[]);
    assert_eq!(
        verify(&provider("HMAC-SHA256"), &body, &lookup).await,
        Err(NotificationRejection::BadSignature)
    );
    let body = notification(&with(&[("sign_type", "HMAC-SHA256")]), Alg::Hmac, &[]);
    assert_eq!(
        verify(&provider("MD5"), &body, &lookup).await,
        Ok(expected_event())
    );
    // Without order data the field decides.
    let unknown = orders(serde_json::Value::Null);
    let body = notification(&with(&[("sign_type", "MD5")]), Alg::Md5, &[]);
    assert_eq!(
        verify(&provider("HMAC-SHA256"), &body, &unknown).await,
        Ok(expected_event())
    );
    let body = notification(&with(&[("sign_type", "SHA1")]), Alg::Md5, &[]);
    assert_eq!(
        verify(&provider("MD5"), &body, &unknown).await,
        Err(NotificationRejection::BadSignature)
    );
}

#[tokio::test]
async fn added_unsigned_fields_and_trimmed_values_fail_the_signature() {
    let p = provider("MD5");
    let lookup = orders(serde_json::Value::Null);
    let injected = notification(&base_fields(), Alg::Md5, &[("coupon_id_0", "free")]);
    assert_eq!(
        verify(&p, &injected, &lookup).await,
        Err(NotificationRejection::BadSignature)
    );
    let trimmed = notification(&base_fields(), Alg::Md5, &[]).replace("  spaced  ", "spaced");
    assert_eq!(
        verify(&p, &trimmed, &lookup).await,
        Err(NotificationRejection::BadSignature)
    );
    let missing_sign = format!("<xml><appid>{APPID}</appid><mch_id>{MCH}</mch_id></xml>");
    assert_eq!(
        verify(&p, &missing_sign, &lookup).await,
        Err(NotificationRejection::BadSignature)
    );
}

#[tokio::test]
async fn checks_run_in_the_documented_order() {
    let p = provider("MD5");
    let lookup = orders(serde_json::Value::Null);
    // (fields, signed correctly, expected rejection)
    type Case = (
        Vec<(&'static str, &'static str)>,
        bool,
        NotificationRejection,
    );
    let cases: Vec<Case> = vec![
        // Everything wrong, and unsigned: the signature is checked first.
        (
            with(&[
                ("appid", "wxOTHER"),
                ("result_code", "FAIL"),
                ("total_fee", "1"),
            ]),
            false,
            NotificationRejection::BadSignature,
        ),
        // Signed, but for another app and merchant, failing, unknown order: appid first.
        (
            with(&[
                ("appid", "wxOTHER"),
                ("mch_id", "999"),
                ("result_code", "FAIL"),
                ("out_trade_no", "NOPE000"),
            ]),
            true,
            NotificationRejection::Mismatch { field: "appid" },
        ),
        (
            with(&[("mch_id", "999"), ("result_code", "FAIL")]),
            true,
            NotificationRejection::Mismatch { field: "mch_id" },
        ),
        // Reported failure before order lookup and amount.
        (
            with(&[
                ("result_code", "FAIL"),
                ("err_code", "NOTENOUGH"),
                ("out_trade_no", "NOPE000"),
                ("total_fee", "1"),
            ]),
            true,
            NotificationRejection::ReportedFailure("result_code FAIL err_code NOTENOUGH".into()),
        ),
        (
            with(&[("return_code", "FAIL")]),
            true,
            NotificationRejection::ReportedFailure("return_code FAIL".into()),
        ),
        // Unknown order before amount.
        (
            with(&[("out_trade_no", "NOPE000"), ("total_fee", "1")]),
            true,
            NotificationRejection::Unknown("order"),
        ),
        (
            with(&[("total_fee", "1989")]),
            true,
            NotificationRejection::Mismatch { field: "total_fee" },
        ),
        (
            with(&[("total_fee", "+1990")]),
            true,
            NotificationRejection::Mismatch { field: "total_fee" },
        ),
    ];
    for (fields, sign_properly, expected) in cases {
        let body = if sign_properly {
            notification(&fields, Alg::Md5, &[])
        } else {
            notification(&fields, Alg::Md5, &[]).replace("<sign><![CDATA[", "<sign><![CDATA[0")
        };
        assert_eq!(
            verify(&p, &body, &lookup).await,
            Err(expected.clone()),
            "{expected:?}"
        );
    }
}

#[tokio::test]
async fn undecodable_bodies_and_refund_channel() {
    let p = provider("MD5");
    let lookup = orders(serde_json::Value::Null);
    for body in [
        "",
        "not xml",
        "<!DOCTYPE x [<!ENTITY a \"b\">]><xml><a>&a;</a></xml>",
        "<root><a>1</a></root>",
    ] {
        assert!(
            matches!(
                verify(&p, body, &lookup).await,
                Err(NotificationRejection::Undecodable(_))
            ),
            "{body:?}"
        );
    }
    assert!(
        lookup.lookups.lock().expect("lock").is_empty(),
        "no lookup for undecodable bodies"
    );
    // The refund channel has its own checks: an empty document reports no success.
    let n = IncomingNotification {
        channel: NotifyChannel::Refund,
        content_type: None,
        body: b"<xml></xml>",
        headers: &[],
    };
    assert!(matches!(
        p.verify_notification(&n, &lookup).await,
        Err(NotificationRejection::ReportedFailure(_))
    ));
}

#[test]
fn acknowledgements_are_exact() {
    let p = provider("MD5");
    let ok = p.acknowledgement(Ok(()));
    assert_eq!((ok.status, ok.content_type), (200, "application/xml"));
    assert_eq!(
        ok.body,
        b"<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
    );
    let fail = p.acknowledgement(Err(&NotificationRejection::BadSignature));
    assert_eq!((fail.status, fail.content_type), (200, "application/xml"));
    assert_eq!(
        String::from_utf8_lossy(&fail.body),
        "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[signature mismatch]]></return_msg></xml>"
    );
    let fail = p.acknowledgement(Err(&NotificationRejection::Undecodable(
        "at byte 17: <secret> ]]>".into(),
    )));
    let text = String::from_utf8_lossy(&fail.body).to_string();
    assert!(
        text.contains("<![CDATA[undecodable notification]]>") && !text.contains("byte 17"),
        "{text}"
    );
    let fail = p.acknowledgement(Err(&NotificationRejection::Mismatch { field: "total_fee" }));
    assert!(String::from_utf8_lossy(&fail.body).contains("<![CDATA[total_fee does not match]]>"));
    let fields = xml::decode(&fail.body, "xml").expect("failure ack is valid XML");
    assert_eq!(fields.get("return_code").map(String::as_str), Some("FAIL"));
}

/// Fuzzing (issue 8), as properties: arbitrary bytes and XML-shaped noise never panic the decoder
/// or the verifier, and re-signed mutations of a genuine notification never pay another order or
/// amount. `PROPTEST_CASES` sets the number of cases (256 by default; `.ci/run` runs more).
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const TOKENS: &[&str] = &[
        "<xml>",
        "</xml>",
        "<",
        ">",
        "</",
        "<![CDATA[",
        "]]>",
        "<!DOCTYPE x [<!ENTITY a \"bbbbbbbb\">]>",
        "&a;",
        "&amp;",
        "&#0;",
        "<?xml version=\"1.0\" encoding=\"GBK\"?>",
        "<sign>",
        "</sign>",
        "<out_trade_no>",
        "</out_trade_no>",
        "ORDER0001",
        "<total_fee>",
        "</total_fee>",
        "1990",
        "-1",
        "99999999999999999999",
        "<return_code>SUCCESS</return_code>",
        "<result_code>SUCCESS</result_code>",
        "<sign_type>HMAC-SHA256</sign_type>",
        "\u{0}",
        "\u{feff}",
        "中文",
        " ",
        "\n",
        "<a><b><c>",
        "=",
        "\"",
    ];

    fn xmlish() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(TOKENS), 0..64)
            .prop_map(|tokens| tokens.concat().into_bytes())
    }

    /// One provider and one runtime for every case: building them is most of a case's cost.
    fn setup() -> &'static (WechatMiniprogram, tokio::runtime::Runtime) {
        static SETUP: std::sync::OnceLock<(WechatMiniprogram, tokio::runtime::Runtime)> =
            std::sync::OnceLock::new();
        SETUP.get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            (provider("MD5"), runtime)
        })
    }

    fn check(body: &[u8]) -> Result<ProviderEvent, NotificationRejection> {
        let (p, runtime) = setup();
        let orders = orders(serde_json::Value::Null);
        let n = IncomingNotification {
            channel: NotifyChannel::Payment,
            content_type: Some("text/xml"),
            body,
            headers: &[],
        };
        runtime.block_on(p.verify_notification(&n, &orders))
    }

    proptest! {
        #[test]
        fn the_xml_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
            let _ = xml::decode(&bytes, "xml");
        }

        #[test]
        fn noise_is_refused_without_a_panic(body in xmlish()) {
            let _ = xml::decode(&body, "xml");
            prop_assert!(check(&body).is_err());
        }

        #[test]
        fn resigned_mutations_never_pay_another_order_or_amount(
            field in prop::sample::select(&[
                "total_fee", "out_trade_no", "appid", "mch_id", "result_code", "return_code",
                "time_end", "transaction_id", "sign_type", "cash_fee", "fee_type",
            ][..]),
            value in "\\PC{0,24}",
        ) {
            let mut fields = base_fields();
            fields.retain(|(k, _)| *k != field);
            let mut fields: Vec<(&str, &str)> = fields;
            fields.push((field, value.as_str()));
            let body = notification(&fields, Alg::Md5, &[]);
            if let Ok(ProviderEvent::Payment(p)) = check(body.as_bytes()) {
                prop_assert_eq!(p.out_trade_no.as_str(), "ORDER0001");
                prop_assert_eq!(p.amount, Fen::new(1990));
            }
        }
    }
}

#[tokio::test]
async fn a_service_providers_v2_notification_must_name_this_sub_merchant() {
    // A service provider's tenant (appid/mch_id are the service provider's): its notifications
    // carry sub_mch_id, which must be this tenant's.
    let table: toml::Table = format!(
        "sp_appid = \"{APPID}\"\nsp_mchid = \"{MCH}\"\nsub_mchid = \"1900000201\"\napi_key = \"{KEY}\"\nsign_type = \"HMAC-SHA256\"\n"
    )
    .parse()
    .expect("toml");
    let ctx = BuildContext {
        base_dir: Path::new(".").to_path_buf(),
        http_timeout: Duration::from_secs(1),
    };
    let p = WechatMiniprogram::new(&table, &ctx).expect("valid");
    let lookup = orders(serde_json::json!({"sign_type": "HMAC-SHA256", "prepay_id": "wx1"}));
    let ours = notification(&with(&[("sub_mch_id", "1900000201")]), Alg::Hmac, &[]);
    assert_eq!(verify(&p, &ours, &lookup).await, Ok(expected_event()));
    for other in [
        notification(&with(&[("sub_mch_id", "1900000202")]), Alg::Hmac, &[]),
        notification(&base_fields(), Alg::Hmac, &[]),
    ] {
        assert_eq!(
            verify(&p, &other, &lookup).await,
            Err(NotificationRejection::Mismatch {
                field: "sub_mch_id"
            })
        );
    }
}
