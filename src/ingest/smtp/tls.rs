//! STARTTLS for the listeners: a rustls server configuration (ring provider)
//! from the PEM certificate chain and key named in the configuration.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::ingest::ListenerError;
use crate::smtp::server::TlsInfo;

/// Loads `cert` and `key` (keys `{section}.tls_cert` and `{section}.tls_key`).
pub fn acceptor(section: &str, cert: &Path, key: &Path) -> Result<TlsAcceptor, ListenerError> {
    let cert_key = format!("{section}.tls_cert");
    let key_key = format!("{section}.tls_key");
    let err = |key: &str, message: String| ListenerError::Tls {
        key: key.to_string(),
        message,
    };
    let chain = read_certs(cert).map_err(|m| err(&cert_key, m))?;
    let private = read_key(key).map_err(|m| err(&key_key, m))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&cert_key, format!("TLS versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            err(
                &key_key,
                format!(
                    "the key does not fit the certificate in {}: {e}",
                    cert.display()
                ),
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let chain = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: bad PEM: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: no CERTIFICATE in the PEM file",
            path.display()
        ));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| format!("{}: bad PEM: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no PRIVATE KEY in the PEM file", path.display()))
}

/// The negotiated version and cipher suite, for the `Received:` header.
pub fn info<S>(stream: &TlsStream<S>) -> TlsInfo {
    let (_, conn) = stream.get_ref();
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => "TLS".to_string(),
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    TlsInfo { version, cipher }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<TlsAcceptor, ListenerError>) -> ListenerError {
        match r {
            Ok(_) => panic!("accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn errors_name_the_key() {
        let dir = std::env::temp_dir().join(format!("volley-smtp-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["mx.test".into()]).unwrap();
        let (cert, key, junk) = (dir.join("c.pem"), dir.join("k.pem"), dir.join("j.pem"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        std::fs::write(&junk, "not pem\n").unwrap();
        assert!(acceptor("smtp.submission", &cert, &key).is_ok());
        let e = err(acceptor("smtp.submission", &dir.join("missing.pem"), &key));
        assert!(
            e.to_string()
                .starts_with("smtp.submission.tls_cert: cannot read"),
            "{e}"
        );
        let e = err(acceptor("smtp.relay", &cert, &junk));
        assert!(e.to_string().starts_with("smtp.relay.tls_key:"), "{e}");
        let e = err(acceptor("smtp.relay", &junk, &key));
        assert!(e.to_string().starts_with("smtp.relay.tls_cert:"), "{e}");
        let other = rcgen::generate_simple_self_signed(vec!["x.test".into()]).unwrap();
        std::fs::write(&junk, other.key_pair.serialize_pem()).unwrap();
        let e = err(acceptor("smtp.relay", &cert, &junk));
        assert!(e.to_string().starts_with("smtp.relay.tls_key:"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
