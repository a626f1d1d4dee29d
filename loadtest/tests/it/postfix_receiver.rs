//! The Postfix receiver harness on its own: a stock SMTP client (Python's smtplib)
//! delivers to a private Postfix `smtpd`, and the test reads back what was stored.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::free_port;
use crate::postfix_smtpd::{crlf_to_lf, PostfixSmtpd};

/// A message with the things relays get wrong: a leading-dot line, a long line,
/// folded header, trailing blank line.
pub fn sample_message(tag: &str) -> Vec<u8> {
    let long = "x".repeat(900);
    format!(
        "From: Sender <sender@origin.test>\r\n\
         To: undisclosed-recipients:;\r\n\
         Subject: receiver harness {tag}\r\n\
         \tfolded subject line\r\n\
         Date: Mon, 23 Nov 2026 07:00:00 +0000\r\n\
         Message-ID: <{tag}@origin.test>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         first line\r\n\
         .a line that starts with a dot\r\n\
         ..two dots\r\n\
         {long}\r\n\
         \r\n\
         last line\r\n"
    )
    .into_bytes()
}

/// Sends `message` with Python's smtplib; returns the recipients refused at RCPT
/// as a JSON object `{rcpt: [code, text]}`.
pub fn smtplib_send(
    addr: SocketAddr,
    from: &str,
    rcpts: &[&str],
    message: &[u8],
) -> serde_json::Value {
    const SCRIPT: &str = r#"
import json, smtplib, sys
host, port, sender = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rcpts = sys.argv[4:]
body = sys.stdin.buffer.read()
with smtplib.SMTP(host, port, timeout=20) as s:
    refused = s.sendmail(sender, rcpts, body)
print(json.dumps({r: [c, m.decode()] for r, (c, m) in refused.items()}))
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(from)
        .args(rcpts)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child.stdin.take().unwrap().write_all(message).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "smtplib failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("smtplib JSON")
}

#[test]
fn postfix_receiver_stores_exact_bytes_per_recipient() {
    let pf = PostfixSmtpd::start("127.0.0.61", &["pf.test", "other.test"]);
    let message = sample_message("one");
    let refused = smtplib_send(
        pf.addr,
        "sender@origin.test",
        &["alice@pf.test", "reject-me@pf.test", "bob@other.test"],
        &message,
    );
    let refused = refused.as_object().unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused["reject-me@pf.test"][0], 550);

    let mut stored = pf.wait_stored(2, Duration::from_secs(30));
    stored.sort_by(|a, b| a.rcpt.cmp(&b.rcpt));
    let rcpts: Vec<&str> = stored.iter().map(|s| s.rcpt.as_str()).collect();
    assert_eq!(rcpts, ["alice@pf.test", "bob@other.test"]);
    let want = crlf_to_lf(&message);
    for s in &stored {
        assert_eq!(
            String::from_utf8_lossy(&s.content()),
            String::from_utf8_lossy(&want),
            "stored for {}",
            s.rcpt
        );
        assert_eq!(
            s.trace_header("Return-Path").unwrap(),
            "<sender@origin.test>"
        );
        assert_eq!(s.trace_header("Delivered-To").unwrap(), s.rcpt);
    }
    // Nothing more arrives (the rejected recipient stays rejected).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pf.stored().len(), 2);
}

#[test]
fn postfix_receivers_in_parallel_share_a_port_number() {
    // Two instances, two addresses, one port number: the shape MX tests need.
    let port = free_port("127.0.0.62").port();
    let a = PostfixSmtpd::start_at(SocketAddr::from(([127, 0, 0, 62], port)), &["a.test"]);
    let b = PostfixSmtpd::start_at(SocketAddr::from(([127, 0, 0, 63], port)), &["b.test"]);
    let m = sample_message("parallel");
    smtplib_send(a.addr, "s@origin.test", &["x@a.test"], &m);
    smtplib_send(b.addr, "s@origin.test", &["y@b.test"], &m);
    // A receiver refuses domains it does not host (never an open relay).
    let err = Command::new("python3")
        .args(["-c", "import smtplib,sys; smtplib.SMTP(sys.argv[1], int(sys.argv[2])).sendmail('s@o.test', ['z@b.test'], b'x')"])
        .arg(a.addr.ip().to_string())
        .arg(port.to_string())
        .output()
        .unwrap();
    assert!(!err.status.success(), "relay to b.test through a accepted");
    let sa = a.wait_stored(1, Duration::from_secs(30));
    let sb = b.wait_stored(1, Duration::from_secs(30));
    assert_eq!(sa[0].rcpt, "x@a.test");
    assert_eq!(sb[0].rcpt, "y@b.test");
    assert_eq!(sa[0].content(), crlf_to_lf(&m));
    assert_eq!(sb[0].content(), crlf_to_lf(&m));
}
