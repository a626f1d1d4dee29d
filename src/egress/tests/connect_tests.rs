//! Connecting: walking addresses, banners, EHLO, STARTTLS policy, real sockets.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use super::*;

/// Dials scripted servers: `scripts(port)` for each dial; remembers the servers.
struct Dialer<F> {
    scripts: F,
    servers: Vec<JoinHandle<Vec<Event>>>,
    dials: Vec<u16>,
}

impl<F: FnMut(u16) -> Script> Dialer<F> {
    fn new(scripts: F) -> Self {
        Dialer {
            scripts,
            servers: Vec::new(),
            dials: Vec::new(),
        }
    }

    async fn connect(
        &mut self,
        endpoints: &[Endpoint],
        o: &SessionOptions,
    ) -> Result<(ClientSession<DuplexStream>, Arc<ConnectInfo>), SessionError> {
        ClientSession::connect_with(endpoints, o, |addr: SocketAddr| {
            self.dials.push(addr.port());
            let (io, server) = spawn((self.scripts)(addr.port()));
            self.servers.push(server);
            async move { Ok(io) }
        })
        .await
    }
}

#[tokio::test]
async fn banner_554_moves_to_the_next_address() {
    let mut d = Dialer::new(|port| {
        let mut s = Script::new(CAPS_ALL);
        if port == 1 {
            s.banner = "554 5.7.1 go away\r\n".into();
        }
        s
    });
    let endpoints = [
        endpoint(1),
        Endpoint::new("mx2.test", SocketAddr::from(([192, 0, 2, 2], 2))),
    ];
    let (mut s, info) = d
        .connect(&endpoints, &options(TlsPolicy::Disabled))
        .await
        .unwrap();
    assert_eq!(d.dials, [1, 2]);
    assert_eq!(info.host, "mx2.test");
    assert_eq!(info.skipped.len(), 1);
    assert_eq!(info.skipped[0].1.code.get(), 554);
    assert!(info.capabilities.chunking);
    let report = s.send(&[job(&["a"], b"hi\r\n")]).await;
    assert_eq!(kinds(&report.jobs[0]), [("delivered", 250)]);
    assert_eq!(report.connection.host, "mx2.test");
}

#[tokio::test]
async fn every_address_failing_returns_the_last_error() {
    let mut d = Dialer::new(|_| {
        let mut s = Script::new(CAPS_ALL);
        s.banner = "421 4.3.2 busy\r\n".into();
        s
    });
    let e = d
        .connect(&[endpoint(1), endpoint(2)], &options(TlsPolicy::Disabled))
        .await
        .unwrap_err();
    assert!(e.is_connection_level() && e.is_transient(), "{e}");
    assert_eq!(e.reply().code.get(), 421);
    let e = d
        .connect(&[], &options(TlsPolicy::Disabled))
        .await
        .unwrap_err();
    assert!(matches!(e, SessionError::NoAddresses));
}

#[tokio::test]
async fn tls_required_but_not_offered_is_a_transient_connection_error() {
    for policy in [TlsPolicy::Required, TlsPolicy::RequiredVerified] {
        let mut d = Dialer::new(|_| Script::new(CAPS_ALL));
        let e = d
            .connect(&[endpoint(1)], &options(policy))
            .await
            .unwrap_err();
        assert!(matches!(e, SessionError::TlsNotOffered), "{e}");
        assert!(e.is_connection_level() && e.is_transient());
        assert_eq!(e.reply().enhanced.unwrap().to_string(), "4.7.10");
    }
}

#[tokio::test]
async fn opportunistic_tls_not_offered_goes_on_in_plaintext() {
    let mut d = Dialer::new(|_| Script::new(CAPS_ALL));
    let (_s, info) = d
        .connect(&[endpoint(1)], &options(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    assert!(info.tls.is_none());
    assert_eq!(info.tls_fallback.as_deref(), Some("STARTTLS not offered"));
}

const CAPS_TLS: &str = "250-mx.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 STARTTLS\r\n";

fn failing_tls_script(_: u16) -> Script {
    let mut s = Script::new(CAPS_TLS).hook(|l| (l == "STARTTLS").then_some(Resp::NotTls));
    s.tls = Some(super::tls_tests::acceptor("mx.test"));
    s
}

#[tokio::test]
async fn opportunistic_handshake_failure_reconnects_in_plaintext_and_remembers() {
    let o = options(TlsPolicy::Opportunistic);
    let mut d = Dialer::new(failing_tls_script);
    let (mut s, info) = d.connect(&[endpoint(7)], &o).await.unwrap();
    assert_eq!(d.dials, [7, 7], "the same host again, in plaintext");
    assert!(info.tls.is_none());
    assert!(info
        .tls_fallback
        .as_deref()
        .unwrap()
        .contains("handshake failed"));
    assert_eq!(info.skipped.len(), 1);
    assert!(o.tls_memory.recently_failed("MX.test"));
    let report = s.send(&[job(&["a"], b"hi\r\n")]).await;
    assert_eq!(kinds(&report.jobs[0]), [("delivered", 250)]);

    // The next session goes straight to plaintext.
    let mut d = Dialer::new(failing_tls_script);
    let (_s, info) = d.connect(&[endpoint(7)], &o).await.unwrap();
    assert_eq!(d.dials, [7]);
    assert!(info.tls_fallback.as_deref().unwrap().contains("recently"));
    drop(_s);
    let events = d.servers.pop().unwrap().await.unwrap();
    assert!(!lines(&events).contains(&"STARTTLS".to_string()));

    o.tls_memory.forget("mx.test");
    assert!(!o.tls_memory.recently_failed("mx.test"));
}

#[tokio::test]
async fn required_tls_handshake_failure_is_a_connection_error() {
    let mut d = Dialer::new(failing_tls_script);
    let e = d
        .connect(&[endpoint(7)], &options(TlsPolicy::Required))
        .await
        .unwrap_err();
    assert!(matches!(e, SessionError::Tls(_)), "{e}");
    assert!(e.is_connection_level() && e.is_transient());
    assert_eq!(d.dials, [7]);
}

#[tokio::test]
async fn tls_memory_expires() {
    let m = TlsMemory::new(std::time::Duration::from_millis(30));
    m.record_failure("mx.test");
    assert!(m.recently_failed("mx.test"));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!m.recently_failed("mx.test"));
}

#[tokio::test]
async fn ehlo_421_is_a_connection_error() {
    let mut d = Dialer::new(|_| {
        Script::new(CAPS_ALL).hook(|l| {
            l.starts_with("EHLO")
                .then(|| Resp::ReplyClose("421 4.3.2 shutting down".into()))
        })
    });
    let e = d
        .connect(&[endpoint(1)], &options(TlsPolicy::Disabled))
        .await
        .unwrap_err();
    assert_eq!(e.reply().code.get(), 421);
    assert!(e.is_connection_level() && e.is_transient());
}

/// Serves `script()` on every connection to a loopback listener.
async fn tcp_server(script: fn() -> Script) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(Box::new(stream), script()));
        }
    });
    addr
}

#[tokio::test]
async fn real_tcp_refused_then_next_address_with_vectored_writes() {
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let good = tcp_server(|| Script::new(CAPS_ALL)).await;
    let endpoints = [
        Endpoint::new("mx1.test", refused),
        Endpoint::new("mx2.test", good),
    ];
    let (mut s, info) = ClientSession::connect(&endpoints, &options(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    assert_eq!(info.addr, good);
    assert_eq!(info.skipped[0].1.enhanced.unwrap().to_string(), "4.4.1");
    let jobs: Vec<Job> = (0..8)
        .map(|_| job(&["a", "b"], b"Subject: x\r\n\r\nbody\r\n"))
        .collect();
    let report = s.send(&jobs).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert!(report
        .jobs
        .iter()
        .all(|j| kinds(j) == [("delivered", 250); 2]));
    assert_eq!(report.stats.body_bytes_copied, 0);
    assert!(
        report.stats.writes_per_transaction() <= 1.0,
        "{:?}",
        report.stats
    );
    assert!(s.is_reusable());
    s.quit().await;
}

#[tokio::test]
async fn a_host_name_unusable_for_tls() {
    let bad = [Endpoint::new(
        "not a host name",
        SocketAddr::from(([192, 0, 2, 1], 1)),
    )];
    let mut d = Dialer::new(failing_tls_script);
    let (_s, info) = d
        .connect(&bad, &options(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    assert!(info
        .tls_fallback
        .as_deref()
        .unwrap()
        .contains("server name"));
    let e = d
        .connect(&bad, &options(TlsPolicy::Required))
        .await
        .unwrap_err();
    assert!(
        matches!(e, SessionError::BadServerName(_)) && e.is_permanent(),
        "{e}"
    );
}
