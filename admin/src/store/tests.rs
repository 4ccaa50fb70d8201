//! Store behaviour on SQLite, and on PostgreSQL when `DATABASE_URL` names one.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};

use super::*;
use crate::document::mask;
use crate::format::parse_toml;
use crate::test_support::{TEST_KIND, sample_doc, test_dbs};

async fn raw_texts(db: &DatabaseConnection, sql: &str) -> Vec<String> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .collect()
}

fn doc(text: &str) -> toml::Table {
    parse_toml(text).unwrap()
}

#[tokio::test]
async fn a_stored_row_never_holds_a_planted_secret_in_plaintext() {
    for t in test_dbs().await {
        let store = t.store();
        let planted = "PLANTED-7f3a9c";
        store
            .create(&doc(&sample_doc("acme", planted)), None, "test")
            .await
            .unwrap();
        let mut edited = doc(&sample_doc("acme", planted));
        edited.insert("name".into(), "Acme 2".into());
        store
            .put("acme", &edited, None, "test", None)
            .await
            .unwrap();
        for sql in [
            "SELECT document FROM admin_tenants",
            "SELECT document FROM admin_tenant_versions",
            "SELECT diff FROM admin_audit",
        ] {
            let texts = raw_texts(store.db(), sql).await;
            assert!(!texts.is_empty(), "{sql} on {}", t.backend);
            for text in texts {
                assert!(
                    !text.contains(planted),
                    "{sql} leaks on {}: {text}",
                    t.backend
                );
            }
        }
        let stored = raw_texts(store.db(), "SELECT document FROM admin_tenants").await;
        assert!(stored[0].contains("enc:v1:"), "{}", stored[0]);
        let loaded = store.load_all().await.unwrap();
        assert_eq!(
            loaded[0].document["webhook_secret"].as_str(),
            Some(format!("hook-{planted}").as_str()),
            "decrypted on load"
        );
        t.finish().await;
    }
}

#[tokio::test]
async fn every_change_is_a_new_version_with_an_audit_entry_and_a_config_bump() {
    for t in test_dbs().await {
        let store = t.store();
        assert_eq!(store.config_version().await.unwrap(), 0);
        let w = store
            .create(&doc(&sample_doc("acme", "one")), None, "cli:alice")
            .await
            .unwrap();
        assert!(w.created);
        assert_eq!(w.tenant.version, 1);
        assert_eq!(store.config_version().await.unwrap(), 1);

        let mut edited = mask(&w.tenant.document);
        edited["providers"][TEST_KIND]
            .as_table_mut()
            .unwrap()
            .insert("sign_type".into(), "HMAC-SHA256".into());
        let w = store
            .put("acme", &edited, None, "admin:bob", None)
            .await
            .unwrap();
        assert!(!w.created);
        assert_eq!(w.tenant.version, 2);
        assert_eq!(
            w.tenant.document["providers"][TEST_KIND]["api_secret"].as_str(),
            Some("api-secret-one"),
            "{{ set = true }} kept the secret"
        );
        assert_eq!(store.config_version().await.unwrap(), 2);

        let audit = store.audit(Some("acme"), 10).await.unwrap();
        assert_eq!(audit.len(), 2, "{}", t.backend);
        assert_eq!(audit[0].actor, "admin:bob");
        assert_eq!(audit[0].action, "update");
        assert_eq!(audit[1].action, "create");
        assert_eq!(audit[0].diff.len(), 1, "{:?}", audit[0].diff);
        assert_eq!(
            audit[0].diff[0].path,
            format!("providers.{TEST_KIND}.sign_type")
        );
        assert_eq!(audit[0].diff[0].from, Some(serde_json::json!("MD5")));
        let created = serde_json::to_string(&audit[1].diff).unwrap();
        assert!(
            !created.contains("hook-one") && created.contains(r#"{"set":true}"#),
            "{created}"
        );

        let versions = raw_texts(
            store.db(),
            "SELECT actor FROM admin_tenant_versions ORDER BY version",
        )
        .await;
        assert_eq!(versions, ["cli:alice", "admin:bob"]);

        let stale = store.put("acme", &edited, None, "x", Some(1)).await;
        assert!(matches!(
            stale,
            Err(StoreError::VersionMismatch { actual: 2, .. })
        ));
        t.finish().await;
    }
}

#[tokio::test]
async fn create_refuses_an_existing_id_and_delete_removes_the_tenant() {
    for t in test_dbs().await {
        let store = t.store();
        let d = doc(&sample_doc("acme", "x"));
        store.create(&d, None, "a").await.unwrap();
        assert!(matches!(
            store.create(&d, None, "a").await,
            Err(StoreError::Conflict(_))
        ));
        store.delete("acme", "a").await.unwrap();
        assert!(store.get("acme").await.unwrap().is_none());
        assert!(store.load_all().await.unwrap().is_empty());
        assert!(matches!(
            store.delete("acme", "a").await,
            Err(StoreError::NotFound(_))
        ));
        // Re-created, it continues the version history instead of clashing with it.
        let again = store.create(&d, None, "a").await.unwrap();
        assert_eq!(again.tenant.version, 2);
        assert_eq!(store.audit(None, 10).await.unwrap()[1].action, "delete");
        t.finish().await;
    }
}

#[tokio::test]
async fn invalid_documents_report_every_bad_field_with_its_path() {
    for t in test_dbs().await {
        let store = t.store();
        let bad = doc(&format!(
            "id = \"acme\"\nname = 3\napi_keys = []\n[providers.{TEST_KIND}]\nmerchant_id = \"abc\"\napi_secret = \"short\"\nsign_type = \"SHA1\"\ncert_file = \"missing.pem\"\n"
        ));
        let Err(StoreError::Invalid(errors)) = store.create(&bad, None, "a").await else {
            panic!("accepted an invalid document");
        };
        let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
        for want in [
            "name".to_owned(),
            format!("providers.{TEST_KIND}.merchant_id"),
            format!("providers.{TEST_KIND}.api_secret"),
            format!("providers.{TEST_KIND}.sign_type"),
            format!("providers.{TEST_KIND}.cert_file"),
        ] {
            assert!(
                fields.contains(&want.as_str()),
                "{want} missing from {fields:?}"
            );
        }
        assert!(store.list().await.unwrap().is_empty(), "nothing saved");
        assert_eq!(store.config_version().await.unwrap(), 0);
        t.finish().await;
    }
}

#[tokio::test]
async fn import_creates_missing_tenants_and_overwrites_only_when_asked() {
    for t in test_dbs().await {
        let store = t.store();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("acme.toml"), sample_doc("acme", "file")).unwrap();
        std::fs::write(dir.path().join("cert.pem"), "x").unwrap();
        let report = store
            .import_dir(dir.path(), false, "bootstrap")
            .await
            .unwrap();
        assert_eq!(report.count(ImportOutcome::Created), 1);
        let stored = store.get("acme").await.unwrap().unwrap();
        assert_eq!(stored.base_dir, dir.path().canonicalize().unwrap());

        let mut edited = stored.document.clone();
        edited.insert("name".into(), "Edited in the DB".into());
        store
            .put("acme", &edited, None, "admin:x", None)
            .await
            .unwrap();

        let report = store
            .import_dir(dir.path(), false, "bootstrap")
            .await
            .unwrap();
        assert_eq!(report.count(ImportOutcome::Skipped), 1);
        let name = |s: &StoredTenant| s.document["name"].as_str().unwrap().to_owned();
        assert_eq!(
            name(&store.get("acme").await.unwrap().unwrap()),
            "Edited in the DB"
        );

        let report = store.import_dir(dir.path(), true, "cli:op").await.unwrap();
        assert_eq!(report.count(ImportOutcome::Replaced), 1);
        assert_eq!(
            name(&store.get("acme").await.unwrap().unwrap()),
            "Tenant acme"
        );
        let report = store.import_dir(dir.path(), true, "cli:op").await.unwrap();
        assert_eq!(report.count(ImportOutcome::Unchanged), 1);
        assert_eq!(store.get("acme").await.unwrap().unwrap().version, 3);

        // One bad file: nothing is written, and the problem names the file and the field.
        std::fs::write(
            dir.path().join("bad.toml"),
            "id = \"bad\"\napi_keys = [\"nope\"]\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("good.toml"), sample_doc("good", "g")).unwrap();
        let err = store.import_dir(dir.path(), false, "b").await.unwrap_err();
        assert!(err.to_string().contains("bad.toml: api_keys[0]"), "{err}");
        assert!(store.get("good").await.unwrap().is_none());
        t.finish().await;
    }
}

#[tokio::test]
async fn rotation_replaces_the_keys_and_retires_the_old_ones_for_the_grace_period() {
    for t in test_dbs().await {
        let store = t.store();
        store
            .create(&doc(&sample_doc("acme", "r")), None, "a")
            .await
            .unwrap();
        let old_digest = paybridge_core::tenant::hash_api_key("key-acme");
        let (key, w) = store
            .rotate_api_key("acme", Duration::from_secs(3600), "admin:x")
            .await
            .unwrap();
        let key = secrecy::ExposeSecret::expose_secret(&key).to_owned();
        assert!(key.starts_with("pk_") && key.len() > 40, "{key}");
        let tenant = w
            .tenant
            .build(
                Duration::from_secs(1),
                paybridge_core::platform::Platforms::none(),
            )
            .unwrap();
        assert!(tenant.accepts_api_key(&key));
        assert!(!tenant.accepts_api_key("key-acme"));
        let all = store.load_all().await.unwrap();
        assert_eq!(all[0].retired_keys.len(), 1);
        assert_eq!(
            format!("sha256:{}", all[0].retired_keys[0].digest),
            old_digest
        );
        let remaining = all[0].retired_keys[0].expires_at - chrono::Utc::now();
        assert!(remaining > chrono::Duration::minutes(59), "{remaining}");
        let serving = all[0]
            .build_for_serving(
                Duration::from_secs(1),
                chrono::Utc::now(),
                paybridge_core::platform::Platforms::none(),
            )
            .unwrap();
        assert!(serving.accepts_api_key("key-acme") && serving.accepts_api_key(&key));
        let later = chrono::Utc::now() + chrono::Duration::minutes(61);
        let expired = all[0]
            .build_for_serving(
                Duration::from_secs(1),
                later,
                paybridge_core::platform::Platforms::none(),
            )
            .unwrap();
        assert!(!expired.accepts_api_key("key-acme") && expired.accepts_api_key(&key));
        assert_eq!(
            all[0].next_key_expiry(),
            Some(all[0].retired_keys[0].expires_at)
        );

        let audit = serde_json::to_string(&store.audit(None, 1).await.unwrap()).unwrap();
        assert!(
            audit.contains("rotate_api_key") && !audit.contains(&key),
            "{audit}"
        );

        store
            .rotate_api_key("acme", Duration::ZERO, "admin:x")
            .await
            .unwrap();
        assert_eq!(
            store.load_all().await.unwrap()[0].retired_keys.len(),
            1,
            "no new retiree"
        );
        store.delete("acme", "a").await.unwrap();
        assert!(
            raw_texts(store.db(), "SELECT digest FROM admin_retired_keys")
                .await
                .is_empty()
        );
        t.finish().await;
    }
}

#[tokio::test]
async fn concurrent_changes_each_get_their_own_version() {
    for t in test_dbs().await {
        let store = t.store();
        store
            .create(&doc(&sample_doc("acme", "c")), None, "a")
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..6 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                s.set_provider_enabled("acme", TEST_KIND, i % 2 == 0, "x")
                    .await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(store.get("acme").await.unwrap().unwrap().version, 7);
        assert_eq!(store.config_version().await.unwrap(), 7);
        t.finish().await;
    }
}

#[tokio::test]
async fn plaintext_mode_stores_secrets_only_when_permitted() {
    for t in test_dbs().await {
        let strict = TenantStore::new(t.db.clone(), None);
        let d = doc(&sample_doc("sandbox", "plain"));
        let err = strict.create(&d, None, "a").await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Secrets(SecretsError::PlaintextNotPermitted { .. })
            ),
            "{err}"
        );
        let permitted = TenantStore::new(t.db.clone(), None).permit_plaintext_secrets(true);
        permitted.create(&d, None, "a").await.unwrap();
        let raw = raw_texts(permitted.db(), "SELECT document FROM admin_tenants").await;
        assert!(
            raw[0].contains("hook-plain"),
            "plaintext mode keeps plaintext"
        );
        // A key added later reads the plaintext and encrypts on the next write.
        let keyed = t.store();
        let loaded = keyed.get("sandbox").await.unwrap().unwrap();
        keyed
            .put("sandbox", &loaded.document, None, "a", None)
            .await
            .unwrap();
        let raw = raw_texts(keyed.db(), "SELECT document FROM admin_tenants").await;
        assert!(!raw[0].contains("hook-plain"), "{}", raw[0]);
        // Without the key, the encrypted tenant cannot be opened.
        assert!(permitted.load_all().await.is_err());
        t.finish().await;
    }
}
