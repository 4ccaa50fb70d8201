//! The order activity the console's timeline shows beside the tables that already record what
//! happened (orders, notification attempts, refunds, events, webhook attempts): every provider
//! call made about an order, and what the reconciler did with it.
//!
//! Recording one must not cost a request a commit of its own: entries wait in a bounded buffer
//! and are written in one batch every second (and before a timeline is read, and at shutdown).
//! They are diagnostics, not money: a crash loses at most the last second's entries, and a full
//! buffer drops new ones and counts them (`paybridge_activity_dropped_total`).

use std::sync::Arc;
use std::time::Duration;

use paybridge_core::provider::{PaymentProvider, ProviderError};

use crate::metrics::CallLabels;
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::activity::{NewActivity, insert_all};

/// How often the buffer is written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Record something that happened to an order.
fn record(state: &AppState, entry: NewActivity) {
    if !state.activity.push(entry) {
        state.metrics.activity_dropped();
    }
}

/// Record what the reconciler did with an order (`query`, `close_expired`, `refund_query`).
pub fn reconciled(state: &AppState, tenant_id: &str, out_trade_no: &str, action: &'static str) {
    record(
        state,
        NewActivity {
            tenant_id: tenant_id.to_owned(),
            out_trade_no: out_trade_no.to_owned(),
            kind: "reconciler",
            name: action,
            outcome: None,
            latency_ms: None,
            error: None,
            at: crate::store::now(),
        },
    );
}

/// The order a provider call is about.
#[derive(Debug, Clone, Copy)]
pub struct About<'a> {
    /// The order's tenant.
    pub tenant_id: &'a str,
    /// The order.
    pub out_trade_no: &'a str,
}

/// Make a provider call, timed: the one place where every call's duration and outcome go to
/// `paybridge_provider_call_duration_seconds`, and, for a call about an order, into its
/// timeline. `endpoint` is the provider operation (`create`, `query`, `close`, `refund`,
/// `refund_query`, `login`).
pub async fn call<T>(
    state: &AppState,
    provider: &dyn PaymentProvider,
    endpoint: &'static str,
    about: Option<About<'_>>,
    call: impl Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    call_if(state, provider, endpoint, about, call, |_| true).await
}

/// [`call`], put in the order's timeline only when `remote` says that a success went to the
/// provider (a failure always is).
pub async fn call_if<T>(
    state: &AppState,
    provider: &dyn PaymentProvider,
    endpoint: &'static str,
    about: Option<About<'_>>,
    call: impl Future<Output = Result<T, ProviderError>>,
    remote: impl FnOnce(&T) -> bool,
) -> Result<T, ProviderError> {
    let (started, at) = (std::time::Instant::now(), crate::store::now());
    let result = call.await;
    let took = started.elapsed();
    let outcome = match &result {
        Ok(_) => "ok",
        Err(ProviderError::Timeout) => "timeout",
        Err(_) => "error",
    };
    state.metrics.provider_call(
        &CallLabels {
            provider: provider.kind(),
            endpoint,
            outcome,
        },
        took,
    );
    let timeline = match &result {
        Ok(value) => remote(value),
        Err(_) => true,
    };
    if let Some(about) = about.filter(|_| timeline) {
        record(
            state,
            NewActivity {
                tenant_id: about.tenant_id.to_owned(),
                out_trade_no: about.out_trade_no.to_owned(),
                kind: "provider_call",
                name: endpoint,
                outcome: Some(outcome),
                latency_ms: Some(i64::try_from(took.as_millis()).unwrap_or(i64::MAX)),
                // The error's code only: its message may quote the provider's answer.
                error: result.as_ref().err().map(ProviderError::code),
                at,
            },
        );
    }
    result
}

/// Write what the buffer holds, in one write.
pub async fn flush(state: &AppState) -> Result<(), StoreError> {
    let batch = state.activity.take();
    if batch.is_empty() {
        return Ok(());
    }
    state
        .store
        .write(move |txn| Box::pin(async move { insert_all(txn, batch).await }))
        .await
}

/// Write the buffer every second until the workers stop, then once more.
pub fn spawn(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut clock = state.worker_clock(FLUSH_EVERY);
        while clock.tick().await {
            if let Err(e) = flush(&state).await {
                tracing::warn!(error = %e, "order activity: cannot write a batch");
            }
        }
        if let Err(e) = flush(&state).await {
            tracing::warn!(error = %e, "order activity: cannot write the last batch");
        }
    })
}
