//! The retention worker: deletes attempt records older than `[retention] attempts_days`, in
//! bounded batches, so that `notification_attempts`, `webhook_attempts` and `order_activity`
//! stop growing forever,
//! and `Idempotency-Key`s older than `[idempotency] ttl_seconds`.
//! Several instances may run it at once: a batch deletes rows by id, and a row deleted twice is
//! simply not there the second time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::state::AppState;
use crate::store::StoreError;
use crate::store::retention::{
    prune_notification_attempts, prune_order_activity, prune_webhook_attempts,
};

/// The tables pruned by age.
#[derive(Debug, Clone, Copy)]
enum Table {
    NotificationAttempts,
    WebhookAttempts,
    OrderActivity,
}

/// What one pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PruneReport {
    /// Notification attempts deleted.
    pub notification_attempts: u64,
    /// Webhook delivery attempts deleted.
    pub webhook_attempts: u64,
    /// Order activity entries (provider calls, reconciler actions) deleted.
    pub order_activity: u64,
    /// Expired `Idempotency-Key`s deleted.
    pub idempotency_keys: u64,
    /// Batches that deleted rows (besides the one statement of expired keys).
    pub batches: u32,
}

/// Up to `max_batches` batches of one table, each a short write of its own, until a batch is not
/// full or the workers stop. Returns the rows deleted and the batches that deleted some.
async fn prune_table(
    state: &AppState,
    table: Table,
    before: DateTime<Utc>,
    limit: u64,
) -> Result<(u64, u32), StoreError> {
    let (mut deleted, mut batches) = (0, 0);
    for _ in 0..state.config.retention.max_batches.max(1) {
        if state.workers.is_cancelled() {
            break;
        }
        let n = state
            .store
            .write(move |txn| {
                Box::pin(async move {
                    match table {
                        Table::NotificationAttempts => {
                            prune_notification_attempts(txn, before, limit).await
                        }
                        Table::WebhookAttempts => prune_webhook_attempts(txn, before, limit).await,
                        Table::OrderActivity => prune_order_activity(txn, before, limit).await,
                    }
                })
            })
            .await?;
        deleted += n;
        if n > 0 {
            batches += 1;
        }
        if n < limit {
            break;
        }
    }
    Ok((deleted, batches))
}

/// One pass at time `now`: up to `max_batches` batches per table, each a short write of its own.
pub async fn run_once(state: &AppState, now: DateTime<Utc>) -> Result<PruneReport, StoreError> {
    let c = &state.config.retention;
    let mut report = PruneReport::default();
    // Expired keys go whatever attempts_days says: they no longer mean anything.
    let ttl = chrono::Duration::seconds(
        i64::try_from(state.config.idempotency.ttl_seconds.max(1)).unwrap_or(i64::MAX),
    );
    let expired = now - ttl;
    report.idempotency_keys = state
        .store
        .write(move |txn| {
            Box::pin(async move { crate::store::idempotency::prune(txn, expired).await })
        })
        .await?;
    if c.attempts_days == 0 {
        return Ok(report);
    }
    let before = now - chrono::Duration::days(i64::from(c.attempts_days));
    let limit = c.batch_size.max(1);
    for table in [
        Table::NotificationAttempts,
        Table::WebhookAttempts,
        Table::OrderActivity,
    ] {
        let (deleted, batches) = prune_table(state, table, before, limit).await?;
        report.batches += batches;
        match table {
            Table::NotificationAttempts => report.notification_attempts = deleted,
            Table::WebhookAttempts => report.webhook_attempts = deleted,
            Table::OrderActivity => report.order_activity = deleted,
        }
    }
    Ok(report)
}

/// Run passes every `interval_seconds` until `state.workers` is cancelled.
pub fn spawn(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    let interval = Duration::from_secs(state.config.retention.interval_seconds.max(1));
    tokio::spawn(async move {
        let mut clock = state.worker_clock(interval);
        while clock.tick().await {
            match run_once(&state, Utc::now()).await {
                Ok(r) if r.notification_attempts + r.webhook_attempts + r.idempotency_keys > 0 => {
                    tracing::info!(?r, "retention pass");
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "retention pass failed"),
            }
        }
    })
}
