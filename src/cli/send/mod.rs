//! `volley send`: submits a campaign from files to a running server over HTTP.
//!
//! ```text
//! volley send --server http://127.0.0.1:8025 --token TOKEN --from news@example.com \
//!     --recipients list.csv --subject "Hello {{ name }}" --text body.txt [--html body.html]
//! volley send ... --recipients list.ndjson --message template.eml [--campaign spring]
//! ```
//!
//! The list (CSV with an `email` column, or NDJSON `RecipientSpec` lines) is
//! checked whole first, so a bad line is reported (with its number) before
//! anything is sent; then it is streamed to `POST /api/v1/campaigns` as NDJSON
//! while being read, so memory stays bounded whatever its length. Exit codes: 0
//! sent (some recipients may have been refused: see the summary), 1 runtime (server
//! down, 5xx, every recipient refused), 2 usage (flags, files, 4xx such as a bad
//! token).

pub mod api;
pub mod list;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::CliError;
use api::{Api, CampaignResponse};
use list::{ListFormat, ListReader};

/// `volley send` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The Volley server's HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:8025", value_name = "URL")]
    pub server: String,
    /// API token (`volley hash-token`); default: the VOLLEY_TOKEN environment variable.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Envelope sender (MAIL FROM), also the From: of --subject/--text/--html content.
    #[arg(long, value_name = "ADDRESS")]
    pub from: String,
    /// Recipient list: .csv (header row with an `email` column; `name` and other
    /// columns become substitutions) or .ndjson/.jsonl (one RecipientSpec per line).
    #[arg(long, value_name = "FILE")]
    pub recipients: PathBuf,
    /// The list's format when the file name does not tell.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<ListFormat>,
    /// A complete RFC 5322 message (headers, blank line, body), a template.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["subject", "text", "html"])]
    pub message: Option<PathBuf>,
    /// Subject (a template) for a built message.
    #[arg(long, value_name = "TEXT")]
    pub subject: Option<String>,
    /// Plain-text body file (a template) for a built message.
    #[arg(long, value_name = "FILE")]
    pub text: Option<PathBuf>,
    /// HTML body file (a template) for a built message.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Campaign id (default: a new one, printed).
    #[arg(long, value_name = "ID")]
    pub campaign: Option<String>,
    /// Substitutions for every recipient, a JSON object (recipients' own win).
    #[arg(long, value_name = "JSON")]
    pub substitutions: Option<String>,
    /// Print the server's answer as one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// Runs `volley send`.
pub fn run(args: Args) -> Result<(), CliError> {
    let token = match args
        .token
        .clone()
        .or_else(|| std::env::var("VOLLEY_TOKEN").ok())
    {
        Some(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            return Err(CliError::usage(
                "no API token: pass --token or set VOLLEY_TOKEN",
            ))
        }
    };
    let template = template_line(&args)?;
    let format = match args
        .format
        .or_else(|| ListFormat::from_path(&args.recipients))
    {
        Some(f) => f,
        None => {
            return Err(CliError::usage(format!(
                "{}: cannot tell the list's format from its name; use --format csv|ndjson",
                args.recipients.display()
            )))
        }
    };
    let count = check_list(&args.recipients, format)?;
    if count == 0 {
        return Err(CliError::usage(format!(
            "{}: the list has no recipients",
            args.recipients.display()
        )));
    }
    let api = Api::new(&args.server, &token)?;
    let campaign = args.campaign.clone().unwrap_or_else(new_campaign_id);
    let template = with_campaign(template, &campaign);
    let size = std::fs::metadata(&args.recipients)
        .map(|m| m.len())
        .unwrap_or(0);
    let started = Instant::now();
    let (resp, sent) = super::runtime()?.block_on(async {
        api.preflight(&campaign).await?;
        stream_list(&api, template, &args.recipients, format, size, count).await
    })?;
    report(&api, &resp, sent, started.elapsed(), args.json)
}

/// The campaign stream's first line, from the flags and template files.
fn template_line(args: &Args) -> Result<Map<String, Value>, CliError> {
    let read = |p: &Path, what: &str| {
        std::fs::read_to_string(p)
            .map_err(|e| CliError::usage(format!("{what} {}: cannot read: {e}", p.display())))
    };
    let content = if let Some(path) = &args.message {
        let raw = read(path, "--message")?;
        if raw.trim().is_empty() {
            return Err(CliError::usage(format!(
                "--message {}: empty file",
                path.display()
            )));
        }
        Value::String(raw)
    } else {
        if args.subject.is_none() && args.text.is_none() && args.html.is_none() {
            return Err(CliError::usage(
                "no content: pass --message FILE, or --subject with --text FILE and/or --html FILE",
            ));
        }
        if args.text.is_none() && args.html.is_none() {
            return Err(CliError::usage(
                "--subject needs a body: --text FILE and/or --html FILE",
            ));
        }
        let mut b = Map::new();
        b.insert("from".into(), json!({ "email": args.from }));
        if let Some(s) = &args.subject {
            b.insert("subject".into(), Value::String(s.clone()));
        }
        if let Some(p) = &args.text {
            b.insert("text_body".into(), Value::String(read(p, "--text")?));
        }
        if let Some(p) = &args.html {
            b.insert("html_body".into(), Value::String(read(p, "--html")?));
        }
        Value::Object(b)
    };
    let mut t = Map::new();
    t.insert("envelope_sender".into(), Value::String(args.from.clone()));
    t.insert("content".into(), content);
    if let Some(s) = &args.substitutions {
        match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => {
                t.insert("substitutions".into(), Value::Object(m));
            }
            Ok(_) => return Err(CliError::usage("--substitutions: expected a JSON object")),
            Err(e) => return Err(CliError::usage(format!("--substitutions: bad JSON: {e}"))),
        }
    }
    Ok(t)
}

fn with_campaign(mut t: Map<String, Value>, campaign: &str) -> Map<String, Value> {
    t.insert("campaign_id".into(), Value::String(campaign.to_string()));
    t
}

/// A campaign id for a send that did not name one: `send-<unix time>-<random>`.
fn new_campaign_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("send-{secs}-{:04x}", rand::random::<u16>())
}

/// Reads the whole list once, checking every record; returns how many there are.
fn check_list(path: &Path, format: ListFormat) -> Result<u64, CliError> {
    let mut reader = ListReader::open(path, format).map_err(|e| CliError::usage(e.to_string()))?;
    let mut scratch = Vec::new();
    let mut n = 0;
    loop {
        scratch.clear();
        match reader.next_into(&mut scratch) {
            Ok(true) => n += 1,
            Ok(false) => return Ok(n),
            Err(e) => return Err(CliError::usage(e.to_string())),
        }
    }
}

/// Chunks of the request body handed from the reader thread to the HTTP client.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight between them: the memory bound.
const CHUNKS_IN_FLIGHT: usize = 8;

/// Streams the template line and the list to the campaign endpoint while a thread
/// reads the file; returns the answer and the recipients sent.
async fn stream_list(
    api: &Api,
    template: Map<String, Value>,
    path: &Path,
    format: ListFormat,
    size: u64,
    count: u64,
) -> Result<(CampaignResponse, u64), CliError> {
    let bar = indicatif::ProgressBar::new(size.max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_IN_FLIGHT);
    let mut first = Vec::new();
    let _ = serde_json::to_writer(&mut first, &Value::Object(template));
    first.push(b'\n');
    let path = path.to_path_buf();
    let thread_bar = bar.clone();
    let reader = std::thread::spawn(move || -> Result<u64, CliError> {
        let mut list =
            ListReader::open(&path, format).map_err(|e| CliError::usage(e.to_string()))?;
        let mut buf = first;
        let mut sent = 0u64;
        loop {
            let more = match list.next_into(&mut buf) {
                Ok(more) => more,
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return Err(CliError::usage(e.to_string()));
                }
            };
            if more {
                sent += 1;
            }
            if buf.len() >= CHUNK || (!more && !buf.is_empty()) {
                let chunk = Bytes::from(std::mem::replace(
                    &mut buf,
                    Vec::with_capacity(CHUNK + 1024),
                ));
                if tx.blocking_send(Ok(chunk)).is_err() {
                    // The request ended early; its error says why.
                    return Ok(sent);
                }
                thread_bar.set_position(list.bytes_read());
                thread_bar.set_message(format!("{sent}/{count} recipients"));
            }
            if !more {
                return Ok(sent);
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let result = api.post_campaign(reqwest::Body::wrap_stream(stream)).await;
    let read = reader
        .join()
        .unwrap_or_else(|_| Err(CliError::runtime("the list reader failed")));
    bar.finish_and_clear();
    // A list error explains a failed upload better than the HTTP error it caused.
    let sent = read?;
    Ok((result?, sent))
}

/// Prints the summary; every recipient refused is a failure (exit 1).
fn report(
    api: &Api,
    resp: &CampaignResponse,
    sent: u64,
    elapsed: Duration,
    json: bool,
) -> Result<(), CliError> {
    let status_url = api.campaign_url(&resp.campaign_id);
    if json {
        let mut v = serde_json::to_value(resp).unwrap_or_default();
        v["sent"] = sent.into();
        v["status_url"] = status_url.clone().into();
        println!("{v}");
    } else {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "campaign {}: {} recipients sent in {:.1}s: {} accepted ({} messages), {} rejected",
            resp.campaign_id,
            sent,
            elapsed.as_secs_f64(),
            resp.accepted,
            resp.messages,
            resp.rejected
        );
        for r in resp.rejected_samples.iter().take(5) {
            let _ = writeln!(
                out,
                "  rejected: recipient {} <{}>: {}: {}",
                r.line.saturating_sub(1),
                r.email,
                r.code,
                r.reason
            );
        }
        let _ = writeln!(
            out,
            "status: curl -H \"Authorization: Bearer $VOLLEY_TOKEN\" {status_url}"
        );
    }
    if resp.accepted == 0 && resp.rejected > 0 {
        return Err(CliError::runtime(format!(
            "every recipient was rejected (first: {})",
            resp.rejected_samples
                .first()
                .map(|r| format!("{}: {}", r.code, r.reason))
                .unwrap_or_default()
        )));
    }
    Ok(())
}
