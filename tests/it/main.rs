//! Integration tests of the `volley` binary: one test binary (faster to link), one
//! module per scenario.

mod serve;
mod throughput;
