//! RocksDB spool tests: the shared suite, group commit and backpressure, failures,
//! and the crash test (a child process killed with SIGKILL mid-write).
//!
//! Child processes re-run this test binary with `VOLLEY_SPOOL_CHILD` set, selecting
//! [`child_process`], which does nothing in a normal run.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use super::*;
use crate::model::message::tests::sample;
use crate::model::{Envelope, Recipient, Timestamp};
use crate::spool::suite::{body_of, spool_suite, Harness, TempDir};

/// Env var that turns [`child_process`] into a child: `MODE:DIR`.
const CHILD_ENV: &str = "VOLLEY_SPOOL_CHILD";

struct Rocks {
    dir: TempDir,
    options: SpoolOptions,
    spool: Option<RocksSpool>,
}

impl Rocks {
    fn new(options: SpoolOptions) -> Rocks {
        let dir = TempDir::new("rocks-spool");
        let spool = RocksSpool::open(dir.path(), options.clone()).expect("open");
        Rocks {
            dir,
            options,
            spool: Some(spool),
        }
    }

    fn rocks(&self) -> &RocksSpool {
        self.spool.as_ref().expect("open")
    }
}

impl Harness for Rocks {
    fn spool(&self) -> &dyn Spool {
        self.rocks()
    }
    fn reopen(&mut self) {
        drop(self.spool.take());
        self.spool = Some(RocksSpool::open(self.dir.path(), self.options.clone()).expect("reopen"));
    }
    fn put_raw_meta(&self, id: MessageId, bytes: &[u8]) {
        self.rocks()
            .put_raw(CF_META, &keys::message_key(id), bytes)
            .unwrap();
    }
}

fn small() -> SpoolOptions {
    SpoolOptions {
        block_cache_bytes: 8 << 20,
        body_write_buffer_bytes: 4 << 20,
        ..SpoolOptions::default()
    }
}

fn make(max_queued_bytes: usize) -> Rocks {
    Rocks::new(SpoolOptions {
        max_queued_bytes,
        ..small()
    })
}

spool_suite!(make);

fn new_message(id: u128, body_len: usize) -> NewMessage {
    let meta = sample(MessageId(id), None, &["a@x.org"]);
    NewMessage {
        body: Arc::from(body_of(meta.id, body_len)),
        meta,
    }
}

/// Whether `ticket` has resolved, without blocking.
fn poll_now(ticket: &mut Durable) -> Option<Result<(), SpoolError>> {
    use std::future::Future;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(ticket).poll(&mut cx) {
        std::task::Poll::Ready(r) => Some(r),
        std::task::Poll::Pending => None,
    }
}

#[test]
fn a_full_queue_answers_busy_and_one_sync_serves_a_round() {
    let h = Rocks::new(SpoolOptions {
        max_queued_bytes: 16 << 10,
        ..small()
    });
    let spool = h.rocks();
    let held = spool.queue.gate.lock().unwrap();
    // Nothing is synced while the gate is held: the byte bound fills up, and the
    // stores beyond it are refused at once.
    let mut tickets: Vec<_> = (1..=40)
        .map(|id| spool.store(new_message(id, 1000)))
        .collect();
    let mut busy = 0;
    tickets.retain_mut(|t| match poll_now(t) {
        None => true,
        Some(Err(SpoolError::Busy)) => {
            busy += 1;
            false
        }
        Some(other) => panic!("resolved before any sync: {other:?}"),
    });
    assert!(busy > 0 && !tickets.is_empty(), "{busy} refused");
    // Once the writer has put every accepted batch in the WAL buffer, releasing
    // the syncer makes them all durable with one sync.
    while spool.writer_stats().messages < tickets.len() as u64 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    drop(held);
    for t in tickets {
        t.wait().unwrap();
    }
    let stats = spool.writer_stats();
    assert_eq!(stats.rounds, 1, "{stats:?}");
    // The queue drained: stores are accepted again.
    spool.store(new_message(100, 1000)).wait().unwrap();
}

#[test]
fn a_closed_spool_refuses_stores_but_keeps_what_it_acknowledged() {
    let mut h = Rocks::new(small());
    h.rocks().store(new_message(1, 10)).wait().unwrap();
    h.rocks().close();
    let err = h.rocks().store(new_message(2, 10)).wait().unwrap_err();
    assert!(matches!(err, SpoolError::Closed) && err.is_transient());
    h.reopen();
    assert!(h.rocks().load_meta(MessageId(1)).is_ok());
    assert!(h.rocks().load_meta(MessageId(2)).is_err());
}

#[test]
fn corrupt_status_records_are_skipped_and_counted() {
    let h = Rocks::new(small());
    let meta = sample(MessageId(1), None, &["a@x.org", "b@y.org"]);
    h.rocks()
        .store(NewMessage {
            meta,
            body: Arc::from(&b"hi"[..]),
        })
        .wait()
        .unwrap();
    let key = keys::recipient_key("x.org", MessageId(1), 0);
    h.rocks().put_raw(CF_RECIPIENTS, &key, &[1, 99]).unwrap();
    let mut seen = Vec::new();
    let stats = h
        .rocks()
        .recover(&mut |m| seen.extend(m.recipients.iter().map(|r| r.rcpt)))
        .unwrap();
    assert_eq!(seen, vec![1]);
    assert_eq!((stats.messages, stats.corrupt), (1, 1));
}

#[test]
fn opening_an_unusable_path_is_an_error() {
    let dir = TempDir::new("rocks-bad");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = RocksSpool::open(&file, small()).unwrap_err();
    assert!(matches!(err, SpoolError::Open(_)), "{err}");
    // A second open of a live spool fails on RocksDB's lock, without a panic.
    let h = Rocks::new(small());
    assert!(matches!(
        RocksSpool::open(h.dir.path(), small()),
        Err(SpoolError::Open(_))
    ));
}

// ---- child processes -------------------------------------------------------

/// The meta record of crash-test message number `seq` (recoverable from its id).
fn crash_meta(seq: u32) -> MessageMeta {
    let id = MessageId::from_parts(1_700_000_000_000 + seq as u64, seq, 0xC0FFEE);
    let n = 1 + seq % 4;
    let recipients = (0..n)
        .map(|i| Recipient::new(format!("u{seq}.{i}@d{}.example", (seq + i) % 7)).unwrap())
        .collect();
    let mut m = sample(id, (seq % 3 == 0).then_some("crash"), &[]);
    m.created = Timestamp(1_700_000_000_000 + seq as u64);
    m.envelope = Envelope {
        recipients,
        ..m.envelope
    };
    m.body_len = 200 + (seq as u64 * 37) % 8000;
    m
}

fn crash_seq(id: MessageId) -> u32 {
    (id.0 >> 48) as u32
}

fn crash_body(meta: &MessageMeta) -> Vec<u8> {
    body_of(meta.id, meta.body_len as usize)
}

/// Re-runs this binary as a child in `mode` over `dir`, stdout piped.
fn spawn_child(mode: &str, dir: &std::path::Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "spool::rocks::tests::child_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{mode}:{}", dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child")
}

/// Not a test in a normal run: the body of the child processes.
#[test]
fn child_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (mode, dir) = spec.split_once(':').expect("MODE:DIR");
    match mode {
        "writer" => child_writer(dir),
        "fsize" => child_disk_full(dir),
        _ => panic!("unknown child mode {mode}"),
    }
}

/// Stores messages from 16 threads, printing `ACK <id>` once each store resolved.
fn child_writer(dir: &str) {
    let spool = RocksSpool::open(dir, SpoolOptions::default()).expect("open");
    std::thread::scope(|scope| {
        for t in 0..16u32 {
            let spool = &spool;
            scope.spawn(move || {
                for k in 0..2_000u32 {
                    let meta = crash_meta(t + 16 * k);
                    let body = Arc::from(crash_body(&meta));
                    let id = meta.id;
                    spool
                        .store(NewMessage { meta, body })
                        .wait()
                        .expect("store");
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "ACK {id}");
                    let _ = out.flush();
                }
            });
        }
    });
}

#[test]
fn acknowledged_stores_survive_sigkill() {
    const KILL_AFTER: usize = 3_000;
    let dir = TempDir::new("rocks-crash");
    let mut child = spawn_child("writer", dir.path());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    let mut killed = false;
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if let Some(id) = line.strip_prefix("ACK ") {
            acked.push(id.parse::<MessageId>().expect("id"));
            if acked.len() == KILL_AFTER {
                child.kill().expect("SIGKILL");
                killed = true;
                break;
            }
        }
    }
    // Lines already in the pipe were printed after their store resolved: count them.
    for line in lines.map_while(Result::ok) {
        if let Some(id) = line.strip_prefix("ACK ") {
            acked.push(id.parse().expect("id"));
        }
    }
    let _ = child.wait();
    assert!(
        killed,
        "the child finished before {KILL_AFTER} acknowledgements"
    );

    let spool = RocksSpool::open(dir.path(), SpoolOptions::default()).expect("reopen");
    let mut recovered: HashMap<MessageId, Vec<(u32, String, u16, Timestamp)>> = HashMap::new();
    let stats = spool
        .recover(&mut |m| {
            let rs = m
                .recipients
                .iter()
                .map(|r| (r.rcpt, r.domain.to_string(), r.attempts, r.due))
                .collect();
            recovered.insert(m.id, rs);
        })
        .expect("recover");
    assert_eq!(stats.corrupt, 0);
    assert_eq!(stats.removed, 0);
    assert!(stats.messages as usize >= acked.len());
    for id in &acked {
        let want = crash_meta(crash_seq(*id));
        assert_eq!(&spool.load_meta(*id).expect("acked meta"), &want);
        assert_eq!(
            &spool.load_body(*id).expect("acked body")[..],
            &crash_body(&want)[..]
        );
        let want_rcpts: Vec<_> = want
            .envelope
            .recipients
            .iter()
            .enumerate()
            .map(|(i, r)| (i as u32, r.domain.clone(), 0, want.created))
            .collect();
        assert_eq!(recovered.get(id), Some(&want_rcpts), "recipients of {id}");
    }
    // Every message the spool holds, acknowledged or not, is whole.
    for id in recovered.keys() {
        let meta = spool.load_meta(*id).unwrap();
        assert_eq!(meta, crash_meta(crash_seq(*id)));
        assert_eq!(spool.load_body(*id).unwrap().len() as u64, meta.body_len);
    }
}

/// Opens a spool with a 1 MiB file-size limit and stores until the WAL hits it:
/// prints `ACK <id>` per success, `FAILED <error>` at the first failure, then
/// checks the process still works and prints `SURVIVED`.
fn child_disk_full(dir: &str) {
    // SAFETY: plain libc calls with valid arguments, before any other thread runs
    // in this process's test harness (--test-threads=1).
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit), 0);
        limit.rlim_cur = 1 << 20;
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    let spool = RocksSpool::open(dir, small()).expect("open");
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for id in 1..200u128 {
        match spool.store(new_message(id, 64 << 10)).wait() {
            Ok(()) => writeln!(out, "ACK {}", MessageId(id)).unwrap(),
            Err(e) => {
                writeln!(out, "FAILED {e:?} transient={}", e.is_transient()).unwrap();
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the size limit was never hit");
    // Later writes fail too, cleanly; reads still work.
    let later = spool.store(new_message(1_000, 10)).wait();
    writeln!(out, "LATER {later:?}").unwrap();
    let _ = spool.update(&[]);
    let _ = spool.remove(MessageId(1));
    assert!(spool.load_meta(MessageId(1)).is_ok());
    drop(spool);
    writeln!(out, "SURVIVED").unwrap();
}

#[test]
fn a_failing_disk_is_a_write_error_not_a_crash() {
    let dir = TempDir::new("rocks-fsize");
    let child = spawn_child("fsize", dir.path());
    let out = child.wait_with_output().expect("child");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {text}");
    assert!(text.contains("FAILED Write("), "{text}");
    assert!(text.contains("transient=true"), "{text}");
    assert!(text.contains("LATER Err("), "{text}");
    assert!(text.contains("SURVIVED"), "{text}");
    // Whatever was acknowledged before the disk filled is there after a reopen.
    let acked: Vec<MessageId> = text
        .lines()
        .filter_map(|l| l.strip_prefix("ACK "))
        .map(|id| id.parse().unwrap())
        .collect();
    assert!(!acked.is_empty());
    let spool = RocksSpool::open(dir.path(), small()).expect("reopen");
    for id in acked {
        assert_eq!(spool.load_body(id).unwrap().len(), 64 << 10);
    }
}
