//! `Idempotency-Key`s: claiming a key for a request, storing its answer, and letting the key go
//! when the answer is not to be kept. Each function is one writer job (one transaction).
//!
//! Claiming is race-free on both databases: the row is inserted with `ON CONFLICT DO NOTHING`, so
//! of two requests with one key exactly one inserts (on PostgreSQL the other waits for its
//! commit, then sees the row); taking over an expired key or a crashed request's key is a
//! compare-and-set on the row's `created_at` and `locked_until`.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, TryInsertResult,
};

use super::StoreError;
use crate::db::entities::idempotency_key::{ActiveModel, Column, Entity, Model};

const RUNNING: &str = "running";
const DONE: &str = "done";

/// What a request with a key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Run: the key is this request's until it finishes, or until `lock` (which also tells this
    /// claim from a later one when it is settled).
    Fresh {
        /// The claim's `locked_until`.
        lock: DateTime<Utc>,
    },
    /// The key's first request finished with this answer: replay it.
    Replay {
        /// The status.
        status: u16,
        /// Its `Content-Type`.
        content_type: Option<String>,
        /// The body.
        body: String,
    },
    /// The key's first request is still running.
    InUse,
    /// The key was used with another request (method, path or body).
    Reused,
}

/// The times a claim is judged by.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Now.
    pub now: DateTime<Utc>,
    /// Keys whose first request is older than this are new again.
    pub expired_before: DateTime<Utc>,
    /// Until when a request that claims the key holds it.
    pub lock_until: DateTime<Utc>,
}

/// Claim `key` of `tenant_id` for a request with this fingerprint.
pub async fn claim(
    txn: &DatabaseTransaction,
    tenant_id: &str,
    key: &str,
    fingerprint: &str,
    window: Window,
) -> Result<Claim, StoreError> {
    let row = ActiveModel {
        tenant_id: Set(tenant_id.to_owned()),
        key: Set(key.to_owned()),
        fingerprint: Set(fingerprint.to_owned()),
        state: Set(RUNNING.to_owned()),
        http_status: Set(None),
        content_type: Set(None),
        body: Set(None),
        created_at: Set(window.now),
        locked_until: Set(window.lock_until),
    };
    let inserted = Entity::insert(row)
        .on_conflict_do_nothing_on([Column::TenantId, Column::Key])
        .exec_without_returning(txn)
        .await?;
    if matches!(inserted, TryInsertResult::Inserted(n) if n > 0) {
        return Ok(Claim::Fresh {
            lock: window.lock_until,
        });
    }
    let Some(existing) = Entity::find()
        .filter(Column::TenantId.eq(tenant_id))
        .filter(Column::Key.eq(key))
        .one(txn)
        .await?
    else {
        // Deleted since the insert saw it (a released key): the caller may try again.
        return Ok(Claim::InUse);
    };
    if existing.state == RUNNING && existing.locked_until > window.now {
        return Ok(Claim::InUse);
    }
    if existing.created_at <= window.expired_before {
        // Expired: the key is new. A new first request, whatever the old one was.
        return take_over(txn, &existing, fingerprint, window, true).await;
    }
    if existing.fingerprint != fingerprint {
        return Ok(Claim::Reused);
    }
    if existing.state == RUNNING {
        // Its request never finished (the instance went away): this one runs instead.
        return take_over(txn, &existing, fingerprint, window, false).await;
    }
    let status = existing
        .http_status
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(|| {
            StoreError::Corrupt(format!("idempotency key {key:?} done without a status"))
        })?;
    Ok(Claim::Replay {
        status,
        content_type: existing.content_type,
        body: existing.body.unwrap_or_default(),
    })
}

/// Make `existing` this request's, if nobody changed it meanwhile.
async fn take_over(
    txn: &DatabaseTransaction,
    existing: &Model,
    fingerprint: &str,
    window: Window,
    restart: bool,
) -> Result<Claim, StoreError> {
    let created_at = if restart {
        window.now
    } else {
        existing.created_at
    };
    let updated = Entity::update_many()
        .col_expr(Column::Fingerprint, Expr::value(fingerprint))
        .col_expr(Column::State, Expr::value(RUNNING))
        .col_expr(Column::HttpStatus, Expr::value(Option::<i32>::None))
        .col_expr(Column::ContentType, Expr::value(Option::<String>::None))
        .col_expr(Column::Body, Expr::value(Option::<String>::None))
        .col_expr(Column::CreatedAt, Expr::value(created_at))
        .col_expr(Column::LockedUntil, Expr::value(window.lock_until))
        .filter(Column::TenantId.eq(existing.tenant_id.as_str()))
        .filter(Column::Key.eq(existing.key.as_str()))
        .filter(Column::CreatedAt.eq(existing.created_at))
        .filter(Column::LockedUntil.eq(existing.locked_until))
        .exec(txn)
        .await?;
    Ok(if updated.rows_affected == 1 {
        Claim::Fresh {
            lock: window.lock_until,
        }
    } else {
        Claim::InUse
    })
}

/// Keep the answer of the key's request (the claim that holds `lock`), to replay.
pub async fn finish(
    txn: &DatabaseTransaction,
    tenant_id: &str,
    key: &str,
    lock: DateTime<Utc>,
    status: u16,
    content_type: Option<String>,
    body: String,
) -> Result<(), StoreError> {
    Entity::update_many()
        .col_expr(Column::State, Expr::value(DONE))
        .col_expr(Column::HttpStatus, Expr::value(i32::from(status)))
        .col_expr(Column::ContentType, Expr::value(content_type))
        .col_expr(Column::Body, Expr::value(body))
        .filter(Column::TenantId.eq(tenant_id))
        .filter(Column::Key.eq(key))
        .filter(Column::State.eq(RUNNING))
        .filter(Column::LockedUntil.eq(lock))
        .exec(txn)
        .await?;
    Ok(())
}

/// Let the key go (its answer is not kept: a retry runs again), if the claim that holds `lock`
/// still holds it (a later request may have taken it over).
pub async fn release(
    txn: &DatabaseTransaction,
    tenant_id: &str,
    key: &str,
    lock: DateTime<Utc>,
) -> Result<(), StoreError> {
    Entity::delete_many()
        .filter(Column::TenantId.eq(tenant_id))
        .filter(Column::Key.eq(key))
        .filter(Column::State.eq(RUNNING))
        .filter(Column::LockedUntil.eq(lock))
        .exec(txn)
        .await?;
    Ok(())
}

/// Delete the keys whose first request was before `before` (expired: the key is new again).
pub async fn prune<C: sea_orm::ConnectionTrait>(
    db: &C,
    before: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let done = Entity::delete_many()
        .filter(Column::CreatedAt.lt(before))
        .exec(db)
        .await?;
    Ok(done.rows_affected)
}
