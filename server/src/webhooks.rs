//! Merchant webhooks: the delivery worker.
//!
//! Every outbox event gets a delivery row in the transaction that writes it. Each pass claims the
//! due deliveries under a short lease (so several instances never send the same attempt), sends
//! them concurrently with `Paybridge-Signature`, and records each attempt. A 2xx is a delivery;
//! anything else, a timeout or a connection error is a failed attempt, retried on
//! [`RETRY_SCHEDULE`]. Delivery is at least once: a crash between sending and recording means the
//! lease expires and the event is sent again, so receivers deduplicate by event id.

pub mod signature;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use paybridge_core::tenant::Tenant;
use serde::Serialize;

use crate::db::entities::outbox_event;
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::deliveries::{self, AttemptRecord, Claim, Settle};

/// The wait before each retry: the first comes 20 s after the first failure, the last about 23 h
/// 42 min after it; after the 10th failed attempt in a row the delivery is `failed`.
pub const RETRY_SCHEDULE: [Duration; 9] = [
    Duration::from_secs(20),
    Duration::from_secs(2 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(2 * 60 * 60),
    Duration::from_secs(4 * 60 * 60),
    Duration::from_secs(8 * 60 * 60),
    Duration::from_secs(8 * 60 * 60),
];

/// A claim outlives the slowest possible send by this much before another pass may take it.
const LEASE_MARGIN: Duration = Duration::from_secs(60);

/// At most this much of a failing endpoint's answer is kept with the attempt.
const ERROR_BODY_CHARS: usize = 200;

/// The wait after the `failures`-th failed attempt in a row (1-based), or None: give up.
pub fn retry_delay(failures: usize) -> Option<Duration> {
    failures
        .checked_sub(1)
        .and_then(|i| RETRY_SCHEDULE.get(i))
        .copied()
}

/// The body POSTed to the tenant's `webhook_url`.
#[derive(Debug, Serialize)]
pub struct WebhookBody<'a> {
    /// The event id (the same on every attempt and redelivery).
    pub id: &'a str,
    /// E.g. `order.paid`.
    #[serde(rename = "type")]
    pub event_type: &'a str,
    /// When the event happened.
    pub created_at: DateTime<Utc>,
    /// The order or refund JSON after the change.
    pub data: serde_json::Value,
}

/// The exact bytes sent for an event.
pub fn body_of(event: &outbox_event::Model) -> Result<Vec<u8>, String> {
    let data: serde_json::Value = serde_json::from_str(&event.data)
        .map_err(|e| format!("stored event data is not JSON: {e}"))?;
    serde_json::to_vec(&WebhookBody {
        id: &event.id,
        event_type: &event.event_type,
        created_at: event.created_at,
        data,
    })
    .map_err(|e| format!("cannot serialise the event: {e}"))
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Due deliveries this pass took: leased to send, or settled `not_configured`.
    pub claimed: usize,
    /// Attempts answered with a 2xx.
    pub delivered: usize,
    /// Attempts that failed (scheduled again, or given up).
    pub failed: usize,
    /// Deliveries given up after the last scheduled attempt.
    pub gave_up: usize,
    /// Events of tenants without a webhook endpoint (recorded, not sent).
    pub not_configured: usize,
}

/// Why a pass could not run.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The HTTP client could not be built.
    #[error("webhook HTTP client: {0}")]
    Client(String),
}

impl From<sea_orm::DbErr> for DeliveryError {
    fn from(e: sea_orm::DbErr) -> Self {
        DeliveryError::Store(StoreError::Db(e))
    }
}

/// Resolves names to their public addresses only: a name that resolves into the platform's own
/// network (now, whatever it resolved to when the tenant was saved) is not connected to.
struct PublicAddresses;

impl reqwest::dns::Resolve for PublicAddresses {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<std::net::SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| paybridge_core::net::non_public(a.ip()).is_none())
                .collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves only to non-public addresses; webhooks into the platform's network are refused ([webhooks] allow_private_targets)"
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// The webhook client: public targets only, unless `[webhooks] allow_private_targets`.
fn client(allow_private: bool) -> Result<reqwest::Client, DeliveryError> {
    static GUARDED: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    static OPEN: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    let cell = if allow_private { &OPEN } else { &GUARDED };
    cell.get_or_init(|| {
        // Redirects are not followed: a webhook endpoint answers where it was configured, and
        // a redirected POST would lose its body or be resent elsewhere (or inside).
        let builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("paybridge-webhooks/", env!("CARGO_PKG_VERSION")));
        // Guarded: no proxy from the environment either, since a proxy would resolve and
        // connect for us, around the check.
        let builder = if allow_private {
            builder
        } else {
            builder.no_proxy().dns_resolver(Arc::new(PublicAddresses))
        };
        builder.build().map_err(|e| e.to_string())
    })
    .clone()
    .map_err(DeliveryError::Client)
}

/// The tenant's endpoint and secret, borrowed (the claim asks for every due delivery, and copies
/// nothing), or what is missing.
fn endpoint(tenant: Option<&Tenant>) -> Result<(&str, &[u8]), &'static str> {
    let tenant = tenant.ok_or("the tenant no longer exists")?;
    let url = tenant
        .webhook_url
        .as_deref()
        .ok_or("the tenant has no webhook_url")?;
    let secret = tenant
        .webhook_secret_bytes()
        .filter(|s| !s.is_empty())
        .ok_or("the tenant has a webhook_url but no webhook_secret to sign with")?;
    Ok((url, secret))
}

/// One signed request, ready to send.
struct Outgoing {
    url: String,
    body: Vec<u8>,
    signature: String,
    event_id: String,
    event_type: String,
}

/// What the endpoint did.
struct Sent {
    at: DateTime<Utc>,
    duration: Duration,
    status_code: Option<u16>,
    error: Option<String>,
}

/// The message of an error and its causes, e.g. `error sending request: connection refused`.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !message.contains(&part) {
            message.push_str(": ");
            message.push_str(&part);
        }
        source = s.source();
    }
    message
}

async fn send(
    client: reqwest::Client,
    out: Outgoing,
    timeout: Duration,
    at: DateTime<Utc>,
    allow_private: bool,
) -> Sent {
    let started = Instant::now();
    // An IP literal never reaches the resolver: it is judged here.
    if !allow_private && let Some(why) = paybridge_core::net::url_target_problem(&out.url) {
        return Sent {
            at,
            duration: started.elapsed(),
            status_code: None,
            error: Some(format!(
                "not sent: {why}; webhooks into the platform's network are refused ([webhooks] allow_private_targets)"
            )),
        };
    }
    let result = client
        .post(&out.url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(signature::SIGNATURE_HEADER, out.signature)
        .header(signature::EVENT_ID_HEADER, out.event_id)
        .header(signature::EVENT_TYPE_HEADER, out.event_type)
        .body(out.body)
        .send()
        .await;
    let (status_code, error) = match result {
        Ok(response) if response.status().is_success() => (Some(response.status().as_u16()), None),
        Ok(mut response) => {
            let status = response.status();
            let mut error = format!("HTTP {status}");
            if status.is_redirection() {
                error.push_str(" (redirects are not followed)");
            }
            // The endpoint's own words help its owner; one chunk is enough.
            if let Ok(Some(chunk)) = response.chunk().await {
                let text: String = String::from_utf8_lossy(&chunk)
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(ERROR_BODY_CHARS)
                    .collect();
                let text = text.trim();
                if !text.is_empty() {
                    error.push_str(": ");
                    error.push_str(text);
                }
            }
            (Some(status.as_u16()), Some(error))
        }
        // The URL may carry the merchant's own token; it is not repeated in the error.
        Err(e) if e.is_timeout() => (
            None,
            Some(format!("timed out after {} s", timeout.as_secs())),
        ),
        Err(e) => (None, Some(error_chain(&e.without_url()))),
    };
    Sent {
        at,
        duration: started.elapsed(),
        status_code,
        error,
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Claim the deliveries due at `now` and send them. Tests drive passes with a chosen clock; the
/// worker calls it with the wall clock.
pub async fn deliver_due(
    state: &AppState,
    now: DateTime<Utc>,
) -> Result<DeliveryReport, DeliveryError> {
    let config = &state.config.webhooks;
    let timeout = Duration::from_secs(config.timeout_seconds.max(1));
    let allow_private = config.allow_private_targets;
    let client = client(allow_private)?;
    let token = uuid::Uuid::new_v4().to_string();
    let lease_until = now + chrono_duration(timeout + LEASE_MARGIN);
    let limit = config.batch_size.max(1);
    let tenants = state.tenants.snapshot();
    let pass = state
        .store
        .write(move |txn| {
            Box::pin(async move {
                let unsendable = move |tenant_id: &str| endpoint(tenants.get(tenant_id)).err();
                deliveries::claim_due(txn, now, lease_until, limit, &token, &unsendable).await
            })
        })
        .await?;
    let claims = pass.claims;
    let mut report = DeliveryReport {
        claimed: claims.len() + pass.not_configured,
        not_configured: pass.not_configured,
        ..DeliveryReport::default()
    };
    let started = Instant::now();
    let mut sending = tokio::task::JoinSet::new();
    let mut in_flight: HashMap<tokio::task::Id, Claim> = HashMap::new();
    let mut unsent: Vec<(Claim, Settle)> = Vec::new();
    for claim in claims {
        let tenant = state.tenants.get(&claim.event.tenant_id);
        let (url, secret) = match endpoint(tenant.as_deref()) {
            Ok(e) => e,
            Err(missing) => {
                report.not_configured += 1;
                unsent.push((claim, Settle::NotConfigured(missing.to_owned())));
                continue;
            }
        };
        let body = match body_of(&claim.event) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(event_id = %claim.event.id, error = %e, "webhook event cannot be sent");
                report.gave_up += 1;
                unsent.push((claim, Settle::Failed(e)));
                continue;
            }
        };
        let at = now + chrono_duration(started.elapsed());
        let signature = match signature::signature_header(secret, at.timestamp(), &body) {
            Ok(s) => s,
            Err(e) => {
                report.not_configured += 1;
                unsent.push((claim, Settle::NotConfigured(e)));
                continue;
            }
        };
        let out = Outgoing {
            url: url.to_owned(),
            body,
            signature,
            event_id: claim.event.id.clone(),
            event_type: claim.event.event_type.clone(),
        };
        let task = sending.spawn(send(client.clone(), out, timeout, at, allow_private));
        in_flight.insert(task.id(), claim);
    }
    if !unsent.is_empty() {
        // One write for every claim of the pass that is not sent.
        state
            .store
            .write(move |txn| {
                Box::pin(async move { deliveries::settle_without_attempt(txn, &unsent, now).await })
            })
            .await?;
    }
    while let Some(joined) = sending.join_next_with_id().await {
        let (id, sent) = match joined {
            Ok(done) => done,
            Err(e) => {
                // The claim's lease runs out and a later pass sends it again.
                tracing::error!(error = %e, "webhook send task failed");
                in_flight.remove(&e.id());
                continue;
            }
        };
        let Some(claim) = in_flight.remove(&id) else {
            continue;
        };
        record(state, &claim, sent, &mut report).await?;
    }
    Ok(report)
}

async fn record(
    state: &AppState,
    claim: &Claim,
    sent: Sent,
    report: &mut DeliveryReport,
) -> Result<(), DeliveryError> {
    let finished = sent.at + chrono_duration(sent.duration);
    let failures = usize::try_from(claim.delivery.backoff_step)
        .unwrap_or(0)
        .saturating_add(1);
    let (outcome, label) = match &sent.error {
        None => {
            report.delivered += 1;
            (Settle::Delivered(finished), "delivered")
        }
        Some(error) => {
            report.failed += 1;
            match retry_delay(failures) {
                Some(wait) => (Settle::RetryAt(finished + chrono_duration(wait)), "failed"),
                None => {
                    report.gave_up += 1;
                    (Settle::Failed(error.clone()), "gave_up")
                }
            }
        }
    };
    let attempt = AttemptRecord {
        at: sent.at,
        status_code: sent.status_code,
        error: sent.error.clone(),
        duration_ms: i64::try_from(sent.duration.as_millis()).unwrap_or(i64::MAX),
    };
    let recorded = claim.clone();
    let kept = state
        .store
        .write(move |txn| {
            Box::pin(async move {
                deliveries::record_attempt(txn, &recorded, &attempt, outcome, finished).await
            })
        })
        .await?;
    state.metrics.webhook_attempt(label);
    match &sent.error {
        None => {
            tracing::debug!(tenant = %claim.event.tenant_id, event_id = %claim.event.id, "webhook delivered")
        }
        Some(error) => tracing::warn!(
            tenant = %claim.event.tenant_id,
            event_id = %claim.event.id,
            event_type = %claim.event.event_type,
            attempt = failures,
            %error,
            gave_up = label == "gave_up",
            "webhook attempt failed"
        ),
    }
    if !kept {
        tracing::info!(event_id = %claim.event.id, "webhook redelivered while in flight; the new delivery stands");
    }
    Ok(())
}

/// How often the worker counts the backlog for `paybridge_webhook_backlog`.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

/// Run passes until `state.workers` is cancelled: every `interval_milliseconds`, and at once
/// again while a pass finds a full batch.
pub fn spawn(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    let interval = Duration::from_millis(state.config.webhooks.interval_milliseconds.max(50));
    let batch = usize::try_from(state.config.webhooks.batch_size.max(1)).unwrap_or(usize::MAX);
    tokio::spawn(async move {
        let mut clock = state.worker_clock(interval);
        let mut counted: Option<std::time::Instant> = None;
        while clock.tick().await {
            if counted.is_none_or(|at| at.elapsed() >= BACKLOG_EVERY) {
                counted = Some(std::time::Instant::now());
                match deliveries::backlog(state.store.db()).await {
                    Ok(n) => state.metrics.set_webhook_backlog(n),
                    Err(e) => tracing::warn!(error = %e, "webhook backlog: cannot count"),
                }
            }
            // A pass in progress finishes (each delivery is bounded by its timeout): a delivery
            // cut short would be sent again by the next instance, a duplicate for the merchant.
            while !state.workers.is_cancelled() {
                match deliver_due(&state, Utc::now()).await {
                    Ok(r) if r.claimed >= batch => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "webhook delivery pass failed");
                        break;
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_that_resolve_only_into_the_platform_are_not_connected_to() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        let name = reqwest::dns::Name::from_str("localhost").expect("a name");
        let resolved = PublicAddresses.resolve(name).await;
        let error = resolved.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("non-public"), "{error}");
    }

    #[test]
    fn the_first_retry_comes_within_30_seconds_and_the_schedule_spans_about_a_day() {
        assert!(retry_delay(1).unwrap() <= Duration::from_secs(30));
        let total: Duration = RETRY_SCHEDULE.iter().sum();
        assert!(total >= Duration::from_secs(22 * 3600), "{total:?}");
        assert!(total <= Duration::from_secs(25 * 3600), "{total:?}");
        assert!(RETRY_SCHEDULE.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(retry_delay(RETRY_SCHEDULE.len() + 1), None);
        assert_eq!(retry_delay(0), None);
    }

    #[test]
    fn the_body_is_the_event_with_its_data_as_json() {
        let event = outbox_event::Model {
            id: "e1".to_owned(),
            tenant_id: "t".to_owned(),
            event_type: "order.paid".to_owned(),
            order_id: None,
            data: r#"{"out_trade_no":"T123456","amount":100}"#.to_owned(),
            created_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        };
        let body: serde_json::Value = serde_json::from_slice(&body_of(&event).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "id": "e1",
                "type": "order.paid",
                "created_at": "2023-11-14T22:13:20Z",
                "data": {"out_trade_no": "T123456", "amount": 100},
            })
        );
    }
}
