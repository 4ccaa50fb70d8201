//! Provider notifications: verify, apply, record the attempt, and only then acknowledge.
//!
//! The event, its outbox rows and the attempt record are one write: the provider's success
//! acknowledgement is built only after the commit that holds them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use paybridge_core::money::Fen;
use paybridge_core::provider::{
    AckBody, IncomingNotification, NotificationRejection, NotifyChannel, OrderLookup,
    OrderSnapshot, ProviderEvent,
};
use sha2::{Digest, Sha256};

use super::orders::{apply_in, closed_notification_event, payment_event, refunded_outside_event};
use super::refunds::apply_refund_event_in;
use super::{Failure, FailureKind};
use crate::db::entities::order;
use crate::state::AppState;
use crate::store::attempts::{NewAttempt, record_attempt};
use crate::store::{Applied, ApplyError, Store, StoreError};

/// A received notification.
pub struct Received<'a> {
    /// Tenant id of the notify URL.
    pub tenant_id: &'a str,
    /// Provider kind of the notify URL.
    pub kind: &'a str,
    /// Payment or refund.
    pub channel: NotifyChannel,
    /// The request's `Content-Type`.
    pub content_type: Option<&'a str>,
    /// The raw body.
    pub body: &'a [u8],
    /// The request's headers (UTF-8 values, lowercase names), for providers that sign in them.
    pub headers: &'a [(&'a str, &'a str)],
    /// The client's address, for the per-IP rate limit.
    pub client_ip: Option<std::net::IpAddr>,
}

/// The answer to the provider.
pub struct Acknowledgement {
    /// The provider's body (success or failure).
    pub body: AckBody,
    /// A status other than the body's own: 400 for an undecodable body, 500 when storage failed
    /// (the provider sends it again).
    pub status: Option<u16>,
}

/// The provider's view of this tenant's orders. A storage failure is not "no such order": it is
/// remembered, and the notification is then answered with the provider's failure body so that the
/// provider sends it again, whatever the provider concluded from the missing order.
struct TenantOrders<'a> {
    store: &'a Store,
    tenant_id: &'a str,
    kind: &'a str,
    failed: AtomicBool,
    /// The last order row read, handed to the write (which then need not read it again unless
    /// it changed meanwhile: `store::orders::apply_order_event`).
    read: Mutex<Option<order::Model>>,
}

impl TenantOrders<'_> {
    fn seen<T>(&self, found: Result<Option<T>, StoreError>) -> Option<T> {
        found.unwrap_or_else(|e| {
            tracing::error!(tenant = self.tenant_id, error = %e, "notification: order lookup failed");
            self.failed.store(true, Ordering::Relaxed);
            None
        })
    }
}

#[async_trait]
impl OrderLookup for TenantOrders<'_> {
    async fn find_order(&self, out_trade_no: &str) -> Option<OrderSnapshot> {
        let o = self.seen(self.store.find_order(self.tenant_id, out_trade_no).await)?;
        let snapshot = (o.provider == self.kind).then(|| OrderSnapshot {
            amount: Fen::new(o.amount),
            provider_data: serde_json::from_str(&o.provider_data)
                .unwrap_or(serde_json::Value::Null),
        });
        if let Ok(mut read) = self.read.lock() {
            *read = Some(o);
        }
        snapshot
    }

    async fn find_refund(&self, out_trade_no: &str, out_refund_no: &str) -> Option<Fen> {
        let order = self.seen(self.store.find_order(self.tenant_id, out_trade_no).await)?;
        if order.provider != self.kind {
            return None;
        }
        let refund = self.seen(
            self.store
                .find_refund(self.tenant_id, out_trade_no, out_refund_no)
                .await,
        )?;
        Some(Fen::new(refund.amount))
    }
}

/// What the write decided.
struct Decision {
    /// `accepted`, `duplicate` or `rejected` (as recorded).
    outcome: &'static str,
    rejection: Option<NotificationRejection>,
}

impl Decision {
    fn accepted(duplicate: bool) -> Self {
        Decision {
            outcome: if duplicate { "duplicate" } else { "accepted" },
            rejection: None,
        }
    }

    fn rejected(rejection: NotificationRejection) -> Self {
        Decision {
            outcome: "rejected",
            rejection: Some(rejection),
        }
    }
}

/// The fixed code of a refusal, for metrics and the dashboard (the text can quote the body).
pub fn reason_code(rejection: &NotificationRejection) -> &'static str {
    match rejection {
        NotificationRejection::Undecodable(_) => "undecodable",
        NotificationRejection::BadSignature => "bad_signature",
        NotificationRejection::Mismatch { .. } => "mismatch",
        NotificationRejection::Unknown(_) => "unknown",
        NotificationRejection::ReportedFailure(_) => "reported_failure",
        NotificationRejection::Unsupported(_) => "unsupported",
    }
}

/// The verdict of a recorded outcome: `accepted`, `duplicate` or `refused`.
pub fn verdict(outcome: &str) -> &'static str {
    match outcome {
        "accepted" => "accepted",
        "duplicate" => "duplicate",
        _ => "refused",
    }
}

/// Apply a verified event in `txn`. A refusal (unknown order, another amount, a transition the
/// table refuses) wrote nothing and is the decision; a storage failure fails the write.
async fn apply_event(
    txn: &sea_orm::DatabaseTransaction,
    tenant_id: &str,
    kind: &str,
    event: &ProviderEvent,
    read_before: Option<&order::Model>,
) -> Result<Decision, StoreError> {
    let applied = match event {
        ProviderEvent::Payment(p) => apply_in(
            txn,
            tenant_id,
            kind,
            &p.out_trade_no,
            &payment_event(p, true),
            read_before,
        )
        .await
        .map(|a| matches!(a, Applied::Duplicate(_))),
        ProviderEvent::Closed {
            out_trade_no,
            event_id,
        } => apply_in(
            txn,
            tenant_id,
            kind,
            out_trade_no,
            &closed_notification_event(event_id),
            read_before,
        )
        .await
        .map(|a| matches!(a, Applied::Duplicate(_))),
        ProviderEvent::Refund(r) => apply_refund_event_in(txn, tenant_id, kind, r)
            .await
            .map(|_| false),
        ProviderEvent::RefundedOutside {
            out_trade_no,
            out_refund_no,
            event_id,
        } => apply_in(
            txn,
            tenant_id,
            kind,
            out_trade_no,
            &refunded_outside_event(event_id, out_refund_no.as_deref()),
            read_before,
        )
        .await
        .map(|a| matches!(a, Applied::Duplicate(_))),
    };
    let rejection = match applied {
        Ok(duplicate) => return Ok(Decision::accepted(duplicate)),
        Err(ApplyError::Store(e)) => return Err(e),
        Err(ApplyError::UnknownOrder) => NotificationRejection::Unknown("order"),
        Err(ApplyError::AmountMismatch { .. }) => {
            NotificationRejection::Mismatch { field: "amount" }
        }
        Err(ApplyError::RefundNoMismatch { .. }) => {
            NotificationRejection::Mismatch { field: "refund_id" }
        }
        Err(ApplyError::Transition(t)) => NotificationRejection::Unsupported(t.to_string()),
        Err(ApplyError::RefundTransition(t)) => {
            tracing::warn!(tenant = tenant_id, error = %t, "refund report contradicts a final status");
            NotificationRejection::Unsupported(t.to_string())
        }
    };
    Ok(Decision::rejected(rejection))
}

/// Verify a notification, apply it and record the attempt in one write, and build the provider's
/// acknowledgement after its commit. `Err` is for a notification that names no tenant or
/// provider here, or is too large.
///
/// No span of its own: the request's (with its id, and the tenant in the URL) is enough, and a
/// span per notification cost about a tenth of a notification's CPU in the benchmark.
pub async fn receive(state: &AppState, n: Received<'_>) -> Result<Acknowledgement, Failure> {
    let received = crate::store::now();
    if n.body.len() > state.config.http.max_notification_bytes {
        return Err(Failure::new(
            FailureKind::TooLarge,
            "body_too_large",
            "notification body too large",
        ));
    }
    let Some(tenant) = state.tenants.get(n.tenant_id) else {
        return Err(Failure::not_found("tenant"));
    };
    // A disabled provider still verifies notifications of its existing orders: that money moved.
    let Some(provider) = tenant.any_provider(n.kind).cloned() else {
        return Err(Failure::not_found("provider"));
    };
    let channel: &'static str = match n.channel {
        NotifyChannel::Payment => "payment",
        NotifyChannel::Refund => "refund",
    };
    let count = |verdict: &'static str, reason: Option<&'static str>| {
        state
            .metrics
            .notification(provider.kind(), channel, verdict, reason);
    };
    let incoming = IncomingNotification {
        channel: n.channel,
        content_type: n.content_type,
        body: n.body,
        headers: n.headers,
    };
    // Before any work: the provider's failure body, so that it sends the notification again later.
    if !state.limits.notify(n.client_ip, n.tenant_id) {
        count("refused", Some("rate_limited"));
        let limited = NotificationRejection::Unsupported("rate limited".to_owned());
        return Ok(Acknowledgement {
            body: provider.acknowledgement_for(&incoming, Err(&limited)),
            status: Some(429),
        });
    }
    let lookup = TenantOrders {
        store: &state.store,
        tenant_id: n.tenant_id,
        kind: n.kind,
        failed: AtomicBool::new(false),
        read: Mutex::new(None),
    };
    let verified = provider.verify_notification(&incoming, &lookup).await;
    if lookup.failed.load(Ordering::Relaxed) {
        // The verdict rests on a read that failed: nothing is recorded as refused.
        count("refused", Some("storage_unavailable"));
        let failed = NotificationRejection::Unsupported("temporary failure".to_owned());
        return Ok(Acknowledgement {
            body: provider.acknowledgement_for(&incoming, Err(&failed)),
            status: Some(500),
        });
    }
    let undecodable = matches!(verified, Err(NotificationRejection::Undecodable(_)));
    // Refused before the signature verified: anyone can send these. A bounded sample is
    // recorded; the rest are counted only.
    if let Err(
        rejection @ (NotificationRejection::Undecodable(_) | NotificationRejection::BadSignature),
    ) = &verified
        && !state.limits.record_unverified(n.tenant_id, n.kind)
    {
        count("refused", Some(reason_code(rejection)));
        state
            .metrics
            .notification_unrecorded(provider.kind(), channel);
        return Ok(Acknowledgement {
            body: provider.acknowledgement_for(&incoming, Err(rejection)),
            status: undecodable.then_some(400),
        });
    }
    let attempt = NewAttempt {
        tenant_id: n.tenant_id.to_owned(),
        provider: n.kind.to_owned(),
        channel,
        out_trade_no: verified.as_ref().ok().map(|e| e.out_trade_no().to_owned()),
        outcome: "rejected",
        reason: None,
        reason_code: None,
        body_sha256: hex::encode(Sha256::digest(n.body)),
    };
    let (tenant_id, kind) = (n.tenant_id.to_owned(), n.kind.to_owned());
    let read_before = lookup.read.into_inner().ok().flatten();
    let written = state
        .store
        .write(move |txn| {
            Box::pin(async move {
                let decision = match verified {
                    Ok(event) => {
                        apply_event(txn, &tenant_id, &kind, &event, read_before.as_ref()).await?
                    }
                    Err(rejection) => Decision::rejected(rejection),
                };
                let attempt = NewAttempt {
                    outcome: decision.outcome,
                    reason: decision.rejection.as_ref().map(ToString::to_string),
                    reason_code: decision.rejection.as_ref().map(reason_code),
                    ..attempt
                };
                record_attempt(txn, attempt, received).await?;
                Ok::<_, StoreError>(decision)
            })
        })
        .await;
    let (decision, status) = match written {
        Ok(decision) => {
            count(
                verdict(decision.outcome),
                decision.rejection.as_ref().map(reason_code),
            );
            (decision, undecodable.then_some(400))
        }
        Err(e) => {
            tracing::error!(error = %e, tenant = n.tenant_id, "cannot apply notification");
            count("refused", Some("storage_unavailable"));
            let failed = NotificationRejection::Unsupported("temporary failure".to_owned());
            (Decision::rejected(failed), Some(500))
        }
    };
    let body = match &decision.rejection {
        None => provider.acknowledgement_for(&incoming, Ok(())),
        Some(rejection) => {
            tracing::warn!(tenant = n.tenant_id, provider = n.kind, reason = %rejection, "notification refused");
            provider.acknowledgement_for(&incoming, Err(rejection))
        }
    };
    Ok(Acknowledgement { body, status })
}
