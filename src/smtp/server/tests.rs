//! The server state machine driven by command sequences: replies, actions and
//! the transactions it hands over, with the connection's part played by a small
//! driver (TLS always succeeds, password "right" is right, stores succeed).

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::*;

const HOST: &str = "mx.volley.test";

fn submission(allow_plaintext_auth: bool) -> SessionConfig {
    let mut c = SessionConfig::new(
        Role::Submission {
            allow_plaintext_auth,
        },
        HOST,
    );
    c.starttls = true;
    c.max_message_size = 1000;
    c.max_recipients = 3;
    c.max_line_length = 100;
    c.max_auth_failures = 3;
    c.relay_domains = RelayDomains::new(["relay.test"]).unwrap();
    c
}

fn relay() -> SessionConfig {
    let mut c = SessionConfig::new(Role::Relay, HOST);
    c.relay_domains = RelayDomains::new(["Relay.Test.", "bücher.test"]).unwrap();
    c.relay_tenant = Some("acme".into());
    c.max_message_size = 1000;
    c.max_line_length = 100;
    c
}

/// Plays the connection: feeds input, answers actions, collects output.
struct Driver {
    session: Session,
    /// Input not yet consumed.
    pending: Vec<u8>,
    /// Output since the last `take`.
    out: Vec<u8>,
    /// Messages handed over for storing.
    stored: Vec<Transaction>,
    /// Answer to the lockout check.
    locked: bool,
    /// Answer to the next stores.
    store: StoreOutcome,
    /// The connection closed.
    closed: bool,
    /// Writes: how many times the driver would have written `out` to the socket.
    writes: usize,
    /// Actions seen, by name.
    actions: Vec<&'static str>,
}

impl Driver {
    fn new(cfg: SessionConfig, trusted: bool) -> Driver {
        let session = Session::new(Arc::new(cfg), "192.0.2.9".parse().unwrap(), trusted);
        let mut d = Driver {
            session,
            pending: Vec::new(),
            out: Vec::new(),
            stored: Vec::new(),
            locked: false,
            store: StoreOutcome::Queued("ID1".into()),
            closed: false,
            writes: 0,
            actions: Vec::new(),
        };
        d.session.banner(&mut d.out);
        d.take();
        d
    }

    /// Sends `input` and returns everything the server wrote in answer.
    fn send(&mut self, input: &[u8]) -> String {
        self.pending.extend_from_slice(input);
        self.run();
        self.take()
    }

    fn run(&mut self) {
        loop {
            assert!(!self.closed, "feeding a closed session");
            let (n, action) = self.session.feed(&self.pending, &mut self.out);
            self.pending.drain(..n);
            match action {
                Action::Read => {
                    self.writes += 1;
                    return;
                }
                Action::Close => {
                    self.writes += 1;
                    self.closed = true;
                    return;
                }
                Action::StartTls => {
                    self.actions.push("starttls");
                    self.writes += 1;
                    self.pending.clear();
                    self.session.tls_started(TlsInfo {
                        version: "TLSv1.3".into(),
                        cipher: "TLS13_AES_128_GCM_SHA256".into(),
                    });
                }
                Action::AuthGate => {
                    self.actions.push("gate");
                    self.session.auth_gate(self.locked, &mut self.out);
                }
                Action::Verify(c) => {
                    self.actions.push("verify");
                    let outcome = if c.password == "right" {
                        AuthOutcome::Accepted {
                            tenant: Some(format!("t-{}", c.username)),
                        }
                    } else {
                        AuthOutcome::Rejected
                    };
                    self.session.auth_verified(outcome, &mut self.out);
                }
                Action::Store(t) => {
                    self.actions.push("store");
                    self.stored.push(*t);
                    self.session.stored(self.store.clone(), &mut self.out);
                }
            }
        }
    }

    fn take(&mut self) -> String {
        String::from_utf8(std::mem::take(&mut self.out)).unwrap()
    }
}

/// The reply codes (with enhanced codes) of `text`, one per final reply line.
fn codes(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.as_bytes().get(3) == Some(&b' ') || l.len() == 3)
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

fn plain(user: &str, pass: &str) -> String {
    STANDARD.encode(format!("\0{user}\0{pass}"))
}

fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

/// A submission session past STARTTLS and AUTH.
fn authenticated() -> Driver {
    let mut d = Driver::new(submission(false), false);
    d.send(b"EHLO client.test\r\nSTARTTLS\r\n");
    d.send(b"EHLO client.test\r\n");
    let r = d.send(format!("AUTH PLAIN {}\r\n", plain("alice", "right")).as_bytes());
    assert_eq!(codes(&r), ["235 2.7.0"]);
    d
}

#[test]
fn banner_and_ehlo_before_and_after_tls() {
    let mut d = Driver::new(submission(false), false);
    let mut out = Vec::new();
    d.session.banner(&mut out);
    assert_eq!(out, b"220 mx.volley.test ESMTP Volley\r\n");
    let ehlo = d.send(b"EHLO client.test\r\n");
    for cap in [
        "PIPELINING",
        "SIZE 1000",
        "STARTTLS",
        "ENHANCEDSTATUSCODES",
        "8BITMIME",
        "SMTPUTF8",
        "CHUNKING",
    ] {
        assert!(
            ehlo.contains(&format!("250-{cap}\r\n")) || ehlo.contains(&format!("250 {cap}\r\n")),
            "{cap} in {ehlo}"
        );
    }
    assert!(!ehlo.contains("AUTH"), "AUTH offered before TLS: {ehlo}");
    assert!(
        !ehlo.contains("DSN"),
        "DSN promised but not written: {ehlo}"
    );
    assert_eq!(d.send(b"STARTTLS\r\n"), "220 2.0.0 Ready to start TLS\r\n");
    let ehlo = d.send(b"EHLO client.test\r\n");
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
}

#[test]
fn auth_before_starttls_is_refused_and_mail_needs_auth() {
    let mut d = Driver::new(submission(false), false);
    d.send(b"EHLO client.test\r\n");
    let r = d.send(format!("AUTH PLAIN {}\r\n", plain("alice", "right")).as_bytes());
    assert_eq!(codes(&r), ["538 5.7.11"]);
    assert_eq!(codes(&d.send(b"AUTH LOGIN\r\n")), ["538 5.7.11"]);
    assert!(d.actions.is_empty(), "no verification before TLS");
    assert_eq!(codes(&d.send(b"MAIL FROM:<a@b.test>\r\n")), ["530 5.7.0"]);
    // With allow_plaintext_auth the same AUTH works in clear.
    let mut d = Driver::new(submission(true), false);
    let ehlo = d.send(b"EHLO client.test\r\n");
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    let r = d.send(format!("AUTH PLAIN {}\r\n", plain("alice", "right")).as_bytes());
    assert_eq!(codes(&r), ["235 2.7.0"]);
    // Without a certificate there is nothing to upgrade to: AUTH is unavailable.
    let mut cfg = submission(false);
    cfg.starttls = false;
    let mut d = Driver::new(cfg, false);
    d.send(b"EHLO client.test\r\n");
    assert_eq!(codes(&d.send(b"AUTH LOGIN\r\n")), ["502 5.5.1"]);
    assert_eq!(codes(&d.send(b"STARTTLS\r\n")), ["502 5.5.1"]);
}

#[test]
fn starttls_discards_pipelined_cleartext_and_resets() {
    let mut d = Driver::new(submission(true), false);
    d.send(format!("EHLO c.test\r\nAUTH PLAIN {}\r\n", plain("alice", "right")).as_bytes());
    assert!(d.session.identity().is_some());
    // Commands injected behind STARTTLS in clear must not run after the handshake.
    let r = d.send(b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\n");
    assert_eq!(codes(&r), ["220 2.0.0"]);
    assert!(
        d.session.identity().is_none(),
        "AUTH forgotten after STARTTLS"
    );
    assert!(d.session.is_tls());
    assert_eq!(codes(&d.send(b"MAIL FROM:<a@b.test>\r\n")), ["503 5.5.1"]);
    assert_eq!(codes(&d.send(b"STARTTLS\r\n")), ["503 5.5.1"]);
}

#[test]
fn auth_plain_and_login_exchanges() {
    let mut d = authenticated();
    assert_eq!(d.session.identity().unwrap().username, "alice");
    assert_eq!(d.actions, ["starttls", "gate", "verify"]);
    assert_eq!(codes(&d.send(b"AUTH LOGIN\r\n")), ["503 5.5.1"]);

    // PLAIN without an initial response: an empty 334 challenge.
    let mut d = Driver::new(submission(true), false);
    d.send(b"EHLO c.test\r\n");
    assert_eq!(d.send(b"AUTH PLAIN\r\n"), "334 \r\n");
    assert_eq!(
        codes(&d.send(format!("{}\r\n", plain("bob", "right")).as_bytes())),
        ["235 2.7.0"]
    );

    // LOGIN, step by step, and with the user name as initial response.
    let mut d = Driver::new(submission(true), false);
    d.send(b"EHLO c.test\r\n");
    assert_eq!(d.send(b"AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(
        d.send(format!("{}\r\n", b64("carol")).as_bytes()),
        "334 UGFzc3dvcmQ6\r\n"
    );
    assert_eq!(
        codes(&d.send(format!("{}\r\n", b64("right")).as_bytes())),
        ["235 2.7.0"]
    );
    assert_eq!(
        d.session.identity().unwrap().tenant.as_deref(),
        Some("t-carol")
    );
    let mut d = Driver::new(submission(true), false);
    d.send(b"EHLO c.test\r\n");
    assert_eq!(
        d.send(format!("AUTH LOGIN {}\r\n", b64("dave")).as_bytes()),
        "334 UGFzc3dvcmQ6\r\n"
    );
    assert_eq!(
        codes(&d.send(format!("{}\r\n", b64("right")).as_bytes())),
        ["235 2.7.0"]
    );

    // Cancel, garbage, unknown mechanism, foreign authzid.
    let mut d = Driver::new(submission(true), false);
    d.send(b"EHLO c.test\r\n");
    d.send(b"AUTH LOGIN\r\n");
    assert_eq!(codes(&d.send(b"*\r\n")), ["501 5.0.0"]);
    assert_eq!(codes(&d.send(b"AUTH PLAIN !!!!\r\n")), ["501 5.5.4"]);
    d.send(b"AUTH PLAIN\r\n");
    assert_eq!(codes(&d.send(b"bm90IHBsYWlu\r\n")), ["501 5.5.2"]);
    assert_eq!(codes(&d.send(b"AUTH CRAM-MD5\r\n")), ["504 5.5.4"]);
    let foreign = STANDARD.encode("root\0alice\0right");
    assert_eq!(
        codes(&d.send(format!("AUTH PLAIN {foreign}\r\n").as_bytes())),
        ["535 5.7.8"]
    );
    assert!(d.session.identity().is_none());
}

#[test]
fn auth_failures_close_the_connection_after_the_limit() {
    let mut d = Driver::new(submission(true), false);
    d.send(b"EHLO c.test\r\n");
    for _ in 0..2 {
        let r = d.send(format!("AUTH PLAIN {}\r\n", plain("alice", "wrong")).as_bytes());
        assert_eq!(codes(&r), ["535 5.7.8"]);
    }
    let r = d.send(format!("AUTH PLAIN {}\r\n", plain("alice", "wrong")).as_bytes());
    assert_eq!(codes(&r), ["535 5.7.8", "421 4.7.0"]);
    assert!(d.closed);
}

#[test]
fn locked_address_gets_454_without_verification() {
    let mut d = Driver::new(submission(true), false);
    d.locked = true;
    d.send(b"EHLO c.test\r\n");
    let r = d.send(format!("AUTH PLAIN {}\r\n", plain("alice", "right")).as_bytes());
    assert_eq!(codes(&r), ["454 4.7.0"]);
    assert_eq!(codes(&d.send(b"AUTH LOGIN\r\n")), ["454 4.7.0"]);
    assert_eq!(d.actions, ["gate", "gate"]);
    assert!(d.session.identity().is_none());
}

#[test]
fn pipelined_transaction_is_answered_in_one_write() {
    let mut d = authenticated();
    let writes = d.writes;
    let r = d.send(
        b"MAIL FROM:<a@b.test> SIZE=30 RET=HDRS ENVID=e1\r\n\
          RCPT TO:<x@far.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@far.test\r\n\
          RCPT TO:<y@far.test>\r\nDATA\r\n",
    );
    assert_eq!(
        codes(&r),
        ["250 2.1.0", "250 2.1.5", "250 2.1.5", "354 End"]
    );
    assert_eq!(d.writes, writes + 1, "one write for the batch");
    let r = d
        .send(b"Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<z@far.test>\r\n");
    assert_eq!(codes(&r), ["250 2.0.0", "250 2.1.0", "250 2.1.5"]);
    assert!(r.starts_with("250 2.0.0 Ok: queued as ID1\r\n"), "{r}");
    assert_eq!(d.writes, writes + 2);
    let t = &d.stored[0];
    assert_eq!(t.body, b"Subject: hi\r\n\r\n.dot\r\nbody\r\n");
    assert_eq!(t.rcpts.len(), 2);
    assert!(t.rcpts[0].notify.is_some_and(|n| n.success && n.failure));
    assert_eq!(t.mail.envid.as_deref(), Some("e1"));
    assert_eq!(t.tenant.as_deref(), Some("t-alice"));
    assert_eq!(t.identity.as_ref().unwrap().username, "alice");
    assert_eq!(t.protocol(), "ESMTPSA");
    assert_eq!(t.helo, "client.test");
    let h = t.received_header(HOST, "ID1", 0);
    assert!(h.starts_with("Received: from client.test ([192.0.2.9])\r\n\tby mx.volley.test (Volley) with ESMTPSA\r\n\t(version=TLSv1.3 cipher=TLS13_AES_128_GCM_SHA256)\r\n\tid ID1; Thu, 01 Jan 1970"), "{h}");
}

#[test]
fn bdat_chunks_split_anywhere() {
    let script: &[u8] = b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@far.test>\r\n\
        BDAT 9\r\nline one\nBDAT 0\r\nBDAT 12 LAST\r\n\r\nline two\r\nQUIT\r\n";
    // That first chunk ends in a bare LF: refused at the end, connection usable.
    let mut d = authenticated();
    let r = d.send(script);
    assert_eq!(
        codes(&r),
        [
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0",
            "250 2.0.0",
            "554 5.6.0",
            "221 2.0.0"
        ]
    );
    assert!(d.stored.is_empty());

    let script: &[u8] = b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@far.test>\r\n\
        BDAT 10\r\nline one\r\nBDAT 0\r\nBDAT 13 LAST\r\n.\r\nline two\r\nNOOP\r\n";
    for split in 1..script.len() {
        let mut d = authenticated();
        let first = d.send(&script[..split]);
        let second = d.send(&script[split..]);
        let all = format!("{first}{second}");
        assert_eq!(
            codes(&all),
            [
                "250 2.1.0",
                "250 2.1.5",
                "250 2.0.0",
                "250 2.0.0",
                "250 2.0.0",
                "250 2.0.0"
            ],
            "split at {split}"
        );
        assert!(all.contains("250 2.0.0 10 octets received\r\n"));
        assert!(all.contains("queued as ID1"));
        assert_eq!(d.stored.len(), 1);
        assert_eq!(d.stored[0].body, b"line one\r\n.\r\nline two\r\n");
    }
}

#[test]
fn bdat_and_data_sequence_rules() {
    let mut d = authenticated();
    // BDAT without MAIL: the chunk is still read (stays in sync), then 503.
    let r = d.send(b"BDAT 6 LAST\r\nRSET\r\nNOOP\r\n");
    assert_eq!(codes(&r), ["503 5.5.1", "250 2.0.0"]);
    let r = d.send(b"MAIL FROM:<a@b.test>\r\nDATA\r\nRCPT TO:<x@far.test>\r\nBDAT 4\r\nab\r\nDATA\r\nRCPT TO:<y@far.test>\r\n");
    assert_eq!(
        codes(&r),
        [
            "250 2.1.0",
            "554 5.5.1",
            "250 2.1.5",
            "250 2.0.0",
            "503 5.5.1",
            "503 5.5.1"
        ]
    );
    // Too big as announced: refused when the chunk is in, transaction reset.
    let r = d.send(b"BDAT 2000 LAST\r\n");
    assert_eq!(r, "");
    let r = d.send(&[b'x'; 2000]);
    assert_eq!(codes(&r), ["552 5.3.4"]);
    let r = d.send(b"BDAT 1 LAST\r\nx");
    assert_eq!(codes(&r), ["503 5.5.1"]);
    assert!(d.stored.is_empty());
}

#[test]
fn size_and_line_limits() {
    let mut d = authenticated();
    assert_eq!(
        codes(&d.send(b"MAIL FROM:<a@b.test> SIZE=1001\r\n")),
        ["552 5.3.4"]
    );
    assert_eq!(
        codes(&d.send(b"MAIL FROM:<a@b.test> BODY=BINARYMIME\r\n")),
        ["555 5.5.4"]
    );
    d.send(b"MAIL FROM:<a@b.test> SIZE=1000\r\nRCPT TO:<x@far.test>\r\nDATA\r\n");
    let mut big = Vec::new();
    for _ in 0..30 {
        big.extend_from_slice(b"0123456789012345678901234567890123456789\r\n");
    }
    big.extend_from_slice(b".\r\n");
    // Over the size while reading: 552, transaction reset, connection usable.
    assert_eq!(codes(&d.send(&big)), ["552 5.3.4"]);
    assert_eq!(codes(&d.send(b"RCPT TO:<x@far.test>\r\n")), ["503 5.5.1"]);
    // A line over max_line_length (100) in DATA.
    d.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@far.test>\r\nDATA\r\n");
    let mut long = vec![b'a'; 150];
    long.extend_from_slice(b"\r\n.\r\n");
    assert_eq!(codes(&d.send(&long)), ["552 5.3.4"]);
    // A command line over the command limit: 500, then back in step.
    let mut cmd = b"NOOP ".to_vec();
    cmd.extend(std::iter::repeat_n(b'x', 20_000));
    cmd.extend_from_slice(b"\r\nNOOP\r\n");
    assert_eq!(codes(&d.send(&cmd)), ["500 5.5.2", "250 2.0.0"]);
    // Recipients over max_recipients (3).
    d.send(b"MAIL FROM:<a@b.test>\r\n");
    let r = d.send(b"RCPT TO:<1@far.test>\r\nRCPT TO:<2@far.test>\r\nRCPT TO:<3@far.test>\r\nRCPT TO:<4@far.test>\r\n");
    assert_eq!(
        codes(&r),
        ["250 2.1.5", "250 2.1.5", "250 2.1.5", "452 4.5.3"]
    );
    assert!(d.stored.is_empty());
}

#[test]
fn bare_lf_end_of_data_closes() {
    for tail in [
        &b"body\n.\n"[..],
        b"body\r\n.\n",
        b"body\n.\r\n",
        b"bare\nline\r\n.\r\n",
    ] {
        let mut d = authenticated();
        d.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@far.test>\r\nDATA\r\n");
        let mut input = tail.to_vec();
        input.extend_from_slice(b"MAIL FROM:<smuggled@x.test>\r\n");
        let r = d.send(&input);
        assert_eq!(codes(&r), ["554 5.6.0"], "{tail:?}");
        assert!(d.closed);
        assert!(d.stored.is_empty());
    }
}

#[test]
fn store_failures_map_to_451_and_554() {
    let mut d = authenticated();
    d.store = StoreOutcome::TryLater;
    let r = d.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@far.test>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(
        codes(&r),
        ["250 2.1.0", "250 2.1.5", "354 End", "451 4.3.0"]
    );
    d.store = StoreOutcome::Refused;
    let r = d.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@far.test>\r\nBDAT 3 LAST\r\nx\r\n");
    assert_eq!(codes(&r), ["250 2.1.0", "250 2.1.5", "554 5.3.0"]);
}

#[test]
fn relay_listener_matrix_for_an_outside_client() {
    let mut d = Driver::new(relay(), false);
    let ehlo = d.send(b"EHLO outside.test\r\n");
    assert!(
        !ehlo.contains("AUTH") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    assert_eq!(
        codes(&d.send(b"AUTH PLAIN AGFsaWNlAHJpZ2h0\r\n")),
        ["502 5.5.1"]
    );
    d.send(b"MAIL FROM:<anyone@outside.test>\r\n");
    let refused = [
        "<user@evil.example>",
        "<user%evil.example@relay.test>",
        "<evil.example!user@relay.test>",
        "<\"user@evil.example\"@relay.test>",
        "<\"user%evil\"@relay.test>",
        "<@relay.test:user@evil.example>",
        "<@relay.test:user@relay.test>",
        "<user@relay.test.>",
        "<user@relay.test.evil.example>",
        "<user@xrelay.test>",
        "<user@sub.relay.test>",
        "<user@[127.0.0.1]>",
        "<user@[IPv6:::1]>",
        "<Postmaster>",
        "<>",
        "user@relay.test",
        "<user@>",
        "<user relay.test>",
        "<>  ",
    ];
    for (i, rcpt) in refused.iter().enumerate() {
        let r = d.send(format!("RCPT TO:{rcpt}\r\n").as_bytes());
        assert!(r.starts_with('5'), "{rcpt} accepted: {r}");
        if i < 13 {
            assert!(
                r.starts_with("554 5.7.1 Relay access denied") || r.starts_with("553"),
                "{rcpt}: {r}"
            );
        }
        if i == 18 {
            // 20 errors is the limit: start over to keep going.
            break;
        }
    }
    let mut d = Driver::new(relay(), false);
    d.send(b"EHLO outside.test\r\nMAIL FROM:<anyone@outside.test>\r\n");
    for ok in [
        "<user@relay.test>",
        "<User@RELAY.TEST>",
        "<x@xn--bcher-kva.test>",
        "<x@bücher.test>",
    ] {
        let r = d.send(format!("RCPT TO:{ok}\r\n").as_bytes());
        assert_eq!(codes(&r), ["250 2.1.5"], "{ok}");
    }
    d.send(b"DATA\r\nhi\r\n.\r\n");
    assert_eq!(d.stored[0].tenant, None, "outside clients have no tenant");
    assert_eq!(d.stored[0].protocol(), "ESMTP");
}

#[test]
fn relay_listener_trusted_network_relays_anywhere() {
    let mut d = Driver::new(relay(), true);
    d.send(b"HELO inside.test\r\nMAIL FROM:<app@inside.test>\r\n");
    for ok in [
        "<a@far.example>",
        "<b@[192.0.2.1]>",
        "<c%d@far.example>",
        "<@hop.test:e@far.example>",
    ] {
        assert_eq!(
            codes(&d.send(format!("RCPT TO:{ok}\r\n").as_bytes())),
            ["250 2.1.5"],
            "{ok}"
        );
    }
    assert_eq!(
        codes(&d.send(b"RCPT TO:<f@[x-tag:abc]>\r\n")),
        ["550 5.1.2"]
    );
    assert_eq!(codes(&d.send(b"RCPT TO:<Postmaster>\r\n")), ["550 5.1.1"]);
    d.send(b"DATA\r\nhi\r\n.\r\n");
    let t = &d.stored[0];
    assert_eq!(t.tenant.as_deref(), Some("acme"));
    assert_eq!(t.protocol(), "SMTP");
    assert_eq!(t.rcpts.len(), 4);
}

#[test]
fn sequence_errors_and_utf8() {
    let mut d = Driver::new(relay(), true);
    assert_eq!(codes(&d.send(b"MAIL FROM:<a@b.test>\r\n")), ["503 5.5.1"]);
    d.send(b"EHLO c.test\r\n");
    assert_eq!(codes(&d.send(b"RCPT TO:<a@b.test>\r\n")), ["503 5.5.1"]);
    assert_eq!(codes(&d.send(b"DATA\r\n")), ["503 5.5.1"]);
    assert_eq!(codes(&d.send(b"BOGUS\r\n")), ["500 5.5.1"]);
    d.send(b"MAIL FROM:<a@b.test>\r\n");
    assert_eq!(codes(&d.send(b"MAIL FROM:<a@b.test>\r\n")), ["503 5.5.1"]);
    assert_eq!(
        codes(&d.send("RCPT TO:<jörg@b.test>\r\n".as_bytes())),
        ["553 5.6.7"]
    );
    d.send(b"RSET\r\n");
    d.send("MAIL FROM:<jörg@b.test> SMTPUTF8\r\n".as_bytes());
    assert_eq!(
        codes(&d.send("RCPT TO:<jörg@b.test>\r\n".as_bytes())),
        ["250 2.1.5"]
    );
    d.send("DATA\r\nSubject: grüße\r\n\r\nx\r\n.\r\n".as_bytes());
    let t = &d.stored[0];
    assert_eq!(t.protocol(), "UTF8SMTP");
    assert_eq!(
        t.body_type(),
        Some(crate::smtp::command::BodyType::EightBitMime)
    );
    assert_eq!(
        codes(&d.send(b"VRFY x\r\nHELP\r\nQUIT\r\n")),
        ["252 2.5.0", "214 2.0.0", "221 2.0.0"]
    );
    assert!(d.closed);
}

#[test]
fn too_many_errors_close() {
    let mut d = Driver::new(relay(), false);
    let r = d.send(&b"BOGUS\r\n".repeat(25));
    let c = codes(&r);
    assert_eq!(c.len(), 22);
    assert_eq!(c.last().unwrap(), "421 4.7.0");
    assert!(d.closed);
    // Junk commands too, at a higher limit.
    let mut d = Driver::new(relay(), false);
    let r = d.send(&b"NOOP\r\n".repeat(150));
    assert_eq!(codes(&r).last().unwrap(), "421 4.7.0");
    assert!(d.closed);
}

#[test]
fn shutdown_answers_421_at_the_next_command_but_finishes_data() {
    let mut d = Driver::new(relay(), true);
    d.send(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@far.test>\r\nDATA\r\nhalf");
    d.session.shutdown();
    assert!(!d.session.at_shutdown_point(), "data is arriving");
    let r = d.send(b" a message\r\n.\r\nNOOP\r\n");
    assert_eq!(codes(&r), ["250 2.0.0", "421 4.3.2"]);
    assert_eq!(d.stored.len(), 1);
    assert!(d.closed);
    let mut d = Driver::new(relay(), true);
    d.session.shutdown();
    assert!(d.session.at_shutdown_point());
    assert_eq!(codes(&d.send(b"")), ["421 4.3.2"]);
}

#[test]
fn phase_and_progress_for_timeouts() {
    let mut d = Driver::new(relay(), true);
    let p0 = d.session.progress();
    d.send(b"EHL");
    assert_eq!(d.session.progress(), p0, "half a line is no progress");
    assert_eq!(d.session.phase(), Phase::Command);
    d.send(b"O c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@far.test>\r\nDATA\r\nabc");
    assert_eq!(d.session.phase(), Phase::Data);
    let p1 = d.session.progress();
    d.send(b"\r\n.\r\n");
    assert_eq!(d.session.phase(), Phase::Command);
    assert!(d.session.progress() > p1);
    let mut out = Vec::new();
    d.session.timed_out(&mut out);
    assert_eq!(out, b"421 4.4.2 Timeout exceeded; closing connection\r\n");
}

#[test]
fn relay_domains_normalise() {
    let r = RelayDomains::new(["Example.COM.", "bücher.test"]).unwrap();
    assert_eq!(r.len(), 2);
    use crate::smtp::address::Domain;
    assert!(r.contains(&Domain::parse("example.com").unwrap()));
    assert!(r.contains(&Domain::parse("xn--bcher-kva.test").unwrap()));
    assert!(!r.contains(&Domain::parse("[127.0.0.1]").unwrap()));
    assert_eq!(
        RelayDomains::new(["ok.test", "bad domain"]),
        Err((1, "bad domain".into()))
    );
}

/// What the `server` fuzz target checks, over generated inputs: pieces of real
/// commands and data glued together and split into reads at random.
#[test]
fn random_command_soup_never_breaks_the_session() {
    const PIECES: &[&[u8]] = &[
        b"EHLO c.test\r\n",
        b"HELO c.test\r\n",
        b"STARTTLS\r\n",
        b"AUTH PLAIN AGEAYg==\r\n",
        b"AUTH LOGIN\r\n",
        b"YQ==\r\n",
        b"*\r\n",
        b"MAIL FROM:<a@b.test>\r\n",
        b"MAIL FROM:<>\r\n",
        b"RCPT TO:<x@far.test>\r\n",
        b"RCPT TO:<x@relay.test>\r\n",
        b"RCPT TO:<x%y@relay.test>\r\n",
        b"DATA\r\n",
        b"BDAT 5\r\n",
        b"BDAT 3 LAST\r\n",
        b"BDAT 0 LAST\r\n",
        b"hello\r\n",
        b".\r\n",
        b"\n.\n",
        b"\r\n.\r\n",
        b"..x\r\n",
        b"RSET\r\n",
        b"NOOP\r\n",
        b"QUIT\r\n",
        b"\r",
        b"\n",
        b"x",
        b"\0",
        "ü".as_bytes(),
        b"AUTH PLAIN\r\n",
        b"VRFY a\r\n",
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..2_000 {
        let flags = next();
        let role = match flags % 3 {
            0 => Role::Relay,
            1 => Role::Submission {
                allow_plaintext_auth: false,
            },
            _ => Role::Submission {
                allow_plaintext_auth: true,
            },
        };
        let mut cfg = SessionConfig::new(role, HOST);
        cfg.starttls = flags & 4 != 0;
        cfg.max_message_size = 64;
        cfg.max_recipients = 2;
        cfg.relay_domains = RelayDomains::new(["relay.test"]).unwrap();
        let mut s = Session::new(Arc::new(cfg), "192.0.2.1".parse().unwrap(), flags & 8 != 0);
        let mut input = Vec::new();
        for _ in 0..(next() % 40) {
            input.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
        }
        let mut out = Vec::new();
        let mut pending = Vec::new();
        let step = (next() % 17 + 1) as usize;
        'feed: for piece in input.chunks(step) {
            pending.extend_from_slice(piece);
            loop {
                let (n, action) = s.feed(&pending, &mut out);
                assert!(n <= pending.len());
                pending.drain(..n);
                match action {
                    Action::Read => break,
                    Action::Close => break 'feed,
                    Action::StartTls => {
                        pending.clear();
                        s.tls_started(TlsInfo {
                            version: "TLSv1.3".into(),
                            cipher: "X".into(),
                        });
                    }
                    Action::AuthGate => s.auth_gate(flags & 16 != 0, &mut out),
                    Action::Verify(c) => {
                        let o = if c.password.len() % 2 == 0 {
                            AuthOutcome::Accepted { tenant: None }
                        } else {
                            AuthOutcome::Rejected
                        };
                        s.auth_verified(o, &mut out);
                    }
                    Action::Store(t) => {
                        assert!(!t.rcpts.is_empty());
                        assert!(t.body.len() <= 64, "round {round}");
                        s.stored(StoreOutcome::Queued("id".into()), &mut out);
                    }
                }
            }
        }
        assert!(out.is_empty() || out.ends_with(b"\r\n"), "round {round}");
        for line in String::from_utf8(out)
            .unwrap()
            .split("\r\n")
            .filter(|l| !l.is_empty())
        {
            assert!(!line.contains(['\r', '\n']), "round {round}: {line:?}");
            assert!(
                line.len() >= 3 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit),
                "{line:?}"
            );
            assert!(
                matches!(line.as_bytes().get(3), None | Some(b' ' | b'-')),
                "{line:?}"
            );
        }
    }
}
