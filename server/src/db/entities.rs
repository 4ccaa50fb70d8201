//! sea-orm entities. JSON-ish columns are text, so SQLite and PostgreSQL store them alike.

/// An order.
pub mod order {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "orders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub out_trade_no: String,
        pub provider: String,
        pub amount: i64,
        pub currency: String,
        pub description: String,
        pub payer_openid: Option<String>,
        pub client_ip: Option<String>,
        pub attach: Option<String>,
        pub expires_at: DateTimeUtc,
        pub status: String,
        /// JSON array of flag names.
        pub flags: String,
        pub provider_trade_no: Option<String>,
        pub refunded_amount: i64,
        pub paid_at: Option<DateTimeUtc>,
        /// JSON of the client's payment params, once the provider gave them.
        pub client_payment: Option<String>,
        /// JSON the provider keeps with the order.
        pub provider_data: String,
        pub last_notified_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        /// When the reconciler next looks at it (`None`: at once).
        pub next_check_at: Option<DateTimeUtc>,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// Its fee, once its statement is reconciled.
        #[sea_orm(has_one = "super::order_fee::Entity")]
        Fee,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// The provider's fee of an order (fen), once its statement is reconciled: its payment line's
/// fee. Kept beside the order, not in its row (see migration `m0013_order_fees`).
pub mod order_fee {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "order_fees")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: String,
        pub fee: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// The order it is the fee of (no foreign key in the schema).
        #[sea_orm(
            belongs_to = "super::order::Entity",
            from = "Column::OrderId",
            to = "super::order::Column::Id"
        )]
        Order,
    }

    impl Related<super::order::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Order.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// A provider event (notification or query result) that was applied, keyed by the provider's own
/// identity of it.
pub mod provider_event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "provider_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub provider: String,
        pub event_id: String,
        pub order_id: String,
        pub kind: String,
        pub payload: String,
        pub received_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Every notification received, accepted or not.
pub mod notification_attempt {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notification_attempts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub provider: String,
        pub channel: String,
        pub out_trade_no: Option<String>,
        pub outcome: String,
        pub reason: Option<String>,
        pub body_sha256: String,
        pub received_at: DateTimeUtc,
        /// A fixed code of why it was refused (`bad_signature`, `mismatch`, …).
        pub reason_code: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Merchant webhook events, written in the same transaction as the change they describe.
pub mod outbox_event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub event_type: String,
        pub order_id: Option<String>,
        pub data: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A refund of an order.
pub mod refund {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refunds")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub order_id: String,
        pub out_trade_no: String,
        pub out_refund_no: String,
        pub amount: i64,
        pub reason: Option<String>,
        pub status: String,
        pub provider_refund_no: Option<String>,
        /// When the provider first accepted it; `None` while it was never sent successfully.
        pub sent_at: Option<DateTimeUtc>,
        pub succeeded_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        /// When the reconciler next looks at it (`None`: at once).
        pub next_check_at: Option<DateTimeUtc>,
        /// The fee the provider returned on it (fen), once its statement is reconciled.
        pub fee_returned: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A named lease: one holder at a time until it expires (the reconciler's).
pub mod lease {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "leases")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub holder: String,
        pub expires_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The delivery state of one outbox event to the tenant's webhook endpoint.
pub mod webhook_delivery {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_deliveries")]
    pub struct Model {
        /// The outbox event's id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub tenant_id: String,
        /// `pending`, `delivered`, `failed` (gave up) or `not_configured`.
        pub status: String,
        /// Attempts made, in all.
        pub attempts: i32,
        /// Failed attempts since the schedule (re)started: the index into the retry schedule.
        pub backoff_step: i32,
        /// When the next attempt is due; while an attempt is in flight, when its claim expires.
        pub next_attempt_at: Option<DateTimeUtc>,
        /// The claim of the worker pass sending it now.
        pub lease_token: Option<String>,
        /// Bumped by every change, for compare-and-set.
        pub version: i64,
        pub delivered_at: Option<DateTimeUtc>,
        pub last_error: Option<String>,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// One attempt to deliver a webhook, successful or not.
pub mod webhook_attempt {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_attempts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub event_id: String,
        pub tenant_id: String,
        pub at: DateTimeUtc,
        /// The endpoint's HTTP status, when it answered.
        pub status_code: Option<i32>,
        /// Why it failed, when it did.
        pub error: Option<String>,
        pub duration_ms: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// An `Idempotency-Key` of a tenant: the request it was first used with (its fingerprint) and,
/// once that request finished, the answer to replay.
pub mod idempotency_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        /// Hex SHA-256 of the method, the path and the body as a JSON value.
        pub fingerprint: String,
        /// `running` or `done`.
        pub state: String,
        /// The stored answer, once `done`: its HTTP status, `Content-Type` and body.
        pub http_status: Option<i32>,
        pub content_type: Option<String>,
        pub body: Option<String>,
        /// The first request: the key expires `ttl` after it.
        pub created_at: DateTimeUtc,
        /// While `running`: until when the request holds the key (after it, a crashed request's
        /// key is taken over).
        pub locked_until: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// What happened to an order that no other table keeps: provider calls and reconciler actions.
pub mod order_activity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "order_activity")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub out_trade_no: String,
        /// `provider_call` or `reconciler`.
        pub kind: String,
        /// The provider call's endpoint (`create`, `query`, …) or the reconciler's action.
        pub name: String,
        /// A provider call's outcome: `ok`, `error` or `timeout`.
        pub outcome: Option<String>,
        /// A provider call's duration.
        pub latency_ms: Option<i64>,
        /// A failed provider call's error code (`provider_unavailable`, …).
        pub error: Option<String>,
        pub at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A statement: one tenant, one provider kind, one Beijing day, at its latest run.
pub mod statement {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "statements")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub provider: String,
        /// `YYYY-MM-DD`, Beijing.
        pub day: String,
        /// `pending`, `running`, `not_ready`, `reconciled` or `failed`.
        pub status: String,
        pub reason: Option<String>,
        /// The latest run.
        pub version: i64,
        pub lines: i64,
        pub matched: i64,
        pub gross: i64,
        pub refunds: i64,
        pub fees: i64,
        pub net: i64,
        /// JSON `{kind: count}` of the discrepancies.
        pub counts: String,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Each run of a statement, kept whole.
pub mod statement_run {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "statement_runs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub statement_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i64,
        pub at: DateTimeUtc,
        pub status: String,
        pub reason: Option<String>,
        /// JSON totals.
        pub totals: String,
        /// JSON `{kind: count}`.
        pub counts: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// One difference a run found.
pub mod statement_discrepancy {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "statement_discrepancies")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub statement_id: String,
        pub version: i64,
        pub kind: String,
        pub out_trade_no: String,
        pub out_refund_no: Option<String>,
        pub provider_trade_no: Option<String>,
        pub healed: bool,
        /// JSON of the bill's line, if it has one.
        pub bill: Option<String>,
        /// JSON of paybridge's record, if it has one.
        pub paybridge: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A part of a run's raw bill: one gzip member of consecutive bytes of the file (the parts in
/// order are one multi-member gzip file).
pub mod statement_file_part {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "statement_file_parts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub statement_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub part: i64,
        /// The part, gzip-compressed.
        pub gzip: Vec<u8>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A run's raw bill: its hash and size; its bytes are its parts (an earlier version of paybridge
/// kept them whole in `gzip`).
pub mod statement_file {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "statement_files")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub statement_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i64,
        /// SHA-256 (hex) of the file as downloaded.
        pub sha256: String,
        /// Its size in bytes.
        pub size: i64,
        /// The file, gzip-compressed, when kept whole (empty: see its parts).
        pub gzip: Vec<u8>,
        pub at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
