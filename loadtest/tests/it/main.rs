//! Integration tests of the load-test kit: one test binary (faster to link), one
//! module per scenario. Each test starts real processes on loopback ports and stops
//! them itself.

mod harness;
mod interop_postfix;
mod sink_faults;
