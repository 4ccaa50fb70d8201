//! The signatures and the encryption of WeChat Pay API v3 (PROTOCOLS.md §G).
//!
//! - A request is signed over `METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n` with SHA256-RSA
//!   (PKCS#1 v1.5) under the merchant's API key, and sent in `Authorization`.
//! - An answer or a notification is verified over `TIMESTAMP\nNONCE\nBODY\n` (the raw bytes,
//!   never re-serialised JSON) with the key that `Wechatpay-Serial` names: the WeChat Pay public key
//!   (`PUB_KEY_ID_…`) or a platform certificate.
//! - A notification's `resource` is AEAD_AES_256_GCM under the APIv3 key: a 12-byte nonce,
//!   `associated_data` as AAD, and the 16-byte tag at the end of the ciphertext.
//! - `paySign` for `wx.requestPayment` is signed over `appId\ntimeStamp\nnonceStr\npackage\n`.
//!
//! Every signature is made and checked by aws-lc-rs. Errors never contain key material.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};

/// The scheme of `Authorization` and the value of `Wechatpay-Signature-Type`.
pub const SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";

/// A `Wechatpay-Timestamp` this many seconds or more away from now is refused (replays).
pub const MAX_SKEW_SECONDS: i64 = 300;

/// The prefix of a WeChat Pay public key's ID in `Wechatpay-Serial`.
pub const PUBLIC_KEY_ID_PREFIX: &str = "PUB_KEY_ID_";

/// Why a v3 operation failed. Says what to fix; never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum V3Error {
    /// A configured key or certificate cannot be used.
    #[error("{field}: {problem}")]
    Key {
        /// The config field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The signature does not verify with the key the serial names.
    #[error("the signature does not verify")]
    BadSignature,
    /// `Wechatpay-Timestamp` is not a number, or 5 minutes or more off.
    #[error("Wechatpay-Timestamp {0:?} is not within 5 minutes of now")]
    StaleTimestamp(String),
    /// `Wechatpay-Serial` names no key this merchant has, even after a certificate download.
    #[error(
        "Wechatpay-Serial {0:?} names no WeChat Pay public key or platform certificate of this merchant"
    )]
    UnknownSerial(String),
    /// The platform certificates could not be downloaded.
    #[error("downloading the platform certificates failed: {0}")]
    Download(String),
    /// The resource does not open with the APIv3 key, nonce and AAD given.
    #[error(
        "the resource does not decrypt (wrong APIv3 key, nonce or associated_data, or tampered)"
    )]
    Decrypt,
}

fn key_error(field: &'static str, problem: impl Into<String>) -> V3Error {
    V3Error::Key {
        field,
        problem: problem.into(),
    }
}

/// The merchant's API private key (`apiclient_key.pem`, PKCS#8).
pub struct MerchantKey {
    pair: RsaKeyPair,
}

impl std::fmt::Debug for MerchantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MerchantKey(..)")
    }
}

impl MerchantKey {
    /// Read a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`), as WeChat's certificate
    /// tool writes `apiclient_key.pem`. `field` names the config field in errors.
    pub fn from_pem(pem: &str, field: &'static str) -> Result<MerchantKey, V3Error> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
            key_error(
                field,
                "expected a PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----, apiclient_key.pem)",
            )
        })?;
        let pair = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|e| key_error(field, format!("not a usable RSA private key: {e}")))?;
        if pair.public_modulus_len() < 256 {
            return Err(key_error(
                field,
                "an RSA key of 2048 bits or more is required",
            ));
        }
        Ok(MerchantKey { pair })
    }

    /// Its public half, for whoever verifies this merchant's signatures (a simulator, a test).
    pub fn verifying_key(&self) -> Result<VerifyingKey, V3Error> {
        use aws_lc_rs::signature::KeyPair as _;
        VerifyingKey::from_spki(self.pair.public_key().as_ref(), "client_key")
    }

    /// SHA256-RSA (PKCS#1 v1.5) over `message`, base64.
    pub fn sign(&self, message: &[u8]) -> Result<String, V3Error> {
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| key_error("client_key", "signing failed"))?;
        Ok(STANDARD.encode(signature))
    }
}

/// What a request's signature covers. `path` is the URL's path with its query, as sent.
pub fn request_message(
    method: &str,
    path: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut m = format!("{method}\n{path}\n{timestamp}\n{nonce}\n").into_bytes();
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// The `Authorization` header, with its parameters in the official SDK's order.
pub fn authorization(
    mchid: &str,
    nonce: &str,
    signature: &str,
    timestamp: i64,
    serial_no: &str,
) -> String {
    format!(
        "{SCHEME} mchid=\"{mchid}\",nonce_str=\"{nonce}\",signature=\"{signature}\",timestamp=\"{timestamp}\",serial_no=\"{serial_no}\""
    )
}

/// What an answer's or a notification's signature covers: the raw body bytes as received.
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = format!("{timestamp}\n{nonce}\n").into_bytes();
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// What `paySign` covers.
pub fn pay_sign_message(app_id: &str, time_stamp: &str, nonce_str: &str, package: &str) -> String {
    format!("{app_id}\n{time_stamp}\n{nonce_str}\n{package}\n")
}

/// Refuse a `Wechatpay-Timestamp` (Unix seconds) 5 minutes or more away from `now`.
pub fn check_timestamp(timestamp: &str, now: i64) -> Result<(), V3Error> {
    let stale = || V3Error::StaleTimestamp(timestamp.chars().take(20).collect());
    let t: i64 = timestamp.parse().map_err(|_| stale())?;
    if now.abs_diff(t) >= MAX_SKEW_SECONDS.unsigned_abs() {
        return Err(stale());
    }
    Ok(())
}

/// A key that verifies WeChat Pay's signatures: the WeChat Pay public key, or a platform
/// certificate's key. Parsed once, when configured or downloaded; clones share it.
#[derive(Clone)]
pub struct VerifyingKey {
    key: std::sync::Arc<ParsedPublicKey>,
}

impl PartialEq for VerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.key.as_ref().as_ref() == other.key.as_ref().as_ref()
    }
}

impl Eq for VerifyingKey {}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifyingKey(..)")
    }
}

impl VerifyingKey {
    /// The WeChat Pay public key (`pub_key.pem`, `-----BEGIN PUBLIC KEY-----`).
    pub fn from_public_key_pem(pem: &str, field: &'static str) -> Result<VerifyingKey, V3Error> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
            key_error(
                field,
                "expected the WeChat Pay public key as PEM (-----BEGIN PUBLIC KEY-----, pub_key.pem)",
            )
        })?;
        VerifyingKey::from_spki(der.as_ref(), field)
    }

    /// A platform certificate (PEM): its serial (uppercase hex, as `Wechatpay-Serial` carries
    /// it) and its key.
    pub fn from_certificate_pem(
        pem: &str,
        field: &'static str,
    ) -> Result<(String, VerifyingKey), V3Error> {
        let cert = PlatformCertificate::from_pem(pem, field)?;
        Ok((cert.serial, cert.key))
    }

    fn from_spki(spki: &[u8], field: &'static str) -> Result<VerifyingKey, V3Error> {
        // Parsed here, so that a wrong key fails at configuration and not at the first
        // notification. (Keys under 2048 bits are refused by the verification itself.)
        let key = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, spki)
            .map_err(|_| key_error(field, "not an RSA public key"))?;
        Ok(VerifyingKey {
            key: std::sync::Arc::new(key),
        })
    }

    /// Check a base64 `Wechatpay-Signature` over `message`.
    pub fn verify(&self, message: &[u8], signature_base64: &str) -> Result<(), V3Error> {
        let signature = STANDARD
            .decode(signature_base64.trim())
            .map_err(|_| V3Error::BadSignature)?;
        self.key
            .verify_sig(message, &signature)
            .map_err(|_| V3Error::BadSignature)
    }
}

/// A platform certificate: its serial, its key and when it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformCertificate {
    /// Uppercase hex without leading zeros ([`normalize_serial`]).
    pub serial: String,
    /// Its public key.
    pub key: VerifyingKey,
    /// Valid from (Unix seconds).
    pub not_before: i64,
    /// Valid until (Unix seconds).
    pub not_after: i64,
}

impl PlatformCertificate {
    /// Read a PEM certificate. `field` names the config field (or the download) in errors.
    pub fn from_pem(pem: &str, field: &'static str) -> Result<PlatformCertificate, V3Error> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
            key_error(
                field,
                "expected a platform certificate as PEM (-----BEGIN CERTIFICATE-----)",
            )
        })?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| key_error(field, format!("not an X.509 certificate: {e}")))?;
        let validity = cert.validity();
        Ok(PlatformCertificate {
            serial: normalize_serial(&hex::encode_upper(cert.raw_serial())),
            key: VerifyingKey::from_spki(cert.public_key().raw, field)?,
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }

    /// Whether it is valid at `now` (Unix seconds).
    pub fn valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// A certificate serial as compared: uppercase hex without leading zeros (DER keeps a leading
/// `00` for a serial whose first bit is set; `Wechatpay-Serial` does not).
pub fn normalize_serial(serial: &str) -> String {
    let upper = serial.trim().to_ascii_uppercase();
    let trimmed = upper.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Open an AEAD_AES_256_GCM resource (a notification's, or a downloaded certificate's).
pub fn decrypt(
    apiv3_key: &[u8],
    nonce: &str,
    associated_data: &str,
    ciphertext_base64: &str,
) -> Result<Vec<u8>, V3Error> {
    let key = UnboundKey::new(&AES_256_GCM, apiv3_key).map_err(|_| {
        key_error(
            "apiv3_key",
            "must be exactly 32 bytes (the APIv3 key set in the merchant platform)",
        )
    })?;
    let nonce = Nonce::try_assume_unique_for_key(nonce.as_bytes()).map_err(|_| V3Error::Decrypt)?;
    let mut data = STANDARD
        .decode(ciphertext_base64)
        .map_err(|_| V3Error::Decrypt)?;
    let plain = LessSafeKey::new(key)
        .open_in_place(nonce, Aad::from(associated_data.as_bytes()), &mut data)
        .map_err(|_| V3Error::Decrypt)?;
    Ok(plain.to_vec())
}
