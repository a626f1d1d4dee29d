//! STARTTLS for the client: the policy, the rustls configurations, what a
//! handshake negotiated, and the memory of hosts whose TLS recently failed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How much TLS a destination gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsPolicy {
    /// Never STARTTLS.
    Disabled,
    /// STARTTLS when offered, without certificate verification (RFC 7435: most MX
    /// certificates would not verify). If it is not offered, or refused, go on in
    /// plaintext; if the handshake fails, reconnect in plaintext and remember the
    /// host in [`TlsMemory`] so the next sessions skip STARTTLS for a while.
    #[default]
    Opportunistic,
    /// STARTTLS must succeed (any certificate); otherwise a transient,
    /// connection-level error for that host.
    Required,
    /// STARTTLS must succeed with a certificate that verifies for the MX host
    /// name (webpki roots, or the configured CA file).
    RequiredVerified,
}

impl TlsPolicy {
    /// Whether the session must verify the server's certificate.
    pub fn verifies(self) -> bool {
        self == TlsPolicy::RequiredVerified
    }

    /// Whether a session may go on without TLS.
    pub fn allows_plaintext(self) -> bool {
        matches!(self, TlsPolicy::Disabled | TlsPolicy::Opportunistic)
    }
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("cannot read CA file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("CA file {0} holds no usable certificate")]
    NoCertificates(String),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The two client configurations a session may use, built once and shared
/// (building one loads the root store).
#[derive(Debug)]
pub struct TlsContext {
    /// For `Opportunistic` and `Required`: accepts any certificate.
    pub(crate) unverified: Arc<ClientConfig>,
    /// For `RequiredVerified`: verifies against the roots.
    pub(crate) verified: Arc<ClientConfig>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration that accepts any server certificate but still checks
/// the handshake signatures: opportunistic TLS here, and the load-test blaster
/// talking to sinks with self-signed certificates.
pub fn any_certificate_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl TlsContext {
    /// Verification against the Mozilla roots shipped in `webpki-roots`.
    pub fn webpki() -> Self {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Self::with_roots(roots).expect("the default provider supports the default versions")
    }

    /// Verification against the certificates of a PEM file (e.g. a private CA).
    pub fn with_ca_file(path: &Path) -> Result<Self, TlsConfigError> {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| TlsConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut roots = RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|source| TlsConfigError::Read {
                path: shown.clone(),
                source,
            })?;
            roots.add(cert)?;
        }
        if roots.is_empty() {
            return Err(TlsConfigError::NoCertificates(shown));
        }
        Self::with_roots(roots)
    }

    /// Verification against `roots`.
    pub fn with_roots(roots: RootCertStore) -> Result<Self, TlsConfigError> {
        let verified = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsContext {
            unverified: any_certificate_config()?,
            verified: Arc::new(verified),
        })
    }

    /// The configuration for `policy`.
    pub(crate) fn config(&self, policy: TlsPolicy) -> Arc<ClientConfig> {
        if policy.verifies() {
            self.verified.clone()
        } else {
            self.unverified.clone()
        }
    }
}

/// The certificate check of opportunistic TLS: any certificate is accepted, but
/// the handshake signatures are still checked against it (so the session key is
/// really shared with whoever holds that certificate's key).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What a TLS handshake negotiated, for the delivery log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// E.g. `TLSv1_3`.
    pub version: String,
    /// E.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// Whether the certificate was verified for the host name.
    pub verified: bool,
}

impl TlsInfo {
    pub(crate) fn from_connection(conn: &rustls::ClientConnection, verified: bool) -> Self {
        TlsInfo {
            version: conn
                .protocol_version()
                .map_or_else(|| "unknown".into(), |v| format!("{v:?}")),
            cipher: conn
                .negotiated_cipher_suite()
                .map_or_else(|| "unknown".into(), |s| format!("{:?}", s.suite())),
            verified,
        }
    }
}

/// Hosts whose opportunistic TLS failed recently, so that sessions to them go
/// straight to plaintext instead of failing a handshake and reconnecting each
/// time. Keyed by MX host name (lowercase); entries expire after the TTL. Cheap
/// to share: one mutex held for a hash lookup.
#[derive(Debug)]
pub struct TlsMemory {
    /// How long a failure is remembered.
    ttl: Duration,
    /// Host name to when the failure is forgotten.
    failed: Mutex<HashMap<String, Instant>>,
}

impl Default for TlsMemory {
    /// Remembers failures for an hour.
    fn default() -> Self {
        TlsMemory::new(Duration::from_secs(3600))
    }
}

impl TlsMemory {
    /// A memory whose entries last `ttl`.
    pub fn new(ttl: Duration) -> Self {
        TlsMemory {
            ttl,
            failed: Mutex::new(HashMap::new()),
        }
    }

    /// Records that TLS with `host` failed now.
    pub fn record_failure(&self, host: &str) {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // Keep the map bounded by dropping expired entries as it grows.
        if failed.len() >= 1024 && failed.len().is_power_of_two() {
            failed.retain(|_, until| *until > now);
        }
        failed.insert(host.to_ascii_lowercase(), now + self.ttl);
    }

    /// Whether TLS with `host` failed within the TTL.
    pub fn recently_failed(&self, host: &str) -> bool {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        let key = host.to_ascii_lowercase();
        match failed.get(&key) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                failed.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Forgets `host` (e.g. after an operator fixed its certificate).
    pub fn forget(&self, host: &str) {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.remove(&host.to_ascii_lowercase());
    }
}
