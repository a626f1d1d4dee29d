//! Integration tests of the load-test kit: one test binary (faster to link), one
//! module per scenario. Each test starts real processes on loopback ports and stops
//! them itself.

mod delivery_basic;
mod delivery_env;
mod delivery_faults;
mod delivery_policy;
mod delivery_postfix;
mod delivery_recovery;
mod harness;
mod ingest_http;
mod ingest_smtp_env;
mod ingest_smtp_postfix;
mod ingest_smtp_relay;
mod ingest_smtp_submission;
mod interop_postfix;
mod postfix_receiver;
mod postfix_smtpd;
mod scenario;
mod sink_faults;
mod vs_postfix;
