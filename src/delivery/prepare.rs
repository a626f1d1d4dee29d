//! Turning scheduler batches into egress jobs: each message's meta record, body
//! and dot-stuffing points are loaded and computed once and shared by every batch
//! (every domain, every retry) while cached.
//!
//! Two levels: the spool's [`BodyCache`] holds raw bodies (bounded by bytes, CLOCK
//! eviction); [`MessageCache`] holds, per message being sent, the decoded meta,
//! the parsed `MAIL FROM` and the [`MessageBody`] (the same buffer, zero-copy, plus
//! its stuffing points), bounded by entries and bytes, oldest evicted first. Both
//! point at the same body allocation, so a body is in memory once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::egress::{Job, MessageBody};
use crate::model::{MessageId, MessageMeta};
use crate::queue::Batch;
use crate::smtp::address::{Mailbox, Path};
use crate::smtp::command::{DsnNotify, MailFrom, RcptTo};
use crate::smtp::reply::Reply;
use crate::smtp::status::{EnhancedStatus, ReplyCode};
use crate::spool::{BodyCache, Spool, SpoolError};

/// One message, ready to be sent to any of its recipients.
#[derive(Debug)]
pub struct Prepared {
    /// The meta record.
    pub meta: Arc<MessageMeta>,
    /// The body with its stuffing points.
    pub body: MessageBody,
    /// `MAIL FROM` with the message's parameters, or why the reverse-path cannot be
    /// sent (every recipient then bounces with this reply).
    pub mail: Result<MailFrom, Reply>,
}

impl Prepared {
    /// `meta` and its body `raw` (shared, not copied), with the stuffing points
    /// found and `MAIL FROM` parsed once.
    fn new(meta: Arc<MessageMeta>, raw: crate::spool::Body) -> Arc<Prepared> {
        Arc::new(Prepared {
            mail: mail_from(&meta),
            body: MessageBody::new(Bytes::from_owner(raw)),
            meta,
        })
    }
}

/// Prepared messages by id; see the module docs.
#[derive(Debug)]
pub struct MessageCache {
    /// Raw bodies, shared with whatever else reads the spool.
    bodies: BodyCache,
    /// The prepared entries.
    table: Mutex<Table>,
    /// Most prepared entries kept.
    max_entries: usize,
    /// Most body bytes the prepared entries may pin.
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Table {
    map: HashMap<MessageId, Arc<Prepared>>,
    /// Insertion order (may hold ids already dropped).
    order: VecDeque<MessageId>,
    /// Body bytes of the entries in `map`.
    bytes: usize,
}

impl MessageCache {
    /// A cache keeping up to `bytes` of bodies (in each level).
    pub fn new(bytes: usize) -> MessageCache {
        MessageCache {
            bodies: BodyCache::new(bytes),
            table: Mutex::new(Table::default()),
            max_entries: 16_384,
            max_bytes: bytes,
        }
    }

    /// The prepared message `id`, loaded from `spool` on a miss (blocking reads:
    /// call from a blocking-capable thread).
    pub fn get(&self, spool: &dyn Spool, id: MessageId) -> Result<Arc<Prepared>, SpoolError> {
        if let Some(p) = self.lock().map.get(&id) {
            return Ok(p.clone());
        }
        let meta = spool.load_meta(id)?;
        let raw = self.bodies.get_or_load(id, || spool.load_body(id))?;
        let prepared = Prepared::new(Arc::new(meta), raw);
        self.insert(id, prepared.clone());
        Ok(prepared)
    }

    /// Caches a message just stored, so its first delivery does not read back
    /// what ingest had in hand (no I/O; the body is shared, not copied).
    pub fn prime(&self, meta: Arc<MessageMeta>, raw: crate::spool::Body) {
        let id = meta.id;
        self.bodies.insert(id, raw.clone());
        self.insert(id, Prepared::new(meta, raw));
    }

    /// The prepared message `id`, if cached (no I/O).
    pub fn cached(&self, id: MessageId) -> Option<Arc<Prepared>> {
        self.lock().map.get(&id).cloned()
    }

    /// The cached meta of `id`, if prepared.
    pub fn meta(&self, id: MessageId) -> Option<Arc<MessageMeta>> {
        self.lock().map.get(&id).map(|p| p.meta.clone())
    }

    /// Forgets `id` (its message was removed from the spool).
    pub fn invalidate(&self, id: MessageId) {
        self.bodies.invalidate(id);
        let mut t = self.lock();
        if let Some(p) = t.map.remove(&id) {
            t.bytes -= p.body.len();
        }
    }

    fn insert(&self, id: MessageId, p: Arc<Prepared>) {
        let mut t = self.lock();
        if t.map.contains_key(&id) {
            return;
        }
        t.bytes += p.body.len();
        t.map.insert(id, p);
        t.order.push_back(id);
        while t.map.len() > self.max_entries || (t.bytes > self.max_bytes && t.map.len() > 1) {
            let Some(old) = t.order.pop_front() else {
                break;
            };
            if let Some(p) = t.map.remove(&old) {
                t.bytes -= p.body.len();
            }
        }
        if t.order.len() > 2 * t.map.len() + 64 {
            let Table { map, order, .. } = &mut *t;
            order.retain(|id| map.contains_key(id));
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `MAIL FROM` for a message: its reverse-path, `SIZE`, `BODY`, `SMTPUTF8`, `RET`,
/// `ENVID` (the planner drops what the server does not offer).
pub fn mail_from(meta: &MessageMeta) -> Result<MailFrom, Reply> {
    let env = &meta.envelope;
    let path = if env.reverse_path.is_empty() {
        Path::NULL
    } else {
        match Mailbox::parse(&env.reverse_path, env.smtputf8) {
            Ok(m) => Path::mailbox(m),
            Err(e) => {
                return Err(local_reply(
                    553,
                    EnhancedStatus::new(5, 1, 7),
                    &format!("bad sender address {:?}: {e}", env.reverse_path),
                ))
            }
        }
    };
    let mut mail = MailFrom::new(path);
    mail.size = Some(meta.body_len);
    mail.body = env.body_type;
    mail.smtputf8 = env.smtputf8;
    mail.ret = env.dsn.ret;
    mail.envid = env.dsn.envid.clone();
    Ok(mail)
}

/// A locally made reply (for failures that never reached a server).
pub fn local_reply(code: u16, status: EnhancedStatus, text: &str) -> Reply {
    let code = ReplyCode::new(code).unwrap_or(ReplyCode::LOCAL_ERROR);
    Reply::new(code, Some(status), text)
}

/// A batch made into a job: which batch recipients went into it, and the result of
/// those that did not (bad address: bounce; over the transaction limit: requeue).
#[derive(Debug)]
pub struct BuiltJob {
    /// The job, if any recipient can be sent.
    pub job: Option<Job>,
    /// Indices into `batch.recipients` of the job's RCPTs, in job order.
    pub sent: Vec<usize>,
    /// For the other recipients: their index and outcome.
    pub not_sent: Vec<(usize, NotSent)>,
}

/// Why a batch recipient is not in the job.
#[derive(Debug, Clone)]
pub enum NotSent {
    /// Cannot be sent at all: bounce with this reply.
    Refused(Reply),
    /// Beyond the destination's recipients-per-transaction limit: queue again at once.
    OverLimit,
}

/// Builds the job for `batch` of `prepared`, with at most `max_rcpts` recipients.
pub fn build_job(prepared: &Prepared, batch: &Batch, max_rcpts: usize) -> BuiltJob {
    let mut out = BuiltJob {
        job: None,
        sent: Vec::new(),
        not_sent: Vec::new(),
    };
    let mail = match &prepared.mail {
        Ok(m) => m,
        Err(reply) => {
            out.not_sent = (0..batch.recipients.len())
                .map(|i| (i, NotSent::Refused(reply.clone())))
                .collect();
            return out;
        }
    };
    let env = &prepared.meta.envelope;
    let mut rcpts = Vec::with_capacity(batch.recipients.len().min(max_rcpts));
    for (i, r) in batch.recipients.iter().enumerate() {
        if rcpts.len() >= max_rcpts.max(1) {
            out.not_sent.push((i, NotSent::OverLimit));
            continue;
        }
        let Some(recipient) = env.recipients.get(r.rcpt as usize) else {
            let reply = local_reply(
                554,
                EnhancedStatus::new(5, 3, 0),
                "recipient not in the envelope",
            );
            out.not_sent.push((i, NotSent::Refused(reply)));
            continue;
        };
        match Mailbox::parse(&recipient.address, env.smtputf8) {
            Ok(m) => {
                let notify = recipient.notify;
                rcpts.push(RcptTo {
                    path: Path::mailbox(m),
                    notify: (notify != DsnNotify::default()).then_some(notify),
                    orcpt: recipient.orcpt.clone(),
                });
                out.sent.push(i);
            }
            Err(e) => {
                let reply = local_reply(
                    553,
                    EnhancedStatus::new(5, 1, 3),
                    &format!("bad recipient address {:?}: {e}", recipient.address),
                );
                out.not_sent.push((i, NotSent::Refused(reply)));
            }
        }
    }
    if !rcpts.is_empty() {
        out.job = Some(Job {
            mail: mail.clone(),
            rcpts,
            body: prepared.body.clone(),
        });
    }
    out
}
