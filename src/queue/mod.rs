//! The scheduler: sharded per-domain queues (being built).
