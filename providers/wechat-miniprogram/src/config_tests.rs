use std::time::Duration;

use super::*;

const KEY: &str = "192006250b4c09247ec02edce69f6a2d";

fn ctx(dir: &Path) -> BuildContext {
    BuildContext {
        base_dir: dir.to_path_buf(),
        http_timeout: Duration::from_secs(5),
    }
}

fn table(text: &str) -> toml::Table {
    text.parse().expect("test TOML parses")
}

fn errors(text: &str) -> Vec<FieldError> {
    match parse(&table(text), &ctx(Path::new("."))) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e,
    }
}

fn has(errors: &[FieldError], field: &str, needle: &str) -> bool {
    errors
        .iter()
        .any(|e| e.field == field && e.message.contains(needle))
}

/// A fresh temporary folder for file-path tests.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("paybridge-wechat-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn minimal_config_gets_the_defaults() {
    let text =
        format!("appid = \"wxd930ea5d5a258f4f\"\nmch_id = \"10000100\"\napi_key = \"{KEY}\"\n");
    let config = parse(&table(&text), &ctx(Path::new("."))).expect("valid");
    assert_eq!(config.appid, "wxd930ea5d5a258f4f");
    assert_eq!(config.mch_id, "10000100");
    assert_eq!(config.api_key.expose_secret(), KEY);
    assert_eq!(config.sign_type, SignType::HmacSha256);
    assert_eq!(config.api_base, "https://api.mch.weixin.qq.com");
    assert_eq!(config.login_base, "https://api.weixin.qq.com");
    assert_eq!(config.spbill_create_ip, "127.0.0.1");
    assert!(config.app_secret.is_none());
    assert!(config.ca_certs.is_empty());
}

#[test]
fn every_bad_field_is_reported_at_once() {
    let errs = errors(
        r#"
        api_key = "short-secret-value"
        app_secret = ""
        sign_type = "SHA1"
        api_base = "ftp://example.com"
        login_base = "not a url"
        spbill_create_ip = "localhost"
        client_cert = "missing-cert.pem"
        colour = "blue"
        "#,
    );
    assert!(has(&errs, "appid", "required"), "{errs:?}");
    assert!(has(&errs, "mch_id", "required"), "{errs:?}");
    assert!(has(&errs, "api_key", "exactly 32 characters"), "{errs:?}");
    assert!(has(&errs, "api_key", "found 18"), "{errs:?}");
    assert!(has(&errs, "app_secret", "must not be empty"), "{errs:?}");
    assert!(has(&errs, "sign_type", "\"SHA1\""), "{errs:?}");
    assert!(has(&errs, "api_base", "http(s) URL"), "{errs:?}");
    assert!(has(&errs, "login_base", "http(s) URL"), "{errs:?}");
    assert!(has(&errs, "spbill_create_ip", "IPv4 or IPv6"), "{errs:?}");
    assert!(has(&errs, "client_cert", "cannot read file"), "{errs:?}");
    assert!(
        has(&errs, "client_key", "required together with client_cert"),
        "{errs:?}"
    );
    assert!(has(&errs, "colour", "unknown key"), "{errs:?}");
    assert_eq!(errs.len(), 11, "{errs:?}");
}

#[test]
fn wrong_types_say_what_was_found() {
    let errs = errors(&format!(
        "appid = 42\nmch_id = true\napi_key = \"{KEY}\"\nsign_type = [\"MD5\"]\n"
    ));
    assert!(
        has(&errs, "appid", "must be a string, found an integer"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "mch_id", "must be a string, found a boolean"),
        "{errs:?}"
    );
    assert!(has(&errs, "sign_type", "found an array"), "{errs:?}");
}

#[test]
fn secrets_never_appear_in_errors_or_debug() {
    let secret = "SUPERSECRETVALUE-33-characters-xx";
    let errs = errors(&format!(
        "appid = \"wx1\"\nmch_id = \"1\"\napi_key = \"{secret}\"\nenabled_x = 1\n"
    ));
    assert!(has(&errs, "api_key", "found 33"), "{errs:?}");
    assert!(!format!("{errs:?}").contains("SUPERSECRET"), "{errs:?}");

    let text = format!(
        "appid = \"wx1\"\nmch_id = \"1\"\napi_key = \"{KEY}\"\napp_secret = \"appsecret-value\"\n"
    );
    let config = parse(&table(&text), &ctx(Path::new("."))).expect("valid");
    let debug = format!("{config:?}");
    assert!(
        !debug.contains(KEY) && !debug.contains("appsecret-value"),
        "{debug}"
    );
}

#[test]
fn appid_with_spaces_or_too_long_is_refused() {
    let errs = errors(&format!(
        "appid = \"wx 1\"\nmch_id = \"{}\"\napi_key = \"{KEY}\"\n",
        "9".repeat(33)
    ));
    assert!(has(&errs, "appid", "visible ASCII"), "{errs:?}");
    assert!(has(&errs, "mch_id", "1-32"), "{errs:?}");
}

#[test]
fn sign_type_md5_and_trailing_slash_bases() {
    let text = format!(
        "appid = \"wx1\"\nmch_id = \"1\"\napi_key = \"{KEY}\"\nsign_type = \"MD5\"\n\
         api_base = \"http://127.0.0.1:8080/sandbox/wechat_miniprogram/\"\nspbill_create_ip = \"::1\"\n"
    );
    let config = parse(&table(&text), &ctx(Path::new("."))).expect("valid");
    assert_eq!(config.sign_type, SignType::Md5);
    assert_eq!(
        config.api_base,
        "http://127.0.0.1:8080/sandbox/wechat_miniprogram"
    );
    assert_eq!(config.spbill_create_ip, "::1");
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/certs")
        .join(name)
}

/// A temporary folder with `certs/` holding the fixture certificates.
fn cert_dir(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::create_dir_all(dir.join("certs")).expect("mkdir");
    for file in [
        "client_cert.pem",
        "client_key.pem",
        "other_key.pem",
        "client_legacy.p12",
        "client_modern.p12",
        "client_md5des.p12",
    ] {
        std::fs::copy(fixture(file), dir.join("certs").join(file)).expect("copy fixture");
    }
    std::fs::write(dir.join("certs/not-a-ca.pem"), "hello").expect("write");
    dir
}

const MCH_OF_FIXTURES: &str = "1900000109";

fn with_files(files: &str) -> String {
    format!("appid = \"wx1\"\nmch_id = \"{MCH_OF_FIXTURES}\"\napi_key = \"{KEY}\"\n{files}")
}

#[test]
fn relative_files_resolve_against_base_dir() {
    let dir = cert_dir("files");
    let text = with_files(
        "client_cert = \"certs/client_cert.pem\"\nclient_key = \"certs/client_key.pem\"\n",
    );
    let config = parse(&table(&text), &ctx(&dir)).expect("valid");
    let identity = config.client_identity.as_ref().expect("identity");
    assert_eq!(identity.source(), crate::certs::IdentitySource::PemPair);
    assert!(config.client_identity().is_ok());
    // The same relative paths from another folder do not exist.
    let errs = match parse(&table(&text), &ctx(Path::new("/nonexistent"))) {
        Ok(_) => panic!("files outside base_dir were found"),
        Err(e) => e,
    };
    assert!(
        has(&errs, "client_cert", "cannot read") && has(&errs, "client_key", "cannot read"),
        "{errs:?}"
    );

    let text = with_files(
        "ca_file = \"certs/not-a-ca.pem\"\nclient_p12 = \"certs/client_key.pem\"\n\
         client_cert = \"certs/client_key.pem\"\nclient_key = \"certs/client_cert.pem\"\n",
    );
    let errs = match parse(&table(&text), &ctx(&dir)) {
        Ok(_) => panic!("bad files accepted"),
        Err(e) => e,
    };
    assert!(has(&errs, "ca_file", "no PEM certificate"), "{errs:?}");
    assert!(has(&errs, "client_p12", "not both"), "{errs:?}");
    let text = with_files(
        "client_cert = \"certs/client_key.pem\"\nclient_key = \"certs/client_cert.pem\"\n",
    );
    let errs = errors_in(&text, &dir);
    assert!(has(&errs, "client_cert", "no PEM certificate"), "{errs:?}");
    assert!(has(&errs, "client_key", "no PEM private key"), "{errs:?}");
    assert!(
        has(&errs, "client_cert", "client_key.pem"),
        "the path is named: {errs:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn errors_in(text: &str, dir: &Path) -> Vec<FieldError> {
    match parse(&table(text), &ctx(dir)) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e,
    }
}

#[test]
fn a_mismatched_cert_and_key_is_an_error_naming_client_key() {
    let dir = cert_dir("mismatch");
    let errs = errors_in(
        &with_files(
            "client_cert = \"certs/client_cert.pem\"\nclient_key = \"certs/other_key.pem\"\n",
        ),
        &dir,
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        has(&errs, "client_key", "does not match the certificate"),
        "{errs:?}"
    );
    assert!(
        !format!("{errs:?}").contains("PRIVATE KEY-----"),
        "{errs:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn p12_files_open_with_the_mch_id_legacy_and_modern() {
    let dir = cert_dir("p12");
    for file in ["client_legacy.p12", "client_modern.p12"] {
        let text = with_files(&format!("client_p12 = \"certs/{file}\"\n"));
        let config = parse(&table(&text), &ctx(&dir)).unwrap_or_else(|e| panic!("{file}: {e:?}"));
        let identity = config.client_identity.as_ref().expect("identity");
        assert_eq!(identity.source(), crate::certs::IdentitySource::Pkcs12);
    }
    // Another mch_id is another password.
    let text = format!(
        "appid = \"wx1\"\nmch_id = \"1900000108\"\napi_key = \"{KEY}\"\nclient_p12 = \"certs/client_legacy.p12\"\n"
    );
    let errs = errors_in(&text, &dir);
    assert!(has(&errs, "client_p12", "password mch_id"), "{errs:?}");
    // An unsupported scheme says so, and what to do.
    let errs = errors_in(
        &with_files("client_p12 = \"certs/client_md5des.p12\"\n"),
        &dir,
    );
    assert!(has(&errs, "client_p12", "cannot read"), "{errs:?}");
    assert!(
        has(&errs, "client_p12", "client_cert + client_key"),
        "{errs:?}"
    );
    // Without a valid mch_id only the mch_id is reported.
    let text =
        format!("appid = \"wx1\"\napi_key = \"{KEY}\"\nclient_p12 = \"certs/client_legacy.p12\"\n");
    let errs = errors_in(&text, &dir);
    assert!(has(&errs, "mch_id", "required"), "{errs:?}");
    assert!(!errs.iter().any(|e| e.field == "client_p12"), "{errs:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_a_certificate_refunds_are_misconfigured() {
    let text = format!("appid = \"wx1\"\nmch_id = \"1\"\napi_key = \"{KEY}\"\n");
    let config = parse(&table(&text), &ctx(Path::new("."))).expect("valid");
    assert!(config.client_identity.is_none());
    match config.client_identity() {
        Err(paybridge_core::provider::ProviderError::Misconfigured { field, message }) => {
            assert_eq!(field, "client_cert");
            assert_eq!(
                message,
                "refunds need the merchant API certificate: set client_cert + client_key, or client_p12"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_provider_builds_its_certificate_client_from_a_p12() {
    let dir = cert_dir("build");
    let text = with_files("client_p12 = \"certs/client_legacy.p12\"\n");
    let provider = crate::WechatMiniprogram::new(&table(&text), &ctx(&dir)).expect("builds");
    assert!(provider.client.has_client_certificate());
    let debug = format!("{provider:?}");
    assert!(
        debug.contains("Pkcs12") && debug.contains("REDACTED"),
        "{debug}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn login_without_app_secret_is_misconfigured() {
    let text = format!("appid = \"wx1\"\nmch_id = \"1\"\napi_key = \"{KEY}\"\n");
    let config = parse(&table(&text), &ctx(Path::new("."))).expect("valid");
    assert!(matches!(
        config.app_secret(),
        Err(paybridge_core::provider::ProviderError::Misconfigured { ref field, .. }) if field == "app_secret"
    ));
}

#[test]
fn fields_describe_every_accepted_key() {
    let names: Vec<&str> = FIELDS.iter().map(|f| f.name).collect();
    assert_eq!(names.len(), 22);
    for secret in ["api_key", "app_secret", "apiv3_key"] {
        assert!(
            FIELDS.iter().any(|f| f.name == secret && f.secret),
            "{secret} must be secret"
        );
    }
    let required: Vec<&str> = FIELDS
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    // api_key is required with api_version "v2" only (a v3 tenant may go without): parse
    // checks it, so the field list cannot call it always required.
    assert_eq!(required, ["appid", "mch_id"]);
}

#[test]
fn plain_http_endpoints_are_only_for_loopback_hosts() {
    let base = format!("appid = \"wx1\"\nmch_id = \"1900000109\"\napi_key = \"{KEY}\"\n");
    let errs = errors(&format!(
        "{base}api_base = \"http://api.mch.weixin.qq.com\"\nlogin_base = \"http://api.weixin.qq.com\"\n"
    ));
    assert!(has(&errs, "api_base", "https"), "{errs:?}");
    assert!(has(&errs, "login_base", "https"), "{errs:?}");
    let local = format!(
        "{base}api_base = \"http://127.0.0.1:8080/sandbox/wechat_miniprogram\"\nlogin_base = \"http://localhost:9/x\"\n"
    );
    assert!(parse(&table(&local), &ctx(Path::new("."))).is_ok());
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
                    "MD5",
                    "HMAC-SHA256",
                    "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----",
                    "https://api.mch.weixin.qq.com",
                    "missing.pem",
                    "wx0000000000000001",
                    "1900000109"
                ][..]
            )
            .prop_map(|s| toml::Value::String(s.to_owned())),
            prop::collection::vec("\\PC{0,8}", 0..3)
                .prop_map(|v| toml::Value::Array(v.into_iter().map(toml::Value::String).collect())),
        ]
    }

    proptest! {
        #[test]
        fn any_section_is_validated_without_a_panic(
            section in prop::collection::btree_map(
                prop::sample::select(&[
                    "appid", "mch_id", "api_key", "app_secret", "sign_type", "client_cert",
                    "client_key", "client_p12", "client_p12_password", "ca_certs", "api_base",
                    "login_base", "spbill_create_ip", "enabled", "other",
                ][..]).prop_map(str::to_owned),
                value(),
                0..10,
            ),
        ) {
            let table: toml::Table = section.into_iter().collect();
            // Relative paths resolve under a folder that does not exist: nothing is read.
            let _ = parse(&table, &ctx(Path::new("/nonexistent-paybridge-fuzz")));
        }
    }
}

#[test]
fn a_service_providers_tenant_is_the_sp_identity_plus_its_sub_merchant() {
    let text = format!(
        "sp_appid = \"wxsp00000000000001\"\nsp_mchid = \"1900000100\"\napi_key = \"{KEY}\"\nsub_mchid = \"1900000201\"\nsub_appid = \"wxsub0000000000001\"\n"
    );
    let config = parse(&table(&text), &ctx(Path::new("."))).expect("valid");
    assert_eq!(config.appid, "wxsp00000000000001");
    assert_eq!(config.mch_id, "1900000100");
    assert_eq!(
        config.partner,
        Some(Partner {
            sub_mchid: "1900000201".into(),
            sub_appid: Some("wxsub0000000000001".into()),
        })
    );
    assert_eq!(config.payer_appid(), "wxsub0000000000001");
    // v2: every signed call names the sub-merchant and its mini-program.
    let signed = crate::client::signed_request(
        &config,
        SignType::HmacSha256,
        std::collections::BTreeMap::new(),
        "n".into(),
    );
    assert_eq!(signed["mch_id"], "1900000100");
    assert_eq!(signed["sub_mch_id"], "1900000201");
    assert_eq!(signed["sub_appid"], "wxsub0000000000001");
    // Without sub_appid the payer belongs to the service provider's mini-program.
    let text = format!(
        "sp_appid = \"wxsp00000000000001\"\nsp_mchid = \"1900000100\"\napi_key = \"{KEY}\"\nsub_mchid = \"1900000201\"\n"
    );
    let config = parse(&table(&text), &ctx(Path::new("."))).expect("valid");
    assert_eq!(config.payer_appid(), "wxsp00000000000001");
}

#[test]
fn service_provider_fields_are_checked() {
    let errs = errors(&format!(
        "sp_appid = \"wxsp\"\nsp_mchid = \"1900000100\"\nmch_id = \"1\"\napi_key = \"{KEY}\"\n"
    ));
    assert!(has(&errs, "mch_id", "sp_mchid instead"), "{errs:?}");
    assert!(has(&errs, "sub_mchid", "required"), "{errs:?}");
    let errs = errors(&format!(
        "sp_appid = \"wxsp\"\nsp_mchid = \"1900000100\"\nsub_mchid = \"1900000100\"\napi_key = \"{KEY}\"\n"
    ));
    assert!(
        has(&errs, "sub_mchid", "service provider's own"),
        "{errs:?}"
    );
    let errs = errors(&format!(
        "appid = \"wx1\"\nmch_id = \"1\"\nsub_mchid = \"2\"\napi_key = \"{KEY}\"\n"
    ));
    assert!(
        has(&errs, "sub_mchid", "only in service-provider mode"),
        "{errs:?}"
    );
}
