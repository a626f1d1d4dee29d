//! A scripted SMTP server for tests: accepts everything, but answers every Nth
//! message of a connection with `421` and closes, so reconnection and the counting
//! of lost transactions can be checked exactly.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use volley::smtp::command::{next_line, Command, Line};

/// Starts the server on an ephemeral port; it runs until the runtime stops.
pub async fn start(close_every: u64, chunking: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve(sock, close_every, chunking));
        }
    });
    addr
}

/// Where the connection's input is.
enum State {
    Commands,
    /// BDAT bytes still to skip.
    Chunk(usize),
    /// DATA content until `CRLF.CRLF`.
    Data,
}

async fn serve(mut sock: TcpStream, close_every: u64, chunking: bool) {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut state = State::Commands;
    let mut messages = 0u64;
    if sock.write_all(b"220 fake ESMTP\r\n").await.is_err() {
        return;
    }
    let mut tmp = vec![0u8; 64 * 1024];
    loop {
        let n = match sock.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&tmp[..n]);
        let mut at = 0;
        let mut close = false;
        loop {
            let mut end_of_message = false;
            match state {
                State::Chunk(left) => {
                    let take = left.min(buf.len() - at);
                    at += take;
                    if take < left {
                        state = State::Chunk(left - take);
                        break;
                    }
                    state = State::Commands;
                    end_of_message = true;
                }
                State::Data => match buf[at..].windows(5).position(|w| w == b"\r\n.\r\n") {
                    Some(p) => {
                        at += p + 5;
                        state = State::Commands;
                        end_of_message = true;
                    }
                    None => break, // rescans from `at` next time: fine for a test
                },
                State::Commands => {
                    let Line::Complete(len) = next_line(&buf[at..], 4096) else {
                        break;
                    };
                    let line = &buf[at..at + len];
                    at += len;
                    match Command::parse(line) {
                        Ok(Command::Ehlo(_)) if chunking => {
                            out.extend_from_slice(b"250-fake\r\n250-PIPELINING\r\n250 CHUNKING\r\n")
                        }
                        Ok(Command::Ehlo(_)) => {
                            out.extend_from_slice(b"250-fake\r\n250 PIPELINING\r\n")
                        }
                        Ok(Command::Bdat { size, .. }) => state = State::Chunk(size as usize),
                        Ok(Command::Data) => {
                            out.extend_from_slice(b"354 go ahead\r\n");
                            state = State::Data;
                        }
                        Ok(Command::Quit) => {
                            out.extend_from_slice(b"221 bye\r\n");
                            close = true;
                        }
                        Ok(_) => out.extend_from_slice(b"250 ok\r\n"),
                        Err(_) => out.extend_from_slice(b"500 what\r\n"),
                    }
                }
            }
            if end_of_message {
                messages += 1;
                if messages % close_every == 0 {
                    out.extend_from_slice(b"421 4.3.2 closing for the test\r\n");
                    close = true;
                } else {
                    out.extend_from_slice(b"250 2.0.0 queued\r\n");
                }
            }
            if close {
                break;
            }
        }
        buf.drain(..at);
        if sock.write_all(&out).await.is_err() || close {
            return;
        }
        out.clear();
    }
}
