//! The API v3 side of the simulator: `/v3/pay/transactions/jsapi`, the query and close by
//! `out_trade_no`, `/v3/refund/domestic/refunds` (create and query), `/v3/certificates`, and
//! v3 notifications, on the same order and refund books as API v2 (so the control API pays,
//! notifies and settles both).
//!
//! Every request must carry `Authorization: WECHATPAY2-SHA256-RSA2048 mchid=…,nonce_str=…,
//! timestamp=…,serial_no=…,signature=…` (parameters in any order) over
//! `METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n`, checked by the simulator's own code against
//! the merchant's key (`client_cert`, else `client_key`), its serial (`merchant_serial_no`, else
//! the certificate's) and a 5-minute window: otherwise `401 SIGN_ERROR`. Answers are signed over
//! `TIMESTAMP\nNONCE\nBODY\n` with `Wechatpay-Serial`, `-Signature`, `-Timestamp`, `-Nonce`,
//! `-Signature-Type` and `Request-ID`; errors are `{"code", "message"}`.
//!
//! WeChat's keys are the sandbox's (`sandbox-keys/`): the public key `wechatpay_sandbox_pub_key.pem`
//! named `PUB_KEY_ID_0114<mch_id>00000000000001`, and a platform certificate. Each merchant has
//! a key mode, `POST /control/v3/keys` (see [`control`]):
//! - `certificate`: everything is signed with the platform certificate;
//! - `public_key`: everything with the public key, and `/v3/certificates` answers
//!   `404 RESOURCE_NOT_EXISTS`, as for WeChat's new merchants;
//! - `switching` with `public_key_percent`: that share of notifications, spread evenly, is signed
//!   with the public key and the rest with the certificate (WeChat moves a merchant over 7 days);
//!   an answer follows the `Wechatpay-Serial` the request sent.
//!
//! A merchant first seen with v3 credentials (`apiv3_key`) is in `public_key` mode if its table
//! has `wechatpay_public_key_id`, else in `certificate` mode; re-registering (a config change)
//! keeps the mode.

pub(crate) mod api;
pub(crate) mod bills;
pub(crate) mod control;
pub(crate) mod keys;
pub(crate) mod merchant;
pub(crate) mod notify;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use chrono::Utc;
use paybridge_core::provider::SimResponse;
use serde_json::{Value, json};

use super::envelope::nonce;
use super::merchants::Merchant;
use super::notify::Outgoing;
use keys::{Signer, WechatKeys};
use merchant::{KeyState, public_key_id};

/// `Wechatpay-Signature-Type`.
pub(crate) const SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";

/// The v3 part of the simulator's state.
#[derive(Debug)]
pub(crate) struct V3State {
    /// WeChat's keys; `None` if the shipped ones did not load (every v3 call then gets a 500).
    pub(crate) keys: Option<WechatKeys>,
    /// Each merchant's key mode, by `mch_id`; kept across re-registrations.
    pub(crate) modes: HashMap<String, KeyState>,
}

impl Default for V3State {
    fn default() -> Self {
        let keys = WechatKeys::load()
            .map_err(|e| tracing::error!("wechat sandbox: v3 keys did not load: {e}"))
            .ok();
        V3State {
            keys,
            modes: HashMap::new(),
        }
    }
}

impl V3State {
    /// The merchant's key state, created on first use.
    pub(crate) fn mode_of(&mut self, mch_id: &str) -> &mut KeyState {
        self.modes
            .entry(mch_id.to_owned())
            .or_insert_with(|| KeyState::new(merchant::KeyMode::Certificate))
    }

    /// The signer a `Wechatpay-Serial` value names for this merchant, if it is one of its keys.
    pub(crate) fn named(&self, mch_id: &str, serial: Option<&str>) -> Option<Signer> {
        let serial = serial?;
        if serial == public_key_id(mch_id) {
            return Some(Signer::PublicKey);
        }
        let keys = self.keys.as_ref()?;
        serial
            .eq_ignore_ascii_case(keys.platform_serial())
            .then_some(Signer::Platform)
    }

    /// The `Wechatpay-*` headers of `body` signed by `signer` for this merchant.
    pub(crate) fn sign_headers(
        &self,
        mch_id: &str,
        signer: Signer,
        body: &str,
        probe: bool,
    ) -> Result<Vec<(String, String)>, String> {
        let keys = self
            .keys
            .as_ref()
            .ok_or_else(|| "the sandbox's v3 keys did not load".to_owned())?;
        let timestamp = Utc::now().timestamp().to_string();
        let nonce = nonce();
        let signature = if probe {
            // WeChat's probes: a signature that cannot verify, which merchants must refuse.
            format!("WECHATPAY/SIGNTEST/{}", keys.sign(signer, b"probe")?)
        } else {
            keys.sign(signer, format!("{timestamp}\n{nonce}\n{body}\n").as_bytes())?
        };
        let serial = match signer {
            Signer::PublicKey => public_key_id(mch_id),
            Signer::Platform => keys.platform_serial().to_owned(),
        };
        Ok(vec![
            ("wechatpay-serial".to_owned(), serial),
            ("wechatpay-signature".to_owned(), signature),
            ("wechatpay-timestamp".to_owned(), timestamp),
            ("wechatpay-nonce".to_owned(), nonce),
            ("wechatpay-signature-type".to_owned(), SCHEME.to_owned()),
            ("request-id".to_owned(), uuid_like()),
        ])
    }

    /// A v3 notification, signed for delivery by the merchant's mode (each copy on its own).
    pub(crate) fn outgoing(&mut self, mch_id: &str, body: &str, probe: bool) -> Outgoing {
        let signer = self.mode_of(mch_id).next_notification();
        let headers = self
            .sign_headers(mch_id, signer, body, probe)
            .unwrap_or_else(|e| {
                tracing::error!("wechat sandbox: v3 notification not signed: {e}");
                Vec::new()
            });
        Outgoing {
            body: body.to_owned(),
            content_type: "application/json",
            headers,
            v3: true,
        }
    }

    /// A signed v3 answer for this merchant (`corrupt`: signed over other bytes, an injected
    /// `bad_sign` failure).
    pub(crate) fn answer(
        &self,
        mch_id: &str,
        named: Option<Signer>,
        status: u16,
        body: String,
        corrupt: bool,
    ) -> SimResponse {
        let signer = self
            .modes
            .get(mch_id)
            .copied()
            .unwrap_or_else(|| KeyState::new(merchant::KeyMode::Certificate))
            .answer(named);
        let signed = if corrupt {
            format!("{body} ")
        } else {
            body.clone()
        };
        match self.sign_headers(mch_id, signer, &signed, false) {
            Ok(headers) => SimResponse {
                status,
                content_type: "application/json",
                headers,
                body: body.into_bytes(),
            },
            Err(e) => error(500, "SYSTEM_ERROR", &e),
        }
    }
}

/// An unsigned v3 error answer (before the merchant is known).
pub(crate) fn error(status: u16, code: &str, message: &str) -> SimResponse {
    SimResponse {
        status,
        content_type: "application/json",
        headers: Vec::new(),
        body: json!({"code": code, "message": message})
            .to_string()
            .into_bytes(),
    }
}

/// The error body.
pub(crate) fn error_body(code: &str, message: &str) -> String {
    json!({"code": code, "message": message}).to_string()
}

/// A `Request-ID`-looking value.
fn uuid_like() -> String {
    let n = nonce();
    format!("08{}", n.get(..30).unwrap_or(&n))
}

/// The v3 view of a merchant in the control API.
pub(crate) fn keys_view(state: &mut V3State, merchant: &Merchant) -> Value {
    let platform = state.keys.as_ref().map(|k| k.platform_serial().to_owned());
    let mode = *state.mode_of(&merchant.mch_id);
    let percent = match mode.mode {
        merchant::KeyMode::Switching(p) => Some(p),
        _ => None,
    };
    json!({
        "mch_id": merchant.mch_id,
        "v3": merchant.v3.is_some(),
        "mode": mode.mode.name(),
        "public_key_percent": percent,
        "public_key_id": public_key_id(&merchant.mch_id),
        "public_key": keys::PUBLIC_KEY_PEM,
        "platform_serial_no": platform,
    })
}
