//! Third-party app authorisation: `alipay.open.auth.token.app` (a code or a refresh token for a
//! merchant's new `app_auth_token`) and `POST /control/auth_code`, which stands for the merchant
//! scanning the app's authorisation page.

use serde::Deserialize;
use serde_json::{Value, json};

use super::faults::Api;
use super::gateway::{Call, Reply};
use super::merchants::{Grant, Registry};
use super::{json_error, json_response};
use paybridge_core::provider::SimResponse;

/// `alipay.open.auth.token.app` of app `call.app_id`.
pub(crate) fn token(registry: &mut Registry, call: &Call) -> Reply {
    let api = Api::AuthToken;
    let grant = match call.text("grant_type") {
        Some("authorization_code") => match call.text("code") {
            Some(code) => Grant::Code(code),
            None => return Reply::error(api, "40002", "isv.invalid-parameter", "缺少code参数"),
        },
        Some("refresh_token") => match call.text("refresh_token") {
            Some(token) => Grant::Refresh(token),
            None => {
                return Reply::error(
                    api,
                    "40002",
                    "isv.invalid-parameter",
                    "缺少refresh_token参数",
                );
            }
        },
        _ => {
            return Reply::error(
                api,
                "40002",
                "isv.invalid-parameter",
                "grant_type须为authorization_code或refresh_token",
            );
        }
    };
    match registry.exchange(&call.app_id, grant) {
        Ok(issued) => {
            let expires_in = 31_536_000;
            let re_expires_in = 32_140_800;
            let token = json!({
                "user_id": issued.user_id, "auth_app_id": issued.auth_app_id,
                "app_auth_token": issued.app_auth_token,
                "app_refresh_token": issued.app_refresh_token,
                "expires_in": expires_in, "re_expires_in": re_expires_in,
            });
            Reply::success(
                api,
                [
                    ("user_id", Some(Value::from(issued.user_id))),
                    ("auth_app_id", Some(Value::from(issued.auth_app_id))),
                    ("app_auth_token", Some(Value::from(issued.app_auth_token))),
                    (
                        "app_refresh_token",
                        Some(Value::from(issued.app_refresh_token)),
                    ),
                    ("expires_in", Some(Value::from(expires_in))),
                    ("re_expires_in", Some(Value::from(re_expires_in))),
                    ("tokens", Some(json!([token]))),
                ],
            )
        }
        Err(sub_code) => Reply::business(api, sub_code, "授权码或刷新令牌无效或已使用"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeCommand {
    auth_app_id: String,
}

/// `POST /control/auth_code {"auth_app_id"}` → `{"app_auth_code"}`.
pub(crate) fn issue_code(registry: &mut Registry, body: &[u8]) -> SimResponse {
    let command: CodeCommand = match serde_json::from_slice(body) {
        Ok(c) => c,
        Err(e) => return json_error(400, "invalid_request", &e.to_string()),
    };
    match registry.issue_code(&command.auth_app_id) {
        Some(code) => json_response(200, &json!({ "app_auth_code": code })),
        None => json_error(
            404,
            "merchant_not_found",
            &format!(
                "no merchant of a third-party app has auth_app_id {}",
                command.auth_app_id
            ),
        ),
    }
}
