//! The database's plan for every hot query, built by the same functions the server runs, so that
//! an operator (and `bench/`) can check that each one uses an index.

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryTrait, Statement};

use super::StoreError;
use super::console::{self, OrderSearch};
use crate::db::entities::{provider_event, refund};
use sea_orm::{ColumnTrait, QueryFilter};

/// The hot queries by name, for this backend.
pub fn hot_queries(backend: DbBackend) -> Vec<(&'static str, Statement)> {
    let now = Utc::now();
    let day_ago = now - chrono::Duration::hours(24);
    let o = super::orders::find_by_number("demo", "T0000000001");
    let sample = crate::db::entities::order::Model {
        id: "0190b2c4-0000-7000-8000-000000000000".to_owned(),
        tenant_id: "demo".to_owned(),
        out_trade_no: "T0000000001".to_owned(),
        provider: "wechat_miniprogram".to_owned(),
        amount: 100,
        currency: "CNY".to_owned(),
        description: String::new(),
        payer_openid: None,
        client_ip: None,
        attach: None,
        expires_at: now,
        status: "paid".to_owned(),
        flags: "[]".to_owned(),
        provider_trade_no: None,
        refunded_amount: 0,
        paid_at: None,
        client_payment: None,
        provider_data: "{}".to_owned(),
        last_notified_at: None,
        created_at: now,
        next_check_at: None,
        updated_at: now,
    };
    let day = (day_ago, now);
    vec![
        (
            "order by number (every API call, notification lookup)",
            o.build(backend),
        ),
        (
            "statement: a day's paid orders, next page",
            super::statements::paid_order_columns(super::statements::paid_between_query(
                "demo",
                "wechat_miniprogram",
                day,
                Some((now - chrono::Duration::hours(1), sample.id.clone())),
                1000,
            ))
            .build(backend),
        ),
        (
            "statement: the recorded fees of a day's orders, next page",
            super::statements::fees_between_query((&sample.id, &sample.id), Some(&sample.id), 1000)
                .build(backend),
        ),
        (
            "an order's fee (its JSON)",
            crate::db::entities::order_fee::Entity::find_by_id(sample.id.clone()).build(backend),
        ),
        (
            "statement: a day's succeeded refunds, next page",
            super::statements::refunded_between_query(
                "demo",
                day,
                Some((now - chrono::Duration::hours(1), sample.id.clone())),
                1000,
            )
            .build(backend),
        ),
        (
            "provider event by identity (deduplication)",
            provider_event::Entity::find()
                .filter(provider_event::Column::TenantId.eq("demo"))
                .filter(provider_event::Column::Provider.eq("wechat_miniprogram"))
                .filter(provider_event::Column::EventId.eq("payment:4200000001"))
                .build(backend),
        ),
        (
            "refund by number",
            refund::Entity::find()
                .filter(refund::Column::TenantId.eq("demo"))
                .filter(refund::Column::OutTradeNo.eq("T0000000001"))
                .filter(refund::Column::OutRefundNo.eq("R1"))
                .build(backend),
        ),
        (
            "reconciler: pending orders to query",
            super::orders::pending_due(now, Some(now - chrono::Duration::seconds(120)), 200)
                .build(backend),
        ),
        (
            "reconciler: expired pending orders",
            super::orders::pending_due(now, None, 200).build(backend),
        ),
        (
            "reconciler: processing refunds",
            super::refunds::open_due(now, 200).build(backend),
        ),
        (
            "webhook worker: due deliveries (claim)",
            super::deliveries::due(now, 100).build(backend),
        ),
        (
            "webhook backlog: pending deliveries (metrics, console)",
            super::deliveries::in_status(super::deliveries::DeliveryStatus::Pending).build(backend),
        ),
        (
            "webhook backlog: failed deliveries (console)",
            super::deliveries::in_status(super::deliveries::DeliveryStatus::Failed).build(backend),
        ),
        (
            "retention: a batch of old notification attempts",
            super::retention::notification_attempts_batch(now, 1000).build(backend),
        ),
        (
            "retention: a batch of old webhook attempts",
            super::retention::webhook_attempts_batch(now, 1000).build(backend),
        ),
        (
            "retention: a batch of old order activity",
            super::retention::order_activity_batch(now, 1000).build(backend),
        ),
        (
            "console: an order by any number (out_trade_no, provider_trade_no, out_refund_no)",
            console::search_query(&OrderSearch {
                number: Some("T0000000001".to_owned()),
                limit: 50,
                ..OrderSearch::default()
            })
            .build(backend),
        ),
        (
            "console: one tenant's newest orders",
            console::search_query(&OrderSearch {
                tenant_id: Some("demo".to_owned()),
                limit: 50,
                ..OrderSearch::default()
            })
            .build(backend),
        ),
        (
            "console: the next page of all tenants' orders (after a cursor)",
            console::search_query(&OrderSearch {
                after: Some((now, "0190b2c4-0000-7000-8000-000000000000".to_owned())),
                limit: 50,
                ..OrderSearch::default()
            })
            .build(backend),
        ),
        (
            "console: an order's notifications",
            console::order_notifications(&sample).build(backend),
        ),
        (
            "console: an order's events",
            console::order_events(&sample).build(backend),
        ),
    ]
    .into_iter()
    .chain(
        console::Series::ALL
            .into_iter()
            .map(|s| (s.name(), s.statement(backend, day_ago, now))),
    )
    .collect()
}

/// `EXPLAIN QUERY PLAN` (SQLite) or `EXPLAIN` (PostgreSQL) of every hot query, as text.
pub async fn explain(db: &DatabaseConnection) -> Result<String, StoreError> {
    let backend = db.get_database_backend();
    let mut out = String::new();
    for (name, statement) in hot_queries(backend) {
        let prefix = match backend {
            DbBackend::Sqlite => "EXPLAIN QUERY PLAN ",
            _ => "EXPLAIN ",
        };
        let explain = Statement {
            sql: format!("{prefix}{}", statement.sql),
            ..statement.clone()
        };
        out.push_str(&format!("-- {name}\n{}\n", statement.sql));
        for row in db.query_all_raw(explain).await? {
            let line: String = match backend {
                DbBackend::Sqlite => row.try_get("", "detail")?,
                _ => row.try_get("", "QUERY PLAN")?,
            };
            out.push_str(&format!("   {line}\n"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queries that must use a partial index, and which (migration m0012).
    const PARTIAL_INDEXES: [(&str, &str); 5] = [
        (
            "reconciler: pending orders to query",
            "orders_pending_next_check",
        ),
        (
            "reconciler: expired pending orders",
            "orders_pending_next_check",
        ),
        (
            "webhook worker: due deliveries",
            "webhook_deliveries_pending",
        ),
        ("webhook backlog: pending", "webhook_deliveries_pending"),
        ("webhook backlog: failed", "webhook_deliveries_failed"),
    ];

    #[tokio::test]
    async fn every_hot_query_searches_an_index_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("plans.db").display()
        );
        let db = crate::db::connect(&url).await.unwrap().write;
        let plans = explain(&db).await.unwrap();
        let mut query = "";
        for line in plans.lines() {
            if let Some(name) = line.strip_prefix("-- ") {
                query = name;
                continue;
            }
            let detail = line.trim();
            // SQLite says SCAN for a full pass over a table, SEARCH for an index lookup. A pass
            // over a partial index reads only the rows in that status, not the table; a pass over
            // the payments series' list of tenants reads that list, which is no table.
            let partial = PARTIAL_INDEXES
                .iter()
                .any(|(_, index)| detail.ends_with(&format!("INDEX {index}")));
            let tenants = detail == format!("SCAN {}", console::PAYING_TENANTS);
            assert!(
                !detail.starts_with("SCAN") || partial || tenants,
                "{query}: {detail}\n\nwhole plan:\n{plans}"
            );
        }
        // Each query searches at least one index (a batched delete searches two: the time index
        // for its batch, the primary key for its rows), or reads a partial index.
        for block in plans.split("-- ").skip(1) {
            let partial = PARTIAL_INDEXES
                .iter()
                .any(|(name, _)| block.starts_with(name));
            assert!(
                block.contains("SEARCH") || partial,
                "{block}\n\nwhole plan:\n{plans}"
            );
        }
        // The work queues read their partial indexes (`status_is`).
        for (name, index) in PARTIAL_INDEXES {
            let block = plans
                .split("-- ")
                .find(|b| b.starts_with(name))
                .unwrap_or_else(|| panic!("no plan for {name}:\n{plans}"));
            assert!(block.contains(index), "{block}\n\nwhole plan:\n{plans}");
        }
        // The payments per hour read each paying tenant's range of the index of payments.
        let block = plans
            .split("-- ")
            .find(|b| b.starts_with(console::Series::Payments.name()))
            .unwrap_or_else(|| panic!("no plan for the payments series:\n{plans}"));
        assert!(
            block.contains("SEARCH orders USING INDEX orders_tenant_paid (tenant_id=? AND paid_at>? AND paid_at<?)"),
            "{block}\n\nwhole plan:\n{plans}"
        );
        // A statement's walk over a day reads one index range in its order: a sort (or another
        // index) would re-read the tenant's whole history for every page.
        for (name, index) in [
            ("statement: a day's paid orders", "orders_tenant_paid"),
            (
                "statement: a day's succeeded refunds",
                "refunds_tenant_succeeded",
            ),
        ] {
            let block = plans
                .split("-- ")
                .find(|b| b.starts_with(name))
                .unwrap_or_else(|| panic!("no plan for {name}:\n{plans}"));
            assert!(
                block.contains(index) && !block.contains("TEMP B-TREE"),
                "{block}\n\nwhole plan:\n{plans}"
            );
        }
    }
}
