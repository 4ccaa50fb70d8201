//! Shared server state: config, storage, the live tenant registry and the sandbox simulators.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use paybridge_core::provider::{Simulator, factories};
use paybridge_core::tenant::{Tenant, parse_tenant};
use sha2::{Digest, Sha256};

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
    /// Counters for `/metrics`.
    pub metrics: Metrics,
}

#[derive(Default)]
struct TenantIndex {
    by_id: HashMap<String, Arc<Tenant>>,
    by_key_digest: HashMap<String, String>,
}

/// The live set of tenants. Readers get a consistent snapshot; a swap never blocks them, and
/// requests in flight finish on the tenant they started with.
#[derive(Default)]
pub struct TenantRegistry {
    index: ArcSwap<TenantIndex>,
}

impl TenantRegistry {
    /// Replace every tenant at once.
    pub fn replace_all(&self, tenants: Vec<Tenant>) {
        let mut index = TenantIndex::default();
        for t in tenants {
            for digest in &t.api_key_hashes {
                index.by_key_digest.insert(digest.clone(), t.id.clone());
            }
            index.by_id.insert(t.id.clone(), Arc::new(t));
        }
        self.index.store(Arc::new(index));
    }

    /// A tenant by id.
    pub fn get(&self, id: &str) -> Option<Arc<Tenant>> {
        self.index.load().by_id.get(id).cloned()
    }

    /// The tenant owning this plaintext API key.
    pub fn by_api_key(&self, plaintext: &str) -> Option<Arc<Tenant>> {
        let digest = hex::encode(Sha256::digest(plaintext.as_bytes()));
        let index = self.index.load();
        index
            .by_key_digest
            .get(&digest)
            .and_then(|id| index.by_id.get(id))
            .cloned()
    }

    /// Every tenant.
    pub fn all(&self) -> Vec<Arc<Tenant>> {
        let mut all: Vec<_> = self.index.load().by_id.values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }
}

/// Read and validate every `*.toml` in the tenants folder. Every bad file is reported with its
/// path and every bad field.
pub fn load_tenant_dir(dir: &Path, config: &Config) -> Result<Vec<Tenant>, String> {
    let mut tenants: Vec<Tenant> = Vec::new();
    let mut problems = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read tenants dir {}: {e}", dir.display())),
    };
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let base = path.parent().unwrap_or(dir);
        match parse_tenant(&text, base, config.outbound_timeout()) {
            Ok(t) if tenants.iter().any(|x| x.id == t.id) => {
                problems.push(format!(
                    "{}: duplicate tenant id {:?}",
                    path.display(),
                    t.id
                ));
            }
            Ok(t) => tenants.push(t),
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    if problems.is_empty() {
        Ok(tenants)
    } else {
        Err(problems.join("\n"))
    }
}

/// Build every registered provider's simulator and teach it the tenants' merchants.
pub fn build_simulators(
    config: &Config,
    tenants: &[Tenant],
) -> BTreeMap<&'static str, Arc<dyn Simulator>> {
    let mut sims = BTreeMap::new();
    if !config.sandbox.enabled {
        return sims;
    }
    for f in factories() {
        if let Some(make) = f.simulator {
            let sim = make(config.outbound_timeout());
            for t in tenants {
                if let Some(p) = t.providers.get(f.kind) {
                    sim.register_merchant(&p.table);
                }
            }
            sims.insert(f.kind, sim);
        }
    }
    sims
}
