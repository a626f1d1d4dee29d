//! Transactions over a scripted server: pipelining, DATA, refusals, failures.

use std::time::Duration;

use super::*;
use crate::smtp::data::{DataLimits, DataProgress, DataReader};

const BODY1: &[u8] = b"Subject: one\r\n\r\nfirst\r\n";
const BODY2: &[u8] = b"Subject: two\r\n\r\n.dot line\r\n";
const BODY3: &[u8] = b"Subject: three\r\n\r\nthird\r\n";

#[tokio::test]
async fn three_transactions_back_to_back_in_one_write() {
    let (mut s, server) = session(Script::new(CAPS_ALL)).await;
    let jobs = [
        job(&["a", "b"], BODY1),
        job(&["c"], BODY2),
        job(&["d"], BODY3),
    ];
    let report = s.send(&jobs).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(
        kinds(&report.jobs[0]),
        [("delivered", 250), ("delivered", 250)]
    );
    assert_eq!(kinds(&report.jobs[1]), [("delivered", 250)]);
    assert_eq!(kinds(&report.jobs[2]), [("delivered", 250)]);
    // All three went out in one vectored write, before any reply was read.
    assert_eq!(report.stats.writes, 1, "{:?}", report.stats);
    assert_eq!(report.stats.transactions, 3);
    assert_eq!(
        report.stats.body_bytes,
        (BODY1.len() + BODY2.len() + BODY3.len()) as u64
    );
    assert_eq!(report.stats.body_bytes_copied, 0);
    // MAIL, 2 RCPT, BDAT, then RSET + MAIL + RCPT + BDAT twice.
    assert_eq!(report.stats.replies, 4 + 4 + 4);
    assert!(s.is_reusable());
    assert_eq!(s.transactions(), 3);
    s.quit().await;
    let events = server.await.unwrap();
    assert_eq!(
        lines(&events),
        [
            "EHLO client.test",
            format!("MAIL FROM:<sender@example.com> SIZE={}", BODY1.len()).as_str(),
            "RCPT TO:<a@example.org>",
            "RCPT TO:<b@example.org>",
            format!("BDAT {} LAST", BODY1.len()).as_str(),
            "RSET",
            format!("MAIL FROM:<sender@example.com> SIZE={}", BODY2.len()).as_str(),
            "RCPT TO:<c@example.org>",
            format!("BDAT {} LAST", BODY2.len()).as_str(),
            "RSET",
            format!("MAIL FROM:<sender@example.com> SIZE={}", BODY3.len()).as_str(),
            "RCPT TO:<d@example.org>",
            format!("BDAT {} LAST", BODY3.len()).as_str(),
            "QUIT",
        ]
    );
    let chunks: Vec<&[u8]> = events
        .iter()
        .filter_map(|e| match e {
            Event::Chunk(c) => Some(c.as_slice()),
            _ => None,
        })
        .collect();
    assert_eq!(chunks, [BODY1, BODY2, BODY3]);
}

#[tokio::test]
async fn a_second_send_on_a_drained_session_needs_no_rset() {
    let (mut s, server) = session(Script::new(CAPS_ALL)).await;
    assert!(s.send(&[job(&["a"], BODY1)]).await.error.is_none());
    assert!(s.send(&[job(&["b"], BODY1)]).await.error.is_none());
    s.quit().await;
    let l = lines(&server.await.unwrap());
    assert!(!l.contains(&"RSET".to_string()), "{l:?}");
}

#[tokio::test]
async fn data_path_dot_stuffing_byte_for_byte() {
    const BODY: &[u8] = b".starts with a dot\r\nmiddle\r\n.\r\n..two\r\nno final crlf";
    let (mut s, server) = session(Script::new(CAPS_PIPE)).await;
    let report = s.send(&[job(&["a"], BODY), job(&["b"], BODY1)]).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(kinds(&report.jobs[0]), [("delivered", 250)]);
    assert_eq!(kinds(&report.jobs[1]), [("delivered", 250)]);
    // Per transaction: MAIL+RCPT+DATA in one write, the body in another.
    assert_eq!(report.stats.writes, 4, "{:?}", report.stats);
    assert_eq!(report.stats.body_bytes_copied, 0);
    s.quit().await;
    let events = server.await.unwrap();
    let data: Vec<&Vec<u8>> = events
        .iter()
        .filter_map(|e| match e {
            Event::Data(d) => Some(d),
            _ => None,
        })
        .collect();
    let expected: &[u8] =
        b"..starts with a dot\r\nmiddle\r\n..\r\n...two\r\nno final crlf\r\n.\r\n";
    assert_eq!(data[0].as_slice(), expected);
    // And a receiver unstuffs it back to the body (plus the CRLF we added).
    let mut reader = DataReader::new(DataLimits {
        max_size: 1 << 20,
        max_line: None,
        bare_line_endings: Default::default(),
    });
    let mut content = Vec::new();
    let progress = reader
        .feed(data[0], |c| content.extend_from_slice(c))
        .unwrap();
    assert!(matches!(
        progress,
        DataProgress::Done { result: Ok(()), .. }
    ));
    assert_eq!(content, [BODY, b"\r\n"].concat());
    let l = lines(&events);
    assert_eq!(l.iter().filter(|l| *l == "DATA").count(), 2);
    assert!(!l.contains(&"RSET".to_string()));
}

#[tokio::test]
async fn partial_rcpt_rejection() {
    for caps in [CAPS_ALL, CAPS_PIPE] {
        let (mut s, _server) = session(Script::new(caps)).await;
        let report = s.send(&[job(&["a", "rej1", "b"], BODY1)]).await;
        assert_eq!(
            kinds(&report.jobs[0]),
            [("delivered", 250), ("permanent", 550), ("delivered", 250)]
        );
        assert!(s.is_reusable());
    }
}

#[tokio::test]
async fn too_many_recipients_452_split() {
    let mut n = 0;
    let script = Script::new(CAPS_ALL).hook(move |line| {
        if line.starts_with("RCPT") {
            n += 1;
            if n > 2 {
                return Some(Resp::Reply("452 4.5.3 too many recipients".into()));
            }
        }
        None
    });
    let (mut s, _server) = session(script).await;
    let report = s.send(&[job(&["a", "b", "c", "d"], BODY1)]).await;
    assert_eq!(
        kinds(&report.jobs[0]),
        [
            ("delivered", 250),
            ("delivered", 250),
            ("too-many", 452),
            ("too-many", 452)
        ]
    );
    assert!(s.is_reusable());
}

#[tokio::test]
async fn all_refused_then_back_to_back_transactions_are_clean() {
    let (mut s, server) = session(Script::new(CAPS_ALL)).await;
    let jobs = [
        job(&["rej1", "rej2"], BODY1),
        job(&["c"], BODY2),
        job(&["d"], BODY3),
    ];
    let report = s.send(&jobs).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(
        kinds(&report.jobs[0]),
        [("permanent", 550), ("permanent", 550)]
    );
    // Without the RSET ahead of them these would meet the open transaction: 503.
    assert_eq!(kinds(&report.jobs[1]), [("delivered", 250)]);
    assert_eq!(kinds(&report.jobs[2]), [("delivered", 250)]);
    assert!(s.is_reusable());
    s.quit().await;
    let l = lines(&server.await.unwrap());
    // The planner's own RSET for the first transaction follows the others.
    assert_eq!(l.iter().filter(|l| *l == "RSET").count(), 3, "{l:?}");
}

#[tokio::test]
async fn all_refused_alone_gets_its_rset_and_the_session_stays_usable() {
    let (mut s, server) = session(Script::new(CAPS_ALL)).await;
    let report = s.send(&[job(&["rej1"], BODY1)]).await;
    assert_eq!(kinds(&report.jobs[0]), [("permanent", 550)]);
    let report = s.send(&[job(&["a"], BODY1)]).await;
    assert_eq!(kinds(&report.jobs[0]), [("delivered", 250)]);
    s.quit().await;
    let l = lines(&server.await.unwrap());
    assert_eq!(l.iter().filter(|l| *l == "RSET").count(), 1, "{l:?}");
}

#[tokio::test]
async fn service_unavailable_421_mid_transaction() {
    let mut n = 0;
    let script = Script::new(CAPS_ALL).hook(move |line| {
        if line.starts_with("RCPT") {
            n += 1;
            if n == 2 {
                return Some(Resp::ReplyClose("421 4.7.0 try again later".into()));
            }
        }
        None
    });
    let (mut s, _server) = session(script).await;
    let jobs = [job(&["a"], BODY1), job(&["b"], BODY2), job(&["c"], BODY3)];
    let report = s.send(&jobs).await;
    assert_eq!(kinds(&report.jobs[0]), [("delivered", 250)]);
    assert_eq!(kinds(&report.jobs[1]), [("transient", 421)]);
    assert_eq!(kinds(&report.jobs[2]), [("transient", 421)]);
    let e = report.error.expect("421 ends the session");
    assert!(e.is_connection_level() && e.is_transient());
    assert_eq!(e.reply().code.get(), 421);
    assert!(!s.is_reusable());
    // A dead session sends nothing.
    let again = s.send(&[job(&["d"], BODY1)]).await;
    assert_eq!(again.jobs, [JobOutcome::NotSent]);
}

#[tokio::test]
async fn connection_drop_mid_data_is_transient() {
    let script = Script::new(CAPS_PIPE)
        .hook(|line| (line == "DATA").then(|| Resp::ReplyReadClose("354 go ahead".into(), 5)));
    let (mut s, _server) = session(script).await;
    let report = s.send(&[job(&["a", "b"], BODY1), job(&["c"], BODY2)]).await;
    assert_eq!(
        kinds(&report.jobs[0]),
        [("transient", 451), ("transient", 451)]
    );
    let JobOutcome::Attempted(o) = &report.jobs[0] else {
        unreachable!()
    };
    let RecipientOutcome::Transient(r) = &o[0] else {
        unreachable!()
    };
    assert_eq!(r.enhanced.map(|e| e.to_string()).as_deref(), Some("4.4.2"));
    assert_eq!(report.jobs[1], JobOutcome::NotSent);
    assert!(report.error.unwrap().is_connection_level());
    assert!(!s.is_reusable());
}

#[tokio::test]
async fn drop_after_body_before_reply_is_transient() {
    let script = Script::new(CAPS_ALL).hook(|line| line.starts_with("BDAT").then_some(Resp::Close));
    let (mut s, _server) = session(script).await;
    let report = s.send(&[job(&["a"], BODY1)]).await;
    assert_eq!(kinds(&report.jobs[0]), [("transient", 451)]);
    assert!(!s.is_reusable());
}

#[tokio::test]
async fn reply_timeout_is_transient() {
    let script =
        Script::new(CAPS_ALL).hook(|line| (!line.starts_with("EHLO")).then_some(Resp::Silent));
    let (io, _server) = spawn(script);
    let mut o = options(TlsPolicy::Disabled);
    o.timeouts.mail = Duration::from_millis(100);
    o.timeouts.rcpt = Duration::from_millis(100);
    o.timeouts.data_end = Duration::from_millis(100);
    let mut s = ClientSession::handshake(io, &endpoint(25), &o)
        .await
        .unwrap();
    let report = s.send(&[job(&["a"], BODY1)]).await;
    assert_eq!(kinds(&report.jobs[0]), [("transient", 451)]);
    assert!(report.error.unwrap().is_timeout());
    assert!(!s.is_reusable());
}

#[tokio::test]
async fn helo_fallback_runs_serially() {
    let script = Script::new("").hook(|line| {
        line.starts_with("EHLO")
            .then(|| Resp::Reply("502 5.5.2 what is EHLO".into()))
    });
    let (mut s, server) = session(script).await;
    assert!(!s.capabilities().pipelining);
    let report = s
        .send(&[job(&["a", "rej"], BODY2), job(&["b"], BODY1)])
        .await;
    assert_eq!(
        kinds(&report.jobs[0]),
        [("delivered", 250), ("permanent", 550)]
    );
    assert_eq!(kinds(&report.jobs[1]), [("delivered", 250)]);
    s.quit().await;
    let l = lines(&server.await.unwrap());
    assert_eq!(l[0..2], ["EHLO client.test", "HELO client.test"]);
}

#[tokio::test]
async fn too_big_for_the_server_is_permanent_and_not_written() {
    let big = Bytes::from(vec![b'x'; 1_000_001]);
    let (mut s, server) = session(Script::new(CAPS_ALL)).await;
    let report = s
        .send(&[job_bytes(&["a", "b"], big), job(&["c"], BODY1)])
        .await;
    assert_eq!(
        kinds(&report.jobs[0]),
        [("permanent", 552), ("permanent", 552)]
    );
    assert_eq!(kinds(&report.jobs[1]), [("delivered", 250)]);
    s.quit().await;
    let l = lines(&server.await.unwrap());
    assert_eq!(l.iter().filter(|l| l.starts_with("MAIL")).count(), 1);
}

#[tokio::test]
async fn window_limits_transactions_in_flight() {
    let (io, server) = spawn(Script::new(CAPS_ALL));
    let mut o = options(TlsPolicy::Disabled);
    o.window.max_transactions = 2;
    let mut s = ClientSession::handshake(io, &endpoint(25), &o)
        .await
        .unwrap();
    let jobs: Vec<Job> = (0..10).map(|_| job(&["a"], BODY1)).collect();
    let report = s.send(&jobs).await;
    assert!(report.jobs.iter().all(|j| kinds(j) == [("delivered", 250)]));
    assert!(report.stats.writes >= 5, "{:?}", report.stats);
    s.quit().await;
    let l = lines(&server.await.unwrap());
    assert_eq!(l.iter().filter(|l| l.starts_with("BDAT")).count(), 10);
}
