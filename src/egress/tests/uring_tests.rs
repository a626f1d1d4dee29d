//! Choosing the send path: the probe, the fallbacks when io_uring is refused
//! (by the probe, or by one session's ring set-up), TLS staying on rustls, and
//! the `[delivery]` keys.

use std::io;

use super::tls_tests::acceptor;
use super::*;
use crate::config::Config;

const BODY: &[u8] = b"Subject: path\r\n\r\nwhich path?\r\n";

#[test]
fn the_probe_finds_io_uring_on_this_machine() {
    let support = send_path::probe().expect("io_uring on this machine kind");
    // Linux 6.1+ has SENDMSG_ZC; the machines this runs on are newer.
    assert!(support.sendmsg_zc);
}

#[test]
fn a_refused_probe_falls_back_to_vectored() {
    let refuse = || Err(io::Error::from_raw_os_error(libc::EPERM));
    for choice in [SendPathChoice::Auto, SendPathChoice::IoUring] {
        let r = choice.resolve_with(4096, refuse);
        assert_eq!(r.path, SendPath::Vectored, "{choice:?}");
        let why = r.fallback.expect("says why");
        assert!(why.contains("io_uring unavailable"), "{why}");
    }
    // "vectored" does not even probe.
    let r = SendPathChoice::Vectored.resolve_with(4096, || panic!("probed"));
    assert_eq!((r.path, r.fallback), (SendPath::Vectored, None));
    // An accepted probe gives io_uring with the threshold.
    let ok = || Ok(UringSupport { sendmsg_zc: true });
    let r = SendPathChoice::Auto.resolve_with(4096, ok);
    let SendPath::IoUring(o) = r.path else {
        panic!("{r:?}")
    };
    assert_eq!(o.zerocopy_threshold, 4096);
}

#[tokio::test]
async fn a_session_whose_ring_cannot_be_set_up_sends_vectored() {
    let support = send_path::probe().unwrap();
    let mut o = options(TlsPolicy::Disabled);
    // The kernel refuses a ring of zero entries (EINVAL): a real refusal.
    o.send_path = SendPath::IoUring(UringOptions {
        ring_entries: 0,
        ..UringOptions::new(0, support)
    });
    let (addr, server) = spawn_tcp(Script::new(CAPS_ALL)).await;
    let (mut s, _) = ClientSession::connect(&[Endpoint::new("mx.test", addr)], &o)
        .await
        .unwrap();
    let ActivePath::Vectored(Some(why)) = s.active_path() else {
        panic!("{:?}", s.active_path())
    };
    assert!(!why.is_empty());
    let report = s.send(&[job(&["a"], BODY), job(&["b"], BODY)]).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(kinds(&report.jobs[1]), [("delivered", 250)]);
    assert_eq!(report.stats.writes, 1);
    assert_eq!(report.stats.syscalls, 1);
    assert_eq!(report.stats.zerocopy_bytes, 0);
    s.quit().await;
    assert_eq!(lines(&server.await.unwrap()).last().unwrap(), "QUIT");
}

#[tokio::test]
async fn io_uring_counts_its_system_calls_and_zero_copy_bytes() {
    let (mut s, server) = session_via(Via::IoUringZc, Script::new(CAPS_ALL)).await;
    let jobs = [job(&["a"], BODY), job(&["b"], BODY)];
    let report = s.send(&jobs).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    // One SENDMSG_ZC for both transactions: at least one io_uring_enter.
    assert_eq!(report.stats.writes, 1);
    assert!(report.stats.syscalls >= 1, "{:?}", report.stats);
    assert_eq!(report.stats.zerocopy_bytes, report.stats.bytes_written);
    assert_eq!(report.stats.body_bytes_copied, 0);
    // QUIT goes through the ring too (no write from both paths).
    s.quit().await;
    assert_eq!(lines(&server.await.unwrap()).last().unwrap(), "QUIT");
}

#[tokio::test]
async fn tls_sessions_stay_on_rustls_whatever_the_path() {
    let mut script =
        Script::new("250-mx.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 STARTTLS\r\n");
    script.tls = Some(acceptor("mx.test"));
    let (mut s, server) = {
        let mut o = options(TlsPolicy::Required);
        o.send_path = Via::IoUring.send_path();
        let (addr, server) = spawn_tcp(script).await;
        let (s, _) = ClientSession::connect(&[Endpoint::new("mx.test", addr)], &o)
            .await
            .unwrap();
        (s, server)
    };
    assert_eq!(s.active_path(), ActivePath::Tls);
    let report = s.send(&[job(&["a"], BODY)]).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(kinds(&report.jobs[0]), [("delivered", 250)]);
    // rustls copies the body into records.
    assert_eq!(report.stats.body_bytes_copied, BODY.len() as u64);
    assert_eq!(report.stats.zerocopy_bytes, 0);
    s.quit().await;
    let events = server.await.unwrap();
    assert!(events.contains(&Event::Chunk(BODY.to_vec())));
}

fn delivery(text: &str) -> Result<Config, crate::config::ConfigError> {
    Config::from_toml_str(&format!("[delivery]\n{text}\n"))
}

#[test]
fn the_delivery_keys_choose_the_path() {
    let c = delivery("send_path = \"vectored\"").unwrap();
    assert_eq!(c.delivery.send_path(), SendPath::Vectored);
    let c = delivery("send_path = \"io-uring\"\nzerocopy_threshold = \"16KiB\"").unwrap();
    let SendPath::IoUring(o) = c.delivery.send_path() else {
        panic!("io_uring is available here")
    };
    assert_eq!(o.zerocopy_threshold, 16 << 10);
    let c = delivery("send_path = \"auto\"").unwrap();
    assert!(matches!(c.delivery.send_path(), SendPath::IoUring(_)));
    // The default: vectored, the cheaper path as measured (benches/send.rs).
    let c = delivery("").unwrap();
    assert_eq!(c.delivery.send_path(), SendPath::Vectored);
    let e = delivery("send_path = \"uring\"").unwrap_err().to_string();
    assert!(e.contains("delivery.send_path"), "{e}");
    let e = delivery("zerocopy_threshold = \"lots\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("delivery.zerocopy_threshold"), "{e}");
}
