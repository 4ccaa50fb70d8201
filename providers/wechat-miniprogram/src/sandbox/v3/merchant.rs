//! What the simulator knows of a v3 merchant, read from the tenant's provider table by its own
//! code, and which of WeChat's keys signs for that merchant (certificate mode, public-key mode,
//! or the gradual switch between them).

use std::path::Path;

use aws_lc_rs::signature::KeyPair as _;

use super::keys::{Signer, pem_der, private_key};

/// A merchant's v3 credentials as WeChat holds them.
#[derive(Debug, Clone)]
pub(crate) struct V3Merchant {
    /// The APIv3 key (32 bytes): seals notifications and downloaded certificates.
    pub(crate) apiv3_key: String,
    /// The serial of the merchant API certificate (upper-case hex); requests name it.
    pub(crate) serial_no: String,
    /// The merchant's public key (PKCS#1 `RSAPublicKey` DER): verifies its requests.
    pub(crate) public_key: Vec<u8>,
}

/// `PUB_KEY_ID_…` of the sandbox WeChat Pay public key for a merchant (WeChat gives each
/// merchant its own id).
pub(crate) fn public_key_id(mch_id: &str) -> String {
    format!("PUB_KEY_ID_0114{mch_id}00000000000001")
}

/// Reads the v3 part of a `[providers.wechat_miniprogram]` table: `apiv3_key`, and the merchant
/// key from `client_cert` (the certificate WeChat holds) or else `client_key`, with
/// `merchant_serial_no` or the certificate's serial. Paths are relative to `base_dir`. `None`
/// (logged) when something is missing: the simulator then refuses that merchant's v3 calls.
pub(crate) fn from_table(table: &toml::Table, base_dir: &Path) -> Option<V3Merchant> {
    let text = |key: &str| {
        table
            .get(key)
            .and_then(toml::Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let apiv3_key = text("apiv3_key")?.to_owned();
    let read = |key: &str| -> Option<String> {
        let path = base_dir.join(text(key)?);
        std::fs::read_to_string(&path)
            .map_err(|e| {
                tracing::warn!(path = %path.display(), "wechat sandbox: cannot read {key}: {e}");
            })
            .ok()
    };
    let certificate = read("client_cert").and_then(|pem| {
        let (_, der) = pem_der(&pem).ok()?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
        let serial = cert.raw_serial_as_string().replace(':', "").to_uppercase();
        let key = cert.public_key().subject_public_key.data.to_vec();
        Some((serial, key))
    });
    let (cert_serial, public_key) = match certificate {
        Some((serial, key)) => (Some(serial), key),
        None => {
            let key = read("client_key").and_then(|pem| {
                private_key(&pem)
                    .map_err(|e| tracing::warn!("wechat sandbox: client_key: {e}"))
                    .ok()
            })?;
            (None, key.public_key().as_ref().to_vec())
        }
    };
    let serial_no = text("merchant_serial_no")
        .map(str::to_uppercase)
        .or(cert_serial)?;
    Some(V3Merchant {
        apiv3_key,
        serial_no,
        public_key,
    })
}

/// Which key signs a merchant's notifications and answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyMode {
    /// Platform certificates only (merchants opened before the public key existed).
    Certificate,
    /// The WeChat Pay public key only (every new merchant); `GET /v3/certificates` is a 404.
    PublicKey,
    /// The switch: this percentage of notifications is signed with the public key, the rest
    /// with the platform certificate, spread evenly.
    Switching(u8),
}

impl KeyMode {
    /// The wire name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            KeyMode::Certificate => "certificate",
            KeyMode::PublicKey => "public_key",
            KeyMode::Switching(_) => "switching",
        }
    }
}

/// A merchant's mode and how many notifications it signed since the mode was set.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyState {
    pub(crate) mode: KeyMode,
    signed: u64,
}

impl KeyState {
    /// A merchant first seen: public-key mode if its table names a public key, else
    /// certificate mode.
    pub(crate) fn initial(table: &toml::Table) -> KeyState {
        let mode = if table.contains_key("wechatpay_public_key_id") {
            KeyMode::PublicKey
        } else {
            KeyMode::Certificate
        };
        KeyState::new(mode)
    }

    /// A fresh state in `mode`.
    pub(crate) fn new(mode: KeyMode) -> KeyState {
        KeyState { mode, signed: 0 }
    }

    /// The key of the next notification. While switching, notification `n` (from 0) uses the
    /// public key when `⌊(n+1)·p/100⌋ > ⌊n·p/100⌋`: exactly `p` in every 100, evenly spread.
    pub(crate) fn next_notification(&mut self) -> Signer {
        match self.mode {
            KeyMode::Certificate => Signer::Platform,
            KeyMode::PublicKey => Signer::PublicKey,
            KeyMode::Switching(percent) => {
                let n = self.signed;
                self.signed = self.signed.wrapping_add(1);
                let p = u64::from(percent);
                if (n + 1) * p / 100 > n * p / 100 {
                    Signer::PublicKey
                } else {
                    Signer::Platform
                }
            }
        }
    }

    /// The key of an answer: the one the request's `Wechatpay-Serial` names, if the merchant has
    /// it; otherwise the public key in public-key mode and the certificate before.
    pub(crate) fn answer(&self, named: Option<Signer>) -> Signer {
        match (self.mode, named) {
            (KeyMode::PublicKey, _) => Signer::PublicKey,
            (KeyMode::Certificate, _) => Signer::Platform,
            (KeyMode::Switching(_), Some(signer)) => signer,
            (KeyMode::Switching(_), None) => Signer::Platform,
        }
    }

    /// Whether `GET /v3/certificates` has something to serve.
    pub(crate) fn has_certificates(&self) -> bool {
        self.mode != KeyMode::PublicKey
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_signs_exactly_the_share_asked_evenly() {
        let mut state = KeyState::new(KeyMode::Switching(30));
        let signers: Vec<Signer> = (0..100).map(|_| state.next_notification()).collect();
        let public = signers.iter().filter(|s| **s == Signer::PublicKey).count();
        assert_eq!(public, 30);
        // Evenly: never more than 3 in any 10 in a row.
        for window in signers.chunks(10) {
            let n = window.iter().filter(|s| **s == Signer::PublicKey).count();
            assert_eq!(n, 3);
        }
        let mut all = KeyState::new(KeyMode::Switching(100));
        assert!((0..10).all(|_| all.next_notification() == Signer::PublicKey));
        let mut none = KeyState::new(KeyMode::Switching(0));
        assert!((0..10).all(|_| none.next_notification() == Signer::Platform));
    }

    #[test]
    fn answers_follow_the_named_key_only_during_a_switch() {
        let switching = KeyState::new(KeyMode::Switching(50));
        assert_eq!(switching.answer(Some(Signer::PublicKey)), Signer::PublicKey);
        assert_eq!(switching.answer(None), Signer::Platform);
        let certificate = KeyState::new(KeyMode::Certificate);
        assert_eq!(
            certificate.answer(Some(Signer::PublicKey)),
            Signer::Platform
        );
    }
}
