//! The operators' console: find an order across tenants, put together its timeline, act on it
//! (sync with the provider, close, redeliver a webhook), and the dashboard's hourly series.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use super::Failure;
use crate::db::entities::order;
use crate::state::AppState;
use crate::store::console::{self, HourRow, OrderRecords, OrderSearch, Series};
use crate::store::deliveries::{self, EventRecord};
use crate::store::orders as order_store;

/// At most this many orders a page.
pub const MAX_LIMIT: u64 = 200;
/// Orders a page unless asked otherwise.
pub const DEFAULT_LIMIT: u64 = 50;
/// The dashboard's longest range.
pub const MAX_RANGE_DAYS: i64 = 31;

/// The filters of the order search (`GET /admin/api/orders`).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
pub struct SearchParams {
    /// An `out_trade_no`, a `provider_trade_no` or an `out_refund_no` (finds its order), exactly.
    pub q: Option<String>,
    /// One tenant's orders.
    pub tenant: Option<String>,
    /// One provider's orders.
    pub provider: Option<String>,
    /// Orders in this status.
    pub status: Option<String>,
    /// Created at or after (RFC 3339).
    pub from: Option<String>,
    /// Created before (RFC 3339).
    pub to: Option<String>,
    /// Page size: 1-200, default 50.
    pub limit: Option<u64>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

fn time(field: &'static str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, Failure> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    Failure::invalid(
                        field,
                        format!("must be an RFC 3339 time such as 2026-12-06T08:00:00Z: {e}"),
                    )
                })
        })
        .transpose()
}

fn non_empty(v: Option<&String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// The cursor after `o`: opaque to the client, its creation time and id.
fn cursor_of(o: &order::Model) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{}|{}",
        o.created_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        o.id
    ))
}

fn parse_cursor(cursor: &str) -> Result<(DateTime<Utc>, String), Failure> {
    let bad = || {
        Failure::invalid(
            "cursor",
            "not a cursor this API gave; start from the first page",
        )
    };
    let text = URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (at, id) = text.split_once('|').ok_or_else(bad)?;
    let at = DateTime::parse_from_rfc3339(at).map_err(|_| bad())?;
    Ok((at.with_timezone(&Utc), id.to_owned()))
}

/// One page of orders across tenants, newest first, and the cursor of the next page.
pub async fn search(
    state: &AppState,
    params: &SearchParams,
) -> Result<(Vec<order::Model>, Option<String>), Failure> {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Failure::invalid("limit", format!("must be 1-{MAX_LIMIT}")));
    }
    if let Some(status) = non_empty(params.status.as_ref())
        && status
            .parse::<paybridge_core::order::OrderStatus>()
            .is_err()
    {
        return Err(Failure::invalid(
            "status",
            "must be pending, paid, closed, failed, partially_refunded or refunded",
        ));
    }
    let search = OrderSearch {
        number: non_empty(params.q.as_ref()),
        tenant_id: non_empty(params.tenant.as_ref()),
        provider: non_empty(params.provider.as_ref()),
        status: non_empty(params.status.as_ref()),
        from: time("from", params.from.as_deref())?,
        to: time("to", params.to.as_deref())?,
        after: params
            .cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(parse_cursor)
            .transpose()?,
        limit,
    };
    let (orders, more) = console::search_orders(state.store.reader(), &search).await?;
    let next = if more {
        orders.last().map(cursor_of)
    } else {
        None
    };
    Ok((orders, next))
}

/// An order, its refunds, its events with their deliveries, and its timeline.
#[derive(Debug)]
pub struct Timeline {
    /// The order.
    pub order: order::Model,
    /// Everything recorded about it.
    pub records: OrderRecords,
    /// Its events with their deliveries.
    pub events: Vec<EventRecord>,
    /// Its timeline entries in time order.
    pub entries: Vec<Value>,
}

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The timeline entries of `o` from its records, in time order (ties keep the order of the
/// kinds: creation, calls, notifications, transitions, refunds, webhooks).
pub fn entries(o: &order::Model, r: &OrderRecords) -> Vec<Value> {
    let mut entries: Vec<(DateTime<Utc>, Value)> = vec![(
        o.created_at,
        json!({"kind": "created", "provider": o.provider, "amount": o.amount}),
    )];
    for a in &r.activity {
        let entry = match a.kind.as_str() {
            "provider_call" => json!({
                "kind": "provider_call",
                "endpoint": a.name,
                "outcome": a.outcome,
                "latency_ms": a.latency_ms,
                "error": a.error,
            }),
            _ => json!({"kind": "reconciler", "action": a.name}),
        };
        entries.push((a.at, entry));
    }
    for n in &r.notifications {
        let verdict = super::notifications::verdict(&n.outcome);
        let mut entry = json!({"kind": "notification", "channel": n.channel, "verdict": verdict});
        if verdict == "refused" {
            entry["reason"] = json!(n.reason);
            entry["reason_code"] = json!(n.reason_code);
        }
        entries.push((n.received_at, entry));
    }
    // Each `order.<status>` event is one transition, written in the transaction that made it.
    let mut status = "pending".to_owned();
    for e in &r.events {
        if let Some(to) = e.event_type.strip_prefix("order.")
            && to != "flagged"
        {
            entries.push((
                e.created_at,
                json!({"kind": "transition", "from": status, "to": to, "event_id": e.id}),
            ));
            to.clone_into(&mut status);
        }
    }
    for f in &r.refunds {
        entries.push((
            f.created_at,
            json!({"kind": "refund", "out_refund_no": f.out_refund_no, "status": f.status, "amount": f.amount}),
        ));
    }
    let types: BTreeMap<&str, &str> = r
        .events
        .iter()
        .map(|e| (e.id.as_str(), e.event_type.as_str()))
        .collect();
    for w in &r.webhook_attempts {
        entries.push((
            w.at,
            json!({
                "kind": "webhook_attempt",
                "event_id": w.event_id,
                "type": types.get(w.event_id.as_str()),
                "http_status": w.status_code,
                "ok": w.error.is_none(),
                "error": w.error,
            }),
        ));
    }
    entries.sort_by_key(|(t, _)| *t);
    entries
        .into_iter()
        .map(|(t, mut v)| {
            v["at"] = json!(at(t));
            v
        })
        .collect()
}

async fn find(
    state: &AppState,
    tenant_id: &str,
    out_trade_no: &str,
) -> Result<order::Model, Failure> {
    order_store::find_order(state.store.db(), tenant_id, out_trade_no)
        .await?
        .ok_or_else(|| Failure::not_found("order"))
}

/// The timeline of a tenant's order. What this instance has not yet written of the order's
/// activity is written first.
pub async fn timeline(
    state: &AppState,
    tenant_id: &str,
    out_trade_no: &str,
) -> Result<Timeline, Failure> {
    if let Err(e) = super::activity::flush(state).await {
        tracing::warn!(error = %e, "console: cannot write the pending order activity");
    }
    let order = find(state, tenant_id, out_trade_no).await?;
    let db = state.store.db();
    let mut records = console::order_records(db, &order).await?;
    let events = deliveries::with_deliveries(db, records.events.clone()).await?;
    records.webhook_attempts = events.iter().flat_map(|e| e.attempts.clone()).collect();
    let entries = entries(&order, &records);
    Ok(Timeline {
        order,
        records,
        events,
        entries,
    })
}

fn tenant(
    state: &AppState,
    tenant_id: &str,
) -> Result<std::sync::Arc<paybridge_core::tenant::Tenant>, Failure> {
    state
        .tenants
        .get(tenant_id)
        .ok_or_else(|| Failure::not_found("tenant"))
}

/// What an operator does to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderAction {
    /// Ask the provider for the order's state and apply it.
    Sync,
    /// Close the order at the provider and here.
    Close,
}

impl OrderAction {
    /// The audit log's name of the action.
    pub fn name(self) -> &'static str {
        match self {
            OrderAction::Sync => "sync_order",
            OrderAction::Close => "close_order",
        }
    }
}

/// Do `action` to a tenant's order; the order after it.
pub async fn act(
    state: &AppState,
    tenant_id: &str,
    out_trade_no: &str,
    action: OrderAction,
) -> Result<order::Model, Failure> {
    let tenant = tenant(state, tenant_id)?;
    let o = find(state, tenant_id, out_trade_no).await?;
    match action {
        OrderAction::Sync => super::orders::sync_order(state, &tenant, &o).await,
        OrderAction::Close => super::orders::close_order(state, &tenant, &o).await,
    }
}

/// Deliver an event again, whichever tenant's it is.
pub async fn redeliver(state: &AppState, event_id: &str) -> Result<EventRecord, Failure> {
    let event = deliveries::event_by_id(state.store.db(), event_id)
        .await?
        .ok_or_else(|| Failure::not_found("event"))?;
    let tenant = tenant(state, &event.tenant_id)?;
    super::events::redeliver(state, &tenant, event_id).await
}

/// The dashboard's range: `from` and `to` (RFC 3339), by default the last 24 hours.
pub fn range(
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), Failure> {
    let to = time("to", to)?.unwrap_or_else(Utc::now);
    let from = time("from", from)?.unwrap_or(to - chrono::Duration::hours(24));
    if from >= to {
        return Err(Failure::invalid("from", "must be before to"));
    }
    if to - from > chrono::Duration::days(MAX_RANGE_DAYS) {
        return Err(Failure::invalid(
            "from",
            format!("the range is at most {MAX_RANGE_DAYS} days"),
        ));
    }
    Ok((from, to))
}

fn points(rows: Vec<HourRow>, keys: &[&str], numbers: &[&str]) -> Vec<Value> {
    rows.into_iter()
        .map(|row| {
            let mut point = serde_json::Map::new();
            point.insert("t".to_owned(), json!(row.hour));
            for (k, v) in keys.iter().zip(row.keys) {
                point.insert((*k).to_owned(), json!(v));
            }
            for (k, v) in numbers.iter().zip(row.numbers) {
                point.insert((*k).to_owned(), json!(v));
            }
            Value::Object(point)
        })
        .collect()
}

/// The dashboard's hourly series between `from` and `to` (UTC hours).
pub async fn stats(
    state: &AppState,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Value, Failure> {
    let db = state.store.reader();
    if let Err(e) = super::activity::flush(state).await {
        tracing::warn!(error = %e, "console: cannot write the pending order activity");
    }
    let payments = Series::Payments.rows(db, from, to).await?;
    let calls = Series::Calls.rows(db, from, to).await?;
    // Creates: the orders whose client parameters were issued (an Alipay orderString is made
    // here, not at the provider, so only the orders tell), and the create calls that failed.
    let mut creates: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for r in Series::Created.rows(db, from, to).await? {
        creates.entry(r.hour).or_default().0 += r.numbers.first().copied().unwrap_or(0);
    }
    for r in calls
        .iter()
        .filter(|r| r.keys.first().map(String::as_str) == Some("create"))
    {
        creates.entry(r.hour.clone()).or_default().1 += r.numbers.get(1).copied().unwrap_or(0);
    }
    let create_rate: Vec<Value> = creates
        .into_iter()
        .map(|(hour, (ok, failed))| {
            // A ratio, not money: in permille, with integers.
            let permille = if ok + failed > 0 {
                ok * 1000 / (ok + failed)
            } else {
                0
            };
            json!({"t": hour, "ok": ok, "failed": failed, "success_permille": permille})
        })
        .collect();
    let refused = Series::Refused.rows(db, from, to).await?;
    let webhooks = Series::Webhooks.rows(db, from, to).await?;
    let reconciler = Series::Reconciler.rows(db, from, to).await?;
    let (backlog, failed_events) = console::webhook_backlog(db).await?;
    Ok(json!({
        "bucket": "hour",
        "from": at(from),
        "to": at(to),
        "series": {
            "payments": points(payments, &["provider", "tenant"], &["count", "amount"]),
            "creates": create_rate,
            "provider_calls": points(calls, &["endpoint"], &["ok", "failed"]),
            "notifications_refused": points(refused, &["reason"], &["count"]),
            "webhook_attempts": points(webhooks, &[], &["delivered", "failed"]),
            "webhook_backlog": [{"t": at(Utc::now()), "pending": backlog, "failed": failed_events}],
            "reconciler": points(reconciler, &["action"], &["count"]),
        }
    }))
}
