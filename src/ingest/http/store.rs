//! Storing composed messages: each becomes an
//! [`Injection`](crate::delivery::Injection) owned by the caller's tenant and
//! campaign, and is injected (durable before this returns). A transient spool
//! failure (backpressure, a failed write) is retried with backoff for a while;
//! after that, its recipients are refused with `try_again`, never reported
//! accepted.

use std::time::Duration;

use crate::delivery::{EngineHandle, Injection};
use crate::ingest::compose::ComposedMessage;
use crate::model::{CampaignId, MessageId, TenantId};
use crate::spool::SpoolError;

/// The code of recipients refused because the spool stayed busy.
pub const TRY_AGAIN: &str = "try_again";

/// Who new messages belong to.
#[derive(Debug, Clone)]
pub struct Owner {
    /// The caller's tenant.
    pub tenant: TenantId,
    /// The stored campaign id, if any.
    pub campaign: Option<CampaignId>,
}

/// How long to keep retrying a transient spool failure.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// First pause.
    pub first: Duration,
    /// Longest pause (the pause doubles up to it).
    pub max: Duration,
    /// Give up once this much time has passed since the first attempt.
    pub budget: Duration,
}

impl Retry {
    /// For a single request: the client is waiting and can retry itself.
    pub const REQUEST: Retry = Retry {
        first: Duration::from_millis(10),
        max: Duration::from_millis(500),
        budget: Duration::from_secs(3),
    };

    /// For a campaign stream: the client is streaming and cannot easily resend a
    /// few lines from the middle, so wait longer.
    pub const STREAM: Retry = Retry {
        first: Duration::from_millis(20),
        max: Duration::from_secs(2),
        budget: Duration::from_secs(60),
    };
}

/// What became of one message.
#[derive(Debug)]
pub enum Stored {
    /// Durable and queued.
    Ok(MessageId),
    /// Not stored; its recipients are refused with this code and reason.
    Refused {
        /// `try_again` (transient) or `invalid` (the spool refused the envelope).
        code: &'static str,
        /// The spool's error text.
        reason: String,
    },
}

/// Stores `msg`, retrying transient failures within `retry`.
pub async fn store(
    engine: &EngineHandle,
    msg: &ComposedMessage,
    owner: &Owner,
    retry: Retry,
) -> Stored {
    let injection = Injection {
        reverse_path: msg.reverse_path.clone(),
        recipients: msg.recipients.iter().map(|(_, a)| a.clone()).collect(),
        body: msg.body.clone(),
        campaign: owner.campaign.clone(),
        tenant: Some(owner.tenant.clone()),
        tags: msg.tags.clone(),
    };
    let started = tokio::time::Instant::now();
    let mut pause = retry.first;
    loop {
        // A fresh id per attempt: a failed write may have left part of the
        // previous one behind, and ids must be new.
        let (id, created, expires) = engine.new_message_id();
        let result = match injection.clone().into_message(id, created, expires) {
            Ok(m) => engine.inject_message(m).await,
            Err(e) => Err(e),
        };
        let e = match result {
            Ok(id) => return Stored::Ok(id),
            Err(e) => e,
        };
        let gave_up = matches!(e, SpoolError::Closed) || started.elapsed() + pause > retry.budget;
        if !e.is_transient() {
            return Stored::Refused {
                code: "invalid",
                reason: e.to_string(),
            };
        }
        if gave_up {
            return Stored::Refused {
                code: TRY_AGAIN,
                reason: e.to_string(),
            };
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(retry.max);
    }
}
