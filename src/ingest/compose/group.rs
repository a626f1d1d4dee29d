//! Grouping rendered recipients into messages: every recipient that gets the same
//! bytes and the same tags travels in one message (one spool write, one SMTP
//! transaction per destination), whether the content is static or not.

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::{
    ComposeError, ComposeLimits, Composed, ComposedMessage, Composer, InjectRequest, Rejection,
    Rendered,
};

/// A whole `/messages` request: validates, renders (once when static), and groups
/// identical content, adjacent or not. Refused as a whole when the request itself
/// is bad, has no recipients (`no_recipients`) or more than
/// `limits.max_recipients` (`too_many_recipients`).
pub fn compose(req: &InjectRequest, limits: &ComposeLimits) -> Result<Composed, ComposeError> {
    if req.recipients.is_empty() {
        return Err(ComposeError::new(
            "no_recipients",
            "recipients: at least one is required",
        ));
    }
    if req.recipients.len() > limits.max_recipients {
        return Err(ComposeError::new(
            "too_many_recipients",
            format!(
                "recipients: {} given, at most {} per request (stream larger lists as a campaign)",
                req.recipients.len(),
                limits.max_recipients
            ),
        ));
    }
    let composer = Composer::from_parts(req.parts(), limits)?;
    let mut out = Composed::default();
    let mut seen: HashSet<String> = HashSet::with_capacity(req.recipients.len());
    let mut groups: HashMap<GroupKey, usize> = HashMap::new();
    // Static content shares one Arc: hash its bytes once, not per recipient.
    let mut last_hash: Option<(Arc<[u8]>, u64)> = None;

    for (index, rcpt) in req.recipients.iter().enumerate() {
        let r = match composer.render(index, rcpt) {
            Ok(r) => r,
            Err(rejection) => {
                out.rejected.push(rejection);
                continue;
            }
        };
        if !seen.insert(r.address.clone()) {
            out.rejected.push(Rejection {
                index,
                email: rcpt.email.clone(),
                code: "duplicate_recipient",
                reason: format!("{:?}: already a recipient of this request", rcpt.email),
            });
            continue;
        }
        let hash = match &last_hash {
            Some((body, hash)) if Arc::ptr_eq(body, &r.body) => *hash,
            _ => {
                let hash = hash_bytes(&r.body);
                last_hash = Some((r.body.clone(), hash));
                hash
            }
        };
        let Rendered {
            index,
            address,
            body,
            tags,
        } = r;
        let key = GroupKey { hash, body, tags };
        match groups.entry(key) {
            Entry::Occupied(e) => out.messages[*e.get()].recipients.push((index, address)),
            Entry::Vacant(e) => {
                let key = e.key();
                out.messages.push(ComposedMessage {
                    reverse_path: composer.reverse_path().to_owned(),
                    recipients: vec![(index, address)],
                    body: key.body.clone(),
                    tags: key.tags.clone(),
                });
                e.insert(out.messages.len() - 1);
            }
        }
    }
    Ok(out)
}

fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// Body and tags, compared by content (pointer first).
struct GroupKey {
    /// Hash of the body's bytes.
    hash: u64,
    body: Arc<[u8]>,
    tags: Vec<(String, String)>,
}

impl PartialEq for GroupKey {
    fn eq(&self, other: &GroupKey) -> bool {
        self.hash == other.hash
            && self.tags == other.tags
            && (Arc::ptr_eq(&self.body, &other.body) || self.body == other.body)
    }
}

impl Eq for GroupKey {}

impl Hash for GroupKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.hash.hash(state);
        self.tags.hash(state);
    }
}

/// Streaming grouping for campaigns: consecutive recipients with identical body
/// and tags share a message of up to `max_per_message` recipients. Holds at most
/// one open group.
pub struct Grouper {
    /// The envelope sender of every message.
    reverse_path: String,
    /// Recipients per message, at least 1.
    max_per_message: usize,
    /// The group being filled.
    open: Option<ComposedMessage>,
}

impl Grouper {
    /// A grouper for messages from `reverse_path` (`0` recipients per message is
    /// taken as 1).
    pub fn new(reverse_path: String, max_per_message: usize) -> Grouper {
        Grouper {
            reverse_path,
            max_per_message: max_per_message.max(1),
            open: None,
        }
    }

    /// Adds a recipient; returns a message when one is complete (full, or ended
    /// by a recipient with different content).
    pub fn push(&mut self, r: Rendered) -> Option<ComposedMessage> {
        if let Some(open) = &mut self.open {
            let same =
                open.tags == r.tags && (Arc::ptr_eq(&open.body, &r.body) || open.body == r.body);
            if same {
                open.recipients.push((r.index, r.address));
                if open.recipients.len() >= self.max_per_message {
                    return self.open.take();
                }
                return None;
            }
        }
        let closed = self.open.take();
        let group = ComposedMessage {
            reverse_path: self.reverse_path.clone(),
            recipients: vec![(r.index, r.address)],
            body: r.body,
            tags: r.tags,
        };
        if self.max_per_message == 1 {
            // Groups close as they open, so nothing was open before.
            return Some(group);
        }
        self.open = Some(group);
        closed
    }

    /// The last, partly filled message, if any.
    pub fn finish(&mut self) -> Option<ComposedMessage> {
        self.open.take()
    }
}
