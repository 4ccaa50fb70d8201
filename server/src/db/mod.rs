//! Storage: sea-orm entities, migrations and connection set-up. SQLite by default, PostgreSQL for
//! several instances.

pub mod entities;
pub mod migration;
pub mod sqlite;

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use sea_orm_migration::MigratorTrait;

/// PostgreSQL connections by default (`[database] max_connections`): enough for every request in
/// flight to commit at once, so that the server can flush their commits together.
pub const POSTGRES_CONNECTIONS: u32 = 48;

/// The connections of a database.
pub struct Connections {
    /// Migrations, the admin store and the background workers' own statements. On SQLite one
    /// connection (sqlx); the request path's writes go through the store's writer instead.
    pub write: DatabaseConnection,
    /// Reads that need not see a write still in flight. On SQLite, in WAL mode, readers never
    /// wait for the writer; they run in the calling thread ([`sqlite::ReadProxy`]). On
    /// PostgreSQL the same pool as `write`.
    pub read: DatabaseConnection,
    /// The SQLite file, for the store's writer thread; `None` on PostgreSQL.
    pub sqlite: Option<sqlite::SqliteFile>,
}

fn sqlite_options(url: &str, connections: u32, busy_timeout: Duration) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false)
        .max_connections(connections)
        .min_connections(1)
        // A file on this machine does not go away between two uses: no ping before each one (a
        // round trip to the connection's thread on every lookup and every write group).
        .test_before_acquire(false)
        // WAL: a commit is one append and one fsync of the log, and readers never block the
        // writer. FULL: that fsync happens at every commit, so an acknowledged payment survives
        // a power loss, not only a crash.
        .map_sqlx_sqlite_opts(move |o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(busy_timeout)
        });
    options
}

/// How long a SQLite statement waits for a lock held elsewhere, unless configured.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connect and run pending migrations.
pub async fn connect(url: &str) -> Result<Connections, DbErr> {
    connect_with(url, DEFAULT_BUSY_TIMEOUT).await
}

/// [`connect`], with SQLite's busy timeout: how long a statement waits for a lock that another
/// process (or instance) holds before it fails, and the request answers 503.
pub async fn connect_with(url: &str, busy_timeout: Duration) -> Result<Connections, DbErr> {
    connect_pooled(url, busy_timeout, POSTGRES_CONNECTIONS).await
}

/// [`connect_with`], with at most `pg_connections` connections on PostgreSQL (each instance
/// holds its own pool: several instances, or test gateways, share the server's
/// `max_connections`).
pub async fn connect_pooled(
    url: &str,
    busy_timeout: Duration,
    pg_connections: u32,
) -> Result<Connections, DbErr> {
    let connections = if url.starts_with("sqlite:") {
        // The writer thread, the readers and this connection each open the file: an in-memory
        // database would be a different one on each.
        let file = sqlite::SqliteFile::from_url(url, busy_timeout)?.ok_or_else(|| {
            DbErr::Custom(
                "an in-memory SQLite database is not supported: use a file, e.g. \
                     sqlite://paybridge.db?mode=rwc (on a tmpfs for a throwaway one)"
                    .to_owned(),
            )
        })?;
        let write = Database::connect(sqlite_options(url, 1, busy_timeout)).await?;
        migrate(&write).await?;
        let readers: Box<dyn sea_orm::ProxyDatabaseTrait> =
            Box::new(sqlite::ReadProxy::new(file.clone())?);
        let read = Database::connect_proxy(sea_orm::DbBackend::Sqlite, readers.into()).await?;
        return Ok(Connections {
            write,
            read,
            sqlite: Some(file),
        });
    } else {
        let mut options = ConnectOptions::new(url.to_owned());
        // During an outage a request waits at most this long for a connection, then answers
        // 503 (the provider's failure body for a notification): no request hangs for minutes.
        options
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(5))
            .sqlx_logging(false)
            .max_connections(pg_connections.max(2))
            // Ping a connection only after it sat idle: a ping on every use is one more network
            // round trip for every lookup and every write.
            .test_before_acquire_if_idle_for(Duration::from_secs(30));
        let write = Database::connect(options).await?;
        Connections {
            read: write.clone(),
            write,
            sqlite: None,
        }
    };
    migrate(&connections.write).await?;
    Ok(connections)
}

async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    migration::Migrator::up(db, None).await?;
    // The admin crate's tables (tenant store, versions, audit), tracked in its own table.
    paybridge_admin::store::migrate(db).await
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn an_in_memory_sqlite_database_is_refused_with_the_fix() {
        for url in ["sqlite::memory:", "sqlite://x.db?mode=memory"] {
            let Err(e) = super::connect(url).await else {
                panic!("{url} was accepted");
            };
            let text = e.to_string();
            assert!(
                text.contains("in-memory") && text.contains("mode=rwc"),
                "{url}: {text}"
            );
        }
    }
}
