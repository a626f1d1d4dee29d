//! Interop with Postfix's own test tools: our blaster against `smtp-sink`, and
//! Postfix's `smtp-source` (and `swaks`) against our sink.

use std::process::{Command, Stdio};

use crate::harness::{blast, postfix_tool, read_jsonl, Sink, SmtpSink, TempDir};

#[test]
fn blast_delivers_to_postfix_smtp_sink() {
    let sink = SmtpSink::start("127.0.0.1");
    let report = blast(
        sink.addr,
        &["--messages", "2000", "--connections", "4", "--size", "4096"],
    );
    assert_eq!(report["messages"], 2000, "{report}");
    assert_eq!(report["accepted_recipients"], 2000, "{report}");
    assert_eq!(report["replies"]["2xx"], 2000, "{report}");
}

#[test]
fn blast_without_pipelining_delivers_to_postfix_smtp_sink() {
    let sink = SmtpSink::start("127.0.0.1");
    let report = blast(
        sink.addr,
        &[
            "--messages",
            "300",
            "--connections",
            "3",
            "--rcpts-per-msg",
            "3",
            "--no-pipelining",
        ],
    );
    assert_eq!(report["messages"], 300, "{report}");
    assert_eq!(report["recipients"], 900, "{report}");
    assert_eq!(report["accepted_recipients"], 900, "{report}");
}

#[test]
fn smtp_source_delivers_to_volley_sink() {
    let dir = TempDir::new("smtp-source");
    let record = dir.0.join("record.jsonl");
    let sink = Sink::start("127.0.0.1", &["--record", record.to_str().unwrap()]);
    // -d: reuse connections; -N: unique recipients; 5 sessions, 4 KB, 2 rcpts each.
    let status = Command::new(postfix_tool("smtp-source"))
        .args(["-d", "-N", "-s", "5", "-m", "500", "-l", "4096", "-r", "2"])
        .args(["-f", "sender@source.example", "-t", "rcpt@dest.example"])
        .arg(sink.addr.to_string())
        .stdout(Stdio::null())
        .status()
        .expect("run smtp-source");
    assert!(status.success(), "smtp-source exited with {status}");
    let summary = sink.stop();
    assert_eq!(summary["messages"], 500, "{summary}");
    assert_eq!(summary["recipients"], 1000, "{summary}");
    let lines = read_jsonl(&record);
    assert_eq!(lines.len(), 500);
    for line in &lines {
        assert_eq!(line["mail_from"], "sender@source.example");
        assert_eq!(line["rcpts"].as_array().unwrap().len(), 2);
        let size = line["size"].as_u64().unwrap();
        assert!((4096..4096 + 512).contains(&size), "size {size}");
        assert_eq!(line["sha256"].as_str().unwrap().len(), 64);
    }
}

#[test]
fn swaks_starttls_delivers_to_volley_sink() {
    if which("swaks").is_none() {
        panic!("swaks not found: install Debian's `swaks` package (.ci/run does)");
    }
    let dir = TempDir::new("swaks");
    let record = dir.0.join("record.jsonl");
    let sink = Sink::start(
        "127.0.0.1",
        &["--tls", "--record", record.to_str().unwrap()],
    );
    let out = Command::new("swaks")
        .args([
            "--server",
            &sink.addr.ip().to_string(),
            "--port",
            &sink.addr.port().to_string(),
        ])
        .args([
            "--from",
            "a@swaks.example",
            "--to",
            "b@dest.example",
            "--tls",
        ])
        .args([
            "--body",
            "hello over TLS\r\n..a line that starts with a dot\r\n",
        ])
        .output()
        .expect("run swaks");
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "swaks failed:\n{transcript}");
    assert!(transcript.contains("STARTTLS"), "{transcript}");
    let summary = sink.stop();
    assert_eq!(summary["messages"], 1, "{summary}");
    let lines = read_jsonl(&record);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["tls"], true);
    assert_eq!(lines[0]["rcpts"][0], "b@dest.example");
}

fn which(cmd: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(cmd))
        .find(|p| p.exists())
}
