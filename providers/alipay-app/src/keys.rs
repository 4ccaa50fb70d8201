//! The two RSA keys of an Alipay merchant: the app private key (signs requests) and Alipay's public
//! key (verifies responses and notifications). PROTOCOLS.md §C.2 "Key formats", pitfall 12.
//!
//! The `rsa` crate only reads the formats (PKCS#1, PKCS#8, SPKI; PEM or one-line base64); every
//! signature is made and checked by aws-lc-rs. Error messages say which format was expected and
//! what was found, and never contain key material.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::{DecodePaddingMode, general_purpose};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};

/// Smallest key RSA2 accepts; Alipay issues 2048-bit keys.
const MIN_BITS: usize = 2048;
/// Largest key aws-lc-rs verifies with `RSA_PKCS1_2048_8192_SHA256`.
const MAX_BITS: usize = 8192;

/// Key text as configured: padding optional, whitespace anywhere.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What the configured text was wrapped in.
#[derive(Debug, PartialEq, Eq)]
enum Armor {
    /// `-----BEGIN <label>-----`
    Pem(String),
    /// One-line (or wrapped) base64 without header, as the Alipay key tool writes it.
    Bare { base64_chars: usize },
}

/// Decoded key bytes. Not `Debug`: they may be a private key.
struct KeyBytes {
    armor: Armor,
    der: Vec<u8>,
}

/// PEM or bare base64 → DER. The label of a PEM block is kept to tell formats apart.
fn decode_key_text(text: &str) -> Result<KeyBytes, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if let Some(begin) = text.find("-----BEGIN ") {
        let after = &text[begin + "-----BEGIN ".len()..];
        let Some(label_end) = after.find("-----") else {
            return Err("this has a PEM BEGIN line that does not end with -----".to_owned());
        };
        let label = &after[..label_end];
        if label.len() > 40 || !label.bytes().all(|b| b.is_ascii_uppercase() || b == b' ') {
            return Err("this has a PEM BEGIN line with an unreadable label".to_owned());
        }
        let body_and_rest = &after[label_end + "-----".len()..];
        let end_line = format!("-----END {label}-----");
        let Some(body_end) = body_and_rest.find(&end_line) else {
            return Err(format!(
                "this is a PEM block labelled {label} without its matching END line"
            ));
        };
        let body = &body_and_rest[..body_end];
        if body.contains(':') {
            return Err(format!(
                "this is an encrypted PEM block ({label} with headers); export the key without a passphrase"
            ));
        }
        let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let der = LENIENT_BASE64.decode(compact.as_bytes()).map_err(|_| {
            format!("this is a PEM block labelled {label} whose body is not valid base64")
        })?;
        return Ok(KeyBytes {
            armor: Armor::Pem(label.to_owned()),
            der,
        });
    }
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if let Some(position) = compact
        .chars()
        .position(|c| !(c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '='))
    {
        return Err(format!(
            "neither PEM nor base64 (character {} is not in the base64 alphabet)",
            position.saturating_add(1)
        ));
    }
    let der = LENIENT_BASE64
        .decode(compact.as_bytes())
        .map_err(|_| format!("not valid base64 ({} characters)", compact.len()))?;
    Ok(KeyBytes {
        armor: Armor::Bare {
            base64_chars: compact.len(),
        },
        der,
    })
}

/// PKCS#8: only an RSA key will do.
fn private_from_pkcs8(der: &[u8]) -> Result<RsaPrivateKey, String> {
    let info = rsa::pkcs8::PrivateKeyInfo::try_from(der).map_err(|_| {
        "this is labelled PKCS#8 (PRIVATE KEY) but does not parse as PKCS#8".to_owned()
    })?;
    if info.algorithm.oid != rsa::pkcs1::ALGORITHM_OID {
        return Err(format!(
            "this is a PKCS#8 key of another algorithm (OID {}); RSA2 needs an RSA key",
            info.algorithm.oid
        ));
    }
    RsaPrivateKey::from_pkcs8_der(der)
        .map_err(|_| "this is a PKCS#8 RSA key that does not parse (corrupted?)".to_owned())
}

fn is_private_key(der: &[u8]) -> bool {
    rsa::pkcs8::PrivateKeyInfo::try_from(der).is_ok() || RsaPrivateKey::from_pkcs1_der(der).is_ok()
}

fn is_public_key(der: &[u8]) -> bool {
    RsaPublicKey::from_public_key_der(der).is_ok() || RsaPublicKey::from_pkcs1_der(der).is_ok()
}

fn check_size(bits: usize) -> Result<(), String> {
    if (MIN_BITS..=MAX_BITS).contains(&bits) {
        Ok(())
    } else {
        Err(format!(
            "this is a {bits}-bit RSA key; RSA2 needs {MIN_BITS} to {MAX_BITS} bits"
        ))
    }
}

/// Read the app private key in any of the accepted forms.
fn read_private_key(text: &str) -> Result<RsaPrivateKey, String> {
    const EXPECTED: &str = "expected the app private key (PKCS#1 or PKCS#8)";
    let key = decode_key_text(text)?;
    match &key.armor {
        Armor::Pem(label) => match label.as_str() {
            "RSA PRIVATE KEY" => RsaPrivateKey::from_pkcs1_der(&key.der).map_err(|_| {
                "this is labelled RSA PRIVATE KEY (PKCS#1) but does not parse as PKCS#1".to_owned()
            }),
            "PRIVATE KEY" => private_from_pkcs8(&key.der),
            "ENCRYPTED PRIVATE KEY" => Err(
                "this is an encrypted PKCS#8 key; export it without a passphrase (PKCS#1 or PKCS#8)"
                    .to_owned(),
            ),
            "PUBLIC KEY" | "RSA PUBLIC KEY" => Err(format!("this is a public key; {EXPECTED}")),
            "CERTIFICATE" => Err(format!("this is a certificate; {EXPECTED}")),
            other => Err(format!(
                "this is a PEM block labelled {other}; {EXPECTED}: RSA PRIVATE KEY or PRIVATE KEY"
            )),
        },
        Armor::Bare { base64_chars } => {
            if rsa::pkcs8::PrivateKeyInfo::try_from(key.der.as_slice()).is_ok() {
                private_from_pkcs8(&key.der)
            } else if let Ok(k) = RsaPrivateKey::from_pkcs1_der(&key.der) {
                Ok(k)
            } else if is_public_key(&key.der) {
                Err(format!("this is a public key; {EXPECTED}"))
            } else {
                Err(format!(
                    "not a PKCS#1 or PKCS#8 RSA private key (got {base64_chars} bytes of base64 that do not parse as either)"
                ))
            }
        }
    }
}

/// Read Alipay's public key (SPKI; a PKCS#1 `RSA PUBLIC KEY` is accepted too).
fn read_public_key(text: &str) -> Result<RsaPublicKey, String> {
    const EXPECTED: &str = "expected Alipay's public key (SPKI)";
    let key = decode_key_text(text)?;
    match &key.armor {
        Armor::Pem(label) => match label.as_str() {
            "PUBLIC KEY" => RsaPublicKey::from_public_key_der(&key.der).map_err(|_| {
                "this is labelled PUBLIC KEY but is not an RSA SubjectPublicKeyInfo".to_owned()
            }),
            "RSA PUBLIC KEY" => RsaPublicKey::from_pkcs1_der(&key.der).map_err(|_| {
                "this is labelled RSA PUBLIC KEY but does not parse as PKCS#1".to_owned()
            }),
            "RSA PRIVATE KEY" | "PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => {
                Err(format!("this is an RSA private key; {EXPECTED}"))
            }
            "CERTIFICATE" => Err(format!(
                "this is a certificate (public-key certificate mode is not supported); {EXPECTED} from the Alipay console"
            )),
            other => Err(format!("this is a PEM block labelled {other}; {EXPECTED}")),
        },
        Armor::Bare { base64_chars } => {
            if let Ok(k) = RsaPublicKey::from_public_key_der(&key.der) {
                Ok(k)
            } else if let Ok(k) = RsaPublicKey::from_pkcs1_der(&key.der) {
                Ok(k)
            } else if is_private_key(&key.der) {
                Err(format!("this is an RSA private key; {EXPECTED}"))
            } else {
                Err(format!(
                    "not an RSA public key (got {base64_chars} bytes of base64 that do not parse as SPKI or PKCS#1); {EXPECTED}"
                ))
            }
        }
    }
}

/// The app private key, ready for aws-lc-rs. Debug never shows it.
pub struct AppPrivateKey {
    pair: aws_lc_rs::rsa::KeyPair,
    public_spki: Vec<u8>,
    bits: usize,
}

impl fmt::Debug for AppPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppPrivateKey([REDACTED] {} bits)", self.bits)
    }
}

impl AppPrivateKey {
    /// Parse PKCS#1 or PKCS#8, PEM or bare base64. The error is a message for `private_key`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let key = read_private_key(text)?;
        let bits = key.n().bits();
        check_size(bits)?;
        let pkcs8 = key
            .to_pkcs8_der()
            .map_err(|_| "this key could not be re-encoded as PKCS#8".to_owned())?;
        let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8.as_bytes())
            .map_err(|e| format!("this key is rejected by the signer: {e}"))?;
        let public_spki = RsaPublicKey::from(&key)
            .to_public_key_der()
            .map_err(|_| "this key has a public half that cannot be encoded".to_owned())?
            .into_vec();
        Ok(AppPrivateKey {
            pair,
            public_spki,
            bits,
        })
    }

    /// The public half as SPKI DER (compared with the configured Alipay key).
    pub fn public_key_spki(&self) -> &[u8] {
        &self.public_spki
    }

    /// RSA2: RSASSA-PKCS1-v1_5 with SHA-256 over `message`, standard base64 with padding.
    pub fn sign_rsa2(&self, message: &[u8]) -> Result<String, SignError> {
        let mut signature = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| SignError)?;
        Ok(STANDARD.encode(signature))
    }
}

/// aws-lc-rs refused to sign (not expected with a key that parsed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the app private key could not sign")]
pub struct SignError;

/// Alipay's public key as SPKI DER.
#[derive(Clone, PartialEq, Eq)]
pub struct AlipayPublicKey {
    spki: Vec<u8>,
}

impl fmt::Debug for AlipayPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlipayPublicKey({} bytes SPKI)", self.spki.len())
    }
}

impl AlipayPublicKey {
    /// Parse SPKI (or PKCS#1 public), PEM or bare base64. The error is a message for
    /// `alipay_public_key`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let key = read_public_key(text)?;
        check_size(key.n().bits())?;
        let spki = key
            .to_public_key_der()
            .map_err(|_| "this key cannot be re-encoded as SPKI".to_owned())?
            .into_vec();
        Ok(AlipayPublicKey { spki })
    }

    /// The key of a certificate's SPKI (DER). The error is a message for the field it came from.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, String> {
        let key = RsaPublicKey::from_public_key_der(der)
            .map_err(|_| "the certificate's key is not an RSA public key".to_owned())?;
        check_size(key.n().bits())?;
        Ok(AlipayPublicKey { spki: der.to_vec() })
    }

    /// The key as SPKI DER.
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// Whether `signature_base64` is a valid RSA2 signature of `message`.
    pub fn verify_rsa2(&self, message: &[u8], signature_base64: &str) -> bool {
        let Ok(signature) = general_purpose::STANDARD.decode(signature_base64.as_bytes()) else {
            return false;
        };
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.spki)
            .verify(message, &signature)
            .is_ok()
    }
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
