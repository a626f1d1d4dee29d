//! Per-recipient delivery state: the value of a recipient's spool record.

use super::time::Timestamp;

/// A server reply (or a locally made-up one for connection and DNS failures), kept
/// for the delivery log, DSNs and the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReply {
    /// The three-digit reply code (e.g. 451).
    pub code: u16,
    /// The reply text, enhanced status code first when there was one; lines joined
    /// with `\n`.
    pub text: String,
}

/// Where one recipient stands. One type for every persisted state, so a new state
/// forces a decision at every `match` (no `_` arms on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientStatus {
    /// Accepted, never tried yet.
    Scheduled,
    /// A receiver took responsibility: final.
    Delivered,
    /// Temporarily failed `attempts` times; try again at `next_due`.
    Deferred {
        /// Failed attempts so far (at least 1).
        attempts: u16,
        /// When to try next.
        next_due: Timestamp,
        /// The reply to the last attempt.
        last_reply: StoredReply,
    },
    /// Permanently refused: final (a DSN may follow).
    Bounced(StoredReply),
    /// Reached the message lifetime undelivered: final.
    Expired,
    /// Removed by an operator purge (of its domain or campaign): final. Written so
    /// a restart does not queue it again while its message has other recipients
    /// left.
    Purged,
}

impl RecipientStatus {
    /// Whether nothing more will happen to this recipient.
    pub fn is_final(&self) -> bool {
        match self {
            RecipientStatus::Scheduled | RecipientStatus::Deferred { .. } => false,
            RecipientStatus::Delivered
            | RecipientStatus::Bounced(_)
            | RecipientStatus::Expired
            | RecipientStatus::Purged => true,
        }
    }

    /// Failed attempts so far and when the recipient is due (`created` if it was
    /// never tried); `None` for a final state. What recovery queues again.
    pub fn pending(&self, created: Timestamp) -> Option<(u16, Timestamp)> {
        match self {
            RecipientStatus::Scheduled => Some((0, created)),
            RecipientStatus::Deferred {
                attempts, next_due, ..
            } => Some((*attempts, *next_due)),
            RecipientStatus::Delivered
            | RecipientStatus::Bounced(_)
            | RecipientStatus::Expired
            | RecipientStatus::Purged => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_states_have_nothing_pending() {
        let reply = StoredReply {
            code: 451,
            text: "4.7.1 later".into(),
        };
        let created = Timestamp(10);
        let deferred = RecipientStatus::Deferred {
            attempts: 3,
            next_due: Timestamp(99),
            last_reply: reply.clone(),
        };
        assert_eq!(
            RecipientStatus::Scheduled.pending(created),
            Some((0, created))
        );
        assert_eq!(deferred.pending(created), Some((3, Timestamp(99))));
        for s in [
            RecipientStatus::Delivered,
            RecipientStatus::Bounced(reply),
            RecipientStatus::Expired,
            RecipientStatus::Purged,
        ] {
            assert!(s.is_final());
            assert_eq!(s.pending(created), None);
        }
        assert!(!deferred.is_final());
    }
}
