//! `wechat-notify`: pending WeChat orders are created through the API first (not measured), then
//! each gets one genuinely signed, distinct payment notification (WeChat Pay API v2, as the
//! sandbox simulator sends it) at `POST /notify/{tenant}/wechat_miniprogram`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use chrono::Utc;
use hyper::Method;
use paybridge_wechat::SignType;
use rand::Rng;
use rand::distr::Alphanumeric;
use secrecy::SecretString;

use crate::Ctx;
use crate::gateway::{API_KEY, DemoTenant, Gateway};
use crate::load::{self, LoadConfig, PreparedRequest, Workload, f64_of};
use crate::report::ScenarioResult;

pub const NAME: &str = "wechat-notify";
/// The success acknowledgement's marker (`paybridge_wechat::notify::ACK_SUCCESS`).
const ACK_MARKER: &[u8] = b"<return_code><![CDATA[SUCCESS]]>";
/// Orders checked after the run.
const VERIFY_SAMPLE: usize = 100;

fn out_trade_no(run_tag: u32, i: usize) -> String {
    format!("WN{run_tag:06}{i:09}")
}

fn amount(i: usize) -> i64 {
    i64::try_from(100 + i % 900).unwrap_or(100)
}

/// Creating the pending orders.
struct CreateOrders {
    run_tag: u32,
    count: usize,
    next: AtomicUsize,
    openid: String,
    authorization: String,
}

impl Workload for CreateOrders {
    fn next_request(&self) -> Option<PreparedRequest> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if i >= self.count {
            return None;
        }
        let body = serde_json::json!({
            "provider": "wechat_miniprogram",
            "out_trade_no": out_trade_no(self.run_tag, i),
            "amount": amount(i),
            "description": "bench",
            "payer": {"openid": self.openid},
        });
        Some(PreparedRequest {
            path: "/v1/orders".to_owned(),
            body: Bytes::from(body.to_string()),
            tag: i,
        })
    }

    fn is_success(&self, status: u16, _body: &[u8]) -> bool {
        status == 201
    }

    fn authorization(&self) -> Option<&str> {
        Some(&self.authorization)
    }
}

/// The pre-built notifications, each sent once.
struct Notifications {
    path: String,
    bodies: Vec<Bytes>,
    next: AtomicUsize,
}

impl Workload for Notifications {
    fn next_request(&self) -> Option<PreparedRequest> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let body = self.bodies.get(i)?.clone();
        Some(PreparedRequest {
            path: self.path.clone(),
            body,
            tag: i,
        })
    }

    fn is_success(&self, status: u16, body: &[u8]) -> bool {
        status == 200 && body.windows(ACK_MARKER.len()).any(|w| w == ACK_MARKER)
    }

    fn content_type(&self) -> &'static str {
        "text/xml"
    }

    fn authorization(&self) -> Option<&str> {
        None
    }
}

fn nonce() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// What every notification of the run shares.
struct NotificationSigner<'a> {
    tenant: &'a DemoTenant,
    sign_type: SignType,
    api_key: SecretString,
    openid: &'a str,
    time_end: String,
}

impl NotificationSigner<'_> {
    /// The signed notification of a paid order, with the fields WeChat sends (and the simulator
    /// builds): no `sign_type` field, signed with the tenant's type, which the order recorded.
    fn notification(
        &self,
        order: &str,
        total_fee: i64,
        transaction_id: &str,
    ) -> anyhow::Result<Bytes> {
        let total_fee = total_fee.to_string();
        let mut fields: BTreeMap<String, String> = [
            ("return_code", "SUCCESS"),
            ("return_msg", "OK"),
            ("appid", self.tenant.appid.as_str()),
            ("mch_id", self.tenant.mch_id.as_str()),
            ("result_code", "SUCCESS"),
            ("openid", self.openid),
            ("is_subscribe", "N"),
            ("trade_type", "JSAPI"),
            ("bank_type", "OTHERS"),
            ("total_fee", total_fee.as_str()),
            ("cash_fee", total_fee.as_str()),
            ("fee_type", "CNY"),
            ("transaction_id", transaction_id),
            ("out_trade_no", order),
            ("time_end", self.time_end.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        fields.insert("nonce_str".to_owned(), nonce());
        let sign = paybridge_wechat::sign::sign(&fields, self.sign_type, &self.api_key);
        fields.insert("sign".to_owned(), sign);
        let xml = paybridge_wechat::xml::encode("xml", &fields)
            .map_err(|e| anyhow!("encoding a notification: {e}"))?;
        Ok(Bytes::from(xml))
    }
}

/// The orders and their signed notifications, made before measuring.
pub struct Prepared {
    orders: Vec<(String, String)>,
    bodies: Vec<bytes::Bytes>,
    notes: Vec<String>,
}

/// Set-up: log in, create the pending orders through the API, and sign one notification each.
pub async fn prepare(ctx: &Ctx<'_>, gateway: &Gateway) -> anyhow::Result<Prepared> {
    let tenant = &ctx.env.tenant;
    let sign_type = SignType::parse(&tenant.sign_type)
        .ok_or_else(|| anyhow!("demo tenant: unknown sign_type {:?}", tenant.sign_type))?;

    // The payer: one openid from the sandbox's login.
    let code = format!("bench-{}-{}", ctx.run_tag, ctx.seed);
    let (status, body) = load::one_request(
        gateway.addr,
        Method::POST,
        "/v1/wechat_miniprogram/sessions",
        Some(serde_json::json!({ "code": code }).to_string()),
        Some(API_KEY),
        Duration::from_secs(10),
    )
    .await?;
    if status != 200 {
        bail!(
            "POST /v1/wechat_miniprogram/sessions: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let session: serde_json::Value = serde_json::from_slice(&body)?;
    let openid = session
        .get("openid")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| anyhow!("the session answer has no openid"))?
        .to_owned();

    // Set-up (not measured): the pending orders, through the API.
    let count = ctx.cli.notify_orders;
    println!(
        "  {NAME} set-up: creating {count} pending WeChat orders ({} connections)",
        ctx.cli.connections
    );
    let setup = load::run(
        gateway.addr,
        Arc::new(CreateOrders {
            run_tag: ctx.run_tag,
            count,
            next: AtomicUsize::new(0),
            openid: openid.clone(),
            authorization: format!("Bearer {API_KEY}"),
        }),
        LoadConfig {
            warmup: Duration::ZERO,
            duration: Duration::from_secs(ctx.cli.setup_timeout),
            ..ctx.load_config(gateway)
        },
    )
    .await?;
    let mut created = setup.success_tags.clone();
    created.sort_unstable();
    let setup_line = format!(
        "set-up: {} of {count} orders created in {:.1} s ({:.0} orders/s){}",
        created.len(),
        setup.window.as_secs_f64(),
        f64_of(u64::try_from(created.len())?) / setup.window.as_secs_f64().max(1e-9),
        if setup.exhausted {
            String::new()
        } else {
            format!(" (stopped at --setup-timeout {} s)", ctx.cli.setup_timeout)
        }
    );
    println!("  {setup_line}");
    if setup.error_count() > 0 {
        println!("  set-up errors: {:?}", setup.errors);
        for example in &setup.error_examples {
            println!("    {example}");
        }
    }
    if created.is_empty() {
        bail!("no WeChat order could be created");
    }

    // The notifications, built and signed before measuring.
    let built = Instant::now();
    let signer = NotificationSigner {
        tenant,
        sign_type,
        api_key: SecretString::from(tenant.api_key.clone()),
        openid: &openid,
        time_end: paybridge_core::beijing::format_compact(Utc::now()),
    };
    let date = Utc::now().format("%Y%m%d").to_string();
    let mut orders = Vec::with_capacity(created.len());
    let mut bodies = Vec::with_capacity(created.len());
    for &i in &created {
        let order = out_trade_no(ctx.run_tag, i);
        let transaction_id = format!("4200{date}{:06}{i:010}", ctx.run_tag);
        bodies.push(signer.notification(&order, amount(i), &transaction_id)?);
        orders.push((order, transaction_id));
    }
    let build_line = format!(
        "built and signed {} notifications ({sign_type}) in {:.2} s",
        bodies.len(),
        built.elapsed().as_secs_f64()
    );
    println!("  {build_line}");
    Ok(Prepared {
        orders,
        bodies,
        notes: vec![setup_line, build_line],
    })
}

/// The measured run: every prepared notification, then a check of a sample.
pub async fn measure(
    ctx: &Ctx<'_>,
    gateway: &Gateway,
    prepared: Prepared,
) -> anyhow::Result<ScenarioResult> {
    let tenant = &ctx.env.tenant;
    let Prepared {
        orders,
        bodies,
        notes,
    } = prepared;
    println!(
        "  {NAME}: {} connections, warm-up {} s, measuring {} s or until the orders run out",
        ctx.cli.connections, ctx.cli.warmup, ctx.cli.duration
    );
    let workload = Arc::new(Notifications {
        path: format!("/notify/{}/wechat_miniprogram", tenant.id),
        bodies,
        next: AtomicUsize::new(0),
    });
    let result = load::run(gateway.addr, workload, ctx.load_config(gateway)).await?;

    let verify_line = verify_sample(gateway, &orders, &result.success_tags).await?;
    println!("  {verify_line}");

    let mut scenario = ScenarioResult::measured(ctx, NAME, &result, gateway)?;
    scenario.set_ratio(
        ctx.limits.sqlite_commits_per_second(),
        "SQLite serial FULL commits/s",
    );
    if result.exhausted {
        scenario
            .notes
            .push("the orders ran out before the duration ended".to_owned());
    }
    scenario.notes.extend(notes);
    scenario.notes.push(verify_line);
    Ok(scenario)
}

/// `GET /v1/orders/{out_trade_no}` on about 100 acknowledged orders, spread over the run: each
/// must be `paid` with the notification's transaction id.
async fn verify_sample(
    gateway: &Gateway,
    orders: &[(String, String)],
    acknowledged: &[usize],
) -> anyhow::Result<String> {
    let mut acked = acknowledged.to_vec();
    acked.sort_unstable();
    if acked.is_empty() {
        return Ok("check: no acknowledged notification to verify".to_owned());
    }
    let step = acked.len().div_ceil(VERIFY_SAMPLE).max(1);
    let (mut checked, mut paid) = (0usize, 0usize);
    let mut problems = Vec::new();
    for &i in acked.iter().step_by(step) {
        let (order, transaction_id) = orders
            .get(i)
            .ok_or_else(|| anyhow!("notification {i} has no order"))?;
        let (status, body) = load::one_request(
            gateway.addr,
            Method::GET,
            &format!("/v1/orders/{order}"),
            None,
            Some(API_KEY),
            Duration::from_secs(10),
        )
        .await
        .with_context(|| format!("GET /v1/orders/{order}"))?;
        checked += 1;
        let view: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let state = view.get("status").and_then(serde_json::Value::as_str);
        let trade_no = view
            .get("provider_trade_no")
            .and_then(serde_json::Value::as_str);
        if status == 200 && state == Some("paid") && trade_no == Some(transaction_id.as_str()) {
            paid += 1;
        } else if problems.len() < 3 {
            problems.push(format!(
                "{order}: HTTP {status} status {state:?} provider_trade_no {trade_no:?}"
            ));
        }
    }
    let mut line = format!(
        "check: {paid}/{checked} sampled acknowledged orders are paid with the notified transaction_id"
    );
    if !problems.is_empty() {
        line.push_str(&format!(" — NOT PAID: {}", problems.join("; ")));
    }
    Ok(line)
}
