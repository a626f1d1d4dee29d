//! Tests of the transaction planner: scripted sessions checking the bytes written,
//! the replies awaited and the per-recipient outcomes.

use super::*;
use crate::smtp::address::Domain;
use crate::smtp::command::DsnNotify;

fn path(local: &str, domain: &str) -> Path {
    Path::mailbox(Mailbox {
        local: local.into(),
        domain: Domain::Name(domain.into()),
    })
}

fn mail() -> MailFrom {
    MailFrom::new(path("s", "example.com"))
}

fn rcpts(locals: &[&str]) -> Vec<RcptTo> {
    locals
        .iter()
        .map(|l| RcptTo::new(path(l, "example.org")))
        .collect()
}

fn reply(code: u16, enhanced: Option<(u8, u16, u16)>, text: &str) -> Reply {
    let enhanced = enhanced.map(|(c, s, d)| EnhancedStatus::new(c, s, d));
    Reply::new(ReplyCode::new(code).unwrap(), enhanced, text)
}

fn ok() -> Reply {
    reply(250, Some((2, 0, 0)), "ok")
}

fn caps(pipelining: bool, chunking: bool) -> Capabilities {
    Capabilities {
        pipelining,
        chunking,
        ..Capabilities::default()
    }
}

const PIPE_BDAT: (bool, bool) = (true, true);
const PIPE_DATA: (bool, bool) = (true, false);
const SERIAL: (bool, bool) = (false, false);

fn plan(shape: (bool, bool), to: &[&str]) -> Transaction {
    let caps = caps(shape.0, shape.1);
    Transaction::new(&caps, &mail(), &rcpts(to), 10, PlanOptions::default()).unwrap()
}

/// Runs the session loop against scripted replies; returns what was written,
/// with `<raw>`/`<stuffed>` for the body and `[n]` for each await. Running out
/// of replies is a lost connection.
fn drive(tx: &mut Transaction, replies: &[Reply]) -> String {
    let mut trace = String::new();
    let mut replies = replies.iter().cloned();
    'session: loop {
        match tx.next_action() {
            Action::Write(segments) => {
                for segment in segments {
                    match segment {
                        Segment::Commands(b) => trace.push_str(std::str::from_utf8(&b).unwrap()),
                        Segment::Body(BodyEncoding::Raw) => trace.push_str("<raw>"),
                        Segment::Body(BodyEncoding::DotStuffed) => trace.push_str("<stuffed>"),
                    }
                }
            }
            Action::AwaitReplies(n) => {
                trace.push_str(&format!("[{n}]"));
                for _ in 0..n {
                    match replies.next() {
                        Some(r) => tx.on_reply(r),
                        None => {
                            tx.on_connection_lost("eof");
                            continue 'session;
                        }
                    }
                    if tx.connection_closing() {
                        continue 'session;
                    }
                }
            }
            Action::Done => break,
        }
    }
    assert_eq!(replies.next(), None, "replies left over");
    trace
}

use RecipientOutcome::{Delivered, Permanent, TooManyRecipients, Transient};

fn outcomes(tx: &Transaction) -> Vec<RecipientOutcome> {
    tx.outcomes()
        .iter()
        .map(|o| o.clone().expect("every recipient settled"))
        .collect()
}

const MAIL: &str = "MAIL FROM:<s@example.com>\r\n";
const RCPT_A: &str = "RCPT TO:<a@example.org>\r\n";
const RCPT_B: &str = "RCPT TO:<b@example.org>\r\n";
const RCPT_C: &str = "RCPT TO:<c@example.org>\r\n";

#[test]
fn pipelined_chunking_all_accepted() {
    let mut tx = plan(PIPE_BDAT, &["a", "b"]);
    assert_eq!(tx.single_write_replies(), Some(4));
    let done = reply(250, Some((2, 6, 0)), "queued as 1234");
    let trace = drive(&mut tx, &[ok(), ok(), ok(), done.clone()]);
    assert_eq!(
        trace,
        format!("{MAIL}{RCPT_A}{RCPT_B}BDAT 10 LAST\r\n<raw>[4]")
    );
    assert_eq!(outcomes(&tx), [Delivered(done.clone()), Delivered(done)]);
    assert!(!tx.connection_closing());
}

#[test]
fn pipelined_chunking_partial_rcpt_rejection() {
    let mut tx = plan(PIPE_BDAT, &["a", "b", "c"]);
    let unknown = reply(550, Some((5, 1, 1)), "no such user");
    let busy = reply(450, Some((4, 2, 1)), "try later");
    let done = reply(250, None, "ok");
    drive(
        &mut tx,
        &[ok(), unknown.clone(), ok(), busy.clone(), done.clone()],
    );
    assert_eq!(
        outcomes(&tx),
        [Permanent(unknown), Delivered(done), Transient(busy)]
    );
}

#[test]
fn rcpt_replies_classify() {
    let cases = [
        (reply(452, Some((4, 5, 3)), "slow down"), "too many"),
        (
            reply(452, None, "Too Many Recipients in this message"),
            "too many",
        ),
        (
            reply(552, Some((5, 5, 3)), "too many recipients"),
            "too many",
        ),
        (
            reply(452, Some((4, 3, 1)), "too many recipients"),
            "transient",
        ),
        (reply(452, None, "insufficient storage"), "transient"),
        (reply(451, None, "too many recipients"), "transient"),
        (reply(550, Some((5, 1, 1)), "unknown"), "permanent"),
        (reply(553, None, "too many recipients"), "permanent"),
    ];
    for (refusal, want) in cases {
        let mut tx = plan(PIPE_BDAT, &["a", "b"]);
        let done = reply(250, None, "ok");
        let trace = drive(&mut tx, &[ok(), ok(), refusal.clone(), done.clone()]);
        assert!(trace.ends_with("<raw>[4]"), "{trace}");
        let got = &outcomes(&tx)[1];
        let kind = match got {
            TooManyRecipients(r) if *r == refusal => "too many",
            Transient(r) if *r == refusal => "transient",
            Permanent(r) if *r == refusal => "permanent",
            other => panic!("{refusal}: {other:?}"),
        };
        assert_eq!(kind, want, "{refusal}");
        assert_eq!(outcomes(&tx)[0], Delivered(done));
    }
}

#[test]
fn mail_refused_settles_everyone_with_its_reply() {
    let bad_sequence = reply(503, Some((5, 5, 1)), "need MAIL");
    for refusal in [
        reply(550, Some((5, 7, 1)), "go away"),
        reply(451, None, "greylisted"),
    ] {
        let want = if refusal.code.is_permanent() {
            Permanent(refusal.clone())
        } else {
            Transient(refusal.clone())
        };
        // Pipelined: the RCPT and BDAT replies change nothing, and no RSET
        // follows (the server has no transaction open).
        let mut tx = plan(PIPE_BDAT, &["a", "b"]);
        let script = [
            refusal.clone(),
            bad_sequence.clone(),
            bad_sequence.clone(),
            bad_sequence.clone(),
        ];
        assert_eq!(
            drive(&mut tx, &script),
            format!("{MAIL}{RCPT_A}{RCPT_B}BDAT 10 LAST\r\n<raw>[4]")
        );
        assert_eq!(outcomes(&tx), [want.clone(), want.clone()]);
        // Serial: stops after MAIL.
        let mut tx = plan(SERIAL, &["a", "b"]);
        assert_eq!(
            drive(&mut tx, std::slice::from_ref(&refusal)),
            format!("{MAIL}[1]")
        );
        assert_eq!(outcomes(&tx), [want.clone(), want]);
    }
}

#[test]
fn all_rcpts_refused_then_rset() {
    let unknown = reply(550, Some((5, 1, 1)), "no such user");
    let no_valid = reply(554, Some((5, 5, 1)), "no valid recipients");
    // Pipelined BDAT: the BDAT reply is ignored; the open transaction is reset.
    let mut tx = plan(PIPE_BDAT, &["a", "b"]);
    let trace = drive(
        &mut tx,
        &[
            ok(),
            unknown.clone(),
            unknown.clone(),
            no_valid.clone(),
            ok(),
        ],
    );
    assert_eq!(
        trace,
        format!("{MAIL}{RCPT_A}{RCPT_B}BDAT 10 LAST\r\n<raw>[4]RSET\r\n[1]")
    );
    assert_eq!(
        outcomes(&tx),
        [Permanent(unknown.clone()), Permanent(unknown.clone())]
    );
    // Serial: no DATA at all.
    let mut tx = plan(SERIAL, &["a", "b"]);
    let trace = drive(&mut tx, &[ok(), unknown.clone(), unknown.clone(), ok()]);
    assert_eq!(trace, format!("{MAIL}[1]{RCPT_A}[1]{RCPT_B}[1]RSET\r\n[1]"));
    assert_eq!(
        outcomes(&tx),
        [Permanent(unknown.clone()), Permanent(unknown.clone())]
    );
    // Pipelined DATA, refused: no body, and RSET.
    let mut tx = plan(PIPE_DATA, &["a"]);
    let trace = drive(&mut tx, &[ok(), unknown.clone(), no_valid, ok()]);
    assert_eq!(trace, format!("{MAIL}{RCPT_A}DATA\r\n[3]RSET\r\n[1]"));
    assert_eq!(outcomes(&tx), [Permanent(unknown)]);
}

#[test]
fn data_354_without_accepted_recipients_ends_data_mode() {
    let unknown = reply(550, Some((5, 1, 1)), "no such user");
    let go_ahead = reply(354, None, "go ahead");
    let mut tx = plan(PIPE_DATA, &["a"]);
    let no_rcpts = reply(554, None, "no valid recipients");
    let trace = drive(&mut tx, &[ok(), unknown.clone(), go_ahead, no_rcpts]);
    assert_eq!(trace, format!("{MAIL}{RCPT_A}DATA\r\n[3].\r\n[1]"));
    assert_eq!(outcomes(&tx), [Permanent(unknown)]);
}

#[test]
fn pipelined_data_paths() {
    let go_ahead = reply(354, None, "go ahead");
    let done = reply(250, None, "queued");
    let full = reply(452, Some((4, 5, 3)), "too many recipients");
    let mut tx = plan(PIPE_DATA, &["a", "b"]);
    assert_eq!(tx.single_write_replies(), None);
    let trace = drive(&mut tx, &[ok(), ok(), full.clone(), go_ahead, done.clone()]);
    assert_eq!(
        trace,
        format!("{MAIL}{RCPT_A}{RCPT_B}DATA\r\n[4]<stuffed>[1]")
    );
    assert_eq!(outcomes(&tx), [Delivered(done), TooManyRecipients(full)]);
    // DATA refused for now: accepted recipients are retried, the server reset.
    let later = reply(451, Some((4, 3, 0)), "later");
    let mut tx = plan(PIPE_DATA, &["a"]);
    let trace = drive(&mut tx, &[ok(), ok(), later.clone(), ok()]);
    assert_eq!(trace, format!("{MAIL}{RCPT_A}DATA\r\n[3]RSET\r\n[1]"));
    assert_eq!(outcomes(&tx), [Transient(later)]);
}

#[test]
fn serial_paths() {
    let go_ahead = reply(354, None, "go ahead");
    let done = reply(250, None, "queued");
    let rejected = reply(554, Some((5, 7, 1)), "spam");
    let mut tx = plan(SERIAL, &["a", "b"]);
    let trace = drive(&mut tx, &[ok(), ok(), ok(), go_ahead, rejected.clone()]);
    assert_eq!(
        trace,
        format!("{MAIL}[1]{RCPT_A}[1]{RCPT_B}[1]DATA\r\n[1]<stuffed>[1]")
    );
    assert_eq!(
        outcomes(&tx),
        [Permanent(rejected.clone()), Permanent(rejected)]
    );
    // After a 452 "too many", the rest are not sent.
    let full = reply(452, None, "4.5.3 too many recipients");
    let mut tx = plan((false, true), &["a", "b", "c"]);
    let trace = drive(&mut tx, &[ok(), ok(), full.clone(), done.clone()]);
    assert_eq!(
        trace,
        format!("{MAIL}[1]{RCPT_A}[1]{RCPT_B}[1]BDAT 10 LAST\r\n<raw>[1]")
    );
    assert_eq!(
        outcomes(&tx),
        [
            Delivered(done),
            TooManyRecipients(full.clone()),
            TooManyRecipients(full)
        ]
    );
}

#[test]
fn reply_421_closes_mid_transaction() {
    let closing = reply(421, Some((4, 3, 2)), "shutting down");
    let mut tx = plan(PIPE_BDAT, &["a", "b", "c"]);
    let unknown = reply(550, None, "unknown");
    let trace = drive(&mut tx, &[ok(), unknown.clone(), ok(), closing.clone()]);
    assert_eq!(
        trace,
        format!("{MAIL}{RCPT_A}{RCPT_B}{RCPT_C}BDAT 10 LAST\r\n<raw>[5]")
    );
    assert!(tx.connection_closing());
    assert_eq!(
        outcomes(&tx),
        [
            Permanent(unknown),
            Transient(closing.clone()),
            Transient(closing.clone())
        ]
    );
    assert_eq!(tx.next_action(), Action::Done);
    // Serial: nothing more is written after the 421.
    let mut tx = plan(SERIAL, &["a", "b"]);
    let trace = drive(&mut tx, &[ok(), closing.clone()]);
    assert_eq!(trace, format!("{MAIL}[1]{RCPT_A}[1]"));
    assert_eq!(
        outcomes(&tx),
        [Transient(closing.clone()), Transient(closing)]
    );
}

#[test]
fn connection_lost_mid_data() {
    let mut tx = plan(PIPE_DATA, &["a", "b"]);
    let unknown = reply(550, None, "unknown");
    let go_ahead = reply(354, None, "go ahead");
    let trace = drive(&mut tx, &[ok(), ok(), unknown.clone(), go_ahead]);
    assert_eq!(
        trace,
        format!("{MAIL}{RCPT_A}{RCPT_B}DATA\r\n[4]<stuffed>[1]")
    );
    assert!(tx.connection_closing());
    let Some(Transient(lost)) = &tx.outcomes()[0] else {
        panic!("{:?}", tx.outcomes())
    };
    assert_eq!(
        (lost.code.get(), lost.enhanced),
        (451, Some(EnhancedStatus::CONNECTION_DROPPED))
    );
    assert!(lost.text().contains("eof"), "{lost}");
    assert_eq!(tx.outcomes()[1], Some(Permanent(unknown)));
}

#[test]
fn plan_errors() {
    let to = rcpts(&["a"]);
    let limited = Capabilities {
        size: Some(100),
        ..caps(true, true)
    };
    let new = |caps: &Capabilities, mail: &MailFrom, to: &[RcptTo], len| {
        Transaction::new(caps, mail, to, len, PlanOptions::default()).map(|_| ())
    };
    assert_eq!(new(&limited, &mail(), &to, 100), Ok(()));
    assert_eq!(new(&limited, &mail(), &to, 101), Err(PlanError::TooBig));
    let unlimited = Capabilities {
        size: Some(0),
        ..caps(true, true)
    };
    assert_eq!(new(&unlimited, &mail(), &to, u64::MAX), Ok(()));
    assert_eq!(new(&limited, &mail(), &[], 1), Err(PlanError::NoRecipients));
    let utf8_to = [RcptTo::new(path("josé", "example.org"))];
    assert_eq!(
        new(&limited, &mail(), &utf8_to, 1),
        Err(PlanError::NeedsSmtpUtf8)
    );
    let utf8_from = MailFrom::new(path("josé", "example.com"));
    assert_eq!(
        new(&limited, &utf8_from, &to, 1),
        Err(PlanError::NeedsSmtpUtf8)
    );
    let offered = Capabilities {
        smtputf8: true,
        ..limited
    };
    assert_eq!(new(&offered, &mail(), &utf8_to, 1), Ok(()));
}

/// The first write's command bytes.
fn first_commands(caps: &Capabilities, mail: &MailFrom, to: &[RcptTo]) -> Vec<u8> {
    let mut tx = Transaction::new(caps, mail, to, 42, PlanOptions::default()).unwrap();
    match tx.next_action() {
        Action::Write(segments) => match &segments[0] {
            Segment::Commands(b) => b.clone(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

fn render(commands: &[Command]) -> Vec<u8> {
    let mut out = Vec::new();
    commands.iter().for_each(|c| c.write_to(&mut out));
    out
}

#[test]
fn parameters_follow_the_servers_extensions() {
    let full = MailFrom {
        size: Some(1),
        body: Some(BodyType::EightBitMime),
        smtputf8: true,
        ret: Some(crate::smtp::command::DsnReturn::Headers),
        envid: Some("id1".into()),
        auth: Some("<>".into()),
        ..mail()
    };
    let notify = DsnNotify {
        failure: true,
        ..DsnNotify::default()
    };
    let to = [RcptTo {
        notify: Some(notify),
        ..RcptTo::new(path("a", "example.org"))
    }];
    let bdat = Command::Bdat {
        size: 42,
        last: true,
    };

    // A bare server: every parameter goes.
    let got = first_commands(&caps(true, true), &full, &to);
    let want = render(&[
        Command::Mail(mail()),
        Command::Rcpt(rcpts(&["a"])[0].clone()),
        bdat.clone(),
    ]);
    assert_eq!(
        String::from_utf8(got).unwrap(),
        String::from_utf8(want).unwrap()
    );

    // A server offering everything: all kept, SIZE set to the body length.
    let rich = Capabilities {
        size: Some(0),
        eight_bit_mime: true,
        smtputf8: true,
        dsn: true,
        auth: vec![crate::smtp::command::AuthMechanism::Plain],
        ..caps(true, true)
    };
    let got = first_commands(&rich, &full, &to);
    let kept = MailFrom {
        size: Some(42),
        ..full.clone()
    };
    let want = render(&[Command::Mail(kept), Command::Rcpt(to[0].clone()), bdat]);
    assert_eq!(
        String::from_utf8(got).unwrap(),
        String::from_utf8(want).unwrap()
    );

    // SMTPUTF8 is added when an address needs it.
    let utf8_to = [RcptTo::new(path("josé", "example.org"))];
    let got = first_commands(&rich, &mail(), &utf8_to);
    let with_utf8 = MailFrom {
        smtputf8: true,
        size: Some(42),
        ..mail()
    };
    let want = render(&[Command::Mail(with_utf8), Command::Rcpt(utf8_to[0].clone())]);
    assert!(got.starts_with(&want), "{}", String::from_utf8_lossy(&got));
}

#[test]
fn stray_replies_do_not_panic() {
    let mut tx = plan(PIPE_BDAT, &["a"]);
    tx.on_reply(ok());
    tx.on_connection_lost("before anything was written");
    tx.on_reply(ok());
    assert_eq!(tx.next_action(), Action::Done);
    assert!(matches!(tx.outcomes()[0], Some(Transient(_))));
}
