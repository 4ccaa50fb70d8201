//! Tenants as live configuration through the admin API: auth, secrets never shown and encrypted at
//! rest, live changes (also under load), disabling, key rotation, audit, and a second instance on
//! the same PostgreSQL seeing a change.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use paybridge_tests::{Gateway, TestTenant, api_key, backends, wechat, wechat_api_key};
use sea_orm::{ConnectionTrait, Statement};

const ADMIN_TOKEN: &str = "admin-token-for-tests";

fn with_admin(c: &mut paybridge_server::config::Config) {
    c.admin.tokens = vec![paybridge_core::tenant::hash_api_key(ADMIN_TOKEN)];
}

async fn admin(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, String) {
    let mut req = gw
        .http
        .request(method, format!("{}/admin/api{path}", gw.base))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

async fn sign_type_of_new_order(
    gw: &Gateway,
    t: &TestTenant,
) -> Result<String, (u16, serde_json::Value)> {
    let openid = wechat::login(gw, &t.id).await;
    let (s, body) = gw
        .post(
            &t.id,
            "/v1/orders",
            &serde_json::json!({"provider": "wechat_miniprogram", "out_trade_no": wechat::trade_no(), "amount": 1,
                "description": "Live", "payer": {"openid": openid}}),
        )
        .await;
    if s == 201 {
        Ok(body["client_payment"]["wechat_miniprogram"]["signType"]
            .as_str()
            .unwrap()
            .to_owned())
    } else {
        Err((s, body))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_endpoint_refuses_a_merchant_key() {
    let t = TestTenant::wechat("adm_a", 71, "MD5");
    let gw = Gateway::start_with(&backends()[0], std::slice::from_ref(&t), with_admin).await;
    use reqwest::Method as M;
    let doc = serde_json::json!({"id": "x1", "api_keys": []});
    let endpoints = [
        (M::GET, "/tenants".to_owned(), None),
        (M::POST, "/tenants".to_owned(), Some(doc.clone())),
        (M::GET, format!("/tenants/{}", t.id), None),
        (M::PUT, format!("/tenants/{}", t.id), Some(doc.clone())),
        (M::DELETE, format!("/tenants/{}", t.id), None),
        (M::POST, "/validate".to_owned(), Some(doc.clone())),
        (
            M::POST,
            format!("/tenants/{}/providers/alipay_app/disable", t.id),
            None,
        ),
        (
            M::POST,
            format!("/tenants/{}/providers/alipay_app/enable", t.id),
            None,
        ),
        (M::POST, format!("/tenants/{}/api-keys/rotate", t.id), None),
        (M::GET, "/provider-kinds".to_owned(), None),
        (M::GET, "/audit".to_owned(), None),
    ];
    for (method, path, body) in &endpoints {
        for token in [api_key(&t.id), String::new(), "wrong".to_owned()] {
            let (s, _) = admin(&gw, method.clone(), path, &token, body.clone()).await;
            assert_eq!(s, 401, "{method} {path} with {token:?}");
        }
    }
    // The tenant is untouched and the admin token works.
    let (s, _) = admin(
        &gw,
        M::GET,
        &format!("/tenants/{}", t.id),
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(s, 200);
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_masked_kept_and_encrypted_at_rest() {
    for backend in backends() {
        let t = TestTenant::wechat("adm_b", 72, "MD5");
        let gw = Gateway::start_with(&backend, std::slice::from_ref(&t), with_admin).await;
        let planted = [
            wechat_api_key(&t.id),
            format!("secret-{}", t.id),
            "MIIEv".to_owned(),
        ];
        let (s, body) = admin(
            &gw,
            reqwest::Method::GET,
            &format!("/tenants/{}", t.id),
            ADMIN_TOKEN,
            None,
        )
        .await;
        assert_eq!(s, 200, "{body}");
        let doc = json(&body);
        assert_eq!(
            doc["providers"]["wechat_miniprogram"]["api_key"],
            serde_json::json!({"set": true})
        );
        assert_eq!(
            doc["providers"]["alipay_app"]["private_key"],
            serde_json::json!({"set": true})
        );
        for p in &planted {
            assert!(!body.contains(p.as_str()), "{p} shown by GET");
        }
        // Send the masked document back with one change: the secrets are kept.
        let mut changed = doc.clone();
        changed["name"] = serde_json::json!("Renamed");
        let (s, body) = admin(
            &gw,
            reqwest::Method::PUT,
            &format!("/tenants/{}", t.id),
            ADMIN_TOKEN,
            Some(changed),
        )
        .await;
        assert_eq!(s, 200, "{body}");
        let stored = gw.state.tenant_store.get(&t.id).await.unwrap().unwrap();
        assert_eq!(
            stored.document["providers"]["wechat_miniprogram"]["api_key"].as_str(),
            Some(wechat_api_key(&t.id).as_str())
        );
        // Payments still work with the kept key.
        let (no, _) = wechat::create_order(&gw, &t.id, 100).await;
        wechat::pay(&gw, &t, &no, "deliver").await;
        assert_eq!(
            gw.get(&t.id, &format!("/v1/orders/{no}")).await.1["status"],
            "paid"
        );

        // At rest: no planted secret in any admin table row.
        let db = gw.state.store.db();
        for (table, column) in [
            ("admin_tenants", "document"),
            ("admin_tenant_versions", "document"),
            ("admin_audit", "diff"),
        ] {
            let rows = db
                .query_all_raw(Statement::from_string(
                    db.get_database_backend(),
                    format!("SELECT {column} FROM {table}"),
                ))
                .await
                .unwrap();
            let dump: String = rows
                .iter()
                .map(|r| r.try_get::<String>("", column).unwrap())
                .collect::<Vec<_>>()
                .join("\n");
            assert!(!rows.is_empty() && !dump.is_empty(), "{table} has rows");
            if table != "admin_audit" {
                assert!(
                    dump.contains("enc:v1:"),
                    "{table}: secrets are stored encrypted"
                );
            }
            for p in &planted {
                assert!(
                    !dump.contains(p.as_str()),
                    "{}: {p} stored in plaintext in {table}",
                    backend.name()
                );
            }
        }
        let (s, audit) = admin(&gw, reqwest::Method::GET, "/audit", ADMIN_TOKEN, None).await;
        assert_eq!(s, 200);
        assert!(
            audit.contains("Renamed"),
            "the audit log has the change: {audit}"
        );
        for p in &planted {
            assert!(!audit.contains(p.as_str()));
        }
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_document_lists_every_bad_field_and_changes_nothing() {
    let t = TestTenant::wechat("adm_c", 73, "MD5");
    let gw = Gateway::start_with(&backends()[0], std::slice::from_ref(&t), with_admin).await;
    let (_, body) = admin(
        &gw,
        reqwest::Method::GET,
        &format!("/tenants/{}", t.id),
        ADMIN_TOKEN,
        None,
    )
    .await;
    let mut doc = json(&body);
    doc["providers"]["wechat_miniprogram"]["sign_type"] = serde_json::json!("SHA1");
    doc["providers"]["alipay_app"]["seller_id"] = serde_json::json!("not-a-seller");
    let (s, body) = admin(
        &gw,
        reqwest::Method::PUT,
        &format!("/tenants/{}", t.id),
        ADMIN_TOKEN,
        Some(doc),
    )
    .await;
    assert_eq!(s, 422, "{body}");
    let err = json(&body);
    assert_eq!(err["error"]["code"], "invalid_config");
    let fields: Vec<_> = err["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        fields.contains(&"providers.wechat_miniprogram.sign_type".to_owned()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"providers.alipay_app.seller_id".to_owned()),
        "{fields:?}"
    );
    assert_eq!(
        sign_type_of_new_order(&gw, &t).await.unwrap(),
        "MD5",
        "nothing changed"
    );
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_under_load_fails_no_request() {
    let t = TestTenant::wechat("adm_d", 74, "MD5");
    let gw = Gateway::start_with(&backends()[0], std::slice::from_ref(&t), with_admin).await;
    let (_, body) = admin(
        &gw,
        reqwest::Method::GET,
        &format!("/tenants/{}", t.id),
        ADMIN_TOKEN,
        None,
    )
    .await;
    let doc = json(&body);
    let flipper = async {
        for i in 0..10 {
            let mut d = doc.clone();
            d["providers"]["wechat_miniprogram"]["sign_type"] =
                serde_json::json!(if i % 2 == 0 { "HMAC-SHA256" } else { "MD5" });
            let (s, body) = admin(
                &gw,
                reqwest::Method::PUT,
                &format!("/tenants/{}", t.id),
                ADMIN_TOKEN,
                Some(d),
            )
            .await;
            assert_eq!(s, 200, "{body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let load = async {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..40 {
            match sign_type_of_new_order(&gw, &t).await {
                Ok(st) => {
                    seen.insert(st);
                }
                Err(e) => panic!("an order failed during the config change: {e:?}"),
            }
        }
        seen
    };
    let ((), seen) = tokio::join!(flipper, load);
    assert!(!seen.is_empty());
    // Every order created is paid with the notification signed under its own sign type.
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_stops_new_orders_but_notifications_still_apply() {
    for backend in backends() {
        let t = TestTenant::wechat("adm_e", 75, "HMAC-SHA256");
        let gw = Gateway::start_with(&backend, std::slice::from_ref(&t), with_admin).await;
        let (before, _) = wechat::create_order(&gw, &t.id, 100).await;
        let (s, body) = admin(
            &gw,
            reqwest::Method::POST,
            &format!("/tenants/{}/providers/wechat_miniprogram/disable", t.id),
            ADMIN_TOKEN,
            None,
        )
        .await;
        assert_eq!(s, 200, "{body}");
        // Live on the next request: the login and a new order are both refused.
        let (s, err) = gw
            .post(
                &t.id,
                "/v1/wechat_miniprogram/sessions",
                &serde_json::json!({"code": "after-disable"}),
            )
            .await;
        assert_eq!(
            (s, err["error"]["code"].as_str()),
            (422, Some("provider_not_enabled")),
            "{}",
            backend.name()
        );
        let (s, err) = gw
            .post(
                &t.id,
                "/v1/orders",
                &serde_json::json!({"provider": "wechat_miniprogram", "out_trade_no": wechat::trade_no(),
                    "amount": 1, "description": "Disabled", "payer": {"openid": "oX"}}),
            )
            .await;
        assert_eq!(
            (s, err["error"]["code"].as_str()),
            (422, Some("provider_not_enabled"))
        );
        // Money for the existing order still lands.
        let paid = wechat::pay(&gw, &t, &before, "deliver").await;
        assert_eq!(paid["deliveries"][0]["acknowledged"], true, "{paid}");
        assert_eq!(
            gw.get(&t.id, &format!("/v1/orders/{before}")).await.1["status"],
            "paid"
        );
        let (s, _) = admin(
            &gw,
            reqwest::Method::POST,
            &format!("/tenants/{}/providers/wechat_miniprogram/enable", t.id),
            ADMIN_TOKEN,
            None,
        )
        .await;
        assert_eq!(s, 200);
        assert!(sign_type_of_new_order(&gw, &t).await.is_ok());
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_works_at_once_and_the_old_one_for_the_grace_period() {
    let t = TestTenant::wechat("adm_f", 76, "MD5");
    let gw = Gateway::start_with(&backends()[0], std::slice::from_ref(&t), |c| {
        with_admin(c);
        c.admin.key_grace_seconds = 2;
    })
    .await;
    let (s, body) = admin(
        &gw,
        reqwest::Method::POST,
        &format!("/tenants/{}/api-keys/rotate", t.id),
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let new_key = json(&body)["api_key"].as_str().unwrap().to_owned();
    let get = |key: String| {
        let gw = &gw;
        async move {
            gw.http
                .get(format!("{}/v1/orders/NOSUCH001", gw.base))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(get(new_key.clone()).await, 404, "the new key works at once");
    assert_eq!(
        get(api_key(&t.id)).await,
        404,
        "the old key still works in its grace period"
    );
    let (_, audit) = admin(&gw, reqwest::Method::GET, "/audit", ADMIN_TOKEN, None).await;
    assert!(
        !audit.contains(&new_key),
        "the new key is shown once, never logged in the audit"
    );
    let deadline = Instant::now() + Duration::from_secs(6);
    while get(api_key(&t.id)).await != 401 {
        assert!(
            Instant::now() < deadline,
            "the old key kept working after its grace period"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(get(new_key).await, 404);
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_on_the_same_postgres_sees_a_change_within_two_seconds() {
    let Some(backend) = backends()
        .into_iter()
        .find(|b| matches!(b, paybridge_tests::Backend::Postgres(_)))
    else {
        eprintln!("skipped: DATABASE_URL is not a PostgreSQL URL");
        return;
    };
    let t = TestTenant::wechat("adm_g", 77, "MD5");
    let one = Gateway::start_with(&backend, std::slice::from_ref(&t), with_admin).await;
    let two = one
        .second_instance(std::slice::from_ref(&t), with_admin)
        .await;
    assert_eq!(sign_type_of_new_order(&two, &t).await.unwrap(), "MD5");
    let (_, body) = admin(
        &one,
        reqwest::Method::GET,
        &format!("/tenants/{}", t.id),
        ADMIN_TOKEN,
        None,
    )
    .await;
    let mut doc = json(&body);
    doc["providers"]["wechat_miniprogram"]["sign_type"] = serde_json::json!("HMAC-SHA256");
    let (s, _) = admin(
        &one,
        reqwest::Method::PUT,
        &format!("/tenants/{}", t.id),
        ADMIN_TOKEN,
        Some(doc),
    )
    .await;
    assert_eq!(s, 200);
    let changed = Instant::now();
    loop {
        if sign_type_of_new_order(&two, &t).await.unwrap() == "HMAC-SHA256" {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(2),
            "the other instance did not see the change within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("seen by the second instance after {:?}", changed.elapsed());
    two.finish().await;
    one.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_master_key_a_production_tenant_refuses_to_start() {
    let t = TestTenant::wechat("adm_h", 78, "MD5");
    let dir = tempfile::tempdir().unwrap();
    let mut config = paybridge_server::config::Config::default();
    config.database.url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("db.sqlite").display()
    );
    config.tenants.dir = dir.path().join("tenants");
    std::fs::create_dir_all(&config.tenants.dir).unwrap();
    // A production tenant: its endpoints are WeChat's and Alipay's, not this server's sandbox.
    let text = t.toml_for("https://api.mch.weixin.qq.com");
    std::fs::write(config.tenants.dir.join("prod.toml"), text).unwrap();
    config.secrets.master_key_env = "PAYBRIDGE_TEST_NO_SUCH_KEY_VARIABLE".to_owned();
    let err = paybridge_server::app::build_state(config)
        .await
        .err()
        .expect("refused to start");
    assert!(
        err.contains("master key") || err.contains("PAYBRIDGE_TEST_NO_SUCH_KEY_VARIABLE"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_master_key_sandbox_tenants_still_start() {
    let t = TestTenant::wechat("adm_i", 79, "MD5");
    let gw = Gateway::start_with(&backends()[0], std::slice::from_ref(&t), |c| {
        c.secrets.master_key_override = None;
        c.secrets.master_key_env = "PAYBRIDGE_TEST_NO_SUCH_KEY_VARIABLE".to_owned();
    })
    .await;
    assert!(!gw.state.tenant_store.encrypts());
    let (no, _) = wechat::create_order(&gw, &t.id, 100).await;
    wechat::pay(&gw, &t, &no, "deliver").await;
    assert_eq!(
        gw.get(&t.id, &format!("/v1/orders/{no}")).await.1["status"],
        "paid"
    );
    gw.finish().await;
}
