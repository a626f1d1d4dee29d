//! The io_uring write path of a plaintext session: one SENDMSG (or SENDMSG_ZC at
//! or above the zero-copy threshold) per batch, whose iovecs point at the command
//! bytes and straight into the shared body buffers.
//!
//! # Design
//!
//! Each session owns a small ring ([`UringWriter`]); replies are still read through
//! tokio from the same socket. Only writes go through the ring, and every write of
//! the session does once it is attached (QUIT included), one at a time, so the
//! socket never has writes from both paths in flight. Completions are awaited
//! through an eventfd registered with the ring and with tokio ([`AsyncFd`]); the
//! eventfd is switched off (`IORING_CQ_EVENTFD_DISABLED`) except while the session
//! waits, so completions that are already in when the submit returns (the usual
//! case: the socket had room) cost no wake-up.
//!
//! Why a ring per session rather than per worker thread or on a submission
//! thread: tokio moves tasks between worker threads, so a per-thread ring needs
//! thread-local state (a process global by another name) or a lock around each
//! submit; a submission thread adds a cross-thread hand-off and wake-up per write,
//! which on two cores costs more than the syscall it replaces. A session lives for
//! up to `max_messages_per_connection` transactions, so its ring set-up (one
//! `io_uring_setup`, two mmaps, one eventfd) is paid once per connection.
//!
//! # Buffer lifetime
//!
//! The kernel reads the iovecs and the bytes behind them after the submit returns:
//! for SENDMSG until its completion, for SENDMSG_ZC until its *notification*
//! (the skb holding the pages is freed, i.e. the data is acknowledged). So a batch
//! ([`Outgoing`]) owns its buffers (`Bytes` handles: the command bytes moved in,
//! the bodies as reference counts, no copy) and lives in the ring's flight list
//! until both have arrived, not in the future that wrote it: a write future that
//! is dropped half-way (timeout, task aborted) leaves its flight to the ring. When
//! a session is dropped with flights outstanding, its ring is handed to a tokio
//! task that cancels and reaps them; if that cannot be done, the buffers are
//! leaked rather than freed under the kernel.
//!
//! Short writes resume where the kernel stopped (the iovecs are advanced, never
//! copied); `EAGAIN` waits for `POLLOUT` with a POLL_ADD on the ring; errors end the
//! write like a failed `writev` does ([`WriteError`]).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use bytes::Bytes;
use io_uring::{cqueue, opcode, types, IoUring};
use tokio::io::unix::AsyncFd;

use super::send_path::UringOptions;
use super::stream::WriteError;

/// Most iovecs one sendmsg takes (Linux `UIO_MAXIOV`).
const MAX_IOV: usize = 1024;
/// user_data of the POLL_ADD that waits for room in the socket.
const POLL_ID: u64 = u64::MAX;
/// user_data of cancellations (their completions are only drained).
const CANCEL_ID: u64 = u64::MAX - 1;
/// How long a dropped session's ring waits for its last completions before its
/// buffers are leaked.
const DRAIN_LIMIT: Duration = Duration::from_secs(600);

/// The bytes of one write: their owners, and iovecs pointing into them.
pub(crate) struct Outgoing {
    /// Owners of every byte an iovec points at. The heap buffers behind `Bytes`
    /// do not move while a handle lives, whatever happens to the handle.
    keep: Vec<Bytes>,
    /// What to send, in order; `iov[next..]` is what is left.
    iov: Vec<libc::iovec>,
    /// First iovec with bytes left.
    next: usize,
    /// Bytes left.
    left: usize,
    /// The message header handed to the kernel; points into `iov`.
    msg: libc::msghdr,
}

// SAFETY: the raw pointers in `iov` and `msg` point only into the heap buffers
// owned by `keep` (`Bytes`, which is Send + Sync), into static bytes, and into
// `iov`'s own heap array;
// the kernel only reads them. Moving an `Outgoing` to another thread moves its
// owners with it, so the pointers stay valid wherever it is used.
unsafe impl Send for Outgoing {}

impl Outgoing {
    /// An empty write.
    pub fn new() -> Self {
        Outgoing {
            keep: Vec::new(),
            iov: Vec::new(),
            next: 0,
            left: 0,
            // SAFETY: msghdr is a C struct of integers and pointers; all-zero is
            // its documented empty value (no name, no iovecs, no control data).
            msg: unsafe { std::mem::zeroed() },
        }
    }

    /// Appends `pieces`, each a sub-slice of `owner` or static (the CRLF and
    /// terminator after a DATA body), keeping `owner` alive: a reference count,
    /// no copy.
    pub fn push<'a>(&mut self, owner: &'a Bytes, pieces: impl IntoIterator<Item = &'a [u8]>) {
        for piece in pieces.into_iter().filter(|p| !p.is_empty()) {
            self.iov.push(libc::iovec {
                iov_base: piece.as_ptr() as *mut libc::c_void,
                iov_len: piece.len(),
            });
            self.left += piece.len();
        }
        self.keep.push(owner.clone());
    }

    /// Appends all of `bytes` (commands: the buffer moves in, no copy).
    pub fn push_all(&mut self, bytes: Bytes) {
        self.push(&bytes, [&bytes[..]]);
    }

    /// Bytes left to send.
    pub fn len(&self) -> usize {
        self.left
    }

    /// Points the header at what is left (at most [`MAX_IOV`] iovecs).
    fn prepare(&mut self) -> *const libc::msghdr {
        let rest = &self.iov[self.next..];
        self.msg.msg_iov = rest.as_ptr() as *mut libc::iovec;
        self.msg.msg_iovlen = rest.len().min(MAX_IOV) as _;
        &self.msg
    }

    /// Marks `n` more bytes sent; true when nothing is left.
    fn advance(&mut self, mut n: usize) -> bool {
        self.left -= n.min(self.left);
        while n > 0 && self.next < self.iov.len() {
            let v = &mut self.iov[self.next];
            if n < v.iov_len {
                // SAFETY: `n < iov_len`, so the new base stays inside the piece
                // this iovec was made from (owned by `keep`).
                v.iov_base = unsafe { (v.iov_base as *mut u8).add(n) } as *mut libc::c_void;
                v.iov_len -= n;
                return false;
            }
            n -= v.iov_len;
            self.next += 1;
        }
        self.left == 0
    }
}

impl Default for Outgoing {
    fn default() -> Self {
        Outgoing::new()
    }
}

/// One batch the kernel may still read.
struct Flight {
    /// user_data of its submissions.
    id: u64,
    /// Its buffers.
    out: Box<Outgoing>,
    /// A submission whose result has not come back.
    submitted: bool,
    /// The result of the last submission, not yet taken by the writer.
    result: Option<i32>,
    /// Zero-copy notifications still to come.
    notifs: u32,
    /// The writer is done with it (sent, failed or abandoned after its result).
    done: bool,
}

impl Flight {
    /// Whether the kernel may still read its buffers.
    fn busy(&self) -> bool {
        self.submitted || self.notifs > 0
    }
}

/// A session's ring, its eventfd, and the batches in flight.
struct RingIo {
    ring: IoUring,
    /// Registered with the ring; readable when completions arrive while enabled.
    event: AsyncFd<OwnedFd>,
    /// Batches whose buffers the kernel may still read, or whose result waits.
    flights: Vec<Flight>,
    /// The batch being written, if a write is in progress or was abandoned.
    current: Option<u64>,
    /// A POLL_ADD is in flight; `Some(res)` once its completion came.
    poll: Option<Option<i32>>,
    /// Next user_data.
    next_id: u64,
}

impl RingIo {
    fn new(entries: u32) -> io::Result<RingIo> {
        let ring: IoUring = IoUring::builder().build(entries)?;
        // SAFETY: eventfd has no memory arguments; the result is checked below.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let event = unsafe { OwnedFd::from_raw_fd(raw) };
        ring.submitter().register_eventfd(event.as_raw_fd())?;
        let mut ring = ring;
        ring.completion().disable_eventfd();
        // SAFETY: the AsyncFd owns `event` (an OwnedFd), so the descriptor stays
        // open and the same until the AsyncFd is dropped.
        let event =
            unsafe { AsyncFd::register_with_interest(event, tokio::io::Interest::READABLE) }?;
        Ok(RingIo {
            ring,
            event,
            flights: Vec::new(),
            current: None,
            poll: None,
            next_id: 0,
        })
    }

    fn flight(&mut self, id: u64) -> Option<&mut Flight> {
        self.flights.iter_mut().find(|f| f.id == id)
    }

    /// Takes every completion that is in; drops the buffers the kernel is done with.
    fn reap(&mut self) {
        let mut cq = self.ring.completion();
        cq.sync();
        for e in cq {
            match e.user_data() {
                POLL_ID => self.poll = Some(Some(e.result())),
                CANCEL_ID => {}
                id => {
                    let flags = e.flags();
                    let Some(f) = self.flights.iter_mut().find(|f| f.id == id) else {
                        continue;
                    };
                    if cqueue::notif(flags) {
                        f.notifs = f.notifs.saturating_sub(1);
                    } else {
                        f.submitted = false;
                        f.result = Some(e.result());
                        if cqueue::more(flags) {
                            f.notifs += 1;
                        }
                    }
                }
            }
        }
        self.flights.retain(|f| !f.done || f.busy());
    }

    /// Whether nothing the kernel may read is outstanding.
    fn idle(&self) -> bool {
        self.poll.is_none_or(|p| p.is_some()) && self.flights.iter().all(|f| !f.busy())
    }

    /// Queues `entry` and submits it; `enters` counts the syscalls.
    ///
    /// # Safety
    ///
    /// Every pointer in `entry` must stay valid until its completion (and, for a
    /// zero-copy send, its notification) has been reaped.
    unsafe fn submit(
        &mut self,
        entry: io_uring::squeue::Entry,
        enters: &mut u64,
    ) -> io::Result<()> {
        // SAFETY: passed on to the caller (see above).
        while unsafe { self.ring.submission().push(&entry) }.is_err() {
            // Full (never expected: one send, one poll, one cancel at most):
            // submit what is queued, then retry.
            *enters += 1;
            self.ring.submit()?;
        }
        let mut busy = 0;
        loop {
            *enters += 1;
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Completions backed up (EBUSY) or the kernel short of memory
                // (EAGAIN): make room by reaping, and try a few times.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN)) => {
                    busy += 1;
                    if busy > 8 {
                        return Err(e);
                    }
                    self.reap();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until a completion may have arrived.
    async fn wait(&mut self, enters: &mut u64) -> io::Result<()> {
        // Enable first, then look: a completion posted in between is either seen
        // now or signals the eventfd.
        {
            let mut cq = self.ring.completion();
            cq.enable_eventfd();
            cq.sync();
            if !cq.is_empty() {
                cq.disable_eventfd();
                return Ok(());
            }
        }
        let result = loop {
            let mut guard = match self.event.readable().await {
                Ok(g) => g,
                Err(e) => break Err(e),
            };
            let read = guard.try_io(|fd| {
                let mut count = 0u64;
                *enters += 1;
                // SAFETY: reads 8 bytes into a local u64, the size eventfd writes.
                let n = unsafe {
                    libc::read(
                        fd.as_raw_fd(),
                        (&mut count as *mut u64).cast::<libc::c_void>(),
                        8,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            match read {
                Ok(r) => break r,
                Err(_would_block) => continue,
            }
        };
        self.ring.completion().disable_eventfd();
        result
    }

    /// Waits for the result of flight `id`'s submission.
    async fn result_of(&mut self, id: u64, enters: &mut u64) -> io::Result<i32> {
        loop {
            self.reap();
            match self.flight(id) {
                Some(f) => {
                    if let Some(r) = f.result.take() {
                        return Ok(r);
                    }
                }
                None => return Err(io::Error::other("send lost from the ring")),
            }
            self.wait(enters).await?;
        }
    }

    /// Asks the kernel to cancel flight `id`'s submission (best effort).
    fn cancel(&mut self, id: u64) {
        let entry = opcode::AsyncCancel::new(id).build().user_data(CANCEL_ID);
        // SAFETY: a cancellation carries no pointers.
        let _ = unsafe { self.submit(entry, &mut 0) };
    }

    /// Reaps until nothing is outstanding, for at most `limit`.
    async fn drain(mut self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            self.reap();
            if self.idle() {
                return;
            }
            if tokio::time::timeout_at(deadline, self.wait(&mut 0))
                .await
                .is_err()
            {
                return; // Drop leaks what is left.
            }
        }
    }
}

impl Drop for RingIo {
    fn drop(&mut self) {
        self.reap();
        for f in self.flights.drain(..) {
            if f.busy() {
                // The kernel may still read these bytes (a zero-copy send not yet
                // acknowledged): never hand them back to the allocator.
                std::mem::forget(f.out);
            }
        }
        // The ring itself closes after this; the kernel cancels what is left.
    }
}

/// The io_uring writer of one plaintext session.
pub(crate) struct UringWriter {
    /// `None` only while being dropped.
    io: Option<RingIo>,
    /// The session's socket; owned by its transport, which outlives this writer
    /// in every use (the session drops the writer first, see `ClientSession`).
    fd: RawFd,
    /// Writes of at least this size use SENDMSG_ZC (`usize::MAX`: never).
    zerocopy_from: usize,
}

/// What one write did, for [`super::SendStats`].
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct UringCounts {
    /// io_uring_enter and eventfd reads.
    pub syscalls: u64,
    /// Bytes sent with SENDMSG_ZC.
    pub zerocopy_bytes: u64,
}

impl UringWriter {
    /// A writer for the socket `fd` (which must stay open while the writer lives).
    pub fn new(fd: RawFd, options: &UringOptions) -> io::Result<UringWriter> {
        Ok(UringWriter {
            io: Some(RingIo::new(options.ring_entries)?),
            fd,
            zerocopy_from: if options.support.sendmsg_zc {
                options.zerocopy_threshold
            } else {
                usize::MAX
            },
        })
    }

    /// Sends every byte of `out`, resuming after short writes; each submission
    /// gets `per_write` to complete. `on_write` is called with the bytes each
    /// submission took.
    pub async fn write_all(
        &mut self,
        out: Outgoing,
        per_write: Duration,
        counts: &mut UringCounts,
        mut on_write: impl FnMut(usize),
    ) -> Result<(), WriteError> {
        let fd = self.fd;
        let zerocopy = out.len() >= self.zerocopy_from;
        let io = self.io.as_mut().expect("present until dropped");
        let enters = &mut counts.syscalls;
        io.reap();
        if let Some(old) = io.current.take() {
            // A write future was dropped half-way: where its bytes stopped is
            // unknown, so the stream is unusable. Let it finish, then say so.
            if io.flights.iter().any(|f| f.id == old && f.submitted) {
                let _ = tokio::time::timeout(per_write, io.result_of(old, enters)).await;
            }
            if let Some(f) = io.flight(old) {
                f.done = true;
            }
            return Err(WriteError::Io(io::Error::other(
                "an earlier write was abandoned half-way",
            )));
        }
        if out.len() == 0 {
            return Ok(());
        }
        let id = io.next_id;
        io.next_id += 1;
        io.flights.push(Flight {
            id,
            out: Box::new(out),
            submitted: false,
            result: None,
            notifs: 0,
            done: false,
        });
        io.current = Some(id);
        let result = loop {
            let f = io.flight(id).expect("just pushed");
            let msg = f.out.prepare();
            let entry = if zerocopy {
                opcode::SendMsgZc::new(types::Fd(fd), msg)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
            } else {
                opcode::SendMsg::new(types::Fd(fd), msg)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
            }
            .user_data(id);
            f.submitted = true;
            // SAFETY: the header, the iovecs and the bytes belong to flight `id`,
            // which stays in `io.flights` until its completion and notifications
            // are reaped (`Flight::busy`), including when this future is dropped
            // (the flight stays with the ring) and when the ring is dropped
            // (`RingIo::drop` leaks busy flights).
            if let Err(e) = unsafe { io.submit(entry, enters) } {
                if let Some(f) = io.flight(id) {
                    f.submitted = false;
                }
                break Err(WriteError::Io(e));
            }
            let res = match tokio::time::timeout(per_write, io.result_of(id, enters)).await {
                Ok(Ok(res)) => res,
                Ok(Err(e)) => break Err(WriteError::Io(e)),
                Err(_) => {
                    io.cancel(id);
                    // `current` stays set: the flight is left to the ring.
                    return Err(WriteError::Timeout);
                }
            };
            if res > 0 {
                let n = res as usize;
                on_write(n);
                if zerocopy {
                    counts.zerocopy_bytes += n as u64;
                }
                let f = io.flight(id).expect("in flight");
                if f.out.advance(n) {
                    break Ok(());
                }
                continue;
            }
            match -res {
                0 => break Err(WriteError::Io(io::ErrorKind::WriteZero.into())),
                libc::EINTR => continue,
                libc::EAGAIN => {
                    if let Err(e) = wait_writable(io, fd, per_write, enters).await {
                        break Err(e);
                    }
                }
                errno => break Err(WriteError::Io(io::Error::from_raw_os_error(errno))),
            }
        };
        io.current = None;
        if let Some(f) = io.flight(id) {
            f.done = true;
        }
        io.reap();
        result
    }
}

/// Waits (a POLL_ADD on the ring) until the socket has room.
async fn wait_writable(
    io: &mut RingIo,
    fd: RawFd,
    per_write: Duration,
    enters: &mut u64,
) -> Result<(), WriteError> {
    if io.poll.is_none() {
        let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLOUT as u32)
            .build()
            .user_data(POLL_ID);
        io.poll = Some(None);
        // SAFETY: a poll carries no pointers.
        if let Err(e) = unsafe { io.submit(entry, enters) } {
            io.poll = None;
            return Err(WriteError::Io(e));
        }
    }
    let wait = async {
        loop {
            io.reap();
            if let Some(Some(res)) = io.poll {
                io.poll = None;
                return if res < 0 {
                    Err(WriteError::Io(io::Error::from_raw_os_error(-res)))
                } else {
                    Ok(())
                };
            }
            io.wait(enters).await.map_err(WriteError::Io)?;
        }
    };
    match tokio::time::timeout(per_write, wait).await {
        Ok(r) => r,
        Err(_) => Err(WriteError::Timeout),
    }
}

impl Drop for UringWriter {
    fn drop(&mut self) {
        let Some(mut io) = self.io.take() else { return };
        io.reap();
        if io.idle() {
            return;
        }
        if let Some(id) = io.current.take() {
            io.cancel(id);
            if let Some(f) = io.flight(id) {
                f.done = true;
            }
        }
        // Keep the buffers alive until the kernel is done with them, off this
        // session's path; without a runtime, RingIo::drop leaks them.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(io.drain(DRAIN_LIMIT));
        }
    }
}

impl std::fmt::Debug for UringWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringWriter")
            .field("fd", &self.fd)
            .field("zerocopy_from", &self.zerocopy_from)
            .finish_non_exhaustive()
    }
}
