//! The connection slots of one server: at most [`crate::MAX_CONNECTIONS`] connections are
//! open, and a new one is never refused because of clients that send nothing.
//!
//! Nothing is known of a connection before its request headers arrive (a kubelet probe and
//! an attacker may share an address), so the cap cannot tell them apart by who they are, only
//! by what they do. Each connection is in one of three states:
//!
//! * **waiting** (since it was accepted, or since its last answer ended): no request, headers
//!   still coming, or the body of a request that no token vouched for still coming;
//! * **busy**: its request headers arrived and the request is being answered (its answer's
//!   body included), or its caller authenticated and its body is coming;
//! * **evicted**: closed to make room.
//!
//! When the cap is reached, a new connection takes the slot of the connection that has been
//! **waiting longest**, which is closed (hyper's future is dropped: the socket closes without
//! an answer). A busy connection is never evicted; only when every connection is busy is the
//! new one answered 503. A client holding hundreds of connections without finishing their
//! headers therefore only ever evicts its own oldest ones, and a probe — whose headers follow
//! its connect at once — is answered: it is the youngest waiting connection, and it stops
//! waiting as soon as its task reads its headers.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

const WAITING: u8 = 0;
const BUSY: u8 = 1;
const EVICTED: u8 = 2;

/// How often at most the server warns that it evicts connections.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// One server's open connections.
pub(crate) struct Slots {
    cap: usize,
    /// The origin of every slot's `since`.
    origin: Instant,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    slots: HashMap<u64, Arc<Slot>>,
    next_id: u64,
    evicted_since_warning: u64,
    last_warning: Option<Instant>,
}

/// One open connection's state, shared by its task, its requests (an extension) and the
/// accept loop.
#[derive(Debug)]
pub(crate) struct Slot {
    id: u64,
    origin: Instant,
    state: AtomicU8,
    /// Nanoseconds from `origin` to when it began waiting.
    since: AtomicU64,
    evict: Notify,
}

impl Slot {
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn change(&self, from: u8, to: u8) -> bool {
        self.state
            .compare_exchange(from, to, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Its request headers arrived, or a token vouched for the request: never evicted until
    /// the answer ends.
    pub(crate) fn busy(&self) {
        self.change(WAITING, BUSY);
    }

    /// A request no token vouched for waits for its body: evictable, still counted from
    /// when the connection began waiting.
    pub(crate) fn awaiting_body(&self) {
        self.change(BUSY, WAITING);
    }

    /// Its answer ended: waiting again, from now.
    fn answered(&self) {
        self.since.store(self.now(), Ordering::SeqCst);
        self.change(BUSY, WAITING);
    }

    /// Resolves once the accept loop evicted the connection.
    pub(crate) async fn evicted(&self) {
        self.evict.notified().await;
    }
}

impl Slots {
    pub(crate) fn new(cap: usize) -> Arc<Slots> {
        Arc::new(Slots {
            cap,
            origin: Instant::now(),
            open: Mutex::new(Open::default()),
        })
    }

    /// A slot for a new connection, evicting the connection waiting longest when the cap is
    /// reached; `None` when every open connection is busy.
    pub(crate) fn admit(&self) -> Option<Arc<Slot>> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        while open.slots.len() >= self.cap {
            let victim = open
                .slots
                .values()
                .filter(|slot| slot.state.load(Ordering::SeqCst) == WAITING)
                .min_by_key(|slot| slot.since.load(Ordering::SeqCst))
                .cloned()?;
            // Its state may have changed since it was read: then look again.
            if victim.change(WAITING, EVICTED) {
                open.slots.remove(&victim.id);
                victim.evict.notify_one();
                self.count_eviction(&mut open);
            }
        }
        let id = open.next_id;
        open.next_id += 1;
        let slot = Arc::new(Slot {
            id,
            origin: self.origin,
            state: AtomicU8::new(WAITING),
            since: AtomicU64::new(0),
            evict: Notify::new(),
        });
        slot.since.store(slot.now(), Ordering::SeqCst);
        open.slots.insert(id, slot.clone());
        Some(slot)
    }

    /// The connection of `slot` ended (closed, timed out or evicted).
    pub(crate) fn release(&self, slot: &Slot) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.slots.remove(&slot.id);
    }

    /// One warning a minute at most while connections are evicted.
    fn count_eviction(&self, open: &mut Open) {
        open.evicted_since_warning += 1;
        let due = open
            .last_warning
            .is_none_or(|last| last.elapsed() >= WARN_EVERY);
        if due {
            tracing::warn!(
                evicted = open.evicted_since_warning,
                cap = self.cap,
                "the HTTP connection cap is reached: connections that sent no request are closed to make room"
            );
            open.evicted_since_warning = 0;
            open.last_warning = Some(Instant::now());
        }
    }
}

/// A response body that marks its connection as waiting again once it is dropped (sent,
/// or abandoned with its connection).
pub(crate) struct Answering<B> {
    inner: B,
    slot: Arc<Slot>,
}

impl<B> Answering<B> {
    pub(crate) fn new(inner: B, slot: Arc<Slot>) -> Answering<B> {
        Answering { inner, slot }
    }
}

impl<B> Drop for Answering<B> {
    fn drop(&mut self) {
        self.slot.answered();
    }
}

impl<B: Body + Unpin> Body for Answering<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_waiting_longest_is_evicted_and_busy_ones_never() {
        let slots = Slots::new(3);
        let first = slots.admit().unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let second = slots.admit().unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let third = slots.admit().unwrap();
        first.busy();
        // Full: the oldest waiting one (the second) makes room.
        let fourth = slots.admit().unwrap();
        assert_eq!(second.state.load(Ordering::SeqCst), EVICTED);
        assert_eq!(first.state.load(Ordering::SeqCst), BUSY);
        // An evicted connection cannot become busy again.
        second.busy();
        assert_eq!(second.state.load(Ordering::SeqCst), EVICTED);
        third.busy();
        fourth.busy();
        assert!(slots.admit().is_none(), "every connection is busy");
        // An answered connection waits from now on; a body without a token is evictable.
        first.answered();
        third.awaiting_body();
        let fifth = slots.admit().unwrap();
        assert_eq!(third.state.load(Ordering::SeqCst), EVICTED);
        assert_eq!(first.state.load(Ordering::SeqCst), WAITING);
        slots.release(&fifth);
        assert!(slots.admit().is_some(), "a released slot is free again");
    }
}
