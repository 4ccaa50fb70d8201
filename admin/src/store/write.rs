//! The write path of every change: read the current tenant → plan the new document (validated)
//! → one transaction that compare-and-sets the tenant row on its version, records the version and
//! the audit entry, retires keys and bumps the config version. Losing the race re-reads and tries
//! again.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait, TryInsertResult,
};
use uuid::Uuid;

use super::entities::{audit, config_state, retired_key, tenant, tenant_version};
use super::{StoreError, StoredTenant, TenantStore};
use crate::diff::diff;
use crate::format::render_toml;

const ATTEMPTS: u32 = 30;

/// What a write did.
#[derive(Debug, Clone)]
pub struct Written {
    /// Whether the tenant is new.
    pub created: bool,
    /// The tenant after the change (decrypted).
    pub tenant: StoredTenant,
}

/// The document a change wants, computed from the current one.
pub(super) struct Plan {
    /// The audit action.
    pub(super) action: &'static str,
    /// The new plaintext document; `None` deletes the tenant.
    pub(super) after: Option<toml::Table>,
    /// The tenant's base folder.
    pub(super) base_dir: PathBuf,
    /// Key digests to retire, with their expiry.
    pub(super) retire: Vec<(String, DateTime<Utc>)>,
    /// The document with its platforms' endpoints: what decides whether plaintext secrets are
    /// a sandbox's ([`crate::secrets::with_platform_endpoints`]).
    pub(super) endpoints: toml::Table,
}

impl Plan {
    /// Delete the document `current` (its versions and audit entries stay).
    pub(super) fn delete(current: &StoredTenant) -> Plan {
        Plan {
            action: "delete",
            after: None,
            base_dir: current.base_dir.clone(),
            retire: Vec::new(),
            endpoints: toml::Table::new(),
        }
    }
}

impl TenantStore {
    /// Run `plan` on the current tenant and commit it, retrying when another writer got there
    /// first. A platform's key is no tenant: it is refused as not found.
    pub(super) async fn modify<F>(
        &self,
        id: &str,
        actor: &str,
        expected: Option<i64>,
        plan: F,
    ) -> Result<Written, StoreError>
    where
        F: Fn(Option<&StoredTenant>) -> Result<Plan, StoreError>,
    {
        if super::is_platform_key(id) {
            return Err(StoreError::tenant_not_found(id));
        }
        self.modify_document(id, actor, expected, plan).await
    }

    /// [`TenantStore::modify`] for any document key (a tenant's id, or a platform's key).
    pub(super) async fn modify_document<F>(
        &self,
        id: &str,
        actor: &str,
        expected: Option<i64>,
        plan: F,
    ) -> Result<Written, StoreError>
    where
        F: Fn(Option<&StoredTenant>) -> Result<Plan, StoreError>,
    {
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let current = self.get_document(id).await?;
            if let (Some(want), Some(cur)) = (expected, &current)
                && cur.version != want
            {
                return Err(StoreError::VersionMismatch {
                    id: id.to_owned(),
                    expected: want,
                    actual: cur.version,
                });
            }
            let plan = plan(current.as_ref())?;
            if self.commit(id, actor, current.as_ref(), &plan).await? {
                let created = current.is_none();
                let tenant = match plan.after {
                    Some(_) => self
                        .get_document(id)
                        .await?
                        .ok_or_else(|| StoreError::tenant_not_found(id))?,
                    None => current.ok_or_else(|| StoreError::tenant_not_found(id))?,
                };
                return Ok(Written { created, tenant });
            }
        }
        Err(StoreError::Conflict(format!(
            "tenant {id:?} kept changing concurrently; try again"
        )))
    }

    /// One transaction. `Ok(false)`: someone else changed the tenant first.
    async fn commit(
        &self,
        id: &str,
        actor: &str,
        current: Option<&StoredTenant>,
        plan: &Plan,
    ) -> Result<bool, StoreError> {
        let sealed = match &plan.after {
            Some(doc) => Some(render_toml(&self.secrets.seal_as(
                id,
                doc,
                &plan.endpoints,
            )?)),
            None => None,
        };
        let txn = self.db.begin().await?;
        let now = Utc::now();
        let version = match current {
            Some(c) => c.version + 1,
            None => last_version(&txn, id).await? + 1,
        };
        let base_dir = plan.base_dir.to_string_lossy().into_owned();
        let applied = match (current, &sealed) {
            (None, Some(document)) => {
                let row = tenant::ActiveModel {
                    id: Set(id.to_owned()),
                    document: Set(document.clone()),
                    base_dir: Set(base_dir),
                    version: Set(version),
                    created_at: Set(now),
                    updated_at: Set(now),
                };
                let inserted = tenant::Entity::insert(row)
                    .on_conflict_do_nothing_on([tenant::Column::Id])
                    .exec_without_returning(&txn)
                    .await?;
                matches!(inserted, TryInsertResult::Inserted(n) if n > 0)
            }
            (Some(c), Some(document)) => {
                tenant::Entity::update_many()
                    .col_expr(tenant::Column::Document, Expr::value(document.clone()))
                    .col_expr(tenant::Column::BaseDir, Expr::value(base_dir))
                    .col_expr(tenant::Column::Version, Expr::value(version))
                    .col_expr(tenant::Column::UpdatedAt, Expr::value(now))
                    .filter(tenant::Column::Id.eq(id))
                    .filter(tenant::Column::Version.eq(c.version))
                    .exec(&txn)
                    .await?
                    .rows_affected
                    == 1
            }
            (Some(c), None) => {
                let gone = tenant::Entity::delete_many()
                    .filter(tenant::Column::Id.eq(id))
                    .filter(tenant::Column::Version.eq(c.version))
                    .exec(&txn)
                    .await?
                    .rows_affected
                    == 1;
                retired_key::Entity::delete_many()
                    .filter(retired_key::Column::TenantId.eq(id))
                    .exec(&txn)
                    .await?;
                gone
            }
            (None, None) => false,
        };
        if !applied {
            txn.rollback().await?;
            return Ok(false);
        }
        if let Some(document) = sealed {
            tenant_version::Entity::insert(tenant_version::ActiveModel {
                id: Set(Uuid::new_v4().to_string()),
                tenant_id: Set(id.to_owned()),
                version: Set(version),
                document: Set(document),
                actor: Set(actor.to_owned()),
                created_at: Set(now),
            })
            .exec_without_returning(&txn)
            .await?;
        }
        for (digest, expires_at) in &plan.retire {
            retired_key::Entity::insert(retired_key::ActiveModel {
                id: Set(Uuid::new_v4().to_string()),
                tenant_id: Set(id.to_owned()),
                digest: Set(digest.clone()),
                expires_at: Set(*expires_at),
            })
            .exec_without_returning(&txn)
            .await?;
        }
        retired_key::Entity::delete_many()
            .filter(retired_key::Column::ExpiresAt.lte(now))
            .exec(&txn)
            .await?;
        let changes = diff(current.map(|c| &c.document), plan.after.as_ref());
        let changes = serde_json::to_string(&changes)
            .map_err(|e| StoreError::Corrupt(format!("diff: {e}")))?;
        audit::Entity::insert(audit::ActiveModel {
            at: Set(now),
            actor: Set(actor.to_owned()),
            action: Set(plan.action.to_owned()),
            tenant_id: Set(Some(id.to_owned())),
            diff: Set(changes),
            ..Default::default()
        })
        .exec_without_returning(&txn)
        .await?;
        bump_config_version(&txn).await?;
        txn.commit().await?;
        Ok(true)
    }
}

/// A short random pause that grows with the attempt, so racing writers spread out.
fn backoff(attempt: u32) -> Duration {
    let mut byte = [0u8; 1];
    let jitter = aws_lc_rs::rand::fill(&mut byte).map_or(0, |()| u64::from(byte[0]) % 20);
    Duration::from_millis(u64::from(Ord::min(attempt, 10)) * 5 + jitter)
}

async fn last_version(txn: &DatabaseTransaction, id: &str) -> Result<i64, StoreError> {
    Ok(tenant_version::Entity::find()
        .filter(tenant_version::Column::TenantId.eq(id))
        .order_by_desc(tenant_version::Column::Version)
        .one(txn)
        .await?
        .map_or(0, |v| v.version))
}

async fn bump_config_version(txn: &DatabaseTransaction) -> Result<(), StoreError> {
    let bumped = config_state::Entity::update_many()
        .col_expr(
            config_state::Column::Version,
            Expr::col(config_state::Column::Version).add(1),
        )
        .filter(config_state::Column::Id.eq(1))
        .exec(txn)
        .await?;
    if bumped.rows_affected == 0 {
        config_state::Entity::insert(config_state::ActiveModel {
            id: Set(1),
            version: Set(1),
        })
        .exec_without_returning(txn)
        .await?;
    }
    Ok(())
}
