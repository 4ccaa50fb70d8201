//! The admin tables. Every step is idempotent (`IF NOT EXISTS`, insert-or-ignore), so the same
//! migrations can run from the server's migrator and from the CLI's own without clashing.

use sea_orm::sea_query::OnConflict;
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// The migrations of the admin tables, named `admin_m0001_…`, for a host migrator to append.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(M0001TenantStore)]
}

/// A migrator with only the admin tables, recording itself in `admin_seaql_migrations` so it
/// never disagrees with the server's `seaql_migrations` about which files exist.
pub struct AdminMigrator;

impl MigratorTrait for AdminMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        migrations()
    }

    fn migration_table_name() -> DynIden {
        Alias::new("admin_seaql_migrations").into_iden()
    }
}

#[derive(DeriveIden)]
enum AdminTenants {
    Table,
    Id,
    Document,
    BaseDir,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AdminTenantVersions {
    Table,
    Id,
    TenantId,
    Version,
    Document,
    Actor,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AdminAudit {
    Table,
    Id,
    At,
    Actor,
    Action,
    TenantId,
    Diff,
}

#[derive(DeriveIden)]
enum AdminRetiredKeys {
    Table,
    Id,
    TenantId,
    Digest,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum AdminConfigState {
    Table,
    Id,
    Version,
}

struct M0001TenantStore;

impl MigrationName for M0001TenantStore {
    fn name(&self) -> &str {
        "admin_m0001_tenant_store"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0001TenantStore {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AdminTenants::Table)
                    .if_not_exists()
                    .col(string_len(AdminTenants::Id, 64).primary_key())
                    .col(text(AdminTenants::Document))
                    .col(text(AdminTenants::BaseDir))
                    .col(big_integer(AdminTenants::Version))
                    .col(timestamp_with_time_zone(AdminTenants::CreatedAt))
                    .col(timestamp_with_time_zone(AdminTenants::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AdminTenantVersions::Table)
                    .if_not_exists()
                    .col(string_len(AdminTenantVersions::Id, 36).primary_key())
                    .col(string_len(AdminTenantVersions::TenantId, 64))
                    .col(big_integer(AdminTenantVersions::Version))
                    .col(text(AdminTenantVersions::Document))
                    .col(text(AdminTenantVersions::Actor))
                    .col(timestamp_with_time_zone(AdminTenantVersions::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("admin_tenant_versions_tenant_version")
                    .table(AdminTenantVersions::Table)
                    .col(AdminTenantVersions::TenantId)
                    .col(AdminTenantVersions::Version)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AdminAudit::Table)
                    .if_not_exists()
                    .col(big_pk_auto(AdminAudit::Id))
                    .col(timestamp_with_time_zone(AdminAudit::At))
                    .col(text(AdminAudit::Actor))
                    .col(string_len(AdminAudit::Action, 64))
                    .col(string_len_null(AdminAudit::TenantId, 64))
                    .col(text(AdminAudit::Diff))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("admin_audit_tenant")
                    .table(AdminAudit::Table)
                    .col(AdminAudit::TenantId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AdminRetiredKeys::Table)
                    .if_not_exists()
                    .col(string_len(AdminRetiredKeys::Id, 36).primary_key())
                    .col(string_len(AdminRetiredKeys::TenantId, 64))
                    .col(string_len(AdminRetiredKeys::Digest, 64))
                    .col(timestamp_with_time_zone(AdminRetiredKeys::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("admin_retired_keys_tenant")
                    .table(AdminRetiredKeys::Table)
                    .col(AdminRetiredKeys::TenantId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AdminConfigState::Table)
                    .if_not_exists()
                    .col(integer(AdminConfigState::Id).primary_key())
                    .col(big_integer(AdminConfigState::Version))
                    .to_owned(),
            )
            .await?;
        let seed = Query::insert()
            .into_table(AdminConfigState::Table)
            .columns([AdminConfigState::Id, AdminConfigState::Version])
            .values_panic([1.into(), 0i64.into()])
            .on_conflict(
                OnConflict::column(AdminConfigState::Id)
                    .do_nothing()
                    .to_owned(),
            )
            .to_owned();
        manager.exec_stmt(seed).await?;
        Ok(())
    }
}
