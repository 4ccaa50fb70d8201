//! Schema migrations, applied at start-up.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(M0001Orders), Box::new(M0002RefundsLeases)]
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
