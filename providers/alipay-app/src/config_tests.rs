//! Every bad field is reported, with a message that says what to do and never shows a key.

use std::time::Duration;

use super::*;
use crate::test_support::{ctx, fixture, sandbox_key, table};

fn refused(overrides: &[(&str, &str)]) -> Vec<FieldError> {
    parse(&table(overrides), &ctx(Duration::from_secs(1))).expect_err("should be refused")
}

fn fields(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}

fn message<'a>(errors: &'a [FieldError], field: &str) -> &'a str {
    errors
        .iter()
        .find(|e| e.field == field)
        .map(|e| e.message.as_str())
        .unwrap_or_else(|| panic!("no error for {field}: {errors:?}"))
}

#[test]
fn a_valid_table_parses_with_defaults() {
    let config = parse(&table(&[]), &ctx(Duration::from_secs(1))).expect("valid");
    assert_eq!(config.app_id, "2021001100600001");
    assert_eq!(config.seller_id, "2088000000000001");
    assert_eq!(config.gateway_url, DEFAULT_GATEWAY_URL);
    assert!(config.ca_certs.is_empty());
    let debug = format!("{config:?}");
    assert!(debug.contains("[REDACTED]"), "{debug}");
    assert!(!debug.contains("MII"), "{debug}");
}

#[test]
fn every_missing_required_field_is_listed() {
    let mut t = toml::Table::new();
    t.insert(
        "gateway_url".into(),
        "https://openapi-sandbox.dl.alipaydev.com/gateway.do".into(),
    );
    let errors = parse(&t, &ctx(Duration::from_secs(1))).expect_err("refused");
    assert_eq!(
        fields(&errors),
        ["app_id", "private_key", "alipay_public_key", "seller_id"]
    );
    // alipay_public_key's says what else it can be (certificate mode).
    assert!(errors.iter().all(|e| e.message.starts_with("required")));
}

#[test]
fn every_bad_field_is_listed_at_once() {
    let errors = refused(&[
        ("app_id", "wx123"),
        (
            "private_key",
            "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2",
        ),
        (
            "alipay_public_key",
            &fixture("vectors/app_private_pkcs1.pem"),
        ),
        ("seller_id", "2088123"),
        ("gateway_url", "ftp://openapi.alipay.com/gateway.do"),
        ("sign_type", "RSA"),
        ("ca_file", "no/such/file.pem"),
        ("notify_url", "https://x"),
    ]);
    let mut listed = fields(&errors);
    listed.sort_unstable();
    assert_eq!(
        listed,
        [
            "alipay_public_key",
            "app_id",
            "ca_file",
            "gateway_url",
            "notify_url",
            "private_key",
            "seller_id",
            "sign_type"
        ]
    );
    assert_eq!(
        message(&errors, "private_key"),
        "not a PKCS#1 or PKCS#8 RSA private key (got 64 bytes of base64 that do not parse as either)"
    );
    assert_eq!(
        message(&errors, "alipay_public_key"),
        "this is an RSA private key; expected Alipay's public key (SPKI)"
    );
    assert!(message(&errors, "seller_id").contains("2088 followed by 12 digits"));
    assert!(message(&errors, "sign_type").contains("RSA2"));
    assert!(message(&errors, "notify_url").starts_with("unknown key"));
    assert!(message(&errors, "app_id").contains("digits"));
}

#[test]
fn the_apps_own_public_key_as_alipay_public_key_is_detected() {
    for public in [
        fixture("vectors/app_public.pem"),
        fixture("vectors/app_public.pem")
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>(),
    ] {
        let errors = refused(&[("alipay_public_key", &public)]);
        assert_eq!(fields(&errors), ["alipay_public_key"]);
        assert_eq!(
            errors[0].message,
            "this is the app's own public key; use the Alipay public key from the Alipay console"
        );
    }
    // The same check holds whichever format the private key is in.
    let errors = refused(&[
        ("private_key", &fixture("vectors/app_private_pkcs1.pem")),
        ("alipay_public_key", &fixture("vectors/app_public.pem")),
    ]);
    assert_eq!(fields(&errors), ["alipay_public_key"]);
}

#[test]
fn keys_swapped_between_the_two_fields_are_both_reported() {
    let errors = refused(&[
        ("private_key", &sandbox_key("alipay_sandbox_public.pem")),
        (
            "alipay_public_key",
            &fixture("vectors/app_private_pkcs8.pem"),
        ),
    ]);
    assert_eq!(
        message(&errors, "private_key"),
        "this is a public key; expected the app private key (PKCS#1 or PKCS#8)"
    );
    assert_eq!(
        message(&errors, "alipay_public_key"),
        "this is an RSA private key; expected Alipay's public key (SPKI)"
    );
}

#[test]
fn wrong_types_and_empty_values_are_reported() {
    let mut t = table(&[]);
    t.insert("app_id".into(), toml::Value::Integer(2021001100600001));
    t.insert("seller_id".into(), "".into());
    let errors = parse(&t, &ctx(Duration::from_secs(1))).expect_err("refused");
    assert_eq!(
        message(&errors, "app_id"),
        "must be a string, found an integer"
    );
    assert_eq!(message(&errors, "seller_id"), "must not be empty");
}

#[test]
fn no_message_contains_key_material() {
    let private = fixture("vectors/app_private_pkcs8.pem");
    let errors = refused(&[
        ("alipay_public_key", &private),
        ("private_key", &private.replace('A', "B")),
    ]);
    let body: String = private
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for e in &errors {
        for window in body.as_bytes().windows(10).step_by(5) {
            let window = std::str::from_utf8(window).expect("ascii");
            assert!(!e.message.contains(window), "{} leaks key text", e.field);
        }
    }
}

#[test]
fn sign_type_rsa2_is_accepted_and_ca_file_is_relative_to_base_dir() {
    assert!(
        parse(
            &table(&[("sign_type", "RSA2")]),
            &ctx(Duration::from_secs(1))
        )
        .is_ok()
    );
    let errors = refused(&[("ca_file", "missing-ca.pem")]);
    assert!(message(&errors, "ca_file").starts_with("cannot read file ./missing-ca.pem"));
    let errors = refused(&[("ca_file", "Cargo.toml")]);
    assert!(message(&errors, "ca_file").contains("holds no PEM certificate"));
}

#[test]
fn plain_http_gateway_is_only_for_loopback_hosts() {
    let errors = refused(&[("gateway_url", "http://openapi.alipay.com/gateway.do")]);
    assert!(
        message(&errors, "gateway_url").contains("https"),
        "{errors:?}"
    );
    for ok in [
        "http://127.0.0.1:8080/sandbox/alipay_app/gateway.do",
        "http://localhost/gateway.do",
    ] {
        assert!(
            parse(&table(&[("gateway_url", ok)]), &ctx(Duration::from_secs(1))).is_ok(),
            "{ok}"
        );
    }
}

/// Fuzzing (issue 8): any provider section, however wrong, is validated without a panic.
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = toml::Value> {
        prop_oneof![
            any::<bool>().prop_map(toml::Value::Boolean),
            any::<i64>().prop_map(toml::Value::Integer),
            "\\PC{0,40}".prop_map(toml::Value::String),
            prop::sample::select(
                &[
                    "-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----",
                    "MIIBIjANBgkq",
                    "https://openapi.alipay.com/gateway.do",
                    "2021001100600001",
                    "2088000000000001",
                    "RSA2",
                    "key.pem"
                ][..]
            )
            .prop_map(|s| toml::Value::String(s.to_owned())),
        ]
    }

    proptest! {
        #[test]
        fn any_section_is_validated_without_a_panic(
            overrides in prop::collection::btree_map(
                prop::sample::select(&[
                    "app_id", "private_key", "alipay_public_key", "seller_id", "gateway_url",
                    "sign_type", "enabled", "other",
                ][..]).prop_map(str::to_owned),
                value(),
                0..8,
            ),
        ) {
            // A valid section with some keys replaced by anything.
            let mut t = table(&[]);
            for (k, v) in overrides {
                t.insert(k, v);
            }
            let _ = parse(&t, &ctx(Duration::from_secs(1)));
        }
    }
}

mod certificate_mode {
    use super::*;

    const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sandbox-keys");
    const APP_KEY: &str = include_str!("../../../fixtures/vectors/app_private_pkcs8.pem");

    fn table(extra: &[(&str, &str)]) -> toml::Table {
        let mut t = toml::Table::new();
        for (k, v) in [
            ("app_id", "2021000000000001"),
            ("private_key", APP_KEY),
            ("seller_id", "2088000000000001"),
            ("app_cert", "app_cert.crt"),
            ("alipay_public_cert", "alipay_cert.crt"),
            ("alipay_root_cert", "alipay_root_cert.crt"),
        ] {
            t.insert(k.into(), v.into());
        }
        for (k, v) in extra {
            t.insert((*k).into(), (*v).into());
        }
        t
    }

    fn context() -> BuildContext {
        BuildContext {
            base_dir: std::path::PathBuf::from(KEYS),
            http_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn three_certificates_replace_the_alipay_public_key_and_requests_carry_their_numbers() {
        let config = parse(&table(&[]), &context()).unwrap();
        let mode = config.cert_mode.as_ref().unwrap();
        let app = std::fs::read_to_string(format!("{KEYS}/app_cert.crt")).unwrap();
        assert_eq!(
            mode.app_cert_sn,
            crate::cert_sn::first_cert_sn(&app).unwrap()
        );
        let public = std::fs::read_to_string(format!("{KEYS}/alipay_sandbox_public.pem")).unwrap();
        assert_eq!(
            config.alipay_public_key,
            crate::keys::AlipayPublicKey::parse(&public).unwrap()
        );
        let params = crate::sign::signed_request(
            &config,
            "alipay.trade.query",
            "2026-12-06 18:00:00".into(),
            [],
        )
        .unwrap();
        assert_eq!(params["app_cert_sn"], mode.app_cert_sn);
        assert_eq!(params["alipay_root_cert_sn"], mode.root_cert_sn);
        // Both are signed: the signature covers them.
        let content =
            crate::sign::request_sign_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert!(content.contains(&format!("app_cert_sn={}", mode.app_cert_sn)));
        // Inline PEM works as well as a file.
        let inline = std::fs::read_to_string(format!("{KEYS}/alipay_root_cert.crt")).unwrap();
        parse(&table(&[("alipay_root_cert", inline.as_str())]), &context()).unwrap();
    }

    #[test]
    fn the_modes_are_exclusive_and_every_certificate_is_needed() {
        let public = std::fs::read_to_string(format!("{KEYS}/alipay_sandbox_public.pem")).unwrap();
        let errors = parse(
            &table(&[("alipay_public_key", public.as_str())]),
            &context(),
        )
        .expect_err("both modes");
        assert_eq!(fields(&errors), ["alipay_public_key"]);
        assert!(errors[0].message.contains("not both"), "{errors:?}");

        let mut t = table(&[]);
        t.remove("alipay_root_cert");
        let errors = parse(&t, &context()).expect_err("two of three");
        assert_eq!(fields(&errors), ["alipay_root_cert"]);

        let errors = parse(&table(&[("app_cert", "missing.crt")]), &context()).expect_err("file");
        assert_eq!(fields(&errors), ["app_cert"]);
        assert!(errors[0].message.contains("cannot read file"), "{errors:?}");

        // An Alipay certificate from outside the root: refused at load, by name.
        let rogue = format!("{KEYS}/alipay_rogue_cert.crt");
        let errors = parse(
            &table(&[("alipay_public_cert", rogue.as_str())]),
            &context(),
        )
        .expect_err("rogue");
        assert_eq!(fields(&errors), ["alipay_public_cert"]);
    }
}

#[test]
fn third_party_app_settings_come_in_pairs_and_are_checked() {
    let base = [
        ("app_id", "2021000000000001"),
        (
            "private_key",
            include_str!("../../../fixtures/vectors/app_private_pkcs8.pem"),
        ),
        (
            "alipay_public_key",
            include_str!("../sandbox-keys/alipay_sandbox_public.pem"),
        ),
        ("seller_id", "2088000000000001"),
    ];
    let table = |extra: &[(&str, &str)]| {
        let mut t = toml::Table::new();
        for (k, v) in base.iter().chain(extra) {
            t.insert((*k).into(), (*v).into());
        }
        t
    };
    let ok = parse(
        &table(&[
            ("app_auth_token", "202612BBtoken"),
            ("auth_app_id", "2021000000000777"),
        ]),
        &ctx(Duration::from_secs(1)),
    )
    .unwrap();
    assert_eq!(ok.isv.as_ref().unwrap().auth_app_id, "2021000000000777");
    assert!(
        !format!("{ok:?}").contains("202612BBtoken"),
        "the token is never shown"
    );
    for (extra, field) in [
        (&[("app_auth_token", "202612BBtoken")][..], "auth_app_id"),
        (&[("auth_app_id", "2021000000000777")][..], "app_auth_token"),
        (
            &[
                ("app_auth_token", "has spaces"),
                ("auth_app_id", "2021000000000777"),
            ][..],
            "app_auth_token",
        ),
        (
            &[
                ("app_auth_token", "202612BBtoken"),
                ("auth_app_id", "wx123"),
            ][..],
            "auth_app_id",
        ),
    ] {
        let errors = parse(&table(extra), &ctx(Duration::from_secs(1))).expect_err("refused");
        assert_eq!(fields(&errors), [field], "{extra:?}");
    }
}
