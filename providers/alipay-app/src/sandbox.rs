//! The Alipay simulator (being written).
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use paybridge_core::provider::{SimRequest, SimResponse, Simulator};

struct Stub;

#[async_trait]
impl Simulator for Stub {
    fn register_merchant(&self, _: &toml::Table) {}
    async fn handle(&self, _: SimRequest) -> SimResponse {
        SimResponse {
            status: 501,
            content_type: "text/plain",
            body: b"not yet".to_vec(),
        }
    }
}

/// Build the simulator.
pub fn simulator(timeout: Duration) -> Arc<dyn Simulator> {
    let _ = timeout;
    Arc::new(Stub)
}
