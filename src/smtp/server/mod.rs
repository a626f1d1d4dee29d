//! The ESMTP server, sans-IO: the state machine behind Volley's submission and
//! relay listeners (`crate::ingest::smtp` owns the sockets, TLS and timers).
//!
//! A [`Session`] is fed the bytes a client sent and appends its replies to one
//! output buffer, so every command of a pipelined batch is answered in one write.
//! Whatever needs the outside world stops it with an [`Action`]: start TLS, check
//! the per-address AUTH lockout, verify a password, store a message durably. The
//! connection does that and reports back (`tls_started`, `auth_gate`,
//! `auth_verified`, `stored`); the next [`Session::feed`] carries on where it
//! stopped, with the rest of the batch still buffered.
//!
//! - [`config`]: what a listener decides once ([`SessionConfig`], [`Role`],
//!   [`RelayDomains`]).
//! - [`policy`]: who may send where: the open-relay guard.
//! - [`sasl`]: AUTH PLAIN and LOGIN message decoding.
//! - [`session`]: the state machine.
//! - [`chunk`]: line checks for BDAT content (DATA has [`super::data::DataReader`]).
//! - [`received`]: the `Received:` trace header (RFC 5321 4.4, RFC 3848).
//! - [`replies`]: the fixed replies, with enhanced status codes.

pub mod chunk;
pub mod config;
pub mod policy;
pub mod received;
pub mod replies;
pub mod sasl;
pub mod session;

#[cfg(test)]
mod tests;

pub use config::{RelayDomains, Role, SessionConfig};
pub use policy::Refusal;
pub use sasl::Credentials;
pub use session::{
    Action, AuthOutcome, Identity, Phase, Session, StoreOutcome, TlsInfo, Transaction,
};
