//! Platform mode end to end, on SQLite and (with `DATABASE_URL`) PostgreSQL: one platform that is
//! a WeChat Pay service provider (v3 partner APIs) and an Alipay third-party app, and two
//! sub-merchants that hold no keys of their own. Payments and refunds on both providers, each
//! notification on its own tenant (another sub-merchant's is refused), and a rotation of the
//! platform's keys through the admin API that every sub-merchant follows at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paybridge_tests::alipay::{cashier, order_string, parse_form};
use paybridge_tests::wechat_v3::{Forged, SANDBOX_KEYS, notify as notify_v3};
use paybridge_tests::{Gateway, api_key, backends, wechat};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "admin-token-for-platform-tests";
const SP_MCHID: &str = "1900000100";
const SP_APPID: &str = "wx8888888888888888";
const APIV3_KEY: &str = "platformApiV3KeyForTests00000032";
const ISV_APP_ID: &str = "2021009900000100";
const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/tenants/certs");
const ROTATED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/platforms/certs");

/// A sub-merchant: tenant id, sub_mchid, its own mini-program (if any), its Alipay identity.
struct Sub {
    id: &'static str,
    sub_mchid: &'static str,
    sub_appid: Option<&'static str>,
    token: &'static str,
    auth_app_id: &'static str,
    seller_id: &'static str,
}

const A: Sub = Sub {
    id: "shop_a",
    sub_mchid: "1900000201",
    sub_appid: Some("wx1111111111111111"),
    token: "202612BBshopa000000000000000001",
    auth_app_id: "2021000000000201",
    seller_id: "2088000000000201",
};
const B: Sub = Sub {
    id: "shop_b",
    sub_mchid: "1900000202",
    sub_appid: None,
    token: "202612BBshopb000000000000000002",
    auth_app_id: "2021000000000202",
    seller_id: "2088000000000202",
};

fn platform_json(base: &str, client_cert: &str, client_key: &str, isv_key: Value) -> Value {
    json!({
        "id": "acme",
        "name": "Acme Platform",
        "wechat_miniprogram": {
            "api_version": "v3",
            "sp_mchid": SP_MCHID,
            "sp_appid": SP_APPID,
            "app_secret": "sp-app-secret",
            "client_cert": client_cert,
            "client_key": client_key,
            "apiv3_key": APIV3_KEY,
            "wechatpay_public_key": format!("{SANDBOX_KEYS}/wechatpay_sandbox_pub_key.pem"),
            "wechatpay_public_key_id": format!("PUB_KEY_ID_0114{SP_MCHID}00000000000001"),
            "api_base": format!("{base}/sandbox/wechat_miniprogram"),
            "login_base": format!("{base}/sandbox/wechat_miniprogram"),
        },
        "alipay_app": {
            "app_id": ISV_APP_ID,
            "private_key": isv_key,
            "alipay_public_key": include_str!("../../providers/alipay-app/sandbox-keys/alipay_sandbox_public.pem"),
            "gateway_url": format!("{base}/sandbox/alipay_app/gateway.do"),
        },
    })
}

fn tenant_toml(s: &Sub) -> String {
    let own_app = s
        .sub_appid
        .map(|appid| {
            format!(
                "sub_appid = \"{appid}\"\napp_secret = \"secret-{}\"\n",
                s.id
            )
        })
        .unwrap_or_default();
    format!(
        r#"id = "{id}"
api_keys = ["{key}"]
[providers.wechat_miniprogram]
platform = "acme"
sub_mchid = "{sub}"
{own_app}
[providers.alipay_app]
platform = "acme"
app_auth_token = "{token}"
auth_app_id = "{auth}"
seller_id = "{seller}"
"#,
        id = s.id,
        key = paybridge_core::tenant::hash_api_key(&api_key(s.id)),
        sub = s.sub_mchid,
        token = s.token,
        auth = s.auth_app_id,
        seller = s.seller_id,
    )
}

async fn start(backend: &paybridge_tests::Backend) -> Gateway {
    Gateway::start_with_files(
        backend,
        &[],
        |base| {
            let platform = platform_json(
                base,
                &format!("{CERTS}/apiclient_cert.pem"),
                &format!("{CERTS}/apiclient_key.pem"),
                json!(include_str!("../../fixtures/vectors/app_private_pkcs8.pem")),
            );
            vec![
                (
                    "platforms/acme.toml".to_owned(),
                    toml::to_string(&platform).unwrap(),
                ),
                ("tenants/shop_a.toml".to_owned(), tenant_toml(&A)),
                ("tenants/shop_b.toml".to_owned(), tenant_toml(&B)),
            ]
        },
        |c| c.admin.tokens = vec![paybridge_core::tenant::hash_api_key(ADMIN_TOKEN)],
    )
    .await
}

async fn admin(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = gw
        .http
        .request(method, format!("{}/admin/api{path}", gw.base))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        req = req.json(b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The WeChat simulator's view of order `no` of merchant `mch_id`.
async fn sandbox_order(gw: &Gateway, no: &str, mch_id: &str) -> Value {
    gw.http
        .get(format!(
            "{}/sandbox/wechat_miniprogram/control/orders/{no}?mch_id={mch_id}",
            gw.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn status(gw: &Gateway, t: &str, no: &str) -> String {
    gw.get(t, &format!("/v1/orders/{no}")).await.1["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A WeChat order of `s` for a payer logged in to the mini-program its orders use; checks the
/// partner fields the simulator recorded and the appid of `paySign`.
async fn wechat_order(gw: &Gateway, s: &Sub, amount: i64, key_file: &str) -> String {
    let (no, created) = wechat::create_order(gw, s.id, amount).await;
    let params = &created["client_payment"]["wechat_miniprogram"];
    assert_eq!(params["signType"], "RSA", "{created}");
    let payer_appid = s.sub_appid.unwrap_or(SP_APPID);
    assert!(
        paybridge_tests::wechat_v3::pay_sign_verifies_with(key_file, payer_appid, params),
        "paySign over {payer_appid}: {created}"
    );
    let order: Value = sandbox_order(gw, &no, s.sub_mchid).await;
    assert_eq!(order["sp_mchid"], SP_MCHID, "{order}");
    assert_eq!(order["api_version"], "v3");
    no
}

async fn wechat_pay(gw: &Gateway, s: &Sub, no: &str) -> Value {
    let (code, paid) = gw
        .sandbox(
            "/control/pay",
            &json!({"out_trade_no": no, "mch_id": s.sub_mchid, "notify": "deliver"}),
        )
        .await;
    assert_eq!(code, 200, "{paid}");
    assert_eq!(paid["deliveries"][0]["acknowledged"], true, "{paid}");
    paid
}

async fn refund(gw: &Gateway, s: &Sub, no: &str, out_refund_no: &str, amount: i64) -> Value {
    let (code, refund) = gw
        .post(
            s.id,
            &format!("/v1/orders/{no}/refunds"),
            &json!({"out_refund_no": out_refund_no, "amount": amount}),
        )
        .await;
    assert_eq!(code, 201, "{refund}");
    refund
}

async fn alipay_order(gw: &Gateway, s: &Sub, amount: i64) -> String {
    alipay_order_with_token(gw, s, amount, s.token).await
}

/// An Alipay order of `s`, acting by `token`, paid at the cashier (which knows the merchant by
/// that token only).
async fn alipay_order_with_token(gw: &Gateway, s: &Sub, amount: i64, token: &str) -> String {
    let (no, created) = paybridge_tests::alipay::create_order(gw, s.id, amount).await;
    let params = parse_form(&order_string(&created));
    assert_eq!(params["app_id"], ISV_APP_ID);
    assert_eq!(params["app_auth_token"], token);
    let paid = cashier(gw, &order_string(&created), "deliver").await;
    assert_eq!(paid["deliveries"][0]["acknowledged"], true, "{paid}");
    assert_eq!(status(gw, s.id, &no).await, "paid");
    no
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_with_two_sub_merchants_pays_refunds_and_rotates_its_keys() {
    for backend in backends() {
        let name = backend.name();
        let gw = start(&backend).await;
        gw.sandbox("/control/settings", &json!({"auto_refund": "SUCCESS"}))
            .await;

        // WeChat: A pays with its own mini-program (sub_openid), B with the platform's
        // (sp_openid); each notification lands on its tenant.
        let wx_a = wechat_order(&gw, &A, 500, &format!("{CERTS}/apiclient_key.pem")).await;
        let wx_b = wechat_order(&gw, &B, 300, &format!("{CERTS}/apiclient_key.pem")).await;
        wechat_pay(&gw, &A, &wx_a).await;
        wechat_pay(&gw, &B, &wx_b).await;
        assert_eq!(status(&gw, A.id, &wx_a).await, "paid", "{name}");
        assert_eq!(status(&gw, B.id, &wx_b).await, "paid", "{name}");

        // A genuine partner notification for A, sent to B's URL while B has an order with the
        // same number and amount: refused by sub_mchid; the same one on A's URL is accepted.
        let (code, _) = gw
            .post(
                B.id,
                "/v1/orders",
                &json!({"provider": "wechat_miniprogram", "out_trade_no": wx_a, "amount": 500,
                        "description": "same number", "payer": {"openid": wechat::login(&gw, B.id).await}}),
            )
            .await;
        assert_eq!(code, 201, "{name}");
        let mut forged = Forged::payment(
            &paybridge_tests::TestTenant::wechat("unused", 1, "MD5"),
            &wx_a,
            500,
            "4200000000202612060000000001",
        );
        forged.resource = json!({
            "sp_appid": SP_APPID, "sp_mchid": SP_MCHID, "sub_appid": A.sub_appid,
            "sub_mchid": A.sub_mchid, "out_trade_no": wx_a,
            "transaction_id": "4200000000202612060000000001", "trade_type": "JSAPI",
            "trade_state": "SUCCESS", "success_time": "2026-12-06T16:00:05+08:00",
            "payer": {"sub_openid": "o-a"}, "amount": {"total": 500, "payer_total": 500, "currency": "CNY"},
        });
        forged.apiv3_key = APIV3_KEY.to_owned();
        forged.serial = format!("PUB_KEY_ID_0114{SP_MCHID}00000000000001");
        let (body, headers) = forged.seal_and_sign();
        let (code, _) = notify_v3(&gw, B.id, &body, &headers).await;
        assert!(code >= 400, "{name}: B accepted A's notification ({code})");
        assert_eq!(status(&gw, B.id, &wx_a).await, "pending", "{name}");
        // The same, naming another sub-merchant of the platform (all else A's): refused by
        // sub_mchid alone.
        let mut other = forged.clone();
        other.resource["sub_mchid"] = json!("1900000299");
        let (other_body, other_headers) = other.seal_and_sign();
        let (code, _) = notify_v3(&gw, A.id, &other_body, &other_headers).await;
        assert!(
            code >= 400,
            "{name}: A accepted another sub-merchant's notification ({code})"
        );
        assert_eq!(status(&gw, A.id, &wx_a).await, "paid", "{name}");
        let (code, _) = notify_v3(&gw, A.id, &body, &headers).await;
        assert!(
            code < 300,
            "{name}: A refused its own notification ({code})"
        );

        // Refunds through the partner API (sub_mchid), settled and notified.
        let r = refund(&gw, &A, &wx_a, "RA-1", 200).await;
        assert_eq!(r["status"], "processing", "{name}: {r}");
        let r = refund(&gw, &B, &wx_b, "RB-1", 300).await;
        assert_eq!(r["status"], "processing", "{name}: {r}");
        for (s, no, refund_no) in [(&A, &wx_a, "RA-1"), (&B, &wx_b, "RB-1")] {
            let mut last = Value::Null;
            for _ in 0..50 {
                last = gw
                    .get(s.id, &format!("/v1/orders/{no}/refunds/{refund_no}"))
                    .await
                    .1;
                if last["status"] == "succeeded" {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            assert_eq!(last["status"], "succeeded", "{name}: {last}");
        }

        // Closing an unpaid partner order closes it at WeChat (the partner close API).
        let to_close = wechat_order(&gw, &B, 900, &format!("{CERTS}/apiclient_key.pem")).await;
        let (code, closed) = gw
            .post(B.id, &format!("/v1/orders/{to_close}/close"), &json!({}))
            .await;
        assert_eq!(
            (code, closed["status"].as_str()),
            (200, Some("closed")),
            "{name}: {closed}"
        );
        let at_wechat: Value = sandbox_order(&gw, &to_close, B.sub_mchid).await;
        assert_eq!(at_wechat["trade_state"], "CLOSED", "{name}: {at_wechat}");

        // Alipay: both merchants through the ISV app, each by its token.
        let ali_a = alipay_order(&gw, &A, 700).await;
        let ali_b = alipay_order(&gw, &B, 800).await;
        let r = refund(&gw, &B, &ali_b, "RB-A1", 100).await;
        assert_eq!(r["status"], "succeeded", "{name}: {r}");

        // The platform document: secrets masked, the tenants that use it listed.
        let (code, doc) = admin(&gw, reqwest::Method::GET, "/platforms/acme", None).await;
        assert_eq!(code, 200, "{doc}");
        assert_eq!(doc["wechat_miniprogram"]["apiv3_key"], json!({"set": true}));
        assert_eq!(doc["alipay_app"]["private_key"], json!({"set": true}));
        assert!(!doc.to_string().contains(APIV3_KEY), "{doc}");
        let (_, list) = admin(&gw, reqwest::Method::GET, "/platforms", None).await;
        assert_eq!(
            list["platforms"][0]["tenants"],
            json!([A.id, B.id]),
            "{list}"
        );

        // Rotate: a new service-provider API key and certificate, and a new ISV app key. The
        // simulators now know only the new keys, so everything below proves they are used.
        let mut rotated = platform_json(
            &gw.base,
            &format!("{ROTATED}/sp_rotated_cert.pem"),
            &format!("{ROTATED}/sp_rotated_key.pem"),
            json!(include_str!(
                "../../examples/platforms/certs/isv_rotated_private.pem"
            )),
        );
        rotated["wechat_miniprogram"]["apiv3_key"] = json!({"set": true});
        let (code, after) =
            admin(&gw, reqwest::Method::PUT, "/platforms/acme", Some(&rotated)).await;
        assert_eq!(code, 200, "{name}: {after}");
        let (_, audit) = admin(&gw, reqwest::Method::GET, "/audit?limit=5", None).await;
        let entry = audit["entries"]
            .as_array()
            .and_then(|e| {
                e.iter()
                    .find(|e| e["platform_id"] == "acme" && e["action"] == "update")
            })
            .cloned()
            .unwrap_or_else(|| panic!("{name}: no audit entry for the rotation: {audit}"));
        assert!(entry["tenant_id"].is_null(), "{entry}");
        let paths: Vec<&str> = entry["diff"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["path"].as_str())
            .collect();
        assert!(
            paths.contains(&"wechat_miniprogram.client_key")
                && paths.contains(&"alipay_app.private_key"),
            "{entry}"
        );
        assert!(!entry.to_string().contains("PRIVATE KEY"), "{entry}");

        for s in [&A, &B] {
            let no = wechat_order(&gw, s, 100, &format!("{ROTATED}/sp_rotated_key.pem")).await;
            wechat_pay(&gw, s, &no).await;
            assert_eq!(status(&gw, s.id, &no).await, "paid", "{name}");
            alipay_order(&gw, s, 100).await;
        }
        // An order paid before the rotation is refunded with the new keys.
        let r = refund(&gw, &A, &ali_a, "RA-A1", 700).await;
        assert_eq!(r["status"], "succeeded", "{name}: {r}");
        let r = refund(&gw, &A, &wx_a, "RA-2", 300).await;
        assert_eq!(r["status"], "processing", "{name}: {r}");

        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_documents_have_the_guarantees_of_tenant_documents() {
    use reqwest::Method as M;
    for backend in backends() {
        let name = backend.name();
        let gw = start(&backend).await;

        // Stored apart from tenants, and encrypted at rest.
        let (_, tenants) = admin(&gw, M::GET, "/tenants", None).await;
        let ids: Vec<&str> = tenants["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["id"].as_str())
            .collect();
        assert_eq!(ids, [A.id, B.id], "{name}: {tenants}");
        let (code, _) = admin(&gw, M::GET, "/tenants/platform:acme", None).await;
        assert_eq!(code, 404, "{name}");
        // Nor can a tenant endpoint change it.
        for (method, path) in [
            (M::DELETE, "/tenants/platform:acme"),
            (
                M::POST,
                "/tenants/platform:acme/providers/alipay_app/disable",
            ),
            (M::POST, "/tenants/platform:acme/api-keys/rotate"),
        ] {
            let (code, body) = admin(&gw, method, path, None).await;
            assert_eq!(code, 404, "{name}: {path}: {body}");
        }
        let (code, _) = admin(&gw, M::GET, "/platforms/acme", None).await;
        assert_eq!(code, 200, "{name}: the platform is still there");
        use sea_orm::{ConnectionTrait, Statement};
        let db = gw.state.tenant_store.db();
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT document FROM admin_tenants WHERE id = 'platform:acme'".to_owned(),
            ))
            .await
            .unwrap()
            .unwrap();
        let stored: String = row.try_get("", "document").unwrap();
        assert!(stored.contains("enc:v1:"), "{name}: {stored}");
        assert!(
            !stored.contains(APIV3_KEY) && !stored.contains("PRIVATE KEY"),
            "{name}: a secret in plaintext at rest"
        );

        // Validation names the field.
        let mut bad = platform_json(&gw.base, "nope.pem", "nope.pem", json!("not a key"));
        bad["id"] = json!("acme2");
        bad["wechat_miniprogram"]["sub_mchid"] = json!("1900000299");
        let (code, err) = admin(&gw, M::POST, "/platforms", Some(&bad)).await;
        assert_eq!(code, 422, "{name}: {err}");
        let fields: Vec<&str> = err["error"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["field"].as_str())
            .collect();
        for field in ["wechat_miniprogram.sub_mchid", "alipay_app.private_key"] {
            assert!(fields.contains(&field), "{name}: {field} not in {err}");
        }

        // A change that would break a tenant of the platform is refused, naming the tenant.
        let mut without_alipay = platform_json(
            &gw.base,
            &format!("{CERTS}/apiclient_cert.pem"),
            &format!("{CERTS}/apiclient_key.pem"),
            json!({"set": true}),
        );
        without_alipay["wechat_miniprogram"]["apiv3_key"] = json!({"set": true});
        without_alipay.as_object_mut().unwrap().remove("alipay_app");
        let (code, err) = admin(&gw, M::PUT, "/platforms/acme", Some(&without_alipay)).await;
        assert_eq!(code, 422, "{name}: {err}");
        assert!(
            err.to_string()
                .contains("tenants.shop_a.providers.alipay_app.platform"),
            "{name}: {err}"
        );
        // Deleting it while tenants use it is refused too.
        let (code, err) = admin(&gw, M::DELETE, "/platforms/acme", None).await;
        assert_eq!(code, 409, "{name}: {err}");

        // A tenant that names a platform that does not exist, or sets a platform's key.
        let tenant = json!({
            "id": "shop_c", "api_keys": [],
            "providers": {"alipay_app": {"platform": "nope", "app_auth_token": "t", "auth_app_id": "2021000000000203", "seller_id": "2088000000000203"},
                          "wechat_miniprogram": {"platform": "acme", "sub_mchid": "1900000203", "sp_mchid": "1"}},
        });
        let (code, err) = admin(&gw, M::POST, "/tenants", Some(&tenant)).await;
        assert_eq!(code, 422, "{name}: {err}");
        let text = err.to_string();
        assert!(
            text.contains("providers.alipay_app.platform") && text.contains("no platform"),
            "{name}: {err}"
        );
        assert!(
            text.contains("providers.wechat_miniprogram.sp_mchid")
                && text.contains("is set by platform"),
            "{name}: {err}"
        );

        // Versions: If-Match with a stale version is refused.
        let (_, current) = admin(&gw, M::GET, "/platforms/acme", None).await;
        let res = gw
            .http
            .put(format!("{}/admin/api/platforms/acme", gw.base))
            .bearer_auth(ADMIN_TOKEN)
            .header("If-Match", "\"99\"")
            .json(&current)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 412, "{name}");
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_authorises_the_platform_again_and_its_token_is_renewed() {
    use reqwest::Method as M;
    for backend in backends() {
        let name = backend.name();
        let gw = start(&backend).await;
        let token_of =
            |created: &Value| parse_form(&order_string(created))["app_auth_token"].clone();

        // The merchant authorises again: the sandbox issues the code Alipay would send.
        let (code, issued) = gw
            .sandbox_of(
                "alipay_app",
                "/control/auth_code",
                &json!({"auth_app_id": A.auth_app_id}),
            )
            .await;
        assert_eq!(code, 200, "{name}: {issued}");
        let auth_code = issued["app_auth_code"].as_str().unwrap().to_owned();
        let path = format!("/tenants/{}/providers/alipay_app/authorize", A.id);
        let (code, done) = admin(
            &gw,
            M::POST,
            &path,
            Some(&json!({"app_auth_code": auth_code})),
        )
        .await;
        assert_eq!(code, 200, "{name}: {done}");
        assert_eq!(done["expires_in"], 31_536_000, "{done}");
        let masked = &done["tenant"]["providers"]["alipay_app"];
        assert_eq!(masked["app_auth_token"], json!({"set": true}), "{done}");
        assert_eq!(masked["app_refresh_token"], json!({"set": true}), "{done}");

        // The old token no longer works at Alipay; paying and refunding prove the new one is
        // used, at once.
        let (_, created) = paybridge_tests::alipay::create_order(&gw, A.id, 400).await;
        let renewed = token_of(&created);
        assert_ne!(renewed, A.token, "{name}");
        let no = alipay_order_with_token(&gw, &A, 400, &renewed).await;
        let r = refund(&gw, &A, &no, "RA-T1", 400).await;
        assert_eq!(r["status"], "succeeded", "{name}: {r}");

        // A used code is refused; a refresh with the stored refresh token renews again.
        let (code, err) = admin(
            &gw,
            M::POST,
            &path,
            Some(&json!({"app_auth_code": auth_code})),
        )
        .await;
        assert_eq!(code, 422, "{name}: {err}");
        assert_eq!(err["error"]["code"], "authorization_refused", "{err}");
        let (code, done) = admin(&gw, M::POST, &path, None).await;
        assert_eq!(code, 200, "{name}: {done}");
        let (_, created) = paybridge_tests::alipay::create_order(&gw, A.id, 100).await;
        let refreshed = token_of(&created);
        assert_ne!(refreshed, renewed, "{name}");
        alipay_order_with_token(&gw, &A, 100, &refreshed).await;
        // B was not touched.
        let (_, created) = paybridge_tests::alipay::create_order(&gw, B.id, 100).await;
        assert_eq!(token_of(&created), B.token, "{name}");
        alipay_order(&gw, &B, 100).await;

        // The audit log names the action, never the token.
        let (_, audit) = admin(&gw, M::GET, &format!("/audit?tenant={}", A.id), None).await;
        let text = audit.to_string();
        assert!(text.contains("\"authorize\""), "{audit}");
        assert!(
            !text.contains(&renewed),
            "{name}: the token is in the audit log"
        );
        // A tenant without a platform authorisation has none to renew.
        let (code, err) = admin(
            &gw,
            M::POST,
            &format!("/tenants/{}/providers/wechat_miniprogram/authorize", A.id),
            None,
        )
        .await;
        assert_eq!(code, 400, "{name}: {err}");
        gw.finish().await;
    }
}

/// A WeChat Pay service provider on API v2 (`sub_mch_id` and `sub_appid` on every call) and an
/// Alipay third-party app in public-key certificate mode.
fn v2_files(base: &str) -> Vec<(String, String)> {
    const ALIPAY_KEYS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../providers/alipay-app/sandbox-keys"
    );
    let platform = format!(
        r#"id = "sp_v2"
[alipay_app]
app_id = "{ISV_APP_ID}"
private_key = '''
{app_key}'''
app_cert = "{ALIPAY_KEYS}/app_cert.crt"
alipay_public_cert = "{ALIPAY_KEYS}/alipay_cert.crt"
alipay_root_cert = "{ALIPAY_KEYS}/alipay_root_cert.crt"
gateway_url = "{base}/sandbox/alipay_app/gateway.do"
[wechat_miniprogram]
sp_mchid = "{SP_MCHID}"
sp_appid = "{SP_APPID}"
api_key = "spv2ApiKeyForTheSandbox000000032"
app_secret = "sp-app-secret"
sign_type = "HMAC-SHA256"
client_cert = "{CERTS}/apiclient_cert.pem"
client_key = "{CERTS}/apiclient_key.pem"
api_base = "{base}/sandbox/wechat_miniprogram"
login_base = "{base}/sandbox/wechat_miniprogram"
"#,
        app_key = include_str!("../../fixtures/vectors/app_private_pkcs8.pem"),
    );
    let tenant = |s: &Sub| {
        let own_app = s
            .sub_appid
            .map(|appid| {
                format!(
                    "sub_appid = \"{appid}\"\napp_secret = \"secret-{}\"\n",
                    s.id
                )
            })
            .unwrap_or_default();
        format!(
            "id = \"{id}\"\napi_keys = [\"{key}\"]\n[providers.wechat_miniprogram]\nplatform = \"sp_v2\"\nsub_mchid = \"{sub}\"\n{own_app}\n[providers.alipay_app]\nplatform = \"sp_v2\"\napp_auth_token = \"{token}\"\nauth_app_id = \"{auth}\"\nseller_id = \"{seller}\"\n",
            id = s.id,
            key = paybridge_core::tenant::hash_api_key(&api_key(s.id)),
            sub = s.sub_mchid,
            token = s.token,
            auth = s.auth_app_id,
            seller = s.seller_id,
        )
    };
    vec![
        ("platforms/sp_v2.toml".to_owned(), platform),
        ("tenants/shop_a.toml".to_owned(), tenant(&A)),
        ("tenants/shop_b.toml".to_owned(), tenant(&B)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_service_provider_and_a_certificate_mode_isv_pay_and_refund_for_their_sub_merchants() {
    for backend in backends() {
        let name = backend.name();
        let gw = Gateway::start_with_files(&backend, &[], v2_files, |_| {}).await;
        let mut paid = Vec::new();
        for s in [&A, &B] {
            let (no, created) = wechat::create_order(&gw, s.id, 600).await;
            let params = &created["client_payment"]["wechat_miniprogram"];
            assert_eq!(params["signType"], "HMAC-SHA256", "{created}");
            let order: Value = sandbox_order(&gw, &no, s.sub_mchid).await;
            assert_eq!(order["sp_mchid"], SP_MCHID, "{name}: {order}");
            let notice = wechat_pay(&gw, s, &no).await;
            assert_eq!(status(&gw, s.id, &no).await, "paid", "{name}");
            paid.push((no, notice["notification"].as_str().unwrap().to_owned()));
            // Alipay through the platform's app in certificate mode: every request carries the
            // certificate numbers, which the sandbox checks, and the payment lands.
            let (_, created) = paybridge_tests::alipay::create_order(&gw, s.id, 300).await;
            let params = parse_form(&order_string(&created));
            assert!(
                params.contains_key("app_cert_sn") && params.contains_key("alipay_root_cert_sn"),
                "{name}: {params:?}"
            );
            let no = alipay_order(&gw, s, 300).await;
            let r = refund(&gw, s, &no, &format!("R-{}-CERT", s.id), 300).await;
            assert_eq!(r["status"], "succeeded", "{name}: {r}");
        }
        // A's notification (signed with the service provider's key, as B's would be) on B's URL:
        // refused by sub_mch_id, while B has an order with that number and amount.
        let (a_no, a_notice) = &paid[0];
        let xml = wechat::parse_xml(a_notice);
        assert_eq!(xml["mch_id"], SP_MCHID, "{a_notice}");
        assert_eq!(xml["sub_mch_id"], A.sub_mchid, "{a_notice}");
        assert!(xml.contains_key("sub_openid"), "{a_notice}");
        let (code, _) = gw
            .post(
                B.id,
                "/v1/orders",
                &json!({"provider": "wechat_miniprogram", "out_trade_no": a_no, "amount": 600,
                        "description": "same number", "payer": {"openid": wechat::login(&gw, B.id).await}}),
            )
            .await;
        assert_eq!(code, 201, "{name}");
        let (_, ack) = wechat::notify(&gw, B.id, a_notice).await;
        assert!(
            ack.contains("FAIL"),
            "{name}: B accepted A's notification: {ack}"
        );
        assert_eq!(status(&gw, B.id, a_no).await, "pending", "{name}");

        // Refunds with sub_mch_id, settled by the sandbox and notified (req_info under the
        // service provider's key).
        let (b_no, _) = &paid[1];
        let r = refund(&gw, &B, b_no, "RB-V2", 250).await;
        assert_eq!(r["status"], "processing", "{name}: {r}");
        let (code, settled) = gw
            .sandbox(
                "/control/refund",
                &json!({"out_refund_no": "RB-V2", "mch_id": B.sub_mchid, "status": "SUCCESS"}),
            )
            .await;
        assert_eq!(code, 200, "{name}: {settled}");
        assert_eq!(
            settled["deliveries"][0]["acknowledged"], true,
            "{name}: {settled}"
        );
        let (_, r) = gw
            .get(B.id, &format!("/v1/orders/{b_no}/refunds/RB-V2"))
            .await;
        assert_eq!(r["status"], "succeeded", "{name}: {r}");
        gw.finish().await;
    }
}

/// A platform tenant's statement is its own sub-merchant's bill: WeChat's `sub_mchid` (v3
/// partner), Alipay's `app_auth_token`. Each sub-merchant reconciles its own payments, and
/// never the other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sub_merchant_reconciles_its_own_bill() {
    use paybridge_server::usecases::statements::run;
    for backend in backends() {
        let name = backend.name();
        let gw = start(&backend).await;
        let today = paybridge_core::beijing::local(chrono::Utc::now()).date_naive();
        let mut paid = Vec::new();
        for (s, amount) in [(&A, 500), (&B, 300)] {
            let no = wechat_order(&gw, s, amount, &format!("{CERTS}/apiclient_key.pem")).await;
            wechat_pay(&gw, s, &no).await;
            let ali = alipay_order(&gw, s, amount + 1).await;
            paid.push((s, no, ali, amount));
        }
        for (s, wx, ali, amount) in &paid {
            let tenant = gw.state.tenants.get(s.id).unwrap();
            for (kind, no, fen) in [
                ("wechat_miniprogram", wx, *amount),
                ("alipay_app", ali, *amount + 1),
            ] {
                let st = run(&gw.state, &tenant, kind, today).await.unwrap();
                assert_eq!(
                    (st.status.as_str(), st.lines, st.matched, st.gross),
                    ("reconciled", 1, 1, fen),
                    "{name} {} {kind}: {st:?}",
                    s.id
                );
                let order = gw.get(s.id, &format!("/v1/orders/{no}")).await.1;
                assert!(order["fee"].is_i64(), "{name} {kind}: {order}");
            }
        }
        gw.finish().await;
    }
}
