//! Historical orders for the demo tenant, written before the gateway starts, so that the measured
//! run works against a database of a realistic size.
//!
//! Mix: 90% paid (with their provider event, the `order.paid` outbox event with a delivered
//! webhook, and the accepted notification attempt), 10% pending with `next_check_at` far in the
//! future so that the reconciler leaves them alone. `created_at` is spread over the past 30 days;
//! providers alternate WeChat / Alipay.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use paybridge_server::db::entities::{
    notification_attempt, order, outbox_event, provider_event, webhook_delivery,
};
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, PaginatorTrait, TransactionTrait};
use uuid::Uuid;

/// Rows per INSERT statement.
const ROWS_PER_STATEMENT: u64 = 1_000;
/// Orders per transaction.
const ORDERS_PER_TRANSACTION: u64 = 50_000;
const WECHAT: &str = "wechat_miniprogram";
const ALIPAY: &str = "alipay_app";

/// What seeding did.
#[derive(Debug, Clone)]
pub struct SeedReport {
    pub orders: u64,
    pub migrate: Duration,
    pub insert: Duration,
    pub total: Duration,
}

/// Migrate the database at `db_url` and insert `n` historical orders for `tenant_id`.
pub async fn seed(db_url: &str, tenant_id: &str, n: u64) -> anyhow::Result<SeedReport> {
    let started = Instant::now();
    if n == 0 {
        // Nothing to seed: the database is left to the gateway (whatever version it is, e.g. an
        // older build measured for a before/after comparison) to create and migrate.
        return Ok(SeedReport {
            orders: 0,
            migrate: Duration::ZERO,
            insert: Duration::ZERO,
            total: started.elapsed(),
        });
    }
    let connections = paybridge_server::db::connect(db_url)
        .await
        .with_context(|| format!("connecting to and migrating {db_url}"))?;
    // Every write goes through the server's writer connection (one on SQLite).
    let db = connections.write;
    // On PostgreSQL `read` is the same pool: dropped, not closed.
    drop(connections.read);
    let migrate = started.elapsed();
    if db_url.starts_with("sqlite:") {
        // A bigger page cache for this one connection (the seeder's own; the gateway's are
        // untouched): random UUID keys would otherwise thrash the default 2 MiB cache.
        db.execute_unprepared("PRAGMA cache_size = -262144").await?;
    }
    let insert_started = Instant::now();
    let now = Utc::now();
    let mut next = 0u64;
    let mut last_progress = Instant::now();
    while next < n {
        let txn = db.begin().await?;
        let txn_end = n.min(next + ORDERS_PER_TRANSACTION);
        while next < txn_end {
            let chunk_end = txn_end.min(next + ROWS_PER_STATEMENT);
            let rows = Rows::build(tenant_id, next..chunk_end, n, now)?;
            rows.insert(&txn).await?;
            next = chunk_end;
        }
        txn.commit().await?;
        if last_progress.elapsed() >= Duration::from_secs(10) || next == n {
            println!(
                "  seeded {next}/{n} orders ({:.1} s)",
                insert_started.elapsed().as_secs_f64()
            );
            last_progress = Instant::now();
        }
    }
    let insert = insert_started.elapsed();
    let count = order::Entity::find().count(&db).await?;
    if count < n {
        anyhow::bail!("seeding wrote {count} orders, expected at least {n}");
    }
    db.close().await?;
    Ok(SeedReport {
        orders: n,
        migrate,
        insert,
        total: started.elapsed(),
    })
}

#[derive(Default)]
struct Rows {
    orders: Vec<order::ActiveModel>,
    events: Vec<provider_event::ActiveModel>,
    outbox: Vec<outbox_event::ActiveModel>,
    deliveries: Vec<webhook_delivery::ActiveModel>,
    attempts: Vec<notification_attempt::ActiveModel>,
}

fn millis(ms: u64) -> anyhow::Result<chrono::Duration> {
    Ok(chrono::Duration::milliseconds(i64::try_from(ms)?))
}

fn random_hex64() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

impl Rows {
    fn build(
        tenant_id: &str,
        range: std::ops::Range<u64>,
        total: u64,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Rows> {
        const THIRTY_DAYS_MS: u64 = 30 * 86_400_000;
        let mut rows = Rows::default();
        let oldest = now - millis(THIRTY_DAYS_MS)?;
        for n in range {
            // Spread evenly over the 30 days, oldest first, ending an hour ago.
            let offset = (THIRTY_DAYS_MS - 3_600_000) / total.max(1) * n;
            let created_at = oldest + millis(offset)?;
            let wechat = n % 2 == 0;
            let provider = if wechat { WECHAT } else { ALIPAY };
            let out_trade_no = format!("SEED{n:010}");
            let amount = i64::try_from(100 + (n * 7_919) % 99_900)?;
            let order_id = Uuid::new_v4().to_string();
            // Every tenth order of each provider is pending.
            let paid = (n / 2) % 10 != 9;
            let payer_openid = wechat.then(|| format!("oSEEDpayer{:017}", n % 50_000));
            let (client_payment, provider_data) = if wechat {
                let prepay_id = format!("wx{}{:018}", created_at.format("%Y%m%d%H%M%S"), n);
                (
                    serde_json::json!({"wechat_miniprogram": {
                        "timeStamp": created_at.timestamp().to_string(),
                        "nonceStr": Uuid::new_v4().simple().to_string(),
                        "package": format!("prepay_id={prepay_id}"),
                        "signType": "HMAC-SHA256",
                        "paySign": random_hex64().to_uppercase(),
                    }}),
                    serde_json::json!({"sign_type": "HMAC-SHA256", "prepay_id": prepay_id}),
                )
            } else {
                // An orderString is about 1 KB, most of it the signature and the biz_content.
                let order_string = format!(
                    "app_id=2021000000000001&biz_content=%7B%22out_trade_no%22%3A%22{out_trade_no}%22%2C%22total_amount%22%3A%22{}.{:02}%22%2C%22subject%22%3A%22Demo%20Coffee%22%7D&charset=utf-8&format=json&method=alipay.trade.app.pay&sign_type=RSA2&timestamp={}&version=1.0&sign={}",
                    amount / 100,
                    amount % 100,
                    created_at.format("%Y-%m-%d+%H%%3A%M%%3A%S"),
                    "A".repeat(344)
                );
                (
                    serde_json::json!({"alipay_app": {"order_string": order_string}}),
                    serde_json::json!({}),
                )
            };
            let paid_at = created_at + chrono::Duration::seconds(30);
            let provider_trade_no = paid.then(|| {
                if wechat {
                    format!("4200{}{n:016}", created_at.format("%Y%m%d"))
                } else {
                    format!("{}22001{n:011}", created_at.format("%Y%m%d"))
                }
            });
            let updated_at = if paid { paid_at } else { created_at };
            rows.orders.push(order::ActiveModel {
                id: Set(order_id.clone()),
                tenant_id: Set(tenant_id.to_owned()),
                out_trade_no: Set(out_trade_no.clone()),
                provider: Set(provider.to_owned()),
                amount: Set(amount),
                currency: Set("CNY".to_owned()),
                description: Set("Demo Coffee - flat white".to_owned()),
                payer_openid: Set(payer_openid.clone()),
                client_ip: Set(None),
                attach: Set(None),
                expires_at: Set(created_at + chrono::Duration::hours(2)),
                status: Set(if paid { "paid" } else { "pending" }.to_owned()),
                flags: Set("[]".to_owned()),
                provider_trade_no: Set(provider_trade_no.clone()),
                refunded_amount: Set(0),
                paid_at: Set(paid.then_some(paid_at)),
                client_payment: Set(Some(client_payment.to_string())),
                provider_data: Set(provider_data.to_string()),
                last_notified_at: Set(paid.then_some(paid_at)),
                created_at: Set(created_at),
                // Set on every row, as the server does (a new row is due at once). Pending seeds
                // are due in a century, so the reconciler leaves them alone.
                next_check_at: Set(Some(if paid {
                    created_at
                } else {
                    now + chrono::Duration::days(36_500)
                })),
                updated_at: Set(updated_at),
            });
            let Some(trade_no) = provider_trade_no else {
                continue;
            };
            // The provider's identity of a payment: WeChat's transaction_id, Alipay's
            // notify_id; the server stores it as `payment:<id>`.
            let provider_event_id = if wechat {
                trade_no.clone()
            } else {
                Uuid::new_v4().simple().to_string()
            };
            let payment = serde_json::json!({
                "out_trade_no": out_trade_no,
                "provider_trade_no": trade_no,
                "amount": amount,
                "paid_at": paid_at,
                "event_id": provider_event_id,
            });
            rows.events.push(provider_event::ActiveModel {
                id: Set(Uuid::new_v4().to_string()),
                tenant_id: Set(tenant_id.to_owned()),
                provider: Set(provider.to_owned()),
                event_id: Set(format!("payment:{provider_event_id}")),
                order_id: Set(order_id.clone()),
                kind: Set("payment".to_owned()),
                payload: Set(payment.to_string()),
                received_at: Set(paid_at),
            });
            let view = serde_json::json!({
                "out_trade_no": out_trade_no,
                "provider": provider,
                "amount": amount,
                "currency": "CNY",
                "description": "Demo Coffee - flat white",
                "payer": payer_openid.as_ref().map(|o| serde_json::json!({"openid": o})),
                "attach": null,
                "status": "paid",
                "flags": [],
                "provider_trade_no": trade_no,
                "refunded_amount": 0,
                "paid_at": paid_at,
                "expires_at": created_at + chrono::Duration::hours(2),
                "created_at": created_at,
                "updated_at": paid_at,
            });
            let event_id = Uuid::new_v4().to_string();
            rows.outbox.push(outbox_event::ActiveModel {
                id: Set(event_id.clone()),
                tenant_id: Set(tenant_id.to_owned()),
                event_type: Set("order.paid".to_owned()),
                order_id: Set(Some(order_id)),
                data: Set(view.to_string()),
                created_at: Set(paid_at),
            });
            let delivered_at = paid_at + chrono::Duration::seconds(1);
            rows.deliveries.push(webhook_delivery::ActiveModel {
                event_id: Set(event_id),
                tenant_id: Set(tenant_id.to_owned()),
                status: Set("delivered".to_owned()),
                attempts: Set(1),
                backoff_step: Set(0),
                next_attempt_at: Set(None),
                lease_token: Set(None),
                version: Set(2),
                delivered_at: Set(Some(delivered_at)),
                last_error: Set(None),
                updated_at: Set(delivered_at),
            });
            rows.attempts.push(notification_attempt::ActiveModel {
                id: Set(Uuid::new_v4().to_string()),
                tenant_id: Set(tenant_id.to_owned()),
                provider: Set(provider.to_owned()),
                channel: Set("payment".to_owned()),
                out_trade_no: Set(Some(out_trade_no)),
                outcome: Set("accepted".to_owned()),
                reason: Set(None),
                reason_code: Set(None),
                body_sha256: Set(random_hex64()),
                received_at: Set(paid_at),
            });
        }
        Ok(rows)
    }

    async fn insert<C: ConnectionTrait>(self, db: &C) -> anyhow::Result<()> {
        order::Entity::insert_many(self.orders)
            .exec_without_returning(db)
            .await
            .context("inserting orders")?;
        provider_event::Entity::insert_many(self.events)
            .exec_without_returning(db)
            .await
            .context("inserting provider events")?;
        outbox_event::Entity::insert_many(self.outbox)
            .exec_without_returning(db)
            .await
            .context("inserting outbox events")?;
        webhook_delivery::Entity::insert_many(self.deliveries)
            .exec_without_returning(db)
            .await
            .context("inserting webhook deliveries")?;
        notification_attempt::Entity::insert_many(self.attempts)
            .exec_without_returning(db)
            .await
            .context("inserting notification attempts")?;
        Ok(())
    }
}
