//! Storage: the only layer that speaks SQL. Use cases call it; it calls nothing above it.
//!
//! - [`orders`]: orders, and the one function that changes an order's state.
//! - [`refunds`]: refunds under the order's limit, and refund status reports.
//! - [`events`]: provider events (deduplication) and the merchant outbox.
//! - [`attempts`]: every notification received.
//! - [`deliveries`]: webhook deliveries and their attempts.
//! - [`retention`]: pruning of old attempt records.
//! - [`idempotency`]: `Idempotency-Key`s and the answers they replay.
//! - [`writer`]: the write path (group commit on SQLite).

pub mod activity;
pub mod attempts;
pub mod cached;
pub mod console;
pub mod deliveries;
pub mod events;
pub mod idempotency;
pub mod orders;
pub mod plans;
pub mod refunds;
pub mod retention;
pub mod statements;
pub mod writer;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{DatabaseConnection, DbErr};

pub use orders::{
    Applied, ApplyError, EventToApply, Inserted, NewOrder, OrderChange, flags_of, status_of,
};
pub use writer::{JobFuture, WriteJob, Writer};

/// `column = 'status'`, with the status written into the SQL instead of bound. A partial index
/// on that equality (`orders_pending_next_check`, `webhook_deliveries_pending`,
/// `webhook_deliveries_failed`) serves a query only when the planner knows the value: SQLite
/// would recompile a statement whose binding decides that on every new binding, and a generic
/// PostgreSQL plan knows no parameter. For the code's own status names (nothing to escape).
pub(crate) fn status_is<C: sea_orm::ColumnTrait>(
    column: C,
    status: &'static str,
) -> sea_orm::sea_query::Expr {
    use sea_orm::sea_query::{Expr, ExprTrait};
    debug_assert!(status.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    Expr::col(column.as_column_ref()).eq(Expr::cust(format!("'{status}'")))
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// Stored data is not what the code wrote (a bug or manual edit).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether the database could not be reached, or was too busy to answer, rather than refusing
    /// the statement: an outage, worth a retry once it is back.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Db(e) => db_unavailable(e),
            StoreError::Corrupt(_) => false,
        }
    }
}

fn db_unavailable(e: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as S;
    let sqlx = match e {
        DbErr::ConnectionAcquire(_) => return true,
        DbErr::Conn(RuntimeErr::SqlxError(s))
        | DbErr::Exec(RuntimeErr::SqlxError(s))
        | DbErr::Query(RuntimeErr::SqlxError(s)) => s,
        DbErr::Conn(_) => return true,
        _ => return false,
    };
    match sqlx.as_ref() {
        S::Io(_) | S::Tls(_) | S::PoolTimedOut | S::PoolClosed | S::WorkerCrashed => true,
        S::Database(db) => db.code().is_some_and(|code| {
            // SQLite: SQLITE_BUSY (5), SQLITE_LOCKED (6) and their extended codes.
            // PostgreSQL: class 08 (connection exception), 53 (insufficient resources),
            // 57P01-57P03 (shutdown, crash shutdown, cannot connect now).
            code.starts_with("08")
                || code.starts_with("53")
                || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
                || code.parse::<i64>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
        }),
        _ => false,
    }
}

/// The row a lookup by a unique key finds, if any. Not `Select::one`: that binds `LIMIT ?`, and
/// SQLite then spent about 35 µs more per lookup (measured: 53 µs against 18 µs for the same
/// unique-index lookup on this machine), a tenth of a notification's CPU.
pub async fn unique<E, C>(select: sea_orm::Select<E>, db: &C) -> Result<Option<E::Model>, DbErr>
where
    E: sea_orm::EntityTrait,
    C: sea_orm::ConnectionTrait,
{
    Ok(select.all(db).await?.into_iter().next())
}

/// A new row id: a UUIDv7, ordered by time, so that a new row's primary key lands at the right
/// edge of its index. A commit then dirties the last pages of each table instead of one random
/// page per insert, and what it writes to the WAL does not grow with the table.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The time written with a change, to the microsecond: PostgreSQL keeps no more, so what a use
/// case puts in a webhook equals what a later read returns.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Access to the database: one connection (pool) for writes, one for reads, and the writer.
pub struct Store {
    db: DatabaseConnection,
    read: DatabaseConnection,
    writer: Writer,
    /// On SQLite, readers that look at each row where it is read (see
    /// [`crate::db::sqlite::ReadProxy::for_each_row`]): the long walks, and the order lookup of
    /// every notification.
    walker: Option<crate::db::sqlite::ReadProxy>,
}

impl Store {
    /// Wrap the connections: `write` for the workers' own statements, `read` for reads that
    /// need not see a write still in flight, and the writer (on SQLite a thread of its own with
    /// its own connection to the file).
    pub fn new(connections: crate::db::Connections) -> Result<Self, DbErr> {
        let crate::db::Connections {
            write,
            read,
            sqlite,
        } = connections;
        let (writer, walker) = match sqlite {
            Some(file) => (
                Writer::sqlite(file.open(true)?)?,
                Some(crate::db::sqlite::ReadProxy::new(file)?),
            ),
            None => (Writer::per_job(write.clone()), None),
        };
        Ok(Store {
            db: write,
            read,
            writer,
            walker,
        })
    }

    /// The connection that also writes (on SQLite sqlx's one connection; the admin store and the
    /// migrations write through it), for reads that must see every commit and health checks.
    /// The server's own writes go through [`Store::write`].
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Close both pools, after the last write: SQLite checkpoints its WAL, PostgreSQL sees its
    /// sessions end.
    pub async fn close(&self) {
        self.writer.close().await;
        self.read.clone().close().await.ok();
        self.db.clone().close().await.ok();
    }

    /// Whether the database answers (a read connection: on SQLite the writer's one connection
    /// is busy with write groups, and a reader proves the file is there).
    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(self.read.ping().await?)
    }

    /// The read connection.
    pub fn reader(&self) -> &DatabaseConnection {
        &self.read
    }

    /// On SQLite, readers that hand rows over where they are read.
    pub fn sqlite_walker(&self) -> Option<&crate::db::sqlite::ReadProxy> {
        self.walker.as_ref()
    }

    /// What the SQLite writer did so far (for `/metrics`).
    pub fn write_stats(&self) -> &writer::WriteStats {
        self.writer.stats()
    }

    /// The same, to keep (a long job watches how busy the writer is).
    pub fn shared_write_stats(&self) -> std::sync::Arc<writer::WriteStats> {
        self.writer.shared_stats()
    }

    /// Run a write job through the writer; its result comes back after its commit.
    pub async fn write<T, E, F>(&self, job: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbErr> + Send + 'static,
        F: WriteJob<T, E>,
    {
        self.writer.run(job).await
    }
}

/// Reads for tests and operators, on the write connection so that they see every commit.
impl Store {
    /// Notification attempts of a tenant, oldest first.
    pub async fn attempts(
        &self,
        tenant_id: &str,
    ) -> Result<Vec<crate::db::entities::notification_attempt::Model>, StoreError> {
        attempts::attempts(&self.db, tenant_id).await
    }

    /// Provider events recorded for a tenant.
    pub async fn provider_events(
        &self,
        tenant_id: &str,
    ) -> Result<Vec<crate::db::entities::provider_event::Model>, StoreError> {
        events::provider_events(&self.db, tenant_id).await
    }

    /// Outbox events of a tenant, oldest first.
    pub async fn outbox(
        &self,
        tenant_id: &str,
    ) -> Result<Vec<crate::db::entities::outbox_event::Model>, StoreError> {
        events::outbox(&self.db, tenant_id).await
    }

    /// A tenant's order by number.
    pub async fn find_order(
        &self,
        tenant_id: &str,
        out_trade_no: &str,
    ) -> Result<Option<crate::db::entities::order::Model>, StoreError> {
        match &self.walker {
            Some(readers) => orders::find_order_sqlite(readers, tenant_id, out_trade_no),
            None => orders::find_order(&self.read, tenant_id, out_trade_no).await,
        }
    }

    /// A refund of a tenant's order.
    pub async fn find_refund(
        &self,
        tenant_id: &str,
        out_trade_no: &str,
        out_refund_no: &str,
    ) -> Result<Option<crate::db::entities::refund::Model>, StoreError> {
        refunds::find_refund(&self.read, tenant_id, out_trade_no, out_refund_no).await
    }
}
