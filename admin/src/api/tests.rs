//! The admin API through actix's test harness.

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use paybridge_core::tenant::hash_api_key;
use serde_json::{Value, json};

use super::*;
use crate::test_support::{TEST_KIND, sample_doc, test_dbs};

const TOKEN: &str = "admin-token-for-tests";
const PLANTED: &str = "PLANTED-d41d8c";

/// Sends requests and checks that no answer ever carries a planted secret.
struct Client<S> {
    app: S,
}

impl<S> Client<S>
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse,
            Error = actix_web::Error,
        >,
{
    async fn send(&self, req: test::TestRequest) -> (StatusCode, String) {
        let resp = test::call_service(&self.app, req.to_request()).await;
        let status = resp.status();
        let body = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
        assert!(!body.contains(PLANTED), "a secret leaked: {body}");
        (status, body)
    }

    async fn call(&self, req: test::TestRequest) -> (StatusCode, String) {
        self.send(req.insert_header(("Authorization", format!("Bearer {TOKEN}"))))
            .await
    }

    async fn json(&self, req: test::TestRequest) -> (StatusCode, Value) {
        let (status, body) = self.call(req).await;
        let value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
        };
        (status, value)
    }
}

fn toml_body(req: test::TestRequest, text: &str) -> test::TestRequest {
    req.insert_header(("Content-Type", "application/toml"))
        .set_payload(text.to_owned())
}

macro_rules! client {
    ($store:expr) => {{
        let tokens = AdminTokens::new(&[hash_api_key(TOKEN)], None).unwrap();
        let state = AdminState::new($store, tokens);
        Client {
            app: test::init_service(
                App::new()
                    .app_data(web::Data::new(state))
                    .configure(actix_routes)
                    .configure(crate::web::routes),
            )
            .await,
        }
    }};
}

#[actix_web::test]
async fn a_merchant_key_or_no_token_gets_401() {
    for t in test_dbs().await {
        let c = client!(t.store());
        c.call(toml_body(
            test::TestRequest::post().uri("/admin/api/tenants"),
            &sample_doc("acme", PLANTED),
        ))
        .await;
        for auth in [
            None,
            Some("Bearer key-acme"),
            Some(&*format!("Basic {TOKEN}")),
        ] {
            let mut req = test::TestRequest::get().uri("/admin/api/tenants");
            if let Some(a) = auth {
                req = req.insert_header(("Authorization", a));
            }
            let (status, body) = c.send(req).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"]["code"], "unauthorized");
        }
        t.finish().await;
    }
}

#[actix_web::test]
async fn tenants_go_in_and_out_as_toml_or_json_with_secrets_masked() {
    for t in test_dbs().await {
        let store = t.store();
        let c = client!(store.clone());
        let (status, body) = c
            .call(
                toml_body(
                    test::TestRequest::post().uri("/admin/api/tenants"),
                    &sample_doc("acme", PLANTED),
                )
                .insert_header(("Accept", "application/toml")),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert!(body.contains("webhook_secret = { set = true }"), "{body}");
        assert!(body.contains("api_secret = { set = true }"), "{body}");

        let (status, doc) = c
            .json(test::TestRequest::get().uri("/admin/api/tenants/acme"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(doc["webhook_secret"], json!({"set": true}));
        assert_eq!(doc["providers"][TEST_KIND]["merchant_id"], "1900000109");

        // The masked JSON sent back with one change keeps every secret.
        let mut edited = doc.clone();
        edited["name"] = json!("Renamed");
        let (status, _) = c
            .json(
                test::TestRequest::put()
                    .uri("/admin/api/tenants/acme")
                    .set_json(&edited),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let stored = store.get("acme").await.unwrap().unwrap();
        assert_eq!(stored.document["name"].as_str(), Some("Renamed"));
        assert_eq!(
            stored.document["webhook_secret"].as_str(),
            Some(format!("hook-{PLANTED}").as_str())
        );
        assert_eq!(
            stored.document["providers"][TEST_KIND]["api_secret"].as_str(),
            Some(format!("api-secret-{PLANTED}").as_str())
        );

        // A new value typed in replaces the secret.
        edited["webhook_secret"] = json!("a-brand-new-hook-secret");
        c.json(
            test::TestRequest::put()
                .uri("/admin/api/tenants/acme")
                .set_json(&edited),
        )
        .await;
        let stored = store.get("acme").await.unwrap().unwrap();
        assert_eq!(
            stored.document["webhook_secret"].as_str(),
            Some("a-brand-new-hook-secret")
        );

        let (_, list) = c
            .json(test::TestRequest::get().uri("/admin/api/tenants"))
            .await;
        assert_eq!(list["tenants"][0]["id"], "acme");
        assert_eq!(
            list["tenants"][0]["providers"][0],
            json!({"kind": TEST_KIND, "enabled": true})
        );

        let (_, audit) = c
            .json(test::TestRequest::get().uri("/admin/api/audit?tenant=acme"))
            .await;
        assert_eq!(audit["entries"].as_array().unwrap().len(), 3);
        assert!(
            audit["entries"][0]["actor"]
                .as_str()
                .unwrap()
                .starts_with("admin:")
        );
        let (status, text) = c
            .call(
                test::TestRequest::get()
                    .uri("/admin/api/audit")
                    .insert_header(("Accept", "application/toml")),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(!text.contains("a-brand-new-hook-secret"), "{text}");
        t.finish().await;
    }
}

#[actix_web::test]
async fn an_invalid_document_is_a_422_listing_every_bad_field() {
    for t in test_dbs().await {
        let c = client!(t.store());
        let bad = format!(
            "id = \"acme\"\napi_keys = [\"plain\"]\n[providers.{TEST_KIND}]\nmerchant_id = \"x\"\napi_secret = \"{PLANTED}\"\nsign_type = \"SHA1\"\n"
        );
        for uri in ["/admin/api/tenants", "/admin/api/validate"] {
            let (status, v) = c
                .json(toml_body(test::TestRequest::post().uri(uri), &bad))
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}: {v}");
            assert_eq!(v["error"]["code"], "invalid_config");
            assert!(v["error"]["message"].is_string());
            let fields: Vec<&str> = v["error"]["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["field"].as_str().unwrap())
                .collect();
            assert_eq!(
                fields,
                [
                    "api_keys[0]".to_owned(),
                    format!("providers.{TEST_KIND}.merchant_id"),
                    format!("providers.{TEST_KIND}.sign_type"),
                ],
                "{uri}"
            );
        }
        let (status, v) = c
            .json(toml_body(
                test::TestRequest::post().uri("/admin/api/validate"),
                "id = \n",
            ))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(v["error"]["fields"][0]["field"], "(document)");
        assert!(
            v["error"]["fields"][0]["message"]
                .as_str()
                .unwrap()
                .starts_with("line 1:")
        );
        let (status, v) = c
            .json(toml_body(
                test::TestRequest::post().uri("/admin/api/validate"),
                &sample_doc("ok", "x"),
            ))
            .await;
        assert_eq!(
            (status, v),
            (StatusCode::OK, json!({"valid": true, "id": "ok"}))
        );
        let (status, v) = c
            .json(
                test::TestRequest::post()
                    .uri("/admin/api/validate")
                    .set_payload("id=1"),
            )
            .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
        t.finish().await;
    }
}

#[actix_web::test]
async fn create_put_delete_and_provider_switches_follow_the_contract() {
    for t in test_dbs().await {
        let store = t.store();
        let c = client!(store.clone());
        let post = || {
            toml_body(
                test::TestRequest::post().uri("/admin/api/tenants"),
                &sample_doc("acme", PLANTED),
            )
        };
        assert_eq!(c.call(post()).await.0, StatusCode::CREATED);
        assert_eq!(c.json(post()).await.1["error"]["code"], "conflict");
        let put = |id: &str| {
            toml_body(
                test::TestRequest::put().uri(&format!("/admin/api/tenants/{id}")),
                &sample_doc(id, PLANTED),
            )
        };
        assert_eq!(c.call(put("beta")).await.0, StatusCode::CREATED);
        assert_eq!(c.call(put("beta")).await.0, StatusCode::OK);
        let (status, v) = c
            .json(toml_body(
                test::TestRequest::put().uri("/admin/api/tenants/gamma"),
                &sample_doc("beta", "x"),
            ))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(v["error"]["fields"][0]["field"], "id");

        let (status, v) = c
            .json(test::TestRequest::post().uri(&format!(
                "/admin/api/tenants/acme/providers/{TEST_KIND}/disable"
            )))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["providers"][TEST_KIND]["enabled"], false);
        let built = store
            .get("acme")
            .await
            .unwrap()
            .unwrap()
            .build(
                std::time::Duration::from_secs(1),
                paybridge_core::platform::Platforms::none(),
            )
            .unwrap();
        assert!(built.enabled_provider(TEST_KIND).is_none());
        let (status, _) = c
            .json(test::TestRequest::post().uri(&format!(
                "/admin/api/tenants/acme/providers/{TEST_KIND}/enable"
            )))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, v) = c
            .json(test::TestRequest::post().uri("/admin/api/tenants/acme/providers/nope/enable"))
            .await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );

        let (status, v) = c
            .json(test::TestRequest::post().uri("/admin/api/tenants/acme/api-keys/rotate"))
            .await;
        assert_eq!(status, StatusCode::OK);
        let key = v["api_key"].as_str().unwrap().to_owned();
        let stored = store.load_all().await.unwrap();
        let acme = stored.iter().find(|s| s.id == "acme").unwrap();
        assert!(
            acme.build(
                std::time::Duration::from_secs(1),
                paybridge_core::platform::Platforms::none()
            )
            .unwrap()
            .accepts_api_key(&key)
        );
        assert_eq!(acme.retired_keys.len(), 1);
        let (_, audit) = c
            .call(test::TestRequest::get().uri("/admin/api/audit"))
            .await;
        assert!(!audit.contains(&key));

        assert_eq!(
            c.call(test::TestRequest::delete().uri("/admin/api/tenants/acme"))
                .await
                .0,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            c.call(test::TestRequest::get().uri("/admin/api/tenants/acme"))
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            c.call(test::TestRequest::delete().uri("/admin/api/tenants/acme"))
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        assert!(
            store
                .load_all()
                .await
                .unwrap()
                .iter()
                .all(|s| s.id != "acme")
        );

        let (_, kinds) = c
            .json(test::TestRequest::get().uri("/admin/api/provider-kinds"))
            .await;
        let testpay = kinds["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kind"] == TEST_KIND)
            .unwrap();
        let secret = testpay["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "api_secret")
            .unwrap();
        assert_eq!(secret["secret"], true);
        t.finish().await;
    }
}

#[actix_web::test]
async fn if_match_guards_against_lost_updates() {
    for t in test_dbs().await {
        let c = client!(t.store());
        let post = toml_body(
            test::TestRequest::post().uri("/admin/api/tenants"),
            &sample_doc("acme", PLANTED),
        );
        c.call(post).await;
        let put = |etag: &str| {
            toml_body(
                test::TestRequest::put().uri("/admin/api/tenants/acme"),
                &sample_doc("acme", "v2"),
            )
            .insert_header(("If-Match", etag.to_owned()))
        };
        assert_eq!(c.call(put("\"1\"")).await.0, StatusCode::OK);
        let (status, v) = c.json(put("\"1\"")).await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED);
        assert_eq!(v["error"]["code"], "version_mismatch");
        t.finish().await;
    }
}

#[actix_web::test]
async fn without_a_master_key_secrets_are_refused_unless_plaintext_is_permitted() {
    for t in test_dbs().await {
        let c = client!(crate::store::TenantStore::new(t.db.clone(), None));
        let (status, v) = c
            .json(toml_body(
                test::TestRequest::post().uri("/admin/api/tenants"),
                &sample_doc("acme", PLANTED),
            ))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(v["error"]["code"], "master_key_required");
        let field = v["error"]["field"].as_str().unwrap();
        assert!(
            [
                "webhook_secret",
                &format!("providers.{TEST_KIND}.api_secret")
            ]
            .contains(&field),
            "{field}"
        );
        t.finish().await;
    }
}

#[actix_web::test]
async fn the_page_and_its_assets_are_served_without_a_token_or_a_cdn() {
    for t in test_dbs().await {
        let c = client!(t.store());
        let (status, html) = c.send(test::TestRequest::get().uri("/admin/")).await;
        assert_eq!(status, StatusCode::OK);
        for id in ["token-input", "tenant-list", "editor", "save-button"] {
            assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
        }
        for asset in ["app.js", "style.css"] {
            let (status, body) = c
                .send(test::TestRequest::get().uri(&format!("/admin/assets/{asset}")))
                .await;
            assert_eq!(status, StatusCode::OK, "{asset}");
            assert!(!body.is_empty());
            assert!(
                !body.contains("https://") && !body.contains("http://"),
                "{asset} loads from elsewhere"
            );
        }
        assert!(!html.contains("https://") && !html.contains("http://"));
        assert_eq!(
            c.send(test::TestRequest::get().uri("/admin/assets/x.js"))
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        t.finish().await;
    }
}

#[actix_web::test]
async fn the_handlers_document_themselves_in_openapi() {
    use utoipa::{Modify, OpenApi};
    use utoipa_actix_web::AppExt;

    #[derive(OpenApi)]
    struct Doc;
    let (_, mut doc) = App::new()
        .into_utoipa_app()
        .openapi(Doc::openapi())
        .configure(routes)
        .split_for_parts();
    AdminSecurity.modify(&mut doc);
    let json = serde_json::to_value(&doc).unwrap();
    for path in [
        "/admin/api/tenants",
        "/admin/api/tenants/{id}",
        "/admin/api/tenants/{id}/providers/{kind}/enable",
        "/admin/api/tenants/{id}/providers/{kind}/disable",
        "/admin/api/tenants/{id}/api-keys/rotate",
        "/admin/api/validate",
        "/admin/api/provider-kinds",
        "/admin/api/audit",
    ] {
        assert!(json["paths"][path].is_object(), "{path} missing");
    }
    assert_eq!(
        json["paths"]["/admin/api/tenants/{id}"]["put"]["tags"][0],
        "admin"
    );
    assert_eq!(
        json["paths"]["/admin/api/tenants"]["get"]["security"][0],
        json!({"admin": []})
    );
    assert!(json["components"]["securitySchemes"]["admin"].is_object());
    assert!(json["components"]["schemas"]["AdminErrorBody"].is_object());
}

#[actix_web::test]
async fn a_read_only_token_reads_and_validates_but_changes_nothing() {
    const READER: &str = "read-only-token-for-tests";
    for t in test_dbs().await {
        let store = t.store();
        let tokens = AdminTokens::new(&[hash_api_key(TOKEN)], None)
            .unwrap()
            .with_read_only(&[hash_api_key(READER)])
            .unwrap();
        let c = Client {
            app: test::init_service(
                App::new()
                    .app_data(web::Data::new(AdminState::new(store.clone(), tokens)))
                    .configure(actix_routes),
            )
            .await,
        };
        let (status, _) = c
            .call(toml_body(
                test::TestRequest::post().uri("/admin/api/tenants"),
                &sample_doc("acme", PLANTED),
            ))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let as_reader = |req: test::TestRequest| {
            req.insert_header(("Authorization", format!("Bearer {READER}")))
        };
        // Reads, and validation, are allowed.
        for uri in [
            "/admin/api/tenants",
            "/admin/api/tenants/acme",
            "/admin/api/platforms",
            "/admin/api/audit",
            "/admin/api/provider-kinds",
        ] {
            let (status, body) = c.send(as_reader(test::TestRequest::get().uri(uri))).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        }
        let (status, body) = c
            .send(as_reader(toml_body(
                test::TestRequest::post().uri("/admin/api/validate"),
                &sample_doc("acme", PLANTED),
            )))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // Every change and action is 403, and nothing changed.
        let changes = [
            toml_body(
                test::TestRequest::post().uri("/admin/api/tenants"),
                &sample_doc("other", PLANTED),
            ),
            toml_body(
                test::TestRequest::put().uri("/admin/api/tenants/acme"),
                &sample_doc("acme", "changed-value"),
            ),
            test::TestRequest::delete().uri("/admin/api/tenants/acme"),
            test::TestRequest::post().uri(&format!(
                "/admin/api/tenants/acme/providers/{TEST_KIND}/disable"
            )),
            test::TestRequest::post().uri("/admin/api/tenants/acme/api-keys/rotate"),
            test::TestRequest::post().uri(&format!(
                "/admin/api/tenants/acme/providers/{TEST_KIND}/authorize"
            )),
            toml_body(
                test::TestRequest::post().uri("/admin/api/platforms"),
                "id = \"p\"\n",
            ),
            test::TestRequest::delete().uri("/admin/api/platforms/p"),
        ];
        for req in changes {
            let (status, body) = c.send(as_reader(req)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"]["code"], "forbidden");
        }
        assert_eq!(store.get("acme").await.unwrap().unwrap().version, 1);
        assert_eq!(store.list().await.unwrap().len(), 1);
        t.finish().await;
    }
}
