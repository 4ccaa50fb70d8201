//! The simulator's own v3 cryptography, WeChat's side of it: signing answers and notifications
//! with the sandbox's WeChat Pay keys, verifying merchants' request signatures, and sealing
//! resources with AES-256-GCM. It calls aws-lc-rs directly and never the merchant client's code
//! (`crate::v3`), so a bug on one side cannot hide the same bug on the other.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};

/// The private half of the sandbox's WeChat Pay public key (public-key mode).
const PUBLIC_KEY_PRIVATE_PEM: &str =
    include_str!("../../../sandbox-keys/wechatpay_sandbox_pub_key_private.pem");
/// The sandbox's WeChat Pay public key, as a tenant configures it.
pub(crate) const PUBLIC_KEY_PEM: &str =
    include_str!("../../../sandbox-keys/wechatpay_sandbox_pub_key.pem");
/// The sandbox platform certificate's key (certificate mode).
const PLATFORM_KEY_PEM: &str =
    include_str!("../../../sandbox-keys/wechatpay_sandbox_platform_key.pem");
/// The sandbox platform certificate, served (encrypted) by `GET /v3/certificates`.
const PLATFORM_CERT_PEM: &str =
    include_str!("../../../sandbox-keys/wechatpay_sandbox_platform_cert.pem");

/// Which of WeChat's keys signs a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signer {
    /// The WeChat Pay public key's private half; `Wechatpay-Serial` is the merchant's
    /// `PUB_KEY_ID_…`.
    PublicKey,
    /// The platform certificate's key; `Wechatpay-Serial` is the certificate serial.
    Platform,
}

/// WeChat's keys as the simulator holds them.
pub(crate) struct WechatKeys {
    public_key: KeyPair,
    platform: KeyPair,
    platform_serial: String,
    platform_not_before: DateTime<Utc>,
    platform_not_after: DateTime<Utc>,
    rng: SystemRandom,
}

impl std::fmt::Debug for WechatKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatKeys")
            .field("platform_serial", &self.platform_serial)
            .finish_non_exhaustive()
    }
}

/// The DER inside a PEM text.
pub(crate) fn pem_der(text: &str) -> Result<(String, Vec<u8>), String> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(text.as_bytes()).map_err(|e| format!("not PEM: {e}"))?;
    Ok((pem.label, pem.contents))
}

/// An RSA private key from PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) PEM.
pub(crate) fn private_key(text: &str) -> Result<KeyPair, String> {
    let (label, der) = pem_der(text)?;
    let key = if label == "RSA PRIVATE KEY" {
        KeyPair::from_der(&der)
    } else {
        KeyPair::from_pkcs8(&der)
    };
    key.map_err(|e| format!("not an RSA private key: {e}"))
}

/// RFC 3339 in Beijing time, as WeChat writes times.
pub(crate) fn beijing(at: DateTime<Utc>) -> String {
    match FixedOffset::east_opt(8 * 3600) {
        Some(offset) => at
            .with_timezone(&offset)
            .to_rfc3339_opts(SecondsFormat::Secs, false),
        None => at.to_rfc3339_opts(SecondsFormat::Secs, true),
    }
}

impl WechatKeys {
    /// The keys shipped in `sandbox-keys/`.
    pub(crate) fn load() -> Result<WechatKeys, String> {
        Self::from_pems(PUBLIC_KEY_PRIVATE_PEM, PLATFORM_KEY_PEM, PLATFORM_CERT_PEM)
    }

    fn from_pems(public_key: &str, platform: &str, cert: &str) -> Result<WechatKeys, String> {
        let (_, der) = pem_der(cert)?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| format!("platform certificate: {e}"))?;
        let time = |t: x509_parser::time::ASN1Time| {
            DateTime::from_timestamp(t.timestamp(), 0).unwrap_or_default()
        };
        Ok(WechatKeys {
            public_key: private_key(public_key)?,
            platform: private_key(platform)?,
            platform_serial: parsed
                .raw_serial_as_string()
                .replace(':', "")
                .to_uppercase(),
            platform_not_before: time(parsed.validity().not_before),
            platform_not_after: time(parsed.validity().not_after),
            rng: SystemRandom::new(),
        })
    }

    /// The platform certificate's serial (upper-case hex).
    pub(crate) fn platform_serial(&self) -> &str {
        &self.platform_serial
    }

    /// SHA256-RSA (PKCS#1 v1.5) of `message` under `signer`'s key, base64.
    pub(crate) fn sign(&self, signer: Signer, message: &[u8]) -> Result<String, String> {
        let key = match signer {
            Signer::PublicKey => &self.public_key,
            Signer::Platform => &self.platform,
        };
        let mut signature = vec![0; key.public_modulus_len()];
        key.sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut signature)
            .map_err(|e| format!("signing failed: {e}"))?;
        Ok(STANDARD.encode(signature))
    }

    /// The body of `GET /v3/certificates` for a merchant: the platform certificate sealed under
    /// its APIv3 key (AAD `certificate`).
    pub(crate) fn certificates_body(&self, apiv3_key: &[u8]) -> Result<String, String> {
        let nonce = random_nonce();
        let ciphertext = seal(
            apiv3_key,
            &nonce,
            "certificate",
            PLATFORM_CERT_PEM.as_bytes(),
        )?;
        Ok(serde_json::json!({
            "data": [{
                "serial_no": self.platform_serial,
                "effective_time": beijing(self.platform_not_before),
                "expire_time": beijing(self.platform_not_after),
                "encrypt_certificate": {
                    "algorithm": "AEAD_AES_256_GCM",
                    "nonce": nonce,
                    "associated_data": "certificate",
                    "ciphertext": ciphertext,
                },
            }],
        })
        .to_string())
    }
}

/// Verifies a merchant's SHA256-RSA signature (base64) with its public key (PKCS#1
/// `RSAPublicKey` DER).
pub(crate) fn verify_merchant(public_key: &[u8], message: &[u8], signature: &str) -> bool {
    let Ok(signature) = STANDARD.decode(signature) else {
        return false;
    };
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key)
        .verify(message, &signature)
        .is_ok()
}

/// AEAD_AES_256_GCM: `base64(ciphertext || tag)` of `plaintext` under `key`, with the
/// 12-character `nonce` and `aad`.
pub(crate) fn seal(key: &[u8], nonce: &str, aad: &str, plaintext: &[u8]) -> Result<String, String> {
    let key = UnboundKey::new(&AES_256_GCM, key)
        .map_err(|_| "the APIv3 key must be 32 bytes".to_owned())?;
    let nonce = Nonce::try_assume_unique_for_key(nonce.as_bytes())
        .map_err(|_| "the nonce must be 12 bytes".to_owned())?;
    let mut sealed = plaintext.to_vec();
    LessSafeKey::new(key)
        .seal_in_place_append_tag(nonce, Aad::from(aad.as_bytes()), &mut sealed)
        .map_err(|_| "sealing failed".to_owned())?;
    Ok(STANDARD.encode(sealed))
}

/// A 12-character alphanumeric nonce, as WeChat uses for resources.
pub(crate) fn random_nonce() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| {
            let i = rng.random_range(0..ALPHABET.len());
            char::from(ALPHABET.get(i).copied().unwrap_or(b'A'))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/wechatpay-v3");

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
    }

    fn vectors() -> serde_json::Value {
        serde_json::from_str(&fixture("vectors.json")).unwrap()
    }

    fn fixture_keys() -> WechatKeys {
        WechatKeys::from_pems(
            &fixture("wechatpay_public_key_private.pem"),
            &fixture("platform_key.pem"),
            &fixture("platform_cert.pem"),
        )
        .unwrap()
    }

    fn signer_of(keys: &WechatKeys, serial: &str) -> Signer {
        if serial.starts_with("PUB_KEY_ID_") {
            Signer::PublicKey
        } else {
            assert_eq!(serial.to_uppercase(), keys.platform_serial());
            Signer::Platform
        }
    }

    /// The simulator's signer reproduces the official SDK's answer and notification signatures
    /// (PKCS#1 v1.5 is deterministic), under the fixtures' keys, in both modes.
    #[test]
    fn signs_like_the_official_sdk() {
        let keys = fixture_keys();
        let v = vectors();
        let mut modes = Vec::new();
        for case in v["notifications"].as_array().unwrap() {
            let h = &case["headers"];
            let message = format!(
                "{}\n{}\n{}\n",
                h["Wechatpay-Timestamp"].as_str().unwrap(),
                h["Wechatpay-Nonce"].as_str().unwrap(),
                case["body"].as_str().unwrap()
            );
            let signer = signer_of(&keys, h["Wechatpay-Serial"].as_str().unwrap());
            assert_eq!(
                keys.sign(signer, message.as_bytes()).unwrap(),
                h["Wechatpay-Signature"].as_str().unwrap()
            );
            modes.push(signer);
        }
        for case in v["answers"].as_array().unwrap() {
            if case["sdk_verifies"] != true {
                continue;
            }
            let message = format!(
                "{}\n{}\n{}\n",
                case["timestamp"].as_str().unwrap(),
                case["nonce"].as_str().unwrap(),
                case["body"].as_str().unwrap()
            );
            let signer = signer_of(&keys, case["serial"].as_str().unwrap());
            assert_eq!(
                keys.sign(signer, message.as_bytes()).unwrap(),
                case["signature"].as_str().unwrap()
            );
            modes.push(signer);
        }
        assert!(modes.contains(&Signer::PublicKey) && modes.contains(&Signer::Platform));
    }

    /// The simulator's sealing reproduces the SDK's AES-GCM resources.
    #[test]
    fn seals_like_the_official_sdk() {
        let v = vectors();
        let resources = v["resources"].as_array().unwrap();
        assert!(!resources.is_empty());
        for case in resources {
            let sealed = seal(
                case["apiv3_key"].as_str().unwrap().as_bytes(),
                case["nonce"].as_str().unwrap(),
                case["associated_data"].as_str().unwrap(),
                case["sdk_plaintext"].as_str().unwrap().as_bytes(),
            )
            .unwrap();
            assert_eq!(sealed, case["ciphertext"].as_str().unwrap());
        }
    }

    /// The merchant's request signature made by the SDK verifies with the simulator's code, and
    /// a changed message does not.
    #[test]
    fn verifies_the_sdk_request_signature_and_nothing_else() {
        let v = vectors();
        let key = private_key(&fixture("merchant_key.pem")).unwrap();
        let public = aws_lc_rs::signature::KeyPair::public_key(&key)
            .as_ref()
            .to_vec();
        let case = &v["authorization"][0];
        let message = case["sign_str"].as_str().unwrap();
        let signature = case["signature"].as_str().unwrap();
        assert!(verify_merchant(&public, message.as_bytes(), signature));
        assert!(!verify_merchant(&public, b"another message", signature));
    }

    #[test]
    fn the_shipped_keys_load() {
        let keys = WechatKeys::load().unwrap();
        assert_eq!(
            keys.platform_serial(),
            "6B3F0A5D2C7E41A98F1B2C3D4E5F60718293A4B5"
        );
        assert!(keys.platform_not_after > Utc::now());
    }
}
