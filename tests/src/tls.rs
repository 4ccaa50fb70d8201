//! Mutual-TLS test harness: a throwaway PKI made at run time (rcgen) and any provider simulator
//! served over HTTPS on 127.0.0.1, with the client certificate the peer presented passed to the
//! simulator in `SimRequest.tls`.
//!
//! ```ignore
//! let pki = TestPki::generate("1900000109");
//! let server = serve_simulator(simulator, &pki).await;   // https://127.0.0.1:PORT
//! // provider table: api_base = server.base, ca_file = pki.ca_pem_path,
//! //                 client_cert = pki.client_cert_path, client_key = pki.client_key_path
//! //                 (or client_p12 = pki.write_p12("1900000109"))
//! ```
//!
//! The server asks every peer for a client certificate and verifies any it gets against the test
//! CA (`WebPkiClientVerifier`), but lets a peer without one finish the handshake
//! (`allow_unauthenticated`): the simulator then decides, as WeChat's `/secapi/` does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use paybridge_core::provider::{SimRequest, Simulator, TlsPeer};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// A test CA, a server certificate for 127.0.0.1/localhost and a client certificate, all signed
/// by the CA and written as PEM files into a temporary folder (removed on drop).
pub struct TestPki {
    /// The folder holding the files.
    pub dir: tempfile::TempDir,
    /// The CA certificate (PEM): the `ca_file` of a provider talking to the test server.
    pub ca_pem_path: PathBuf,
    /// The client certificate (PEM), CN = the mch_id.
    pub client_cert_path: PathBuf,
    /// The client's private key (PKCS#8 PEM).
    pub client_key_path: PathBuf,
    /// The CA certificate (DER).
    pub ca_der: CertificateDer<'static>,
    /// The client certificate (DER), as the server sees it.
    pub client_cert_der: CertificateDer<'static>,
    server_cert_der: CertificateDer<'static>,
    server_key_der: Vec<u8>,
    client_cert_pem: String,
    client_key_pem: String,
    client_key_der: Vec<u8>,
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "paybridge test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl TestPki {
    /// A fresh PKI whose client certificate is issued to `mch_id`.
    pub fn generate(mch_id: &str) -> TestPki {
        let ca_key = KeyPair::generate().unwrap();
        let ca_params = ca_params();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        server_params
            .distinguished_name
            .push(DnType::CommonName, "paybridge test server");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params
            .distinguished_name
            .push(DnType::CommonName, mch_id);
        client_params
            .distinguished_name
            .push(DnType::OrganizationName, "paybridge test merchant");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let ca_pem_path = dir.path().join("test-ca.pem");
        let client_cert_path = dir.path().join("apiclient_cert.pem");
        let client_key_path = dir.path().join("apiclient_key.pem");
        std::fs::write(&ca_pem_path, ca_cert.pem()).unwrap();
        std::fs::write(&client_cert_path, client_cert.pem()).unwrap();
        std::fs::write(&client_key_path, client_key.serialize_pem()).unwrap();

        TestPki {
            ca_pem_path,
            client_cert_path,
            client_key_path,
            ca_der: ca_cert.der().clone(),
            client_cert_der: client_cert.der().clone(),
            server_cert_der: server_cert.der().clone(),
            server_key_der: server_key.serialize_der(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
            client_key_der: client_key.serialize_der(),
            dir,
        }
    }

    /// Writes the client certificate and key as a PKCS#12 file protected by `password` (WeChat:
    /// the mch_id) and returns its path. Made with `openssl pkcs12 -export -legacy` (the
    /// algorithms of WeChat's own files: RC2-40 certificate bag, 3DES key bag) when the CLI has
    /// it, else plain `openssl pkcs12 -export`, else in Rust (3DES, `p12-keystore`).
    pub fn write_p12(&self, password: &str) -> PathBuf {
        let path = self.dir.path().join("apiclient_cert.p12");
        for legacy in [true, false] {
            let mut command = std::process::Command::new("openssl");
            command.arg("pkcs12").arg("-export");
            if legacy {
                command.arg("-legacy");
            }
            let made = command
                .arg("-in")
                .arg(&self.client_cert_path)
                .arg("-inkey")
                .arg(&self.client_key_path)
                .arg("-name")
                .arg("Tenpay Certificate")
                .arg("-passout")
                .arg(format!("pass:{password}"))
                .arg("-out")
                .arg(&path)
                .output();
            if made.is_ok_and(|out| out.status.success()) {
                return path;
            }
        }
        self.write_p12_with_rust(password)
    }

    /// The same file made in Rust only (`p12-keystore`, pbeWithSHAAnd3-KeyTripleDES-CBC, MAC
    /// SHA-1), for machines without the `openssl` CLI.
    pub fn write_p12_with_rust(&self, password: &str) -> PathBuf {
        use p12_keystore::{
            Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
            PrivateKeyChain,
        };
        let path = self.dir.path().join("apiclient_cert_rust.p12");
        let chain = PrivateKeyChain::new(
            b"paybridge-test".to_vec(),
            PrivateKey::from_der(&self.client_key_der).unwrap(),
            [Certificate::from_der(&self.client_cert_der).unwrap()],
        );
        let mut store = KeyStore::new();
        store.add_entry("Tenpay Certificate", KeyStoreEntry::PrivateKeyChain(chain));
        let bytes = store
            .writer(password)
            .encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
            .mac_algorithm(MacAlgorithm::HmacSha1)
            .write()
            .unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// The client certificate + key as one PEM bundle (for `reqwest::Identity::from_pem`).
    pub fn client_identity_pem(&self) -> Vec<u8> {
        format!("{}{}", self.client_cert_pem, self.client_key_pem).into_bytes()
    }

    /// A reqwest client trusting the test CA, presenting no client certificate.
    pub fn client_without_identity(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_merge([reqwest::Certificate::from_der(&self.ca_der).unwrap()])
            .no_proxy()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// The same, presenting the client certificate.
    pub fn client_with_identity(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_merge([reqwest::Certificate::from_der(&self.ca_der).unwrap()])
            .identity(reqwest::Identity::from_pem(&self.client_identity_pem()).unwrap())
            .no_proxy()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// The folder of the files (for relative paths in a tenant table).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The server's TLS config: the server certificate, and client certificates verified against
    /// the CA but not required.
    pub fn server_config(&self) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .allow_unauthenticated()
                .build()
                .unwrap();
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![self.server_cert_der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone())),
            )
            .unwrap()
    }
}

/// One request the HTTPS server passed to the simulator.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// HTTP method.
    pub method: String,
    /// Path (no query).
    pub path: String,
    /// Whether the peer presented a (CA-verified) client certificate.
    pub client_certificate: bool,
}

/// A simulator served over HTTPS; stops when dropped.
pub struct SimServer {
    /// `https://127.0.0.1:<port>`: the simulator's root (`api_base`, `login_base`).
    pub base: String,
    /// The bound address.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<SeenRequest>>>,
    accept_loop: JoinHandle<()>,
}

impl SimServer {
    /// Every request that completed the TLS handshake and reached the simulator, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests to `path`.
    pub fn requests_to(&self, path: &str) -> Vec<SeenRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

/// Serves `simulator` over HTTPS (HTTP/1.1) on 127.0.0.1:0 with `pki`'s server certificate.
/// Each request becomes a `SimRequest` whose `tls` is `Some(TlsPeer { client_cert_der })`, the
/// DER of the client certificate the peer presented (verified against the test CA), or `None`
/// inside when it presented none.
pub async fn serve_simulator(simulator: Arc<dyn Simulator>, pki: &TestPki) -> SimServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(pki.server_config()));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&requests);
    let accept_loop = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let simulator = Arc::clone(&simulator);
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                // A failed handshake (e.g. a client that does not trust the CA) just ends here.
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let client_cert_der = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|cert| cert.as_ref().to_vec());
                let service = service_fn(move |request| {
                    let simulator = Arc::clone(&simulator);
                    let log = Arc::clone(&log);
                    let peer = TlsPeer {
                        client_cert_der: client_cert_der.clone(),
                    };
                    async move { Ok::<_, Infallible>(dispatch(simulator, request, peer, log).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    SimServer {
        base: format!("https://{addr}"),
        addr,
        requests,
        accept_loop,
    }
}

async fn dispatch(
    simulator: Arc<dyn Simulator>,
    request: Request<hyper::body::Incoming>,
    peer: TlsPeer,
    log: Arc<Mutex<Vec<SeenRequest>>>,
) -> Response<Full<Bytes>> {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    log.lock().unwrap().push(SeenRequest {
        method: method.clone(),
        path: path.clone(),
        client_certificate: peer.client_cert_der.is_some(),
    });
    let answer = simulator
        .handle(SimRequest {
            method,
            path,
            // Served at the root of this TLS server; nothing here hands out links.
            base: String::new(),
            query,
            headers: Vec::new(),
            body,
            tls: Some(peer),
        })
        .await;
    Response::builder()
        .status(answer.status)
        .header("content-type", answer.content_type)
        .body(Full::new(Bytes::from(answer.body)))
        .unwrap()
}
