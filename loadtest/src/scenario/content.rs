//! The messages a scenario injects: a raw RFC 5322 template of about the
//! requested size once rendered (CRLF line endings, with the `Date:` and
//! `Message-ID:` fields Volley adds), personalised with `{{ name }}` or static.

use super::world::SUFFIX;

/// Bytes Volley adds to a raw message without them: `Date:` and `Message-ID:`.
const ADDED_HEADERS: usize = 110;

/// Filler words: plain text, no template syntax, no dots at line starts.
const WORDS: &[&str] = &[
    "volley",
    "sends",
    "mail",
    "over",
    "pipelined",
    "sessions",
    "to",
    "every",
    "domain",
    "as",
    "fast",
    "as",
    "it",
    "allows",
    "and",
    "no",
    "faster",
    "while",
    "the",
    "spool",
    "keeps",
    "each",
    "message",
    "durable",
    "until",
    "its",
    "recipients",
    "are",
    "done",
];

/// The envelope sender of every scenario message.
pub fn sender() -> String {
    format!("bounces@{SUFFIX}")
}

/// A template of about `size` bytes once rendered. `personalised`: the subject and
/// greeting carry `{{ name }}` (every recipient's message differs); otherwise
/// every recipient gets the same bytes.
pub fn template(size: usize, personalised: bool) -> String {
    let (subject, greeting) = if personalised {
        ("Subject: An offer for {{ name }}", "Dear {{ name }},")
    } else {
        ("Subject: This month's offers", "Dear reader,")
    };
    let mut t = String::with_capacity(size + 256);
    for line in [
        &format!("From: Volley scenarios <news@{SUFFIX}>"),
        "To: undisclosed-recipients:;",
        subject,
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        greeting,
        "",
    ] {
        t.push_str(line);
        t.push('\n');
    }
    // A rendered name ("Recipient 123456") is about as long as `{{ name }}`.
    let lines = t.matches('\n').count();
    let mut rendered = t.len() + lines + ADDED_HEADERS;
    let mut w = 0usize;
    while rendered + 2 < size {
        let mut line = String::with_capacity(80);
        while line.len() < 72 {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(WORDS[w % WORDS.len()]);
            w = w.wrapping_mul(7).wrapping_add(3) % 1_000_003;
        }
        let room = size - rendered - 2;
        line.truncate(room.min(line.len()));
        let line = line.trim_end();
        t.push_str(line);
        t.push('\n');
        rendered += line.len() + 2;
        if line.is_empty() {
            break;
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_about_the_size_asked() {
        for size in [4096usize, 102_400] {
            let t = template(size, true);
            let crlf = t.len() + t.matches('\n').count() + ADDED_HEADERS;
            assert!(crlf.abs_diff(size) < 100, "{size}: {crlf}");
            assert!(t.contains("{{ name }}"));
            assert!(!template(size, false).contains("{{"));
        }
    }
}
