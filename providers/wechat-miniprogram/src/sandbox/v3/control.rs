//! `POST /control/v3/keys`: which of WeChat's keys signs for a merchant. `{"mch_id": "…",
//! "mode": "certificate" | "public_key" | "switching", "public_key_percent": 0..=100}`
//! (`public_key_percent` only, and required, with `switching`); `{"mch_id": "…"}` only reads.
//! The answer is `{"mch_id", "v3", "mode", "public_key_percent", "public_key_id", "public_key"
//! (PEM), "platform_serial_no"}`; an unknown merchant gets a 404 (`merchant_not_found`).

use serde::Deserialize;

use paybridge_core::provider::SimResponse;

use super::merchant::{KeyMode, KeyState};
use crate::sandbox::control::parse;
use crate::sandbox::{WechatSimulator, json_error, json_response};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysCommand {
    mch_id: String,
    mode: Option<String>,
    public_key_percent: Option<u8>,
}

impl WechatSimulator {
    /// `POST /control/v3/keys`
    pub(crate) fn control_v3_keys(&self, body: &[u8]) -> SimResponse {
        let command: KeysCommand = match parse(body) {
            Ok(command) => command,
            Err(response) => return response,
        };
        let mode = match (command.mode.as_deref(), command.public_key_percent) {
            (None, None) => None,
            (Some("certificate"), None) => Some(KeyMode::Certificate),
            (Some("public_key"), None) => Some(KeyMode::PublicKey),
            (Some("switching"), Some(p)) if p <= 100 => Some(KeyMode::Switching(p)),
            _ => {
                return json_error(
                    400,
                    "invalid_request",
                    "mode must be \"certificate\", \"public_key\", or \"switching\" with public_key_percent 0..=100",
                );
            }
        };
        let mut state = self.lock();
        let state = &mut *state;
        let Some(merchant) = state.registry.merchant(&command.mch_id).cloned() else {
            return json_error(
                404,
                "merchant_not_found",
                &format!("no merchant {:?} in the sandbox", command.mch_id),
            );
        };
        if let Some(mode) = mode {
            state
                .v3
                .modes
                .insert(merchant.mch_id.clone(), KeyState::new(mode));
        }
        json_response(200, &super::keys_view(&mut state.v3, &merchant))
    }
}
