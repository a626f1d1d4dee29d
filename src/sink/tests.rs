//! End to end: the sink in-process on 127.0.0.1:0, driven by a blocking
//! `std::net::TcpStream` client writing pipelined commands by hand.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use sha2::{Digest, Sha256};

use super::cli::Args;
use super::stats::Summary;
use super::{record, server};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

/// A sink running on its own runtime thread.
struct TestSink {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Summary>>,
}

impl TestSink {
    fn start(extra: &[&str]) -> TestSink {
        let argv = ["sink", "--listen", "127.0.0.1:0", "--quiet"]
            .iter()
            .chain(extra);
        let args = Cli::parse_from(argv).args;
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let cfg = Arc::new(server::Config::from_options(&args.to_options()).unwrap());
                let recorder = args
                    .record
                    .as_deref()
                    .map(|p| record::Recorder::create(p).unwrap());
                let shared = Arc::new(server::Shared::new(recorder));
                let listener = server::bind(args.listen[0]).unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                server::serve(cfg, shared, vec![listener], async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        TestSink {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Summary {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap()
    }

    fn client(&self) -> Client {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut c = Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        };
        assert!(c.reply().starts_with("220 "));
        c
    }
}

struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// One whole reply, all lines joined with `\n` (no CRLF).
    fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).unwrap();
            assert!(n > 0, "connection closed after {lines:?}");
            let line = line.trim_end_matches("\r\n").to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    /// Reads `n` replies and returns their codes.
    fn codes(&mut self, n: usize) -> Vec<u16> {
        (0..n).map(|_| self.reply()[..3].parse().unwrap()).collect()
    }

    fn ehlo(&mut self) -> String {
        self.send(b"EHLO client.example\r\n");
        self.reply()
    }

    /// True when the server has closed the connection.
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok() && rest.is_empty()
    }
}

fn sha_hex(data: &[u8]) -> String {
    record::hex(&Sha256::digest(data))
}

fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("volley-sink-{name}-{}.jsonl", std::process::id()))
}

fn records(path: &PathBuf) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn pipelined_transactions_are_answered_and_recorded() {
    let path = temp_file("pipelining");
    let sink = TestSink::start(&["--record", path.to_str().unwrap(), "--max-size", "100000"]);
    let mut c = sink.client();
    let ehlo = c.ehlo();
    for cap in [
        "PIPELINING",
        "CHUNKING",
        "8BITMIME",
        "SIZE 100000",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
    ] {
        assert!(ehlo.contains(cap), "{cap} missing from {ehlo}");
    }
    assert!(!ehlo.contains("STARTTLS"));

    c.send(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<a@x.example>\r\nRCPT TO:<550@x.example>\r\nRCPT TO:<b@x.example>\r\nDATA\r\n");
    assert_eq!(c.codes(5), [250, 250, 550, 250, 354]);
    // Body 1 (with a stuffed dot), its end, and the whole next transaction's
    // commands in one write.
    c.send(b"Subject: one\r\n\r\n..dot\r\nend\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<c@y.example>\r\nDATA\r\n");
    let replies: Vec<String> = (0..4).map(|_| c.reply()).collect();
    assert!(replies[0].starts_with("250 2.6.0"), "{replies:?}");
    assert!(replies[3].starts_with("354 "), "{replies:?}");
    c.send(b"two\r\n.\r\nQUIT\r\n");
    assert_eq!(c.codes(2), [250, 221]);
    assert!(c.closed());

    let lines = records(&path);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let one = b"Subject: one\r\n\r\n.dot\r\nend\r\n";
    assert_eq!(lines[0]["mail_from"], "s@example.org");
    assert_eq!(
        lines[0]["rcpts"],
        serde_json::json!(["a@x.example", "b@x.example"])
    );
    assert_eq!(lines[0]["size"], one.len());
    assert_eq!(lines[0]["sha256"], sha_hex(one));
    assert_eq!(lines[0]["helo"], "client.example");
    assert_eq!(lines[0]["tls"], false);
    assert_eq!(lines[0]["listen"], sink.addr.to_string());
    assert_eq!(lines[1]["mail_from"], "");
    assert_eq!(lines[1]["sha256"], sha_hex(b"two\r\n"));

    let s = sink.stop();
    assert_eq!((s.messages, s.recipients, s.connections), (2, 3, 1));
    assert_eq!(s.bytes, (one.len() + 5) as u64);
    assert_eq!(s.replies["550"], 1);
    assert_eq!(s.replies["354"], 2);
    assert_eq!(s.replies["221"], 1);
    let _ = std::fs::remove_file(path);
}

#[test]
fn bdat_chunks_split_over_writes() {
    let path = temp_file("bdat");
    let sink = TestSink::start(&["--record", path.to_str().unwrap(), "--max-size", "64"]);
    let mut c = sink.client();
    c.ehlo();
    c.send(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<a@x.example>\r\nBDAT 11\r\nhel");
    std::thread::sleep(Duration::from_millis(20));
    c.send(b"lo\r\n.\r\n");
    std::thread::sleep(Duration::from_millis(20));
    c.send(b"\nBDAT 6 LAST\r\nworld!BDAT 0 LAST\r\n");
    assert_eq!(c.codes(5), [250, 250, 250, 250, 503]);
    // Over the SIZE limit: the chunk is read (the session stays in sync) and refused.
    c.send(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<a@x.example>\r\nBDAT 65 LAST\r\n");
    c.send(&[b'x'; 65]);
    c.send(b"NOOP\r\n");
    let r: Vec<String> = (0..4).map(|_| c.reply()).collect();
    assert!(r[2].starts_with("552 5.3.4"), "{r:?}");
    assert!(r[3].starts_with("250 "), "{r:?}");
    let lines = records(&path);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["size"], 17);
    assert_eq!(lines[0]["sha256"], sha_hex(b"hello\r\n.\r\n\nworld!"));
    let s = sink.stop();
    assert_eq!((s.messages, s.recipients, s.bytes), (1, 1, 17));
    let _ = std::fs::remove_file(path);
}

#[test]
fn smuggling_and_bare_lf_are_refused_and_close() {
    let sink = TestSink::start(&[]);
    for body in [
        &b"hi\r\n\n.\nMAIL FROM:<evil@x>\r\n"[..],
        b"bare\nlf\r\n.\r\n",
    ] {
        let mut c = sink.client();
        c.ehlo();
        c.send(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<a@x.example>\r\nDATA\r\n");
        assert_eq!(c.codes(3), [250, 250, 354]);
        c.send(body);
        let r = c.reply();
        assert!(r.starts_with("554 5.6.0"), "{r}");
        assert!(c.closed());
    }
    let s = sink.stop();
    assert_eq!(s.messages, 0);
    assert_eq!(s.replies["554"], 2);
}

#[test]
fn sequencing_errors_long_lines_and_size() {
    let sink = TestSink::start(&["--max-size", "1000"]);
    let mut c = sink.client();
    c.send(b"MAIL FROM:<s@example.org>\r\n");
    assert!(c.reply().starts_with("503 5.5.1"));
    c.ehlo();
    c.send(b"RCPT TO:<a@x.example>\r\nDATA\r\nMAIL FROM:<s@example.org> SIZE=2000\r\n");
    assert_eq!(c.codes(3), [503, 503, 552]);
    c.send(b"MAIL FROM:<s@example.org>\r\nMAIL FROM:<s@example.org>\r\nDATA\r\nRSET\r\n");
    assert_eq!(c.codes(4), [250, 503, 554, 250]);
    let mut long = vec![b'A'; 20_000];
    long.extend_from_slice(b"\r\nNOOP\r\nVRFY x\r\nBOGUS\r\nSTARTTLS\r\n");
    c.send(&long);
    let r: Vec<String> = (0..5).map(|_| c.reply()).collect();
    assert!(r[0].starts_with("500 5.5.2"), "{r:?}");
    assert!(r[1].starts_with("250 "), "{r:?}");
    assert!(r[2].starts_with("252 "), "{r:?}");
    assert!(r[3].starts_with("50"), "{r:?}");
    assert!(r[4].starts_with("502 "), "{r:?}");
    c.send(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<a@x.example>\r\nDATA\r\n");
    assert_eq!(c.codes(3), [250, 250, 354]);
    let mut big = vec![b'y'; 1500];
    big.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
    c.send(&big);
    let r = c.reply();
    assert!(r.starts_with("552 5.3.4"), "{r}");
    assert_eq!(c.codes(1), [250]);
    sink.stop();
}

#[test]
fn magic_recipients() {
    let sink = TestSink::start(&[]);
    let mut c = sink.client();
    c.ehlo();
    c.send(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<452@x.example>\r\nRCPT TO:<450@x.example>\r\nRCPT TO:<tempfail-once-t1@x.example>\r\nRCPT TO:<tempfail-once-t1@x.example>\r\nRCPT TO:<data-451@x.example>\r\nDATA\r\n");
    let r: Vec<String> = (0..7).map(|_| c.reply()).collect();
    assert!(r[1].starts_with("452 4.5.3"), "{r:?}");
    assert!(r[2].starts_with("450 4.2.0"), "{r:?}");
    assert!(r[3].starts_with("451 4.3.0"), "{r:?}");
    assert!(r[4].starts_with("250 "), "{r:?}");
    assert!(r[6].starts_with("354 "), "{r:?}");
    c.send(b"body\r\n.\r\n");
    assert!(c.reply().starts_with("451 4.3.0"));

    let t = Instant::now();
    c.send(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<delay-150@x.example>\r\nNOOP\r\n");
    assert_eq!(c.codes(3), [250, 250, 250]);
    assert!(t.elapsed() >= Duration::from_millis(150));

    c.send(b"RSET\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<disconnect-data@x.example>\r\nDATA\r\n");
    assert_eq!(c.codes(4), [250, 250, 250, 354]);
    c.send(b"body\r\n.\r\n");
    assert!(c.closed());

    let mut c = sink.client();
    c.ehlo();
    c.send(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<421-disconnect@x.example>\r\n");
    let r: Vec<String> = (0..2).map(|_| c.reply()).collect();
    assert!(r[1].starts_with("421 4.4.2"), "{r:?}");
    assert!(c.closed());
    let s = sink.stop();
    assert_eq!((s.messages, s.connections), (0, 2));
}

#[test]
fn fault_rates_and_latency_flags() {
    let sink = TestSink::start(&["--rcpt-permfail", "100", "--latency", "mail=100"]);
    let mut c = sink.client();
    c.ehlo();
    let t = Instant::now();
    c.send(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<a@x.example>\r\nRCPT TO:<550@x.example>\r\nDATA\r\n");
    assert_eq!(c.codes(4), [250, 550, 550, 554]);
    assert!(t.elapsed() >= Duration::from_millis(100));
    let s = sink.stop();
    assert_eq!(s.replies["550"], 2);
}

#[test]
fn shutdown_counts_open_connections() {
    let sink = TestSink::start(&["--data-tempfail", "50", "--seed", "3"]);
    let mut c = sink.client();
    c.ehlo();
    let mut accepted = 0;
    for _ in 0..200 {
        c.send(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<a@x.example>\r\nBDAT 4 LAST\r\nabcd");
        let codes = c.codes(3);
        accepted += (codes[2] == 250) as u64;
    }
    assert!((50..150).contains(&accepted), "{accepted}");
    // The connection is still open: its counts must still reach the summary.
    let s = sink.stop();
    assert_eq!(s.messages, accepted);
    assert_eq!(s.replies["451"], 200 - accepted);
    assert!(c.reply().starts_with("421 4.3.2"));
}

#[test]
fn idle_timeout_and_connection_cap() {
    let sink = TestSink::start(&["--idle-timeout", "1", "--max-conns", "1"]);
    let mut first = sink.client();
    // The second connection waits in the backlog: no banner while the first is open.
    let second = TcpStream::connect(sink.addr).unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut second = Client {
        reader: BufReader::new(second.try_clone().unwrap()),
        stream: second,
    };
    let mut byte = [0u8; 1];
    assert!(
        second.reader.get_mut().read(&mut byte).is_err(),
        "banner despite the cap"
    );
    // The first, silent, is closed after the idle timeout; then the second gets in.
    let t = Instant::now();
    assert!(first.reply().starts_with("421 4.4.2"));
    assert!(first.closed());
    // Well under the 300 s default: the 1 s flag took effect (loose, for a busy box).
    assert!(t.elapsed() < Duration::from_secs(30));
    second
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(second.reply().starts_with("220 "));
    let s = sink.stop();
    assert_eq!(s.connections, 2);
    assert_eq!(s.replies["421"], 2);
}

#[test]
fn in_process_sink_reports_live_stats_and_exact_totals() {
    use crate::sink::{Sink, SinkError, SinkOptions};
    let sink = Sink::start(SinkOptions {
        listen: vec![
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.2:0".parse().unwrap(),
        ],
        ..SinkOptions::default()
    })
    .unwrap();
    let addrs = sink.local_addrs().to_vec();
    assert_eq!(addrs.len(), 2);
    assert!(addrs.iter().all(|a| a.port() != 0));
    // The second address's port is taken now: starting on it fails, naming it.
    let taken = Sink::start(SinkOptions {
        listen: vec![addrs[1]],
        ..SinkOptions::default()
    });
    assert!(matches!(taken, Err(SinkError::Bind { addr, .. }) if addr == addrs[1]));

    let stream = TcpStream::connect(addrs[1]).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut c = Client {
        reader: BufReader::new(stream.try_clone().unwrap()),
        stream,
    };
    assert!(c.reply().starts_with("220 "));
    c.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nRCPT TO:<z@y>\r\nDATA\r\n");
    assert_eq!(c.codes(5), [250, 250, 250, 250, 354]);
    c.send(b"Subject: t\r\n\r\nhello\r\n.\r\n");
    assert_eq!(c.codes(1), [250]);
    // The connection stays open and idle: stats() still sees its counts.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = sink.stats();
        if s.messages == 1 {
            assert_eq!((s.recipients, s.connections), (2, 1));
            break;
        }
        assert!(Instant::now() < deadline, "{s:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let summary = sink.shutdown();
    assert_eq!((summary.messages, summary.recipients), (1, 2));
    assert!(c.reply().starts_with("421 "), "shutdown closes with 421");
}
