//! The simulator's Alipay certificates (certificate mode): the one tenants configure
//! (`alipay_cert.crt`, for the sandbox platform key), the one Alipay rotates to
//! (`alipay_rotated_cert.crt`, under the same root), and a rogue one (the same names under a root
//! nobody configured). `POST /control/cert` picks the one that signs answers to apps in
//! certificate mode; `alipay.open.app.alipaycert.download` serves any of them by number.

use serde::Deserialize;

use super::rsa2::{Rsa2Signer, parse_private_key};

const CURRENT: &str = include_str!("../../sandbox-keys/alipay_cert.crt");
const ROTATED: &str = include_str!("../../sandbox-keys/alipay_rotated_cert.crt");
const ROTATED_KEY: &str = include_str!("../../sandbox-keys/alipay_rotated_private.pem");
const ROGUE: &str = include_str!("../../sandbox-keys/alipay_rogue_cert.crt");

/// Which certificate signs answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Which {
    /// The configured one (the platform key).
    #[default]
    Current,
    /// The rotated one: tenants must download it.
    Rotated,
    /// Not under the root: tenants must refuse it.
    Rogue,
}

/// One certificate: its PEM file, its number and its key.
#[derive(Debug, Clone)]
pub(crate) struct Cert {
    pub(crate) pem: &'static str,
    pub(crate) sn: String,
    pub(crate) signer: Rsa2Signer,
}

/// The three certificates.
#[derive(Debug, Clone)]
pub(crate) struct Certs {
    current: Cert,
    rotated: Cert,
    rogue: Cert,
}

impl Certs {
    /// Loads them; `platform` is the sandbox platform key's signer (the current certificate's).
    pub(crate) fn load(platform: &Rsa2Signer) -> Result<Certs, String> {
        let sn = |pem: &str| crate::cert_sn::first_cert_sn(pem).map_err(|e| e.to_string());
        let rotated_key = Rsa2Signer::new(parse_private_key(ROTATED_KEY)?);
        Ok(Certs {
            current: Cert {
                pem: CURRENT,
                sn: sn(CURRENT)?,
                signer: platform.clone(),
            },
            rotated: Cert {
                pem: ROTATED,
                sn: sn(ROTATED)?,
                signer: rotated_key.clone(),
            },
            rogue: Cert {
                pem: ROGUE,
                sn: sn(ROGUE)?,
                signer: rotated_key,
            },
        })
    }

    /// The certificate `which` names.
    pub(crate) fn get(&self, which: Which) -> &Cert {
        match which {
            Which::Current => &self.current,
            Which::Rotated => &self.rotated,
            Which::Rogue => &self.rogue,
        }
    }

    /// The certificate of this number.
    pub(crate) fn by_sn(&self, sn: &str) -> Option<&Cert> {
        [&self.current, &self.rotated, &self.rogue]
            .into_iter()
            .find(|c| c.sn == sn)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertCommand {
    signer: Option<Which>,
}

impl super::AlipaySimulator {
    /// `alipay.open.app.alipaycert.download`: `{"alipay_cert_sn"}` → the certificate file, base64.
    pub(super) fn cert_download(&self, call: &super::gateway::Call) -> super::gateway::Reply {
        use super::faults::Api;
        use super::gateway::Reply;
        use base64::Engine;
        let Ok(certs) = &self.certs else {
            return Reply::unavailable(Api::CertDownload);
        };
        let Some(sn) = call.text("alipay_cert_sn") else {
            return Reply::error(
                Api::CertDownload,
                "40001",
                "isv.missing-alipay-cert-sn",
                "缺少alipay_cert_sn参数",
            );
        };
        match certs.by_sn(sn) {
            Some(cert) => Reply::success(
                Api::CertDownload,
                [(
                    "alipay_cert_content",
                    Some(
                        base64::engine::general_purpose::STANDARD
                            .encode(cert.pem)
                            .into(),
                    ),
                )],
            ),
            None => Reply::business(
                Api::CertDownload,
                "isv.alipay-cert-not-exist",
                "支付宝公钥证书不存在",
            ),
        }
    }

    /// `POST /control/cert` `{"signer": "current" | "rotated" | "rogue"}` (`{}` only reads):
    /// which certificate signs the answers to apps in certificate mode.
    pub(super) fn control_cert(&self, body: &[u8]) -> paybridge_core::provider::SimResponse {
        let command: CertCommand = match super::control::parse(body) {
            Ok(command) => command,
            Err(response) => return response,
        };
        let certs = match &self.certs {
            Ok(certs) => certs,
            Err(e) => {
                return super::json_error(500, "sandbox_broken", &format!("certificates: {e}"));
            }
        };
        let mut state = self.lock();
        if let Some(which) = command.signer {
            state.answer_cert = which;
        }
        let current = certs.get(state.answer_cert);
        let name = match state.answer_cert {
            Which::Current => "current",
            Which::Rotated => "rotated",
            Which::Rogue => "rogue",
        };
        super::json_response(
            200,
            &serde_json::json!({"signer": name, "alipay_cert_sn": current.sn}),
        )
    }
}
