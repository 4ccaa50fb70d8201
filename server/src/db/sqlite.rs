//! SQLite for the request path, called in the calling thread.
//!
//! sqlx runs each SQLite connection on a thread of its own and hands every statement and every
//! row across a channel: two context switches a statement. A notification's write is nine
//! statements, and the profile of the notify benchmark (one pinned core) showed 38 % of the
//! gateway's time in the scheduler's task switch. Here sea-orm's proxy interface runs the same
//! statements (the queries sea-orm builds) on a rusqlite connection, in the thread that asks:
//!
//! - [`WriteProxy`] is the connection of the single writer thread (see `store::writer`); it turns
//!   sea-orm's transaction calls into `BEGIN IMMEDIATE`, savepoints and `COMMIT`, and keeps the
//!   first failure of those calls (sea-orm's proxy interface cannot return one) for the writer.
//! - [`ReadProxy`] is a small pool of read connections: a lookup runs in the request's own
//!   thread. In WAL mode readers never wait for the writer.
//!
//! Values are bound exactly as sqlx binds them (times as RFC 3339 text, booleans as integers), so
//! rows written here and rows written through sqlx (migrations, the admin store) read back the
//! same on either path. Rows are typed by the server's entities: SQLite stores
//! `i32` and `i64` alike, and sea-orm wants the one the model declares.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use sea_orm::sea_query::Value;
use sea_orm::{
    ColumnTrait, ColumnType, DbErr, EntityTrait, Iterable, ProxyDatabaseTrait, ProxyExecResult,
    ProxyRow, RuntimeErr, Statement,
};

use super::entities;

/// Prepared statements kept per connection: every statement the request path makes, with room.
const STATEMENT_CACHE: usize = 256;

/// Read connections kept open between lookups.
const IDLE_READERS: usize = 8;

/// A SQLite database file and how to open it.
#[derive(Debug, Clone)]
pub struct SqliteFile {
    /// The file.
    pub path: PathBuf,
    /// How long a statement waits for a lock held by another connection.
    pub busy_timeout: Duration,
}

impl SqliteFile {
    /// The file of a `sqlite:` URL, parsed as sqlx parses it. `None` for an in-memory database.
    pub fn from_url(url: &str, busy_timeout: Duration) -> Result<Option<SqliteFile>, DbErr> {
        use std::str::FromStr;
        let options = sea_orm::sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .map_err(|e| DbErr::Conn(RuntimeErr::Internal(format!("database url: {e}"))))?;
        let path = options.get_filename();
        // sqlx names an in-memory database `file:sqlx-in-memory-N`; the URL says it plainly.
        if url.contains(":memory:") || url.contains("mode=memory") || path.as_os_str().is_empty() {
            return Ok(None);
        }
        Ok(Some(SqliteFile {
            path: path.to_owned(),
            busy_timeout,
        }))
    }

    /// Open a connection. The writer's is in WAL mode with `synchronous=FULL`: a commit is one
    /// append and one fsync of the log, and an acknowledged write survives a power loss.
    ///
    /// The writer keeps its temporary storage in memory (`temp_store = MEMORY`). When a group is
    /// run again with a savepoint per job (see `store::writer::run_group`), each savepoint's
    /// sub-journal (the pages it first touched, as they were) otherwise spills to a temporary
    /// file past 64 KiB, with two `pwrite`s per page: traced under the notify benchmark when
    /// every job had a savepoint, 7 388 sub-journal writes against 853 WAL frames. It is never
    /// used for recovery (the WAL is), only to roll a savepoint back in the open transaction.
    pub fn open(&self, write: bool) -> Result<Connection, DbErr> {
        let flags = if write {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let conn = Connection::open_with_flags(&self.path, flags).map_err(|e| {
            DbErr::Conn(RuntimeErr::Internal(format!(
                "opening {}: {e}",
                self.path.display()
            )))
        })?;
        conn.busy_timeout(self.busy_timeout).map_err(conn_err)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        if write {
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .map_err(conn_err)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(DbErr::Conn(RuntimeErr::Internal(format!(
                    "{}: journal_mode is {mode}, not wal",
                    self.path.display()
                ))));
            }
            conn.execute_batch(
                "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
            )
            .map_err(conn_err)?;
        }
        Ok(conn)
    }
}

/// How a column's value is handed to sea-orm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    BigInt,
    Bool,
    Time,
    Text,
}

/// Column name → kind, from the server's entities. A name has one kind in every table (checked
/// by a test), so a result column is typed by its name alone.
fn kinds() -> &'static HashMap<&'static str, Kind> {
    static KINDS: OnceLock<HashMap<&'static str, Kind>> = OnceLock::new();
    KINDS.get_or_init(|| {
        let mut map = HashMap::new();
        for (name, kind) in entity_kinds() {
            map.insert(name, kind);
        }
        map
    })
}

fn columns_of<E: EntityTrait>() -> Vec<(&'static str, Kind)> {
    E::Column::iter()
        .filter_map(|c| {
            let kind = match c.def().get_column_type() {
                ColumnType::Integer | ColumnType::SmallInteger | ColumnType::TinyInteger => {
                    Kind::Int
                }
                ColumnType::BigInteger => Kind::BigInt,
                ColumnType::Boolean => Kind::Bool,
                ColumnType::TimestampWithTimeZone
                | ColumnType::DateTime
                | ColumnType::Timestamp => Kind::Time,
                ColumnType::String(_) | ColumnType::Text | ColumnType::Char(_) => Kind::Text,
                // Anything else is decoded by its storage class.
                _ => return None,
            };
            Some((c.as_str_static(), kind))
        })
        .collect()
}

/// Every (column, kind) of the server's entities, duplicates included.
fn entity_kinds() -> Vec<(&'static str, Kind)> {
    [
        columns_of::<entities::order::Entity>(),
        columns_of::<entities::order_fee::Entity>(),
        columns_of::<entities::provider_event::Entity>(),
        columns_of::<entities::notification_attempt::Entity>(),
        columns_of::<entities::outbox_event::Entity>(),
        columns_of::<entities::refund::Entity>(),
        columns_of::<entities::lease::Entity>(),
        columns_of::<entities::webhook_delivery::Entity>(),
        columns_of::<entities::webhook_attempt::Entity>(),
        columns_of::<entities::idempotency_key::Entity>(),
        columns_of::<entities::order_activity::Entity>(),
        columns_of::<entities::statement::Entity>(),
        columns_of::<entities::statement_run::Entity>(),
        columns_of::<entities::statement_discrepancy::Entity>(),
        columns_of::<entities::statement_file::Entity>(),
        columns_of::<entities::statement_file_part::Entity>(),
    ]
    .concat()
}

/// The name of a column as a `&'static str` (sea-orm's column enums are static names).
trait StaticName {
    fn as_str_static(&self) -> &'static str;
}

impl<C: sea_orm::IdenStatic> StaticName for C {
    fn as_str_static(&self) -> &'static str {
        self.as_str()
    }
}

fn is_unavailable(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::DiskFull
            | ErrorCode::OutOfMemory
    )
}

/// A failure to reach the database (locked, I/O) is a connection error, which the store reports
/// as unavailable (503); anything else is the statement's own error.
fn classify(e: rusqlite::Error, query: bool) -> DbErr {
    let unavailable = e.sqlite_error_code().is_some_and(is_unavailable);
    let err = RuntimeErr::Internal(e.to_string());
    if unavailable {
        DbErr::Conn(err)
    } else if query {
        DbErr::Query(err)
    } else {
        DbErr::Exec(err)
    }
}

fn conn_err(e: rusqlite::Error) -> DbErr {
    DbErr::Conn(RuntimeErr::Internal(e.to_string()))
}

/// A value as sqlx binds it for SQLite (sea-query-sqlx), so that both paths store the same text.
fn bind_value(v: &Value) -> Result<ToSqlOutput<'_>, DbErr> {
    use rusqlite::types::Value as R;
    let int = |i: Option<i64>| ToSqlOutput::Owned(i.map_or(R::Null, R::Integer));
    Ok(match v {
        Value::Bool(b) => int(b.map(i64::from)),
        Value::TinyInt(i) => int(i.map(i64::from)),
        Value::SmallInt(i) => int(i.map(i64::from)),
        Value::Int(i) => int(i.map(i64::from)),
        Value::BigInt(i) => int(*i),
        Value::TinyUnsigned(i) => int(i.map(i64::from)),
        Value::SmallUnsigned(i) => int(i.map(i64::from)),
        Value::Unsigned(i) => int(i.map(i64::from)),
        Value::BigUnsigned(i) => match i {
            Some(u) => {
                ToSqlOutput::Owned(R::Integer(i64::try_from(*u).map_err(|_| {
                    DbErr::Custom(format!("{u} does not fit a SQLite integer"))
                })?))
            }
            None => ToSqlOutput::Owned(R::Null),
        },
        Value::Float(f) => ToSqlOutput::Owned(f.map_or(R::Null, |f| R::Real(f64::from(f)))),
        Value::Double(d) => ToSqlOutput::Owned(d.map_or(R::Null, R::Real)),
        Value::String(s) => match s {
            Some(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            None => ToSqlOutput::Owned(R::Null),
        },
        Value::Char(c) => ToSqlOutput::Owned(c.map_or(R::Null, |c| R::Text(c.to_string()))),
        Value::Bytes(b) => match b {
            Some(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            None => ToSqlOutput::Owned(R::Null),
        },
        Value::ChronoDateTimeUtc(t) => ToSqlOutput::Owned(t.map_or(R::Null, |t| {
            R::Text(paybridge_core::rfc3339::format(&t, false))
        })),
        Value::Json(j) => {
            ToSqlOutput::Owned(j.as_ref().map_or(R::Null, |j| R::Text(j.to_string())))
        }
        other => {
            return Err(DbErr::Custom(format!(
                "paybridge's SQLite path cannot bind {other:?}"
            )));
        }
    })
}

/// Parse a stored time as sqlx does: RFC 3339 first, then SQLite's own formats (UTC when they
/// carry no offset), then Unix seconds.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    const FORMATS: [&str; 12] = [
        "%F %T%.f",
        "%F %R",
        "%F %RZ",
        "%F %R%:z",
        "%F %T%.fZ",
        "%F %T%.f%:z",
        "%FT%R",
        "%FT%RZ",
        "%FT%R%:z",
        "%FT%T%.f",
        "%FT%T%.fZ",
        "%FT%T%.f%:z",
    ];
    FORMATS.iter().find_map(|f| {
        DateTime::parse_from_str(text, f)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                NaiveDateTime::parse_from_str(text, f)
                    .ok()
                    .map(|n| Utc.from_utc_datetime(&n))
            })
    })
}

fn decode(v: ValueRef<'_>, kind: Option<Kind>, column: &str) -> Result<Value, DbErr> {
    let bad = |what: &str| DbErr::Type(format!("column {column}: {what}"));
    Ok(match (v, kind) {
        (ValueRef::Null, Some(Kind::Int)) => Value::Int(None),
        (ValueRef::Null, Some(Kind::BigInt)) => Value::BigInt(None),
        (ValueRef::Null, Some(Kind::Bool)) => Value::Bool(None),
        (ValueRef::Null, Some(Kind::Time)) => Value::ChronoDateTimeUtc(None),
        (ValueRef::Null, _) => Value::String(None),
        (ValueRef::Integer(i), Some(Kind::Int)) => Value::Int(Some(
            i32::try_from(i).map_err(|_| bad("integer out of range"))?,
        )),
        (ValueRef::Integer(i), Some(Kind::Bool)) => Value::Bool(Some(i != 0)),
        (ValueRef::Integer(i), Some(Kind::Time)) => Value::ChronoDateTimeUtc(Some(
            Utc.timestamp_opt(i, 0)
                .single()
                .ok_or_else(|| bad("not a time"))?,
        )),
        (ValueRef::Integer(i), _) => Value::BigInt(Some(i)),
        (ValueRef::Real(f), _) => Value::Double(Some(f)),
        (ValueRef::Text(t), Some(Kind::Time)) => {
            let text = std::str::from_utf8(t).map_err(|_| bad("not UTF-8"))?;
            Value::ChronoDateTimeUtc(Some(parse_time(text).ok_or_else(|| bad("not a time"))?))
        }
        (ValueRef::Text(t), _) => Value::String(Some(
            String::from_utf8(t.to_vec()).map_err(|_| bad("not UTF-8"))?,
        )),
        (ValueRef::Blob(b), _) => Value::Bytes(Some(b.to_vec())),
    })
}

/// The cells of one row read where SQLite holds it, by place, without building sea-orm's row of
/// named values: for the hottest reads and the long walks, whose callers know their columns'
/// places. Text is borrowed from the row; a time is decoded by the rules of [`decode`] (RFC 3339
/// or SQLite text, or Unix seconds).
pub struct Cells<'a, 'r>(pub &'a rusqlite::Row<'r>);

impl<'a> Cells<'a, '_> {
    fn cell(&self, i: usize) -> Result<ValueRef<'a>, DbErr> {
        let row: &'a rusqlite::Row<'_> = self.0;
        row.get_ref(i).map_err(|e| classify(e, true))
    }

    fn name(&self, i: usize) -> &str {
        self.0.as_ref().column_name(i).unwrap_or("?")
    }

    fn bad(&self, i: usize, what: &dyn std::fmt::Display) -> DbErr {
        DbErr::Type(format!("column {}: {what}", self.name(i)))
    }

    fn required<T>(&self, i: usize, v: Option<T>) -> Result<T, DbErr> {
        v.ok_or_else(|| self.bad(i, &"NULL where a value is required"))
    }

    /// A text cell that may be NULL, borrowed from the row.
    pub fn opt_str(&self, i: usize) -> Result<Option<&'a str>, DbErr> {
        let v = self.cell(i)?;
        v.as_str_or_null().map_err(|e| self.bad(i, &e))
    }

    /// A text cell, borrowed from the row.
    pub fn str(&self, i: usize) -> Result<&'a str, DbErr> {
        self.required(i, self.opt_str(i)?)
    }

    /// A text cell that may be NULL.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, DbErr> {
        Ok(self.opt_str(i)?.map(str::to_owned))
    }

    /// A text cell.
    pub fn text(&self, i: usize) -> Result<String, DbErr> {
        Ok(self.str(i)?.to_owned())
    }

    /// A 64-bit integer cell that may be NULL.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, DbErr> {
        let v = self.cell(i)?;
        v.as_i64_or_null().map_err(|e| self.bad(i, &e))
    }

    /// A 64-bit integer cell.
    pub fn int(&self, i: usize) -> Result<i64, DbErr> {
        self.required(i, self.opt_int(i)?)
    }

    /// A time cell that may be NULL.
    pub fn opt_time(&self, i: usize) -> Result<Option<DateTime<Utc>>, DbErr> {
        let v = self.cell(i)?;
        // The column's name is looked up only to say what failed.
        let t = decode(v, Some(Kind::Time), "")
            .or_else(|_| decode(v, Some(Kind::Time), self.name(i)))?;
        match t {
            Value::ChronoDateTimeUtc(t) => Ok(t),
            other => Err(self.bad(i, &format!("not a time: {other:?}"))),
        }
    }

    /// A time cell.
    pub fn time(&self, i: usize) -> Result<DateTime<Utc>, DbErr> {
        self.required(i, self.opt_time(i)?)
    }
}

fn prepare<'c>(
    conn: &'c Connection,
    st: &Statement,
    query: bool,
) -> Result<rusqlite::CachedStatement<'c>, DbErr> {
    let mut stmt = conn
        .prepare_cached(&st.sql)
        .map_err(|e| classify(e, query))?;
    if let Some(values) = &st.values {
        for (i, v) in values.0.iter().enumerate() {
            stmt.raw_bind_parameter(i + 1, bind_value(v)?)
                .map_err(|e| classify(e, query))?;
        }
    }
    Ok(stmt)
}

fn run_query(conn: &Connection, st: &Statement) -> Result<Vec<ProxyRow>, DbErr> {
    let mut stmt = prepare(conn, st, true)?;
    let kinds = kinds();
    let columns: Vec<(String, Option<Kind>)> = stmt
        .column_names()
        .into_iter()
        .map(|n| (n.to_owned(), kinds.get(n).copied()))
        .collect();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| classify(e, true))? {
        let mut values = BTreeMap::new();
        for (i, (name, kind)) in columns.iter().enumerate() {
            let v = row.get_ref(i).map_err(|e| classify(e, true))?;
            values.insert(name.clone(), decode(v, *kind, name)?);
        }
        out.push(ProxyRow::new(values));
    }
    Ok(out)
}

fn run_execute(conn: &Connection, st: &Statement) -> Result<ProxyExecResult, DbErr> {
    let mut stmt = prepare(conn, st, false)?;
    let changed = stmt.raw_execute().map_err(|e| classify(e, false))?;
    Ok(ProxyExecResult {
        last_insert_id: u64::try_from(conn.last_insert_rowid()).unwrap_or(0),
        rows_affected: u64::try_from(changed).unwrap_or(0),
    })
}

/// The writer thread's connection. See the module docs. Clones share the connection.
#[derive(Debug, Clone)]
pub struct WriteProxy {
    inner: Arc<Mutex<WriteState>>,
}

#[derive(Debug)]
struct WriteState {
    conn: Connection,
    /// Open transactions: 1 is the group's, more are savepoints.
    depth: usize,
    /// The first failure of a transaction call since the last [`WriteProxy::reset`].
    failure: Option<DbErr>,
}

impl WriteProxy {
    /// Wrap the writer's connection.
    pub fn new(conn: Connection) -> WriteProxy {
        WriteProxy {
            inner: Arc::new(Mutex::new(WriteState {
                conn,
                depth: 0,
                failure: None,
            })),
        }
    }

    fn state(&self) -> MutexGuard<'_, WriteState> {
        // Nothing in this module panics while holding the lock; a poisoned lock still guards a
        // connection whose transaction state `reset` repairs.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a transaction call failed since the last reset.
    pub fn failed(&self) -> bool {
        self.state().failure.is_some()
    }

    /// Rows inserted, changed or deleted on this connection since it was opened
    /// (`sqlite3_total_changes64`): a job that did not move it changed no row.
    pub fn total_changes(&self) -> u64 {
        self.state().conn.total_changes()
    }

    /// Whether a transaction is open. SQLite rolls one back by itself after some errors (a full
    /// disk, an I/O error); the statements after that would each commit on their own.
    pub fn in_transaction(&self) -> bool {
        !self.state().conn.is_autocommit()
    }

    /// Take the first failure of a transaction call, roll back whatever is still open and start
    /// afresh. Called by the writer after each group.
    pub fn reset(&self) -> Option<DbErr> {
        let mut s = self.state();
        if !s.conn.is_autocommit()
            && let Err(e) = s.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(error = %e, "database writer: rollback after a failed group failed");
        }
        s.depth = 0;
        s.failure.take()
    }

    fn transaction_call(&self, call: impl FnOnce(&mut WriteState) -> String) {
        let mut s = self.state();
        let sql = call(&mut s);
        // Prepared once and cached: a job's SAVEPOINT and RELEASE are the same two statements
        // every time. (The rare rollback to a savepoint is two statements: a batch.)
        let done = if sql.contains(';') {
            s.conn.execute_batch(&sql)
        } else {
            s.conn
                .prepare_cached(&sql)
                .and_then(|mut stmt| stmt.execute([]))
                .map(drop)
        };
        if let Err(e) = done {
            tracing::error!(error = %e, sql = %sql, "database writer: transaction call failed");
            if s.failure.is_none() {
                s.failure = Some(classify(e, false));
            }
        }
    }
}

#[async_trait::async_trait]
impl ProxyDatabaseTrait for WriteProxy {
    async fn query(&self, statement: Statement) -> Result<Vec<ProxyRow>, DbErr> {
        run_query(&self.state().conn, &statement)
    }

    async fn execute(&self, statement: Statement) -> Result<ProxyExecResult, DbErr> {
        run_execute(&self.state().conn, &statement)
    }

    async fn begin(&self) {
        self.transaction_call(|s| {
            s.depth += 1;
            if s.depth == 1 {
                // The write lock at once: another process on the file waits for it (busy
                // timeout) instead of failing half-way through a group.
                "BEGIN IMMEDIATE".to_owned()
            } else {
                format!("SAVEPOINT pb_{}", s.depth)
            }
        });
    }

    async fn commit(&self) {
        self.transaction_call(|s| {
            let level = s.depth;
            s.depth = s.depth.saturating_sub(1);
            if level <= 1 {
                "COMMIT".to_owned()
            } else {
                format!("RELEASE pb_{level}")
            }
        });
    }

    async fn rollback(&self) {
        self.start_rollback();
    }

    fn start_rollback(&self) {
        self.transaction_call(|s| {
            let level = s.depth;
            s.depth = s.depth.saturating_sub(1);
            if level <= 1 {
                "ROLLBACK".to_owned()
            } else {
                format!("ROLLBACK TO pb_{level}; RELEASE pb_{level}")
            }
        });
    }

    async fn ping(&self) -> Result<(), DbErr> {
        self.state()
            .conn
            .execute_batch("SELECT 1")
            .map_err(conn_err)
    }
}

/// Read connections, used in the calling thread. See the module docs.
#[derive(Debug)]
pub struct ReadProxy {
    file: SqliteFile,
    idle: Mutex<Vec<Connection>>,
}

impl ReadProxy {
    /// Readers of `file`; the first is opened now, so that a wrong path fails at start.
    pub fn new(file: SqliteFile) -> Result<ReadProxy, DbErr> {
        let first = file.open(false)?;
        Ok(ReadProxy {
            file,
            idle: Mutex::new(vec![first]),
        })
    }

    fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> Result<T, DbErr>) -> Result<T, DbErr> {
        let taken = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match taken {
            Some(c) => c,
            None => self.file.open(false)?,
        };
        let result = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        result
    }

    /// Run a query and hand each row to `f` as it is read, undecoded, until `f` answers `false`:
    /// for a walk whose rows are looked at and dropped (a statement run reads 10⁶ orders).
    pub fn for_each_row(
        &self,
        st: &Statement,
        mut f: impl FnMut(&rusqlite::Row<'_>) -> Result<bool, DbErr>,
    ) -> Result<(), DbErr> {
        self.with_conn(|conn| {
            let mut stmt = prepare(conn, st, true)?;
            let mut rows = stmt.raw_query();
            while let Some(row) = rows.next().map_err(|e| classify(e, true))? {
                if !f(row)? {
                    break;
                }
            }
            Ok(())
        })
    }
}

#[async_trait::async_trait]
impl ProxyDatabaseTrait for ReadProxy {
    async fn query(&self, statement: Statement) -> Result<Vec<ProxyRow>, DbErr> {
        self.with_conn(|c| run_query(c, &statement))
    }

    async fn execute(&self, statement: Statement) -> Result<ProxyExecResult, DbErr> {
        // Read-only connections refuse writes themselves; this says why.
        self.with_conn(|c| run_execute(c, &statement)).map_err(|e| {
            DbErr::Custom(format!(
                "the SQLite read connections take no writes (use the store's writer): {e}"
            ))
        })
    }

    async fn ping(&self) -> Result<(), DbErr> {
        self.with_conn(|c| c.execute_batch("SELECT 1").map_err(conn_err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_name_has_one_kind_in_every_table() {
        let mut seen: HashMap<&str, Kind> = HashMap::new();
        for (name, kind) in entity_kinds() {
            if let Some(other) = seen.insert(name, kind) {
                assert_eq!(other, kind, "column {name} has two kinds");
            }
        }
        assert_eq!(kinds().get("attempts"), Some(&Kind::Int));
        assert_eq!(kinds().get("amount"), Some(&Kind::BigInt));
        assert_eq!(kinds().get("paid_at"), Some(&Kind::Time));
    }

    #[test]
    fn times_are_bound_as_sqlx_binds_them_and_read_back() {
        let t = Utc.with_ymd_and_hms(2026, 12, 6, 8, 1, 2).single().unwrap()
            + chrono::Duration::microseconds(123_456);
        let v = Value::ChronoDateTimeUtc(Some(t));
        let ToSqlOutput::Owned(rusqlite::types::Value::Text(text)) = bind_value(&v).unwrap() else {
            panic!("not text");
        };
        assert_eq!(text, "2026-12-06T08:01:02.123456+00:00");
        for stored in [
            text.as_str(),
            "2026-12-06 08:01:02.123456",
            "2026-12-06T08:01:02.123456Z",
        ] {
            assert_eq!(parse_time(stored), Some(t), "{stored}");
        }
    }

    /// The writer's connection keeps a savepoint's sub-journal in memory (see `SqliteFile::open`);
    /// a reader's is left as it is.
    #[test]
    fn the_writer_keeps_its_savepoint_journal_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let file = SqliteFile {
            path: dir.path().join("t.db"),
            busy_timeout: Duration::from_secs(1),
        };
        let temp_store =
            |c: &Connection| -> i64 { c.query_row("PRAGMA temp_store", [], |r| r.get(0)).unwrap() };
        Connection::open(&file.path).unwrap();
        // 2 = MEMORY.
        let writer = file.open(true).unwrap();
        assert_eq!(temp_store(&writer), 2);
        assert_eq!(temp_store(&file.open(false).unwrap()), 0);
    }
}
