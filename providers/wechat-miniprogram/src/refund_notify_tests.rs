//! Refund notifications: decryption pinned to the published vectors, and the checks' order. Test
//! notifications are encrypted here by a few independent lines (not the simulator's code).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use async_trait::async_trait;
use paybridge_core::money::Fen;
use paybridge_core::provider::{
    BuildContext, IncomingNotification, NotificationRejection, NotifyChannel, OrderLookup,
    OrderSnapshot, PaymentProvider, ProviderEvent, RefundEvent,
};
use paybridge_core::refund::RefundStatus;

use super::*;
use crate::WechatMiniprogram;

/// wechatpy's real notification (tests/fixtures/refund_notify_wechatpy.xml).
const WECHATPY_KEY: &str = "OF4Ne3znh8KqL0V4NqmALQa0uXMYKcEk";
const WECHATPY_APPID: &str = "wx4f4bc4dec97d474b";
const WECHATPY_MCH: &str = "12345678";
const WECHATPY_TRADE: &str = "2020010418301551404339261814";

fn wechatpy_notification() -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/refund_notify_wechatpy.xml",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

struct Refunds {
    known: Vec<(String, String, Fen)>,
    asked: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl OrderLookup for Refunds {
    async fn find_order(&self, _: &str) -> Option<OrderSnapshot> {
        None
    }
    async fn find_refund(&self, out_trade_no: &str, out_refund_no: &str) -> Option<Fen> {
        self.asked
            .lock()
            .expect("lock")
            .push((out_trade_no.to_owned(), out_refund_no.to_owned()));
        self.known
            .iter()
            .find(|(t, r, _)| t == out_trade_no && r == out_refund_no)
            .map(|(_, _, amount)| *amount)
    }
}

fn refunds(out_trade_no: &str, out_refund_no: &str, amount: i64) -> Refunds {
    Refunds {
        known: vec![(
            out_trade_no.to_owned(),
            out_refund_no.to_owned(),
            Fen::new(amount),
        )],
        asked: Mutex::new(Vec::new()),
    }
}

fn provider(appid: &str, mch_id: &str, key: &str) -> WechatMiniprogram {
    let table: toml::Table =
        format!("appid = \"{appid}\"\nmch_id = \"{mch_id}\"\napi_key = \"{key}\"\n")
            .parse()
            .expect("toml");
    let ctx = BuildContext {
        base_dir: Path::new(".").to_path_buf(),
        http_timeout: Duration::from_secs(1),
    };
    WechatMiniprogram::new(&table, &ctx).expect("valid")
}

fn wechatpy_provider() -> WechatMiniprogram {
    provider(WECHATPY_APPID, WECHATPY_MCH, WECHATPY_KEY)
}

async fn verify(
    p: &WechatMiniprogram,
    body: &[u8],
    orders: &Refunds,
) -> Result<ProviderEvent, NotificationRejection> {
    let notification = IncomingNotification {
        channel: NotifyChannel::Refund,
        content_type: Some("text/xml"),
        body,
        headers: &[],
    };
    p.verify_notification(&notification, orders).await
}

/// Independent encryption: key* = hex(md5(key)) ASCII, raw AES-256-ECB over `padded` (the caller
/// pads, so bad padding can be made on purpose).
fn encrypt_raw(padded: &[u8], api_key: &str) -> String {
    use md5::Digest;
    let key_star = hex::encode(md5::Md5::digest(api_key.as_bytes()));
    let cipher = Aes256::new_from_slice(key_star.as_bytes()).expect("32 bytes");
    let mut data = padded.to_vec();
    assert_eq!(data.len() % 16, 0, "test must pad to blocks");
    for chunk in data.chunks_exact_mut(16) {
        cipher.encrypt_block(<&mut aes::Block>::try_from(chunk).expect("block"));
    }
    STANDARD.encode(data)
}

fn pkcs7(plain: &str, block: usize) -> Vec<u8> {
    let mut data = plain.as_bytes().to_vec();
    let n = block - data.len() % block;
    data.extend(std::iter::repeat_n(u8::try_from(n).expect("small"), n));
    data
}

const TEST_KEY: &str = "192006250b4c09247ec02edce69f6a2d";
const TEST_APPID: &str = "wxd678efh567hg6787";
const TEST_MCH: &str = "1900000109";

fn inner(status: &str, refund_fee: &str, extra: &str) -> String {
    format!(
        "<root><out_refund_no><![CDATA[R-1]]></out_refund_no><out_trade_no><![CDATA[ORDER0001]]></out_trade_no>\
         <refund_fee>{refund_fee}</refund_fee><refund_id><![CDATA[50300009]]></refund_id>\
         <refund_status><![CDATA[{status}]]></refund_status><total_fee>1990</total_fee>\
         <transaction_id><![CDATA[4200000001]]></transaction_id>{extra}</root>"
    )
}

fn outer(appid: &str, mch_id: &str, req_info: &str) -> Vec<u8> {
    format!(
        "<xml><return_code>SUCCESS</return_code><appid><![CDATA[{appid}]]></appid>\
         <mch_id><![CDATA[{mch_id}]]></mch_id><nonce_str><![CDATA[n]]></nonce_str>\
         <req_info><![CDATA[{req_info}]]></req_info></xml>"
    )
    .into_bytes()
}

fn test_notification(status: &str, refund_fee: &str, extra: &str) -> Vec<u8> {
    let plain = inner(status, refund_fee, extra);
    outer(
        TEST_APPID,
        TEST_MCH,
        &encrypt_raw(&pkcs7(&plain, 16), TEST_KEY),
    )
}

#[test]
fn ijpay_vector_decrypts_with_the_derived_key() {
    let key = SecretString::from("42cc1d91bab89b65ff55b19e28fff4f0");
    assert_eq!(&refund_key(&key), b"1c26ff4ebc15b88a8829febe1789c130");
    assert_eq!(
        decrypt_req_info("K8fdh/6THGfTKio8pxXS6Q==", &key).as_deref(),
        Ok("IJPay")
    );
}

#[test]
fn wechatpy_fixture_decrypts_to_the_documented_fields() {
    let key = SecretString::from(WECHATPY_KEY);
    assert_eq!(&refund_key(&key), b"63dfc0c1f53d9bc83a8fdc365b8141da");
    let outer = xml::decode(&wechatpy_notification(), "xml").expect("outer");
    let plain = decrypt_req_info(&outer["req_info"], &key).expect("decrypts");
    let fields = xml::decode(plain.as_bytes(), "root").expect("root");
    for (k, v) in [
        ("out_refund_no", "1234"),
        ("out_trade_no", WECHATPY_TRADE),
        ("transaction_id", "4200000483202001042069747825"),
        ("refund_id", "50300103182020010413419046597"),
        ("refund_fee", "1"),
        ("total_fee", "1"),
        ("refund_status", "SUCCESS"),
        ("success_time", "2020-01-04 18:34:24"),
        ("refund_account", "REFUND_SOURCE_RECHARGE_FUNDS"),
        ("refund_request_source", "API"),
    ] {
        assert_eq!(fields.get(k).map(String::as_str), Some(v), "{k}");
    }
}

#[tokio::test]
async fn wechatpy_fixture_verifies_into_a_succeeded_refund_event() {
    let orders = refunds(WECHATPY_TRADE, "1234", 1);
    let event = verify(&wechatpy_provider(), &wechatpy_notification(), &orders)
        .await
        .expect("verified");
    assert_eq!(
        event,
        ProviderEvent::Refund(RefundEvent {
            out_trade_no: WECHATPY_TRADE.into(),
            out_refund_no: "1234".into(),
            provider_refund_no: Some("50300103182020010413419046597".into()),
            amount: Fen::new(1),
            status: RefundStatus::Succeeded,
            succeeded_at: Some(
                chrono::DateTime::parse_from_rfc3339("2020-01-04T10:34:24Z")
                    .expect("time")
                    .with_timezone(&chrono::Utc)
            ),
            event_id: "50300103182020010413419046597:SUCCESS".into(),
        })
    );
    assert_eq!(
        orders.asked.lock().expect("lock").as_slice(),
        [(WECHATPY_TRADE.to_owned(), "1234".to_owned())]
    );
}

#[tokio::test]
async fn a_wrong_api_key_is_a_bad_signature_and_looks_nothing_up() {
    let orders = refunds(WECHATPY_TRADE, "1234", 1);
    let p = provider(
        WECHATPY_APPID,
        WECHATPY_MCH,
        "OF4Ne3znh8KqL0V4NqmALQa0uXMYKcEj",
    );
    assert_eq!(
        verify(&p, &wechatpy_notification(), &orders).await,
        Err(NotificationRejection::BadSignature)
    );
    assert!(orders.asked.lock().expect("lock").is_empty());
}

#[test]
fn padding_and_length_errors_are_refused() {
    let key = SecretString::from(TEST_KEY);
    // Bad padding bytes: last byte 0, 17, and inconsistent padding.
    let mut zero = b"0123456789abcdef".to_vec();
    zero.extend_from_slice(&[0u8; 16]);
    let mut seventeen = vec![b'x'; 16];
    seventeen.extend_from_slice(&[17u8; 16]);
    let mut inconsistent = b"0123456789ab".to_vec();
    inconsistent.extend_from_slice(&[4, 4, 3, 4]);
    for bad in [zero, seventeen, inconsistent] {
        assert_eq!(
            decrypt_req_info(&encrypt_raw(&bad, TEST_KEY), &key),
            Err(DecryptError::Padding)
        );
    }
    // wechatpy pads to 32-byte blocks (§F.15): 17..=32 bytes of padding are not PKCS#7/16.
    // 36 bytes of plaintext get 28 bytes of 32-block padding (16-block padding would be 12).
    let plain = format!("<root><a>1</a></root>{}", "x".repeat(15));
    assert_eq!(plain.len(), 36);
    let padded = pkcs7(&plain, 32);
    assert_eq!(padded.last().copied(), Some(28));
    assert_eq!(
        decrypt_req_info(&encrypt_raw(&padded, TEST_KEY), &key),
        Err(DecryptError::Padding)
    );
    assert_eq!(
        decrypt_req_info("not base64!", &key),
        Err(DecryptError::Base64)
    );
    assert_eq!(
        decrypt_req_info(&STANDARD.encode([1u8; 15]), &key),
        Err(DecryptError::Length)
    );
    assert_eq!(decrypt_req_info("", &key), Err(DecryptError::Length));
    let mut not_utf8 = vec![0xffu8; 15];
    not_utf8.push(1);
    assert_eq!(
        decrypt_req_info(&encrypt_raw(&not_utf8, TEST_KEY), &key),
        Err(DecryptError::NotUtf8)
    );
}

#[tokio::test]
async fn checks_run_in_order() {
    let p = provider(TEST_APPID, TEST_MCH, TEST_KEY);
    let orders = refunds("ORDER0001", "R-1", 990);
    let good_info = encrypt_raw(&pkcs7(&inner("SUCCESS", "990", ""), 16), TEST_KEY);

    // return_code FAIL, before anything else
    let fail = b"<xml><return_code>FAIL</return_code><return_msg>x</return_msg></xml>";
    assert!(matches!(
        verify(&p, fail, &orders).await,
        Err(NotificationRejection::ReportedFailure(_))
    ));
    // appid, then mch_id
    assert_eq!(
        verify(&p, &outer("wx-other", TEST_MCH, &good_info), &orders).await,
        Err(NotificationRejection::Mismatch { field: "appid" })
    );
    assert_eq!(
        verify(&p, &outer(TEST_APPID, "1900000108", &good_info), &orders).await,
        Err(NotificationRejection::Mismatch { field: "mch_id" })
    );
    // undecodable outer XML, missing req_info
    assert!(matches!(
        verify(&p, b"<!DOCTYPE x><xml/>", &orders).await,
        Err(NotificationRejection::Undecodable(_))
    ));
    let no_info = format!(
        "<xml><return_code>SUCCESS</return_code><appid>{TEST_APPID}</appid><mch_id>{TEST_MCH}</mch_id></xml>"
    );
    assert!(matches!(
        verify(&p, no_info.as_bytes(), &orders).await,
        Err(NotificationRejection::Undecodable(_))
    ));
    // decrypted but not a <root> document: still not authentic
    let not_root = encrypt_raw(&pkcs7("<xml><a>1</a></xml>", 16), TEST_KEY);
    assert_eq!(
        verify(&p, &outer(TEST_APPID, TEST_MCH, &not_root), &orders).await,
        Err(NotificationRejection::BadSignature)
    );
    assert!(orders.asked.lock().expect("lock").is_empty());

    // unknown refund, then a different amount
    let unknown = refunds("ORDER0001", "R-2", 990);
    assert_eq!(
        verify(&p, &test_notification("SUCCESS", "990", ""), &unknown).await,
        Err(NotificationRejection::Unknown("refund"))
    );
    assert_eq!(
        verify(&p, &test_notification("SUCCESS", "991", ""), &orders).await,
        Err(NotificationRejection::Mismatch {
            field: "refund_fee"
        })
    );
    // a PROCESSING or unknown status is not a result
    for status in ["PROCESSING", "WHATEVER"] {
        assert!(
            matches!(
                verify(&p, &test_notification(status, "990", ""), &orders).await,
                Err(NotificationRejection::Unsupported(_))
            ),
            "{status}"
        );
    }
}

#[tokio::test]
async fn closed_and_abnormal_refunds_map_to_failed_and_abnormal() {
    let p = provider(TEST_APPID, TEST_MCH, TEST_KEY);
    let orders = refunds("ORDER0001", "R-1", 990);
    for (wire, status) in [
        ("REFUNDCLOSE", RefundStatus::Failed),
        ("CHANGE", RefundStatus::Abnormal),
    ] {
        let event = verify(&p, &test_notification(wire, "990", ""), &orders)
            .await
            .expect("verified");
        let ProviderEvent::Refund(event) = event else {
            panic!("not a refund event: {event:?}");
        };
        assert_eq!(event.status, status);
        assert_eq!(event.succeeded_at, None);
        assert_eq!(event.amount, Fen::new(990));
        assert_eq!(event.event_id, format!("50300009:{wire}"));
        assert_eq!(event.provider_refund_no.as_deref(), Some("50300009"));
    }
    // SUCCESS without a readable success_time still succeeds, without a time.
    let event = verify(
        &p,
        &test_notification("SUCCESS", "990", "<success_time>soon</success_time>"),
        &orders,
    )
    .await
    .expect("verified");
    assert!(matches!(
        event,
        ProviderEvent::Refund(RefundEvent {
            status: RefundStatus::Succeeded,
            succeeded_at: None,
            ..
        })
    ));
}

/// Fuzzing (issue 8): the refund notification's decryption and checks never panic on anything,
/// and a decryptable notification never reports another amount than the refund's.
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// One provider and one runtime for every case: building them is most of a case's cost.
    fn setup() -> &'static (WechatMiniprogram, tokio::runtime::Runtime) {
        static SETUP: std::sync::OnceLock<(WechatMiniprogram, tokio::runtime::Runtime)> =
            std::sync::OnceLock::new();
        SETUP.get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            (provider(TEST_APPID, TEST_MCH, TEST_KEY), runtime)
        })
    }

    proptest! {
        #[test]
        fn decrypting_any_text_never_panics(text in "\\PC{0,200}") {
            let _ = decrypt_req_info(&text, &SecretString::from(TEST_KEY));
        }

        #[test]
        fn any_encrypted_block_never_panics_the_checks(
            plain in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            // Whole blocks of anything, encrypted under the right key: bad padding, bad UTF-8
            // and bad XML all land here.
            let mut padded = plain;
            padded.resize(padded.len().div_ceil(16).max(1) * 16, 0);
            let body = outer(TEST_APPID, TEST_MCH, &encrypt_raw(&padded, TEST_KEY));
            let (p, runtime) = setup();
            let verdict = runtime.block_on(verify(p, &body, &refunds("ORDER0001", "R-1", 1990)));
            prop_assert!(verdict.is_err());
        }

        #[test]
        fn a_decryptable_report_never_carries_another_amount(
            status in prop::sample::select(&["SUCCESS", "REFUNDCLOSE", "CHANGE", "PROCESSING", "", "x"][..]),
            refund_fee in "[0-9-]{0,12}",
            extra in "\\PC{0,30}",
        ) {
            let body = test_notification(status, &refund_fee, &extra);
            let (p, runtime) = setup();
            let verdict = runtime.block_on(verify(p, &body, &refunds("ORDER0001", "R-1", 1990)));
            if let Ok(ProviderEvent::Refund(r)) = verdict {
                prop_assert_eq!(r.amount, Fen::new(1990));
                prop_assert_eq!(r.out_refund_no.as_str(), "R-1");
            }
        }
    }
}
