//! The statements worker (`[statements]`): every five minutes (the first five minutes after the
//! start), under a database lease so that
//! several instances do each day once, it reconciles each tenant's bills of the days within
//! `lookback_days` that have no statement yet (the previous day's once it is after
//! `ready_after`, Beijing time), and asks again for those `not_ready` for 30 minutes. A failed
//! statement waits for an operator's re-run. At most `PER_PASS` runs a pass.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use crate::reconciler::{acquire_named_lease, release_named_lease};
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::statements as store;
use crate::usecases::statements::{Begun, begin, carry_on};

const LEASE: &str = "statements";
/// Runs a pass at most.
const PER_PASS: usize = 20;
/// How long a `not_ready` statement waits before it is asked again.
const NOT_READY_AGAIN: chrono::Duration = chrono::Duration::minutes(30);
/// How often the worker looks.
const INTERVAL: Duration = Duration::from_secs(300);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    /// Whether this instance held the lease.
    pub held_lease: bool,
    /// Runs started.
    pub runs: usize,
}

/// The days whose bills are due at `now`, newest first.
pub fn due_days(state: &AppState, now: DateTime<Utc>) -> Vec<NaiveDate> {
    let here = paybridge_core::beijing::local(now);
    let today = here.date_naive();
    let ready = here.time() >= state.config.statements.ready_after;
    (1..=i64::from(state.config.statements.lookback_days))
        .filter(|back| *back > 1 || ready)
        .map(|back| today - chrono::Duration::days(back))
        .collect()
}

/// One pass at `now`.
pub async fn run_once(state: &AppState, now: DateTime<Utc>) -> Result<PassReport, StoreError> {
    let mut report = PassReport::default();
    let holder = &state.instance_id;
    let ttl = Duration::from_secs(600);
    if !acquire_named_lease(state, LEASE, holder, now, ttl).await? {
        return Ok(report);
    }
    report.held_lease = true;
    let days = due_days(state, now);
    'tenants: for tenant in state.tenants.all() {
        for (kind, provider) in tenant.enabled_providers() {
            if !provider.has_bills() {
                continue;
            }
            for day in &days {
                if report.runs >= PER_PASS || state.workers.is_cancelled() {
                    break 'tenants;
                }
                let key = day.format("%Y-%m-%d").to_string();
                let due = match store::find(state.store.db(), &tenant.id, kind, &key).await? {
                    None => true,
                    Some(s) => s.status == "not_ready" && s.updated_at < now - NOT_READY_AGAIN,
                };
                if !due {
                    continue;
                }
                // Renewed before each run: a long pass must not outlive its lease.
                if !acquire_named_lease(state, LEASE, holder, now, ttl).await? {
                    return Ok(report);
                }
                report.runs += 1;
                let started = match begin(state, &tenant, kind, *day).await {
                    Ok(Begun::Started(row)) => row,
                    Ok(Begun::Running(_)) => continue,
                    Err(e) => {
                        tracing::warn!(tenant = %tenant.id, provider = kind, day = %key, error = %e.message, "statements: cannot start a run");
                        continue;
                    }
                };
                if let Err(e) = carry_on(state, &tenant, &started, *day).await {
                    tracing::warn!(tenant = %tenant.id, provider = kind, day = %key, error = %e.message, "statements: run failed");
                }
            }
        }
    }
    release_named_lease(state, LEASE, holder).await?;
    Ok(report)
}

/// Give this instance's lease up (a pass stopped midway at shutdown).
pub async fn release(state: &AppState) -> Result<(), StoreError> {
    release_named_lease(state, LEASE, &state.instance_id).await
}

/// Run passes until the workers stop. The first one comes an interval after the start: a
/// restart of many instances does not download every bill at once, and a start stays quick.
pub fn spawn(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut clock = state.worker_clock(INTERVAL);
        // The clock's first tick is at once.
        if !clock.tick().await {
            return;
        }
        while clock.tick().await {
            if let Err(e) = run_once(&state, Utc::now()).await {
                tracing::error!(error = %e, "statements pass failed");
            }
        }
        let _ = release_named_lease(&state, LEASE, &state.instance_id).await;
    })
}
