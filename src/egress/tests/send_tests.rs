//! Transactions over a scripted server: pipelining, DATA, refusals, failures.

use std::time::Duration;

use super::*;
use crate::smtp::data::{DataLimits, DataProgress, DataReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BODY1: &[u8] = b"Subject: one\r\n\r\nfirst\r\n";
const BODY2: &[u8] = b"Subject: two\r\n\r\n.dot line\r\n";
const BODY3: &[u8] = b"Subject: three\r\n\r\nthird\r\n";

async fn three_transactions_back_to_back_in_one_write(via: Via) {
    let (mut s, server) = session_via(via, Script::new(CAPS_ALL)).await;
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

async fn a_second_send_on_a_drained_session_needs_no_rset(via: Via) {
    let (mut s, server) = session_via(via, Script::new(CAPS_ALL)).await;
    assert!(s.send(&[job(&["a"], BODY1)]).await.error.is_none());
    assert!(s.send(&[job(&["b"], BODY1)]).await.error.is_none());
    s.quit().await;
    let l = lines(&server.await.unwrap());
    assert!(!l.contains(&"RSET".to_string()), "{l:?}");
}

async fn data_path_dot_stuffing_byte_for_byte(via: Via) {
    const BODY: &[u8] = b".starts with a dot\r\nmiddle\r\n.\r\n..two\r\nno final crlf";
    let (mut s, server) = session_via(via, Script::new(CAPS_PIPE)).await;
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

async fn partial_rcpt_rejection(via: Via) {
    for caps in [CAPS_ALL, CAPS_PIPE] {
        let (mut s, _server) = session_via(via, Script::new(caps)).await;
        let report = s.send(&[job(&["a", "rej1", "b"], BODY1)]).await;
        assert_eq!(
            kinds(&report.jobs[0]),
            [("delivered", 250), ("permanent", 550), ("delivered", 250)]
        );
        assert!(s.is_reusable());
    }
}

async fn too_many_recipients_452_split(via: Via) {
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
    let (mut s, _server) = session_via(via, script).await;
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

async fn all_refused_then_back_to_back_transactions_are_clean(via: Via) {
    let (mut s, server) = session_via(via, Script::new(CAPS_ALL)).await;
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

async fn all_refused_alone_gets_its_rset_and_the_session_stays_usable(via: Via) {
    let (mut s, server) = session_via(via, Script::new(CAPS_ALL)).await;
    let report = s.send(&[job(&["rej1"], BODY1)]).await;
    assert_eq!(kinds(&report.jobs[0]), [("permanent", 550)]);
    let report = s.send(&[job(&["a"], BODY1)]).await;
    assert_eq!(kinds(&report.jobs[0]), [("delivered", 250)]);
    s.quit().await;
    let l = lines(&server.await.unwrap());
    assert_eq!(l.iter().filter(|l| *l == "RSET").count(), 1, "{l:?}");
}

async fn service_unavailable_421_mid_transaction(via: Via) {
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
    let (mut s, _server) = session_via(via, script).await;
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

async fn connection_drop_mid_data_is_transient(via: Via) {
    let script = Script::new(CAPS_PIPE)
        .hook(|line| (line == "DATA").then(|| Resp::ReplyReadClose("354 go ahead".into(), 5)));
    let (mut s, _server) = session_via(via, script).await;
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

async fn drop_after_body_before_reply_is_transient(via: Via) {
    let script = Script::new(CAPS_ALL).hook(|line| line.starts_with("BDAT").then_some(Resp::Close));
    let (mut s, _server) = session_via(via, script).await;
    let report = s.send(&[job(&["a"], BODY1)]).await;
    assert_eq!(kinds(&report.jobs[0]), [("transient", 451)]);
    assert!(!s.is_reusable());
}

async fn reply_timeout_is_transient(via: Via) {
    let script =
        Script::new(CAPS_ALL).hook(|line| (!line.starts_with("EHLO")).then_some(Resp::Silent));
    let mut o = options(TlsPolicy::Disabled);
    o.timeouts.mail = Duration::from_millis(100);
    o.timeouts.rcpt = Duration::from_millis(100);
    o.timeouts.data_end = Duration::from_millis(100);
    let (mut s, _server) = session_with(via, script, o).await;
    let report = s.send(&[job(&["a"], BODY1)]).await;
    assert_eq!(kinds(&report.jobs[0]), [("transient", 451)]);
    assert!(report.error.unwrap().is_timeout());
    assert!(!s.is_reusable());
}

async fn helo_fallback_runs_serially(via: Via) {
    let script = Script::new("").hook(|line| {
        line.starts_with("EHLO")
            .then(|| Resp::Reply("502 5.5.2 what is EHLO".into()))
    });
    let (mut s, server) = session_via(via, script).await;
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

async fn too_big_for_the_server_is_permanent_and_not_written(via: Via) {
    let big = Bytes::from(vec![b'x'; 1_000_001]);
    let (mut s, server) = session_via(via, Script::new(CAPS_ALL)).await;
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

async fn window_limits_transactions_in_flight(via: Via) {
    let mut o = options(TlsPolicy::Disabled);
    o.window.max_transactions = 2;
    let (mut s, server) = session_with(via, Script::new(CAPS_ALL), o).await;
    let jobs: Vec<Job> = (0..10).map(|_| job(&["a"], BODY1)).collect();
    let report = s.send(&jobs).await;
    assert!(report.jobs.iter().all(|j| kinds(j) == [("delivered", 250)]));
    assert!(report.stats.writes >= 5, "{:?}", report.stats);
    s.quit().await;
    let l = lines(&server.await.unwrap());
    assert_eq!(l.iter().filter(|l| l.starts_with("BDAT")).count(), 10);
}

/// CHUNKING with a SIZE big enough for the short-write tests.
const CAPS_BIG: &str = "250-mx.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SIZE 100000000\r\n";

/// A body of `lines` CRLF lines of 78 bytes; every `dot_every`-th starts with a
/// dot (0: none).
fn lines_body(lines: usize, dot_every: usize) -> Bytes {
    let mut b = Vec::with_capacity(lines * 80);
    for i in 0..lines {
        let first = if dot_every > 0 && i % dot_every == 0 {
            b'.'
        } else {
            b'x'
        };
        b.push(first);
        b.extend_from_slice(&[b'a' + (i % 26) as u8; 77]);
        b.extend_from_slice(b"\r\n");
    }
    Bytes::from(b)
}

/// A body far larger than the socket buffers: the kernel takes it in several
/// short writes, each resumed where it stopped, and it arrives intact.
async fn short_writes_resume_where_the_kernel_stopped(via: Via) {
    let body = lines_body(200_000, 0); // 16 MB
    let (mut s, server) = session_via(via, Script::new(CAPS_BIG)).await;
    let report = s
        .send(&[job_bytes(&["a"], body.clone()), job(&["b"], BODY1)])
        .await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(kinds(&report.jobs[0]), [("delivered", 250)]);
    assert_eq!(kinds(&report.jobs[1]), [("delivered", 250)]);
    // One batch (both transactions back to back), several write calls.
    assert!(report.stats.writes > 1, "{:?}", report.stats);
    assert_eq!(report.stats.body_bytes_copied, 0);
    assert_eq!(report.stats.body_bytes, (body.len() + BODY1.len()) as u64);
    if via == Via::IoUringZc {
        assert_eq!(report.stats.zerocopy_bytes, report.stats.bytes_written);
    } else {
        assert_eq!(report.stats.zerocopy_bytes, 0);
    }
    s.quit().await;
    let events = server.await.unwrap();
    let chunks: Vec<&Vec<u8>> = events
        .iter()
        .filter_map(|e| match e {
            Event::Chunk(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(chunks.len(), 2);
    assert!(
        chunks[0].as_slice() == &body[..],
        "the big body changed on the way"
    );
    assert_eq!(chunks[1].as_slice(), BODY1);
}

/// DATA with more stuffing points than one sendmsg takes iovecs (1024): the
/// write goes in several calls and the receiver unstuffs the exact body.
async fn more_pieces_than_one_call_takes(via: Via) {
    let body = lines_body(5_000, 1); // 5,000 dots to double: 5,001 pieces
    let (mut s, server) = session_via(via, Script::new(CAPS_PIPE)).await;
    let report = s.send(&[job_bytes(&["a"], body.clone())]).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(kinds(&report.jobs[0]), [("delivered", 250)]);
    // MAIL+RCPT+DATA, then the body in at least 5 calls of <= 1024 pieces.
    assert!(report.stats.writes >= 6, "{:?}", report.stats);
    s.quit().await;
    let events = server.await.unwrap();
    let data = events
        .iter()
        .find_map(|e| match e {
            Event::Data(d) => Some(d.clone()),
            _ => None,
        })
        .expect("a DATA section");
    let mut reader = DataReader::new(DataLimits {
        max_size: 1 << 30,
        max_line: None,
        bare_line_endings: Default::default(),
    });
    let mut content = Vec::new();
    let progress = reader
        .feed(&data, |c| content.extend_from_slice(c))
        .unwrap();
    assert!(matches!(
        progress,
        DataProgress::Done { result: Ok(()), .. }
    ));
    assert!(content == body[..], "unstuffed body differs");
}

/// A server that stops reading: the body write stalls, times out after
/// `data_block`, the job is transient and the session is dropped with the
/// write still in the kernel's hands (the ring keeps its buffers until then).
async fn a_server_that_stops_reading_times_out_the_write(via: Via) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut io, _) = listener.accept().await.unwrap();
        io.write_all(b"220 mx.test ESMTP\r\n").await.unwrap();
        let mut buf = [0u8; 512];
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n") {
            let n = io.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        io.write_all(CAPS_BIG.as_bytes()).await.unwrap();
        // Never read again; hold the connection open.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(io);
    });
    let mut o = options(TlsPolicy::Disabled);
    o.send_path = via.send_path();
    o.timeouts.data_block = Duration::from_millis(300);
    let (mut s, _) = ClientSession::connect(&[Endpoint::new("mx.test", addr)], &o)
        .await
        .unwrap();
    assert_eq!(s.active_path(), via.active());
    let body = lines_body(400_000, 0); // 32 MB: more than both socket buffers
    let report = s.send(&[job_bytes(&["a"], body)]).await;
    assert_eq!(kinds(&report.jobs[0]), [("transient", 451)]);
    let e = report.error.expect("a timeout");
    assert!(e.is_timeout(), "{e}");
    assert!(!s.is_reusable());
    drop(s);
    server.abort();
}

on_every_path!(
    short_writes_resume_where_the_kernel_stopped,
    more_pieces_than_one_call_takes,
    a_server_that_stops_reading_times_out_the_write,
    three_transactions_back_to_back_in_one_write,
    a_second_send_on_a_drained_session_needs_no_rset,
    data_path_dot_stuffing_byte_for_byte,
    partial_rcpt_rejection,
    too_many_recipients_452_split,
    all_refused_then_back_to_back_transactions_are_clean,
    all_refused_alone_gets_its_rset_and_the_session_stays_usable,
    service_unavailable_421_mid_transaction,
    connection_drop_mid_data_is_transient,
    drop_after_body_before_reply_is_transient,
    reply_timeout_is_transient,
    helo_fallback_runs_serially,
    too_big_for_the_server_is_permanent_and_not_written,
    window_limits_transactions_in_flight,
);
