//! Real TLS handshakes (rustls on both ends, rcgen certificates) over duplex pipes.

use rustls::pki_types::PrivateKeyDer;
use rustls::{RootCertStore, ServerConfig};

use super::*;

fn certified(host: &str) -> rcgen::CertifiedKey {
    rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap()
}

fn acceptor_for(ck: &rcgen::CertifiedKey) -> TlsAcceptor {
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![ck.cert.der().clone()],
                PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into()),
            )
            .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

/// A server-side TLS acceptor with a fresh self-signed certificate for `host`.
pub(super) fn acceptor(host: &str) -> TlsAcceptor {
    acceptor_for(&certified(host))
}

const CAPS_TLS: &str = "250-mx.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 STARTTLS\r\n";

fn tls_script(ck: &rcgen::CertifiedKey) -> Script {
    let mut s = Script::new(CAPS_TLS);
    s.tls = Some(acceptor_for(ck));
    s
}

#[tokio::test]
async fn required_verified_with_a_ca_file_then_send_over_tls() {
    let ck = certified("mx.test");
    let path = std::env::temp_dir().join(format!("volley-egress-ca-{}.pem", std::process::id()));
    std::fs::write(&path, ck.cert.pem()).unwrap();
    let mut o = options(TlsPolicy::RequiredVerified);
    o.tls = Arc::new(TlsContext::with_ca_file(&path).unwrap());
    std::fs::remove_file(&path).unwrap();

    let (io, server) = spawn(tls_script(&ck));
    // A root dot on the MX name (as DNS gives it) is not part of the TLS name.
    let mut ep = endpoint(25);
    ep.host.push('.');
    let mut s = ClientSession::handshake(io, &ep, &o).await.unwrap();
    let tls = s.info().tls.clone().expect("TLS negotiated");
    assert!(tls.verified);
    assert_eq!(tls.version, "TLSv1_3");
    assert!(tls.cipher.starts_with("TLS13_"), "{}", tls.cipher);
    assert!(s.capabilities().chunking);

    const BODY: &[u8] = b"Subject: secret\r\n\r\nover TLS\r\n";
    let report = s.send(&[job(&["a"], BODY), job(&["b"], BODY)]).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(kinds(&report.jobs[0]), [("delivered", 250)]);
    assert_eq!(kinds(&report.jobs[1]), [("delivered", 250)]);
    // rustls copies the body into records.
    assert_eq!(report.stats.body_bytes_copied, 2 * BODY.len() as u64);
    s.quit().await;
    let events = server.await.unwrap();
    let l = lines(&events);
    assert_eq!(l[..3], ["EHLO client.test", "STARTTLS", "EHLO client.test"]);
    assert!(events.contains(&Event::Chunk(BODY.to_vec())));
}

#[tokio::test]
async fn required_verified_rejects_a_certificate_for_another_name() {
    let ck = certified("other.test");
    let mut roots = RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let mut o = options(TlsPolicy::RequiredVerified);
    o.tls = Arc::new(TlsContext::with_roots(roots).unwrap());
    let (io, _server) = spawn(tls_script(&ck));
    let e = ClientSession::handshake(io, &endpoint(25), &o)
        .await
        .unwrap_err();
    assert!(matches!(e, SessionError::Tls(_)), "{e}");
    assert!(e.is_connection_level() && e.is_transient());
}

#[tokio::test]
async fn required_verified_rejects_an_unknown_issuer() {
    let ck = certified("mx.test");
    let (io, _server) = spawn(tls_script(&ck));
    let e = ClientSession::handshake(io, &endpoint(25), &options(TlsPolicy::RequiredVerified))
        .await
        .unwrap_err();
    assert!(matches!(e, SessionError::Tls(_)), "{e}");
}

#[tokio::test]
async fn opportunistic_and_required_accept_a_self_signed_certificate() {
    for policy in [TlsPolicy::Opportunistic, TlsPolicy::Required] {
        let ck = certified("whatever.invalid");
        let (io, _server) = spawn(tls_script(&ck));
        let mut s = ClientSession::handshake(io, &endpoint(25), &options(policy))
            .await
            .unwrap();
        let tls = s.info().tls.clone().expect("TLS negotiated");
        assert!(!tls.verified);
        assert!(s.info().tls_fallback.is_none());
        let report = s.send(&[job(&["a"], b"x\r\n")]).await;
        assert_eq!(kinds(&report.jobs[0]), [("delivered", 250)]);
    }
}

#[test]
fn ca_file_errors() {
    let missing = std::path::Path::new("/nonexistent/volley-ca.pem");
    assert!(matches!(
        TlsContext::with_ca_file(missing),
        Err(TlsConfigError::Read { .. })
    ));
    let path = std::env::temp_dir().join(format!("volley-egress-empty-{}.pem", std::process::id()));
    std::fs::write(&path, "no certificates here\n").unwrap();
    let r = TlsContext::with_ca_file(&path);
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(r, Err(TlsConfigError::NoCertificates(_))));
}
