//! The RocksDB [`Spool`]: the layout, write rules and recovery described in
//! [`crate::spool`], on six column families.
//!
//! - `options`: [`SpoolOptions`] and the per-family tuning.
//! - `writer`: group commit (a writer and a syncer thread, one WAL sync per round).
//! - `recover`: the startup scan.
//!
//! Durability: every store is one atomic [`WriteBatch`] whose ticket resolves after
//! the WAL holding it is fsynced; updates and removes go to the same WAL unsynced
//! (the next round's sync, or the syncer's idle flush within 50 ms, carries them
//! to disk or to the OS). After a crash RocksDB replays the WAL up to its last
//! intact record (`PointInTime` recovery), which includes every acknowledged store.

mod options;
mod recover;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{ColumnFamily, ReadOptions, WriteBatch, WriteOptions, DB};

use super::keys;
use super::{
    durable_pair, Body, Durable, NewMessage, RecoveryStats, Spool, SpoolError, StateUpdate,
};
use crate::model::codec::{
    decode_completed, decode_counters, decode_meta, decode_status, encode_completed,
    encode_counters, encode_meta, encode_status,
};
use crate::model::{
    CampaignCounters, CampaignId, CompletedMessage, MessageId, MessageMeta, PendingMessage,
    RecipientStatus, Timestamp,
};
pub use options::SpoolOptions;
use writer::{WriteQueue, WriterConfig};
pub use writer::{WriterCounts, WriterStats};

/// Column family of message bodies.
const CF_BODIES: &str = "bodies";
/// Column family of meta records.
const CF_META: &str = "meta";
/// Column family of per-recipient status records.
const CF_RECIPIENTS: &str = "recipients";
/// Column family of the campaign index.
const CF_CAMPAIGNS: &str = "campaigns";
/// Column family of completion records of removed messages.
const CF_COMPLETED: &str = "completed";
/// Column family of campaign counters (merged deltas).
const CF_COUNTERS: &str = "counters";

/// Campaign-index entries a purge reads per step (bounded memory).
const PURGE_STEP: usize = 1024;

/// One step of a campaign purge: each index key with the id it names (`None` if
/// the key does not parse), and the key to resume from.
type CampaignStep = (Vec<(Vec<u8>, Option<MessageId>)>, Option<Vec<u8>>);

/// The RocksDB spool. Share it as `Arc<dyn Spool>`; dropping it drains the write
/// queue, stops the writer threads and closes the database.
pub struct RocksSpool {
    /// The group-commit writer; declared first so it stops before the last `db`
    /// reference it shares is dropped.
    queue: WriteQueue,
    /// The database (shared with the writer threads).
    db: Arc<DB>,
    /// Write options of unsynced writes (`update`, `remove`, purges).
    no_sync: WriteOptions,
    /// Settings it was opened with.
    options: SpoolOptions,
    /// Where it lives.
    path: PathBuf,
}

impl std::fmt::Debug for RocksSpool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksSpool")
            .field("path", &self.path)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn write_err(e: rocksdb::Error) -> SpoolError {
    SpoolError::Write(e.into_string())
}

fn read_err(e: rocksdb::Error) -> SpoolError {
    SpoolError::Read(e.into_string())
}

fn corrupt(id: MessageId, source: crate::model::DecodeError) -> SpoolError {
    SpoolError::Corrupt {
        key: id.to_string(),
        source,
    }
}

impl RocksSpool {
    /// Opens (creating if needed) the spool at `path` and starts its writer threads.
    /// Replays the WAL of an unclean shutdown; call [`Spool::recover`] next.
    pub fn open(path: impl AsRef<Path>, options: SpoolOptions) -> Result<RocksSpool, SpoolError> {
        let path = path.as_ref().to_path_buf();
        let db = DB::open_cf_descriptors(&options.db_options(), &path, options.column_families())
            .map_err(|e| {
            SpoolError::Open(format!("{}: {}", path.display(), e.into_string()))
        })?;
        let db = Arc::new(db);
        let queue = WriteQueue::start(
            db.clone(),
            WriterConfig {
                sync: options.sync,
                max_jobs: options.max_queued_messages,
                max_bytes: options.max_queued_bytes,
            },
        )
        .map_err(|e| SpoolError::Open(format!("cannot start the spool writer: {e}")))?;
        let mut no_sync = WriteOptions::default();
        no_sync.set_sync(false);
        Ok(RocksSpool {
            queue,
            db,
            no_sync,
            options,
            path,
        })
    }

    /// The directory it lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Group-commit counters: rounds (syncs), messages, bytes, failures.
    pub fn writer_stats(&self) -> WriterCounts {
        self.queue.stats.snapshot()
    }

    /// Stops accepting stores (they answer [`SpoolError::Closed`]) after writing
    /// and syncing those already queued. Reads and unsynced writes still work until
    /// the spool is dropped.
    pub fn close(&self) {
        self.queue.shutdown();
    }

    /// Syncs the WAL now: makes preceding `update`/`remove` writes durable (for a
    /// clean shutdown or a test).
    pub fn sync_wal(&self) -> Result<(), SpoolError> {
        self.db.flush_wal(true).map_err(write_err)
    }

    /// Writes a raw record (for corruption tests and repair tools).
    #[doc(hidden)]
    pub fn put_raw(&self, cf: &str, key: &[u8], value: &[u8]) -> Result<(), SpoolError> {
        let cf = self.cf(cf)?;
        self.db.put_cf(cf, key, value).map_err(write_err)
    }

    fn cf(&self, name: &str) -> Result<&ColumnFamily, SpoolError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| SpoolError::Read(format!("column family {name} missing")))
    }

    /// The body, meta, recipient and campaign records of `meta`, as one batch.
    fn store_batch(&self, meta: &MessageMeta, body: &[u8]) -> Result<WriteBatch, SpoolError> {
        let mut meta_rec = Vec::with_capacity(128);
        encode_meta(meta, &mut meta_rec);
        let mut scheduled = Vec::with_capacity(2);
        encode_status(&RecipientStatus::Scheduled, &mut scheduled);
        let rcpts = &meta.envelope.recipients;
        let rcpt_bytes: usize = rcpts.iter().map(|r| r.domain.len() + 48).sum();
        let mut batch =
            WriteBatch::with_capacity_bytes(body.len() + meta_rec.len() + rcpt_bytes + 96);
        let key = keys::message_key(meta.id);
        batch.put_cf(self.cf(CF_BODIES)?, key, body);
        batch.put_cf(self.cf(CF_META)?, key, &meta_rec);
        let rcpt_cf = self.cf(CF_RECIPIENTS)?;
        let mut k = Vec::with_capacity(64);
        for (i, r) in rcpts.iter().enumerate() {
            k.clear();
            keys::push_recipient_key(&mut k, &r.domain, meta.id, i as u32);
            batch.put_cf(rcpt_cf, &k, &scheduled);
        }
        if let Some(c) = &meta.campaign {
            batch.put_cf(self.cf(CF_CAMPAIGNS)?, keys::campaign_key(c, meta.id), b"");
            let mut delta = Vec::with_capacity(64);
            encode_counters(&CampaignCounters::injected(meta), &mut delta);
            batch.merge_cf(self.cf(CF_COUNTERS)?, c.0.as_bytes(), &delta);
        }
        Ok(batch)
    }

    /// Adds to `batch` the deletion of every record of `meta` and the completion
    /// record made from `statuses` (its recipient records, envelope order).
    fn retire_into(
        &self,
        batch: &mut WriteBatch,
        meta: &MessageMeta,
        statuses: Vec<Option<RecipientStatus>>,
    ) -> Result<(), SpoolError> {
        let mut rec = Vec::with_capacity(64 + meta.envelope.recipients.len() * 32);
        encode_completed(&CompletedMessage::new(meta, statuses), &mut rec);
        batch.put_cf(self.cf(CF_COMPLETED)?, keys::message_key(meta.id), &rec);
        self.delete_into(batch, meta)
    }

    /// Adds recipient `updates` and campaign counter deltas to `batch`.
    fn updates_into<'a>(
        &self,
        batch: &mut WriteBatch,
        updates: impl Iterator<Item = &'a StateUpdate>,
        counters: &[(CampaignId, CampaignCounters)],
    ) -> Result<(), SpoolError> {
        let cf = self.cf(CF_RECIPIENTS)?;
        let (mut k, mut v) = (Vec::with_capacity(64), Vec::with_capacity(32));
        for u in updates {
            k.clear();
            v.clear();
            keys::push_recipient_key(&mut k, &u.domain, u.id, u.rcpt);
            encode_status(&u.status, &mut v);
            batch.put_cf(cf, &k, &v);
        }
        if !counters.is_empty() {
            let ccf = self.cf(CF_COUNTERS)?;
            for (c, delta) in counters {
                v.clear();
                encode_counters(delta, &mut v);
                batch.merge_cf(ccf, c.0.as_bytes(), &v);
            }
        }
        Ok(())
    }

    /// The recipient records of `meta` in envelope order: one sorted multi-get.
    fn statuses(&self, meta: &MessageMeta) -> Result<Vec<Option<RecipientStatus>>, SpoolError> {
        let cf = self.cf(CF_RECIPIENTS)?;
        let rcpts = &meta.envelope.recipients;
        let mut keyed: Vec<(Vec<u8>, usize)> = rcpts
            .iter()
            .enumerate()
            .map(|(i, r)| (keys::recipient_key(&r.domain, meta.id, i as u32), i))
            .collect();
        keyed.sort_unstable();
        let values = self
            .db
            .batched_multi_get_cf(cf, keyed.iter().map(|(k, _)| k), true);
        let mut out = vec![None; rcpts.len()];
        for ((_, i), value) in keyed.iter().zip(values) {
            // An undecodable record is reported as absent (the status query shows
            // the recipient as purged) rather than failing the whole message.
            out[*i] = value
                .map_err(read_err)?
                .and_then(|raw| decode_status(&raw).ok());
        }
        Ok(out)
    }

    /// Adds the deletion of every record of `meta` to `batch`.
    fn delete_into(&self, batch: &mut WriteBatch, meta: &MessageMeta) -> Result<(), SpoolError> {
        let key = keys::message_key(meta.id);
        batch.delete_cf(self.cf(CF_BODIES)?, key);
        batch.delete_cf(self.cf(CF_META)?, key);
        let rcpt_cf = self.cf(CF_RECIPIENTS)?;
        let mut k = Vec::with_capacity(64);
        for (i, r) in meta.envelope.recipients.iter().enumerate() {
            k.clear();
            keys::push_recipient_key(&mut k, &r.domain, meta.id, i as u32);
            batch.delete_cf(rcpt_cf, &k);
        }
        if let Some(c) = &meta.campaign {
            batch.delete_cf(self.cf(CF_CAMPAIGNS)?, keys::campaign_key(c, meta.id));
        }
        Ok(())
    }

    /// The decoded meta of `id`, `None` if absent.
    fn get_meta(&self, id: MessageId) -> Result<Option<MessageMeta>, SpoolError> {
        let raw = self
            .db
            .get_pinned_cf(self.cf(CF_META)?, keys::message_key(id))
            .map_err(read_err)?;
        match raw {
            None => Ok(None),
            Some(raw) => decode_meta(&raw).map(Some).map_err(|e| corrupt(id, e)),
        }
    }

    /// Up to [`PURGE_STEP`] message ids of the campaign index from `from` (inclusive)
    /// to `end`, and the key to resume from.
    fn campaign_step(&self, from: &[u8], end: &[u8]) -> Result<CampaignStep, SpoolError> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(end.to_vec());
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_CAMPAIGNS)?, ro);
        it.seek(from);
        let mut out = Vec::new();
        while let Some(k) = it.key() {
            if out.len() == PURGE_STEP {
                return Ok((out, Some(k.to_vec())));
            }
            out.push((k.to_vec(), keys::parse_campaign_key(k).ok()));
            it.next();
        }
        it.status().map_err(read_err)?;
        Ok((out, None))
    }
}

impl Drop for RocksSpool {
    /// Drains and syncs queued stores, then syncs the unsynced writes made since
    /// (`update`, `remove` after [`RocksSpool::close`]), so a clean shutdown loses
    /// nothing.
    fn drop(&mut self) {
        self.queue.shutdown();
        let _ = self.db.flush_wal(true);
    }
}

impl Spool for RocksSpool {
    fn store(&self, msg: NewMessage) -> Durable {
        if let Err(e) = msg.meta.validate() {
            return Durable::ready(Err(e.into()));
        }
        let batch = match self.store_batch(&msg.meta, &msg.body) {
            Ok(b) => b,
            Err(e) => return Durable::ready(Err(e)),
        };
        let (done, durable) = durable_pair();
        self.queue.submit(batch, done);
        durable
    }

    fn load_body(&self, id: MessageId) -> Result<Body, SpoolError> {
        let raw = self
            .db
            .get_pinned_cf(self.cf(CF_BODIES)?, keys::message_key(id))
            .map_err(read_err)?;
        raw.map(|b| Body::from(&b[..]))
            .ok_or(SpoolError::NotFound(id))
    }

    fn load_meta(&self, id: MessageId) -> Result<MessageMeta, SpoolError> {
        self.get_meta(id)?.ok_or(SpoolError::NotFound(id))
    }

    fn update_counted(
        &self,
        updates: &[StateUpdate],
        counters: &[(CampaignId, CampaignCounters)],
    ) -> Result<(), SpoolError> {
        if updates.is_empty() && counters.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::with_capacity_bytes(updates.len() * 64 + counters.len() * 96);
        self.updates_into(&mut batch, updates.iter(), counters)?;
        self.db.write_opt(batch, &self.no_sync).map_err(write_err)
    }

    fn settle_group(
        &self,
        updates: &[StateUpdate],
        counters: &[(CampaignId, CampaignCounters)],
        finished: &[(MessageId, Option<Arc<MessageMeta>>)],
    ) -> Result<(), SpoolError> {
        if finished.is_empty() {
            return self.update_counted(updates, counters);
        }
        let gone: HashSet<MessageId> = finished.iter().map(|(id, _)| *id).collect();
        // The last state of each recipient of a finishing message: it goes into
        // the completion record, not into a record deleted in the same batch.
        let mut last: HashMap<(MessageId, u32), &RecipientStatus> = HashMap::new();
        for u in updates.iter().filter(|u| gone.contains(&u.id)) {
            last.insert((u.id, u.rcpt), &u.status);
        }
        let mut batch = WriteBatch::with_capacity_bytes(
            updates.len() * 64 + counters.len() * 96 + finished.len() * 256,
        );
        let kept = updates.iter().filter(|u| !gone.contains(&u.id));
        self.updates_into(&mut batch, kept, counters)?;
        for (id, meta) in finished {
            let meta = match meta {
                Some(m) => m.clone(),
                None => match self.get_meta(*id)? {
                    Some(m) => Arc::new(m),
                    None => continue,
                },
            };
            let n = meta.envelope.recipients.len() as u32;
            let mut statuses: Vec<Option<RecipientStatus>> = (0..n)
                .map(|i| last.get(&(*id, i)).map(|s| (*s).clone()))
                .collect();
            if statuses.iter().any(Option::is_none) {
                let stored = self.statuses(&meta)?;
                for (s, stored) in statuses.iter_mut().zip(stored) {
                    if s.is_none() {
                        *s = stored;
                    }
                }
            }
            self.retire_into(&mut batch, &meta, statuses)?;
        }
        self.db.write_opt(batch, &self.no_sync).map_err(write_err)
    }

    fn remove(&self, id: MessageId) -> Result<(), SpoolError> {
        let Some(meta) = self.get_meta(id)? else {
            return Ok(());
        };
        let statuses = self.statuses(&meta)?;
        let mut batch = WriteBatch::default();
        self.retire_into(&mut batch, &meta, statuses)?;
        self.db.write_opt(batch, &self.no_sync).map_err(write_err)
    }

    fn load_statuses(
        &self,
        meta: &MessageMeta,
    ) -> Result<Vec<Option<RecipientStatus>>, SpoolError> {
        self.statuses(meta)
    }

    fn load_completed(&self, id: MessageId) -> Result<Option<CompletedMessage>, SpoolError> {
        let raw = self
            .db
            .get_pinned_cf(self.cf(CF_COMPLETED)?, keys::message_key(id))
            .map_err(read_err)?;
        match raw {
            None => Ok(None),
            Some(raw) => decode_completed(&raw).map(Some).map_err(|e| corrupt(id, e)),
        }
    }

    fn load_counters(&self, campaign: &CampaignId) -> Result<Option<CampaignCounters>, SpoolError> {
        let raw = self
            .db
            .get_pinned_cf(self.cf(CF_COUNTERS)?, campaign.0.as_bytes())
            .map_err(read_err)?;
        match raw {
            None => Ok(None),
            Some(raw) => decode_counters(&raw)
                .map(Some)
                .map_err(|source| SpoolError::Corrupt {
                    key: format!("counters of {}", campaign.0),
                    source,
                }),
        }
    }

    fn prune_completed(&self, created_before: Timestamp) -> Result<(), SpoolError> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.cf(CF_COMPLETED)?,
            [0u8; 16],
            keys::completed_prune_end(created_before),
        );
        self.db.write_opt(batch, &self.no_sync).map_err(write_err)
    }

    fn recover(
        &self,
        visit: &mut dyn FnMut(PendingMessage<'_>),
    ) -> Result<RecoveryStats, SpoolError> {
        recover::scan(self, visit)
    }

    fn purge_domain(&self, domain: &str) -> Result<u64, SpoolError> {
        let cf = self.cf(CF_RECIPIENTS)?;
        let (start, end) = keys::domain_range(domain);
        // Count first (keys only, one sequential pass over the domain's range), so
        // the operator learns how many recipients went; then one range tombstone.
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(end.clone());
        ro.fill_cache(false);
        let mut it = self.db.raw_iterator_cf_opt(cf, ro);
        it.seek(&start);
        let mut n = 0u64;
        while it.valid() {
            n += 1;
            it.next();
        }
        it.status().map_err(read_err)?;
        drop(it);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, &start, &end);
        self.db.write_opt(batch, &self.no_sync).map_err(write_err)?;
        Ok(n)
    }

    fn purge_campaign(&self, campaign: &CampaignId) -> Result<u64, SpoolError> {
        let (start, end) = keys::campaign_range(campaign);
        let ccf = self.cf(CF_CAMPAIGNS)?;
        let mut from = start;
        let mut removed = 0;
        loop {
            let (entries, next) = self.campaign_step(&from, &end)?;
            let mut batch = WriteBatch::default();
            for (key, id) in entries {
                // A key that does not parse, or whose message is gone, is a stale
                // index entry: drop it. A corrupt meta is left for inspection.
                match id.map(|id| self.get_meta(id)).transpose() {
                    Ok(Some(Some(meta))) => {
                        let statuses = self.statuses(&meta)?;
                        self.retire_into(&mut batch, &meta, statuses)?;
                        removed += 1;
                    }
                    Ok(Some(None)) | Ok(None) => batch.delete_cf(ccf, &key),
                    Err(SpoolError::Corrupt { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            self.db.write_opt(batch, &self.no_sync).map_err(write_err)?;
            match next {
                Some(k) => from = k,
                None => return Ok(removed),
            }
        }
    }
}
