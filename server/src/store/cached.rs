//! Inserts whose SQL is the same on every call, built by sea-orm once per backend and then only
//! bound. sea-orm builds an `INSERT` on every call (the query's tree, then its text): 10 000 to
//! 20 000 instructions for a row of ten columns, on the path of every notification (its provider
//! event, attempt, outbox event and delivery) and every order. The text depends only on the
//! table, the columns set and the conflict clause; an insert here sets every column.

use std::sync::OnceLock;

use sea_orm::{
    ActiveModelTrait, ActiveValue, ConnectionTrait, DbBackend, DbErr, EntityTrait, IdenStatic,
    Insert, Iterable, QueryTrait, Statement,
};

/// The SQL of one insert, per backend. Use one per call site (a `static`), always with the same
/// conflict columns.
#[derive(Debug)]
pub struct CachedInsert {
    sqlite: OnceLock<String>,
    postgres: OnceLock<String>,
}

impl CachedInsert {
    /// Nothing built yet.
    pub const fn new() -> Self {
        CachedInsert {
            sqlite: OnceLock::new(),
            postgres: OnceLock::new(),
        }
    }

    /// The statement sea-orm's `Insert::one(am)` builds on `backend` (with `ON CONFLICT DO
    /// NOTHING` on `conflict`'s unique key, unless empty). Every column of `am` must be set.
    pub fn statement<A: ActiveModelTrait>(
        &self,
        backend: DbBackend,
        mut am: A,
        conflict: &[<A::Entity as EntityTrait>::Column],
    ) -> Result<Statement, DbErr> {
        if let Some(column) = <A::Entity as EntityTrait>::Column::iter().find(|c| am.is_not_set(*c))
        {
            return Err(DbErr::Custom(format!(
                "an insert of cached SQL sets every column; {} is not set",
                column.as_str()
            )));
        }
        let cell = match backend {
            DbBackend::Sqlite => Some(&self.sqlite),
            DbBackend::Postgres => Some(&self.postgres),
            _ => None,
        };
        let built = cell.and_then(OnceLock::get).cloned();
        let sql = match built {
            Some(sql) => sql,
            None => {
                let insert = Insert::one(am.clone());
                let sql = if conflict.is_empty() {
                    insert.build(backend).sql
                } else {
                    insert
                        .on_conflict_do_nothing_on(conflict.iter().copied())
                        .build(backend)
                        .sql
                };
                match cell {
                    Some(cell) => cell.get_or_init(|| sql).clone(),
                    None => sql,
                }
            }
        };
        let mut values = Vec::new();
        for column in <A::Entity as EntityTrait>::Column::iter() {
            if let ActiveValue::Set(v) | ActiveValue::Unchanged(v) = am.take(column) {
                values.push(v);
            }
        }
        Ok(Statement::from_sql_and_values(backend, sql, values))
    }

    /// Run the insert in `db`: the rows inserted (0: the conflict clause skipped it).
    pub async fn exec<C: ConnectionTrait, A: ActiveModelTrait>(
        &self,
        db: &C,
        am: A,
        conflict: &[<A::Entity as EntityTrait>::Column],
    ) -> Result<u64, DbErr> {
        let st = self.statement(db.get_database_backend(), am, conflict)?;
        Ok(db.execute_raw(st).await?.rows_affected())
    }
}

impl Default for CachedInsert {
    fn default() -> Self {
        CachedInsert::new()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use sea_orm::ActiveValue::Set;

    use super::*;
    use crate::db::entities::{notification_attempt, provider_event};

    fn event(n: u32, payload: &str) -> provider_event::ActiveModel {
        provider_event::ActiveModel {
            id: Set(format!("id-{n}")),
            tenant_id: Set(format!("tenant-{n}")),
            provider: Set("wechat_miniprogram".into()),
            event_id: Set(format!("event-{n}")),
            order_id: Set(format!("order-{n}")),
            kind: Set("payment".into()),
            payload: Set(payload.into()),
            received_at: Set(Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, n).unwrap()),
        }
    }

    fn attempt(n: u32, reason: Option<&str>) -> notification_attempt::ActiveModel {
        notification_attempt::ActiveModel {
            id: Set(format!("a-{n}")),
            tenant_id: Set("t".into()),
            provider: Set("alipay_app".into()),
            channel: Set("notify".into()),
            out_trade_no: Set(Some(format!("no-{n}"))),
            outcome: Set("refused".into()),
            reason: Set(reason.map(str::to_owned)),
            reason_code: Set(None),
            body_sha256: Set("ab".repeat(32)),
            received_at: Set(Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, n).unwrap()),
        }
    }

    /// Built twice, with other values the second time (the second answer comes from the
    /// cache): each time exactly what sea-orm builds, SQL and values, on both backends.
    #[test]
    fn a_cached_insert_is_the_statement_sea_orm_builds() {
        use provider_event::Column as C;
        let conflict = [C::TenantId, C::Provider, C::EventId];
        for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
            let events = CachedInsert::new();
            let attempts = CachedInsert::new();
            for (n, text, reason) in [(1, "{}", Some("bad sign")), (2, r#"{"a":1}"#, None)] {
                let ours = events
                    .statement(backend, event(n, text), &conflict)
                    .unwrap();
                let theirs = Insert::one(event(n, text))
                    .on_conflict_do_nothing_on(conflict)
                    .build(backend);
                assert_eq!(ours, theirs, "{backend:?} {n}");
                let ours = attempts
                    .statement(backend, attempt(n, reason), &[])
                    .unwrap();
                let theirs = Insert::one(attempt(n, reason)).build(backend);
                assert_eq!(ours, theirs, "{backend:?} {n}");
            }
        }
    }

    #[test]
    fn a_column_not_set_is_refused_by_name() {
        let mut am = event(1, "{}");
        am.payload = ActiveValue::NotSet;
        let err = CachedInsert::new()
            .statement(DbBackend::Sqlite, am, &[])
            .unwrap_err();
        assert!(err.to_string().contains("payload is not set"), "{err}");
    }
}
