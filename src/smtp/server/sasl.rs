//! SASL PLAIN (RFC 4616) and LOGIN message decoding for AUTH (RFC 4954).

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// A user name and password the client offered; verified outside the session.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The authentication identity.
    pub username: String,
    /// The password, as sent.
    pub password: String,
}

impl fmt::Debug for Credentials {
    /// Never shows the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why a SASL response could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslError {
    /// `*`: the client gave up (RFC 4954 4).
    Cancelled,
    /// Not base64, not UTF-8, or not a well-formed PLAIN message.
    Undecodable,
    /// A PLAIN authorization identity other than the authentication identity: we
    /// do not let one user act as another.
    ForeignAuthzid,
}

/// Decodes one base64 response line (without CRLF) to UTF-8 text.
pub fn decode_text(line: &[u8]) -> Result<String, SaslError> {
    if line == b"*" {
        return Err(SaslError::Cancelled);
    }
    let bytes = STANDARD.decode(line).map_err(|_| SaslError::Undecodable)?;
    String::from_utf8(bytes).map_err(|_| SaslError::Undecodable)
}

/// Decodes a PLAIN response: base64 of `authzid NUL authcid NUL password`.
pub fn decode_plain(line: &[u8]) -> Result<Credentials, SaslError> {
    let text = decode_text(line)?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(username), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Undecodable);
    };
    if username.is_empty() {
        return Err(SaslError::Undecodable);
    }
    if !authzid.is_empty() && authzid != username {
        return Err(SaslError::ForeignAuthzid);
    }
    Ok(Credentials {
        username: username.to_string(),
        password: password.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> Vec<u8> {
        STANDARD.encode(s).into_bytes()
    }

    #[test]
    fn plain_forms() {
        let c = decode_plain(&b64("\0alice\0s3cret")).unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3cret")
        );
        assert!(decode_plain(&b64("alice\0alice\0pw")).is_ok());
        assert_eq!(
            decode_plain(&b64("bob\0alice\0pw")),
            Err(SaslError::ForeignAuthzid)
        );
        assert_eq!(decode_plain(&b64("alice\0pw")), Err(SaslError::Undecodable));
        assert_eq!(decode_plain(&b64("\0\0pw")), Err(SaslError::Undecodable));
        assert_eq!(
            decode_plain(&b64("a\0b\0c\0d")),
            Err(SaslError::Undecodable)
        );
        assert_eq!(decode_plain(b"!!!"), Err(SaslError::Undecodable));
        assert_eq!(decode_plain(b"*"), Err(SaslError::Cancelled));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn login_text() {
        assert_eq!(decode_text(&b64("alice")).unwrap(), "alice");
        assert_eq!(decode_text(b"*"), Err(SaslError::Cancelled));
        assert_eq!(
            decode_text(&STANDARD.encode([0xff, 0xfe]).into_bytes()),
            Err(SaslError::Undecodable)
        );
    }
}
