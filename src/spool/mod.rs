//! The durable spool (being built).
