//! Mini-program login: `jscode2session` exchanges a `wx.login()` code for the payer's openid
//! (PROTOCOLS.md §A). The `session_key` is dropped here and never leaves this function.

use paybridge_core::provider::{LoginSession, ProviderError};

use crate::client::{openid_prefix, read_capped, transport_error};
use crate::config::WechatConfig;

/// Login answers are tiny; anything bigger is not WeChat.
const MAX_LOGIN_RESPONSE_BYTES: usize = 64 * 1024;

/// Map a jscode2session JSON answer to a session or an error. Parsed as JSON whatever the
/// `Content-Type` said.
pub fn session_from_response(body: &[u8]) -> Result<LoginSession, ProviderError> {
    let json: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
        ProviderError::Unavailable(
            "jscode2session answered with something other than JSON".to_owned(),
        )
    })?;
    let errcode = match json.get("errcode") {
        None | Some(serde_json::Value::Null) => 0,
        Some(value) => value
            .as_i64()
            .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| {
                ProviderError::Unavailable("jscode2session errcode is not a number".to_owned())
            })?,
    };
    let errmsg: String = json
        .get("errmsg")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    let with_text = |what: &str| format!("{what} (errcode {errcode}: {errmsg})");
    match errcode {
        0 => {}
        40029 => {
            return Err(ProviderError::Rejected {
                code: "invalid_code",
                message: with_text("invalid login code"),
            });
        }
        40163 => {
            return Err(ProviderError::Rejected {
                code: "code_used",
                message: with_text("login code already used"),
            });
        }
        45011 => return Err(ProviderError::RateLimited(with_text("login rate limit"))),
        -1 => return Err(ProviderError::Unavailable("WeChat busy".to_owned())),
        40226 => {
            return Err(ProviderError::Rejected {
                code: "login_blocked",
                message: with_text("login blocked"),
            });
        }
        40125 => {
            return Err(ProviderError::Misconfigured {
                field: "app_secret".to_owned(),
                message: with_text("WeChat refused the AppSecret"),
            });
        }
        40013 => {
            return Err(ProviderError::Misconfigured {
                field: "appid".to_owned(),
                message: with_text("WeChat refused the AppID"),
            });
        }
        _ => {
            return Err(ProviderError::Rejected {
                code: "login_failed",
                message: with_text("login failed"),
            });
        }
    }
    let openid = json
        .get("openid")
        .and_then(|o| o.as_str())
        .filter(|o| !o.is_empty())
        .ok_or_else(|| {
            ProviderError::Unavailable("jscode2session succeeded without an openid".to_owned())
        })?;
    let unionid = json
        .get("unionid")
        .and_then(|u| u.as_str())
        .filter(|u| !u.is_empty())
        .map(str::to_owned);
    Ok(LoginSession {
        openid: openid.to_owned(),
        unionid,
    })
}

/// GET `login_base/sns/jscode2session` and map the answer.
pub async fn login(
    http: &reqwest::Client,
    config: &WechatConfig,
    code: &str,
) -> Result<LoginSession, ProviderError> {
    let secret = config.app_secret()?;
    if code.is_empty() || code.len() > 512 {
        return Err(ProviderError::InvalidRequest {
            field: Some("code".to_owned()),
            message: "the wx.login() code must be 1-512 characters".to_owned(),
        });
    }
    let url = format!("{}/sns/jscode2session", config.login_base);
    let response = http
        .get(&url)
        .query(&[
            ("appid", config.payer_appid()),
            ("secret", secret),
            ("js_code", code),
            ("grant_type", "authorization_code"),
        ])
        .send()
        .await
        .map_err(transport_error)?;
    let body = read_capped(response, MAX_LOGIN_RESPONSE_BYTES).await?;
    let session = session_from_response(&body);
    match &session {
        Ok(s) => tracing::info!(openid = %openid_prefix(&s.openid), "jscode2session succeeded"),
        Err(e) => tracing::info!(error = %e, "jscode2session failed"),
    }
    session
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(json: &str) -> Result<LoginSession, ProviderError> {
        session_from_response(json.as_bytes())
    }

    #[test]
    fn success_with_or_without_errcode() {
        let s =
            session(r#"{"openid":"oABC","session_key":"sk","unionid":"uXYZ"}"#).expect("success");
        assert_eq!(
            s,
            LoginSession {
                openid: "oABC".into(),
                unionid: Some("uXYZ".into())
            }
        );
        let s = session(r#"{"errcode":0,"errmsg":"ok","openid":"oABC","session_key":"sk"}"#)
            .expect("success");
        assert_eq!(
            s,
            LoginSession {
                openid: "oABC".into(),
                unionid: None
            }
        );
    }

    #[test]
    fn success_without_openid_is_not_a_session() {
        assert!(matches!(
            session(r#"{"errcode":0,"session_key":"sk"}"#),
            Err(ProviderError::Unavailable(_))
        ));
        assert!(matches!(
            session(r#"{"openid":""}"#),
            Err(ProviderError::Unavailable(_))
        ));
    }

    #[test]
    fn documented_error_codes_map_to_their_errors() {
        let err =
            |code: i64| session(&format!(r#"{{"errcode":{code},"errmsg":"text rid: 1"}}"#)).err();
        assert!(matches!(
            err(40029),
            Some(ProviderError::Rejected {
                code: "invalid_code",
                ..
            })
        ));
        assert!(matches!(
            err(40163),
            Some(ProviderError::Rejected {
                code: "code_used",
                ..
            })
        ));
        assert!(matches!(err(45011), Some(ProviderError::RateLimited(_))));
        assert_eq!(
            err(-1),
            Some(ProviderError::Unavailable("WeChat busy".into()))
        );
        assert!(matches!(
            err(40226),
            Some(ProviderError::Rejected {
                code: "login_blocked",
                ..
            })
        ));
        assert!(
            matches!(err(40125), Some(ProviderError::Misconfigured { ref field, .. }) if field == "app_secret")
        );
        assert!(
            matches!(err(40013), Some(ProviderError::Misconfigured { ref field, .. }) if field == "appid")
        );
        match err(12345) {
            Some(ProviderError::Rejected {
                code: "login_failed",
                message,
            }) => {
                assert!(
                    message.contains("12345") && message.contains("text rid: 1"),
                    "{message}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn session_key_is_never_in_the_result() {
        let s = session(r#"{"openid":"oABC","session_key":"SESSIONKEY123"}"#).expect("success");
        assert!(!format!("{s:?}").contains("SESSIONKEY123"));
        let e =
            session(r#"{"errcode":40029,"errmsg":"invalid code","session_key":"SESSIONKEY123"}"#)
                .err();
        assert!(!format!("{e:?}").contains("SESSIONKEY123"));
    }

    #[test]
    fn non_json_is_unavailable() {
        assert!(matches!(
            session("<html>502</html>"),
            Err(ProviderError::Unavailable(_))
        ));
    }
}
