//! An in-memory [`Spool`] for unit tests and benchmarks. It keeps the same key layout
//! and record encodings as the RocksDB spool (sorted maps stand in for column
//! families), so tests of it exercise the codec and the keys too. Nothing is
//! durable: a store is "synced" as soon as it is written.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::keys;
use super::{Body, Durable, NewMessage, RecoveryStats, Spool, SpoolError, StateUpdate};
use crate::model::codec::{
    decode_completed, decode_counters, decode_meta, decode_status, encode_completed,
    encode_counters, encode_meta, encode_status,
};
use crate::model::{
    CampaignCounters, CampaignId, CompletedMessage, MessageId, MessageMeta, PendingMessage,
    PendingRecipient, RecipientStatus, Timestamp,
};

/// Settings of a [`MemorySpool`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MemorySpoolConfig {
    /// Refuse stores with [`SpoolError::Busy`] once bodies and meta records total
    /// this many bytes: the backpressure the real spool applies to its write queue.
    /// Default: 1 GiB.
    pub max_bytes: usize,
}

impl Default for MemorySpoolConfig {
    fn default() -> Self {
        MemorySpoolConfig { max_bytes: 1 << 30 }
    }
}

/// The in-memory spool.
#[derive(Debug, Default)]
pub struct MemorySpool {
    /// Limits.
    config: MemorySpoolConfig,
    /// The "column families", under one lock.
    cfs: Mutex<Cfs>,
    /// When set, every write fails as a full disk would (for "try later" tests).
    fail_writes: AtomicBool,
}

#[derive(Debug, Default)]
struct Cfs {
    bodies: BTreeMap<[u8; 16], Body>,
    meta: BTreeMap<[u8; 16], Vec<u8>>,
    recipients: BTreeMap<Vec<u8>, Vec<u8>>,
    campaigns: BTreeMap<Vec<u8>, ()>,
    completed: BTreeMap<[u8; 16], Vec<u8>>,
    /// Campaign id -> encoded counters (merged on write, as RocksDB's operator).
    counters: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Bytes of bodies and meta records, for backpressure.
    bytes: usize,
}

impl MemorySpool {
    /// An empty spool.
    pub fn new(config: MemorySpoolConfig) -> MemorySpool {
        MemorySpool {
            config,
            ..Default::default()
        }
    }

    /// Makes every following write fail (`true`) or succeed again (`false`).
    pub fn set_fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// The stored state of one recipient, if its record exists (for tests).
    pub fn status(&self, domain: &str, id: MessageId, rcpt: u32) -> Option<RecipientStatus> {
        let cfs = self.lock();
        cfs.recipients
            .get(&keys::recipient_key(domain, id, rcpt))
            .and_then(|v| decode_status(v).ok())
    }

    /// Number of messages (meta records) stored.
    pub fn message_count(&self) -> usize {
        self.lock().meta.len()
    }

    /// Overwrites a raw meta record (for corruption tests).
    pub fn put_raw_meta(&self, id: MessageId, bytes: Vec<u8>) {
        self.lock().meta.insert(keys::message_key(id), bytes);
    }

    fn lock(&self) -> MutexGuard<'_, Cfs> {
        self.cfs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_writable(&self) -> Result<(), SpoolError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(SpoolError::Write("simulated write failure".into()));
        }
        Ok(())
    }

    fn try_store(&self, msg: NewMessage) -> Result<(), SpoolError> {
        msg.meta.validate()?;
        self.check_writable()?;
        let mut meta = Vec::new();
        encode_meta(&msg.meta, &mut meta);
        let mut cfs = self.lock();
        let size = meta.len() + msg.body.len();
        if cfs.bytes + size > self.config.max_bytes {
            return Err(SpoolError::Busy);
        }
        let id = msg.meta.id;
        let mut scheduled = Vec::new();
        encode_status(&RecipientStatus::Scheduled, &mut scheduled);
        for (i, r) in msg.meta.envelope.recipients.iter().enumerate() {
            cfs.recipients.insert(
                keys::recipient_key(&r.domain, id, i as u32),
                scheduled.clone(),
            );
        }
        if let Some(c) = &msg.meta.campaign {
            cfs.campaigns.insert(keys::campaign_key(c, id), ());
            merge_counters(&mut cfs, c, &CampaignCounters::injected(&msg.meta));
        }
        cfs.bytes += size;
        cfs.meta.insert(keys::message_key(id), meta);
        cfs.bodies.insert(keys::message_key(id), msg.body);
        Ok(())
    }
}

/// Adds `delta` to the counters of `campaign`.
fn merge_counters(cfs: &mut Cfs, campaign: &CampaignId, delta: &CampaignCounters) {
    let slot = cfs
        .counters
        .entry(campaign.0.as_bytes().to_vec())
        .or_default();
    let mut sum = decode_counters(slot).unwrap_or_default();
    sum.add(delta);
    slot.clear();
    encode_counters(&sum, slot);
}

/// The recipient records of `meta`, in envelope order.
fn statuses_locked(cfs: &Cfs, meta: &MessageMeta) -> Vec<Option<RecipientStatus>> {
    meta.envelope
        .recipients
        .iter()
        .enumerate()
        .map(|(i, r)| {
            cfs.recipients
                .get(&keys::recipient_key(&r.domain, meta.id, i as u32))
                .and_then(|v| decode_status(v).ok())
        })
        .collect()
}

/// Deletes every record of the message whose meta is `meta`, keeping its
/// completion record.
fn remove_locked(cfs: &mut Cfs, meta: &MessageMeta) {
    let key = keys::message_key(meta.id);
    let done = CompletedMessage::new(meta, statuses_locked(cfs, meta));
    let mut rec = Vec::new();
    encode_completed(&done, &mut rec);
    cfs.completed.insert(key, rec);
    for (i, r) in meta.envelope.recipients.iter().enumerate() {
        cfs.recipients
            .remove(&keys::recipient_key(&r.domain, meta.id, i as u32));
    }
    if let Some(c) = &meta.campaign {
        cfs.campaigns.remove(&keys::campaign_key(c, meta.id));
    }
    let freed = cfs.meta.remove(&key).map_or(0, |m| m.len())
        + cfs.bodies.remove(&key).map_or(0, |b| b.len());
    cfs.bytes -= freed;
}

fn corrupt(id: MessageId, source: crate::model::DecodeError) -> SpoolError {
    SpoolError::Corrupt {
        key: id.to_string(),
        source,
    }
}

impl Spool for MemorySpool {
    fn store(&self, msg: NewMessage) -> Durable {
        Durable::ready(self.try_store(msg))
    }

    fn load_body(&self, id: MessageId) -> Result<Body, SpoolError> {
        self.lock()
            .bodies
            .get(&keys::message_key(id))
            .cloned()
            .ok_or(SpoolError::NotFound(id))
    }

    fn load_meta(&self, id: MessageId) -> Result<MessageMeta, SpoolError> {
        let cfs = self.lock();
        let raw = cfs
            .meta
            .get(&keys::message_key(id))
            .ok_or(SpoolError::NotFound(id))?;
        decode_meta(raw).map_err(|e| corrupt(id, e))
    }

    fn update_counted(
        &self,
        updates: &[StateUpdate],
        counters: &[(CampaignId, CampaignCounters)],
    ) -> Result<(), SpoolError> {
        self.check_writable()?;
        let mut cfs = self.lock();
        for u in updates {
            let mut v = Vec::new();
            encode_status(&u.status, &mut v);
            cfs.recipients
                .insert(keys::recipient_key(&u.domain, u.id, u.rcpt), v);
        }
        for (c, delta) in counters {
            merge_counters(&mut cfs, c, delta);
        }
        Ok(())
    }

    fn load_statuses(
        &self,
        meta: &MessageMeta,
    ) -> Result<Vec<Option<RecipientStatus>>, SpoolError> {
        Ok(statuses_locked(&self.lock(), meta))
    }

    fn load_completed(&self, id: MessageId) -> Result<Option<CompletedMessage>, SpoolError> {
        let cfs = self.lock();
        let Some(raw) = cfs.completed.get(&keys::message_key(id)) else {
            return Ok(None);
        };
        decode_completed(raw).map(Some).map_err(|e| corrupt(id, e))
    }

    fn load_counters(&self, campaign: &CampaignId) -> Result<Option<CampaignCounters>, SpoolError> {
        let cfs = self.lock();
        let Some(raw) = cfs.counters.get(campaign.0.as_bytes()) else {
            return Ok(None);
        };
        decode_counters(raw)
            .map(Some)
            .map_err(|source| SpoolError::Corrupt {
                key: format!("counters of {}", campaign.0),
                source,
            })
    }

    fn prune_completed(&self, created_before: Timestamp) -> Result<(), SpoolError> {
        self.check_writable()?;
        let end = keys::completed_prune_end(created_before);
        self.lock().completed.retain(|k, _| *k >= end);
        Ok(())
    }

    fn remove(&self, id: MessageId) -> Result<(), SpoolError> {
        self.check_writable()?;
        let mut cfs = self.lock();
        let Some(raw) = cfs.meta.get(&keys::message_key(id)) else {
            return Ok(());
        };
        let meta = decode_meta(raw).map_err(|e| corrupt(id, e))?;
        remove_locked(&mut cfs, &meta);
        Ok(())
    }

    fn recover(
        &self,
        visit: &mut dyn FnMut(PendingMessage<'_>),
    ) -> Result<RecoveryStats, SpoolError> {
        let mut stats = RecoveryStats::default();
        let mut cfs = self.lock();
        let mut finished = Vec::new();
        for (key, raw) in &cfs.meta {
            let meta = match decode_meta(raw) {
                Ok(meta) if meta.id.to_bytes() == *key => meta,
                _ => {
                    stats.corrupt += 1;
                    continue;
                }
            };
            let mut pending = Vec::new();
            for (i, r) in meta.envelope.recipients.iter().enumerate() {
                let key = keys::recipient_key(&r.domain, meta.id, i as u32);
                let Some(raw) = cfs.recipients.get(&key) else {
                    continue;
                }; // purged
                match decode_status(raw) {
                    Ok(status) => {
                        if let Some((attempts, due)) = status.pending(meta.created) {
                            pending.push(PendingRecipient {
                                rcpt: i as u32,
                                domain: &r.domain,
                                attempts,
                                due,
                            });
                        }
                    }
                    Err(_) => stats.corrupt += 1,
                }
            }
            if pending.is_empty() {
                finished.push(meta);
                continue;
            }
            stats.messages += 1;
            stats.recipients += pending.len() as u64;
            visit(PendingMessage {
                id: meta.id,
                campaign: meta.campaign.as_ref(),
                expires: meta.expires,
                recipients: pending,
            });
        }
        for meta in &finished {
            remove_locked(&mut cfs, meta);
        }
        stats.removed = finished.len() as u64;
        Ok(stats)
    }

    fn purge_domain(&self, domain: &str) -> Result<u64, SpoolError> {
        self.check_writable()?;
        let (start, end) = keys::domain_range(domain);
        let mut cfs = self.lock();
        let doomed: Vec<Vec<u8>> = cfs
            .recipients
            .range(start..end)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &doomed {
            cfs.recipients.remove(k);
        }
        Ok(doomed.len() as u64)
    }

    fn purge_campaign(&self, campaign: &CampaignId) -> Result<u64, SpoolError> {
        self.check_writable()?;
        let (start, end) = keys::campaign_range(campaign);
        let mut cfs = self.lock();
        let ids: Vec<MessageId> = cfs
            .campaigns
            .range(start..end)
            .filter_map(|(k, _)| keys::parse_campaign_key(k).ok())
            .collect();
        let mut removed = 0;
        for id in ids {
            let Some(raw) = cfs.meta.get(&keys::message_key(id)) else {
                continue;
            };
            let meta = decode_meta(raw).map_err(|e| corrupt(id, e))?;
            remove_locked(&mut cfs, &meta);
            removed += 1;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::message::tests::sample;
    use crate::model::{StoredReply, Timestamp};
    use std::sync::Arc;

    fn store(spool: &MemorySpool, id: u128, campaign: Option<&str>, rcpts: &[&str]) -> MessageMeta {
        let meta = sample(MessageId(id), campaign, rcpts);
        spool
            .store(NewMessage {
                meta: meta.clone(),
                body: Arc::from(&b"Subject: hi\r\n\r\nbody\r\n"[..]),
            })
            .wait()
            .unwrap();
        meta
    }

    /// (message, rcpt, domain, attempts, due) of a recovered recipient.
    type Recovered = (MessageId, u32, String, u16, Timestamp);

    fn recover_all(spool: &MemorySpool) -> (Vec<Recovered>, RecoveryStats) {
        let mut out = Vec::new();
        let stats = spool
            .recover(&mut |m| {
                for r in &m.recipients {
                    out.push((m.id, r.rcpt, r.domain.to_string(), r.attempts, r.due));
                }
            })
            .unwrap();
        (out, stats)
    }

    #[test]
    fn store_load_update_recover_remove() {
        let spool = MemorySpool::default();
        let meta = store(&spool, 1, Some("c"), &["a@x.org", "b@y.org", "c@x.org"]);
        assert_eq!(spool.load_meta(MessageId(1)).unwrap(), meta);
        assert_eq!(&spool.load_body(MessageId(1)).unwrap()[..9], b"Subject: ");
        let reply = StoredReply {
            code: 451,
            text: "4.2.0 try later".into(),
        };
        let due = Timestamp::from_secs(5_000);
        spool
            .update(&[
                StateUpdate {
                    domain: "x.org".into(),
                    id: MessageId(1),
                    rcpt: 0,
                    status: RecipientStatus::Delivered,
                },
                StateUpdate {
                    domain: "y.org".into(),
                    id: MessageId(1),
                    rcpt: 1,
                    status: RecipientStatus::Deferred {
                        attempts: 2,
                        next_due: due,
                        last_reply: reply,
                    },
                },
            ])
            .unwrap();
        let (pending, stats) = recover_all(&spool);
        assert_eq!(
            pending,
            vec![
                (MessageId(1), 1, "y.org".into(), 2, due),
                (MessageId(1), 2, "x.org".into(), 0, meta.created),
            ]
        );
        assert_eq!((stats.messages, stats.recipients, stats.removed), (1, 2, 0));
        spool.remove(MessageId(1)).unwrap();
        spool.remove(MessageId(1)).unwrap(); // idempotent
        assert!(matches!(
            spool.load_meta(MessageId(1)),
            Err(SpoolError::NotFound(_))
        ));
        assert_eq!(spool.status("y.org", MessageId(1), 1), None);
        assert_eq!(spool.lock().bytes, 0);
        assert!(spool.lock().campaigns.is_empty());
    }

    #[test]
    fn recovery_removes_finished_messages_and_skips_corrupt_ones() {
        let spool = MemorySpool::default();
        store(&spool, 1, None, &["a@x.org"]);
        store(&spool, 2, None, &["a@x.org"]);
        store(&spool, 3, None, &["a@x.org"]);
        spool
            .update(&[StateUpdate {
                domain: "x.org".into(),
                id: MessageId(1),
                rcpt: 0,
                status: RecipientStatus::Expired,
            }])
            .unwrap();
        spool.put_raw_meta(MessageId(3), vec![1, 2, 3]);
        let (pending, stats) = recover_all(&spool);
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].0, MessageId(2));
        assert_eq!((stats.removed, stats.corrupt), (1, 1));
        assert_eq!(spool.message_count(), 2); // the corrupt one stays for inspection
        assert!(matches!(spool.load_meta(MessageId(3)),
                Err(e @ SpoolError::Corrupt { .. }) if e.is_permanent()));
    }

    #[test]
    fn purge_domain_and_campaign() {
        let spool = MemorySpool::default();
        store(&spool, 1, Some("spring"), &["a@x.org", "b@y.org"]);
        store(&spool, 2, Some("summer"), &["a@x.org"]);
        store(&spool, 3, Some("spring"), &["c@z.org"]);
        assert_eq!(spool.purge_domain("x.org").unwrap(), 2);
        assert_eq!(
            spool.purge_campaign(&CampaignId("spring".into())).unwrap(),
            2
        );
        let (pending, stats) = recover_all(&spool);
        assert!(pending.is_empty());
        assert_eq!(
            stats.removed, 1,
            "message 2 lost its only recipient to the purge"
        );
        assert_eq!(spool.message_count(), 0);
    }

    #[test]
    fn failing_or_full_storage_answers_try_later() {
        let spool = MemorySpool::new(MemorySpoolConfig { max_bytes: 300 });
        spool.set_fail_writes(true);
        let meta = sample(MessageId(1), None, &["a@x.org"]);
        let err = spool
            .store(NewMessage {
                meta: meta.clone(),
                body: Arc::from(vec![0; 10]),
            })
            .wait()
            .unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(spool.update(&[]).is_err());
        spool.set_fail_writes(false);
        spool
            .store(NewMessage {
                meta: meta.clone(),
                body: Arc::from(vec![0; 10]),
            })
            .wait()
            .unwrap();
        let err = spool
            .store(NewMessage {
                meta,
                body: Arc::from(vec![0; 300]),
            })
            .wait()
            .unwrap_err();
        assert!(matches!(err, SpoolError::Busy) && err.is_transient());
        let mut empty = sample(MessageId(2), None, &[]);
        empty.envelope.recipients.clear();
        let err = spool
            .store(NewMessage {
                meta: empty,
                body: Arc::from(vec![]),
            })
            .wait()
            .unwrap_err();
        assert!(err.is_permanent());
    }

    #[test]
    fn usable_as_a_trait_object() {
        let spool: Arc<dyn Spool> = Arc::new(MemorySpool::default());
        let meta = sample(MessageId(9), None, &["a@x.org"]);
        spool
            .store(NewMessage {
                meta,
                body: Arc::from(vec![1]),
            })
            .wait()
            .unwrap();
        assert_eq!(spool.load_body(MessageId(9)).unwrap().len(), 1);
    }
}
