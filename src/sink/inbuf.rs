//! A connection's input buffer: one allocation reused for its life.

/// The connection's input bytes; `data[pos..]` is not consumed yet.
#[derive(Debug)]
pub struct InBuf {
    pub data: Vec<u8>,
    pub pos: usize,
}

impl InBuf {
    pub fn with_capacity(cap: usize) -> InBuf {
        InBuf {
            data: Vec::with_capacity(cap),
            pos: 0,
        }
    }

    /// Drops consumed bytes (only a partial command line is ever left to move) and
    /// makes sure at least `min` bytes of spare capacity are there for a read.
    pub fn prepare(&mut self, min: usize) {
        if self.pos == self.data.len() {
            self.data.clear();
        } else if self.pos > 0 {
            self.data.drain(..self.pos);
        }
        self.pos = 0;
        if self.data.capacity() - self.data.len() < min {
            self.data.reserve(min);
        }
    }

    /// Discards everything (after STARTTLS: bytes pipelined behind it are an
    /// injection attempt, RFC 3207 section 4.2).
    pub fn clear(&mut self) {
        self.data.clear();
        self.pos = 0;
    }
}
