//! Notification checks and their order. Notifications are signed here with the sandbox key
//! standing in for Alipay's, over a string joined by hand (`test_support::sign_notification`).

use std::time::Duration;

use paybridge_core::provider::{IncomingNotification, NotifyChannel, PaymentProvider};

use super::*;
use crate::test_support::{
    APP_ID, FakeOrders, SELLER_ID, alipay_signer, form_body, provider, provider_with,
    sign_notification, utc,
};

const ORDER: &str = "PB20240101001";
const TRADE_NO: &str = "2024010122001400000000000001";
const NOTIFY_ID: &str = "2024010100222120000000000000000001";

fn base_fields() -> Vec<(&'static str, String)> {
    [
        ("notify_time", "2024-01-01 12:00:05"),
        ("notify_type", "trade_status_sync"),
        ("notify_id", NOTIFY_ID),
        ("app_id", APP_ID),
        ("auth_app_id", APP_ID),
        ("charset", "utf-8"),
        ("version", "1.0"),
        ("sign_type", "RSA2"),
        ("trade_no", TRADE_NO),
        ("out_trade_no", ORDER),
        ("buyer_id", "2088102534368455"),
        ("seller_id", SELLER_ID),
        ("trade_status", "TRADE_SUCCESS"),
        ("total_amount", "19.90"),
        ("receipt_amount", "19.90"),
        ("subject", "Flat white"),
        ("gmt_create", "2024-01-01 11:59:50"),
        ("gmt_payment", "2024-01-01 12:00:00"),
        (
            "fund_bill_list",
            r#"[{"amount":"19.90","fundChannel":"ALIPAYACCOUNT"}]"#,
        ),
    ]
    .iter()
    .map(|(k, v)| (*k, (*v).to_owned()))
    .collect()
}

/// `base_fields` with `changes` applied (an empty value removes the field), signed.
fn signed(changes: &[(&'static str, &str)]) -> Vec<u8> {
    let mut fields = base_fields();
    for (k, v) in changes {
        fields.retain(|(key, _)| key != k);
        if !v.is_empty() {
            fields.push((k, (*v).to_owned()));
        }
    }
    let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let sign = sign_notification(&refs, &alipay_signer());
    let mut all = refs.clone();
    all.push(("sign", &sign));
    form_body(&all)
}

fn orders() -> FakeOrders {
    FakeOrders::new(&[(ORDER, 1990)], &[(ORDER, "RF001", 500)])
}

async fn verify(body: &[u8], orders: &FakeOrders) -> Result<ProviderEvent, NotificationRejection> {
    let notification = IncomingNotification {
        channel: NotifyChannel::Payment,
        content_type: Some("application/x-www-form-urlencoded; charset=utf-8"),
        body,
        headers: &[],
    };
    provider().verify_notification(&notification, orders).await
}

fn payment_event() -> ProviderEvent {
    ProviderEvent::Payment(PaymentEvent {
        out_trade_no: ORDER.to_owned(),
        provider_trade_no: TRADE_NO.to_owned(),
        amount: Fen::new(1990),
        paid_at: utc("2024-01-01T04:00:00Z"),
        event_id: TRADE_NO.to_owned(),
    })
}

#[tokio::test]
async fn trade_success_is_a_payment_with_beijing_time_converted() {
    let orders = orders();
    assert_eq!(verify(&signed(&[]), &orders).await, Ok(payment_event()));
    assert_eq!(orders.lookups(), [format!("order {ORDER}")]);
}

#[tokio::test]
async fn trade_finished_is_the_same_payment_event() {
    let event = verify(&signed(&[("trade_status", "TRADE_FINISHED")]), &orders()).await;
    assert_eq!(event, Ok(payment_event()));
    // Also when the refund window closes on a partly refunded trade: the cumulative refund_fee
    // does not make it a refund report.
    let late = signed(&[
        ("trade_status", "TRADE_FINISHED"),
        ("refund_fee", "5.00"),
        ("out_biz_no", "RF001"),
    ]);
    assert_eq!(verify(&late, &orders()).await, Ok(payment_event()));
}

#[tokio::test]
async fn a_zero_refund_fee_is_not_a_refund_report() {
    let body = signed(&[("refund_fee", "0.00")]);
    assert_eq!(verify(&body, &orders()).await, Ok(payment_event()));
}

#[tokio::test]
async fn a_tampered_notification_is_refused_before_any_lookup() {
    let orders = orders();
    let body = String::from_utf8(signed(&[])).expect("ascii");
    for tampered in [
        body.replace("total_amount=19.90", "total_amount=0.01"),
        body.replace("Flat+white", "Flat+White"),
        body.replace("&sign=", "&sign=A"),
        body.replace("&sign=", "&x=1&sign="),
        body.split("&sign=").next().expect("prefix").to_owned(),
    ] {
        assert_eq!(
            verify(tampered.as_bytes(), &orders).await,
            Err(NotificationRejection::BadSignature)
        );
    }
    assert!(orders.lookups().is_empty());
}

#[tokio::test]
async fn a_signature_over_sign_type_too_rsa_check_v2_is_refused() {
    let mut fields = base_fields();
    fields.retain(|(k, _)| *k != "sign_type");
    let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut with_type = refs.clone();
    with_type.push(("sign_type", "RSA2"));
    // Signed the V2 way: sign_type inside the string.
    let mut sorted = with_type.clone();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let content: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let sign = alipay_signer()
        .sign_rsa2(content.join("&").as_bytes())
        .expect("sign");
    with_type.push(("sign", &sign));
    assert_eq!(
        verify(&form_body(&with_type), &orders()).await,
        Err(NotificationRejection::BadSignature)
    );
    // And a legacy RSA sign_type is not verified at all.
    assert_eq!(
        verify(&signed(&[("sign_type", "RSA")]), &orders()).await,
        Err(NotificationRejection::BadSignature)
    );
}

#[tokio::test]
async fn business_checks_run_in_order_after_the_signature() {
    let orders = orders();
    assert_eq!(
        verify(
            &signed(&[
                ("app_id", "2021009999999999"),
                ("seller_id", "2088999999999999")
            ]),
            &orders
        )
        .await,
        Err(NotificationRejection::Mismatch { field: "app_id" })
    );
    assert!(
        orders.lookups().is_empty(),
        "app_id is checked before the order lookup"
    );
    assert_eq!(
        verify(
            &signed(&[("out_trade_no", "NOPE000001"), ("total_amount", "1.00")]),
            &orders
        )
        .await,
        Err(NotificationRejection::Unknown("order"))
    );
    assert_eq!(
        verify(
            &signed(&[("total_amount", "19.91"), ("seller_id", "2088999999999999")]),
            &orders
        )
        .await,
        Err(NotificationRejection::Mismatch {
            field: "total_amount"
        })
    );
    assert_eq!(
        verify(&signed(&[("seller_id", "2088999999999999")]), &orders).await,
        Err(NotificationRejection::Mismatch { field: "seller_id" })
    );
    assert_eq!(
        verify(&signed(&[("seller_id", "")]), &orders).await,
        Err(NotificationRejection::Mismatch { field: "seller_id" })
    );
}

#[tokio::test]
async fn total_amount_is_compared_exactly_in_fen() {
    assert_eq!(
        verify(&signed(&[("total_amount", "19.9")]), &orders()).await,
        Ok(payment_event())
    );
    for bad in ["19.900", "19.89", "1990", "19.90 ", "", "-19.90"] {
        assert_eq!(
            verify(&signed(&[("total_amount", bad)]), &orders()).await,
            Err(NotificationRejection::Mismatch {
                field: "total_amount"
            }),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn a_charset_other_than_utf8_is_refused_clearly() {
    assert_eq!(
        verify(&signed(&[("charset", "gbk")]), &orders()).await,
        Err(NotificationRejection::Undecodable(
            "charset gbk is not supported; send charset=utf-8".to_owned()
        ))
    );
    assert_eq!(
        verify(&signed(&[("charset", "UTF-8")]), &orders()).await,
        Ok(payment_event())
    );
    let notification = IncomingNotification {
        channel: NotifyChannel::Payment,
        content_type: Some("application/x-www-form-urlencoded; charset=GBK"),
        body: &signed(&[("charset", "")]),
        headers: &[],
    };
    assert!(matches!(
        provider().verify_notification(&notification, &orders()).await,
        Err(NotificationRejection::Undecodable(m)) if m.contains("charset GBK")
    ));
}

#[tokio::test]
async fn trade_closed_without_refund_fields_is_a_close() {
    assert_eq!(
        verify(
            &signed(&[("trade_status", "TRADE_CLOSED"), ("gmt_payment", "")]),
            &orders()
        )
        .await,
        Ok(ProviderEvent::Closed {
            out_trade_no: ORDER.to_owned(),
            event_id: NOTIFY_ID.to_owned(),
        })
    );
}

fn refund_event(at: &str) -> ProviderEvent {
    ProviderEvent::Refund(RefundEvent {
        out_trade_no: ORDER.to_owned(),
        out_refund_no: "RF001".to_owned(),
        provider_refund_no: None,
        amount: Fen::new(500),
        status: RefundStatus::Succeeded,
        succeeded_at: Some(utc(at)),
        event_id: NOTIFY_ID.to_owned(),
    })
}

#[tokio::test]
async fn a_partial_refund_trade_success_is_a_refund_not_a_payment() {
    let orders = orders();
    let body = signed(&[
        ("refund_fee", "5.00"),
        ("gmt_refund", "2024-01-02 09:30:00.123"),
        ("out_biz_no", "RF001"),
    ]);
    assert_eq!(
        verify(&body, &orders).await,
        Ok(refund_event("2024-01-02T01:30:00.123Z"))
    );
    assert_eq!(
        orders.lookups(),
        [format!("order {ORDER}"), format!("refund {ORDER}/RF001")]
    );
}

#[tokio::test]
async fn a_full_refund_trade_closed_is_a_refund_not_a_close() {
    let body = signed(&[
        ("trade_status", "TRADE_CLOSED"),
        ("refund_fee", "19.90"),
        ("gmt_refund", "2024-01-02 09:30:00"),
        ("gmt_close", "2024-01-02 09:30:00"),
        ("out_biz_no", "RF001"),
    ]);
    assert_eq!(
        verify(&body, &orders()).await,
        Ok(refund_event("2024-01-02T01:30:00Z"))
    );
}

/// A refund paybridge did not make (the merchant console's, say) is not refused, which would only
/// have Alipay send it again for 25 hours: it is reported, for the server to flag the order.
#[tokio::test]
async fn a_refund_paybridge_did_not_make_is_reported_not_refused() {
    for (changes, out_refund_no) in [
        (
            vec![("refund_fee", "5.00"), ("out_biz_no", "RF999")],
            Some("RF999"),
        ),
        (vec![("refund_fee", "5.00")], None),
        (
            vec![
                ("gmt_refund", "2024-01-02 09:30:00"),
                ("out_biz_no", "RF999"),
            ],
            Some("RF999"),
        ),
    ] {
        let body = signed(&changes);
        let notify_id = form_urlencoded::parse(&body)
            .find(|(k, _)| k == "notify_id")
            .map(|(_, v)| v.into_owned())
            .expect("notify_id");
        assert_eq!(
            verify(&body, &orders()).await,
            Ok(ProviderEvent::RefundedOutside {
                out_trade_no: "PB20240101001".to_owned(),
                out_refund_no: out_refund_no.map(str::to_owned),
                event_id: notify_id,
            })
        );
    }
}

#[tokio::test]
async fn wait_buyer_pay_and_unknown_statuses_are_unsupported() {
    for status in ["WAIT_BUYER_PAY", "SOMETHING_NEW", ""] {
        assert!(matches!(
            verify(&signed(&[("trade_status", status)]), &orders()).await,
            Err(NotificationRejection::Unsupported(_))
        ));
    }
}

#[tokio::test]
async fn values_with_percent_and_plus_are_decoded_exactly_once() {
    // Signed over the once-decoded values: a literal %, a literal +, a space, and a
    // passback_params that Alipay echoes still URL-encoded.
    let body = signed(&[
        ("subject", "100% 纯棉 %20 a+b"),
        ("body", "50%off"),
        ("passback_params", "user%3D42%26note%3Da%2Bb"),
    ]);
    let text = String::from_utf8(body.clone()).expect("ascii");
    assert!(
        text.contains("subject=100%25+%E7%BA%AF%E6%A3%89+%2520+a%2Bb"),
        "{text}"
    );
    assert!(
        text.contains("passback_params=user%253D42%2526note%253Da%252Bb"),
        "{text}"
    );
    assert_eq!(verify(&body, &orders()).await, Ok(payment_event()));
    let decoded = decode_form(&body).expect("decodes");
    assert_eq!(decoded["subject"], "100% 纯棉 %20 a+b");
    assert_eq!(decoded["passback_params"], "user%3D42%26note%3Da%2Bb");
}

#[test]
fn form_decoding_is_strict_about_utf8_and_repeats() {
    assert_eq!(
        decode_form(b"a=%E4%BD&b=1"),
        Err(NotificationRejection::Undecodable(
            "a parameter is not valid UTF-8".to_owned()
        ))
    );
    assert!(
        matches!(decode_form(b"a=1&a=1"), Err(NotificationRejection::Undecodable(m)) if m.contains("given twice"))
    );
    assert!(decode_form(b"").is_err());
    assert!(decode_form(b"&&").is_err());
    assert!(decode_form(b"=x").is_err());
    let decoded = decode_form(b"k=a+b%2Bc%25&empty=&bare").expect("decodes");
    assert_eq!(decoded["k"], "a b+c%");
    assert_eq!(decoded["empty"], "");
    assert_eq!(decoded["bare"], "");
}

#[tokio::test]
async fn undecodable_bodies_are_undecodable() {
    for body in [&b""[..], b"\xff\xfe", b"a=%FF"] {
        assert!(matches!(
            verify(body, &orders()).await,
            Err(NotificationRejection::Undecodable(_))
        ));
    }
}

#[tokio::test]
async fn the_refund_channel_is_unsupported() {
    let notification = IncomingNotification {
        channel: NotifyChannel::Refund,
        content_type: None,
        body: &signed(&[]),
        headers: &[],
    };
    assert!(matches!(
        provider()
            .verify_notification(&notification, &orders())
            .await,
        Err(NotificationRejection::Unsupported(_))
    ));
}

#[tokio::test]
async fn the_published_d3_notification_verifies_end_to_end() {
    let mut params = crate::sign::tests::split_content(crate::sign::tests::D3_CONTENT);
    params.insert("sign".to_owned(), crate::sign::tests::D3_SIGN.to_owned());
    params.insert("sign_type".to_owned(), "RSA2".to_owned());
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let app = provider_with(
        &[
            ("app_id", "2019073166072302"),
            ("seller_id", "2088531891668739"),
            ("alipay_public_key", crate::sign::tests::D3_PUBLIC_KEY),
        ],
        Duration::from_secs(1),
    );
    let orders = FakeOrders::new(&[("20190815155618536-564-57", 10)], &[]);
    let notification = IncomingNotification {
        channel: NotifyChannel::Payment,
        content_type: Some("application/x-www-form-urlencoded"),
        body: &form_body(&pairs),
        headers: &[],
    };
    assert_eq!(
        app.verify_notification(&notification, &orders).await,
        Ok(ProviderEvent::Payment(PaymentEvent {
            out_trade_no: "20190815155618536-564-57".to_owned(),
            provider_trade_no: "2019081522001468450512505578".to_owned(),
            amount: Fen::new(10),
            paid_at: utc("2019-08-15T07:56:24Z"),
            event_id: "2019081522001468450512505578".to_owned(),
        }))
    );
}

#[test]
fn acknowledgements_are_exact() {
    let app = provider();
    let ok = app.acknowledgement(Ok(()));
    assert_eq!(ok.status, 200);
    assert_eq!(ok.content_type, "text/plain");
    assert_eq!(ok.body, b"success");
    assert_eq!(ok.body.len(), 7);
    let fail = app.acknowledgement(Err(&NotificationRejection::BadSignature));
    assert_eq!(
        (fail.status, fail.content_type, fail.body.as_slice()),
        (200, "text/plain", &b"fail"[..])
    );
}

/// Fuzzing (issue 8): the form decoder and the verifier never panic on anything, and re-signed
/// mutations of a genuine notification never pay another order or amount. `PROPTEST_CASES` sets
/// the number of cases.
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const TOKENS: &[&str] = &[
        "&",
        "=",
        "%",
        "%E4%B8%AD",
        "%FF",
        "%",
        "+",
        "sign=",
        "sign_type=RSA2",
        "sign_type=RSA",
        "charset=utf-8",
        "charset=gbk",
        "out_trade_no=PB20240101001",
        "total_amount=19.90",
        "total_amount=-1",
        "total_amount=1e3",
        "trade_status=TRADE_SUCCESS",
        "trade_status=TRADE_CLOSED",
        "refund_fee=5.00",
        "out_biz_no=RF001",
        "notify_id=x",
        "app_id=2021001100600001",
        "中文",
        "\u{0}",
        " ",
        "\n",
    ];

    fn formish() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(TOKENS), 0..48)
            .prop_map(|tokens| tokens.concat().into_bytes())
    }

    /// One provider and one runtime for every case: building them is most of a case's cost.
    fn check(body: &[u8]) -> Result<ProviderEvent, NotificationRejection> {
        static SETUP: std::sync::OnceLock<(crate::AlipayApp, tokio::runtime::Runtime)> =
            std::sync::OnceLock::new();
        let (p, runtime) = SETUP.get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            (provider(), runtime)
        });
        let notification = IncomingNotification {
            channel: NotifyChannel::Payment,
            content_type: Some("application/x-www-form-urlencoded; charset=utf-8"),
            body,
            headers: &[],
        };
        runtime.block_on(p.verify_notification(&notification, &orders()))
    }

    proptest! {
        #[test]
        fn the_form_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
            let _ = decode_form(&bytes);
        }

        #[test]
        fn noise_is_refused_without_a_panic(body in formish()) {
            let _ = decode_form(&body);
            prop_assert!(check(&body).is_err());
        }

        #[test]
        fn resigned_mutations_never_pay_another_order_or_amount(
            field in prop::sample::select(&[
                "total_amount", "out_trade_no", "app_id", "seller_id", "trade_status",
                "gmt_payment", "trade_no", "refund_fee", "out_biz_no", "gmt_refund", "charset",
            ][..]),
            value in "\\PC{0,24}",
        ) {
            let body = signed(&[(field, value.as_str())]);
            match check(&body) {
                Ok(ProviderEvent::Payment(p)) => {
                    prop_assert_eq!(p.out_trade_no.as_str(), ORDER);
                    prop_assert_eq!(p.amount, Fen::new(1990));
                }
                Ok(ProviderEvent::Refund(r)) => {
                    prop_assert_eq!(r.out_trade_no.as_str(), ORDER);
                    prop_assert_eq!(r.amount, Fen::new(500));
                }
                _ => {}
            }
        }
    }
}
