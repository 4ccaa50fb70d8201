//! The reconciler: what real integrations rely on when notifications are late or lost.
//!
//! Each pass, holding a database lease so that two instances never work at once:
//! 1. queries pending orders older than `query_pending_after_seconds` that had no notification;
//! 2. closes pending orders past their expiry, at the provider first (if the provider says paid,
//!    they become paid instead);
//! 3. queries `processing` refunds until they are final (re-sending one the provider never got).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter, TryInsertResult,
};

use crate::db::entities::lease;
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::orders::{defer_order, find_order, pending_due};
use crate::store::refunds::{defer_refund, open_refunds};
use crate::usecases::{orders as service, refunds};

const LEASE: &str = "reconciler";
const BATCH: u64 = 200;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Whether this instance held the lease (otherwise it did nothing).
    pub held_lease: bool,
    /// Pending orders queried.
    pub queried: usize,
    /// Expired orders closed (or found paid).
    pub expired: usize,
    /// Refunds queried.
    pub refunds: usize,
    /// Calls that failed (logged; retried next pass).
    pub errors: usize,
}

/// Try to take (or renew) the named lease until `now + ttl`. Through the store's writer, like
/// every write of the request path: on SQLite a second writing connection would wait for the lock.
pub async fn acquire_named_lease(
    state: &AppState,
    name: &'static str,
    holder: &str,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let until =
        now + chrono::Duration::from_std(ttl).unwrap_or_else(|_| chrono::Duration::seconds(60));
    let holder = holder.to_owned();
    state
        .store
        .write(move |txn| {
            Box::pin(async move {
                let inserted = lease::Entity::insert(lease::ActiveModel {
                    name: Set(name.to_owned()),
                    holder: Set(holder.clone()),
                    expires_at: Set(until),
                })
                .on_conflict_do_nothing_on([lease::Column::Name])
                .exec_without_returning(txn)
                .await?;
                if matches!(inserted, TryInsertResult::Inserted(n) if n > 0) {
                    return Ok(true);
                }
                let taken = lease::Entity::update_many()
                    .col_expr(lease::Column::Holder, Expr::value(holder.clone()))
                    .col_expr(lease::Column::ExpiresAt, Expr::value(until))
                    .filter(lease::Column::Name.eq(name))
                    .filter(
                        Condition::any()
                            .add(lease::Column::Holder.eq(holder))
                            .add(lease::Column::ExpiresAt.lt(now)),
                    )
                    .exec(txn)
                    .await?;
                Ok(taken.rows_affected == 1)
            })
        })
        .await
}

/// Take (or renew) the reconciler's lease.
pub async fn acquire_lease(
    state: &AppState,
    holder: &str,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<bool, StoreError> {
    acquire_named_lease(state, LEASE, holder, now, ttl).await
}

/// Give the lease up (end of a pass).
pub async fn release_named_lease(
    state: &AppState,
    name: &'static str,
    holder: &str,
) -> Result<(), StoreError> {
    let holder = holder.to_owned();
    state
        .store
        .write(move |txn| {
            Box::pin(async move {
                lease::Entity::delete_many()
                    .filter(lease::Column::Name.eq(name))
                    .filter(lease::Column::Holder.eq(holder))
                    .exec(txn)
                    .await?;
                Ok(())
            })
        })
        .await
}

/// Give the reconciler's lease up.
pub async fn release_lease(state: &AppState, holder: &str) -> Result<(), StoreError> {
    release_named_lease(state, LEASE, holder).await
}

/// Look at an order again at `at` (not a change of the order).
async fn defer_order_until(
    state: &AppState,
    id: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let id = id.to_owned();
    state
        .store
        .write(move |txn| Box::pin(async move { defer_order(txn, &id, at).await }))
        .await
}

/// Look at a refund again at `at`.
async fn defer_refund_until(
    state: &AppState,
    id: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let id = id.to_owned();
    state
        .store
        .write(move |txn| Box::pin(async move { defer_refund(txn, &id, at).await }))
        .await
}

/// `work`, unless the workers are told to stop first: then it is dropped, `None`. Only provider
/// calls (and the writes right after them) are cut short this way, never a statement on the
/// lease: a lease renewal dropped mid-flight could still land after the release.
async fn unless_stopped<T>(
    state: &AppState,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        () = state.workers.cancelled() => None,
        done = work => Some(done),
    }
}

/// End a pass cut short by a shutdown: give the lease up now, for another instance to take.
async fn stopped(
    state: &AppState,
    holder: &str,
    report: PassReport,
) -> Result<PassReport, StoreError> {
    tracing::info!("reconciler: stopping mid-pass for shutdown");
    release_lease(state, holder).await?;
    Ok(report)
}

/// The next check of a row created at `created`: a tenth of its age, between one interval and an
/// hour.
fn next_check(now: DateTime<Utc>, created: DateTime<Utc>, interval: Duration) -> DateTime<Utc> {
    let interval =
        chrono::Duration::from_std(interval).unwrap_or_else(|_| chrono::Duration::seconds(30));
    let wait = ((now - created) / 10).clamp(interval, chrono::Duration::hours(1).max(interval));
    now + wait
}

fn elapsed(since: std::time::Instant) -> chrono::Duration {
    chrono::Duration::from_std(since.elapsed()).unwrap_or_else(|_| chrono::Duration::zero())
}

/// One pass at time `now`. Returns what it did; failures of single calls are logged and counted,
/// not fatal.
pub async fn run_once(
    state: &AppState,
    holder: &str,
    now: DateTime<Utc>,
) -> Result<PassReport, StoreError> {
    let mut report = PassReport::default();
    let interval = Duration::from_secs(state.config.reconciler.interval_seconds.max(1));
    let ttl = interval * 4;
    let started = std::time::Instant::now();
    if !acquire_lease(state, holder, now, ttl).await? {
        return Ok(report);
    }
    report.held_lease = true;
    let quiet_for =
        i64::try_from(state.config.reconciler.query_pending_after_seconds).unwrap_or(i64::MAX);
    let quiet_since = now - chrono::Duration::seconds(quiet_for);

    let stale = pending_due(now, Some(quiet_since), BATCH)
        .all(state.store.db())
        .await?;
    for o in stale {
        // Renew before each provider call: a long pass must not outlive its lease, or another
        // instance would start working the same orders.
        if !acquire_lease(state, holder, now + elapsed(started), ttl).await? {
            tracing::warn!("reconciler: lease lost mid-pass; stopping");
            return Ok(report);
        }
        // Whatever the outcome, look again later, sooner for young orders: rows that never
        // change must not crowd newer ones out of the batch.
        defer_order_until(state, &o.id, next_check(now, o.created_at, interval)).await?;
        let Some(tenant) = state.tenants.get(&o.tenant_id) else {
            continue;
        };
        report.queried += 1;
        crate::usecases::activity::reconciled(state, &o.tenant_id, &o.out_trade_no, "query");
        let Some(synced) = unless_stopped(state, service::sync_order(state, &tenant, &o)).await
        else {
            return stopped(state, holder, report).await;
        };
        if let Err(e) = synced {
            report.errors += 1;
            tracing::warn!(tenant = %o.tenant_id, out_trade_no = %o.out_trade_no, error = %e, "reconciler: query failed");
        }
    }

    let expired = pending_due(now, None, BATCH).all(state.store.db()).await?;
    for o in expired {
        // Renew before each provider call: a long pass must not outlive its lease, or another
        // instance would start working the same orders.
        if !acquire_lease(state, holder, now + elapsed(started), ttl).await? {
            tracing::warn!("reconciler: lease lost mid-pass; stopping");
            return Ok(report);
        }
        defer_order_until(state, &o.id, next_check(now, o.created_at, interval)).await?;
        let Some(tenant) = state.tenants.get(&o.tenant_id) else {
            continue;
        };
        report.expired += 1;
        crate::usecases::activity::reconciled(
            state,
            &o.tenant_id,
            &o.out_trade_no,
            "close_expired",
        );
        let Some(closed) = unless_stopped(state, service::close_order(state, &tenant, &o)).await
        else {
            return stopped(state, holder, report).await;
        };
        match closed {
            Ok(_) => {}
            Err(e) if e.code == "order_paid" => {
                tracing::info!(tenant = %o.tenant_id, out_trade_no = %o.out_trade_no, "reconciler: expired order was paid");
            }
            Err(e) => {
                report.errors += 1;
                tracing::warn!(tenant = %o.tenant_id, out_trade_no = %o.out_trade_no, error = %e, "reconciler: close failed");
            }
        }
    }

    for r in open_refunds(state.store.db(), now, BATCH).await? {
        // Renew before each provider call: a long pass must not outlive its lease, or another
        // instance would start working the same orders.
        if !acquire_lease(state, holder, now + elapsed(started), ttl).await? {
            tracing::warn!("reconciler: lease lost mid-pass; stopping");
            return Ok(report);
        }
        defer_refund_until(state, &r.id, next_check(now, r.created_at, interval)).await?;
        let Some(tenant) = state.tenants.get(&r.tenant_id) else {
            continue;
        };
        let Some(o) = find_order(state.store.db(), &r.tenant_id, &r.out_trade_no).await? else {
            continue;
        };
        report.refunds += 1;
        crate::usecases::activity::reconciled(state, &o.tenant_id, &o.out_trade_no, "refund_query");
        let Some(synced) =
            unless_stopped(state, refunds::sync_refund(state, &tenant, &o, &r)).await
        else {
            return stopped(state, holder, report).await;
        };
        if let Err(e) = synced {
            report.errors += 1;
            tracing::warn!(tenant = %r.tenant_id, out_refund_no = %r.out_refund_no, error = %e, "reconciler: refund query failed");
        }
    }
    release_lease(state, holder).await?;
    Ok(report)
}

/// Run passes at the configured interval until `state.workers` is cancelled, then release the
/// lease so that another instance takes over at once. A pass cut short is safe: each change it
/// made is its own transaction, and what it did not reach is picked up by the next pass.
/// The release after the loop covers a stop between passes; a pass stopped midway released it.
pub fn spawn(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    let interval = Duration::from_secs(state.config.reconciler.interval_seconds.max(1));
    tokio::spawn(async move {
        let holder = state.instance_id.clone();
        let mut clock = state.worker_clock(interval);
        while clock.tick().await {
            // A pass told to stop returns at its next provider call, lease released.
            match run_once(&state, &holder, Utc::now()).await {
                Ok(r) if r.queried + r.expired + r.refunds > 0 => {
                    tracing::info!(?r, "reconciler pass")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "reconciler pass failed"),
            }
        }
        if let Err(e) = release_lease(&state, &holder).await {
            tracing::warn!(error = %e, "reconciler: cannot release the lease at shutdown");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn young_rows_are_checked_often_and_old_ones_rarely() {
        let now = Utc::now();
        let interval = Duration::from_secs(30);
        let wait = |age_secs: i64| {
            next_check(now, now - chrono::Duration::seconds(age_secs), interval) - now
        };
        assert_eq!(
            wait(60),
            chrono::Duration::seconds(30),
            "at least one interval"
        );
        assert_eq!(
            wait(1200),
            chrono::Duration::seconds(120),
            "a tenth of the age"
        );
        assert_eq!(
            wait(86_400 * 3),
            chrono::Duration::hours(1),
            "at most an hour"
        );
    }
}
