//! The refund state machine.
//!
//! ```text
//! processing ──▶ succeeded
//!     ├────────▶ failed
//!     └────────▶ abnormal ──▶ succeeded | failed   (resolved by an operator at the provider)
//! ```
//!
//! `succeeded` and `failed` are final. Repeating the current state is [`RefundTransition::Unchanged`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a refund is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Accepted by the provider; the money has not arrived yet.
    Processing,
    /// The money went back to the payer.
    Succeeded,
    /// The provider closed the refund without moving money.
    Failed,
    /// The provider could not deliver it (e.g. the payer's card was cancelled); needs an operator.
    Abnormal,
}

/// A refund status change that the table does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refund is {from}; cannot become {to}")]
pub struct RefundTransitionError {
    /// The status the refund was in.
    pub from: RefundStatus,
    /// The status that was reported.
    pub to: RefundStatus,
}

/// The outcome of a reported refund status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundTransition {
    /// The refund moves to this status.
    To(RefundStatus),
    /// Already there; nothing changes.
    Unchanged,
}

impl RefundStatus {
    /// Every status.
    pub const ALL: [RefundStatus; 4] = [
        RefundStatus::Processing,
        RefundStatus::Succeeded,
        RefundStatus::Failed,
        RefundStatus::Abnormal,
    ];

    /// The snake_case name used in JSON and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Processing => "processing",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
            RefundStatus::Abnormal => "abnormal",
        }
    }

    /// Whether the refund still counts against the order's refundable amount.
    pub fn counts_against_limit(self) -> bool {
        self != RefundStatus::Failed
    }

    /// The transition table for refunds.
    pub fn apply(self, reported: RefundStatus) -> Result<RefundTransition, RefundTransitionError> {
        use RefundStatus as S;
        match (self, reported) {
            (a, b) if a == b => Ok(RefundTransition::Unchanged),
            (S::Processing, _) | (S::Abnormal, S::Succeeded | S::Failed) => {
                Ok(RefundTransition::To(reported))
            }
            // A late "processing" from a query after a final notification is stale, not a change.
            (_, S::Processing) => Ok(RefundTransition::Unchanged),
            _ => Err(RefundTransitionError {
                from: self,
                to: reported,
            }),
        }
    }
}

impl fmt::Display for RefundStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RefundStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RefundStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown refund status {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refund_table_is_exactly_the_documented_one() {
        use RefundStatus as S;
        let mut moves = Vec::new();
        for from in S::ALL {
            for to in S::ALL {
                if let Ok(RefundTransition::To(t)) = from.apply(to) {
                    moves.push((from, t));
                }
            }
        }
        assert_eq!(
            moves,
            vec![
                (S::Processing, S::Succeeded),
                (S::Processing, S::Failed),
                (S::Processing, S::Abnormal),
                (S::Abnormal, S::Succeeded),
                (S::Abnormal, S::Failed),
            ]
        );
    }

    #[test]
    fn final_states_refuse_the_opposite_outcome() {
        assert!(RefundStatus::Succeeded.apply(RefundStatus::Failed).is_err());
        assert!(RefundStatus::Failed.apply(RefundStatus::Succeeded).is_err());
        assert_eq!(
            RefundStatus::Succeeded.apply(RefundStatus::Processing),
            Ok(RefundTransition::Unchanged)
        );
    }

    proptest::proptest! {
        /// Reports arrive duplicated and in any order: a final status is never left, and the
        /// refund's money is counted as returned at most once.
        #[test]
        fn any_report_sequence_keeps_a_refund_consistent(
            reports in proptest::collection::vec(proptest::sample::select(RefundStatus::ALL.to_vec()), 0..30)
        ) {
            let mut status = RefundStatus::Processing;
            let mut times_succeeded = 0;
            for r in reports {
                let before = status;
                if let Ok(RefundTransition::To(to)) = status.apply(r) {
                    status = to;
                    if to == RefundStatus::Succeeded {
                        times_succeeded += 1;
                    }
                }
                if matches!(before, RefundStatus::Succeeded | RefundStatus::Failed) {
                    proptest::prop_assert_eq!(status, before, "a final status was left");
                }
            }
            proptest::prop_assert!(times_succeeded <= 1);
        }
    }

    #[test]
    fn only_failed_refunds_free_the_amount() {
        assert!(!RefundStatus::Failed.counts_against_limit());
        assert!(RefundStatus::Processing.counts_against_limit());
        assert!(RefundStatus::Abnormal.counts_against_limit());
    }
}
