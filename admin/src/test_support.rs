//! Test-only: a provider factory (the admin crate links no real provider), temporary databases on
//! SQLite and on PostgreSQL when `DATABASE_URL` names one, and sample documents.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use paybridge_core::provider::{
    AckBody, BuildContext, CreatePayment, CreatedPayment, FieldError, FieldSpec,
    IncomingNotification, NotificationRejection, OrderLookup, PaymentProvider, ProviderError,
    ProviderEvent, ProviderFactory,
};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

use crate::secrets::MasterKey;
use crate::store::TenantStore;

/// The test provider's kind.
pub const TEST_KIND: &str = "testpay";

const FIELDS: &[FieldSpec] = &[
    FieldSpec {
        name: "merchant_id",
        required: true,
        secret: false,
        description: "digits",
    },
    FieldSpec {
        name: "api_secret",
        required: true,
        secret: true,
        description: "8+ characters",
    },
    FieldSpec {
        name: "sign_type",
        required: false,
        secret: false,
        description: "MD5 or HMAC-SHA256",
    },
    FieldSpec {
        name: "cert_file",
        required: false,
        secret: false,
        description: "a file, relative to the tenant file",
    },
];

struct TestProvider;

#[async_trait]
impl PaymentProvider for TestProvider {
    fn kind(&self) -> &'static str {
        TEST_KIND
    }
    async fn create_payment(&self, _: &CreatePayment) -> Result<CreatedPayment, ProviderError> {
        Err(ProviderError::Unavailable("test".into()))
    }
    async fn verify_notification(
        &self,
        _: &IncomingNotification<'_>,
        _: &dyn OrderLookup,
    ) -> Result<ProviderEvent, NotificationRejection> {
        Err(NotificationRejection::BadSignature)
    }
    fn acknowledgement(&self, _: Result<(), &NotificationRejection>) -> AckBody {
        AckBody {
            status: 200,
            content_type: "text/plain",
            body: b"ok".to_vec(),
        }
    }
}

fn build(
    table: &toml::Table,
    ctx: &BuildContext,
) -> Result<Arc<dyn PaymentProvider>, Vec<FieldError>> {
    let mut errors = Vec::new();
    for key in table.keys() {
        if !FIELDS.iter().any(|f| f.name == key) {
            errors.push(FieldError::new(key.clone(), "unknown key"));
        }
    }
    match table.get("merchant_id").map(toml::Value::as_str) {
        None => errors.push(FieldError::new("merchant_id", "required")),
        Some(Some(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {}
        Some(_) => errors.push(FieldError::new("merchant_id", "must be digits")),
    }
    match table.get("api_secret").map(toml::Value::as_str) {
        None => errors.push(FieldError::new("api_secret", "required")),
        Some(Some(s)) if s.len() >= 8 => {}
        Some(_) => errors.push(FieldError::new(
            "api_secret",
            "must be at least 8 characters",
        )),
    }
    match table.get("sign_type").map(toml::Value::as_str) {
        None | Some(Some("MD5" | "HMAC-SHA256")) => {}
        Some(_) => errors.push(FieldError::new(
            "sign_type",
            "must be \"MD5\" or \"HMAC-SHA256\"",
        )),
    }
    if let Some(v) = table.get("cert_file") {
        match v.as_str() {
            Some(p) if ctx.base_dir.join(p).is_file() => {}
            _ => errors.push(FieldError::new("cert_file", "no such file")),
        }
    }
    if errors.is_empty() {
        Ok(Arc::new(TestProvider))
    } else {
        Err(errors)
    }
}

paybridge_core::inventory::submit! {
    ProviderFactory {
        kind: TEST_KIND,
        display_name: "Test Pay",
        fields: FIELDS,
        build,
        simulator: None,
        platform: None,
    }
}

/// A valid document for tenant `id` with one secret of each kind, each containing `marker`.
pub fn sample_doc(id: &str, marker: &str) -> String {
    format!(
        r#"id = "{id}"
name = "Tenant {id}"
api_keys = ["{key}"]
webhook_secret = "hook-{marker}"

[providers.{TEST_KIND}]
enabled = true
merchant_id = "1900000109"
api_secret = "api-secret-{marker}"
sign_type = "MD5"
"#,
        key = paybridge_core::tenant::hash_api_key(&format!("key-{id}")),
    )
}

/// A database for one test; dropped (PostgreSQL) by [`TestDb::finish`].
pub struct TestDb {
    /// The connection, migrated.
    pub db: DatabaseConnection,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    pg: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl TestDb {
    /// A store on this database with a fresh master key.
    pub fn store(&self) -> TenantStore {
        let key = MasterKey::generate().unwrap().0;
        TenantStore::new(self.db.clone(), Some(key))
            .with_tenants_dir(self._dir.path())
            .with_http_timeout(Duration::from_secs(1))
    }

    /// Close the connection; the PostgreSQL database is dropped on drop.
    pub async fn finish(self) {
        self.db.clone().close().await.ok();
    }
}

impl Drop for TestDb {
    /// Drop the PostgreSQL database even when the test panicked.
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.pg.take() else {
            return;
        };
        let dropper = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(admin) = Database::connect(admin_url.as_str()).await {
                    admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await
                        .ok();
                    admin.close().await.ok();
                }
            });
        });
        dropper.join().ok();
    }
}

/// SQLite always; PostgreSQL too when `DATABASE_URL` is a postgres URL. Each a fresh database.
pub async fn test_dbs() -> Vec<TestDb> {
    let mut all = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("admin.db").display()
    );
    let db = crate::store::connect(&url).await.unwrap();
    all.push(TestDb {
        db,
        backend: "sqlite",
        pg: None,
        _dir: dir,
    });
    if let Ok(admin_url) = std::env::var("DATABASE_URL")
        && (admin_url.starts_with("postgres://") || admin_url.starts_with("postgresql://"))
    {
        let admin = Database::connect(admin_url.as_str()).await.unwrap();
        let name = format!("pba_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        admin.close().await.ok();
        let (base, query) = admin_url.split_once('?').unwrap_or((&admin_url, ""));
        let prefix = base.rsplit_once('/').map_or(base, |(p, _)| p);
        let url = if query.is_empty() {
            format!("{prefix}/{name}?sslmode=disable")
        } else {
            format!("{prefix}/{name}?{query}")
        };
        let db = crate::store::connect(&url).await.unwrap();
        all.push(TestDb {
            db,
            backend: "postgres",
            pg: Some((admin_url.clone(), name)),
            _dir: tempfile::tempdir().unwrap(),
        });
    }
    all
}
