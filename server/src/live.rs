//! Tenants as live configuration. The admin store in the database is the source of truth; this
//! instance rebuilds its registry at once after a change made through its own admin API, when the
//! store's config version changes (polled every second: other instances, the CLI), and when a
//! rotated API key's grace period ends. Requests in flight finish on the tenant they started with.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use paybridge_admin::StoredTenant;
use paybridge_admin::secrets::{is_sandbox_document, with_platform_endpoints};
use paybridge_core::platform::Platforms;
use paybridge_core::tenant::Tenant;

use crate::config::Config;
use crate::state::{AppState, register_merchants};

/// How often other instances' changes are looked for.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Build the tenants to serve. A stored tenant that no longer builds (e.g. a certificate file
/// went missing) is reported and, when `previous` has it, kept at its last good version.
pub fn build_all(
    stored: &[StoredTenant],
    platforms: &Platforms,
    config: &Config,
    encrypts: bool,
    previous: impl Fn(&str) -> Option<Tenant>,
) -> (Vec<Tenant>, Vec<String>) {
    let prefix = config.sandbox_prefix();
    let now = Utc::now();
    let mut tenants = Vec::new();
    let mut problems = Vec::new();
    for s in stored {
        if !encrypts
            && !is_sandbox_document(&with_platform_endpoints(&s.document, platforms), &prefix)
        {
            problems.push(format!(
                "tenant {:?}: not a sandbox tenant and no master key is set; it is not served",
                s.id
            ));
            continue;
        }
        match s.build_for_serving(config.outbound_timeout(), now, platforms) {
            Ok(t) => tenants.push(t),
            Err(e) => {
                problems.push(format!("tenant {:?}: {e}", s.id));
                tenants.extend(previous(&s.id));
            }
        }
    }
    (tenants, problems)
}

/// Rebuild the registry from the store now.
pub async fn reload(state: &AppState) -> Result<(), String> {
    // One rebuild at a time: each reads the store after the previous one finished, so the
    // registry only ever moves forward.
    let _one_at_a_time = state.reload_lock.lock().await;
    let version = state
        .tenant_store
        .config_version()
        .await
        .map_err(|e| e.to_string())?;
    let mut stored = state
        .tenant_store
        .load_all()
        .await
        .map_err(|e| e.to_string())?;
    let (mut platforms, mut problems) = state
        .tenant_store
        .platform_book()
        .await
        .map_err(|e| e.to_string())?;
    let (tenants, tenant_problems) = build_all(
        &stored,
        &platforms,
        &state.config,
        state.tenant_store.encrypts(),
        |id| state.tenants.get(id).map(|t| (*t).clone()),
    );
    problems.extend(tenant_problems);
    for p in &problems {
        tracing::error!(problem = %p, "tenant config not applied");
    }
    register_merchants(
        &state.simulators,
        &stored,
        &platforms,
        &tenants,
        &state.config.sandbox_prefix(),
    );
    if let Ok(mut next) = state.next_key_expiry.lock() {
        *next = stored
            .iter()
            .filter_map(StoredTenant::next_key_expiry)
            .filter(|at| *at > Utc::now())
            .min();
    }
    // Built and registered: the plaintext documents go.
    stored.iter_mut().for_each(StoredTenant::wipe);
    drop(stored);
    platforms.wipe();
    let count = tenants.len();
    state.tenants.replace_all(tenants);
    let before = state.loaded_version.swap(version, Ordering::SeqCst);
    if before != version {
        tracing::info!(version, tenants = count, "tenant config reloaded");
    }
    Ok(())
}

/// Watch the store and reload on change. One per process.
pub fn spawn_watch(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut clock = state.worker_clock(POLL_INTERVAL);
        // The first tick is at once: the registry was just built, skip it.
        clock.tick().await;
        while clock.tick().await {
            let key_expired = state
                .next_key_expiry
                .lock()
                .ok()
                .and_then(|next| *next)
                .is_some_and(|at| at <= Utc::now());
            let changed = match state.tenant_store.config_version().await {
                Ok(v) => v != state.loaded_version.load(Ordering::SeqCst),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the config version");
                    false
                }
            };
            if (changed || key_expired)
                && let Err(e) = reload(&state).await
            {
                tracing::error!(error = %e, "tenant config reload failed");
            }
        }
    })
}
