//! `GET /sns/jscode2session` (PROTOCOLS §A): a login code for an openid and a session key.
//!
//! Codes are free-form; a few prefixes and words pick the failures: `invalid…` → 40029, `busy` →
//! -1, `ratelimit` → 45011, `blocked` → 40226. Any other code succeeds once and is then used
//! (40163). A code starting with `union` also yields a `unionid`.

use std::collections::{HashMap, HashSet};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::Rng;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::merchants::Registry;

/// What the login endpoint remembers: used codes and the openids it issued.
#[derive(Debug, Default)]
pub(crate) struct Logins {
    used_codes: HashSet<(String, String)>,
    openids: HashMap<String, HashSet<String>>,
}

impl Logins {
    /// Whether this simulator issued `openid` for `appid`.
    pub(crate) fn issued(&self, appid: &str, openid: &str) -> bool {
        self.openids
            .get(appid)
            .is_some_and(|ids| ids.contains(openid))
    }
}

/// The openid of a code: "o" + 27 characters of URL-safe base64 of SHA-256(appid ":" code), so
/// the same code always gives the same user.
pub(crate) fn openid_for(appid: &str, code: &str) -> String {
    let digest = Sha256::digest(format!("{appid}:{code}").as_bytes());
    let encoded = URL_SAFE_NO_PAD.encode(digest);
    format!("o{}", encoded.get(..27).unwrap_or(&encoded))
}

fn unionid_for(code: &str) -> String {
    let digest = Sha256::digest(format!("unionid:{code}").as_bytes());
    let encoded = URL_SAFE_NO_PAD.encode(digest);
    format!("o6_bm{}", encoded.get(..23).unwrap_or(&encoded))
}

fn error(errcode: i64, errmsg: &str) -> Value {
    let rid: u64 = rand::rng().random();
    json!({ "errcode": errcode, "errmsg": format!("{errmsg}, rid: {rid:016x}") })
}

/// Serves one call. `system_error` is an injected `errcode -1`. The answer is always HTTP 200.
pub(crate) fn jscode2session(
    registry: &Registry,
    logins: &mut Logins,
    query: &str,
    system_error: bool,
) -> Value {
    let mut params: HashMap<String, String> = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        params
            .entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    let param = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };

    let Some(appid) = param("appid") else {
        return error(41002, "appid missing");
    };
    let Some(app) = registry.app(appid) else {
        return error(40013, "invalid appid");
    };
    let Some(secret) = param("secret") else {
        return error(41004, "appsecret missing");
    };
    let secret_ok = app
        .app_secret
        .as_deref()
        .is_some_and(|s| bool::from(s.as_bytes().ct_eq(secret.as_bytes())));
    if !secret_ok {
        return error(40125, "invalid appsecret");
    }
    if param("grant_type") != Some("authorization_code") {
        return error(40002, "invalid grant_type");
    }
    let Some(code) = param("js_code") else {
        return error(41008, "missing code");
    };
    if system_error {
        return error(-1, "system error");
    }
    match code {
        c if c.starts_with("invalid") => return error(40029, "invalid code"),
        "busy" => return error(-1, "system error"),
        "ratelimit" => {
            return error(
                45011,
                "api minute-quota reach limit  mustslower  retry next minute",
            );
        }
        "blocked" => return error(40226, "invalid user, high risk user"),
        _ => {}
    }
    if !logins
        .used_codes
        .insert((appid.to_owned(), code.to_owned()))
    {
        return error(40163, "code been used");
    }
    let openid = openid_for(appid, code);
    logins
        .openids
        .entry(appid.to_owned())
        .or_default()
        .insert(openid.clone());
    let session_key: [u8; 16] = rand::rng().random();
    // Like the real service, success carries no errcode at all.
    let mut answer = json!({ "session_key": STANDARD.encode(session_key), "openid": openid });
    if code.starts_with("union")
        && let Some(fields) = answer.as_object_mut()
    {
        fields.insert("unionid".into(), Value::String(unionid_for(code)));
    }
    answer
}
