//! Alipay's public-key certificate mode (公钥证书模式) for one tenant: the numbers its requests
//! carry, the Alipay certificates it trusts, and the trust of a certificate downloaded later
//! (`alipay.open.app.alipaycert.download`): only if its chain verifies to a configured root.
//!
//! Alipay names the certificate that signed an answer in `alipay_cert_sn`. The configured one
//! (`alipay_public_cert`) is known from the start; when Alipay rotates its certificate, an answer
//! names a new number, the gateway downloads that certificate once, checks its chain against
//! `alipay_root_cert` and its validity, keeps it, and verifies the answer with it.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;

use crate::cert_sn::{cert_sn, first_cert_sn, root_cert_sn};
use crate::keys::AlipayPublicKey;

/// The longest chain followed from a leaf to a root.
const MAX_CHAIN: usize = 5;

/// A tenant's certificate mode.
#[derive(Debug)]
pub struct CertMode {
    /// `app_cert_sn` of the app's certificate.
    pub app_cert_sn: String,
    /// `alipay_root_cert_sn` of the root bundle.
    pub root_cert_sn: String,
    /// The number of the configured Alipay certificate.
    pub alipay_cert_sn: String,
    /// The RSA-family roots (DER), the only anchors of trust.
    roots: Vec<Vec<u8>>,
    /// Alipay certificates trusted since (downloaded), by number.
    downloaded: Mutex<HashMap<String, AlipayPublicKey>>,
    /// Numbers whose download was refused, and when: not asked again for a while.
    refused: Mutex<HashMap<String, DateTime<Utc>>>,
}

/// How long a number whose certificate was refused is not downloaded again.
pub const REFUSED_FOR: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// The DER of every certificate of a PEM text, in order.
fn ders(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| format!("not PEM: {e}"))?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    if out.is_empty() {
        return Err("no PEM certificate in it".to_owned());
    }
    Ok(out)
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| format!("a certificate does not parse: {e}"))
}

fn is_rsa_family(cert: &X509Certificate<'_>) -> bool {
    cert.signature_algorithm
        .algorithm
        .to_id_string()
        .starts_with("1.2.840.113549.1.1.")
}

/// Checks that the first certificate of `chain_pem` was issued, through the others in the file if
/// needed, under one of `roots`, each link's signature verified and each certificate valid at
/// `now`; returns the leaf's number and public key.
pub fn verify_chain(
    chain_pem: &str,
    roots: &[Vec<u8>],
    now: DateTime<Utc>,
) -> Result<(String, AlipayPublicKey), String> {
    let chain = ders(chain_pem)?;
    let parsed: Vec<X509Certificate<'_>> =
        chain.iter().map(|d| parse(d)).collect::<Result<_, _>>()?;
    let anchors: Vec<X509Certificate<'_>> =
        roots.iter().map(|d| parse(d)).collect::<Result<_, _>>()?;
    let leaf = parsed.first().ok_or("no certificate")?;
    let at = x509_parser::time::ASN1Time::from_timestamp(now.timestamp())
        .map_err(|_| "the clock is out of range".to_owned())?;
    let mut current = leaf;
    for _ in 0..MAX_CHAIN {
        if !current.validity().is_valid_at(at) {
            return Err(format!(
                "certificate {} is outside its validity ({} to {})",
                current.subject(),
                current.validity().not_before,
                current.validity().not_after
            ));
        }
        // A configured root that issued it ends the chain.
        if let Some(root) = anchors.iter().find(|r| {
            r.subject().as_raw() == current.issuer().as_raw()
                && current.verify_signature(Some(r.public_key())).is_ok()
        }) {
            if !root.validity().is_valid_at(at) {
                return Err(format!("root {} is outside its validity", root.subject()));
            }
            let key = AlipayPublicKey::from_spki_der(leaf.public_key().raw)?;
            return Ok((cert_sn(leaf), key));
        }
        // Otherwise an issuer from the same file, whose signature verifies.
        let next = parsed.iter().find(|c| {
            !std::ptr::eq(*c, current)
                && c.subject().as_raw() == current.issuer().as_raw()
                && current.verify_signature(Some(c.public_key())).is_ok()
        });
        match next {
            Some(issuer) => current = issuer,
            None => {
                return Err(format!(
                    "certificate {} is not issued under the configured alipay_root_cert",
                    current.subject()
                ));
            }
        }
    }
    Err("the certificate chain is too long".to_owned())
}

/// What is wrong with the certificate-mode settings, by field.
pub type FieldProblems = Vec<(&'static str, String)>;

impl CertMode {
    /// The mode from the three PEM texts, and the key of the configured Alipay certificate
    /// (which verifies notifications). `app_spki` is the app private key's public half: the app
    /// certificate must be its certificate.
    pub fn new(
        app_cert: &str,
        alipay_public_cert: &str,
        alipay_root_cert: &str,
        app_spki: Option<&[u8]>,
        now: DateTime<Utc>,
    ) -> Result<(CertMode, AlipayPublicKey), FieldProblems> {
        let mut problems: FieldProblems = Vec::new();
        let app_cert_sn = first_cert_sn(app_cert)
            .map_err(|e| problems.push(("app_cert", e.to_string())))
            .ok();
        if let (Some(spki), Ok(app)) = (app_spki, ders(app_cert))
            && let Some(Ok(first)) = app.first().map(|d| parse(d))
            && first.public_key().raw != spki
        {
            problems.push((
                "app_cert",
                "is not the certificate of private_key (its public key differs)".to_owned(),
            ));
        }
        let root_cert_sn = root_cert_sn(alipay_root_cert)
            .map_err(|e| problems.push(("alipay_root_cert", e.to_string())))
            .ok();
        let roots: Vec<Vec<u8>> = ders(alipay_root_cert)
            .unwrap_or_default()
            .into_iter()
            .filter(|d| parse(d).is_ok_and(|c| is_rsa_family(&c)))
            .collect();
        let alipay = match verify_chain(alipay_public_cert, &roots, now) {
            Ok(found) => Some(found),
            Err(e) if roots.is_empty() => {
                tracing::debug!("alipay_public_cert not checked without roots: {e}");
                None
            }
            Err(e) => {
                problems.push(("alipay_public_cert", e));
                None
            }
        };
        match (app_cert_sn, root_cert_sn, alipay) {
            (Some(app_cert_sn), Some(root_cert_sn), Some((alipay_cert_sn, key)))
                if problems.is_empty() =>
            {
                Ok((
                    CertMode {
                        app_cert_sn,
                        root_cert_sn,
                        alipay_cert_sn,
                        roots,
                        downloaded: Mutex::new(HashMap::new()),
                        refused: Mutex::new(HashMap::new()),
                    },
                    key,
                ))
            }
            _ => Err(problems),
        }
    }

    /// A certificate downloaded earlier for this number.
    pub fn downloaded(&self, sn: &str) -> Option<AlipayPublicKey> {
        self.downloaded.lock().ok().and_then(|d| d.get(sn).cloned())
    }

    /// Every certificate downloaded and trusted so far.
    pub fn downloaded_keys(&self) -> Vec<AlipayPublicKey> {
        self.downloaded
            .lock()
            .map(|d| d.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether the certificate of `sn` was refused less than [`REFUSED_FOR`] ago.
    pub fn refused_recently(&self, sn: &str, now: DateTime<Utc>) -> bool {
        self.refused
            .lock()
            .ok()
            .and_then(|r| r.get(sn).copied())
            .is_some_and(|at| now - at < REFUSED_FOR)
    }

    /// Remember that the certificate of `sn` was refused at `now`.
    pub fn remember_refused(&self, sn: &str, now: DateTime<Utc>) {
        if let Ok(mut refused) = self.refused.lock() {
            // Bounded: answers name few certificates; an old entry is only a delay.
            if refused.len() >= 64 {
                refused.clear();
            }
            refused.insert(sn.to_owned(), now);
        }
    }

    /// Trust a downloaded certificate file for `sn`: its chain must verify to a configured root,
    /// and its leaf must be the certificate of that number.
    pub fn trust_download(
        &self,
        sn: &str,
        chain_pem: &str,
        now: DateTime<Utc>,
    ) -> Result<AlipayPublicKey, String> {
        let (found, key) = verify_chain(chain_pem, &self.roots, now)?;
        if found != sn {
            return Err(format!(
                "the downloaded certificate is {found}, not the {sn} that was asked for"
            ));
        }
        if let Ok(mut known) = self.downloaded.lock() {
            known.insert(found, key.clone());
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sandbox-keys");
    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/alipay-cert");

    fn read(path: &str) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    fn sandbox(name: &str) -> String {
        read(&format!("{KEYS}/{name}"))
    }

    fn mode() -> (CertMode, AlipayPublicKey) {
        CertMode::new(
            &sandbox("app_cert.crt"),
            &sandbox("alipay_cert.crt"),
            &sandbox("alipay_root_cert.crt"),
            None,
            Utc::now(),
        )
        .unwrap()
    }

    #[test]
    fn the_configured_certificate_gives_the_alipay_key_and_the_numbers() {
        let (mode, key) = mode();
        let public = AlipayPublicKey::parse(&sandbox("alipay_sandbox_public.pem")).unwrap();
        assert_eq!(key, public, "the certificate holds the sandbox Alipay key");
        assert_eq!(
            mode.alipay_cert_sn,
            first_cert_sn(&sandbox("alipay_cert.crt")).unwrap()
        );
        assert_eq!(
            mode.root_cert_sn,
            root_cert_sn(&sandbox("alipay_root_cert.crt")).unwrap()
        );
    }

    #[test]
    fn a_rotated_certificate_under_the_root_is_trusted_and_a_rogue_one_is_not() {
        let (mode, _) = mode();
        let rotated = sandbox("alipay_rotated_cert.crt");
        let sn = first_cert_sn(&rotated).unwrap();
        assert!(mode.downloaded(&sn).is_none());
        let key = mode.trust_download(&sn, &rotated, Utc::now()).unwrap();
        assert_eq!(mode.downloaded(&sn), Some(key));

        // Same subject and issuer name, but signed by another root's key.
        let rogue = sandbox("alipay_rogue_cert.crt");
        let rogue_sn = first_cert_sn(&rogue).unwrap();
        let e = mode
            .trust_download(&rogue_sn, &rogue, Utc::now())
            .unwrap_err();
        assert!(
            e.contains("not issued under the configured alipay_root_cert"),
            "{e}"
        );
        assert!(mode.downloaded(&rogue_sn).is_none());
        // A genuine certificate offered for another number is refused too.
        let e = mode
            .trust_download(&rogue_sn, &rotated, Utc::now())
            .unwrap_err();
        assert!(e.contains("not the"), "{e}");
        // And one that has expired.
        let later = Utc::now() + chrono::Duration::days(365 * 20);
        assert!(
            mode.trust_download(&sn, &rotated, later)
                .unwrap_err()
                .contains("validity")
        );
    }

    #[test]
    fn settings_that_do_not_fit_together_are_refused_by_field() {
        // The app certificate of another key.
        let other_key =
            crate::keys::AppPrivateKey::parse(&read(&format!("{FIXTURES}/app_key.pem"))).unwrap();
        let problems = CertMode::new(
            &sandbox("app_cert.crt"),
            &sandbox("alipay_cert.crt"),
            &sandbox("alipay_root_cert.crt"),
            Some(other_key.public_key_spki()),
            Utc::now(),
        )
        .unwrap_err();
        assert!(
            problems
                .iter()
                .any(|(f, m)| *f == "app_cert" && m.contains("private_key")),
            "{problems:?}"
        );
        // An Alipay certificate from another hierarchy.
        let problems = CertMode::new(
            &sandbox("app_cert.crt"),
            &read(&format!("{FIXTURES}/alipay_cert.crt")),
            &sandbox("alipay_root_cert.crt"),
            None,
            Utc::now(),
        )
        .unwrap_err();
        assert!(
            problems.iter().any(|(f, _)| *f == "alipay_public_cert"),
            "{problems:?}"
        );
        // A root bundle without an RSA root.
        let problems = CertMode::new(
            &sandbox("app_cert.crt"),
            &sandbox("alipay_cert.crt"),
            &read(&format!("{FIXTURES}/root_ec.pem")),
            None,
            Utc::now(),
        )
        .unwrap_err();
        assert!(
            problems
                .iter()
                .any(|(f, m)| *f == "alipay_root_cert" && m.contains("RSA")),
            "{problems:?}"
        );
    }
}
