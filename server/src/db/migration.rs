//! Schema migrations, applied at start-up.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(M0001Orders),
            Box::new(M0002RefundsLeases),
            Box::new(M0003Webhooks),
            Box::new(M0004NextCheck),
            Box::new(M0005HotIndexes),
            Box::new(M0006RetentionIndexes),
            Box::new(M0007IdempotencyKeys),
            Box::new(M0008Console),
            Box::new(M0009Statements),
            Box::new(M0010StatementFiles),
            Box::new(M0011StatementIndexes),
            Box::new(M0012WorkIndexes),
            Box::new(M0013OrderFees),
            Box::new(M0014DropPaidAt),
        ]
    }
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    TenantId,
    OutTradeNo,
    Provider,
    Amount,
    Currency,
    Description,
    PayerOpenid,
    ClientIp,
    Attach,
    ExpiresAt,
    Status,
    Flags,
    ProviderTradeNo,
    RefundedAmount,
    PaidAt,
    ClientPayment,
    ProviderData,
    LastNotifiedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ProviderEvents {
    Table,
    Id,
    TenantId,
    Provider,
    EventId,
    OrderId,
    Kind,
    Payload,
    ReceivedAt,
}

#[derive(DeriveIden)]
enum NotificationAttempts {
    Table,
    Id,
    TenantId,
    Provider,
    Channel,
    OutTradeNo,
    Outcome,
    Reason,
    BodySha256,
    ReceivedAt,
}

#[derive(DeriveIden)]
enum OutboxEvents {
    Table,
    Id,
    TenantId,
    EventType,
    OrderId,
    Data,
    CreatedAt,
}

struct M0001Orders;

impl MigrationName for M0001Orders {
    fn name(&self) -> &str {
        "m0001_orders"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0001Orders {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .if_not_exists()
                    .col(string_len(Orders::Id, 36).primary_key())
                    .col(string_len(Orders::TenantId, 64))
                    .col(string_len(Orders::OutTradeNo, 32))
                    .col(string_len(Orders::Provider, 64))
                    .col(big_integer(Orders::Amount))
                    .col(string_len(Orders::Currency, 3))
                    .col(text(Orders::Description))
                    .col(text_null(Orders::PayerOpenid))
                    .col(text_null(Orders::ClientIp))
                    .col(text_null(Orders::Attach))
                    .col(timestamp_with_time_zone(Orders::ExpiresAt))
                    .col(string_len(Orders::Status, 32))
                    .col(text(Orders::Flags))
                    .col(text_null(Orders::ProviderTradeNo))
                    .col(big_integer(Orders::RefundedAmount))
                    .col(timestamp_with_time_zone_null(Orders::PaidAt))
                    .col(text_null(Orders::ClientPayment))
                    .col(text(Orders::ProviderData))
                    .col(timestamp_with_time_zone_null(Orders::LastNotifiedAt))
                    .col(timestamp_with_time_zone(Orders::CreatedAt))
                    .col(timestamp_with_time_zone(Orders::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("orders_tenant_out_trade_no")
                    .table(Orders::Table)
                    .col(Orders::TenantId)
                    .col(Orders::OutTradeNo)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("orders_status_created")
                    .table(Orders::Table)
                    .col(Orders::Status)
                    .col(Orders::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProviderEvents::Table)
                    .if_not_exists()
                    .col(string_len(ProviderEvents::Id, 36).primary_key())
                    .col(string_len(ProviderEvents::TenantId, 64))
                    .col(string_len(ProviderEvents::Provider, 64))
                    .col(string_len(ProviderEvents::EventId, 200))
                    .col(string_len(ProviderEvents::OrderId, 36))
                    .col(string_len(ProviderEvents::Kind, 32))
                    .col(text(ProviderEvents::Payload))
                    .col(timestamp_with_time_zone(ProviderEvents::ReceivedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("provider_events_identity")
                    .table(ProviderEvents::Table)
                    .col(ProviderEvents::TenantId)
                    .col(ProviderEvents::Provider)
                    .col(ProviderEvents::EventId)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(NotificationAttempts::Table)
                    .if_not_exists()
                    .col(string_len(NotificationAttempts::Id, 36).primary_key())
                    .col(string_len(NotificationAttempts::TenantId, 64))
                    .col(string_len(NotificationAttempts::Provider, 64))
                    .col(string_len(NotificationAttempts::Channel, 16))
                    .col(text_null(NotificationAttempts::OutTradeNo))
                    .col(string_len(NotificationAttempts::Outcome, 16))
                    .col(text_null(NotificationAttempts::Reason))
                    .col(string_len(NotificationAttempts::BodySha256, 64))
                    .col(timestamp_with_time_zone(NotificationAttempts::ReceivedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OutboxEvents::Table)
                    .if_not_exists()
                    .col(string_len(OutboxEvents::Id, 36).primary_key())
                    .col(string_len(OutboxEvents::TenantId, 64))
                    .col(string_len(OutboxEvents::EventType, 64))
                    .col(string_len_null(OutboxEvents::OrderId, 36))
                    .col(text(OutboxEvents::Data))
                    .col(timestamp_with_time_zone(OutboxEvents::CreatedAt))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Refunds {
    Table,
    Id,
    TenantId,
    OrderId,
    OutTradeNo,
    OutRefundNo,
    Amount,
    Reason,
    Status,
    ProviderRefundNo,
    SentAt,
    SucceededAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Leases {
    Table,
    Name,
    Holder,
    ExpiresAt,
}

struct M0002RefundsLeases;

impl MigrationName for M0002RefundsLeases {
    fn name(&self) -> &str {
        "m0002_refunds_leases"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0002RefundsLeases {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Refunds::Table)
                    .if_not_exists()
                    .col(string_len(Refunds::Id, 36).primary_key())
                    .col(string_len(Refunds::TenantId, 64))
                    .col(string_len(Refunds::OrderId, 36))
                    .col(string_len(Refunds::OutTradeNo, 32))
                    .col(string_len(Refunds::OutRefundNo, 64))
                    .col(big_integer(Refunds::Amount))
                    .col(text_null(Refunds::Reason))
                    .col(string_len(Refunds::Status, 32))
                    .col(text_null(Refunds::ProviderRefundNo))
                    .col(timestamp_with_time_zone_null(Refunds::SentAt))
                    .col(timestamp_with_time_zone_null(Refunds::SucceededAt))
                    .col(timestamp_with_time_zone(Refunds::CreatedAt))
                    .col(timestamp_with_time_zone(Refunds::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("refunds_order_out_refund_no")
                    .table(Refunds::Table)
                    .col(Refunds::OrderId)
                    .col(Refunds::OutRefundNo)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("refunds_status")
                    .table(Refunds::Table)
                    .col(Refunds::Status)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Leases::Table)
                    .if_not_exists()
                    .col(string_len(Leases::Name, 64).primary_key())
                    .col(string_len(Leases::Holder, 64))
                    .col(timestamp_with_time_zone(Leases::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    EventId,
    TenantId,
    Status,
    Attempts,
    BackoffStep,
    NextAttemptAt,
    LeaseToken,
    Version,
    DeliveredAt,
    LastError,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookAttempts {
    Table,
    Id,
    EventId,
    TenantId,
    At,
    StatusCode,
    Error,
    DurationMs,
}

struct M0003Webhooks;

impl MigrationName for M0003Webhooks {
    fn name(&self) -> &str {
        "m0003_webhooks"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0003Webhooks {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .if_not_exists()
                    .col(string_len(WebhookDeliveries::EventId, 36).primary_key())
                    .col(string_len(WebhookDeliveries::TenantId, 64))
                    .col(string_len(WebhookDeliveries::Status, 16))
                    .col(integer(WebhookDeliveries::Attempts))
                    .col(integer(WebhookDeliveries::BackoffStep))
                    .col(timestamp_with_time_zone_null(
                        WebhookDeliveries::NextAttemptAt,
                    ))
                    .col(string_len_null(WebhookDeliveries::LeaseToken, 36))
                    .col(big_integer(WebhookDeliveries::Version))
                    .col(timestamp_with_time_zone_null(
                        WebhookDeliveries::DeliveredAt,
                    ))
                    .col(text_null(WebhookDeliveries::LastError))
                    .col(timestamp_with_time_zone(WebhookDeliveries::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhook_deliveries_due")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::Status)
                    .col(WebhookDeliveries::NextAttemptAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookAttempts::Table)
                    .if_not_exists()
                    .col(string_len(WebhookAttempts::Id, 36).primary_key())
                    .col(string_len(WebhookAttempts::EventId, 36))
                    .col(string_len(WebhookAttempts::TenantId, 64))
                    .col(timestamp_with_time_zone(WebhookAttempts::At))
                    .col(integer_null(WebhookAttempts::StatusCode))
                    .col(text_null(WebhookAttempts::Error))
                    .col(big_integer(WebhookAttempts::DurationMs))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhook_attempts_event")
                    .table(WebhookAttempts::Table)
                    .col(WebhookAttempts::EventId)
                    .col(WebhookAttempts::At)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // `GET /v1/events` pages a tenant's events newest first.
        manager
            .create_index(
                Index::create()
                    .name("outbox_events_tenant_created")
                    .table(OutboxEvents::Table)
                    .col(OutboxEvents::TenantId)
                    .col(OutboxEvents::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // Events written before webhooks were delivered were promised to the merchant too: they
        // are scheduled now, like new ones.
        let mut backfill = Query::insert();
        backfill
            .into_table(WebhookDeliveries::Table)
            .columns([
                WebhookDeliveries::EventId,
                WebhookDeliveries::TenantId,
                WebhookDeliveries::Status,
                WebhookDeliveries::Attempts,
                WebhookDeliveries::BackoffStep,
                WebhookDeliveries::NextAttemptAt,
                WebhookDeliveries::Version,
                WebhookDeliveries::UpdatedAt,
            ])
            .select_from(
                Query::select()
                    .column(OutboxEvents::Id)
                    .column(OutboxEvents::TenantId)
                    .expr(Expr::val("pending"))
                    .expr(Expr::val(0))
                    .expr(Expr::val(0))
                    .column(OutboxEvents::CreatedAt)
                    .expr(Expr::val(0))
                    .column(OutboxEvents::CreatedAt)
                    .from(OutboxEvents::Table)
                    .to_owned(),
            )
            .map_err(|e| DbErr::Migration(e.to_string()))?;
        manager.exec_stmt(backfill).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use sea_orm::{ActiveValue::Set, Database, EntityTrait};

    use super::*;
    use crate::db::entities::{outbox_event, webhook_delivery};

    #[tokio::test]
    async fn events_written_before_webhooks_existed_are_scheduled_for_delivery() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        Migrator::up(&db, Some(2)).await.unwrap();
        outbox_event::Entity::insert(outbox_event::ActiveModel {
            id: Set("e-before".to_owned()),
            tenant_id: Set("t".to_owned()),
            event_type: Set("order.paid".to_owned()),
            order_id: Set(None),
            data: Set("{}".to_owned()),
            created_at: Set(Utc::now()),
        })
        .exec_without_returning(&db)
        .await
        .unwrap();
        Migrator::up(&db, None).await.unwrap();
        let delivery = webhook_delivery::Entity::find_by_id("e-before".to_owned())
            .one(&db)
            .await
            .unwrap()
            .expect("backfilled");
        assert_eq!(delivery.status, "pending");
        assert_eq!(delivery.tenant_id, "t");
        assert_eq!((delivery.attempts, delivery.version), (0, 0));
        let event = outbox_event::Entity::find_by_id("e-before".to_owned())
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(delivery.next_attempt_at, Some(event.created_at));
    }
}

#[derive(DeriveIden)]
enum NextCheck {
    NextCheckAt,
}

/// When the reconciler next looks at a pending order or a processing refund, so rows that never
/// change cannot crowd out newer ones.
struct M0004NextCheck;

impl MigrationName for M0004NextCheck {
    fn name(&self) -> &str {
        "m0004_next_check"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0004NextCheck {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .add_column(timestamp_with_time_zone_null(NextCheck::NextCheckAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Refunds::Table)
                    .add_column(timestamp_with_time_zone_null(NextCheck::NextCheckAt))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

/// Every hot query on an index (`bench/RESULTS.md` shows the plans): the reconciler's scans and
/// the refund lookup by number. `next_check_at` is set for every row (a new row is due at once),
/// so "due" is one index range instead of `IS NULL OR <=`.
struct M0005HotIndexes;

impl MigrationName for M0005HotIndexes {
    fn name(&self) -> &str {
        "m0005_hot_indexes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0005HotIndexes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "UPDATE orders SET next_check_at = created_at WHERE next_check_at IS NULL",
        )
        .await?;
        db.execute_unprepared(
            "UPDATE refunds SET next_check_at = created_at WHERE next_check_at IS NULL",
        )
        .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("orders_status_created")
                    .table(Orders::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("orders_status_next_check")
                    .table(Orders::Table)
                    .col(Orders::Status)
                    .col(NextCheck::NextCheckAt)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("refunds_status")
                    .table(Refunds::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("refunds_status_next_check")
                    .table(Refunds::Table)
                    .col(Refunds::Status)
                    .col(NextCheck::NextCheckAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("refunds_tenant_number")
                    .table(Refunds::Table)
                    .col(Refunds::TenantId)
                    .col(Refunds::OutTradeNo)
                    .col(Refunds::OutRefundNo)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

/// Retention prunes attempt rows by age: an index on their time keeps each batch a range scan.
struct M0006RetentionIndexes;

impl MigrationName for M0006RetentionIndexes {
    fn name(&self) -> &str {
        "m0006_retention_indexes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0006RetentionIndexes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("notification_attempts_received")
                    .table(NotificationAttempts::Table)
                    .col(NotificationAttempts::ReceivedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhook_attempts_at")
                    .table(WebhookAttempts::Table)
                    .col(WebhookAttempts::At)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    TenantId,
    Key,
    Fingerprint,
    State,
    HttpStatus,
    ContentType,
    Body,
    CreatedAt,
    LockedUntil,
}

/// `Idempotency-Key`s of the merchant API, by tenant and key; expired ones are found by age.
struct M0007IdempotencyKeys;

impl MigrationName for M0007IdempotencyKeys {
    fn name(&self) -> &str {
        "m0007_idempotency_keys"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0007IdempotencyKeys {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .if_not_exists()
                    .col(string_len(IdempotencyKeys::TenantId, 64))
                    .col(string_len(IdempotencyKeys::Key, 255))
                    .col(string_len(IdempotencyKeys::Fingerprint, 64))
                    .col(string_len(IdempotencyKeys::State, 16))
                    .col(integer_null(IdempotencyKeys::HttpStatus))
                    .col(text_null(IdempotencyKeys::ContentType))
                    .col(text_null(IdempotencyKeys::Body))
                    .col(timestamp_with_time_zone(IdempotencyKeys::CreatedAt))
                    .col(timestamp_with_time_zone(IdempotencyKeys::LockedUntil))
                    .primary_key(
                        Index::create()
                            .col(IdempotencyKeys::TenantId)
                            .col(IdempotencyKeys::Key),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idempotency_keys_created")
                    .table(IdempotencyKeys::Table)
                    .col(IdempotencyKeys::CreatedAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum OrderActivity {
    Table,
    Id,
    TenantId,
    OutTradeNo,
    Kind,
    Name,
    Outcome,
    LatencyMs,
    Error,
    At,
}

#[derive(DeriveIden)]
enum ReasonCode {
    ReasonCode,
}

/// The operators' console: what an order's timeline shows that no table kept (provider calls,
/// reconciler actions), a fixed code for each refused notification, and the indexes of the
/// search (newest first, by number, by tenant) and of the dashboard's ranges.
struct M0008Console;

impl MigrationName for M0008Console {
    fn name(&self) -> &str {
        "m0008_console"
    }
}

fn index(name: &str, table: impl IntoIden, cols: Vec<DynIden>) -> IndexCreateStatement {
    let mut i = Index::create();
    i.name(name).table(table);
    for c in cols {
        i.col(c);
    }
    i.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for M0008Console {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OrderActivity::Table)
                    .if_not_exists()
                    .col(string_len(OrderActivity::Id, 36).primary_key())
                    .col(string_len(OrderActivity::TenantId, 64))
                    .col(string_len(OrderActivity::OutTradeNo, 64))
                    .col(string_len(OrderActivity::Kind, 32))
                    .col(string_len(OrderActivity::Name, 32))
                    .col(string_len_null(OrderActivity::Outcome, 16))
                    .col(big_integer_null(OrderActivity::LatencyMs))
                    .col(string_len_null(OrderActivity::Error, 64))
                    .col(timestamp_with_time_zone(OrderActivity::At))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(NotificationAttempts::Table)
                    .add_column(string_len_null(ReasonCode::ReasonCode, 32))
                    .to_owned(),
            )
            .await?;
        let indexes = [
            index(
                "order_activity_order",
                OrderActivity::Table,
                vec![
                    OrderActivity::TenantId.into_iden(),
                    OrderActivity::OutTradeNo.into_iden(),
                    OrderActivity::At.into_iden(),
                ],
            ),
            index(
                "order_activity_at",
                OrderActivity::Table,
                vec![OrderActivity::At.into_iden()],
            ),
            index(
                "notification_attempts_order",
                NotificationAttempts::Table,
                vec![
                    NotificationAttempts::TenantId.into_iden(),
                    NotificationAttempts::OutTradeNo.into_iden(),
                ],
            ),
            index(
                "orders_created",
                Orders::Table,
                vec![Orders::CreatedAt.into_iden(), Orders::Id.into_iden()],
            ),
            index(
                "orders_tenant_created",
                Orders::Table,
                vec![
                    Orders::TenantId.into_iden(),
                    Orders::CreatedAt.into_iden(),
                    Orders::Id.into_iden(),
                ],
            ),
            index(
                "orders_out_trade_no",
                Orders::Table,
                vec![Orders::OutTradeNo.into_iden()],
            ),
            index(
                "refunds_out_refund_no",
                Refunds::Table,
                vec![Refunds::OutRefundNo.into_iden()],
            ),
            index(
                "outbox_events_order",
                OutboxEvents::Table,
                vec![
                    OutboxEvents::OrderId.into_iden(),
                    OutboxEvents::CreatedAt.into_iden(),
                ],
            ),
        ];
        for i in indexes {
            manager.create_index(i).await?;
        }
        // Set only once an order is paid: partial indexes, so that a new order writes no entry
        // in them (a range or an equality on the column implies IS NOT NULL to both planners).
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX orders_provider_trade_no ON orders (provider_trade_no) \
             WHERE provider_trade_no IS NOT NULL",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX orders_paid_at ON orders (paid_at) WHERE paid_at IS NOT NULL",
        )
        .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Statements {
    Table,
    Id,
    TenantId,
    Provider,
    Day,
    Status,
    Reason,
    Version,
    Lines,
    Matched,
    Gross,
    Refunds,
    Fees,
    Net,
    Counts,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum StatementRuns {
    Table,
    StatementId,
    Version,
    At,
    Status,
    Reason,
    Totals,
    Counts,
}

#[derive(DeriveIden)]
enum StatementDiscrepancies {
    Table,
    Id,
    StatementId,
    Version,
    Kind,
    OutTradeNo,
    OutRefundNo,
    ProviderTradeNo,
    Healed,
    Bill,
    Paybridge,
}

#[derive(DeriveIden)]
enum Fees {
    Fee,
    FeeReturned,
}

/// Statements: one per tenant, provider and Beijing day, with its runs and discrepancies; the
/// provider's fee of each reconciled order and refund.
struct M0009Statements;

impl MigrationName for M0009Statements {
    fn name(&self) -> &str {
        "m0009_statements"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0009Statements {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Statements::Table)
                    .if_not_exists()
                    .col(string_len(Statements::Id, 36).primary_key())
                    .col(string_len(Statements::TenantId, 64))
                    .col(string_len(Statements::Provider, 64))
                    .col(string_len(Statements::Day, 10))
                    .col(string_len(Statements::Status, 16))
                    .col(text_null(Statements::Reason))
                    .col(big_integer(Statements::Version))
                    .col(big_integer(Statements::Lines))
                    .col(big_integer(Statements::Matched))
                    .col(big_integer(Statements::Gross))
                    .col(big_integer(Statements::Refunds))
                    .col(big_integer(Statements::Fees))
                    .col(big_integer(Statements::Net))
                    .col(text(Statements::Counts))
                    .col(timestamp_with_time_zone(Statements::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "statements_day",
                    Statements::Table,
                    vec![
                        Statements::TenantId.into_iden(),
                        Statements::Provider.into_iden(),
                        Statements::Day.into_iden(),
                    ],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(StatementRuns::Table)
                    .if_not_exists()
                    .col(string_len(StatementRuns::StatementId, 36))
                    .col(big_integer(StatementRuns::Version))
                    .col(timestamp_with_time_zone(StatementRuns::At))
                    .col(string_len(StatementRuns::Status, 16))
                    .col(text_null(StatementRuns::Reason))
                    .col(text(StatementRuns::Totals))
                    .col(text(StatementRuns::Counts))
                    .primary_key(
                        Index::create()
                            .col(StatementRuns::StatementId)
                            .col(StatementRuns::Version),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(StatementDiscrepancies::Table)
                    .if_not_exists()
                    .col(string_len(StatementDiscrepancies::Id, 36).primary_key())
                    .col(string_len(StatementDiscrepancies::StatementId, 36))
                    .col(big_integer(StatementDiscrepancies::Version))
                    .col(string_len(StatementDiscrepancies::Kind, 24))
                    .col(string_len(StatementDiscrepancies::OutTradeNo, 64))
                    .col(string_len_null(StatementDiscrepancies::OutRefundNo, 64))
                    .col(string_len_null(StatementDiscrepancies::ProviderTradeNo, 64))
                    .col(boolean(StatementDiscrepancies::Healed))
                    .col(text_null(StatementDiscrepancies::Bill))
                    .col(text_null(StatementDiscrepancies::Paybridge))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "statement_discrepancies_run",
                StatementDiscrepancies::Table,
                vec![
                    StatementDiscrepancies::StatementId.into_iden(),
                    StatementDiscrepancies::Version.into_iden(),
                ],
            ))
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .add_column(big_integer_null(Fees::Fee))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Refunds::Table)
                    .add_column(big_integer_null(Fees::FeeReturned))
                    .to_owned(),
            )
            .await?;
        // A day's succeeded refunds, for the refunds paybridge saw that the bill must hold.
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX refunds_succeeded_at ON refunds (succeeded_at) \
             WHERE succeeded_at IS NOT NULL",
        )
        .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum StatementFiles {
    Table,
    StatementId,
    Version,
    Sha256,
    Size,
    Gzip,
    At,
}

/// Each run's raw bill, gzip-compressed, with the SHA-256 of the file as downloaded: a statement
/// can be audited later against what the provider sent.
struct M0010StatementFiles;

impl MigrationName for M0010StatementFiles {
    fn name(&self) -> &str {
        "m0010_statement_files"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0010StatementFiles {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StatementFiles::Table)
                    .if_not_exists()
                    .col(string_len(StatementFiles::StatementId, 36))
                    .col(big_integer(StatementFiles::Version))
                    .col(string_len(StatementFiles::Sha256, 64))
                    .col(big_integer(StatementFiles::Size))
                    .col(blob(StatementFiles::Gzip))
                    .col(timestamp_with_time_zone(StatementFiles::At))
                    .primary_key(
                        Index::create()
                            .col(StatementFiles::StatementId)
                            .col(StatementFiles::Version),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum StatementFileParts {
    Table,
    StatementId,
    Version,
    Part,
    Gzip,
}

/// The statements' walks over a day: a tenant's paid orders and succeeded refunds in time order
/// (without them, each page of a 10⁶-order day re-read the tenant's orders and sorted them); and
/// a run's raw bill kept in parts.
struct M0011StatementIndexes;

impl MigrationName for M0011StatementIndexes {
    fn name(&self) -> &str {
        "m0011_statement_indexes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0011StatementIndexes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // Partial: an order enters it once, when paid; a new order writes nothing here.
        db.execute_unprepared(
            "CREATE INDEX orders_tenant_paid ON orders (tenant_id, paid_at, id) \
             WHERE paid_at IS NOT NULL",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX refunds_tenant_succeeded ON refunds (tenant_id, succeeded_at, id) \
             WHERE succeeded_at IS NOT NULL",
        )
        .await?;
        // Replaced by the tenant's index (the statements were its only reader).
        db.execute_unprepared("DROP INDEX refunds_succeeded_at")
            .await?;
        // A raw bill is kept in parts: a 10⁶-line bill is never held in memory, compressed or not.
        manager
            .create_table(
                Table::create()
                    .table(StatementFileParts::Table)
                    .if_not_exists()
                    .col(string_len(StatementFileParts::StatementId, 36))
                    .col(big_integer(StatementFileParts::Version))
                    .col(big_integer(StatementFileParts::Part))
                    .col(blob(StatementFileParts::Gzip))
                    .primary_key(
                        Index::create()
                            .col(StatementFileParts::StatementId)
                            .col(StatementFileParts::Version)
                            .col(StatementFileParts::Part),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

/// The reconciler's and the webhook worker's indexes hold only the rows they look for: a paid
/// order, a delivered or unsendable webhook leaves them (one deletion) instead of moving to
/// another part of an index that grew with every order and every event ever made. Their queries
/// name the status as a literal (`store::status_is`).
struct M0012WorkIndexes;

impl MigrationName for M0012WorkIndexes {
    fn name(&self) -> &str {
        "m0012_work_indexes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0012WorkIndexes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "CREATE INDEX orders_pending_next_check ON orders (next_check_at) \
             WHERE status = 'pending'",
            "DROP INDEX orders_status_next_check",
            "CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (next_attempt_at) \
             WHERE status = 'pending'",
            "CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (updated_at) \
             WHERE status = 'failed'",
            "DROP INDEX webhook_deliveries_due",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

/// An order's fee moves out of its row into `order_fees` (one narrow row an order, keyed by its
/// id; on SQLite without a rowid): a statement run that records 10⁶ fees appended ~30 MB there,
/// where writing them into the orders' rows rewrote every page of the day's orders (~800 MB through
/// the WAL and again at its checkpoint). A fee is no state of the order: the one writer of order
/// state no longer guards it.
struct M0013OrderFees;

impl MigrationName for M0013OrderFees {
    fn name(&self) -> &str {
        "m0013_order_fees"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0013OrderFees {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let create = match manager.get_database_backend() {
            sea_orm::DbBackend::Sqlite => {
                "CREATE TABLE order_fees (order_id TEXT NOT NULL PRIMARY KEY, fee INTEGER NOT NULL) \
                 WITHOUT ROWID"
            }
            _ => {
                "CREATE TABLE order_fees (order_id VARCHAR NOT NULL PRIMARY KEY, fee BIGINT NOT NULL)"
            }
        };
        for sql in [
            create,
            "INSERT INTO order_fees (order_id, fee) SELECT id, fee FROM orders WHERE fee IS NOT NULL",
            "ALTER TABLE orders DROP COLUMN fee",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

/// `orders_paid_at` goes: every payment wrote it beside `orders_tenant_paid` (`tenant_id, paid_at,
/// id`), and a notification's commit costs about four pages for each b-tree it writes
/// (bench/RESULTS.md, "What a commit writes"). Its one reader, the console's payments per hour
/// of every tenant, now reads `orders_tenant_paid` one tenant at a time
/// (`store::console::Series::Payments`).
struct M0014DropPaidAt;

impl MigrationName for M0014DropPaidAt {
    fn name(&self) -> &str {
        "m0014_drop_orders_paid_at"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0014DropPaidAt {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX orders_paid_at")
            .await?;
        Ok(())
    }
}
