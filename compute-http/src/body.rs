//! Response bodies: a whole body (sent with `Content-Length`), or a streamed one (chunked
//! transfer encoding) whose chunks a producer thread sends through a [`body_channel`].
//!
//! A streamed body ends in one of two ways. The producer drops its sender: the body is
//! complete and hyper writes the terminating chunk. The producer sends an error: hyper ends
//! the connection at once, *without* the terminating chunk, so the client sees an incomplete
//! body and cannot take a truncated one for a whole one. When the client goes away, hyper
//! drops the body, and the producer's next send (or [`BodySender::is_closed`]) tells it so.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// The producer's end of a streamed body.
#[derive(Debug)]
pub struct BodySender(mpsc::Sender<io::Result<Bytes>>);

/// The response's end of a streamed body.
#[derive(Debug)]
pub struct BodyStream(mpsc::Receiver<io::Result<Bytes>>);

/// A streamed body's two ends; at most `chunks` chunks wait between them.
pub fn body_channel(chunks: usize) -> (BodySender, BodyStream) {
    let (sender, receiver) = mpsc::channel(chunks.max(1));
    (BodySender(sender), BodyStream(receiver))
}

/// The client went away (the body was dropped): nothing more can be sent.
#[derive(Debug)]
pub struct ClientGone;

impl BodySender {
    /// Sends a chunk, waiting while the client is behind (from a plain thread, never from
    /// the runtime). `Err` when the client went away.
    pub fn send(&self, chunk: Bytes) -> Result<(), ClientGone> {
        self.0.blocking_send(Ok(chunk)).map_err(|_| ClientGone)
    }

    /// Ends the body as incomplete: the connection is closed without the terminating chunk.
    pub fn fail(&self, why: String) {
        let _ = self.0.blocking_send(Err(io::Error::other(why)));
    }

    /// Whether the client went away.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

impl BodyStream {
    /// The next chunk, waiting for it (`None` at a complete end); for tests and plain threads.
    pub fn blocking_next(&mut self) -> Option<io::Result<Bytes>> {
        self.0.blocking_recv()
    }
}

/// The body of every response.
#[derive(Debug)]
pub enum ReplyBody {
    /// All of it (`None` once sent, or when empty).
    Whole(Option<Bytes>),
    /// A first chunk, then what the producer sends.
    Streamed {
        /// Sent first (`None` once sent).
        first: Option<Bytes>,
        /// The rest.
        rest: BodyStream,
    },
}

impl ReplyBody {
    /// A whole body.
    pub fn whole(bytes: Vec<u8>) -> ReplyBody {
        ReplyBody::Whole(Some(Bytes::from(bytes)).filter(|bytes| !bytes.is_empty()))
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            ReplyBody::Whole(bytes) => {
                Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes))))
            }
            ReplyBody::Streamed { first, rest } => {
                if let Some(first) = first.take().filter(|first| !first.is_empty()) {
                    return Poll::Ready(Some(Ok(Frame::data(first))));
                }
                rest.0
                    .poll_recv(cx)
                    .map(|next| next.map(|chunk| chunk.map(Frame::data)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ReplyBody::Whole(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReplyBody::Whole(None) => SizeHint::with_exact(0),
            ReplyBody::Whole(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            ReplyBody::Streamed { .. } => SizeHint::default(),
        }
    }
}
