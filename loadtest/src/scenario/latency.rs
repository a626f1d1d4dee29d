//! Inject-to-delivery latency from Volley's delivery log: each `delivered`
//! event's `queue_time_ms` (from the message's acceptance to the receiver's 250).

use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;

use super::inject::histogram;

/// The log's `delivered` events.
pub struct LogLatencies {
    /// How many.
    pub delivered: u64,
    /// Other events (deferred, bounced, ...).
    pub other: u64,
    /// Their `queue_time_ms`, in microseconds.
    pub queue_us: Histogram<u64>,
}

/// Reads the delivery log (one JSON object per line; only two fields are needed,
/// so they are found by key rather than parsing a million objects).
pub fn read_log(path: &Path) -> anyhow::Result<LogLatencies> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = LogLatencies {
        delivered: 0,
        other: 0,
        queue_us: histogram(),
    };
    let mut line = Vec::with_capacity(1024);
    let mut reader = BufReader::with_capacity(1 << 20, file);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if memchr::memmem::find(&line, b"\"event\":\"delivered\"").is_none() {
            if !line.iter().all(u8::is_ascii_whitespace) {
                out.other += 1;
            }
            continue;
        }
        out.delivered += 1;
        if let Some(ms) = number_after(&line, b"\"queue_time_ms\":") {
            let _ = out.queue_us.record((ms * 1000).max(1));
        }
    }
    Ok(out)
}

/// The unsigned integer right after `key` in `line`.
fn number_after(line: &[u8], key: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(line, key)? + key.len();
    let digits = line[at..].iter().take_while(|c| c.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_queue_times_of_delivered_events() {
        let dir = std::env::temp_dir().join(format!("volley-latency-test-{}", std::process::id()));
        std::fs::write(
            &dir,
            "{\"ts\":\"x\",\"event\":\"delivered\",\"queue_time_ms\":12,\"delivery_time_ms\":3}\n\
             {\"ts\":\"x\",\"event\":\"deferred\",\"queue_time_ms\":5}\n\
             {\"ts\":\"x\",\"event\":\"delivered\",\"queue_time_ms\":40,\"delivery_time_ms\":null}\n",
        )
        .unwrap();
        let l = read_log(&dir).unwrap();
        let _ = std::fs::remove_file(&dir);
        assert_eq!((l.delivered, l.other), (2, 1));
        assert_eq!(l.queue_us.max(), l.queue_us.highest_equivalent(40_000));
    }
}
