//! The message model (filled in with the spool and scheduler work).
