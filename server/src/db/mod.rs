//! Storage: sea-orm entities, migrations and connection set-up. SQLite by default, PostgreSQL for
//! several instances.

pub mod entities;
mod migration;

use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use sea_orm_migration::MigratorTrait;

/// Connect and run pending migrations.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    if url.starts_with("sqlite:") {
        // SQLite has one writer. One connection serialises every transaction in the process,
        // which avoids SQLITE_BUSY on lock upgrades; transactions here never span network calls.
        options.max_connections(1).min_connections(1);
    } else {
        options.max_connections(16);
    }
    let db = Database::connect(options).await?;
    migration::Migrator::up(&db, None).await?;
    // The admin crate's tables (tenant store, versions, audit), tracked in its own table.
    paybridge_admin::store::migrate(&db).await?;
    Ok(db)
}
