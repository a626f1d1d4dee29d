//! [`SpoolOptions`]: the settings of a [`RocksSpool`](super::RocksSpool), and how they
//! become RocksDB options per column family.

use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, Options};

use super::{CF_BODIES, CF_CAMPAIGNS, CF_COMPLETED, CF_COUNTERS, CF_META, CF_RECIPIENTS};
use crate::model::codec::{decode_counters, encode_counters};

/// Settings of a [`RocksSpool`](super::RocksSpool). Every field's doc states its
/// default ([`SpoolOptions::default`]); the defaults suit a 2-core machine with a
/// few GiB of memory for the spool.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SpoolOptions {
    /// Resolve a store's [`Durable`](crate::spool::Durable) only after the WAL holding
    /// it is fsynced. Default: `true`.
    ///
    /// **Risky when `false`**: a store is acknowledged once it is written to the
    /// operating system, not to the disk. A process crash loses nothing, but a
    /// power loss or kernel crash loses the messages of the last moments, which
    /// clients were told were accepted. Only for test rigs and for operators who
    /// accept that trade for throughput.
    pub sync: bool,
    /// Stores waiting for the writer thread before new ones are refused with
    /// [`SpoolError::Busy`](crate::spool::SpoolError::Busy). Default: 8192.
    pub max_queued_messages: usize,
    /// Bytes (bodies, meta and keys) of stores not yet synced before new stores
    /// are refused with `Busy`: the bound on the memory the write queue holds. A single
    /// message larger than this is always refused, so keep it above the largest
    /// accepted message size. Default: 128 MiB.
    pub max_queued_bytes: usize,
    /// Shared block cache for all column families. Default: 256 MiB.
    pub block_cache_bytes: usize,
    /// Memtable size of the `bodies` column family (the other families get a
    /// quarter of it). Larger values let more bodies die in memory before they are
    /// ever written to an SST file. Default: 64 MiB.
    pub body_write_buffer_bytes: usize,
    /// Compress bodies with LZ4 in SST files (the WAL is never compressed). Mail is
    /// mostly text and compresses about 2:1; LZ4 costs only background flush CPU
    /// (measured: durable store throughput unchanged, p99 lower, half the bytes
    /// on disk). The small records are never compressed. LZ4 is the only codec
    /// compiled in: zstd compresses better but costs several times the CPU on a
    /// 2-core machine shared with the SMTP path; snappy, zlib and bzip2 bring
    /// nothing LZ4 does not. Default: `true`.
    pub compress_bodies: bool,
    /// Read-ahead of the recovery scan over `meta`: large sequential reads.
    /// Default: 4 MiB.
    pub recovery_readahead_bytes: usize,
    /// RocksDB background threads (flushes and compactions). Default: 2.
    pub background_jobs: i32,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        SpoolOptions {
            sync: true,
            max_queued_messages: 8192,
            max_queued_bytes: 128 << 20,
            block_cache_bytes: 256 << 20,
            body_write_buffer_bytes: 64 << 20,
            compress_bodies: true,
            recovery_readahead_bytes: 4 << 20,
            background_jobs: 2,
        }
    }
}

impl SpoolOptions {
    /// The database-wide options.
    pub(super) fn db_options(&self) -> Options {
        let mut o = Options::default();
        o.create_if_missing(true);
        o.create_missing_column_families(true);
        o.set_max_background_jobs(self.background_jobs.max(1));
        // The writer thread appends each batch to the WAL buffer without a system
        // call; the syncer's one `flush_wal(true)` per round writes and syncs the lot.
        o.set_manual_wal_flush(true);
        // Bodies churn: keep the WAL from growing without bound by forcing flushes
        // of the column families that pin old logs.
        o.set_max_total_wal_size(4 * self.body_write_buffer_bytes as u64);
        // Write SSTs out smoothly instead of in one burst at file close.
        o.set_bytes_per_sync(1 << 20);
        // A WAL torn by a crash ends at the last intact record: everything synced
        // before it is recovered, and the torn tail was never acknowledged.
        o.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        o.set_keep_log_file_num(4);
        o.set_max_log_file_size(16 << 20);
        o
    }

    /// The six column families, each tuned for its records.
    pub(super) fn column_families(&self) -> Vec<ColumnFamilyDescriptor> {
        let cache = Cache::new_lru_cache(self.block_cache_bytes);
        let table = |block_size: usize, bloom: bool| {
            let mut t = BlockBasedOptions::default();
            t.set_block_cache(&cache);
            t.set_block_size(block_size);
            t.set_cache_index_and_filter_blocks(true);
            t.set_pin_l0_filter_and_index_blocks_in_cache(true);
            if bloom {
                t.set_bloom_filter(10.0, false);
            }
            t
        };
        let small_buffer = (self.body_write_buffer_bytes / 4).max(4 << 20);

        // Bodies: point reads by id, large values, append-mostly keys.
        let mut bodies = Options::default();
        bodies.set_block_based_table_factory(&table(32 << 10, true));
        bodies.set_write_buffer_size(self.body_write_buffer_bytes);
        bodies.set_max_write_buffer_number(4);
        bodies.set_target_file_size_base(64 << 20);
        bodies.set_compression_type(if self.compress_bodies {
            DBCompressionType::Lz4
        } else {
            DBCompressionType::None
        });

        // Meta: scanned in order at recovery, point-read on the send path.
        let mut meta = Options::default();
        meta.set_block_based_table_factory(&table(16 << 10, true));
        meta.set_write_buffer_size(small_buffer);
        meta.set_max_write_buffer_number(4);
        meta.set_compression_type(DBCompressionType::None);

        // Recipients: tiny values, multi-get at recovery, range deletes per domain.
        let mut rcpts = Options::default();
        rcpts.set_block_based_table_factory(&table(8 << 10, true));
        rcpts.set_write_buffer_size(small_buffer);
        rcpts.set_max_write_buffer_number(4);
        rcpts.set_compression_type(DBCompressionType::None);

        // Campaign index: empty values, walked only by purges.
        let mut campaigns = Options::default();
        campaigns.set_block_based_table_factory(&table(8 << 10, false));
        campaigns.set_write_buffer_size(small_buffer / 2);
        campaigns.set_compression_type(DBCompressionType::None);

        // Completion records: appended in id (creation) order, point-read by the
        // status API, range-deleted by age.
        let mut completed = Options::default();
        completed.set_block_based_table_factory(&table(16 << 10, true));
        completed.set_write_buffer_size(small_buffer / 2);
        completed.set_compression_type(DBCompressionType::Lz4);

        // Campaign counters: one small record per campaign, merged deltas.
        let mut counters = Options::default();
        counters.set_block_based_table_factory(&table(4 << 10, true));
        counters.set_write_buffer_size(small_buffer / 4);
        counters.set_compression_type(DBCompressionType::None);
        counters.set_merge_operator_associative("volley_counters_add", add_counters);

        vec![
            ColumnFamilyDescriptor::new(CF_BODIES, bodies),
            ColumnFamilyDescriptor::new(CF_META, meta),
            ColumnFamilyDescriptor::new(CF_RECIPIENTS, rcpts),
            ColumnFamilyDescriptor::new(CF_CAMPAIGNS, campaigns),
            ColumnFamilyDescriptor::new(CF_COMPLETED, completed),
            ColumnFamilyDescriptor::new(CF_COUNTERS, counters),
        ]
    }
}

/// The `counters` merge operator: adds the existing record and every operand
/// (associative, so RocksDB may also combine operands alone). An operand or record
/// that does not decode is skipped: a corrupt delta loses its counts, never the
/// campaign's record, and never panics.
fn add_counters(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &rocksdb::MergeOperands,
) -> Option<Vec<u8>> {
    let mut sum = existing
        .and_then(|e| decode_counters(e).ok())
        .unwrap_or_default();
    for op in operands {
        if let Ok(delta) = decode_counters(op) {
            sum.add(&delta);
        }
    }
    let mut out = Vec::with_capacity(64);
    encode_counters(&sum, &mut out);
    Some(out)
}
