//! Forwarding Postgres's output (stdout and stderr, one pipe) to our stderr, one log message a
//! line, and keeping the last messages for error reports.
//!
//! As upstream: each message is logged as `PG:<message>`; the lines of a multi-line message are
//! joined with U+200B (zero-width space). A message ends when the next line starts with a
//! `YYYY-MM-DD HH:MM:SS` timestamp, at end of file, or after 100 ms without a new line.
//!
//! Every message is redacted ([`crate::redact`]) before it is logged or kept: password literals,
//! SCRAM verifiers and md5 hashes never leave the supervisor.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Silence after which a pending message is complete.
const MESSAGE_SILENCE: Duration = Duration::from_millis(100);
/// How many messages [`LogTail`] keeps.
const TAIL_MESSAGES: usize = 40;
/// What joins the lines of one message.
pub const LINE_JOINER: char = '\u{200B}';

/// The last messages Postgres wrote, shared with the forwarding threads.
#[derive(Clone, Debug, Default)]
pub struct LogTail {
    shared: Arc<(Mutex<TailState>, Condvar)>,
}

#[derive(Debug, Default)]
struct TailState {
    messages: VecDeque<String>,
    eof: bool,
}

impl LogTail {
    /// Starts forwarding `stream` (Postgres's output) on two threads.
    pub fn forward(stream: impl Read + Send + 'static) -> LogTail {
        let tail = LogTail::default();
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let reader = std::thread::Builder::new()
            .name("pg-stderr".into())
            .spawn(move || {
                let mut stream = BufReader::new(stream);
                let mut buffer = Vec::new();
                loop {
                    buffer.clear();
                    match stream.read_until(b'\n', &mut buffer) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            let line = String::from_utf8_lossy(&buffer);
                            let line = line.trim_end_matches(['\n', '\r']).to_string();
                            if lines_tx.send(line).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        let joiner_tail = tail.clone();
        let joiner = std::thread::Builder::new()
            .name("pg-log".into())
            .spawn(move || joiner_tail.join_lines(&lines_rx));
        if reader.is_err() || joiner.is_err() {
            tracing::error!("cannot start the threads forwarding Postgres's log; it is lost");
            tail.mark_eof();
        }
        tail
    }

    fn join_lines(&self, lines: &mpsc::Receiver<String>) {
        let mut joiner = MessageJoiner::default();
        loop {
            match lines.recv_timeout(MESSAGE_SILENCE) {
                Ok(line) => {
                    if let Some(message) = joiner.push(line) {
                        self.publish(message);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(message) = joiner.finish() {
                        self.publish(message);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    if let Some(message) = joiner.finish() {
                        self.publish(message);
                    }
                    self.mark_eof();
                    return;
                }
            }
        }
    }

    fn publish(&self, message: String) {
        let message = crate::redact::redact(&message);
        tracing::info!("PG:{message}");
        let (state, _) = &*self.shared;
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        if state.messages.len() == TAIL_MESSAGES {
            state.messages.pop_front();
        }
        state.messages.push_back(message);
    }

    fn mark_eof(&self) {
        let (state, eof) = &*self.shared;
        state.lock().unwrap_or_else(|e| e.into_inner()).eof = true;
        eof.notify_all();
    }

    /// Waits up to `timeout` until Postgres's output is closed and every message forwarded.
    pub fn wait_eof(&self, timeout: Duration) {
        let deadline = stage_kit::deadline::after(timeout);
        let (state, eof) = &*self.shared;
        let mut guard = state.lock().unwrap_or_else(|e| e.into_inner());
        while !guard.eof {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            guard = match eof.wait_timeout(guard, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// The last `n` messages, oldest first, with their lines separated by `\n`.
    pub fn last(&self, n: usize) -> Vec<String> {
        let (state, _) = &*self.shared;
        let state = state.lock().unwrap_or_else(|e| e.into_inner());
        let skip = state.messages.len().saturating_sub(n);
        state
            .messages
            .iter()
            .skip(skip)
            .map(|message| message.replace(LINE_JOINER, "\n"))
            .collect()
    }
}

/// Groups lines into messages (pure; the timing lives in the caller).
#[derive(Debug, Default)]
pub struct MessageJoiner {
    pending: Option<String>,
}

impl MessageJoiner {
    /// Adds a line; returns the previous message when this line starts a new one.
    pub fn push(&mut self, line: String) -> Option<String> {
        match &mut self.pending {
            Some(pending) if !starts_with_timestamp(&line) => {
                pending.push(LINE_JOINER);
                pending.push_str(&line);
                None
            }
            _ => self.pending.replace(line),
        }
    }

    /// Ends the pending message (silence or end of file).
    pub fn finish(&mut self) -> Option<String> {
        self.pending.take()
    }
}

/// Whether `line` starts with `YYYY-MM-DD HH:MM:SS`.
pub fn starts_with_timestamp(line: &str) -> bool {
    const PATTERN: &[u8] = b"dddd-dd-dd dd:dd:dd";
    let bytes = line.as_bytes();
    bytes.len() >= PATTERN.len()
        && PATTERN.iter().zip(bytes).all(|(want, got)| match want {
            b'd' => got.is_ascii_digit(),
            other => other == got,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_start_messages() {
        assert!(starts_with_timestamp(
            "2026-11-24 22:00:00.123 UTC [1] LOG:  ready"
        ));
        assert!(!starts_with_timestamp("\tSTATEMENT:  select 1"));
        assert!(!starts_with_timestamp("2026-11-24"));
        assert!(!starts_with_timestamp("2026-11-24T22:00:00"));
    }

    #[test]
    fn continuation_lines_are_joined() {
        let mut joiner = MessageJoiner::default();
        assert_eq!(joiner.push("2026-11-24 22:00:00 UTC a".into()), None);
        assert_eq!(joiner.push("\tdetail".into()), None);
        assert_eq!(
            joiner.push("2026-11-24 22:00:01 UTC b".into()),
            Some("2026-11-24 22:00:00 UTC a\u{200B}\tdetail".into())
        );
        assert_eq!(joiner.finish(), Some("2026-11-24 22:00:01 UTC b".into()));
        assert_eq!(joiner.finish(), None);
        // Without a pending message, any line starts one.
        assert_eq!(joiner.push("postgres: no timestamp".into()), None);
        assert_eq!(joiner.finish(), Some("postgres: no timestamp".into()));
    }

    #[test]
    fn forwarded_and_kept_messages_are_redacted() {
        let text = "2026-11-24 22:00:00 UTC ERROR:  role \"a\" already exists\n\
                    2026-11-24 22:00:00 UTC STATEMENT:  CREATE ROLE a\n\
                    \tPASSWORD 'md5d8578edf8458ce06fbc5bb76a58c5ca4';\n";
        let tail = LogTail::forward(std::io::Cursor::new(text.as_bytes().to_vec()));
        tail.wait_eof(Duration::from_secs(5));
        let kept = tail.last(1).join("\n");
        assert!(!kept.contains("d8578edf"), "{kept}");
        assert!(
            kept.ends_with("STATEMENT:  CREATE ROLE a\n\tPASSWORD '********';"),
            "{kept}"
        );
    }

    #[test]
    fn the_tail_keeps_the_last_messages() {
        let text = (0..50)
            .map(|i| format!("2026-11-24 22:00:00 UTC line {i}\n"))
            .collect::<String>();
        let tail = LogTail::forward(std::io::Cursor::new(text.into_bytes()));
        tail.wait_eof(Duration::from_secs(5));
        let last = tail.last(2);
        assert_eq!(
            last,
            vec![
                "2026-11-24 22:00:00 UTC line 48".to_string(),
                "2026-11-24 22:00:00 UTC line 49".to_string()
            ]
        );
    }
}
