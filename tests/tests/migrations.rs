//! Migrations that move data: a database made by an earlier release keeps what it held.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paybridge_server::db::entities::{order, order_fee};
use paybridge_server::db::migration::Migrator;
use paybridge_tests::{Backend, backends, fresh_postgres};
use sea_orm::{ConnectionTrait, Database, EntityTrait, IntoActiveModel};
use sea_orm_migration::MigratorTrait;

fn an_order(id: &str, no: &str) -> order::Model {
    let at = chrono::Utc::now();
    order::Model {
        id: id.into(),
        tenant_id: "t".into(),
        out_trade_no: no.into(),
        provider: "wechat_miniprogram".into(),
        amount: 100,
        currency: "CNY".into(),
        description: "d".into(),
        payer_openid: None,
        client_ip: None,
        attach: None,
        expires_at: at,
        status: "paid".into(),
        flags: "[]".into(),
        provider_trade_no: Some(format!("42{no}")),
        refunded_amount: 0,
        paid_at: Some(at),
        client_payment: None,
        provider_data: "{}".into(),
        last_notified_at: None,
        created_at: at,
        next_check_at: None,
        updated_at: at,
    }
}

/// A fresh database of `backend` (SQLite in `dir`), migrated up to the migration before
/// `migration`.
async fn migrated_before(
    backend: &Backend,
    dir: &std::path::Path,
    migration: &str,
) -> sea_orm::DatabaseConnection {
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.join("m.db").display()),
        Backend::Postgres(admin) => fresh_postgres(admin).await.0,
    };
    let db = Database::connect(&url).await.unwrap();
    let before = Migrator::migrations()
        .iter()
        .position(|m| m.name() == migration)
        .unwrap();
    Migrator::up(&db, Some(u32::try_from(before).unwrap()))
        .await
        .unwrap();
    db
}

/// `m0013_order_fees`: the fees recorded in the orders' rows move to `order_fees`, and the column
/// goes.
#[tokio::test]
async fn the_fees_in_the_orders_rows_move_beside_them() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let db = migrated_before(&backend, dir.path(), "m0013_order_fees").await;
        for (id, no) in [("o-1", "WITH-FEE"), ("o-2", "NO-FEE")] {
            order::Entity::insert(an_order(id, no).into_active_model())
                .exec_without_returning(&db)
                .await
                .unwrap();
        }
        db.execute_unprepared("UPDATE orders SET fee = 42 WHERE id = 'o-1'")
            .await
            .unwrap();

        Migrator::up(&db, None).await.unwrap();
        let fees = order_fee::Entity::find().all(&db).await.unwrap();
        assert_eq!(
            fees,
            vec![order_fee::Model {
                order_id: "o-1".into(),
                fee: 42
            }],
            "{}",
            backend.name()
        );
        assert_eq!(
            order::Entity::find().all(&db).await.unwrap().len(),
            2,
            "{}",
            backend.name()
        );
        assert!(
            db.execute_unprepared("SELECT fee FROM orders")
                .await
                .is_err(),
            "{}: the column is gone",
            backend.name()
        );
        db.close().await.unwrap();
    }
}

/// The names of the indexes on `orders`.
async fn order_indexes(db: &sea_orm::DatabaseConnection) -> Vec<String> {
    let sql = match db.get_database_backend() {
        sea_orm::DbBackend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'orders' ORDER BY name"
        }
        _ => {
            "SELECT indexname AS name FROM pg_indexes WHERE tablename = 'orders' \
             AND schemaname = current_schema() ORDER BY indexname"
        }
    };
    db.query_all_raw(sea_orm::Statement::from_string(
        db.get_database_backend(),
        sql,
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get::<String>("", "name").unwrap())
    .collect()
}

/// `m0014_drop_orders_paid_at`: the index of every tenant's payments by time goes, the one by
/// tenant stays, and the paid orders are all still there.
#[tokio::test]
async fn the_index_of_payments_by_time_alone_goes() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let db = migrated_before(&backend, dir.path(), "m0014_drop_orders_paid_at").await;
        let indexes = order_indexes(&db).await;
        assert!(indexes.iter().any(|i| i == "orders_paid_at"), "{indexes:?}");
        order::Entity::insert(an_order("o-1", "PAID").into_active_model())
            .exec_without_returning(&db)
            .await
            .unwrap();

        Migrator::up(&db, None).await.unwrap();
        let indexes = order_indexes(&db).await;
        let name = backend.name();
        assert!(
            !indexes.iter().any(|i| i == "orders_paid_at"),
            "{name}: {indexes:?}"
        );
        assert!(
            indexes.iter().any(|i| i == "orders_tenant_paid"),
            "{name}: {indexes:?}"
        );
        assert_eq!(order::Entity::find().all(&db).await.unwrap().len(), 1);
        db.close().await.unwrap();
    }
}
