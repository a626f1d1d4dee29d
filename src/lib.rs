//! Volley: a high-throughput bulk SMTP transmitter.
//!
//! Layout (see `../shared/DESIGN.md` for the map):
//! - [`smtp`]: the SMTP protocol, sans-IO: commands, replies, addresses, EHLO
//!   capabilities, message data framing and the client transaction planner. Used by
//!   the egress client, the ingest servers and the load-test sink and blaster.
//! - [`model`]: messages, recipients, ids and per-recipient delivery state.
//! - [`spool`]: durable storage of messages (RocksDB) behind a trait.
//! - [`queue`]: the scheduler: per-domain queues, retries, expiry.
//! - [`egress`]: SMTP client sessions and the send path (vectored, pipelined).
//! - [`delivery`]: the delivery engine: dispatcher, per-site session pools, results, delivery log.
//! - [`dns`]: routing: MX lookup with caching, sites, smarthosts, a test DNS server.
//! - [`config`]: the TOML configuration file, parsed and validated, errors naming the key.
//! - [`ingest`]: how work gets in: the HTTP API, the message composer, the SMTP
//!   submission and relay listeners.
//! - [`shaping`]: per-site and per-domain limits: connections, GCRA rates, adaptive slow-down.
//! - [`server`]: the whole transmitter in one call (spool, engine, HTTP, SMTP listeners).
//! - [`cli`]: the `volley` subcommands (serve, send, demo, hash-token, hash-password).
//! - [`sink`]: a fast ESMTP sink with fault injection (`volley-load sink`, and in
//!   process for `volley demo` and tests).

pub mod cli;
pub mod config;
pub mod delivery;
pub mod dns;
pub mod egress;
pub mod ingest;
pub mod model;
pub mod queue;
pub mod server;
pub mod shaping;
pub mod sink;
pub mod smtp;
pub mod spool;
