//! `alipay-create`: `POST /v1/orders` for Alipay app pay, a new `out_trade_no` every time. Each
//! create signs an orderString with RSA-2048 and makes no outbound call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::Ctx;
use crate::gateway::{API_KEY, Gateway};
use crate::load::{self, PreparedRequest, Workload};
use crate::report::ScenarioResult;

pub const NAME: &str = "alipay-create";

struct AlipayCreate {
    prefix: String,
    counter: AtomicU64,
    authorization: String,
}

impl Workload for AlipayCreate {
    fn next_request(&self) -> Option<PreparedRequest> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::json!({
            "provider": "alipay_app",
            "out_trade_no": format!("{}{n:010}", self.prefix),
            "amount": 1990,
            "description": "bench",
        });
        Some(PreparedRequest {
            path: "/v1/orders".to_owned(),
            body: Bytes::from(body.to_string()),
            tag: usize::try_from(n).unwrap_or(usize::MAX),
            headers: Vec::new(),
        })
    }

    fn is_success(&self, status: u16, _body: &[u8]) -> bool {
        status == 201
    }

    fn authorization(&self) -> Option<&str> {
        Some(&self.authorization)
    }
}

pub async fn run(ctx: &Ctx<'_>, gateway: &Gateway) -> anyhow::Result<ScenarioResult> {
    let workload = Arc::new(AlipayCreate {
        prefix: format!("BA{:06}", ctx.run_tag),
        counter: AtomicU64::new(0),
        authorization: format!("Bearer {API_KEY}"),
    });
    println!(
        "  {NAME}: {} connections, warm-up {} s, measuring {} s",
        ctx.cli.connections, ctx.cli.warmup, ctx.cli.duration
    );
    let result = load::run(gateway.addr, workload, ctx.load_config(gateway)).await?;
    let mut scenario = ScenarioResult::measured(ctx, NAME, &result, gateway)?;
    scenario.set_ratio(ctx.limits, crate::limits::Limit::RsaSigns);
    Ok(scenario)
}
