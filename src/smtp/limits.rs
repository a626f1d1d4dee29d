//! Size limits from RFC 5321 section 4.5.3.1, in one place.

/// Longest local part of a mailbox, in octets (RFC 5321 4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;
/// Longest domain, in octets (RFC 5321 4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;
/// Longest reverse- or forward-path including the angle brackets (RFC 5321 4.5.3.1.3).
pub const MAX_PATH: usize = 256;
/// Longest command line including CRLF (RFC 5321 4.5.3.1.4). Extensions may add to
/// it (RFC 1869 allows MAIL/RCPT parameters to lengthen it), see
/// [`MAX_COMMAND_LINE_WITH_PARAMS`].
pub const MAX_COMMAND_LINE: usize = 512;
/// What servers accept for MAIL/RCPT lines carrying ESMTP parameters and for AUTH
/// lines with an initial response: long enough for SIZE, BODY, SMTPUTF8, RET, ENVID,
/// NOTIFY and ORCPT together (RFC 4954 allows AUTH lines of 12,288 octets).
pub const MAX_COMMAND_LINE_WITH_PARAMS: usize = 12_288;
/// Longest reply line including CRLF (RFC 5321 4.5.3.1.5).
pub const MAX_REPLY_LINE: usize = 512;
/// Longest text line of message data including CRLF (RFC 5321 4.5.3.1.6).
pub const MAX_TEXT_LINE: usize = 1000;
/// Most lines we accept in one multi-line reply before calling it hostile.
pub const MAX_REPLY_LINES: usize = 256;
