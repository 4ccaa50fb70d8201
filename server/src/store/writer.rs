//! The write path: every write of a request (an order insert, an event with its outbox rows, a
//! notification attempt) is a job, and a job's caller hears its result only after the commit that
//! holds it.
//!
//! - **SQLite** has one writer at a time, and each commit with `synchronous=FULL` costs an fsync.
//!   One task owns the write connection. It takes every job that is waiting, runs each under its
//!   own savepoint (a job that fails is rolled back alone and its neighbours stay), and commits
//!   them all with one `COMMIT`: one fsync for the whole group.
//! - **PostgreSQL** has a real pool. Each job is its own transaction on it, and concurrent commits
//!   share WAL flushes in the server (PostgreSQL's own group commit).
//!
//! Nothing is acknowledged before it is durable: a job's result is handed back after `COMMIT`
//! returned, and a failed commit fails every job of its group.

use std::future::Future;
use std::pin::Pin;

use sea_orm::{
    DatabaseConnection, DatabaseTransaction, DbErr, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

/// The future a job returns; it borrows the transaction it runs in.
pub type JobFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Called after the group's commit with its outcome.
type Completion = Box<dyn FnOnce(Result<(), DbErr>) + Send>;

/// A job with its result type erased: run it in the group's transaction, get back what to do
/// after the commit, and whether its savepoint ended cleanly (if not, the group must not commit).
type ErasedJob =
    Box<dyn for<'a> FnOnce(&'a DatabaseTransaction) -> JobFuture<'a, (Completion, bool)> + Send>;

/// At most this many jobs share one commit. Bounds the work a failed commit throws away.
const MAX_GROUP: usize = 512;

/// Jobs waiting for the SQLite writer. Full means requests wait to hand theirs over.
const QUEUE: usize = 4096;

enum Mode {
    /// SQLite: the single writer task takes the jobs, and says why when it had to drop a group
    /// (its transaction could not begin, e.g. another process held the lock past the timeout).
    Grouped(mpsc::Sender<ErasedJob>, Arc<Mutex<Option<DbErr>>>),
    /// PostgreSQL: each job is a transaction of its own on the pool.
    PerJob(DatabaseConnection),
}

/// Runs write jobs; see the module docs.
pub struct Writer {
    mode: Mode,
}

impl Writer {
    /// A writer for `db`: grouped on SQLite (the writer task starts now, on the current Tokio
    /// runtime, and ends when the last `Writer` handle is dropped), per job elsewhere.
    pub fn new(db: DatabaseConnection) -> Writer {
        let mode = if db.get_database_backend() == sea_orm::DbBackend::Sqlite {
            let (tx, rx) = mpsc::channel(QUEUE);
            let dropped = Arc::new(Mutex::new(None));
            tokio::spawn(run_groups(db, rx, dropped.clone()));
            Mode::Grouped(tx, dropped)
        } else {
            Mode::PerJob(db)
        };
        Writer { mode }
    }

    /// Run `job` in a transaction and return its result once that transaction is committed.
    ///
    /// An `Err` from the job rolls back what the job wrote (its savepoint) and nothing else; the
    /// error is returned after the group's commit too. A failed commit is an `Err` for every job
    /// in the group. A job must not call the writer itself (it would wait for its own group).
    pub async fn run<T, E, F>(&self, job: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbErr> + Send + 'static,
        F: for<'a> FnOnce(&'a DatabaseTransaction) -> JobFuture<'a, Result<T, E>> + Send + 'static,
    {
        match &self.mode {
            Mode::PerJob(db) => {
                let txn = db.begin().await?;
                let result = job(&txn).await;
                match result {
                    Ok(value) => {
                        txn.commit().await?;
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
                let erased: ErasedJob = Box::new(move |txn: &DatabaseTransaction| {
                    Box::pin(async move {
                        let (result, clean) = run_in_savepoint(txn, job).await;
                        let completion: Completion = Box::new(move |committed| {
                            let answer = match committed {
                                Ok(()) => result,
                                Err(e) => Err(E::from(e)),
                            };
                            // The caller may have gone (its request was cancelled): the write
                            // stands, there is just no one left to tell.
                            let _ = done_tx.send(answer);
                        });
                        (completion, clean)
                    })
                });
                queue.send(erased).await.map_err(|_| {
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
    mut queue: mpsc::Receiver<ErasedJob>,
    dropped: Arc<Mutex<Option<DbErr>>>,
) {
    let mut group: Vec<ErasedJob> = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = queue.recv().await {
        group.push(first);
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        // IMMEDIATE takes the write lock at once: a second process on the same file waits for
        // it (busy timeout) instead of failing half-way through a group.
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        let txn = match db.begin_with_options(options).await {
            Ok(txn) => txn,
            Err(e) => {
                tracing::error!(error = %e, jobs = group.len(), "database writer cannot begin a transaction");
                if let Ok(mut reason) = dropped.lock() {
                    *reason = Some(e);
                }
                // Dropping the jobs tells each caller that nothing was written.
                group.clear();
                continue;
            }
        };
        let mut completions = Vec::with_capacity(group.len());
        let mut clean = true;
        for job in group.drain(..) {
            let (completion, job_clean) = job(&txn).await;
            clean &= job_clean;
            completions.push(completion);
        }
        let jobs = u64::try_from(completions.len()).unwrap_or(u64::MAX);
        let outcome = if clean {
            txn.commit().await.inspect_err(|e| {
                tracing::error!(error = %e, jobs, "database writer: commit failed; no job of the group was written");
            })
        } else {
            // A job's savepoint could not be ended: its half-done writes must not be committed.
            if let Err(e) = txn.rollback().await {
                tracing::error!(error = %e, "database writer: rollback failed");
            }
            tracing::error!(
                jobs,
                "database writer: a savepoint failed; the group was rolled back"
            );
            Err(DbErr::Custom(
                "the transaction was rolled back after a savepoint failed".to_owned(),
            ))
        };
        for complete in completions {
            complete(outcome.clone());
        }
    }
}
