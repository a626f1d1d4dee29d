//! The startup scan: every message with unfinished recipients, oldest first.
//!
//! One forward pass over `meta` (a raw iterator with large read-ahead, not filling
//! the block cache), and per message one sorted batched multi-get of the recipient
//! keys its meta implies. Only one message's records are held at a time; the key
//! buffer, key offsets and pending list are reused across messages, so the
//! per-recipient cost is a key write into a reused buffer and a lookup. Messages
//! found entirely final are deleted in batches as the scan goes (the iterator reads
//! a snapshot, so deleting behind it is safe), each leaving its completion record.

use rocksdb::{ReadOptions, WriteBatch};

use super::{read_err, write_err, RocksSpool, CF_META, CF_RECIPIENTS};
use crate::model::codec::{decode_meta, decode_status};
use crate::model::{MessageId, PendingMessage, PendingRecipient, RecipientStatus};
use crate::spool::{keys, RecoveryStats, SpoolError};

/// Finished messages deleted per write during the scan.
const DELETE_BATCH: usize = 1024;

pub(super) fn scan(
    spool: &RocksSpool,
    visit: &mut dyn FnMut(PendingMessage<'_>),
) -> Result<RecoveryStats, SpoolError> {
    let db = &spool.db;
    let meta_cf = spool.cf(CF_META)?;
    let rcpt_cf = spool.cf(CF_RECIPIENTS)?;
    let mut stats = RecoveryStats::default();

    let mut scan_opts = ReadOptions::default();
    scan_opts.set_readahead_size(spool.options.recovery_readahead_bytes);
    scan_opts.fill_cache(false);
    let mut it = db.raw_iterator_cf_opt(meta_cf, scan_opts);
    it.seek_to_first();

    // Reused across messages: every recipient key back to back, each key's
    // (start, end, rcpt index), sorted by key for the multi-get.
    let mut key_buf: Vec<u8> = Vec::with_capacity(4096);
    let mut spans: Vec<(usize, usize, u32)> = Vec::with_capacity(64);
    let mut deletes = WriteBatch::default();
    let mut pending_deletes = 0usize;

    while let Some((key, raw)) = it.item() {
        let meta = match <[u8; 16]>::try_from(key) {
            Ok(k) => match decode_meta(raw) {
                Ok(m) if m.id == MessageId::from_bytes(k) => m,
                _ => {
                    stats.corrupt += 1;
                    it.next();
                    continue;
                }
            },
            Err(_) => {
                stats.corrupt += 1;
                it.next();
                continue;
            }
        };
        it.next();

        key_buf.clear();
        spans.clear();
        for (i, r) in meta.envelope.recipients.iter().enumerate() {
            let start = key_buf.len();
            keys::push_recipient_key(&mut key_buf, &r.domain, meta.id, i as u32);
            spans.push((start, key_buf.len(), i as u32));
        }
        spans.sort_unstable_by(|a, b| key_buf[a.0..a.1].cmp(&key_buf[b.0..b.1]));
        let values =
            db.batched_multi_get_cf(rcpt_cf, spans.iter().map(|&(s, e, _)| &key_buf[s..e]), true);

        let mut pending = Vec::with_capacity(spans.len());
        // Final states, kept for the completion record should the message be done.
        let mut finals: Vec<Option<RecipientStatus>> = Vec::new();
        for (&(_, _, rcpt), value) in spans.iter().zip(values) {
            let Some(raw) = value.map_err(read_err)? else {
                continue; // purged: final
            };
            match decode_status(&raw) {
                Ok(status) => {
                    let r = meta.envelope.recipients.get(rcpt as usize);
                    if let (Some(r), Some((attempts, due))) = (r, status.pending(meta.created)) {
                        pending.push(PendingRecipient {
                            rcpt,
                            domain: &r.domain,
                            attempts,
                            due,
                        });
                    } else if pending.is_empty() {
                        if finals.is_empty() {
                            finals.resize(spans.len(), None);
                        }
                        if let Some(slot) = finals.get_mut(rcpt as usize) {
                            *slot = Some(status);
                        }
                    }
                }
                Err(_) => stats.corrupt += 1,
            }
        }

        if pending.is_empty() {
            spool.retire_into(&mut deletes, &meta, finals)?;
            stats.removed += 1;
            pending_deletes += 1;
            if pending_deletes == DELETE_BATCH {
                db.write_opt(std::mem::take(&mut deletes), &spool.no_sync)
                    .map_err(write_err)?;
                pending_deletes = 0;
            }
            continue;
        }
        // Oldest first, and in envelope order within a message.
        pending.sort_unstable_by_key(|p| p.rcpt);
        stats.messages += 1;
        stats.recipients += pending.len() as u64;
        visit(PendingMessage {
            id: meta.id,
            campaign: meta.campaign.as_ref(),
            expires: meta.expires,
            recipients: pending,
        });
    }
    it.status().map_err(read_err)?;
    if pending_deletes > 0 {
        db.write_opt(deletes, &spool.no_sync).map_err(write_err)?;
    }
    Ok(stats)
}
