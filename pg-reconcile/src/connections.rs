//! The connections of one run: every fan-out (the per-database reads before planning, the
//! parallel phases of the apply) takes its connections from one [`Connections`], which never
//! has more than its limit open at once — idle ones included — and keeps idle connections by
//! database, so a database's work in later phases reuses the connection of earlier ones.
//!
//! A connection is lent as a [`Lease`] and comes back when the lease is dropped. When the
//! limit is reached, the least recently used idle connection is closed to make room; when
//! every connection is lent, the taker waits for one to come back. With more databases than
//! the limit, a database read before planning may thus be connected to again when the apply
//! changes something in it; a no-op run and a first run connect to each database once.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};

use postgres::Client;

/// Opens an admin connection to a database, or says why it could not.
pub type Connect<'a> = dyn Fn(&str) -> Result<Client, String> + Sync + 'a;

/// The bounded set of connections of one run.
pub struct Connections<'a> {
    connect: &'a Connect<'a>,
    limit: usize,
    state: Mutex<State>,
    returned: Condvar,
}

#[derive(Default)]
struct State {
    /// Idle connections, least recently used first.
    idle: VecDeque<(String, Client)>,
    /// Connections open (idle or lent) or being opened.
    open: usize,
    /// Connections opened so far.
    opened: usize,
}

impl<'a> Connections<'a> {
    /// At most `limit` (at least 1) connections opened through `connect`.
    pub fn new(connect: &'a Connect<'a>, limit: usize) -> Connections<'a> {
        Connections {
            connect,
            limit: limit.max(1),
            state: Mutex::new(State::default()),
            returned: Condvar::new(),
        }
    }

    /// The most connections open at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Connections opened so far (the one [`Connections::adopt`]ed included).
    pub fn opened(&self) -> usize {
        self.lock().opened
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A worker that panicked cannot leave the counts half-updated: use them as they are.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds an already open connection to `database` as idle (it counts towards the limit).
    pub fn adopt(&self, database: &str, client: Client) {
        let mut state = self.lock();
        state.open += 1;
        state.opened += 1;
        state.idle.push_back((database.to_string(), client));
    }

    /// A connection to `database`: an idle one, else a new one (closing the least recently
    /// used idle connection when the limit is reached; waiting while all are lent).
    pub fn take(&self, database: &str) -> Result<Lease<'_, 'a>, String> {
        let mut state = self.lock();
        let evicted = loop {
            if let Some(index) = state.idle.iter().rposition(|(db, _)| db == database) {
                if let Some((_, client)) = state.idle.remove(index) {
                    return Ok(self.lease(database, client));
                }
            }
            if state.open < self.limit {
                state.open += 1;
                break None;
            }
            if let Some((_, client)) = state.idle.pop_front() {
                // Its place goes to the new connection: `open` stays.
                break Some(client);
            }
            state = self
                .returned
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        };
        state.opened += 1;
        drop(state);
        drop(evicted);
        match (self.connect)(database) {
            Ok(client) => Ok(self.lease(database, client)),
            Err(error) => {
                self.release();
                Err(error)
            }
        }
    }

    /// Closes the idle connections to every database but `keep`, so a rename, a drop or a
    /// copy (`CREATE DATABASE … TEMPLATE`) of those databases is not refused for our
    /// sessions ("being accessed by other users").
    pub fn close_idle_except(&self, keep: &str) {
        let closed: VecDeque<(String, Client)> = {
            let mut state = self.lock();
            let (kept, closed) = std::mem::take(&mut state.idle)
                .into_iter()
                .partition(|(db, _)| db == keep);
            state.idle = kept;
            state.open -= closed.len();
            closed
        };
        drop(closed);
        self.returned.notify_all();
    }

    fn lease(&self, database: &str, client: Client) -> Lease<'_, 'a> {
        Lease {
            pool: self,
            database: database.to_string(),
            client: Some(client),
        }
    }

    /// One connection fewer (closed or kept by its taker).
    fn release(&self) {
        self.lock().open -= 1;
        self.returned.notify_one();
    }

    fn give_back(&self, database: String, client: Client) {
        if client.is_closed() {
            drop(client);
            self.release();
            return;
        }
        self.lock().idle.push_back((database, client));
        self.returned.notify_one();
    }
}

/// A lent connection: derefs to the [`Client`]; goes back to its [`Connections`] when
/// dropped.
pub struct Lease<'p, 'a> {
    pool: &'p Connections<'a>,
    database: String,
    client: Option<Client>,
}

impl Lease<'_, '_> {
    /// The connection, kept by the caller: it no longer counts towards the limit.
    pub fn keep(mut self) -> Option<Client> {
        let client = self.client.take();
        self.pool.release();
        client
    }
}

impl Deref for Lease<'_, '_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        match &self.client {
            Some(client) => client,
            // Only `keep` and `drop` take the client, and both consume the lease.
            None => unreachable!("a lease holds its connection until it is dropped"),
        }
    }
}

impl DerefMut for Lease<'_, '_> {
    fn deref_mut(&mut self) -> &mut Client {
        match &mut self.client {
            Some(client) => client,
            None => unreachable!("a lease holds its connection until it is dropped"),
        }
    }
}

impl Drop for Lease<'_, '_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            self.pool
                .give_back(std::mem::take(&mut self.database), client);
        }
    }
}

/// `work` on each item, on up to `workers` threads side by side; the results in the items'
/// order.
pub fn parallel<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let workers = workers.min(items.len()).max(1);
    if workers == 1 {
        return items.iter().map(work).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(index) else { break };
                    mine.push((index, work(item)));
                }
                results
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .extend(mine);
            });
        }
    });
    let mut results = results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_keeps_the_order() {
        let items: Vec<usize> = (0..100).collect();
        assert_eq!(
            parallel(&items, 7, |i| i * 2),
            (0..100).map(|i| i * 2).collect::<Vec<_>>()
        );
        assert_eq!(parallel(&items[..1], 7, |i| *i), [0]);
        assert!(parallel(&items[..0], 7, |i| *i).is_empty());
    }
}
