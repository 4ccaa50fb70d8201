//! Key formats, and error messages that say what was expected and found without echoing keys.

use super::*;
use crate::test_support::{fixture, sandbox_key};

/// The base64 body of a PEM text, on one line (the form the Alipay key tool writes).
fn bare(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

const RSA_1024_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDYDUoULzBcrCiFBCrLFEfrXKU9
K5KIKKMl79RyC2uku8nWSYH4ti0He1tm4M1pjplRM8nxl7cWQfIRElJuWDRwWRGj
bEWHTRmEe+Qrrew5p9FJA8486ZHomUs6GnNoTc+JMZ6IfhYwJUZAEqCsPu7A1WyN
N8R4zKdre8ZK9lraAwIDAQAB
-----END PUBLIC KEY-----";

const EC_P256_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgkmPMt5jWnggsDL5F
1C3uNQqoeF6ix91Kf9jpDdfRegmhRANCAAR5Dta4Ih9NiLUK+jrs4GSo3Z/A1ZSY
jkpJNrPfNHgKDb35klX2BVKK4nbREgDKjZRw5rXp/7258/2GDTdqxtBI
-----END PRIVATE KEY-----";

fn private_err(text: &str) -> String {
    AppPrivateKey::parse(text).expect_err("should be refused")
}

fn public_err(text: &str) -> String {
    AlipayPublicKey::parse(text).expect_err("should be refused")
}

#[test]
fn private_key_reads_pkcs1_and_pkcs8_in_pem_and_bare_base64() {
    let app_public = AlipayPublicKey::parse(&fixture("vectors/app_public.pem")).expect("public");
    let pkcs8 = fixture("vectors/app_private_pkcs8.pem");
    let pkcs1 = fixture("vectors/app_private_pkcs1.pem");
    for text in [
        pkcs8.clone(),
        pkcs1.clone(),
        bare(&pkcs8),
        bare(&pkcs1),
        format!("  {}\r\n", pkcs8.replace('\n', "\r\n")),
        pkcs8.trim_end().trim_end_matches('=').to_owned(),
    ] {
        let key = AppPrivateKey::parse(&text).expect("accepted");
        assert_eq!(key.public_key_spki(), app_public.spki());
    }
}

#[test]
fn public_key_reads_spki_pem_bare_base64_and_pkcs1() {
    let pem = fixture("vectors/app_public.pem");
    let expected = AlipayPublicKey::parse(&pem).expect("pem");
    assert_eq!(AlipayPublicKey::parse(&bare(&pem)).expect("bare"), expected);
    // D.3's key as Alipay's console shows it: one line, no header.
    let d3 = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAqObrdC7hrgAVM98tK0nv3hSQRGGKT4lBsQjHiGjeYZjOPIPHR5knm2jnnz/YGIXIofVHkA/tAlBAd5DrY7YpvI4tP5EONLtZKC2ghBMx7McI2wRD0xiqzxOQr1FuhZGJ8/AUokBzJrzY+aGX2xcOrxFYRlFilvVLTXg4LWjR1tdPkO6+i7wQZAIVMClPkwVRZEbaERRHlKqTzv2gGv5rDU8gRoe1LeaN+6BlbTqHWkQcNCUNrA8C6l17XAXGKDsm/9TFWwO8EPHHHCaQdjtV5/FdcWIt+L8SR1ss7EXTjYDFtxcKVv9rEoY1lX8T4mX+GbXfZHraG5NCF1+XioL5JwIDAQAB";
    assert!(AlipayPublicKey::parse(d3).is_ok());
}

#[test]
fn garbage_base64_says_which_formats_were_tried() {
    let junk = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2";
    assert_eq!(junk.len(), 64);
    assert_eq!(
        private_err(junk),
        "not a PKCS#1 or PKCS#8 RSA private key (got 64 bytes of base64 that do not parse as either)"
    );
    assert!(public_err(junk).starts_with("not an RSA public key (got 64 bytes of base64"));
    assert_eq!(
        private_err("key: none"),
        "neither PEM nor base64 (character 4 is not in the base64 alphabet)"
    );
    assert_eq!(private_err("  \n "), "must not be empty");
}

#[test]
fn a_private_key_where_alipays_public_key_belongs_is_named() {
    for text in [
        fixture("vectors/app_private_pkcs8.pem"),
        fixture("vectors/app_private_pkcs1.pem"),
        bare(&fixture("vectors/app_private_pkcs8.pem")),
        bare(&fixture("vectors/app_private_pkcs1.pem")),
    ] {
        assert_eq!(
            public_err(&text),
            "this is an RSA private key; expected Alipay's public key (SPKI)"
        );
    }
}

#[test]
fn a_public_key_where_the_private_key_belongs_is_named() {
    let public = fixture("vectors/app_public.pem");
    for text in [public.clone(), bare(&public)] {
        assert_eq!(
            private_err(&text),
            "this is a public key; expected the app private key (PKCS#1 or PKCS#8)"
        );
    }
}

#[test]
fn other_pem_blocks_are_named() {
    let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
    assert!(
        public_err(cert).starts_with("this is a certificate"),
        "{}",
        public_err(cert)
    );
    assert!(private_err(cert).starts_with("this is a certificate"));
    let encrypted = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nMIIB\n-----END RSA PRIVATE KEY-----";
    assert!(private_err(encrypted).contains("without a passphrase"));
    let truncated = "-----BEGIN PRIVATE KEY-----\nMIIEvAIBADANBgkqhkiG9w0BAQEFAASC\n";
    assert!(private_err(truncated).contains("without its matching END line"));
    let wrong_label =
        fixture("vectors/app_private_pkcs8.pem").replace("PRIVATE KEY", "RSA PRIVATE KEY");
    assert_eq!(
        private_err(&wrong_label),
        "this is labelled RSA PRIVATE KEY (PKCS#1) but does not parse as PKCS#1"
    );
}

#[test]
fn non_rsa_and_short_keys_are_refused() {
    assert!(private_err(EC_P256_PKCS8).contains("another algorithm (OID 1.2.840.10045.2.1)"));
    assert_eq!(
        public_err(RSA_1024_PUBLIC),
        "this is a 1024-bit RSA key; RSA2 needs 2048 to 8192 bits"
    );
}

#[test]
fn error_messages_never_echo_key_material() {
    let private = fixture("vectors/app_private_pkcs8.pem");
    let body = bare(&private);
    let corrupted = format!("{}AAAA", &body[..body.len() - 40]);
    let messages = [
        public_err(&private),
        public_err(&body),
        private_err(&corrupted),
        public_err(&corrupted),
        private_err(&fixture("vectors/app_public.pem")),
    ];
    for message in messages {
        for window in body.as_bytes().windows(12).step_by(7) {
            let window = std::str::from_utf8(window).expect("ascii");
            assert!(!message.contains(window), "{message} leaks {window}");
        }
    }
}

#[test]
fn debug_output_redacts_the_private_key() {
    let key = AppPrivateKey::parse(&fixture("vectors/app_private_pkcs8.pem")).expect("key");
    assert_eq!(format!("{key:?}"), "AppPrivateKey([REDACTED] 2048 bits)");
    let public = AlipayPublicKey::parse(&sandbox_key("alipay_sandbox_public.pem")).expect("key");
    assert_eq!(format!("{public:?}"), "AlipayPublicKey(294 bytes SPKI)");
}

#[test]
fn verification_fails_closed() {
    let key = AppPrivateKey::parse(&fixture("vectors/app_private_pkcs1.pem")).expect("key");
    let public = AlipayPublicKey::parse(&fixture("vectors/app_public.pem")).expect("key");
    let other = AlipayPublicKey::parse(&sandbox_key("alipay_sandbox_public.pem")).expect("key");
    let sig = key.sign_rsa2(b"hello").expect("sign");
    assert!(public.verify_rsa2(b"hello", &sig));
    assert!(!public.verify_rsa2(b"hello!", &sig));
    assert!(!other.verify_rsa2(b"hello", &sig));
    assert!(!public.verify_rsa2(b"hello", ""));
    assert!(!public.verify_rsa2(b"hello", "not base64 !"));
    assert!(!public.verify_rsa2(b"hello", &sig[..sig.len() - 4]));
}
