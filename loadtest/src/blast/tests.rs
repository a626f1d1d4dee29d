//! Flag parsing, and end-to-end runs against Postfix's `smtp-sink`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

use super::{blast, with_port, Args};

/// Wraps [`Args`] the way `volley-load` does.
#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
    Cli::try_parse_from(std::iter::once("blast").chain(argv.iter().copied())).map(|c| c.args)
}

#[test]
fn a_limit_is_required() {
    let err = parse(&["--target", "127.0.0.1:25"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    assert!(err.use_stderr(), "main.rs maps this to exit 2");
    assert!(parse(&["--target", "127.0.0.1:25", "--duration", "1.5"]).is_ok());
    let both = parse(&[
        "--target",
        "a:25",
        "--target",
        "b:26",
        "--messages",
        "5",
        "--duration",
        "2",
    ])
    .unwrap();
    assert_eq!(both.targets.len(), 2);
    assert_eq!(both.messages, Some(5));
    assert_eq!(both.duration, Some(Duration::from_secs(2)));
}

#[test]
fn bad_numbers_are_usage_errors() {
    for bad in [
        &["--target", "h:25", "--messages", "0"][..],
        &["--target", "h:25", "--duration", "-1"],
        &["--target", "h:25", "--messages", "1", "--rate", "0"],
        &["--target", "h:25", "--messages", "1", "--connections", "0"],
        &["--target", "h:25", "--messages", "1", "--window", "0"],
    ] {
        let err = parse(bad).unwrap_err();
        assert!(err.use_stderr(), "{bad:?}");
    }
}

#[test]
fn defaults() {
    let a = parse(&["--target", "h:25", "--messages", "1"]).unwrap();
    assert_eq!(a.connections, 20);
    assert_eq!(a.size, 4096);
    assert_eq!(a.rcpts_per_msg, 1);
    assert_eq!(a.window, 8);
    assert_eq!(a.rate, None);
    assert!(!a.chunking && !a.no_pipelining && !a.starttls && !a.json);
}

#[test]
fn targets_get_port_25() {
    assert_eq!(
        with_port("127.0.0.1:2525"),
        ("127.0.0.1".into(), "127.0.0.1:2525".into())
    );
    assert_eq!(
        with_port("127.0.0.1"),
        ("127.0.0.1".into(), "127.0.0.1:25".into())
    );
    assert_eq!(with_port("[::1]:26"), ("::1".into(), "[::1]:26".into()));
    assert_eq!(with_port("::1"), ("::1".into(), "[::1]:25".into()));
    assert_eq!(
        with_port("mx.example"),
        ("mx.example".into(), "mx.example:25".into())
    );
    assert_eq!(
        with_port("mx.example:587"),
        ("mx.example".into(), "mx.example:587".into())
    );
}

const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

/// A private `smtp-sink`, killed on drop.
struct Sink {
    child: Child,
    addr: String,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `smtp-sink` on a free port in 2700-2799 (checked first: a second copy
/// would bind an occupied port silently). `None` when no port in the range is free.
fn start_sink(first_port: u16) -> Option<Sink> {
    // A missing peer is a failure, not a silent pass: .ci/run installs postfix.
    assert!(
        Path::new(SMTP_SINK).exists(),
        "{SMTP_SINK} not found: install Debian's `postfix` package (.ci/run does)"
    );
    for port in first_port..2800 {
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(SMTP_SINK)
            .args(["-u", "nobody", &addr, "1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn smtp-sink");
        let sink = Sink { child, addr };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if std::net::TcpStream::connect(&sink.addr).is_ok() {
                return Some(sink);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("smtp-sink did not start on {}", sink.addr);
    }
    panic!("no free port in {first_port}..2800");
}

fn run_blast(argv: &[&str]) -> super::report::Summary {
    let args = parse(argv).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(blast(&args, false)).unwrap()
}

#[test]
fn every_message_is_accepted_by_smtp_sink() {
    let sink = start_sink(2720).expect("no free port in 2720-2799 for smtp-sink");
    let t = sink.addr.as_str();

    // Pipelined DATA (smtp-sink offers PIPELINING, not CHUNKING: --chunking falls back).
    for extra in [&[][..], &["--chunking"], &["--window", "1"]] {
        let mut argv = vec!["--target", t, "--messages", "2000", "--connections", "8"];
        argv.extend_from_slice(extra);
        let s = run_blast(&argv);
        assert_eq!(s.messages, 2000, "{extra:?}: {s:?}");
        assert_eq!(s.replies.ok, 2000, "{extra:?}: {s:?}");
        assert_eq!(s.accepted_recipients, 2000, "{extra:?}");
        assert_eq!(s.reply_codes.get("250"), Some(&2000));
        assert_eq!(
            (s.lost, s.unsent, s.disconnects, s.connect_errors),
            (0, 0, 0, 0),
            "{extra:?}"
        );
        assert_eq!(s.sessions.pipelining, 8);
    }

    // Many recipients over many domains, odd size, no pipelining.
    let s = run_blast(&[
        "--target",
        t,
        "--messages",
        "300",
        "--connections",
        "3",
        "--rcpts-per-msg",
        "7",
        "--domains",
        "5",
        "--size",
        "10001",
        "--no-pipelining",
    ]);
    assert_eq!(
        (s.messages, s.recipients, s.accepted_recipients),
        (300, 2100, 2100),
        "{s:?}"
    );
    assert_eq!(s.sessions.lockstep, 3);
    assert_eq!(s.message_bytes, 10001);

    // Open loop: 400/s for 0.5 s is 200 messages, taking about 0.5 s.
    let s = run_blast(&[
        "--target",
        t,
        "--messages",
        "200",
        "--rate",
        "400",
        "--connections",
        "4",
    ]);
    assert_eq!(s.messages, 200, "{s:?}");
    // Open loop: message 199 is not due before 199/400 s, however fast the sink.
    // (No upper bound: this machine is shared, timing goals live in benchmarks.)
    assert!(s.elapsed_s >= 0.49, "{s:?}");
    assert_eq!(s.replies.ok, 200);
}

#[test]
fn unreachable_target_is_an_error() {
    // A port nobody listens on: bind it, note it, drop it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let args = parse(&[
        "--target",
        &format!("127.0.0.1:{port}"),
        "--messages",
        "5",
        "--connections",
        "2",
    ])
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt.block_on(blast(&args, false)).unwrap_err();
    assert!(err.to_string().contains("cannot reach"), "{err}");
}

/// A server that says 421 and closes after every 25th message of a connection:
/// each 421 is counted once, the transactions in flight behind it are lost, the
/// connection is reopened, and the run still accounts for every message.
#[test]
fn a_421_is_counted_and_the_run_carries_on() {
    for chunking in [true, false] {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let s = rt.block_on(async {
            let addr = super::fake::start(25, chunking).await.to_string();
            let mut argv = vec![
                "--target",
                addr.as_str(),
                "--messages",
                "600",
                "--connections",
                "3",
            ];
            if chunking {
                argv.push("--chunking");
            }
            blast(&parse(&argv).unwrap(), false).await.unwrap()
        });
        let closes = *s.reply_codes.get("421").unwrap_or(&0);
        // Each session completes 24 messages and a 25th answered 421; the last
        // session of each connection may end before its 25th.
        assert!(closes >= 10, "chunking {chunking}: {s:?}");
        assert!(
            (closes * 25..=closes * 25 + 3 * 24).contains(&s.messages),
            "{s:?}"
        );
        assert_eq!(s.replies.transient, closes);
        assert_eq!(s.replies.ok + closes, s.messages);
        assert_eq!(
            s.messages + s.lost + s.unsent,
            600,
            "chunking {chunking}: {s:?}"
        );
        assert_eq!(s.disconnects, closes);
        let sessions = s.sessions.chunking + s.sessions.pipelining;
        assert!((closes..=closes + 3).contains(&sessions), "{s:?}");
        assert_eq!(s.sessions.chunking > 0, chunking);
        if !chunking {
            // DATA mode has at most the next transaction's commands behind a final reply.
            assert!(s.lost <= closes, "{s:?}");
        }
    }
}
