//! The send path, per write path: what one delivered recipient costs the sender.
//!
//! One pipelined session (PIPELINING + CHUNKING, 8 transactions back to back per
//! `send`) to the library's sink (`volley::sink`, on a thread and runtime of its
//! own) over loopback, sending messages of 4 KB and 100 KB to 1 and 50
//! recipients, on each path: `vectored` (writev through tokio), `io-uring`
//! (SENDMSG), `io-uring-zc` (SENDMSG_ZC for every write). The sender runs on this
//! thread (a current-thread runtime), so `getrusage(RUSAGE_THREAD)` is the
//! sender's CPU (user + system) and nothing of the sink's.
//!
//! First a fixed run per case prints a table (per delivered recipient: sender
//! CPU, process CPU including the sink, write system calls, user-space body bytes
//! copied, zero-copy bytes); then criterion measures the sender's CPU per message
//! (`iter_custom` returns thread CPU time, not wall time).
//!
//! `cargo bench --bench send`; `VOLLEY_SEND_TABLE_ONLY=1` skips criterion.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use volley::egress::{
    send_path, ClientSession, Endpoint, Job, MessageBody, SendPath, SendStats, SessionOptions,
    TlsPolicy, UringOptions,
};
use volley::sink::{Sink, SinkOptions};
use volley::smtp::address::{Domain, Mailbox, Path};
use volley::smtp::command::{MailFrom, RcptTo};

/// Transactions per `send` call (the pool's default window).
const BATCH: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Vectored,
    IoUring,
    IoUringZc,
}

impl Via {
    const ALL: [Via; 3] = [Via::Vectored, Via::IoUring, Via::IoUringZc];

    fn name(self) -> &'static str {
        match self {
            Via::Vectored => "vectored",
            Via::IoUring => "io-uring",
            Via::IoUringZc => "io-uring-zc",
        }
    }

    fn send_path(self) -> SendPath {
        let support = || send_path::probe().expect("io_uring on this machine");
        match self {
            Via::Vectored => SendPath::Vectored,
            Via::IoUring => SendPath::IoUring(UringOptions::new(usize::MAX, support())),
            Via::IoUringZc => SendPath::IoUring(UringOptions::new(0, support())),
        }
    }
}

/// A realistic body of `size` bytes: CRLF text lines, a few starting with a dot.
fn body(size: usize) -> MessageBody {
    let mut b =
        b"From: news@sender.example\r\nTo: you@d.example\r\nSubject: bench\r\n\r\n".to_vec();
    let mut i = 0;
    while b.len() < size {
        let line = format!(
            "{}Line {i}: the quick brown fox jumps over the lazy dog, again and again.\r\n",
            if i % 40 == 0 { "." } else { "" }
        );
        b.extend_from_slice(line.as_bytes());
        i += 1;
    }
    b.truncate(size - 2);
    b.extend_from_slice(b"\r\n");
    MessageBody::new(Bytes::from(b))
}

fn jobs(size: usize, rcpts: usize) -> Vec<Job> {
    let body = body(size);
    let rcpts: Vec<RcptTo> = (0..rcpts)
        .map(|i| {
            RcptTo::new(Path::mailbox(Mailbox {
                local: format!("user{i}"),
                domain: Domain::Name("d.example".into()),
            }))
        })
        .collect();
    let mail = MailFrom::new(Path::mailbox(Mailbox {
        local: "bounces".into(),
        domain: Domain::Name("sender.example".into()),
    }));
    (0..BATCH)
        .map(|_| Job {
            mail: mail.clone(),
            rcpts: rcpts.clone(),
            body: body.clone(),
        })
        .collect()
}

/// CPU time (user + system) of this thread, or of the whole process.
fn cpu(who: libc::c_int) -> Duration {
    // SAFETY: getrusage writes one rusage into the zeroed local it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

struct Bench {
    rt: tokio::runtime::Runtime,
    session: Option<ClientSession>,
    jobs: Vec<Job>,
}

impl Bench {
    fn new(sink: &Sink, via: Via, size: usize, rcpts: usize) -> Bench {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut options = SessionOptions::new("bench.volley.test");
        options.tls_policy = TlsPolicy::Disabled;
        options.send_path = via.send_path();
        let endpoint = Endpoint::new("sink.test", sink.local_addrs()[0]);
        let (session, _) = rt
            .block_on(ClientSession::connect(&[endpoint], &options))
            .expect("connect to the sink");
        Bench {
            rt,
            session: Some(session),
            jobs: jobs(size, rcpts),
        }
    }

    /// Sends `messages`, in batches of [`BATCH`]; returns the counters.
    fn send(&mut self, messages: u64) -> SendStats {
        let session = self.session.as_mut().unwrap();
        let jobs = &self.jobs;
        self.rt.block_on(async {
            let mut total = SendStats::default();
            let mut sent = 0;
            while sent < messages {
                let n = jobs.len().min((messages - sent) as usize);
                let report = session.send(&jobs[..n]).await;
                assert!(report.error.is_none(), "{:?}", report.error);
                let s = report.stats;
                total.transactions += s.transactions;
                total.writes += s.writes;
                total.reads += s.reads;
                total.bytes_written += s.bytes_written;
                total.body_bytes += s.body_bytes;
                total.body_bytes_copied += s.body_bytes_copied;
                total.syscalls += s.syscalls;
                total.zerocopy_bytes += s.zerocopy_bytes;
                sent += n as u64;
            }
            total
        })
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            self.rt.block_on(s.quit());
        }
    }
}

const SIZES: [(usize, &str); 2] = [(4 << 10, "4KB"), (100 << 10, "100KB")];
const RCPTS: [usize; 2] = [1, 50];

/// Messages in the table's fixed run: about 400 MB of body per case.
fn table_messages(size: usize) -> u64 {
    ((400u64 << 20) / size as u64).clamp(400, 40_000)
}

fn table(sink: &Sink) {
    println!(
        "\n| path | body | rcpts | sender CPU us/rcpt | process CPU us/rcpt | write syscalls/msg | \
         body bytes copied/rcpt | zero-copy bytes/msg | msgs/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let cases = SIZES
        .iter()
        .flat_map(|&(size, name)| RCPTS.iter().map(move |&r| (size, name, r)))
        // Where zero-copy might start to pay: a big attachment.
        .chain([(1 << 20, "1MB", 1)]);
    for (size, size_name, rcpts) in cases {
        {
            for via in Via::ALL {
                let mut b = Bench::new(sink, via, size, rcpts);
                b.send(200); // warm up (connection, caches)
                let n = table_messages(size);
                let (t0, p0, w0) = (
                    cpu(libc::RUSAGE_THREAD),
                    cpu(libc::RUSAGE_SELF),
                    Instant::now(),
                );
                let s = b.send(n);
                let (t1, p1, wall) = (
                    cpu(libc::RUSAGE_THREAD),
                    cpu(libc::RUSAGE_SELF),
                    w0.elapsed(),
                );
                let msgs = s.transactions as f64;
                let delivered = msgs * rcpts as f64;
                println!(
                    "| {} | {size_name} | {rcpts} | {:.3} | {:.3} | {:.3} | {:.0} | {:.0} | {:.0} |",
                    via.name(),
                    (t1 - t0).as_secs_f64() * 1e6 / delivered,
                    (p1 - p0).as_secs_f64() * 1e6 / delivered,
                    s.syscalls as f64 / msgs,
                    s.body_bytes_copied as f64 / delivered,
                    s.zerocopy_bytes as f64 / msgs,
                    msgs / wall.as_secs_f64(),
                );
            }
        }
    }
    println!();
}

fn bench(c: &mut Criterion, sink: &Sink) {
    for (size, size_name) in SIZES {
        for rcpts in RCPTS {
            let mut group = c.benchmark_group(format!("send_cpu/{size_name}x{rcpts}"));
            group.throughput(Throughput::Elements(rcpts as u64));
            for via in Via::ALL {
                let mut b = Bench::new(sink, via, size, rcpts);
                group.bench_function(BenchmarkId::from_parameter(via.name()), |bencher| {
                    bencher.iter_custom(|iters| {
                        let t0 = cpu(libc::RUSAGE_THREAD);
                        b.send(iters);
                        cpu(libc::RUSAGE_THREAD) - t0
                    })
                });
            }
            group.finish();
        }
    }
}

fn main() {
    let sink = Sink::start(SinkOptions {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        ..SinkOptions::default()
    })
    .expect("start the sink");
    let sink = Arc::new(sink);
    table(&sink);
    if std::env::var_os("VOLLEY_SEND_TABLE_ONLY").is_some() {
        return;
    }
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench(&mut c, &sink);
    c.final_summary();
}
