use super::*;

async fn session(
    sim: &WechatSimulator,
    appid: &str,
    secret: &str,
    code: &str,
    grant: &str,
) -> serde_json::Value {
    let query = format!("appid={appid}&secret={secret}&js_code={code}&grant_type={grant}");
    let response = call(sim, "GET", "/sns/jscode2session", &query, b"").await;
    assert_eq!(response.status, 200);
    json_of(&response)
}

async fn errcode(sim: &WechatSimulator, code: &str) -> i64 {
    session(sim, APPID, APP_SECRET, code, "authorization_code").await["errcode"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn a_code_logs_in_once_without_errcode() {
    let sim = simulator();
    let first = session(&sim, APPID, APP_SECRET, "code-1", "authorization_code").await;
    assert!(first.get("errcode").is_none(), "{first}");
    let openid = first["openid"].as_str().unwrap();
    assert!(openid.starts_with('o') && openid.len() == 28, "{openid}");
    assert!(!first["session_key"].as_str().unwrap().is_empty());
    assert!(first.get("unionid").is_none());
    assert_eq!(openid, crate::sandbox::login::openid_for(APPID, "code-1"));

    let again = session(&sim, APPID, APP_SECRET, "code-1", "authorization_code").await;
    assert_eq!(again["errcode"], 40163, "{again}");
    assert!(again["errmsg"].as_str().unwrap().contains("code been used"));
}

#[tokio::test]
async fn union_codes_carry_a_unionid() {
    let sim = simulator();
    let answer = session(&sim, APPID, APP_SECRET, "union-7", "authorization_code").await;
    assert!(
        answer["unionid"].as_str().is_some_and(|u| !u.is_empty()),
        "{answer}"
    );
}

#[tokio::test]
async fn credentials_and_grant_type_are_checked() {
    let sim = simulator();
    assert_eq!(
        session(&sim, "wxunknown", APP_SECRET, "c", "authorization_code").await["errcode"],
        40013
    );
    assert_eq!(
        session(&sim, APPID, "wrong", "c", "authorization_code").await["errcode"],
        40125
    );
    assert_eq!(
        session(&sim, APPID, APP_SECRET, "c", "client_credential").await["errcode"],
        40002
    );
    // None of these consumed the code.
    assert!(
        session(&sim, APPID, APP_SECRET, "c", "authorization_code")
            .await
            .get("openid")
            .is_some()
    );
}

#[tokio::test]
async fn special_codes_pick_the_documented_errors() {
    let sim = simulator();
    assert_eq!(errcode(&sim, "invalid-123").await, 40029);
    assert_eq!(errcode(&sim, "busy").await, -1);
    assert_eq!(errcode(&sim, "busy").await, -1);
    assert_eq!(errcode(&sim, "ratelimit").await, 45011);
    assert_eq!(errcode(&sim, "blocked").await, 40226);
}

#[tokio::test]
async fn injected_login_failures() {
    let sim = simulator();
    control(
        &sim,
        "/control/fail",
        serde_json::json!({"api": "jscode2session", "mode": "SYSTEMERROR"}),
    )
    .await;
    assert_eq!(errcode(&sim, "fresh").await, -1);
    control(
        &sim,
        "/control/fail",
        serde_json::json!({"api": "*", "mode": "http500"}),
    )
    .await;
    let query =
        format!("appid={APPID}&secret={APP_SECRET}&js_code=fresh&grant_type=authorization_code");
    assert_eq!(
        call(&sim, "GET", "/sns/jscode2session", &query, b"")
            .await
            .status,
        500
    );
    // The failed calls did not use the code.
    assert_eq!(
        login(&sim, "fresh").await,
        crate::sandbox::login::openid_for(APPID, "fresh")
    );
}

#[tokio::test]
async fn login_takes_get_only() {
    let sim = simulator();
    assert_eq!(
        call(&sim, "POST", "/sns/jscode2session", "", b"")
            .await
            .status,
        405
    );
}
