//! The operators' console's reads: the order search, everything an order's timeline is made of,
//! and the dashboard's hourly series. Every query runs on an index (migration m0008): the search
//! walks `orders_created` or `orders_tenant_created` newest first and stops at the page's end; a
//! number is looked up by `orders_out_trade_no`, `orders_provider_trade_no` or
//! `refunds_out_refund_no`; the series scan one time range of `orders_tenant_paid` for each
//! tenant, `notification_attempts_received`, `webhook_attempts_at` or `order_activity_at`. Their
//! plans are among `store::plans::hot_queries`, checked in a test and printed by `bench/`.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Query, UnionType};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement, Value,
};

use super::StoreError;
use crate::db::entities::{
    notification_attempt, order, order_activity, outbox_event, refund, webhook_attempt,
};

/// At most this many rows of each kind go into one timeline.
pub const TIMELINE_ROWS: u64 = 500;

/// What to search for.
#[derive(Debug, Clone, Default)]
pub struct OrderSearch {
    /// An `out_trade_no`, a `provider_trade_no` or an `out_refund_no`, exactly.
    pub number: Option<String>,
    /// One tenant's orders.
    pub tenant_id: Option<String>,
    /// One provider's orders.
    pub provider: Option<String>,
    /// Orders in this status.
    pub status: Option<String>,
    /// Created at or after.
    pub from: Option<DateTime<Utc>>,
    /// Created before.
    pub to: Option<DateTime<Utc>>,
    /// Orders after this one in the newest-first order (the previous page's last).
    pub after: Option<(DateTime<Utc>, String)>,
    /// At most this many.
    pub limit: u64,
}

/// One page of orders, newest first; `more` when another page follows.
pub async fn search_orders<C: ConnectionTrait>(
    db: &C,
    search: &OrderSearch,
) -> Result<(Vec<order::Model>, bool), StoreError> {
    let mut rows = search_query(search).all(db).await?;
    let more = rows.len() > usize::try_from(search.limit).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(search.limit).unwrap_or(usize::MAX));
    Ok((rows, more))
}

/// The query of a search: one more row than the page, to tell whether another follows.
pub fn search_query(search: &OrderSearch) -> sea_orm::Select<order::Entity> {
    use order::Column as O;
    let mut query = order::Entity::find();
    if let Some(number) = &search.number {
        // The ids the number names, each kind by its own index, then the orders by id. (Written
        // as `out_trade_no = ? OR provider_trade_no = ? OR id IN (…)`, PostgreSQL guessed half the
        // table for the `IN` and walked `orders_created` filtering every order: 53–173 ms in
        // 2·10⁵ orders, analysed.)
        let by_number = Query::select()
            .column(O::Id)
            .from(order::Entity)
            .and_where(O::OutTradeNo.eq(number.as_str()))
            .union(
                UnionType::All,
                Query::select()
                    .column(O::Id)
                    .from(order::Entity)
                    .and_where(O::ProviderTradeNo.eq(number.as_str()))
                    .to_owned(),
            )
            .union(
                UnionType::All,
                Query::select()
                    .column(refund::Column::OrderId)
                    .from(refund::Entity)
                    .and_where(refund::Column::OutRefundNo.eq(number.as_str()))
                    .to_owned(),
            )
            .to_owned();
        query = query.filter(O::Id.in_subquery(by_number));
    }
    if let Some(t) = &search.tenant_id {
        query = query.filter(O::TenantId.eq(t.as_str()));
    }
    if let Some(p) = &search.provider {
        query = query.filter(O::Provider.eq(p.as_str()));
    }
    if let Some(s) = &search.status {
        query = query.filter(O::Status.eq(s.as_str()));
    }
    if let Some(from) = search.from {
        query = query.filter(O::CreatedAt.gte(from));
    }
    if let Some(to) = search.to {
        query = query.filter(O::CreatedAt.lt(to));
    }
    if let Some((at, id)) = &search.after {
        // "Before (at, id)" in the newest-first order, written as a range on `created_at` (an
        // index search) and the tie-break on `id`.
        query = query.filter(O::CreatedAt.lte(*at)).filter(
            Condition::any()
                .add(O::CreatedAt.lt(*at))
                .add(O::Id.lt(id.as_str())),
        );
    }
    query
        .order_by_desc(O::CreatedAt)
        .order_by_desc(O::Id)
        .limit(search.limit + 1)
}

/// The notifications that named an order, oldest first.
pub fn order_notifications(o: &order::Model) -> sea_orm::Select<notification_attempt::Entity> {
    notification_attempt::Entity::find()
        .filter(notification_attempt::Column::TenantId.eq(o.tenant_id.as_str()))
        .filter(notification_attempt::Column::OutTradeNo.eq(o.out_trade_no.as_str()))
        .order_by_asc(notification_attempt::Column::ReceivedAt)
        .limit(TIMELINE_ROWS)
}

/// The merchant's events about an order, oldest first.
pub fn order_events(o: &order::Model) -> sea_orm::Select<outbox_event::Entity> {
    outbox_event::Entity::find()
        .filter(outbox_event::Column::OrderId.eq(o.id.as_str()))
        .order_by_asc(outbox_event::Column::CreatedAt)
        .limit(TIMELINE_ROWS)
}

/// Everything recorded about one order, each list oldest first.
#[derive(Debug, Default)]
pub struct OrderRecords {
    /// Its refunds.
    pub refunds: Vec<refund::Model>,
    /// The notifications that named it once verified.
    pub notifications: Vec<notification_attempt::Model>,
    /// Provider calls and reconciler actions.
    pub activity: Vec<order_activity::Model>,
    /// The merchant's events about it.
    pub events: Vec<outbox_event::Model>,
    /// The delivery attempts of those events (filled by the caller, which reads the events'
    /// deliveries anyway).
    pub webhook_attempts: Vec<webhook_attempt::Model>,
}

/// Read what the timeline of `o` is made of, but the webhook attempts.
pub async fn order_records<C: ConnectionTrait>(
    db: &C,
    o: &order::Model,
) -> Result<OrderRecords, StoreError> {
    let refunds = refund::Entity::find()
        .filter(refund::Column::TenantId.eq(o.tenant_id.as_str()))
        .filter(refund::Column::OutTradeNo.eq(o.out_trade_no.as_str()))
        .order_by_asc(refund::Column::CreatedAt)
        .limit(TIMELINE_ROWS)
        .all(db)
        .await?;
    let notifications = order_notifications(o).all(db).await?;
    let activity =
        super::activity::for_order(db, &o.tenant_id, &o.out_trade_no, TIMELINE_ROWS).await?;
    let events = order_events(o).all(db).await?;
    Ok(OrderRecords {
        refunds,
        notifications,
        activity,
        events,
        webhook_attempts: Vec::new(),
    })
}

/// One row of an hourly series: the hour (`2026-12-06T15:00:00Z`), its keys and its numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourRow {
    /// The hour, RFC 3339 in UTC.
    pub hour: String,
    /// The group's keys (provider, tenant, reason, action…).
    pub keys: Vec<String>,
    /// The group's numbers (count, amount…).
    pub numbers: Vec<i64>,
}

/// The expression of `column`'s hour, in UTC, as `YYYY-MM-DDTHH:00:00Z`.
fn hour_of(backend: DbBackend, column: &str) -> String {
    match backend {
        DbBackend::Postgres => {
            format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24\":00:00Z\"')")
        }
        // Stored as UTC text (`2026-12-06 15:17:52.131073 +00:00`): its first 13 characters.
        _ => format!("replace(substr({column}, 1, 13), ' ', 'T') || ':00:00Z'"),
    }
}

/// The name of the payments series' list of the tenants that have a payment (a recursive query:
/// its plan scans that list, a few rows, never a table).
pub const PAYING_TENANTS: &str = "paying_tenants";

/// The dashboard's hourly series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    /// Payments per hour, provider and tenant: `[provider, tenant]`, `[count, amount]`.
    Payments,
    /// Orders created per hour whose client parameters were issued: `[]`, `[count]`.
    Created,
    /// Provider calls per hour and endpoint: `[endpoint]`, `[ok, failed]`.
    Calls,
    /// Reconciler actions per hour: `[action]`, `[count]`.
    Reconciler,
    /// Refused notifications per hour and reason: `[reason]`, `[count]`.
    Refused,
    /// Webhook delivery attempts per hour: `[]`, `[delivered, failed]`.
    Webhooks,
}

impl Series {
    /// Every series.
    pub const ALL: [Series; 6] = [
        Series::Payments,
        Series::Created,
        Series::Calls,
        Series::Reconciler,
        Series::Refused,
        Series::Webhooks,
    ];

    /// The name in `bench/` plans.
    pub fn name(self) -> &'static str {
        match self {
            Series::Payments => "console: payments per hour (each tenant's paid_at range)",
            Series::Created => "console: orders created per hour (created_at range)",
            Series::Calls => "console: provider calls per hour (activity time range)",
            Series::Reconciler => "console: reconciler actions per hour (activity time range)",
            Series::Refused => "console: refused notifications per hour (received_at range)",
            Series::Webhooks => "console: webhook attempts per hour (time range)",
        }
    }

    /// How many key and number columns its rows have.
    fn shape(self) -> (usize, usize) {
        match self {
            Series::Payments => (2, 2),
            Series::Calls => (1, 2),
            Series::Reconciler | Series::Refused => (1, 1),
            Series::Created => (0, 1),
            Series::Webhooks => (0, 2),
        }
    }

    /// The grouped query, of columns `h` (the hour), `k1`… (texts) and `n1`… (integers), over
    /// one time range of an indexed column.
    pub fn statement(
        self,
        backend: DbBackend,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Statement {
        let sql = match self {
            // Each tenant's range of `orders_tenant_paid`: the tenants that have a payment are
            // found by a skip over that index (one search per tenant), since a time range of
            // every tenant's payments has no index of its own (migration m0014).
            Series::Payments => format!(
                "WITH RECURSIVE {PAYING_TENANTS}(id) AS (\
                 SELECT MIN(tenant_id) FROM orders WHERE paid_at IS NOT NULL \
                 UNION ALL SELECT (SELECT MIN(tenant_id) FROM orders \
                 WHERE paid_at IS NOT NULL AND tenant_id > {PAYING_TENANTS}.id) \
                 FROM {PAYING_TENANTS} WHERE {PAYING_TENANTS}.id IS NOT NULL) \
                 SELECT {} AS h, provider AS k1, tenant_id AS k2, COUNT(*) AS n1, \
                 CAST(SUM(amount) AS BIGINT) AS n2 FROM orders \
                 WHERE tenant_id IN (SELECT id FROM {PAYING_TENANTS}) \
                 AND paid_at >= $1 AND paid_at < $2 GROUP BY h, provider, tenant_id ORDER BY h",
                hour_of(backend, "paid_at")
            ),
            Series::Created => format!(
                "SELECT {} AS h, COUNT(*) AS n1 FROM orders \
                 WHERE created_at >= $1 AND created_at < $2 AND client_payment IS NOT NULL \
                 GROUP BY h ORDER BY h",
                hour_of(backend, "created_at")
            ),
            Series::Calls => format!(
                "SELECT {} AS h, name AS k1, \
                 CAST(SUM(CASE WHEN outcome = 'ok' THEN 1 ELSE 0 END) AS BIGINT) AS n1, \
                 CAST(SUM(CASE WHEN outcome = 'ok' THEN 0 ELSE 1 END) AS BIGINT) AS n2 \
                 FROM order_activity WHERE at >= $1 AND at < $2 AND kind = 'provider_call' \
                 GROUP BY h, name ORDER BY h",
                hour_of(backend, "at")
            ),
            Series::Reconciler => format!(
                "SELECT {} AS h, name AS k1, COUNT(*) AS n1 FROM order_activity \
                 WHERE at >= $1 AND at < $2 AND kind = 'reconciler' GROUP BY h, name ORDER BY h",
                hour_of(backend, "at")
            ),
            Series::Refused => format!(
                "SELECT {} AS h, COALESCE(reason_code, 'other') AS k1, COUNT(*) AS n1 \
                 FROM notification_attempts \
                 WHERE received_at >= $1 AND received_at < $2 AND outcome = 'rejected' \
                 GROUP BY h, reason_code ORDER BY h",
                hour_of(backend, "received_at")
            ),
            Series::Webhooks => format!(
                "SELECT {} AS h, \
                 CAST(SUM(CASE WHEN error IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS n1, \
                 CAST(SUM(CASE WHEN error IS NULL THEN 0 ELSE 1 END) AS BIGINT) AS n2 \
                 FROM webhook_attempts WHERE at >= $1 AND at < $2 GROUP BY h ORDER BY h",
                hour_of(backend, "at")
            ),
        };
        let sql = match backend {
            DbBackend::Postgres => sql,
            _ => sql.replace("$1", "?").replace("$2", "?"),
        };
        Statement::from_sql_and_values(backend, sql, [Value::from(from), Value::from(to)])
    }

    /// The series' rows between `from` and `to`. (Rows are read by column name: the SQLite
    /// reader's rows keep no column order.)
    pub async fn rows<C: ConnectionTrait>(
        self,
        db: &C,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<HourRow>, StoreError> {
        let (keys, numbers) = self.shape();
        let rows = db
            .query_all_raw(self.statement(db.get_database_backend(), from, to))
            .await?;
        rows.iter()
            .map(|row| {
                let hour: String = row.try_get("", "h")?;
                let keys = (1..=keys)
                    .map(|i| {
                        row.try_get::<Option<String>>("", &format!("k{i}"))
                            .map(Option::unwrap_or_default)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let numbers = (1..=numbers)
                    .map(|i| {
                        row.try_get::<Option<i64>>("", &format!("n{i}"))
                            .map(Option::unwrap_or_default)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(HourRow {
                    hour,
                    keys,
                    numbers,
                })
            })
            .collect::<Result<Vec<_>, sea_orm::DbErr>>()
            .map_err(StoreError::from)
    }
}

/// Webhook events by delivery status now: `(pending, failed)`.
pub async fn webhook_backlog<C: ConnectionTrait>(db: &C) -> Result<(u64, u64), StoreError> {
    use super::deliveries::{DeliveryStatus, in_status};
    use sea_orm::PaginatorTrait;
    Ok((
        in_status(DeliveryStatus::Pending).count(db).await?,
        in_status(DeliveryStatus::Failed).count(db).await?,
    ))
}
