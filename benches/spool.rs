//! Durable store throughput: the in-memory spool (the floor: encode and insert)
//! against the RocksDB spool (group commit, one WAL fsync per round).
//!
//! Each iteration stores a round of 64 messages of 4 KiB, one recipient each, from
//! 64 concurrent stores and waits until every one is durable: what 64 ingest
//! connections acknowledging at once cost. For the full-size figures use
//! `volley-load spool-bench`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput};
use volley::model::{
    DsnRequest, Envelope, IdGenerator, MessageMeta, Recipient, TenantId, Timestamp,
};
use volley::spool::memory::MemorySpool;
use volley::spool::{Body, Durable, NewMessage, RocksSpool, Spool, SpoolOptions};

/// Stores per iteration (all in flight together).
const ROUND: usize = 64;
/// Body size.
const SIZE: usize = 4096;

fn message(ids: &IdGenerator, body: &Body, n: usize) -> NewMessage {
    let created = Timestamp::now();
    NewMessage {
        meta: MessageMeta {
            id: ids.generate(created),
            tenant: Some(TenantId("bench".into())),
            campaign: None,
            created,
            expires: created.saturating_add(Duration::from_secs(86_400)),
            envelope: Envelope {
                reverse_path: "bounces@sender.example".into(),
                recipients: vec![
                    Recipient::new(format!("u{n}@d{}.example", n % 1000)).expect("valid recipient")
                ],
                body_type: None,
                smtputf8: false,
                dsn: DsnRequest::default(),
            },
            body_len: body.len() as u64,
            tags: Vec::new(),
        },
        body: body.clone(),
    }
}

/// Stores one round and waits until all of it is durable.
fn round(spool: &dyn Spool, ids: &IdGenerator, body: &Body) {
    let tickets: Vec<Durable> = (0..ROUND)
        .map(|n| spool.store(message(ids, body, n)))
        .collect();
    for t in tickets {
        black_box(t.wait()).expect("store");
    }
}

fn bench(c: &mut Criterion) {
    let body: Body = (0..SIZE).map(|i| b'a' + (i % 26) as u8).collect();
    let ids = IdGenerator::new();
    let mut g = c.benchmark_group("spool_store_4k_x64");
    g.throughput(Throughput::Elements(ROUND as u64));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    g.warm_up_time(Duration::from_secs(1));

    // A fresh in-memory spool per iteration (it never frees what it stores and
    // refuses past 1 GiB); returning it keeps its drop out of the timing.
    g.bench_function("memory", |b| {
        b.iter_batched(
            MemorySpool::default,
            |memory| {
                round(&memory, &ids, &body);
                memory
            },
            BatchSize::SmallInput,
        );
    });

    let dir = std::env::temp_dir().join(format!("volley-bench-spool-{}", std::process::id()));
    let rocks = Arc::new(RocksSpool::open(&dir, SpoolOptions::default()).expect("open spool"));
    g.bench_function("rocksdb_fsync", |b| {
        b.iter(|| round(&*rocks, &ids, &body));
    });
    g.finish();
    drop(rocks);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
