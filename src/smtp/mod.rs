//! The SMTP protocol, sans-IO.
//!
//! Nothing here touches a socket or imports tokio: every piece is a plain function or
//! a state machine over byte buffers, so the egress client, the ingest servers and
//! the load-test tools share one implementation and fuzzers can drive it directly.
//!
//! - [`address`]: RFC 5321 paths and mailboxes, IDN to A-labels, relay tricks.
//! - [`command`]: client commands, parsed (servers) and rendered (clients).
//! - [`reply`]: server replies, resumable parsing and rendering.
//! - [`status`]: reply codes and RFC 3463 enhanced status codes, classified.
//! - [`ehlo`]: EHLO capability parsing.
//! - [`data`]: message data: dot-stuffing as split points, end-of-data detection,
//!   unstuffing, line-length checks.
//! - [`transaction`]: the client transaction planner (what to write, and how replies
//!   map back to per-recipient outcomes).
//! - [`limits`]: the protocol's size limits, in one place.
//! - [`server`]: the ESMTP server state machine behind the ingest listeners.

pub mod address;
pub mod command;
pub mod data;
pub mod ehlo;
pub mod limits;
pub mod reply;
pub mod server;
pub mod status;
pub mod transaction;
