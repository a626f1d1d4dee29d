//! STARTTLS: a self-signed certificate made at start (rcgen) and a rustls acceptor
//! using the ring provider.

use std::sync::Arc;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use super::SinkError;

/// An acceptor presenting a fresh self-signed certificate for `hostname`.
pub fn acceptor(hostname: &str) -> Result<TlsAcceptor, SinkError> {
    let tls = |what: &str, e: &dyn std::fmt::Display| SinkError::Tls(format!("{what}: {e}"));
    let certified = rcgen::generate_simple_self_signed(vec![hostname.to_string()])
        .map_err(|e| tls("generating a self-signed certificate", &e))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls("TLS protocol versions", &e))?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .map_err(|e| tls("TLS server certificate", &e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
