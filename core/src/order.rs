//! The order state machine: one transition table ([`OrderStatus::apply`]) and nothing else changes an
//! order's status.
//!
//! ```text
//! pending ──paid──▶ paid ──refund (part)──▶ partially_refunded ──refund (rest)──▶ refunded
//!    │                 └──────────refund (all)───────────────────────────────────▶ refunded
//!    ├──close──▶ closed ──paid──▶ paid  (+ flag paid_after_close: money arrived after close)
//!    └──fail───▶ failed ──paid──▶ paid  (+ flag paid_after_failure)
//! ```
//!
//! A verified payment is never dropped: money that arrives for a closed or failed order is accepted
//! and flagged for an operator. A repeated event is [`Transition::Unchanged`]. Anything else is a
//! [`TransitionError`] naming both sides.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::money::Fen;

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Created; no payment seen yet.
    Pending,
    /// The provider confirmed the payment.
    Paid,
    /// Closed before payment (by the merchant, the reconciler or the provider).
    Closed,
    /// The provider reported the payment failed.
    Failed,
    /// Some, not all, of the amount was refunded.
    PartiallyRefunded,
    /// The whole amount was refunded.
    Refunded,
}

/// Something that happened to an order, as the state machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEvent {
    /// A verified payment of the full amount.
    Paid,
    /// The order was closed (merchant request, expiry, or provider report).
    Closed,
    /// The provider reported the payment failed.
    Failed,
    /// The provider reports a refund that paybridge did not make (e.g. one made in the provider's
    /// merchant console). The money moved; an operator must look. The status stays.
    RefundedOutside,
    /// Succeeded refunds now total `refunded_total` of an order of `amount`.
    RefundTotal {
        /// Sum of all succeeded refunds, including the new one.
        refunded_total: Fen,
        /// The order amount.
        amount: Fen,
    },
}

/// A note kept on an order for an operator: something unusual but accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum OrderFlag {
    /// A verified payment arrived after the order was closed. The money is real; refund or ship.
    PaidAfterClose,
    /// A verified payment arrived after the provider had reported failure.
    PaidAfterFailure,
    /// The provider reported a refund that was not made through paybridge: `refunded_amount`
    /// does not include it. Reconcile with the provider's records.
    RefundedOutside,
}

/// The outcome of applying an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The order moves to `to`, and gains `flag` if one is given.
    To {
        /// The new status.
        to: OrderStatus,
        /// A flag to add.
        flag: Option<OrderFlag>,
    },
    /// The event was already applied (a duplicate); nothing changes, not even `updated_at`.
    Unchanged,
}

/// An event that the table does not allow from the current status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("order is {from}; cannot apply {event}")]
pub struct TransitionError {
    /// The status the order was in.
    pub from: OrderStatus,
    /// What was attempted.
    pub event: String,
}

impl OrderStatus {
    /// Every status, for exhaustive tests and docs.
    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::Pending,
        OrderStatus::Paid,
        OrderStatus::Closed,
        OrderStatus::Failed,
        OrderStatus::PartiallyRefunded,
        OrderStatus::Refunded,
    ];

    /// The snake_case name used in JSON and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Paid => "paid",
            OrderStatus::Closed => "closed",
            OrderStatus::Failed => "failed",
            OrderStatus::PartiallyRefunded => "partially_refunded",
            OrderStatus::Refunded => "refunded",
        }
    }

    /// Whether money was received for this order (so it may be refunded).
    pub fn is_paid(self) -> bool {
        matches!(
            self,
            OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded
        )
    }

    /// The transition table. The only place that decides what an event does to an order.
    pub fn apply(self, event: OrderEvent) -> Result<Transition, TransitionError> {
        use OrderEvent as E;
        use OrderStatus as S;
        let to = |to| Ok(Transition::To { to, flag: None });
        let refund_status =
            |refunded_total: Fen, amount: Fen| -> Result<Transition, TransitionError> {
                if refunded_total <= Fen::ZERO || refunded_total > amount {
                    return Err(TransitionError {
                        from: self,
                        event: event.to_string(),
                    });
                }
                let target = if refunded_total == amount {
                    S::Refunded
                } else {
                    S::PartiallyRefunded
                };
                if target == self {
                    Ok(Transition::Unchanged)
                } else {
                    to(target)
                }
            };
        match (self, event) {
            (S::Pending, E::Paid) => to(S::Paid),
            (S::Pending, E::Closed) => to(S::Closed),
            (S::Pending, E::Failed) => to(S::Failed),
            (S::Closed, E::Paid) => Ok(Transition::To {
                to: S::Paid,
                flag: Some(OrderFlag::PaidAfterClose),
            }),
            (S::Failed, E::Paid) => Ok(Transition::To {
                to: S::Paid,
                flag: Some(OrderFlag::PaidAfterFailure),
            }),
            (S::Paid | S::PartiallyRefunded | S::Refunded, E::Paid) => Ok(Transition::Unchanged),
            // Same status, with a flag for an operator; a second report adds nothing.
            (S::Paid | S::PartiallyRefunded | S::Refunded, E::RefundedOutside) => {
                Ok(Transition::To {
                    to: self,
                    flag: Some(OrderFlag::RefundedOutside),
                })
            }
            (S::Closed, E::Closed) | (S::Failed, E::Failed) => Ok(Transition::Unchanged),
            (S::Failed, E::Closed) => to(S::Closed),
            (
                S::Paid,
                E::RefundTotal {
                    refunded_total,
                    amount,
                },
            ) => refund_status(refunded_total, amount),
            (
                S::PartiallyRefunded,
                E::RefundTotal {
                    refunded_total,
                    amount,
                },
            ) => refund_status(refunded_total, amount),
            (
                S::Refunded,
                E::RefundTotal {
                    refunded_total,
                    amount,
                },
            ) if refunded_total == amount => Ok(Transition::Unchanged),
            (S::Pending | S::Closed | S::Failed | S::Refunded, E::RefundTotal { .. })
            | (S::Paid | S::PartiallyRefunded | S::Refunded, E::Closed | E::Failed)
            | (S::Pending | S::Closed | S::Failed, E::RefundedOutside)
            | (S::Closed, E::Failed) => Err(TransitionError {
                from: self,
                event: event.to_string(),
            }),
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrderStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown order status {s:?}"))
    }
}

impl fmt::Display for OrderEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderEvent::Paid => f.write_str("payment"),
            OrderEvent::Closed => f.write_str("close"),
            OrderEvent::Failed => f.write_str("failure"),
            OrderEvent::RefundedOutside => f.write_str("a refund made outside paybridge"),
            OrderEvent::RefundTotal {
                refunded_total,
                amount,
            } => {
                write!(
                    f,
                    "refunds totalling {} of {}",
                    refunded_total.get(),
                    amount.get()
                )
            }
        }
    }
}

impl OrderFlag {
    /// The snake_case name used in JSON and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderFlag::PaidAfterClose => "paid_after_close",
            OrderFlag::PaidAfterFailure => "paid_after_failure",
            OrderFlag::RefundedOutside => "refunded_outside",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const AMOUNT: Fen = Fen::new(10);

    #[test]
    fn a_refund_made_outside_flags_a_paid_order_and_keeps_its_status() {
        use OrderStatus as S;
        for s in [S::Paid, S::PartiallyRefunded, S::Refunded] {
            assert_eq!(
                s.apply(OrderEvent::RefundedOutside),
                Ok(Transition::To {
                    to: s,
                    flag: Some(OrderFlag::RefundedOutside)
                })
            );
        }
        for s in [S::Pending, S::Closed, S::Failed] {
            assert!(s.apply(OrderEvent::RefundedOutside).is_err(), "{s}");
        }
    }

    fn refund(total: i64) -> OrderEvent {
        OrderEvent::RefundTotal {
            refunded_total: Fen::new(total),
            amount: AMOUNT,
        }
    }

    #[test]
    fn status_names_round_trip() {
        for s in OrderStatus::ALL {
            assert_eq!(s.as_str().parse::<OrderStatus>(), Ok(s));
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::Value::from(s.as_str()))
            );
        }
    }

    #[test]
    fn the_table_is_exactly_the_documented_one() {
        use OrderStatus as S;
        let events = [
            OrderEvent::Paid,
            OrderEvent::Closed,
            OrderEvent::Failed,
            refund(4),
            refund(10),
        ];
        let mut allowed = Vec::new();
        for from in S::ALL {
            for ev in events {
                if let Ok(Transition::To { to, flag }) = from.apply(ev) {
                    allowed.push((from, ev, to, flag));
                }
            }
        }
        let expected = vec![
            (S::Pending, OrderEvent::Paid, S::Paid, None),
            (S::Pending, OrderEvent::Closed, S::Closed, None),
            (S::Pending, OrderEvent::Failed, S::Failed, None),
            (S::Paid, refund(4), S::PartiallyRefunded, None),
            (S::Paid, refund(10), S::Refunded, None),
            (
                S::Closed,
                OrderEvent::Paid,
                S::Paid,
                Some(OrderFlag::PaidAfterClose),
            ),
            (
                S::Failed,
                OrderEvent::Paid,
                S::Paid,
                Some(OrderFlag::PaidAfterFailure),
            ),
            (S::Failed, OrderEvent::Closed, S::Closed, None),
            (S::PartiallyRefunded, refund(10), S::Refunded, None),
        ];
        assert_eq!(allowed, expected);
    }

    #[test]
    fn refused_transition_names_both_sides() {
        let err = OrderStatus::Paid.apply(OrderEvent::Closed).err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some("order is paid; cannot apply close".to_owned())
        );
    }

    #[test]
    fn refund_totals_outside_the_amount_are_refused() {
        assert!(OrderStatus::Paid.apply(refund(0)).is_err());
        assert!(OrderStatus::Paid.apply(refund(11)).is_err());
        assert!(OrderStatus::Pending.apply(refund(1)).is_err());
    }

    #[derive(Debug, Clone, Copy)]
    enum Ev {
        Paid,
        Closed,
        Failed,
        Refund(i64),
    }

    /// A model of the world: one order, events arrive duplicated and in any order. Whatever
    /// happens, the status stays in the table's reachable set, a payment is counted at most once,
    /// and refunds never exceed the amount.
    fn arb_events() -> impl Strategy<Value = Vec<Ev>> {
        let ev = prop_oneof![
            Just(Ev::Paid),
            Just(Ev::Closed),
            Just(Ev::Failed),
            (1i64..=10).prop_map(Ev::Refund),
        ];
        proptest::collection::vec(ev, 0..40)
    }

    proptest! {
        #[test]
        fn any_event_sequence_keeps_the_order_consistent(events in arb_events()) {
            let mut status = OrderStatus::Pending;
            let mut payments_counted = 0u32;
            let mut refunded = Fen::ZERO;
            let mut flags = Vec::new();
            for ev in events {
                let (event, new_total) = match ev {
                    Ev::Paid => (OrderEvent::Paid, refunded),
                    Ev::Closed => (OrderEvent::Closed, refunded),
                    Ev::Failed => (OrderEvent::Failed, refunded),
                    Ev::Refund(n) => {
                        let total = refunded.checked_add(Fen::new(n)).unwrap_or(refunded);
                        (OrderEvent::RefundTotal { refunded_total: total, amount: AMOUNT }, total)
                    }
                };
                match status.apply(event) {
                    Ok(Transition::To { to, flag }) => {
                        if to == OrderStatus::Paid && !status.is_paid() {
                            payments_counted += 1;
                        }
                        if matches!(event, OrderEvent::RefundTotal { .. }) {
                            refunded = new_total;
                        }
                        flags.extend(flag);
                        status = to;
                    }
                    Ok(Transition::Unchanged) => {}
                    Err(e) => prop_assert_eq!(e.from, status),
                }
                prop_assert!(payments_counted <= 1, "payment counted twice");
                prop_assert!(refunded <= AMOUNT, "refunded more than the amount");
                prop_assert_eq!(status == OrderStatus::Refunded, refunded == AMOUNT);
                prop_assert_eq!(
                    status == OrderStatus::PartiallyRefunded,
                    refunded > Fen::ZERO && refunded < AMOUNT
                );
                if refunded > Fen::ZERO {
                    prop_assert!(status.is_paid());
                }
            }
            prop_assert!(flags.len() <= 1);
        }
    }
}
