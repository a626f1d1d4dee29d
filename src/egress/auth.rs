//! SMTP AUTH (RFC 4954) for smarthosts: PLAIN (RFC 4616) when offered, else
//! LOGIN, after the last EHLO and only over TLS. The credentials never go in
//! clear: a plaintext session stops with [`SessionError::AuthNeedsTls`].
//!
//! Every AUTH failure is transient, a `535` included: bad credentials are fixed
//! by the operator, and the mail should wait for the fix rather than bounce.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::smtp::command::{AuthMechanism, AuthStart, Command};
use crate::smtp::ehlo::Capabilities;
use crate::smtp::reply::Reply;

use super::error::SessionError;
use super::options::Credentials;
use super::session::ClientSession;

impl<S: AsyncRead + AsyncWrite + Unpin> ClientSession<S> {
    /// Authenticates with `credentials`; `encrypted` says whether TLS is up.
    pub(super) async fn authenticate(
        &mut self,
        credentials: &Credentials,
        caps: &Capabilities,
        encrypted: bool,
    ) -> Result<(), SessionError> {
        if !encrypted {
            return Err(SessionError::AuthNeedsTls);
        }
        let t = self.timeouts.command;
        let reply = if caps.auth.contains(&AuthMechanism::Plain) {
            let mut secret = Vec::with_capacity(2 + credentials.username.len() * 2);
            secret.push(0);
            secret.extend_from_slice(credentials.username.as_bytes());
            secret.push(0);
            secret.extend_from_slice(credentials.password.as_bytes());
            let start = AuthStart {
                mechanism: AuthMechanism::Plain,
                initial_response: Some(base64(&secret)),
            };
            self.write_command(Command::Auth(start), "sending AUTH")
                .await?;
            self.read_reply(t, "after AUTH").await?
        } else if caps.auth.contains(&AuthMechanism::Login) {
            let start = AuthStart {
                mechanism: AuthMechanism::Login,
                initial_response: None,
            };
            self.write_command(Command::Auth(start), "sending AUTH")
                .await?;
            let mut reply = self.read_reply(t, "after AUTH").await?;
            for secret in [&credentials.username, &credentials.password] {
                if reply.code.get() != 334 {
                    break;
                }
                let mut line = base64(secret.as_bytes()).into_bytes();
                line.extend_from_slice(b"\r\n");
                self.write_line(&line, "sending AUTH LOGIN response")
                    .await?;
                reply = self.read_reply(t, "after AUTH LOGIN response").await?;
            }
            reply
        } else {
            return Err(SessionError::AuthUnsupported);
        };
        auth_result(reply)
    }
}

/// 235 is success; a 421 closes the connection like anywhere else; anything
/// else (a 535, a 454, a 334 left unanswered) is a failed AUTH.
fn auth_result(reply: Reply) -> Result<(), SessionError> {
    match reply.code.get() {
        235 => Ok(()),
        421 => Err(SessionError::Rejected {
            phase: "at AUTH",
            reply,
        }),
        _ => Err(SessionError::AuthFailed(reply)),
    }
}

/// Standard base64 (RFC 4648 4) with padding.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
