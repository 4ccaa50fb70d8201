//! The retention worker: deletes attempt records older than `[retention] attempts_days`, in
//! bounded batches, so that `notification_attempts` and `webhook_attempts` stop growing forever,
//! and `Idempotency-Key`s older than `[idempotency] ttl_seconds`.
//! Several instances may run it at once: a batch deletes rows by id, and a row deleted twice is
//! simply not there the second time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::state::AppState;
use crate::store::StoreError;
use crate::store::retention::{prune_notification_attempts, prune_webhook_attempts};

/// What one pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PruneReport {
    /// Notification attempts deleted.
    pub notification_attempts: u64,
    /// Webhook delivery attempts deleted.
    pub webhook_attempts: u64,
    /// Expired `Idempotency-Key`s deleted.
    pub idempotency_keys: u64,
    /// Batches of attempts deleted (statements run, besides the one of expired keys).
    pub batches: u32,
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
    for _ in 0..c.max_batches.max(1) {
        if state.workers.is_cancelled() {
            return Ok(report);
        }
        let n = state
            .store
            .write(move |txn| {
                Box::pin(async move { prune_notification_attempts(txn, before, limit).await })
            })
            .await?;
        report.notification_attempts += n;
        report.batches += 1;
        if n < limit {
            break;
        }
    }
    for _ in 0..c.max_batches.max(1) {
        if state.workers.is_cancelled() {
            return Ok(report);
        }
        let n = state
            .store
            .write(move |txn| {
                Box::pin(async move { prune_webhook_attempts(txn, before, limit).await })
            })
            .await?;
        report.webhook_attempts += n;
        report.batches += 1;
        if n < limit {
            break;
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
