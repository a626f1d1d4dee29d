//! Records kept about finished work: a message's completion record (its status
//! after it left the spool) and a campaign's cumulative counters.

use super::id::MessageId;
use super::message::{CampaignId, MessageMeta, TenantId};
use super::status::RecipientStatus;
use super::time::Timestamp;

/// What remains of a message once every recipient is final and its body, meta and
/// recipient records are gone: enough to answer a status query for the status
/// retention period. Written in the same batch as the removal.
///
/// Per recipient it keeps the address, domain and final state (with the bounce
/// reply): about the size of the meta record's recipient list, a few tens of
/// bytes per recipient. That is cheap next to the body and meta just deleted, and
/// an operator asking "what happened to this message" wants the per-recipient
/// answer, so it is kept rather than only the counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedMessage {
    /// The message id (also the record's key).
    pub id: MessageId,
    /// Its owner.
    pub tenant: Option<TenantId>,
    /// Its campaign.
    pub campaign: Option<CampaignId>,
    /// When it was accepted.
    pub created: Timestamp,
    /// When its recipients would have expired.
    pub expires: Timestamp,
    /// Every recipient in envelope order: (address, domain, final state).
    pub recipients: Vec<(String, String, RecipientStatus)>,
}

impl CompletedMessage {
    /// The record for `meta` whose recipients ended in `statuses` (one per
    /// envelope recipient). A missing record (`None`) or an unfinished one means
    /// purged: a message leaves the spool with unfinished recipients only by a
    /// purge.
    pub fn new(meta: &MessageMeta, statuses: Vec<Option<RecipientStatus>>) -> CompletedMessage {
        let mut statuses = statuses.into_iter();
        let recipients = meta
            .envelope
            .recipients
            .iter()
            .map(|r| {
                let status = statuses
                    .next()
                    .flatten()
                    .filter(RecipientStatus::is_final)
                    .unwrap_or(RecipientStatus::Purged);
                (r.address.clone(), r.domain.clone(), status)
            })
            .collect();
        CompletedMessage {
            id: meta.id,
            tenant: meta.tenant.clone(),
            campaign: meta.campaign.clone(),
            created: meta.created,
            expires: meta.expires,
            recipients,
        }
    }
}

/// A campaign's cumulative counters, persisted as deltas that the spool adds up
/// (a RocksDB merge operator): injections in the durable store batch, outcomes in
/// the results batches. Also the type of a delta.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CampaignCounters {
    /// The campaign's tenant, as given with its first message (deltas of outcomes
    /// leave it `None`; adding keeps the first one seen).
    pub tenant: Option<TenantId>,
    /// Messages injected.
    pub messages: u64,
    /// Recipients injected.
    pub recipients: u64,
    /// Recipients delivered.
    pub delivered: u64,
    /// Recipients bounced.
    pub bounced: u64,
    /// Recipients expired.
    pub expired: u64,
    /// Recipients purged by an operator.
    pub purged: u64,
}

impl CampaignCounters {
    /// Adds `other` to `self` (saturating; keeps `self`'s tenant if it has one).
    pub fn add(&mut self, other: &CampaignCounters) {
        if self.tenant.is_none() {
            self.tenant.clone_from(&other.tenant);
        }
        for (a, b) in self.fields_mut().into_iter().zip(other.fields()) {
            *a = a.saturating_add(b);
        }
    }

    /// The delta of a stored message: one message, its recipients.
    pub fn injected(meta: &MessageMeta) -> CampaignCounters {
        CampaignCounters {
            tenant: meta.tenant.clone(),
            messages: 1,
            recipients: meta.envelope.recipients.len() as u64,
            ..Default::default()
        }
    }

    /// The delta of one recipient reaching `status` (final states only count).
    pub fn outcome(status: &RecipientStatus) -> CampaignCounters {
        let mut c = CampaignCounters::default();
        match status {
            RecipientStatus::Delivered => c.delivered = 1,
            RecipientStatus::Bounced(_) => c.bounced = 1,
            RecipientStatus::Expired => c.expired = 1,
            RecipientStatus::Purged => c.purged = 1,
            RecipientStatus::Scheduled | RecipientStatus::Deferred { .. } => {}
        }
        c
    }

    /// Whether adding it would change nothing.
    pub fn is_zero(&self) -> bool {
        self.tenant.is_none() && self.fields().iter().all(|&v| v == 0)
    }

    /// The counts in record order.
    pub(crate) fn fields(&self) -> [u64; 6] {
        [
            self.messages,
            self.recipients,
            self.delivered,
            self.bounced,
            self.expired,
            self.purged,
        ]
    }

    fn fields_mut(&mut self) -> [&mut u64; 6] {
        [
            &mut self.messages,
            &mut self.recipients,
            &mut self.delivered,
            &mut self.bounced,
            &mut self.expired,
            &mut self.purged,
        ]
    }

    /// From counts in record order.
    pub(crate) fn from_fields(tenant: Option<TenantId>, f: [u64; 6]) -> CampaignCounters {
        CampaignCounters {
            tenant,
            messages: f[0],
            recipients: f[1],
            delivered: f[2],
            bounced: f[3],
            expired: f[4],
            purged: f[5],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::message::tests::sample;
    use crate::model::StoredReply;

    #[test]
    fn counters_add_and_keep_the_first_tenant() {
        let meta = sample(MessageId(1), Some("c"), &["a@x.org", "b@y.org"]);
        let mut c = CampaignCounters::injected(&meta);
        assert_eq!((c.messages, c.recipients), (1, 2));
        c.add(&CampaignCounters::outcome(&RecipientStatus::Delivered));
        c.add(&CampaignCounters::outcome(&RecipientStatus::Bounced(
            StoredReply {
                code: 550,
                text: String::new(),
            },
        )));
        c.add(&CampaignCounters {
            tenant: Some(TenantId("other".into())),
            purged: 3,
            ..Default::default()
        });
        assert_eq!(c.tenant, Some(TenantId("acme".into())));
        assert_eq!((c.delivered, c.bounced, c.purged), (1, 1, 3));
        assert!(CampaignCounters::outcome(&RecipientStatus::Scheduled).is_zero());
    }

    #[test]
    fn completion_marks_missing_records_purged() {
        let meta = sample(MessageId(1), None, &["a@x.org", "b@y.org", "c@y.org"]);
        let statuses = vec![
            Some(RecipientStatus::Delivered),
            None,
            Some(RecipientStatus::Scheduled),
        ];
        let done = CompletedMessage::new(&meta, statuses);
        assert_eq!(done.recipients[0].2, RecipientStatus::Delivered);
        assert_eq!(done.recipients[1].2, RecipientStatus::Purged);
        assert_eq!(done.recipients[2].2, RecipientStatus::Purged);
        assert_eq!(done.recipients[1].0, "b@y.org");
    }
}
