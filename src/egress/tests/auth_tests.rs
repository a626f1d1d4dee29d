//! AUTH to smarthosts: PLAIN, the LOGIN fallback, refusals, and never in clear.

use super::tls_tests::acceptor;
use super::*;
use crate::egress::auth::base64;
use crate::smtp::status::EnhancedStatus;

const CAPS_AUTH: &str = "250-mx.test\r\n250-PIPELINING\r\n250-AUTH LOGIN PLAIN\r\n250 STARTTLS\r\n";
const CAPS_LOGIN: &str = "250-mx.test\r\n250-PIPELINING\r\n250-AUTH LOGIN\r\n250 STARTTLS\r\n";

/// base64("\0user\0pass")
const PLAIN_RESPONSE: &str = "AHVzZXIAcGFzcw==";

fn auth_options(policy: TlsPolicy) -> SessionOptions {
    let mut o = options(policy);
    o.auth = Some(Credentials::new("user", "pass"));
    o
}

fn tls_script(ehlo: &str) -> Script {
    let mut s = Script::new(ehlo);
    s.tls = Some(acceptor("mx.test"));
    s
}

#[test]
fn base64_matches_rfc_4648_vectors() {
    let cases = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];
    for (plain, encoded) in cases {
        assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
    }
    assert_eq!(base64(b"\0user\0pass"), PLAIN_RESPONSE);
    assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
}

#[test]
fn credentials_debug_hides_the_password() {
    let shown = format!("{:?}", Credentials::new("user", "hunter2"));
    assert!(
        shown.contains("user") && !shown.contains("hunter2"),
        "{shown}"
    );
}

#[tokio::test]
async fn auth_plain_over_tls_then_a_transaction() {
    let script = tls_script(CAPS_AUTH).hook(|line| {
        line.starts_with("AUTH ")
            .then(|| Resp::Reply("235 2.7.0 authenticated".into()))
    });
    let (io, server) = spawn(script);
    let mut s = ClientSession::handshake(io, &endpoint(587), &auth_options(TlsPolicy::Required))
        .await
        .expect("handshake with AUTH");
    assert!(s.info().tls.is_some());
    let report = s.send(&[job(&["a"], b"x\r\n")]).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(kinds(&report.jobs[0]), [("delivered", 250)]);
    s.quit().await;
    let l = lines(&server.await.unwrap());
    assert_eq!(
        l[..5],
        [
            "EHLO client.test",
            "STARTTLS",
            "EHLO client.test",
            &format!("AUTH PLAIN {PLAIN_RESPONSE}"),
            "MAIL FROM:<sender@example.com>",
        ]
    );
}

#[tokio::test]
async fn auth_login_when_plain_is_not_offered() {
    let mut step = 0;
    let script = tls_script(CAPS_LOGIN).hook(move |line| {
        let reply = match (step, line) {
            (0, "AUTH LOGIN") => "334 VXNlcm5hbWU6",
            (1, "dXNlcg==") => "334 UGFzc3dvcmQ6",
            (2, "cGFzcw==") => "235 2.7.0 authenticated",
            (0, _) | (3.., _) => return None,
            _ => "535 5.7.8 unexpected",
        };
        step += 1;
        Some(Resp::Reply(reply.into()))
    });
    let (io, server) = spawn(script);
    let mut s = ClientSession::handshake(io, &endpoint(587), &auth_options(TlsPolicy::Required))
        .await
        .expect("handshake with AUTH LOGIN");
    let report = s.send(&[job(&["a"], b"x\r\n")]).await;
    assert_eq!(kinds(&report.jobs[0]), [("delivered", 250)]);
    s.quit().await;
    let l = lines(&server.await.unwrap());
    assert_eq!(l[3..6], ["AUTH LOGIN", "dXNlcg==", "cGFzcw=="]);
}

#[tokio::test]
async fn refused_auth_is_transient_and_connection_level() {
    let script = tls_script(CAPS_AUTH).hook(|line| {
        line.starts_with("AUTH ")
            .then(|| Resp::Reply("535 5.7.8 bad credentials".into()))
    });
    let (io, server) = spawn(script);
    let e = ClientSession::handshake(io, &endpoint(587), &auth_options(TlsPolicy::Required))
        .await
        .unwrap_err();
    assert!(matches!(e, SessionError::AuthFailed(_)), "{e}");
    assert!(e.is_connection_level() && e.is_transient() && !e.is_permanent());
    // The log reply is a 4xx (so no recipient bounces), with the server's words.
    let reply = e.reply();
    assert_eq!(reply.code.get(), 454);
    assert_eq!(reply.enhanced, Some(EnhancedStatus::new(4, 7, 0)));
    assert!(
        reply.text().contains("535 5.7.8 bad credentials"),
        "{reply}"
    );
    let l = lines(&server.await.unwrap());
    assert!(!l.iter().any(|l| l.starts_with("MAIL")), "{l:?}");
}

#[tokio::test]
async fn credentials_are_never_sent_in_plaintext() {
    // STARTTLS not offered (opportunistic falls back), or TLS disabled outright.
    let caps = "250-mx.test\r\n250 AUTH PLAIN LOGIN\r\n";
    for policy in [TlsPolicy::Opportunistic, TlsPolicy::Disabled] {
        let (io, server) = spawn(Script::new(caps));
        let e = ClientSession::handshake(io, &endpoint(25), &auth_options(policy))
            .await
            .unwrap_err();
        assert!(matches!(e, SessionError::AuthNeedsTls), "{e}");
        assert!(e.is_connection_level() && e.is_transient());
        let reply = e.reply();
        assert_eq!(reply.code.get(), 451);
        assert_eq!(reply.enhanced, Some(EnhancedStatus::new(4, 7, 10)));
        let l = lines(&server.await.unwrap());
        assert_eq!(l, ["EHLO client.test"], "{policy:?}");
    }
}

#[tokio::test]
async fn no_usable_mechanism_is_transient() {
    let caps = "250-mx.test\r\n250-AUTH CRAM-MD5\r\n250 STARTTLS\r\n";
    let (io, server) = spawn(tls_script(caps));
    let e = ClientSession::handshake(io, &endpoint(587), &auth_options(TlsPolicy::Required))
        .await
        .unwrap_err();
    assert!(matches!(e, SessionError::AuthUnsupported), "{e}");
    assert!(e.is_transient());
    let l = lines(&server.await.unwrap());
    assert!(!l.iter().any(|l| l.starts_with("AUTH")), "{l:?}");
}

#[tokio::test]
async fn no_credentials_no_auth() {
    let (io, server) = spawn(tls_script(CAPS_AUTH));
    let s = ClientSession::handshake(io, &endpoint(587), &options(TlsPolicy::Required))
        .await
        .unwrap();
    s.quit().await;
    let l = lines(&server.await.unwrap());
    assert!(!l.iter().any(|l| l.starts_with("AUTH")), "{l:?}");
}
