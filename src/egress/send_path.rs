//! Which system interface a plaintext session writes with: io_uring (SENDMSG, or
//! SENDMSG_ZC for big bodies) or vectored writes through tokio. Decided once when
//! the engine starts ([`SendPathChoice::resolve`] probes the kernel); the result is
//! part of every site's [`super::SessionOptions`], so no process-wide state.

use std::io;

use io_uring::opcode;
use io_uring::register::Probe;
use io_uring::IoUring;

/// What the configuration asks for (`delivery.send_path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendPathChoice {
    /// io_uring when the kernel has it and allows it, else vectored writes.
    Auto,
    /// io_uring; if the kernel refuses it, the caller is told why and the session
    /// writes with the vectored path (mail flows either way).
    IoUring,
    /// Vectored writes (`writev`/`sendmsg`) through tokio: the default, as the
    /// cheaper path measured (see the [`crate::egress`] docs).
    #[default]
    Vectored,
}

/// How sessions write, once decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendPath {
    /// Vectored writes through tokio (also every TLS session, whatever is chosen).
    #[default]
    Vectored,
    /// io_uring, a small ring per session (see [`super::uring`]).
    IoUring(UringOptions),
}

/// Settings of the io_uring path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UringOptions {
    /// A write of at least this many bytes goes with SENDMSG_ZC (when the kernel
    /// has it), smaller ones with SENDMSG.
    pub zerocopy_threshold: usize,
    /// What the kernel offered when probed.
    pub support: UringSupport,
    /// Submission queue entries per session ring (a session has at most a send, a
    /// poll and a cancel in flight). Default 8. Zero makes ring setup fail, which
    /// tests use to see a session fall back.
    pub ring_entries: u32,
}

impl UringOptions {
    /// Options for a kernel with `support`.
    pub fn new(zerocopy_threshold: usize, support: UringSupport) -> Self {
        UringOptions {
            zerocopy_threshold,
            support,
            ring_entries: 8,
        }
    }
}

/// The io_uring features the send path can use, as found by [`probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UringSupport {
    /// IORING_OP_SENDMSG_ZC (Linux 6.1+): zero-copy vectored sends.
    pub sendmsg_zc: bool,
}

/// Sets up a ring and asks the kernel which operations it has. Fails when
/// io_uring is missing (old kernel), disabled (`kernel.io_uring_disabled`), refused
/// by a seccomp filter (containers), or lacks SENDMSG, POLL_ADD or ASYNC_CANCEL.
pub fn probe() -> io::Result<UringSupport> {
    let ring: IoUring = IoUring::new(4)?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    for (code, name) in [
        (opcode::SendMsg::CODE, "SENDMSG"),
        (opcode::PollAdd::CODE, "POLL_ADD"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    ] {
        if !probe.is_supported(code) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the kernel's io_uring lacks {name}"),
            ));
        }
    }
    // Buffers are kept until their completion anyway; these two make the ring's
    // behaviour what the writer assumes (no lost completions, SQEs read at submit).
    let params = ring.params();
    if !params.is_feature_nodrop() || !params.is_feature_submit_stable() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the kernel's io_uring is too old (needs NODROP and SUBMIT_STABLE, Linux 5.5)",
        ));
    }
    Ok(UringSupport {
        sendmsg_zc: probe.is_supported(opcode::SendMsgZc::CODE),
    })
}

/// A decision and, when it differs from an explicit request, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The path sessions use.
    pub path: SendPath,
    /// Why io_uring is not used although it was asked for or allowed (`None` when
    /// the choice was honoured).
    pub fallback: Option<String>,
}

impl SendPathChoice {
    /// Probes the kernel (for `Auto` and `IoUring`) and decides.
    pub fn resolve(self, zerocopy_threshold: usize) -> Resolved {
        self.resolve_with(zerocopy_threshold, probe)
    }

    /// [`SendPathChoice::resolve`] with another probe (tests inject a refusal).
    pub fn resolve_with(
        self,
        zerocopy_threshold: usize,
        probe: impl FnOnce() -> io::Result<UringSupport>,
    ) -> Resolved {
        if self == SendPathChoice::Vectored {
            return Resolved {
                path: SendPath::Vectored,
                fallback: None,
            };
        }
        match probe() {
            Ok(support) => Resolved {
                path: SendPath::IoUring(UringOptions::new(zerocopy_threshold, support)),
                fallback: None,
            },
            Err(e) => Resolved {
                path: SendPath::Vectored,
                fallback: Some(format!("io_uring unavailable: {e}")),
            },
        }
    }
}
