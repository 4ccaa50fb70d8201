//! The write path: every write of a request (an order insert, an event with its outbox rows, a
//! notification attempt) is a job, and a job's caller hears its result only after the commit that
//! holds it.
//!
//! - **SQLite** has one writer at a time, and each commit with `synchronous=FULL` costs an fsync.
//!   One thread owns the write connection (`db::sqlite::WriteProxy`: every statement runs in
//!   that thread, with no hand-over per statement). It takes every job that is waiting, runs
//!   them in one transaction and commits them all with one `COMMIT`: one fsync for the whole
//!   group. A job that fails is rolled back alone and its neighbours stay (see
//!   [`run_group`]: each job runs as if under its own savepoint, and pays for one only when a
//!   job of its group failed after writing).
//! - **PostgreSQL** has a real pool. Each job is its own transaction on it, and concurrent commits
//!   share WAL flushes in the server (PostgreSQL's own group commit).
//!
//! Nothing is acknowledged before it is durable: a job's result is handed back after `COMMIT`
//! returned, and a failed commit fails every job of its group.
//!
//! Handing the answers back: waking a task of another thread costs a syscall (the runtime's
//! eventfd), and on a busy core the woken request thread runs at once, so a group of 30 answers
//! used to cost 30 wake-ups and 60 context switches. A request thread that calls
//! [`install_mailbox`] (each HTTP worker does) gets all its answers of a group in one message,
//! and wakes its own tasks locally.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;

use sea_orm::{
    Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ProxyDatabaseTrait,
    TransactionTrait,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::db::sqlite::WriteProxy;

/// The future a job returns; it borrows the transaction it runs in.
pub type JobFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A write job: run in a transaction it borrows, returning `Result<T, E>`. `Clone`, because on
/// SQLite a group may run a copy of it twice (see [`Writer::run`]).
pub trait WriteJob<T, E>:
    for<'a> FnOnce(&'a DatabaseTransaction) -> JobFuture<'a, Result<T, E>> + Clone + Send + 'static
{
}

impl<T, E, F> WriteJob<T, E> for F where
    F: for<'a> FnOnce(&'a DatabaseTransaction) -> JobFuture<'a, Result<T, E>>
        + Clone
        + Send
        + 'static
{
}

/// How one run of a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    /// It returned `Ok`.
    Done,
    /// It returned its own `Err`.
    Failed,
    /// Its savepoint could not be taken or ended: its writes may still be in the transaction,
    /// and the group must not commit.
    Broken,
}

/// A job with its result type erased, kept by the writer until its group's commit.
trait GroupJob: Send {
    /// Run the job (a copy of it: a group may run it twice) in the group's transaction, under a
    /// savepoint of its own when `isolated`, and keep its result.
    fn run<'a>(&'a mut self, txn: &'a DatabaseTransaction, isolated: bool) -> JobFuture<'a, Ran>;

    /// The answer to its caller, once the group's commit has `committed` (or failed).
    fn answer(self: Box<Self>, committed: Result<(), DbErr>) -> Answer;
}

/// One answer, ready to run in the caller's thread.
type Answer = Box<dyn FnOnce() + Send>;

/// A job of result `Result<T, E>`, with its last result and its caller.
struct TypedJob<T, E, F> {
    job: F,
    result: Option<Result<T, E>>,
    caller: oneshot::Sender<Result<T, E>>,
}

impl<T, E, F> GroupJob for TypedJob<T, E, F>
where
    T: Send + 'static,
    E: From<DbErr> + Send + 'static,
    F: WriteJob<T, E>,
{
    fn run<'a>(&'a mut self, txn: &'a DatabaseTransaction, isolated: bool) -> JobFuture<'a, Ran> {
        let job = self.job.clone();
        Box::pin(async move {
            let (result, ran) = if isolated {
                let (result, clean) = run_in_savepoint(txn, job).await;
                let ran = match (&result, clean) {
                    (_, false) => Ran::Broken,
                    (Ok(_), true) => Ran::Done,
                    (Err(_), true) => Ran::Failed,
                };
                (result, ran)
            } else {
                let result = job(txn).await;
                let ran = if result.is_ok() {
                    Ran::Done
                } else {
                    Ran::Failed
                };
                (result, ran)
            };
            self.result = Some(result);
            ran
        })
    }

    fn answer(self: Box<Self>, committed: Result<(), DbErr>) -> Answer {
        let TypedJob { result, caller, .. } = *self;
        Box::new(move || {
            let answer = match (committed, result) {
                (Ok(()), Some(result)) => result,
                (Err(e), _) => Err(E::from(e)),
                (Ok(()), None) => Err(E::from(DbErr::Custom(
                    "the database writer committed a group without running this job".to_owned(),
                ))),
            };
            // The caller may have gone (its request was cancelled): the write stands, there
            // is just no one left to tell.
            let _ = caller.send(answer);
        })
    }
}

/// The answers of one group for one request thread, each ready to run.
type Answers = Vec<Answer>;

/// Where a request thread takes its answers: see [`install_mailbox`].
type Mailbox = mpsc::UnboundedSender<Answers>;

thread_local! {
    static MAILBOX: RefCell<Option<Mailbox>> = const { RefCell::new(None) };
}

/// On a thread that runs a current-thread runtime for its whole life (an HTTP worker), receive
/// the writer's answers to this thread's jobs as one message per group, handed out by a task of
/// this runtime. Elsewhere (no runtime, a multi-thread one) it does nothing, and each answer
/// wakes its caller directly, as without it.
pub fn install_mailbox() {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Answers>();
    runtime.spawn(async move {
        while let Some(answers) = rx.recv().await {
            for answer in answers {
                answer();
            }
        }
    });
    MAILBOX.with(|m| *m.borrow_mut() = Some(tx));
}

/// This thread's mailbox, if it has a live one.
fn mailbox() -> Option<Mailbox> {
    MAILBOX.with(|m| m.borrow().clone().filter(|tx| !tx.is_closed()))
}

/// At most this many jobs share one commit. Bounds the work a failed commit throws away.
const MAX_GROUP: usize = 512;

/// Jobs waiting for the SQLite writer. Full means requests wait to hand theirs over.
const QUEUE: usize = 4096;

enum Mode {
    /// SQLite: the writer thread takes the jobs, and says why when it had to drop a group (its
    /// transaction could not begin, e.g. another process held the lock past the timeout).
    Grouped(mpsc::Sender<Msg>, Arc<Mutex<Option<DbErr>>>),
    /// PostgreSQL: each job is a transaction of its own on the pool.
    PerJob(DatabaseConnection),
}

/// What the writer thread receives.
enum Msg {
    /// A job, and the mailbox of the thread that made it (if any).
    Job(Box<dyn GroupJob>, Option<Mailbox>),
    /// Finish what was received, close the connection, then answer.
    Close(oneshot::Sender<()>),
}

/// Runs write jobs; see the module docs.
pub struct Writer {
    mode: Mode,
    stats: Arc<WriteStats>,
}

/// What the writer did since it started: jobs per group is the group commit's yield.
#[derive(Debug)]
pub struct WriteStats {
    /// Transactions committed or attempted (each one fsync when committed).
    pub groups: AtomicU64,
    /// Jobs run in them.
    pub jobs: AtomicU64,
    /// Messages of answers to request threads' mailboxes (one per thread per group).
    pub handoffs: AtomicU64,
    /// Groups run a second time with a savepoint per job, because a job failed after writing.
    pub replays: AtomicU64,
    /// How long each commit took (`paybridge_db_commit_duration_seconds`).
    pub commit_seconds: prometheus_client::metrics::histogram::Histogram,
}

impl Default for WriteStats {
    fn default() -> Self {
        WriteStats {
            groups: AtomicU64::new(0),
            jobs: AtomicU64::new(0),
            handoffs: AtomicU64::new(0),
            replays: AtomicU64::new(0),
            commit_seconds: crate::metrics::Metrics::commit_histogram(),
        }
    }
}

impl WriteStats {
    /// Commit `txn`, timed.
    async fn commit(&self, txn: DatabaseTransaction) -> Result<(), DbErr> {
        let started = std::time::Instant::now();
        let committed = txn.commit().await;
        self.commit_seconds.observe(started.elapsed().as_secs_f64());
        committed
    }
}

impl Writer {
    /// A writer of its own transactions on `db` (PostgreSQL).
    pub fn per_job(db: DatabaseConnection) -> Writer {
        Writer {
            mode: Mode::PerJob(db),
            stats: Arc::default(),
        }
    }

    /// The SQLite writer: a thread of its own owns `conn` and runs the groups, each statement
    /// in that thread (no hand-over per statement). It ends when [`Writer::close`] is called or
    /// the last handle is dropped.
    pub fn sqlite(conn: rusqlite::Connection) -> Result<Writer, DbErr> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(Mutex::new(None));
        let reason = dropped.clone();
        let stats = Arc::new(WriteStats::default());
        let counted = stats.clone();
        let proxy = WriteProxy::new(conn);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| DbErr::Custom(format!("database writer runtime: {e}")))?;
        std::thread::Builder::new()
            .name("paybridge-db-writer".to_owned())
            .spawn(move || {
                lower_priority();
                runtime.block_on(async move {
                    // sea-orm's connection and the group loop share the connection; the loop
                    // reads the failures of transaction calls that sea-orm cannot return.
                    let as_trait: Box<dyn ProxyDatabaseTrait> = Box::new(proxy.clone());
                    match Database::connect_proxy(DbBackend::Sqlite, Arc::new(as_trait)).await {
                        Ok(db) => run_groups(db, proxy, rx, reason, &counted).await,
                        Err(e) => {
                            tracing::error!(error = %e, "database writer cannot start");
                            if let Ok(mut r) = reason.lock() {
                                *r = Some(e);
                            }
                        }
                    }
                });
            })
            .map_err(|e| DbErr::Custom(format!("database writer thread: {e}")))?;
        Ok(Writer {
            mode: Mode::Grouped(tx, dropped),
            stats,
        })
    }

    /// Groups and jobs so far (on PostgreSQL each job is a group of its own).
    pub fn stats(&self) -> &WriteStats {
        &self.stats
    }

    /// The same, to keep.
    pub fn shared_stats(&self) -> Arc<WriteStats> {
        self.stats.clone()
    }

    /// Stop taking jobs: every job already handed over is committed (or failed) first, and on
    /// SQLite the connection is closed (its WAL checkpointed) before this returns.
    pub async fn close(&self) {
        if let Mode::Grouped(queue, _) = &self.mode {
            let (done_tx, done_rx) = oneshot::channel();
            if queue.send(Msg::Close(done_tx)).await.is_ok() {
                let _ = done_rx.await;
            }
        }
    }

    /// Run `job` in a transaction and return its result once that transaction is committed.
    ///
    /// An `Err` from the job rolls back what the job wrote and nothing else; the error is
    /// returned after the group's commit too. A failed commit is an `Err` for every job in the
    /// group. A job must not call the writer itself (it would wait for its own group).
    ///
    /// On SQLite a job may run twice (a copy of it, hence `Clone`): when another job of its
    /// group fails after writing, the group is rolled back and run again with a savepoint per
    /// job. Only the last run's writes are committed and only its result is returned, so a job
    /// must have no effect outside the transaction that it would not want twice.
    pub async fn run<T, E, F>(&self, job: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbErr> + Send + 'static,
        F: WriteJob<T, E>,
    {
        match &self.mode {
            Mode::PerJob(db) => {
                let txn = db.begin().await?;
                let result = job(&txn).await;
                self.stats.jobs.fetch_add(1, Ordering::Relaxed);
                match result {
                    Ok(value) => {
                        self.stats.groups.fetch_add(1, Ordering::Relaxed);
                        self.stats.commit(txn).await?;
                        Ok(value)
                    }
                    Err(e) => {
                        txn.rollback().await?;
                        Err(e)
                    }
                }
            }
            Mode::Grouped(queue, dropped) => {
                let (done_tx, done_rx) = oneshot::channel::<Result<T, E>>();
                let erased: Box<dyn GroupJob> = Box::new(TypedJob {
                    job,
                    result: None,
                    caller: done_tx,
                });
                queue.send(Msg::Job(erased, mailbox())).await.map_err(|_| {
                    E::from(DbErr::Custom("the database writer has stopped".to_owned()))
                })?;
                done_rx.await.map_err(|_| {
                    // Nothing was written; the writer kept the reason (the database's own error,
                    // so that a locked or unreachable database is told apart from a bug).
                    let reason = dropped.lock().ok().and_then(|r| r.clone());
                    E::from(reason.unwrap_or_else(|| {
                        DbErr::Custom(
                            "the database writer dropped the write before committing it".to_owned(),
                        )
                    }))
                })?
            }
        }
    }
}

/// The writer thread's nice value. See [`lower_priority`].
const WRITER_NICE: i32 = 19;

/// Let request work run before the writer when both want the CPU. A commit costs about the same
/// CPU (page writes, fsync) for one job as for fifty: a writer woken by every job commits them
/// one by one, while one that waits for the request threads to finish what they can commits
/// everything that came meanwhile. On an idle CPU the writer runs at once, so a lone request
/// waits no longer; the kernel still gives it its share under load (nice is a weight, not a
/// starvation).
fn lower_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), WRITER_NICE) {
        tracing::warn!(error = %e, "database writer: cannot lower its priority");
    }
}

/// Run one job under a savepoint of `txn`: released on `Ok`, rolled back on `Err`. A savepoint
/// that cannot be taken or ended is the job's error; the flag is false when the job's writes may
/// still be in the transaction after an error (its savepoint could not be rolled back).
async fn run_in_savepoint<T, E, F>(txn: &DatabaseTransaction, job: F) -> (Result<T, E>, bool)
where
    E: From<DbErr>,
    F: for<'a> FnOnce(&'a DatabaseTransaction) -> JobFuture<'a, Result<T, E>>,
{
    let savepoint = match txn.begin().await {
        Ok(s) => s,
        Err(e) => return (Err(E::from(e)), false),
    };
    match job(&savepoint).await {
        Ok(value) => match savepoint.commit().await {
            Ok(()) => (Ok(value), true),
            Err(e) => (Err(E::from(e)), false),
        },
        Err(e) => {
            let clean = savepoint.rollback().await.is_ok();
            (Err(e), clean)
        }
    }
}

/// The SQLite writer: take what is waiting, run it in one transaction, commit once, answer.
async fn run_groups(
    db: DatabaseConnection,
    proxy: WriteProxy,
    mut queue: mpsc::Receiver<Msg>,
    dropped: Arc<Mutex<Option<DbErr>>>,
    stats: &WriteStats,
) {
    let mut group: Vec<(Box<dyn GroupJob>, Option<Mailbox>)> = Vec::with_capacity(MAX_GROUP);
    let mut closing = None;
    while closing.is_none() {
        match queue.recv().await {
            Some(Msg::Job(job, mailbox)) => group.push((job, mailbox)),
            Some(Msg::Close(done)) => closing = Some(done),
            None => break,
        }
        while closing.is_none() && group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(Msg::Job(job, mailbox)) => group.push((job, mailbox)),
                Ok(Msg::Close(done)) => closing = Some(done),
                Err(_) => break,
            }
        }
        if !group.is_empty() {
            stats.groups.fetch_add(1, Ordering::Relaxed);
            stats
                .jobs
                .fetch_add(u64::try_from(group.len()).unwrap_or(0), Ordering::Relaxed);
            run_group(&db, &proxy, &mut group, &dropped, stats).await;
        }
    }
    // Later jobs find the queue closed: "the database writer has stopped".
    queue.close();
    while let Ok(msg) = queue.try_recv() {
        if let Msg::Close(done) = msg {
            let _ = done.send(());
        }
    }
    // The connection closes here (the last handle on it), before the caller hears of it.
    drop(db);
    drop(proxy);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// Run a group in one transaction and commit it once.
///
/// A job that fails must leave its neighbours' writes and none of its own. A savepoint per job
/// gives that, but SQLite then copies every page a job changes into the savepoint's journal
/// first (the pages a group's jobs share, such as the last leaf of each table they append to,
/// once per job): 16 % of a notification's instructions (callgrind, `bench/RESULTS.md`). So the
/// jobs first run without savepoints, and:
///
/// - a job that fails having changed no row (SQLite's count of changed rows did not move: its
///   own error came before any write, or its failed statement was undone by SQLite) leaves the
///   transaction as it found it, and the group goes on (no job changes the schema, which the
///   count would not see);
/// - a job that fails after changing rows makes the writer roll the group back and run every
///   job again, each under its own savepoint, in a new transaction (`replays` counts these).
///   Only that run's writes and results count.
///
/// If the transaction itself is gone (SQLite rolls it back on some I/O errors) or a savepoint
/// cannot be ended, nothing of the group is committed and every job fails.
async fn run_group(
    db: &DatabaseConnection,
    proxy: &WriteProxy,
    group: &mut Vec<(Box<dyn GroupJob>, Option<Mailbox>)>,
    dropped: &Mutex<Option<DbErr>>,
    stats: &WriteStats,
) {
    let jobs = u64::try_from(group.len()).unwrap_or(u64::MAX);
    let Some(txn) = begin(db, proxy, dropped, group.len()).await else {
        // Dropping the jobs tells each caller that nothing was written.
        group.clear();
        return;
    };
    let mut clean = true;
    let mut isolate = false;
    for (job, _) in group.iter_mut() {
        let changes = proxy.total_changes();
        let ran = job.run(&txn, false).await;
        if !proxy.in_transaction() || proxy.failed() {
            clean = false;
            break;
        }
        if ran == Ran::Failed && proxy.total_changes() != changes {
            isolate = true;
            break;
        }
    }
    let txn = if clean && isolate {
        stats.replays.fetch_add(1, Ordering::Relaxed);
        let _ = txn.rollback().await;
        proxy.reset();
        let Some(txn) = begin(db, proxy, dropped, group.len()).await else {
            group.clear();
            return;
        };
        for (job, _) in group.iter_mut() {
            let ran = job.run(&txn, true).await;
            if ran == Ran::Broken || !proxy.in_transaction() || proxy.failed() {
                clean = false;
                break;
            }
        }
        txn
    } else {
        txn
    };
    let outcome = if clean {
        let committed = stats.commit(txn).await;
        match (committed, proxy.reset()) {
            (Ok(()), None) => Ok(()),
            (Err(e), _) | (Ok(()), Some(e)) => {
                tracing::error!(error = %e, jobs, "database writer: commit failed; no job of the group was written");
                Err(e)
            }
        }
    } else {
        // Its half-done writes must not be committed.
        let _ = txn.rollback().await;
        let reason = proxy.reset();
        tracing::error!(
            jobs,
            error = reason.as_ref().map(tracing::field::display),
            "database writer: the transaction was lost or a savepoint failed; the group was rolled back"
        );
        Err(reason.unwrap_or_else(|| {
            DbErr::Custom(
                "the transaction was rolled back after a savepoint failed or the transaction was lost"
                    .to_owned(),
            )
        }))
    };
    let answers = group
        .drain(..)
        .map(|(job, mailbox)| (job.answer(outcome.clone()), mailbox))
        .collect();
    hand_back(answers, stats);
}

/// `BEGIN IMMEDIATE` (see `WriteProxy`): a second process on the same file waits for the lock
/// (busy timeout) instead of failing half-way through a group. `None` when it cannot begin,
/// with the reason kept for the group's callers.
async fn begin(
    db: &DatabaseConnection,
    proxy: &WriteProxy,
    dropped: &Mutex<Option<DbErr>>,
    jobs: usize,
) -> Option<DatabaseTransaction> {
    let began = db.begin().await;
    match (began, proxy.failed()) {
        (Ok(txn), false) => Some(txn),
        (began, _) => {
            drop(began);
            let e = proxy
                .reset()
                .unwrap_or_else(|| DbErr::Custom("cannot begin a transaction".to_owned()));
            tracing::error!(error = %e, jobs, "database writer cannot begin a transaction");
            if let Ok(mut reason) = dropped.lock() {
                *reason = Some(e);
            }
            None
        }
    }
}

/// Answers every job of a group: one message per request thread with a mailbox, directly for
/// the others (and for a thread whose mailbox has closed).
fn hand_back(answers: Vec<(Answer, Option<Mailbox>)>, stats: &WriteStats) {
    let mut by_thread: Vec<(Mailbox, Answers)> = Vec::new();
    for (answer, mailbox) in answers {
        match mailbox {
            Some(mailbox) => match by_thread.iter_mut().find(|(m, _)| m.same_channel(&mailbox)) {
                Some((_, answers)) => answers.push(answer),
                None => by_thread.push((mailbox, vec![answer])),
            },
            None => answer(),
        }
    }
    for (mailbox, answers) in by_thread {
        stats.handoffs.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(answers)) = mailbox.send(answers) {
            for answer in answers {
                answer();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sea_orm::ConnectionTrait;
    use tokio::sync::Notify;

    use super::*;
    use crate::db::sqlite::SqliteFile;

    /// A writer on a fresh file with `schema`, and the file.
    fn writer(schema: &str) -> (Writer, SqliteFile, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let file = SqliteFile {
            path: dir.path().join("w.db"),
            busy_timeout: std::time::Duration::from_secs(1),
        };
        rusqlite::Connection::open(&file.path)
            .unwrap()
            .execute_batch(schema)
            .unwrap();
        (Writer::sqlite(file.open(true).unwrap()).unwrap(), file, dir)
    }

    fn keys(file: &SqliteFile, table: &str) -> Vec<i64> {
        let conn = file.open(false).unwrap();
        let mut stmt = conn
            .prepare(&format!("SELECT k FROM {table} ORDER BY k"))
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    async fn insert(w: &Writer, sql: &'static str, fail: bool) -> Result<(), DbErr> {
        w.run(move |txn| {
            Box::pin(async move {
                txn.execute_unprepared(sql).await?;
                if fail {
                    return Err(DbErr::Custom("the job refused".to_owned()));
                }
                Ok(())
            })
        })
        .await
    }

    /// Hold the writer inside a job until `go` is notified, so that the jobs sent meanwhile
    /// wait together and make the next group.
    fn hold(w: &Writer, go: Arc<Notify>) -> impl Future<Output = Result<(), DbErr>> + '_ {
        w.run(move |_txn| {
            Box::pin(async move {
                go.notified().await;
                Ok(())
            })
        })
    }

    /// Run `jobs` while the writer is held inside another job, so that they are all waiting
    /// when it is let go and make one group.
    async fn as_one_group<F: Future>(w: &Writer, jobs: F) -> F::Output {
        let go = Arc::new(Notify::new());
        let held = hold(w, go.clone());
        let group = async {
            // Let the writer take the holding job first.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let notify = async {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                go.notify_one();
            };
            tokio::join!(jobs, notify).0
        };
        let (held, out) = tokio::join!(held, group);
        held.unwrap();
        out
    }

    /// A thread with a mailbox gets one message of answers per group, the failed job's error
    /// included; a thread without one (a multi-thread runtime) is answered directly.
    #[tokio::test]
    async fn a_thread_with_a_mailbox_is_answered_once_per_group() {
        install_mailbox();
        let (w, file, _dir) = writer("CREATE TABLE t (k INTEGER PRIMARY KEY);");
        let (a, b, c) = as_one_group(&w, async {
            tokio::join!(
                insert(&w, "INSERT INTO t (k) VALUES (1)", false),
                insert(&w, "INSERT INTO t (k) VALUES (2)", true),
                insert(&w, "INSERT INTO t (k) VALUES (3)", false),
            )
        })
        .await;
        a.unwrap();
        assert!(matches!(b, Err(DbErr::Custom(m)) if m == "the job refused"));
        c.unwrap();
        assert_eq!(keys(&file, "t"), vec![1, 3]);
        let stats = w.stats();
        // Two groups (the holding job, then the three): two messages, not four.
        assert_eq!(stats.groups.load(Ordering::Relaxed), 2);
        assert_eq!(stats.jobs.load(Ordering::Relaxed), 4);
        assert_eq!(stats.handoffs.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_thread_without_a_mailbox_is_answered_directly() {
        install_mailbox(); // does nothing on a multi-thread runtime
        let (w, file, _dir) = writer("CREATE TABLE t (k INTEGER PRIMARY KEY);");
        insert(&w, "INSERT INTO t (k) VALUES (1)", false)
            .await
            .unwrap();
        assert_eq!(keys(&file, "t"), vec![1]);
        assert_eq!(w.stats().handoffs.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_failing_job_is_rolled_back_alone_and_its_group_commits() {
        let (w, file, _dir) = writer("CREATE TABLE t (k INTEGER PRIMARY KEY);");
        let (a, b, c) = as_one_group(&w, async {
            tokio::join!(
                insert(&w, "INSERT INTO t (k) VALUES (1)", false),
                insert(&w, "INSERT INTO t (k) VALUES (2)", true),
                insert(&w, "INSERT INTO t (k) VALUES (3)", false),
            )
        })
        .await;
        a.unwrap();
        assert!(matches!(b, Err(DbErr::Custom(m)) if m == "the job refused"));
        c.unwrap();
        assert_eq!(keys(&file, "t"), vec![1, 3]);
    }

    /// A job that fails before it writes (its own refusal, or a statement SQLite refused and
    /// undid) leaves nothing to undo: its group commits without running anything twice.
    #[tokio::test]
    async fn a_job_that_fails_without_writing_costs_its_group_no_second_run() {
        let (w, file, _dir) = writer("CREATE TABLE t (k INTEGER PRIMARY KEY);");
        let refuse = w.run(move |_txn| {
            Box::pin(async move { Err::<(), _>(DbErr::Custom("refused".to_owned())) })
        });
        let (a, b, c, d) = as_one_group(&w, async {
            tokio::join!(
                insert(&w, "INSERT INTO t (k) VALUES (1)", false),
                refuse,
                // The same key again: SQLite refuses the statement and changes nothing.
                insert(&w, "INSERT INTO t (k) VALUES (1)", false),
                insert(&w, "INSERT INTO t (k) VALUES (3)", false),
            )
        })
        .await;
        a.unwrap();
        assert!(matches!(b, Err(DbErr::Custom(m)) if m == "refused"));
        assert!(
            matches!(&c, Err(e) if e.to_string().contains("UNIQUE")),
            "{c:?}"
        );
        d.unwrap();
        assert_eq!(keys(&file, "t"), vec![1, 3]);
        assert_eq!(w.stats().replays.load(Ordering::Relaxed), 0);
    }

    /// A job that fails after writing: the group is rolled back and run again with a savepoint
    /// per job, so the jobs before it run twice and only their second run is committed.
    #[tokio::test]
    async fn a_job_that_fails_after_writing_makes_its_group_run_again_with_savepoints() {
        let (w, file, _dir) = writer("CREATE TABLE t (k INTEGER PRIMARY KEY);");
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = {
            let runs = runs.clone();
            w.run(move |txn| {
                Box::pin(async move {
                    let run = runs.fetch_add(1, Ordering::Relaxed) + 1;
                    txn.execute_unprepared(&format!("INSERT INTO t (k) VALUES ({})", 10 + run))
                        .await?;
                    Ok::<_, DbErr>(run)
                })
            })
        };
        let (a, b, c) = as_one_group(&w, async {
            tokio::join!(
                counted,
                insert(&w, "INSERT INTO t (k) VALUES (2)", true),
                insert(&w, "INSERT INTO t (k) VALUES (3)", false),
            )
        })
        .await;
        // The first run's row (11) was rolled back with the group; the second run's stands,
        // and its result is the one returned.
        assert_eq!(a.unwrap(), 2);
        assert!(matches!(b, Err(DbErr::Custom(m)) if m == "the job refused"));
        c.unwrap();
        assert_eq!(keys(&file, "t"), vec![3, 12]);
        assert_eq!(runs.load(Ordering::Relaxed), 2);
        assert_eq!(w.stats().replays.load(Ordering::Relaxed), 1);
        // The writer goes on without savepoints for the next group.
        insert(&w, "INSERT INTO t (k) VALUES (4)", false)
            .await
            .unwrap();
        assert_eq!(w.stats().replays.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_commit_that_fails_fails_every_job_of_its_group_and_writes_nothing() {
        // A deferred foreign key is checked at COMMIT: the statements succeed, the commit fails.
        let (w, file, _dir) = writer(
            "CREATE TABLE p (k INTEGER PRIMARY KEY);
             CREATE TABLE c (k INTEGER PRIMARY KEY,
                             p INTEGER REFERENCES p(k) DEFERRABLE INITIALLY DEFERRED);",
        );
        let (parent, child) = as_one_group(&w, async {
            tokio::join!(
                insert(&w, "INSERT INTO p (k) VALUES (1)", false),
                insert(&w, "INSERT INTO c (k, p) VALUES (1, 999)", false),
            )
        })
        .await;
        assert!(
            parent.is_err(),
            "acknowledged a write that was not committed"
        );
        assert!(child.is_err());
        assert!(keys(&file, "p").is_empty());
        assert!(keys(&file, "c").is_empty());
        // The writer goes on with the next group.
        insert(&w, "INSERT INTO p (k) VALUES (2)", false)
            .await
            .unwrap();
        assert_eq!(keys(&file, "p"), vec![2]);
    }

    #[tokio::test]
    async fn after_close_every_write_is_refused_and_the_earlier_ones_stand() {
        let (w, file, _dir) = writer("CREATE TABLE t (k INTEGER PRIMARY KEY);");
        insert(&w, "INSERT INTO t (k) VALUES (1)", false)
            .await
            .unwrap();
        w.close().await;
        let refused = insert(&w, "INSERT INTO t (k) VALUES (2)", false).await;
        assert!(matches!(refused, Err(DbErr::Custom(m)) if m.contains("stopped")));
        assert_eq!(keys(&file, "t"), vec![1]);
    }
}
