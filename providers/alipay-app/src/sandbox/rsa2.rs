//! RSA2 (SHA256withRSA, PKCS#1 v1.5) with the `rsa` crate — deliberately not the client's
//! aws-lc-rs — and the simulator's own reading of key text (PEM or bare base64, PKCS#1 or PKCS#8).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::DecodePrivateKey;
use rsa::sha2::Sha256;
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};

/// The sandbox's stand-in for Alipay's platform key (its public half is
/// `sandbox-keys/alipay_sandbox_public.pem`, which tenants configure as `alipay_public_key`).
const PLATFORM_KEY_PEM: &str = include_str!("../../sandbox-keys/alipay_sandbox_private.pem");

/// Reads an RSA private key from PEM (`RSA PRIVATE KEY` = PKCS#1, `PRIVATE KEY` = PKCS#8) or
/// from bare base64 of either DER form, as Alipay's key tool and SDKs hand them out.
pub(crate) fn parse_private_key(text: &str) -> Result<RsaPrivateKey, String> {
    let text = text.trim();
    let (label, body) = match text.strip_prefix("-----BEGIN ") {
        Some(rest) => {
            let (label, rest) = rest
                .split_once("-----")
                .ok_or("a PEM header without its closing dashes")?;
            let footer = format!("-----END {label}-----");
            let body = rest
                .split_once(footer.as_str())
                .map(|(body, _)| body)
                .ok_or_else(|| format!("no {footer} line"))?;
            (Some(label), body)
        }
        None => (None, text),
    };
    let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| format!("the key is not base64: {e}"))?;
    let pkcs1 = || RsaPrivateKey::from_pkcs1_der(&der).map_err(|e| format!("PKCS#1: {e}"));
    let pkcs8 = || RsaPrivateKey::from_pkcs8_der(&der).map_err(|e| format!("PKCS#8: {e}"));
    match label {
        Some("RSA PRIVATE KEY") => pkcs1(),
        Some("PRIVATE KEY") => pkcs8(),
        Some(other) => Err(format!("a PEM {other:?} block is not an RSA private key")),
        None => pkcs8().or_else(|e8| {
            pkcs1().map_err(|e1| {
                format!(
                    "not a PKCS#1 or PKCS#8 RSA key ({} bytes of base64): {e8}; {e1}",
                    der.len()
                )
            })
        }),
    }
}

/// Signs with a private key.
#[derive(Debug, Clone)]
pub(crate) struct Rsa2Signer {
    key: SigningKey<Sha256>,
}

impl Rsa2Signer {
    /// A signer for this key.
    pub(crate) fn new(key: RsaPrivateKey) -> Self {
        Rsa2Signer {
            key: SigningKey::new(key),
        }
    }

    /// The sandbox platform key.
    pub(crate) fn platform() -> Result<Self, String> {
        parse_private_key(PLATFORM_KEY_PEM).map(Rsa2Signer::new)
    }

    /// The base64 RSA2 signature of the UTF-8 bytes of `content`, or `None` if the RSA
    /// operation failed (it does not for a valid key).
    pub(crate) fn sign(&self, content: &str) -> Option<String> {
        self.key
            .try_sign(content.as_bytes())
            .map(|signature| STANDARD.encode(signature.to_bytes()))
            .map_err(|e| tracing::error!("alipay sandbox: RSA signing failed: {e}"))
            .ok()
    }
}

/// Verifies with a public key.
#[derive(Debug, Clone)]
pub(crate) struct Rsa2Verifier {
    key: VerifyingKey<Sha256>,
}

impl Rsa2Verifier {
    /// A verifier for this key.
    pub(crate) fn new(key: RsaPublicKey) -> Self {
        Rsa2Verifier {
            key: VerifyingKey::new(key),
        }
    }

    /// Whether `sign` (standard base64 with padding) is the RSA2 signature of `content`.
    pub(crate) fn verify(&self, content: &str, sign: &str) -> bool {
        let Ok(bytes) = STANDARD.decode(sign.as_bytes()) else {
            return false;
        };
        let Ok(signature) = Signature::try_from(bytes.as_slice()) else {
            return false;
        };
        self.key.verify(content.as_bytes(), &signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PKCS1: &str = include_str!("../../../../fixtures/vectors/app_private_pkcs1.pem");
    const PKCS8: &str = include_str!("../../../../fixtures/vectors/app_private_pkcs8.pem");

    /// PROTOCOLS §D.4. It was computed with the Node SDK's test key
    /// (`alipay-sdk-nodejs-all` `test/fixtures/app-private-key-pkcs8.pem`), whose public half
    /// (`app-public-key.pem`) is this; `fixtures/vectors/app_private_pkcs1.pem` is another key.
    const D4_APP_PUBLIC_KEY: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAhL3pWP55B1fFkvYOOtcfOEUhvBodHpLnc9KmuAU4H8V+ocyKTckacBhJrwIT8ILMzpflfqpzl+dvpJIsx3IbNB1Pmy0V949+vCoiBEa0Maw1dgJfIwghrsKL41wqzeaFqC6CehiefvwTKrS8zxIK1gDHipsimNsDbqCYmojDxhyorO4CC0iXld+1+LQxajf9ZdG1nLDd9dgVGiMkEDUSGXKCt6NpoDHp/6ptAcYSvnn5W4YUNWdy+wVxT0jyrbP1gNUDG1DVtFLrZXNQ9vY5wRyaix8vUccQ3s5o186tPgpup++lU3v2NgzybF9JzJWPdanDv5cJcJyFe43LNdD9mwIDAQAB";
    const D4_CONTENT: &str = r#"app_id=2021000122671080&biz_content={"out_trade_no":"20240101000001","total_amount":"0.01","subject":"Test Order 1","product_code":"QUICK_MSECURITY_PAY","timeout_express":"30m"}&charset=utf-8&format=JSON&method=alipay.trade.app.pay&notify_url=https://example.com/notify/alipay&sign_type=RSA2&timestamp=2024-01-01 12:00:00&version=1.0"#;
    const D4_SIGN: &str = "V3wmUCbFurbxS9HgPLMZoCPuJg3GejCsQ55RZaC6rcm9D4syaqm0z0lNITryj/aEg6fHjd36j7E/EPvANw0prRa+C4LNWxgmadUL0+mcG9FpbcqUZAaU0F00hcd3DgQUVV02Pw3sDYM78rOXGu4LZ+qTBT27+LCr4/WvycvG4DSmkEXg9teLp8G7Y3CEokOXbV7AHIhFcD0zHIfHO1V1FT/73yF+b6kvkBhFrkPrZqIchoO1TNTzMdRg8FqXNoCXbjVEU0NUFEzuYV80PVk9HHdHuX5yx4P6oLK9q9OgRFGU9WEPKnBIZ8QHtAVUPAY4AE6TQ++d8F1ZjKyAA2/pfQ==";

    fn bare_base64(pem: &str) -> String {
        pem.lines().filter(|l| !l.starts_with("-----")).collect()
    }

    #[test]
    fn the_d4_vector_verifies_and_nothing_else_does() {
        use rsa::pkcs8::DecodePublicKey;
        assert_eq!(D4_CONTENT.len(), 333);
        let der = STANDARD.decode(D4_APP_PUBLIC_KEY).unwrap();
        let verifier = Rsa2Verifier::new(RsaPublicKey::from_public_key_der(&der).unwrap());
        assert!(verifier.verify(D4_CONTENT, D4_SIGN));
        assert!(!verifier.verify(&D4_CONTENT.replace("0.01", "0.02"), D4_SIGN));
        assert!(!verifier.verify(&D4_CONTENT.replace("&sign_type=RSA2", ""), D4_SIGN));
        assert!(!verifier.verify(D4_CONTENT, &D4_SIGN.replace('+', " ")));
        assert!(!verifier.verify(D4_CONTENT, "not base64"));
    }

    #[test]
    fn signing_reproduces_the_official_node_sdk_signatures() {
        let vectors: serde_json::Value = serde_json::from_str(include_str!(
            "../../../../fixtures/vectors/sdk-vectors.json"
        ))
        .unwrap();
        let key = parse_private_key(PKCS1).unwrap();
        let signer = Rsa2Signer::new(key.clone());
        let verifier = Rsa2Verifier::new(key.to_public_key());
        let cases = vectors["alipay"]["cases"].as_array().unwrap();
        assert!(cases.len() >= 5);
        for case in cases {
            let content = case["sign_string"].as_str().unwrap();
            let sign = case["sign"].as_str().unwrap();
            assert_eq!(
                signer.sign(content).as_deref(),
                Some(sign),
                "{}",
                case["name"]
            );
            assert!(verifier.verify(content, sign));
        }
    }

    #[test]
    fn every_key_form_reads_as_the_same_key() {
        let reference = parse_private_key(PKCS1).unwrap();
        for text in [
            PKCS8.to_owned(),
            bare_base64(PKCS1),
            bare_base64(PKCS8),
            format!("\n  {}  \n", PKCS1.replace('\n', "\r\n")),
        ] {
            assert_eq!(parse_private_key(&text).unwrap(), reference);
        }
    }

    #[test]
    fn a_mislabelled_or_garbled_key_is_refused() {
        let mislabelled = PKCS1.replace("RSA PRIVATE KEY", "PRIVATE KEY");
        assert!(parse_private_key(&mislabelled).is_err());
        assert!(parse_private_key("bm90IGEga2V5").is_err());
        assert!(
            parse_private_key("-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----")
                .is_err()
        );
        assert!(parse_private_key("not base64 at all!").is_err());
    }

    #[test]
    fn the_platform_key_matches_its_published_public_half() {
        use rsa::pkcs8::DecodePublicKey;
        let public = RsaPublicKey::from_public_key_pem(include_str!(
            "../../sandbox-keys/alipay_sandbox_public.pem"
        ))
        .unwrap();
        let signer = Rsa2Signer::platform().unwrap();
        let sign = signer.sign("hello").unwrap();
        assert!(Rsa2Verifier::new(public).verify("hello", &sign));
    }
}
