//! Shared server state: config, storage, the live tenant registry and the sandbox simulators.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use paybridge_admin::{StoredTenant, TenantStore};
use paybridge_core::platform::{Platforms, resolve_provider_table};
use paybridge_core::provider::{Simulator, factories};
use paybridge_core::tenant::Tenant;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;

/// Everything a handler needs.
pub struct AppState {
    /// The server config.
    pub config: Config,
    /// Orders and events.
    pub store: Store,
    /// Tenants, swapped atomically on change.
    pub tenants: TenantRegistry,
    /// Provider simulators by kind, when the sandbox is enabled.
    pub simulators: BTreeMap<&'static str, Arc<dyn Simulator>>,
    /// `/metrics`.
    pub metrics: Metrics,
    /// Order activity waiting to be written (provider calls, reconciler actions).
    pub activity: crate::store::activity::ActivityLog,
    /// Request rate limits.
    pub limits: crate::limits::Limits,
    /// Set once a shutdown began: `/readyz` answers 503 from then on.
    pub shutting_down: std::sync::atomic::AtomicBool,
    /// Cancelled when the background workers (reconciler, webhooks, config watcher) must stop.
    pub workers: tokio_util::sync::CancellationToken,
    /// This instance's name, e.g. as the holder of the reconciler's lease.
    pub instance_id: String,
    /// The tenant config store (the source of truth for tenants).
    pub tenant_store: TenantStore,
    /// The store's config version the registry was built from.
    pub loaded_version: AtomicI64,
    /// When the first retired API key's grace period ends (the registry is rebuilt then).
    pub next_key_expiry: Mutex<Option<DateTime<Utc>>>,
    /// Serialises registry rebuilds, so a slower rebuild never replaces a newer one.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// One statement run at a time in this instance holds its day's orders in memory (about
    /// 64 MiB at 10⁶ orders) and matches its bill: runs asked for together (the admin API's,
    /// the worker's) wait their turn here, `running` meanwhile.
    pub statement_runs: tokio::sync::Semaphore,
}

/// A background worker's clock: a tick every interval (a late tick delays the next one rather
/// than bursting), until the workers are told to stop.
pub struct WorkerClock {
    ticker: tokio::time::Interval,
    stop: tokio_util::sync::CancellationToken,
}

impl WorkerClock {
    /// Wait for the next tick: `true`, or `false` once the workers must stop.
    pub async fn tick(&mut self) -> bool {
        tokio::select! {
            biased;
            () = self.stop.cancelled() => false,
            _ = self.ticker.tick() => true,
        }
    }
}

impl AppState {
    /// A clock for a worker that runs every `interval` until `workers` is cancelled.
    pub fn worker_clock(&self, interval: std::time::Duration) -> WorkerClock {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        WorkerClock {
            ticker,
            stop: self.workers.clone(),
        }
    }

    /// Whether a shutdown began.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[derive(Default)]
struct TenantIndex {
    by_id: HashMap<String, Arc<Tenant>>,
    by_key_digest: HashMap<String, String>,
}

/// The tenants at one moment: see [`TenantRegistry::snapshot`].
#[derive(Clone)]
pub struct TenantSnapshot(Arc<TenantIndex>);

impl TenantSnapshot {
    /// A tenant by id.
    pub fn get(&self, id: &str) -> Option<&Tenant> {
        self.0.by_id.get(id).map(AsRef::as_ref)
    }
}

/// The live set of tenants. Readers get a consistent snapshot; a swap never blocks them, and
/// requests in flight finish on the tenant they started with.
#[derive(Default)]
pub struct TenantRegistry {
    index: ArcSwap<TenantIndex>,
}

impl TenantRegistry {
    /// Replace every tenant at once. A key digest that two tenants share authenticates neither
    /// (it would otherwise open one tenant's data to the other); it is logged for an operator.
    pub fn replace_all(&self, tenants: Vec<Tenant>) {
        let mut index = TenantIndex::default();
        let mut shared = Vec::new();
        for t in tenants {
            for digest in &t.api_key_hashes {
                if let Some(other) = index.by_key_digest.insert(digest.clone(), t.id.clone())
                    && other != t.id
                {
                    shared.push((digest.clone(), other, t.id.clone()));
                }
            }
            index.by_id.insert(t.id.clone(), Arc::new(t));
        }
        for (digest, a, b) in shared {
            index.by_key_digest.remove(&digest);
            tracing::error!(tenant_a = %a, tenant_b = %b, "two tenants share an API key; it authenticates neither");
        }
        self.index.store(Arc::new(index));
    }

    /// Every tenant.
    pub fn all(&self) -> Vec<Arc<Tenant>> {
        self.index.load().by_id.values().cloned().collect()
    }

    /// A tenant by id.
    pub fn get(&self, id: &str) -> Option<Arc<Tenant>> {
        self.index.load().by_id.get(id).cloned()
    }

    /// The tenants as they are now, to keep (e.g. inside a write job): later swaps do not
    /// change it.
    pub fn snapshot(&self) -> TenantSnapshot {
        TenantSnapshot(self.index.load_full())
    }

    /// The tenant owning this plaintext API key.
    pub fn by_api_key(&self, plaintext: &str) -> Option<Arc<Tenant>> {
        let digest = paybridge_core::tenant::api_key_digest(plaintext);
        let index = self.index.load();
        index
            .by_key_digest
            .get(&digest)
            .and_then(|id| index.by_id.get(id))
            .cloned()
    }
}

/// Build every registered provider's simulator and teach it the tenants' merchants.
pub fn build_simulators(
    config: &Config,
    stored: &[StoredTenant],
    platforms: &Platforms,
    served: &[Tenant],
) -> BTreeMap<&'static str, Arc<dyn Simulator>> {
    let mut sims = BTreeMap::new();
    if !config.sandbox.enabled {
        return sims;
    }
    for f in factories() {
        if let Some(make) = f.simulator {
            sims.insert(f.kind, make(config.outbound_timeout()));
        }
    }
    register_merchants(&sims, stored, platforms, served, &config.sandbox_prefix());
    sims
}

/// Teach the simulators the merchants of the served tenants that use them (again, after a config
/// change), from the stored documents: the registry keeps no provider table. Only provider
/// tables whose every endpoint points at this server's sandbox are given to a simulator: a
/// production tenant's credentials never reach one. A table that names a platform is given
/// resolved: the platform's section with the tenant's identity.
pub fn register_merchants(
    sims: &BTreeMap<&'static str, Arc<dyn Simulator>>,
    stored: &[StoredTenant],
    platforms: &Platforms,
    served: &[Tenant],
    sandbox_prefix: &str,
) {
    for (kind, sim) in sims {
        for s in stored {
            if !served.iter().any(|t| t.id == s.id) {
                continue;
            }
            let Some(table) = s
                .document
                .get("providers")
                .and_then(|p| p.get(*kind))
                .and_then(toml::Value::as_table)
            else {
                continue;
            };
            let Ok((mut table, base_dir)) =
                resolve_provider_table(kind, table, &s.base_dir, platforms)
            else {
                continue;
            };
            table.remove("enabled");
            if paybridge_admin::secrets::is_sandbox_provider(&table, sandbox_prefix) {
                sim.register_merchant(&table, &base_dir);
            }
            paybridge_core::tenant::wipe_table(&mut table);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paybridge_core::tenant::{hash_api_key, parse_tenant};

    fn tenant(id: &str, keys: &[&str]) -> Tenant {
        let keys: Vec<String> = keys
            .iter()
            .map(|k| format!("\"{}\"", hash_api_key(k)))
            .collect();
        let doc = format!("id = \"{id}\"\napi_keys = [{}]\n", keys.join(", "));
        parse_tenant(
            &doc,
            std::path::Path::new("."),
            std::time::Duration::from_secs(1),
        )
        .expect("valid")
    }

    #[test]
    fn a_key_shared_by_two_tenants_authenticates_neither() {
        let registry = TenantRegistry::default();
        registry.replace_all(vec![
            tenant("a", &["key-a", "shared"]),
            tenant("b", &["key-b", "shared"]),
        ]);
        assert_eq!(
            registry.by_api_key("key-a").map(|t| t.id.clone()),
            Some("a".to_owned())
        );
        assert_eq!(
            registry.by_api_key("key-b").map(|t| t.id.clone()),
            Some("b".to_owned())
        );
        assert!(registry.by_api_key("shared").is_none());
    }
}
