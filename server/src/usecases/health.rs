//! Readiness: whether this instance should get traffic.

use std::time::Duration;

use crate::state::AppState;

/// How long the database may take to answer a readiness ping.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// `Ok` when the database answers within 1 s and the instance is not shutting down; otherwise
/// why not, for the answer's body (no internals: the detail is logged).
pub async fn ready(state: &AppState) -> Result<(), &'static str> {
    if state.is_shutting_down() {
        return Err("shutting down");
    }
    match tokio::time::timeout(PING_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the database failed a ping");
            Err("database unavailable")
        }
        Err(_) => {
            tracing::warn!("readiness: the database did not answer a ping within 1 s");
            Err("database unavailable")
        }
    }
}
