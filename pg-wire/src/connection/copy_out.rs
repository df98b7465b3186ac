//! COPY OUT: streaming CopyData payloads out of the connection's receive buffer, or
//! splicing them from the socket straight into a file descriptor.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{splice, SpliceFFlags};
use postgres_protocol::message::backend::Message;

use super::{retry_interrupted, Connection};
use crate::{Row, WireError};

/// A COPY OUT in progress. Each CopyData payload is streamed straight from the receive
/// buffer: [`next_data`](Self::next_data) starts the next one, [`read`](Self::read) reads
/// it; [`next_payload`](Self::next_payload) returns a whole payload instead. At the end,
/// [`finish`](Self::finish).
pub struct CopyOut<'a> {
    pub(super) connection: &'a mut Connection,
    pub(super) done: bool,
    /// Bytes of the current payload not read yet.
    pub(super) left: usize,
}

impl CopyOut<'_> {
    /// Starts the next CopyData payload (skipping what is left of the current one) and
    /// returns its length; None at CopyDone. An ErrorResponse during the copy is returned as
    /// [`WireError::Server`].
    pub fn next_data(&mut self) -> Result<Option<usize>, WireError> {
        self.skip_rest()?;
        while !self.done {
            // Six bytes, even in exact mode: during a copy the server sends on without
            // waiting (CopyData, or CopyDone then CommandComplete and ReadyForQuery), and the
            // sixth byte is the first of a payload (its kind in BASE_BACKUP) or of the next
            // message, never one a caller would splice. It saves a system call per message.
            let (tag, total) = self.connection.peek_header(6)?;
            if tag == b'd' {
                self.connection.start += 5;
                self.left = total - 5;
                return Ok(Some(self.left));
            }
            match self.connection.receive()? {
                Message::CopyDone => self.done = true,
                Message::ErrorResponse(body) => return Err(self.connection.server_error(&body)),
                _ => {}
            }
        }
        Ok(None)
    }

    /// Reads the current payload into `out`; 0 at its end. Returns at least one byte while
    /// some are left (waiting for the server if needed).
    pub fn read(&mut self, out: &mut [u8]) -> Result<usize, WireError> {
        if self.left == 0 || out.is_empty() {
            return Ok(0);
        }
        if self.connection.buffered() == 0 {
            self.connection.read_more(self.left.min(out.len()))?;
        }
        let n = out.len().min(self.left).min(self.connection.buffered());
        let start = self.connection.start;
        out[..n].copy_from_slice(&self.connection.buf[start..start + n]);
        self.connection.start += n;
        self.left -= n;
        Ok(n)
    }

    /// From now on, reads only what is asked for: what the caller does not [`read`]
    /// (Self::read) can be [`splice_to`](Self::splice_to)d.
    pub fn read_exactly(&mut self) {
        self.connection.exact = true;
    }

    /// From now on, the stream must bring at least `bytes` in every `window` (see
    /// [`Connection::set_min_rate`]).
    pub fn set_min_rate(&mut self, minimum: Option<(u64, Duration)>) {
        self.connection.set_min_rate(minimum);
    }

    /// Moves up to `len` bytes of the current payload into the pipe `to`, with `splice(2)`
    /// straight from the socket (bytes already received are written); returns the number
    /// moved, 0 at the payload's end. Call [`read_exactly`](Self::read_exactly) first, or
    /// most bytes will already have been received.
    pub fn splice_to(&mut self, to: BorrowedFd<'_>, len: usize) -> Result<usize, WireError> {
        let len = len.min(self.left);
        if len == 0 {
            return Ok(0);
        }
        let connection = &mut *self.connection;
        let moved = if connection.buffered() > 0 {
            let n = len.min(connection.buffered());
            let start = connection.start;
            let written =
                retry_interrupted(|| nix::unistd::write(to, &connection.buf[start..start + n]))
                    .map_err(|e| connection.io("splicing", e.into()))?;
            connection.start += written;
            written
        } else {
            connection.apply_read_timeout()?;
            let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_MORE;
            let stream = connection.stream.as_fd();
            match retry_interrupted(|| splice(stream, None, to, None, len, flags)) {
                Ok(0) => {
                    return Err(WireError::Closed {
                        endpoint: connection.endpoint.clone(),
                    })
                }
                Ok(n) => {
                    connection.note_received(n)?;
                    n
                }
                Err(Errno::EAGAIN) => return Err(connection.timed_out()),
                Err(errno) => return Err(connection.io("receiving", errno.into())),
            }
        };
        self.left -= moved;
        Ok(moved)
    }

    /// The next whole CopyData payload; None at CopyDone.
    pub fn next_payload(&mut self) -> Result<Option<Vec<u8>>, WireError> {
        let Some(length) = self.next_data()? else {
            return Ok(None);
        };
        let mut payload = vec![0; length];
        let mut filled = 0;
        while filled < length {
            filled += self.read(&mut payload[filled..])?;
        }
        Ok(Some(payload))
    }

    /// Skips what is left of the current payload.
    fn skip_rest(&mut self) -> Result<(), WireError> {
        while self.left > 0 {
            if self.connection.buffered() == 0 {
                self.connection.read_more(self.left)?;
            }
            let n = self.left.min(self.connection.buffered());
            self.connection.start += n;
            self.left -= n;
        }
        Ok(())
    }

    /// Skips what is left of the copy, then reads the result sets after it up to
    /// ReadyForQuery: the rows of the last one, or the error the server sent.
    pub fn finish(mut self) -> Result<Vec<Row>, WireError> {
        while self.next_data()?.is_some() {}
        self.connection.read_results(Vec::new())
    }

    /// The server, as errors name it.
    pub fn endpoint(&self) -> &str {
        &self.connection.endpoint
    }
}
