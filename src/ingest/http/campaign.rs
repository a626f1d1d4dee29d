//! `POST /api/v1/campaigns`: a campaign streamed as NDJSON. Line 1 is the
//! [`MessageTemplate`]; every further line is one [`RecipientSpec`].
//!
//! Memory stays bounded however long the list: the body is read chunk by chunk
//! and split into lines here (a line is capped at [`MAX_LINE`]), each recipient
//! is rendered and handed to the [`Grouper`] (static content: up to
//! `http.campaign_message_recipients` recipients share one stored message), and
//! at most [`IN_FLIGHT`] messages are being stored at once. While all of them are
//! busy the body is not read, so TCP flow control slows the client down.
//!
//! A bad recipient line (bad JSON, bad address, over-long) is refused with its line
//! number and the stream goes on; a bad first line fails the request. A message the
//! spool keeps refusing (busy) is retried with backoff for a while, then its
//! recipients are refused with `try_again`: a recipient is reported accepted only
//! once it is durably stored. Progress is visible meanwhile at
//! `GET /api/v1/campaigns/{id}` (see [`super::progress`]). Storing tasks run
//! detached, so a client that goes away mid-stream leaves the spool consistent
//! (what was stored stays stored and counted; the campaign's `ingest.done` turns
//! true once the last of them finished).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};

use super::auth::{generate_campaign_name, Caller};
use super::body::has_media_type;
use super::error::{decorate, ApiError};
use super::lines::{Line, Splitter};
use super::progress::{Progress, StreamGuard};
use super::store::{store, Owner, Retry, Stored, TRY_AGAIN};
use super::ApiState;
use crate::delivery::EngineHandle;
use crate::ingest::compose::{
    ComposeError, ComposedMessage, Composer, Grouper, MessageTemplate, RecipientSpec, Rejection,
};

/// Longest line accepted (1 MiB); longer recipient lines are refused with
/// `line_too_long`.
pub const MAX_LINE: usize = 1 << 20;
/// Messages being stored at once per stream.
pub const IN_FLIGHT: usize = 64;
/// Refused recipients listed in the answer (the counts cover all of them).
pub const MAX_SAMPLES: usize = 100;
/// Media types accepted for the stream.
pub const NDJSON: &[&str] = &[
    "application/x-ndjson",
    "application/jsonl",
    "application/json-lines",
];

/// One refused recipient line, as listed in `rejected_samples`.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// 1-based line number in the body (line 1 is the template).
    pub line: usize,
    /// The address, when the line had one.
    pub email: String,
    /// Stable code: `bad_json`, `line_too_long`, `invalid_recipient`, `try_again`...
    pub code: &'static str,
    /// Why.
    pub reason: String,
}

/// The answer at the end of the stream.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignResponse {
    /// On 422/503 only: the error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// On 422/503 only: what went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The campaign, as the caller names it (generated when the template had none).
    pub campaign_id: String,
    /// Recipients durably stored.
    pub accepted: u64,
    /// Recipients refused.
    pub rejected: u64,
    /// Messages stored.
    pub messages: u64,
    /// The first [`MAX_SAMPLES`] refused recipients seen, in line order.
    pub rejected_samples: Vec<Sample>,
}

/// What a storing task reports back.
struct Outcome {
    /// The message's recipients (line, address).
    recipients: Vec<(usize, String)>,
    /// Stored or refused.
    stored: Stored,
}

/// The running tally of one stream.
struct Tally {
    /// This stream's counters, shared with the progress table and the storing
    /// tasks: the stream shows as done once the last of them lets go.
    guard: Arc<StreamGuard>,
    accepted: u64,
    rejected: u64,
    messages: u64,
    samples: Vec<Sample>,
    /// Whether some recipient was refused because the spool stayed busy.
    busy: bool,
}

impl Tally {
    fn progress(&self) -> &Progress {
        &self.guard.progress
    }

    /// A refused recipient line (counted in the progress table here; storing
    /// tasks count their own).
    fn refuse(&mut self, line: usize, email: String, code: &'static str, reason: String) {
        self.rejected += 1;
        Progress::add(&self.progress().rejected, 1);
        self.sample(line, email, code, reason);
    }

    fn sample(&mut self, line: usize, email: String, code: &'static str, reason: String) {
        if code == TRY_AGAIN {
            self.busy = true;
        }
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(Sample {
                line,
                email,
                code,
                reason,
            });
        }
    }

    /// A storing task's result (its counters are already in the progress table).
    fn settle(&mut self, outcome: Outcome) {
        match outcome.stored {
            Stored::Ok(_) => {
                self.accepted += outcome.recipients.len() as u64;
                self.messages += 1;
            }
            Stored::Refused { code, reason } => {
                self.rejected += outcome.recipients.len() as u64;
                for (line, email) in outcome.recipients {
                    self.sample(line, email, code, reason.clone());
                }
            }
        }
    }
}

/// Hands composed messages to detached storing tasks, at most [`IN_FLIGHT`] at once.
struct Storer {
    engine: EngineHandle,
    retry: Retry,
    owner: Arc<Owner>,
    /// The stream's counters; each storing task holds a clone.
    progress: Arc<StreamGuard>,
    slots: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<Outcome>,
    rx: mpsc::UnboundedReceiver<Outcome>,
}

impl Storer {
    /// Starts storing `msg`, first waiting for a free slot; settles whatever
    /// finished meanwhile.
    async fn submit(&mut self, msg: ComposedMessage, tally: &mut Tally) {
        let permit = loop {
            tokio::select! {
                permit = self.slots.clone().acquire_owned() => match permit {
                    Ok(p) => break p,
                    // The semaphore is never closed; nothing to wait for.
                    Err(_) => return,
                },
                Some(done) = self.rx.recv() => tally.settle(done),
            }
        };
        let retry = self.retry;
        let (engine, owner, progress, tx) = (
            self.engine.clone(),
            self.owner.clone(),
            self.progress.clone(),
            self.tx.clone(),
        );
        tokio::spawn(async move {
            let stored = store(&engine, &msg, &owner, retry).await;
            let n = msg.recipients.len() as u64;
            match &stored {
                Stored::Ok(_) => {
                    Progress::add(&progress.progress.accepted, n);
                    Progress::add(&progress.progress.messages, 1);
                }
                Stored::Refused { .. } => Progress::add(&progress.progress.rejected, n),
            }
            drop(permit);
            let _ = tx.send(Outcome {
                recipients: msg.recipients,
                stored,
            });
        });
        while let Ok(done) = self.rx.try_recv() {
            tally.settle(done);
        }
    }

    /// Waits for every storing task.
    async fn finish(mut self, tally: &mut Tally) {
        drop(self.tx);
        while let Some(done) = self.rx.recv().await {
            tally.settle(done);
        }
    }
}

/// The stream, between the template and the end of the body.
struct Campaign {
    composer: Composer,
    grouper: Grouper,
    storer: Storer,
    tally: Tally,
    /// The 1-based number of the last line read.
    line_no: usize,
    /// The stored campaign id.
    stored: String,
}

impl Campaign {
    /// One recipient line.
    async fn recipient(&mut self, line: Line) {
        self.line_no += 1;
        Progress::add(&self.tally.progress().lines, 1);
        let n = self.line_no;
        let text = match line {
            Line::TooLong => {
                let reason = format!("line longer than {MAX_LINE} bytes");
                return self.tally.refuse(n, String::new(), "line_too_long", reason);
            }
            Line::Text(t) => t,
        };
        if text.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let spec: RecipientSpec = match serde_json::from_slice(&text) {
            Ok(s) => s,
            Err(e) => {
                let email = email_of(&text);
                return self.tally.refuse(n, email, "bad_json", e.to_string());
            }
        };
        match self.composer.render(n, &spec) {
            Ok(rendered) => {
                if let Some(msg) = self.grouper.push(rendered) {
                    self.storer.submit(msg, &mut self.tally).await;
                }
            }
            Err(Rejection {
                index,
                email,
                code,
                reason,
            }) => self.tally.refuse(index, email, code, reason),
        }
    }
}

/// The handler.
pub async fn stream_campaign(
    State(state): State<ApiState>,
    caller: Arc<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if !has_media_type(&headers, NDJSON) {
        return Err(ApiError::media_type("application/x-ndjson"));
    }
    let mut data = body.into_data_stream();
    let mut splitter = Splitter::new(MAX_LINE);
    let mut lines: Vec<Line> = Vec::new();
    let mut campaign: Option<Campaign> = None;
    let mut body_error: Option<String> = None;
    let mut ended = false;
    // Blank lines before the template are skipped (and counted).
    let mut blank_lead = 0usize;
    loop {
        if !ended {
            match data.next().await {
                Some(Ok(chunk)) => splitter.feed(&chunk, |l| lines.push(l)),
                Some(Err(e)) => {
                    body_error = Some(e.to_string());
                    ended = true;
                }
                None => {
                    splitter.finish(|l| lines.push(l));
                    ended = true;
                }
            }
        }
        for line in lines.drain(..) {
            match &mut campaign {
                Some(c) => c.recipient(line).await,
                None if is_blank(&line) => blank_lead += 1,
                None => campaign = Some(start(&state, &caller, line, blank_lead + 1)?),
            }
        }
        if ended {
            break;
        }
    }
    let Some(mut c) = campaign else {
        if let Some(e) = body_error {
            return Err(ApiError::bad_request("bad_body", e));
        }
        return Err(ApiError::bad_request(
            "missing_template",
            "no template: the first non-blank line must be the message template",
        ));
    };
    if let Some(last) = c.grouper.finish() {
        c.storer.submit(last, &mut c.tally).await;
    }
    let Campaign {
        storer,
        mut tally,
        stored,
        line_no,
        ..
    } = c;
    storer.finish(&mut tally).await;
    let campaign_id = caller.display_campaign(&stored);
    if let Some(e) = body_error {
        // Whatever was stored stays stored (and shows in the campaign's status).
        return Err(ApiError::bad_request(
            "bad_body",
            format!(
                "reading the body failed after line {line_no}: {e}; {} recipients of \
                 {campaign_id} were stored",
                tally.accepted
            ),
        ));
    }
    let (status, code, message) = if tally.accepted == 0 && tally.rejected > 0 {
        if tally.busy {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("spool_busy"),
                Some("the spool stayed busy: nothing was accepted; try again later".to_string()),
            )
        } else {
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("rejected"),
                Some("every recipient was refused; see rejected_samples".to_string()),
            )
        }
    } else {
        (StatusCode::ACCEPTED, None, None)
    };
    let response = CampaignResponse {
        code,
        message,
        campaign_id,
        accepted: tally.accepted,
        rejected: tally.rejected,
        messages: tally.messages,
        rejected_samples: {
            // Storing tasks finish in any order; list by line.
            let mut samples = std::mem::take(&mut tally.samples);
            samples.sort_by_key(|s| s.line);
            samples
        },
    };
    let mut answer = (status, Json(response)).into_response();
    decorate(status, answer.headers_mut());
    Ok(answer)
}

/// Whether a line holds nothing but white space.
fn is_blank(line: &Line) -> bool {
    matches!(line, Line::Text(t) if t.iter().all(u8::is_ascii_whitespace))
}

/// The first line that is not blank (`line_no`, normally 1): the template. Any
/// failure here fails the request.
fn start(
    state: &ApiState,
    caller: &Caller,
    line: Line,
    line_no: usize,
) -> Result<Campaign, ApiError> {
    let inner = &state.inner;
    let text = match line {
        Line::TooLong => {
            return Err(ApiError::bad_request(
                "line_too_long",
                format!("line {line_no} (the template) is longer than {MAX_LINE} bytes"),
            ))
        }
        Line::Text(t) => t,
    };
    let template: MessageTemplate = serde_json::from_slice(&text).map_err(|e| {
        ApiError::bad_request("bad_json", format!("line {line_no} (the template): {e}"))
    })?;
    let name = template
        .campaign_id
        .clone()
        .unwrap_or_else(generate_campaign_name);
    let stored = caller.campaign_for_inject(&name)?;
    let composer =
        Composer::new(&template, &inner.limits).map_err(|e| compose_error(e, line_no))?;
    let grouper = Grouper::new(
        composer.reverse_path().to_string(),
        inner.campaign_message_recipients,
    );
    let guard = Arc::new(inner.progress.begin(&stored.0));
    let stored_id = stored.0.clone();
    Progress::add(&guard.progress.lines, line_no as u64);
    let (tx, rx) = mpsc::unbounded_channel();
    let storer = Storer {
        engine: inner.engine.clone(),
        retry: inner.stream_retry,
        owner: Arc::new(Owner {
            tenant: caller.tenant_id(),
            campaign: Some(stored),
        }),
        progress: guard.clone(),
        slots: Arc::new(Semaphore::new(IN_FLIGHT)),
        tx,
        rx,
    };
    Ok(Campaign {
        composer,
        grouper,
        storer,
        tally: Tally {
            guard,
            accepted: 0,
            rejected: 0,
            messages: 0,
            samples: Vec::new(),
            busy: false,
        },
        line_no,
        stored: stored_id,
    })
}

fn compose_error(e: ComposeError, line_no: usize) -> ApiError {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    ApiError::new(
        status,
        e.code,
        format!("line {line_no} (the template): {}", e.message),
    )
}

/// The `email` of a line that is JSON but not a valid recipient, for the sample.
fn email_of(text: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("email").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_default()
}
