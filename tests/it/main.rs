//! Integration tests of the `volley` binary: one test binary (faster to link), one
//! module per scenario.

mod cli_util;
mod demo;
mod http_api;
mod send;
mod serve;
mod throughput;
