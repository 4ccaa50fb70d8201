//! A merchant's WeChat Pay platform certificates, downloaded when needed (PROTOCOLS.md §G).
//!
//! There is no timer. A merchant that receives nothing costs nothing, and 10 000 idle tenants
//! cost 10 000 small maps. A lookup downloads (`GET /v3/certificates`) only in two cases: when
//! `Wechatpay-Serial` names a certificate it does not hold, or when the one it holds expires within
//! [`RENEW_BEFORE_SECONDS`].
//! - At most one download per merchant is in flight; concurrent lookups wait for it and use its
//!   result.
//! - After a download, another one waits [`MIN_REFRESH_SECONDS`], so a forged serial cannot make
//!   paybridge download on every request.
//! - A downloaded certificate is trusted only if it decrypts under the merchant's APIv3 key (the
//!   AEAD tag authenticates it) and its serial is the one listed beside it. Anything else is
//!   skipped, never trusted.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretSlice};
use serde::Deserialize;

use super::crypto::{PlatformCertificate, V3Error, VerifyingKey, decrypt, normalize_serial};

/// A certificate that expires within this is renewed by the next lookup that uses it.
pub const RENEW_BEFORE_SECONDS: i64 = 24 * 3600;

/// The least time between two downloads of one merchant's certificates.
pub const MIN_REFRESH_SECONDS: i64 = 60;

/// Where the certificates come from: `GET /v3/certificates`, signed and sent by the v3 client.
#[async_trait]
pub trait CertificateDownload: Send + Sync {
    /// The answer's body. Whether its signature verifies is the client's concern: the
    /// certificates in it are trusted for decrypting under the APIv3 key, not for the signature.
    async fn download(&self) -> Result<Vec<u8>, String>;
}

#[derive(Deserialize)]
struct Listing {
    data: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    serial_no: String,
    encrypt_certificate: Sealed,
}

#[derive(Deserialize)]
struct Sealed {
    algorithm: String,
    nonce: String,
    associated_data: String,
    ciphertext: String,
}

/// The certificates of a download that can be trusted, valid at `now`. Entries that do not
/// decrypt, do not parse, or carry another serial than the one listed are skipped (and logged).
pub fn trusted_certificates(
    body: &[u8],
    apiv3_key: &[u8],
    now: i64,
) -> Result<Vec<PlatformCertificate>, V3Error> {
    let listing: Listing = serde_json::from_slice(body)
        .map_err(|e| V3Error::Download(format!("not a certificate listing: {e}")))?;
    let mut trusted = Vec::new();
    for entry in listing.data {
        let sealed = &entry.encrypt_certificate;
        let serial = normalize_serial(&entry.serial_no);
        if sealed.algorithm != "AEAD_AES_256_GCM" {
            tracing::warn!(serial = %serial, algorithm = %sealed.algorithm, "platform certificate skipped: unknown algorithm");
            continue;
        }
        let pem = match decrypt(
            apiv3_key,
            &sealed.nonce,
            &sealed.associated_data,
            &sealed.ciphertext,
        ) {
            Ok(pem) => pem,
            Err(e) => {
                tracing::warn!(serial = %serial, error = %e, "platform certificate skipped: it does not decrypt under the APIv3 key");
                continue;
            }
        };
        let cert = match std::str::from_utf8(&pem)
            .map_err(|_| "not UTF-8".to_owned())
            .and_then(|text| {
                PlatformCertificate::from_pem(text, "platform_certificates")
                    .map_err(|e| e.to_string())
            }) {
            Ok(cert) => cert,
            Err(e) => {
                tracing::warn!(serial = %serial, error = %e, "platform certificate skipped: not a certificate");
                continue;
            }
        };
        if cert.serial != serial {
            tracing::warn!(listed = %serial, inside = %cert.serial, "platform certificate skipped: its serial is not the one listed");
            continue;
        }
        if !cert.valid_at(now) {
            tracing::info!(serial = %serial, "platform certificate skipped: not valid now");
            continue;
        }
        trusted.push(cert);
    }
    Ok(trusted)
}

/// One merchant's platform certificates. See the module docs.
pub struct PlatformCertificates {
    apiv3_key: SecretSlice<u8>,
    known: RwLock<HashMap<String, PlatformCertificate>>,
    /// Held while a download is in flight; the time of the last download attempt.
    last_download: tokio::sync::Mutex<Option<i64>>,
}

impl std::fmt::Debug for PlatformCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformCertificates")
            .field("serials", &self.serials())
            .finish_non_exhaustive()
    }
}

impl PlatformCertificates {
    /// A merchant's store, with the certificates configured in its file (trusted as configured).
    pub fn new(apiv3_key: &[u8], configured: Vec<PlatformCertificate>) -> PlatformCertificates {
        PlatformCertificates {
            apiv3_key: SecretSlice::from(apiv3_key.to_vec()),
            known: RwLock::new(
                configured
                    .into_iter()
                    .map(|c| (c.serial.clone(), c))
                    .collect(),
            ),
            last_download: tokio::sync::Mutex::new(None),
        }
    }

    /// The serials held now, sorted.
    pub fn serials(&self) -> Vec<String> {
        let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
        let mut serials: Vec<String> = known.keys().cloned().collect();
        serials.sort();
        serials
    }

    fn held(&self, serial: &str) -> Option<PlatformCertificate> {
        self.known
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(serial)
            .cloned()
    }

    /// The key of the certificate `serial` names, valid at `now` (Unix seconds), downloading
    /// the certificates first when it is unknown or about to expire.
    pub async fn key_for(
        &self,
        serial: &str,
        now: i64,
        source: &dyn CertificateDownload,
    ) -> Result<VerifyingKey, V3Error> {
        let serial = normalize_serial(serial);
        if let Some(cert) = self.held(&serial).filter(|c| c.valid_at(now)) {
            if cert.not_after - now < RENEW_BEFORE_SECONDS
                && let Err(e) = self.refresh(now, source).await
            {
                // The certificate in hand is still valid: use it, and try again later.
                tracing::warn!(serial = %serial, error = %e, "platform certificate renewal failed");
            }
            return Ok(cert.key);
        }
        self.refresh(now, source).await?;
        self.held(&serial)
            .filter(|c| c.valid_at(now))
            .map(|c| c.key)
            .ok_or(V3Error::UnknownSerial(serial))
    }

    /// Download and keep the trusted certificates, unless a download ran in the last
    /// [`MIN_REFRESH_SECONDS`]. Concurrent callers wait for the one download in flight.
    /// Returns how many certificates the download brought (0 when none was made).
    pub async fn refresh(
        &self,
        now: i64,
        source: &dyn CertificateDownload,
    ) -> Result<usize, V3Error> {
        let mut last = self.last_download.lock().await;
        if last.is_some_and(|t| now - t < MIN_REFRESH_SECONDS) {
            return Ok(0);
        }
        *last = Some(now);
        let body = source.download().await.map_err(V3Error::Download)?;
        let fresh = trusted_certificates(&body, self.apiv3_key.expose_secret(), now)?;
        let count = fresh.len();
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        for cert in fresh {
            known.insert(cert.serial.clone(), cert);
        }
        // Expired certificates go; the rest (configured or downloaded earlier) stay until then.
        known.retain(|_, c| c.not_after >= now);
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::{Value, json};

    use super::*;

    const VECTORS: &str = include_str!("../../../../fixtures/wechatpay-v3/vectors.json");
    const PLATFORM_CERT: &str = include_str!("../../../../fixtures/wechatpay-v3/platform_cert.pem");
    /// 2026-12-06, inside the fixture certificate's validity (2026-01-01 to 2036-01-01).
    const NOW: i64 = 1_796_544_000;

    /// The sealed certificate of the fixtures (the SDK opened it), as `GET /v3/certificates`
    /// lists it, with `listed` as its serial.
    fn listing(listed: &str, apiv3_key_ok: bool) -> Vec<u8> {
        let v: Value = serde_json::from_str(VECTORS).unwrap();
        let r = v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["associated_data"] == "certificate")
            .unwrap();
        let mut ciphertext = r["ciphertext"].as_str().unwrap().to_owned();
        if !apiv3_key_ok {
            // Sealed under another key: the tag does not verify.
            ciphertext = ciphertext.replacen('A', "B", 1);
        }
        serde_json::to_vec(&json!({"data": [{
            "serial_no": listed,
            "effective_time": "2026-01-01T08:00:00+08:00",
            "expire_time": "2036-01-01T08:00:00+08:00",
            "encrypt_certificate": {
                "algorithm": "AEAD_AES_256_GCM",
                "nonce": r["nonce"], "associated_data": "certificate", "ciphertext": ciphertext,
            },
        }]}))
        .unwrap()
    }

    fn apiv3_key() -> Vec<u8> {
        let v: Value = serde_json::from_str(VECTORS).unwrap();
        v["apiv3_key"].as_str().unwrap().as_bytes().to_vec()
    }

    fn serial() -> String {
        let v: Value = serde_json::from_str(VECTORS).unwrap();
        v["platform_serial_no"].as_str().unwrap().to_owned()
    }

    /// Counts downloads; each takes a moment, so that concurrent lookups overlap it.
    struct Source {
        body: Vec<u8>,
        fail: bool,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl CertificateDownload for Source {
        async fn download(&self) -> Result<Vec<u8>, String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            if self.fail {
                return Err("connection refused".to_owned());
            }
            Ok(self.body.clone())
        }
    }

    fn source(body: Vec<u8>, fail: bool) -> Arc<Source> {
        Arc::new(Source {
            body,
            fail,
            calls: AtomicUsize::new(0),
        })
    }

    #[tokio::test]
    async fn an_unknown_serial_is_downloaded_once_for_fifty_concurrent_lookups() {
        let store = Arc::new(PlatformCertificates::new(&apiv3_key(), Vec::new()));
        let src = source(listing(&serial(), true), false);
        let mut lookups = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (store, src, serial) = (store.clone(), src.clone(), serial().to_lowercase());
            lookups.spawn(async move { store.key_for(&serial, NOW, src.as_ref()).await });
        }
        while let Some(found) = lookups.join_next().await {
            found.unwrap().unwrap();
        }
        assert_eq!(src.calls.load(Ordering::SeqCst), 1);
        assert_eq!(store.serials(), vec![serial()]);
    }

    #[tokio::test]
    async fn a_certificate_that_does_not_decrypt_is_never_trusted_and_a_forged_serial_costs_one_download_a_minute()
     {
        let store = PlatformCertificates::new(&apiv3_key(), Vec::new());
        let src = source(listing(&serial(), false), false);
        for i in 0..10 {
            let found = store.key_for(&serial(), NOW + i, src.as_ref()).await;
            assert_eq!(found, Err(V3Error::UnknownSerial(serial())));
        }
        assert_eq!(src.calls.load(Ordering::SeqCst), 1);
        assert!(store.serials().is_empty());
        // A minute later a lookup may download again.
        let _ = store
            .key_for(&serial(), NOW + MIN_REFRESH_SECONDS, src.as_ref())
            .await;
        assert_eq!(src.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_certificate_listed_under_another_serial_is_skipped() {
        let store = PlatformCertificates::new(&apiv3_key(), Vec::new());
        let src = source(listing("1234ABCD", true), false);
        let found = store.key_for("1234ABCD", NOW, src.as_ref()).await;
        assert_eq!(found, Err(V3Error::UnknownSerial("1234ABCD".to_owned())));
        assert!(store.serials().is_empty());
    }

    #[tokio::test]
    async fn a_configured_certificate_needs_no_download_until_it_nears_its_end() {
        let cert = PlatformCertificate::from_pem(PLATFORM_CERT, "platform_certificates").unwrap();
        let not_after = cert.not_after;
        let store = PlatformCertificates::new(&apiv3_key(), vec![cert]);
        let down = source(Vec::new(), true);
        store.key_for(&serial(), NOW, down.as_ref()).await.unwrap();
        assert_eq!(down.calls.load(Ordering::SeqCst), 0);
        // A day before it ends, a lookup tries to renew; the download fails, the key still
        // serves.
        let late = not_after - 3600;
        store.key_for(&serial(), late, down.as_ref()).await.unwrap();
        assert_eq!(down.calls.load(Ordering::SeqCst), 1);
        // After its end it is gone, and with the download failing the lookup says why.
        let after = not_after + MIN_REFRESH_SECONDS + 1;
        let found = store.key_for(&serial(), after, down.as_ref()).await;
        assert!(matches!(found, Err(V3Error::Download(_))), "{found:?}");
    }
}
