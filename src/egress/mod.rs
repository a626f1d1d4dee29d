//! Egress: SMTP client sessions and the send path (DESIGN.md steps 5 and 6).
//!
//! The pool of a site owns [`ClientSession`]s. It opens one with
//! [`ClientSession::connect`] (the site's MX endpoints in preference order and the
//! site's [`SessionOptions`]), hands it batches of [`Job`]s with
//! [`ClientSession::send`] while [`ClientSession::is_reusable`], and ends it with
//! [`ClientSession::quit`]. Every recipient of every job comes back with an
//! outcome (or the job as `NotSent`), and errors say whether they are the
//! connection's fault.
//!
//! - [`options`]: endpoints, timeouts, the pipelining window, session options.
//! - [`session`]: connecting, banner, EHLO/HELO, STARTTLS, reading replies, QUIT.
//! - [`auth`]: AUTH PLAIN / LOGIN to smarthosts, and the base64 it needs.
//! - [`send`]: transactions, back-to-back pipelining, vectored writes, stats.
//! - [`send_path`]: `delivery.send_path`: the io_uring probe and the choice.
//! - `uring` (private): the io_uring writer (a ring per session; SENDMSG / SENDMSG_ZC).
//! - [`tls`]: TLS policy, rustls configurations, memory of TLS failures.
//! - [`stream`]: the plain-or-TLS transport and the vectored write loop.
//! - [`error`]: [`SessionError`], classified.
//!
//! # The send path: what is and is not zero-copy
//!
//! A body is read once from the spool into a shared [`bytes::Bytes`] and every
//! transaction of every recipient batch writes from that buffer: commands and
//! body go out together in one vectored write per batch (with PIPELINING and
//! CHUNKING, up to 8 transactions back to back in one write); DATA's dot-stuffing
//! is a list of split points, the doubled dot being the same byte sent twice
//! from overlapping slices. So on a plaintext connection no body byte is copied
//! in user space, on either write path:
//!
//! - `vectored` (default): `writev` through tokio. The kernel copies the body
//!   into socket buffers (one copy, in the kernel).
//! - `io-uring` (`auto` where the kernel allows it): the same iovecs in one
//!   SENDMSG on a small ring owned by the session; writes of at least
//!   `delivery.zerocopy_threshold` go with SENDMSG_ZC, which pins the pages
//!   instead of copying them (on a real NIC: no copy at all; the buffers are kept
//!   until the kernel's notification). Replies are still read through tokio.
//! - TLS (any path): rustls encrypts into its own records, so every body byte is
//!   copied once in user space ([`SendStats::body_bytes_copied`]); io_uring is
//!   not used on TLS sessions.
//!
//! # Measured (benches/send.rs), and why `vectored` is the default
//!
//! One pipelined session to the in-process sink over loopback, 8 transactions per
//! write, sender on its own thread; CPU is the sender thread's user + system time
//! (`getrusage(RUSAGE_THREAD)`; `perf stat` has no hardware counters on this
//! machine), per delivered recipient, median of four runs of the table (three
//! for 1 MB) on the shared 2-core box while other builds ran. Write syscalls were 0.125 per message on every path (one
//! per batch of 8; io_uring: one `io_uring_enter`, completions already in on
//! return, no eventfd wake-ups) and user-space body bytes copied were 0 on
//! every path.
//!
//! | body x rcpts | vectored | io-uring (SENDMSG) | io-uring (SENDMSG_ZC) |
//! |---|---|---|---|
//! | 4 KB x 1     | 1.84 us  | 2.05 us            | 4.21 us               |
//! | 4 KB x 50    | 0.33 us  | 0.33 us            | 0.35 us               |
//! | 100 KB x 1   | 7.96 us  | 8.21 us            | 21.1 us               |
//! | 100 KB x 50  | 0.40 us  | 0.42 us            | 0.68 us               |
//! | 1 MB x 1     | 111 us   | 114 us             | 142 us                |
//!
//! SENDMSG through the ring costs the same as `writev` within the noise, and a
//! little more for small messages (the submission and completion bookkeeping
//! replace one syscall with one syscall). SENDMSG_ZC costs up to 2.65x the
//! sender CPU below 1 MB (the more body per recipient, the worse) and still 1.3x
//! at 1 MB (2x for the whole process): on loopback the kernel copies zero-copy
//! pages anyway when the receiver queues them, and adds pinning and a
//! notification per send, as DESIGN.md expects. So the cheaper path, and the
//! default, is `vectored`; `auto`/`io-uring` are there for real NICs, where SENDMSG_ZC can save the
//! kernel's copy of big writes. That saving could not be measured here, so the
//! zero-copy threshold defaults to 1 MiB, where the loopback penalty is smallest.

pub mod auth;
pub mod error;
pub mod options;
pub mod send;
pub mod send_path;
pub mod session;
pub mod stream;
pub mod tls;
mod uring;

pub use error::SessionError;
pub use options::{Credentials, Endpoint, PipelineWindow, SessionOptions, Timeouts};
pub use send::{Job, JobOutcome, MessageBody, SendReport, SendStats};
pub use send_path::{SendPath, SendPathChoice, UringOptions, UringSupport};
pub use session::{ActivePath, ClientSession, ConnectFailure, ConnectInfo};
pub use stream::Transport;
pub use tls::{any_certificate_config, TlsConfigError, TlsContext, TlsInfo, TlsMemory, TlsPolicy};

#[cfg(test)]
mod tests;
