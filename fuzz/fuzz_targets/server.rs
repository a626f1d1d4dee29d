#![no_main]
//! A hostile client against the ESMTP server state machine: any bytes, split into
//! reads of any size, with the connection's answers (lockout, password check,
//! store) chosen by the input. The session never panics, never consumes more
//! than it was given, replies only in whole well-formed reply lines, and hands
//! over only messages that have recipients and fit the size limit.

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use volley::smtp::server::{
    Action, AuthOutcome, RelayDomains, Role, Session, SessionConfig, StoreOutcome, TlsInfo,
};

const MAX_SIZE: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let [flags, split, rest @ ..] = data else {
        return;
    };
    let role = match flags & 3 {
        0 => Role::Relay,
        1 => Role::Submission {
            allow_plaintext_auth: false,
        },
        _ => Role::Submission {
            allow_plaintext_auth: true,
        },
    };
    let mut cfg = SessionConfig::new(role, "fuzz.test");
    cfg.starttls = flags & 4 != 0;
    cfg.max_message_size = MAX_SIZE;
    cfg.max_line_length = 1000;
    cfg.max_recipients = 5;
    cfg.relay_domains = match RelayDomains::new(["relay.test"]) {
        Ok(d) => d,
        Err(_) => return,
    };
    let trusted = flags & 8 != 0;
    let locked = flags & 16 != 0;
    let mut session = Session::new(Arc::new(cfg), "192.0.2.1".parse().unwrap(), trusted);
    let mut out = Vec::new();
    session.banner(&mut out);
    let mut pending: Vec<u8> = Vec::new();
    for piece in rest.chunks(usize::from(*split) + 1) {
        pending.extend_from_slice(piece);
        loop {
            let (n, action) = session.feed(&pending, &mut out);
            assert!(n <= pending.len(), "consumed more than given");
            pending.drain(..n);
            match action {
                Action::Read => break,
                Action::Close => {
                    check_replies(&out);
                    return;
                }
                Action::StartTls => {
                    pending.clear();
                    session.tls_started(TlsInfo {
                        version: "TLSv1.3".into(),
                        cipher: "TLS13_AES_128_GCM_SHA256".into(),
                    });
                }
                Action::AuthGate => session.auth_gate(locked, &mut out),
                Action::Verify(c) => {
                    let outcome = if c.password.len() % 2 == 0 {
                        AuthOutcome::Accepted { tenant: None }
                    } else {
                        AuthOutcome::Rejected
                    };
                    session.auth_verified(outcome, &mut out);
                }
                Action::Store(t) => {
                    assert!(!t.rcpts.is_empty(), "a message without recipients");
                    assert!(t.body.len() <= MAX_SIZE, "a message over the size limit");
                    let header = t.received_header("fuzz.test", "id", 0);
                    assert!(
                        header.ends_with("\r\n")
                            && !header[..header.len() - 2].contains("\r\n\r\n")
                    );
                    let outcome = match t.body.len() % 3 {
                        0 => StoreOutcome::Queued("id".into()),
                        1 => StoreOutcome::TryLater,
                        _ => StoreOutcome::Refused,
                    };
                    session.stored(outcome, &mut out);
                }
            }
        }
    }
    check_replies(&out);
});

/// Every reply line is `DDD` then space or hyphen, and ends in CRLF.
fn check_replies(out: &[u8]) {
    assert!(
        out.is_empty() || out.ends_with(b"\r\n"),
        "a partial reply line"
    );
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        assert!(line.ends_with(b"\r"), "bare LF in replies");
        let line = &line[..line.len() - 1];
        assert!(!line.contains(&b'\r'), "bare CR in replies");
        assert!(
            line.len() >= 3 && line[..3].iter().all(u8::is_ascii_digit),
            "{line:?}"
        );
        assert!(matches!(line.get(3), None | Some(b' ' | b'-')), "{line:?}");
    }
}
