//! The merchant API certificate that `/secapi/` calls (refunds) present over mutual TLS
//! (PROTOCOLS.md §B.1, §F.7): a PEM certificate + key pair, or WeChat's `apiclient_cert.p12`
//! (password = mch_id). Either is parsed and checked at config load (the key must belong to the
//! certificate) and re-encoded as the one PEM bundle that reqwest's rustls backend takes.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p12_keystore::Pkcs12Archive;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

/// Where a client identity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    /// `client_cert` + `client_key`.
    PemPair,
    /// `client_p12`.
    Pkcs12,
}

impl IdentitySource {
    /// The config key to blame when the identity cannot be used.
    pub fn field(self) -> &'static str {
        match self {
            IdentitySource::PemPair => "client_cert",
            IdentitySource::Pkcs12 => "client_p12",
        }
    }
}

/// A checked client certificate chain and its private key.
#[derive(Clone)]
pub struct ClientIdentity {
    /// Leaf certificate, any chain, then the key, as PEM (what `reqwest::Identity::from_pem` reads).
    pem: Vec<u8>,
    source: IdentitySource,
    /// DER of the leaf certificate (not secret).
    leaf_der: Vec<u8>,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("source", &self.source)
            .field("leaf_der", &self.leaf_der.len())
            .field("key", &"[REDACTED]")
            .finish()
    }
}

/// Why a certificate file cannot be used: the config key at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertError {
    /// `client_cert`, `client_key` or `client_p12`.
    pub field: &'static str,
    /// What is wrong, without any key material.
    pub message: String,
}

fn error(field: &'static str, message: impl Into<String>) -> CertError {
    CertError {
        field,
        message: message.into(),
    }
}

impl ClientIdentity {
    /// Which config keys it came from.
    pub fn source(&self) -> IdentitySource {
        self.source
    }

    /// The leaf certificate (DER).
    pub fn leaf_der(&self) -> &[u8] {
        &self.leaf_der
    }

    /// The identity for reqwest's rustls backend.
    pub fn reqwest_identity(&self) -> Result<reqwest::Identity, reqwest::Error> {
        reqwest::Identity::from_pem(&self.pem)
    }

    /// A PEM certificate chain (`client_cert`) and its private key (`client_key`: PKCS#8, PKCS#1
    /// or SEC1, unencrypted).
    pub fn from_pem_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, Vec<CertError>> {
        let certs = read_pem_certificates(cert_pem);
        let key = read_pem_key(key_pem);
        match (certs, key) {
            (Ok(certs), Ok(key)) => {
                checked(certs, key, IdentitySource::PemPair).map_err(|e| vec![e])
            }
            (certs, key) => Err(certs.err().into_iter().chain(key.err()).collect()),
        }
    }

    /// A PKCS#12 file (`client_p12`) opened with `password` (WeChat: the mch_id).
    pub fn from_pkcs12(p12: &[u8], password: &str) -> Result<Self, CertError> {
        let archive = Pkcs12Archive::from_pkcs12(p12, password).map_err(p12_error)?;
        let mut keys = archive.keys.into_iter();
        let Some(key_bag) = keys.next() else {
            return Err(error(
                "client_p12",
                "the PKCS#12 file holds no private key (export it with the key: \
                 openssl pkcs12 -export -in cert.pem -inkey key.pem)",
            ));
        };
        if keys.next().is_some() {
            return Err(error(
                "client_p12",
                "the PKCS#12 file holds several private keys; export only the merchant API key",
            ));
        }
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_bag.key.as_der().to_vec()));
        let provider = crypto_provider();
        let signing_key = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| {
                error(
                    "client_p12",
                    format!("the PKCS#12 private key is not a usable RSA/ECDSA/Ed25519 key: {e}"),
                )
            })?;
        // The leaf is the certificate of this key; the others are its chain, in file order.
        let all: Vec<CertificateDer<'static>> = archive
            .certs
            .iter()
            .map(|bag| CertificateDer::from(bag.cert.as_der().to_vec()))
            .collect();
        let leaf_index = all.iter().position(|cert| {
            CertifiedKey::new(vec![cert.clone()], Arc::clone(&signing_key))
                .keys_match()
                .is_ok()
        });
        let Some(leaf_index) = leaf_index else {
            return Err(error(
                "client_p12",
                if all.is_empty() {
                    "the PKCS#12 file holds no certificate".to_owned()
                } else {
                    format!(
                        "none of the {} certificate(s) in the PKCS#12 file belongs to its private key",
                        all.len()
                    )
                },
            ));
        };
        let mut chain = all;
        let leaf = chain.remove(leaf_index);
        chain.insert(0, leaf);
        checked(chain, key, IdentitySource::Pkcs12)
    }
}

fn crypto_provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

fn read_pem_certificates(pem_bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs: Result<Vec<_>, pem::Error> = CertificateDer::pem_slice_iter(pem_bytes).collect();
    match certs {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(error(
            "client_cert",
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----); for a .p12 file use client_p12",
        )),
        Err(e) => Err(error("client_cert", format!("is not valid PEM: {e}"))),
    }
}

fn read_pem_key(pem_bytes: &[u8]) -> Result<PrivateKeyDer<'static>, CertError> {
    let has_label = |label: &[u8]| pem_bytes.windows(label.len()).any(|w| w == label);
    if has_label(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || has_label(b"Proc-Type: 4,ENCRYPTED") {
        return Err(error(
            "client_key",
            "is an encrypted private key; store it decrypted \
             (openssl pkey -in apiclient_key.pem -out apiclient_key.pem) and protect the file instead",
        ));
    }
    PrivateKeyDer::from_pem_slice(pem_bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => error(
            "client_key",
            "holds no PEM private key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
        ),
        other => error("client_key", format!("is not valid PEM: {other}")),
    })
}

/// The key must parse and belong to the first certificate, and the certificate must parse.
fn checked(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    source: IdentitySource,
) -> Result<ClientIdentity, CertError> {
    let (cert_field, key_field) = match source {
        IdentitySource::PemPair => ("client_cert", "client_key"),
        IdentitySource::Pkcs12 => ("client_p12", "client_p12"),
    };
    let provider = crypto_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| {
            error(
                key_field,
                format!("is not a usable RSA/ECDSA/Ed25519 private key: {e}"),
            )
        })?;
    match CertifiedKey::new(chain.clone(), signing_key).keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(error(
                key_field,
                match source {
                    IdentitySource::PemPair => {
                        "does not match the certificate in client_cert (another key pair); \
                         use the apiclient_key.pem issued with that apiclient_cert.pem"
                    }
                    IdentitySource::Pkcs12 => {
                        "the private key does not match the certificate in the PKCS#12 file"
                    }
                },
            ));
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(error(
                cert_field,
                format!("the certificate cannot be parsed: {e}"),
            ));
        }
    }
    let leaf_der = chain
        .first()
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default();
    let mut pem = String::new();
    for cert in &chain {
        push_pem(&mut pem, "CERTIFICATE", cert.as_ref());
    }
    match &key {
        PrivateKeyDer::Pkcs1(k) => push_pem(&mut pem, "RSA PRIVATE KEY", k.secret_pkcs1_der()),
        PrivateKeyDer::Sec1(k) => push_pem(&mut pem, "EC PRIVATE KEY", k.secret_sec1_der()),
        PrivateKeyDer::Pkcs8(k) => push_pem(&mut pem, "PRIVATE KEY", k.secret_pkcs8_der()),
        _ => {
            return Err(error(
                key_field,
                "is a private key format this build cannot use",
            ));
        }
    }
    // The PEM bundle must be what reqwest accepts, or the HTTPS client fails later.
    let identity = ClientIdentity {
        pem: pem.into_bytes(),
        source,
        leaf_der,
    };
    identity.reqwest_identity().map_err(|e| {
        error(
            cert_field,
            format!("cannot be used as a TLS client identity: {e}"),
        )
    })?;
    Ok(identity)
}

fn push_pem(out: &mut String, label: &str, der: &[u8]) {
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    let encoded = STANDARD.encode(der);
    let mut rest = encoded.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
}

fn p12_error(e: p12_keystore::error::Error) -> CertError {
    use p12_keystore::error::Error as E;
    let message = match e {
        E::MacError(_) => {
            "cannot open the PKCS#12 file with the password mch_id: its MAC does not \
             verify (a wrong or re-exported file, or one from another merchant)"
                .to_owned()
        }
        E::UnsupportedEncryptionScheme => "the PKCS#12 file uses an encryption scheme this build \
             cannot read (supported: pbeWithSHAAnd3-KeyTripleDES-CBC, pbeWithSHAAnd40BitRC2-CBC, \
             PBES2 with AES); convert it to PEM (openssl pkcs12 -legacy -in apiclient_cert.p12 \
             -nodes) and set client_cert + client_key instead"
            .to_owned(),
        E::UnsupportedMacAlgorithm => "the PKCS#12 file uses a MAC algorithm this build cannot \
             check (supported: HMAC-SHA1, HMAC-SHA256); convert it to PEM and set client_cert + \
             client_key instead"
            .to_owned(),
        E::UnpadError | E::InvalidLength => "cannot decrypt the PKCS#12 file with the password \
             mch_id (wrong password or damaged file)"
            .to_owned(),
        other => format!("is not a readable PKCS#12 file: {other}"),
    };
    error("client_p12", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/certs/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    const PASSWORD: &str = "1900000109";

    #[test]
    fn a_matching_pem_pair_is_accepted_in_pkcs8_and_pkcs1() {
        for key in ["client_key.pem", "client_key_pkcs1.pem"] {
            let identity =
                ClientIdentity::from_pem_pair(&fixture("client_cert.pem"), &fixture(key))
                    .unwrap_or_else(|e| panic!("{key}: {e:?}"));
            assert_eq!(identity.source(), IdentitySource::PemPair);
            assert!(!identity.leaf_der().is_empty());
        }
    }

    #[test]
    fn a_mismatched_pair_names_client_key() {
        let errs =
            ClientIdentity::from_pem_pair(&fixture("client_cert.pem"), &fixture("other_key.pem"))
                .unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "client_key");
        assert!(errs[0].message.contains("does not match"), "{errs:?}");
    }

    #[test]
    fn swapped_or_garbage_files_name_each_field() {
        let errs =
            ClientIdentity::from_pem_pair(&fixture("client_key.pem"), &fixture("client_cert.pem"))
                .unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.field == "client_cert" && e.message.contains("no PEM certificate")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.field == "client_key" && e.message.contains("no PEM private key")),
            "{errs:?}"
        );
        let errs = ClientIdentity::from_pem_pair(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            &fixture("client_key.pem"),
        )
        .unwrap_err();
        assert_eq!(errs[0].field, "client_cert", "{errs:?}");
        assert!(errs[0].message.contains("cannot be parsed"), "{errs:?}");
        let errs = ClientIdentity::from_pem_pair(
            &fixture("client_cert.pem"),
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert_eq!(errs[0].field, "client_key", "{errs:?}");
    }

    #[test]
    fn an_encrypted_key_is_refused_with_advice() {
        let errs = ClientIdentity::from_pem_pair(
            &fixture("client_cert.pem"),
            &fixture("client_key_encrypted.pem"),
        )
        .unwrap_err();
        assert_eq!(errs[0].field, "client_key");
        assert!(errs[0].message.contains("encrypted"), "{errs:?}");
    }

    #[test]
    fn legacy_rc2_and_3des_p12_opens_with_the_mch_id() {
        let identity =
            ClientIdentity::from_pkcs12(&fixture("client_legacy.p12"), PASSWORD).expect("legacy");
        assert_eq!(identity.source(), IdentitySource::Pkcs12);
        let pem_pair =
            ClientIdentity::from_pem_pair(&fixture("client_cert.pem"), &fixture("client_key.pem"))
                .expect("pem");
        assert_eq!(identity.leaf_der(), pem_pair.leaf_der());
    }

    #[test]
    fn modern_aes_p12_opens_too() {
        let identity =
            ClientIdentity::from_pkcs12(&fixture("client_modern.p12"), PASSWORD).expect("modern");
        assert!(!identity.leaf_der().is_empty());
    }

    #[test]
    fn a_wrong_password_says_so() {
        let err =
            ClientIdentity::from_pkcs12(&fixture("client_legacy.p12"), "1900000108").unwrap_err();
        assert_eq!(err.field, "client_p12");
        assert!(err.message.contains("password mch_id"), "{err:?}");
    }

    #[test]
    fn an_unsupported_p12_scheme_says_which_are_supported() {
        let err = ClientIdentity::from_pkcs12(&fixture("client_md5des.p12"), PASSWORD).unwrap_err();
        assert_eq!(err.field, "client_p12");
        assert!(
            err.message
                .contains("encryption scheme this build cannot read")
                && err.message.contains("client_cert + client_key"),
            "{err:?}"
        );
    }

    #[test]
    fn a_pem_file_given_as_p12_is_not_readable() {
        let err = ClientIdentity::from_pkcs12(&fixture("client_cert.pem"), PASSWORD).unwrap_err();
        assert_eq!(err.field, "client_p12");
        assert!(err.message.contains("PKCS#12"), "{err:?}");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let identity =
            ClientIdentity::from_pem_pair(&fixture("client_cert.pem"), &fixture("client_key.pem"))
                .expect("pem");
        let debug = format!("{identity:?}");
        assert!(
            debug.contains("REDACTED") && !debug.contains("PRIVATE"),
            "{debug}"
        );
    }
}
