//! TLS for `--starttls`: a rustls client (ring provider) that accepts any server
//! certificate. A load generator talks to test servers with self-signed
//! certificates; it still checks the handshake signatures, so the session is real
//! TLS with the cost of real TLS, only without the identity check.

use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// A connector that accepts any server certificate (Volley's opportunistic-TLS
/// client configuration, shared with the egress sessions).
pub fn connector() -> Result<TlsConnector, rustls::Error> {
    Ok(TlsConnector::from(volley::egress::any_certificate_config()?))
}

/// The name to present (SNI) for a target `host` (a DNS name or an IP address).
pub fn server_name(host: &str) -> ServerName<'static> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| ServerName::try_from("localhost").expect("valid name"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::PrivateKeyDer;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Handshakes with a self-signed server (what a strict client would refuse).
    #[test]
    fn accepts_a_self_signed_server() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let cert = rcgen::generate_simple_self_signed(vec!["sink.test".into()]).unwrap();
            let key = PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let server = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert.cert.der().clone()], key)
                .unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let srv = tokio::spawn(async move {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut tls = acceptor.accept(tcp).await.unwrap();
                tls.write_all(b"hello").await.unwrap();
                tls.shutdown().await.unwrap();
            });
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut tls = connector()
                .unwrap()
                .connect(server_name("127.0.0.1"), tcp)
                .await
                .unwrap();
            let mut got = Vec::new();
            tls.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"hello");
            srv.await.unwrap();
        });
    }
}
