//! Forwarding Postgres's output (stdout and stderr, one pipe) to our stderr, one log message a
//! line, and keeping the last messages for error reports.
//!
//! As upstream: each message is logged as `PG:<message>`; the lines of a multi-line message are
//! joined with U+200B (zero-width space). A message ends when the next line starts with a
//! `YYYY-MM-DD HH:MM:SS` timestamp, at end of file, or after 100 ms without a new line.
//!
//! Every message is redacted ([`crate::redact`]) before it is logged or kept: password literals,
//! SCRAM verifiers and md5 hashes never leave the supervisor.
//!
//! **Bounded.** A line is read up to [`LINE_MAX`] bytes: the rest of a longer one is skipped
//! unread into memory and the line ends with [`LINE_CUT`] (an md5 hash cut short at the end is
//! masked first: [`crate::redact::mask_cut_tail`]). At most [`LINES_IN_FLIGHT`] lines wait
//! between the reading thread and the joining one; when they are full the reader stops reading,
//! so Postgres's writes to the pipe block (back-pressure, as on a slow terminal; nothing is
//! dropped). A message grows to [`MESSAGE_MAX`] bytes at most (a `log_line_prefix` without a
//! timestamp makes every line a continuation): then it is forwarded with [`MESSAGE_CUT`] and the
//! next line starts a new message — unless the cut falls inside a password value
//! ([`crate::redact::ends_open`]: the next line may be the secret, which a message of its own
//! would not redact); then the continuation lines are dropped up to the next message, and their
//! count is logged. Messages kept for error reports are cut to [`TAIL_MESSAGE_MAX`].

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Silence after which a pending message is complete.
const MESSAGE_SILENCE: Duration = Duration::from_millis(100);
/// How many messages [`LogTail`] keeps.
const TAIL_MESSAGES: usize = 40;
/// What joins the lines of one message.
pub const LINE_JOINER: char = '\u{200B}';
/// The longest line forwarded, in bytes (before [`LINE_CUT`]).
pub const LINE_MAX: usize = 64 << 10;
/// What ends a line cut at [`LINE_MAX`].
pub const LINE_CUT: &str = " [line cut: longer than 64 KiB]";
/// The longest message, in bytes (a message reaching it is forwarded and a new one starts).
pub const MESSAGE_MAX: usize = 1 << 20;
/// What ends a message cut at [`MESSAGE_MAX`].
pub const MESSAGE_CUT: &str = " [message cut: longer than 1 MiB]";
/// Lines read but not yet joined; the reader waits (and Postgres with it) when they are full.
pub const LINES_IN_FLIGHT: usize = 128;
/// The longest message kept for error reports, in bytes.
pub const TAIL_MESSAGE_MAX: usize = 16 << 10;

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
        let (lines_tx, lines_rx) = mpsc::sync_channel::<String>(LINES_IN_FLIGHT);
        let reader = std::thread::Builder::new()
            .name("pg-stderr".into())
            .spawn(move || read_lines(stream, &lines_tx));
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
            let received = lines.recv_timeout(MESSAGE_SILENCE);
            let disconnected = matches!(received, Err(RecvTimeoutError::Disconnected));
            let message = match received {
                Ok(line) => joiner.push(line),
                Err(_) => joiner.finish(),
            };
            if let Some(message) = message {
                self.publish(message);
            }
            if let Some(dropped) = joiner.take_dropped() {
                tracing::warn!(
                    dropped,
                    "a Postgres log message longer than 1 MiB was cut inside a password value: \
                     its next lines were dropped, not forwarded"
                );
            }
            if disconnected {
                self.mark_eof();
                return;
            }
        }
    }

    fn publish(&self, message: String) {
        let mut message = crate::redact::redact(&message);
        tracing::info!("PG:{message}");
        if message.len() > TAIL_MESSAGE_MAX {
            let mut end = TAIL_MESSAGE_MAX;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        // What is kept is its own size, not the capacity of the message it was cut from.
        message.shrink_to_fit();
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

/// Reads `stream` line by line (each cut at [`LINE_MAX`]) into `lines`, until end of file, a
/// read error, or the joiner is gone.
fn read_lines(stream: impl Read, lines: &mpsc::SyncSender<String>) {
    let mut stream = BufReader::new(stream);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        let cut = match read_line_capped(&mut stream, &mut buffer, LINE_MAX) {
            Ok(Some(cut)) => cut,
            Ok(None) | Err(_) => return,
        };
        if cut {
            crate::redact::mask_cut_tail(&mut buffer);
        }
        let line = String::from_utf8_lossy(&buffer);
        let mut line = line.trim_end_matches(['\n', '\r']).to_string();
        if cut {
            line.push_str(LINE_CUT);
        }
        // Blocks while LINES_IN_FLIGHT lines wait: back-pressure onto Postgres's pipe.
        if lines.send(line).is_err() {
            return;
        }
    }
}

/// Reads one line (without its `\n`) into `line`, keeping at most `max` bytes of it and
/// skipping the rest; `Some(true)` when it was cut, None at end of file.
pub fn read_line_capped(
    stream: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<bool>> {
    let mut cut = false;
    let mut read_any = false;
    loop {
        let available = match stream.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            return Ok(read_any.then_some(cut));
        }
        read_any = true;
        let newline = available.iter().position(|&byte| byte == b'\n');
        let chunk = &available[..newline.unwrap_or(available.len())];
        let room = max.saturating_sub(line.len());
        if chunk.len() > room {
            cut = true;
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = newline.map_or(available.len(), |at| at + 1);
        stream.consume(used);
        if newline.is_some() {
            return Ok(Some(cut));
        }
    }
}

/// Groups lines into messages of at most [`MESSAGE_MAX`] bytes (pure; the timing lives in the
/// caller; see the module doc for the cut).
#[derive(Debug, Default)]
pub struct MessageJoiner {
    pending: Option<String>,
    /// Continuation lines are being dropped: a message was cut inside a password value.
    dropping: bool,
    /// How many were, since the last [`MessageJoiner::take_dropped`].
    dropped: u64,
}

impl MessageJoiner {
    /// Adds a line; returns the previous message when this line starts a new one (or the
    /// message would grow past [`MESSAGE_MAX`]).
    pub fn push(&mut self, line: String) -> Option<String> {
        if starts_with_timestamp(&line) {
            self.dropping = false;
            return self.pending.replace(line);
        }
        if self.dropping {
            self.dropped += 1;
            return None;
        }
        let Some(pending) = &mut self.pending else {
            self.pending = Some(line);
            return None;
        };
        if pending.len() + LINE_JOINER.len_utf8() + line.len() <= MESSAGE_MAX {
            pending.push(LINE_JOINER);
            pending.push_str(&line);
            return None;
        }
        let mut full = std::mem::take(pending);
        if crate::redact::ends_open(&full) {
            self.pending = None;
            self.dropping = true;
            self.dropped += 1;
        } else {
            self.pending = Some(line);
        }
        full.push_str(MESSAGE_CUT);
        Some(full)
    }

    /// Ends the pending message (silence or end of file).
    pub fn finish(&mut self) -> Option<String> {
        self.dropping = false;
        self.pending.take()
    }

    /// How many continuation lines were dropped after a cut inside a password value, once that
    /// ended (a new message, silence or end of file); None when none were.
    pub fn take_dropped(&mut self) -> Option<u64> {
        (!self.dropping && self.dropped > 0).then(|| std::mem::take(&mut self.dropped))
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
    fn a_long_line_is_cut_and_the_rest_skipped() {
        let text = format!("{}\nnext\nlast", "a".repeat(100));
        let mut stream = std::io::BufReader::with_capacity(16, text.as_bytes());
        let mut line = Vec::new();
        assert_eq!(
            read_line_capped(&mut stream, &mut line, 40).unwrap(),
            Some(true)
        );
        assert_eq!(line, "a".repeat(40).as_bytes());
        line.clear();
        assert_eq!(
            read_line_capped(&mut stream, &mut line, 40).unwrap(),
            Some(false)
        );
        assert_eq!(line, b"next");
        line.clear();
        // The last line has no newline; then end of file.
        assert_eq!(
            read_line_capped(&mut stream, &mut line, 40).unwrap(),
            Some(false)
        );
        assert_eq!(line, b"last");
        line.clear();
        assert_eq!(read_line_capped(&mut stream, &mut line, 40).unwrap(), None);
        // A line of exactly the cap is not cut.
        let exact = "b".repeat(40);
        let mut stream = std::io::BufReader::new(exact.as_bytes());
        assert_eq!(
            read_line_capped(&mut stream, &mut line, 40).unwrap(),
            Some(false)
        );
    }

    #[test]
    fn lines_without_a_timestamp_make_messages_of_at_most_the_cap() {
        let mut joiner = MessageJoiner::default();
        let line = "1234 LOG:  ".to_string() + &"x".repeat(1000);
        let mut messages = Vec::new();
        for _ in 0..3000 {
            messages.extend(joiner.push(line.clone()));
        }
        messages.extend(joiner.finish());
        assert!(messages.len() >= 3, "{}", messages.len());
        for message in &messages {
            assert!(message.len() <= MESSAGE_MAX + MESSAGE_CUT.len());
        }
        // Every line is forwarded, none dropped.
        let lines: usize = messages.iter().map(|m| m.matches("LOG:").count()).sum();
        assert_eq!(lines, 3000);
        assert_eq!(joiner.take_dropped(), None);
    }

    #[test]
    fn a_cut_inside_a_password_drops_the_continuation_up_to_the_next_message() {
        let filler = "\t-- ".to_string() + &"f".repeat(60_000);
        for (before, secret_line) in [
            ("\tCREATE ROLE a PASSWORD", "\t'plain secret';"),
            ("\tCREATE ROLE a PASSWORD 'plain", "\tsecret';"),
            ("\tCREATE ROLE a PASSWORD $pw$plain", "\tsecret$pw$;"),
            ("\tconnstr: password =", "\tplain-secret"),
        ] {
            let mut joiner = MessageJoiner::default();
            let mut out = Vec::new();
            out.extend(joiner.push("2026-11-24 22:00:00 UTC [7] STATEMENT:  SELECT 1;".into()));
            while joiner.pending.as_ref().map_or(0, String::len) + 2 * filler.len() < MESSAGE_MAX {
                out.extend(joiner.push(filler.clone()));
            }
            out.extend(joiner.push(before.into()));
            // Long enough not to fit: the message is cut right before it.
            let secret_line = secret_line.to_string() + &" ".repeat(2 * filler.len());
            out.extend(joiner.push(secret_line));
            out.extend(joiner.push("\tLOGIN;".into()));
            assert_eq!(joiner.take_dropped(), None, "still dropping");
            out.extend(joiner.push("2026-11-24 22:00:01 UTC [7] LOG:  next".into()));
            assert_eq!(joiner.take_dropped(), Some(2), "{before}");
            out.extend(joiner.finish());
            assert_eq!(out.len(), 2, "{before}");
            assert!(out[0].ends_with(MESSAGE_CUT));
            let forwarded = out
                .iter()
                .map(|m| crate::redact::redact(m))
                .collect::<String>();
            assert!(!forwarded.contains("secret"), "{before}");
            assert!(forwarded.contains("next"));
        }
        // A cut elsewhere: the next line starts a message of its own, nothing dropped.
        let mut joiner = MessageJoiner::default();
        let mut out = Vec::new();
        while joiner.pending.as_ref().map_or(0, String::len) + filler.len() < MESSAGE_MAX {
            out.extend(joiner.push(filler.clone()));
        }
        out.extend(joiner.push("\tCREATE ROLE a PASSWORD 'closed';".into()));
        out.extend(joiner.push(filler.clone()));
        out.extend(joiner.finish());
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], filler);
        assert_eq!(joiner.take_dropped(), None);
    }

    #[test]
    fn kept_messages_are_cut_for_error_reports() {
        let text = format!("2026-11-24 22:00:00 UTC é{}\n", "y".repeat(100_000));
        let tail = LogTail::forward(std::io::Cursor::new(text.into_bytes()));
        tail.wait_eof(Duration::from_secs(5));
        let kept = tail.last(1).join("");
        assert!(
            kept.len() <= TAIL_MESSAGE_MAX + '…'.len_utf8(),
            "{}",
            kept.len()
        );
        assert!(kept.ends_with('…'));
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
