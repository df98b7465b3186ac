//! A page-service stand-in for LSN leases: a [`FakeBackend`] on `127.0.0.1` (cleartext
//! password: the storage token) that answers every `lease lsn` with the next
//! [`Behaviour`] of its script — a `valid_until` (milliseconds since the epoch as text),
//! NULL (refused), an error, a slow answer, or any text — and records each query with its
//! password and arrival time.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Answer, FakeBackend, Responder, Response, Script, Silence};

/// How the stand-in answers one `lease lsn`.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// `valid_until` = now + this.
    ValidFor(Duration),
    /// NULL: refused (below the GC cutoff).
    Refuse,
    /// An ErrorResponse.
    Fail,
    /// Waits this long, then answers valid for 10 s.
    Slow(Duration),
    /// This `valid_until` text (`None`: NULL), as it is.
    Says(Option<String>),
}

/// One query the stand-in received.
#[derive(Clone, Debug)]
pub struct Query {
    /// The password of its connection.
    pub password: String,
    /// The query text.
    pub query: String,
    /// When it arrived.
    pub at: Instant,
}

/// A running page-service stand-in.
pub struct Pageserver {
    backend: FakeBackend,
    /// Answers in order; the last one repeats.
    script: Arc<Mutex<Vec<Behaviour>>>,
}

impl Pageserver {
    /// A stand-in taking `password` and answering with `script` (in order, the last one
    /// repeating; an empty script answers valid for an hour).
    pub fn start(password: &str, script: Vec<Behaviour>) -> Pageserver {
        Pageserver::with_silence(password, script, Silence::Never)
    }

    /// A stand-in that takes `password` and each query, and never answers.
    pub fn silent(password: &str) -> Pageserver {
        Pageserver::with_silence(password, Vec::new(), Silence::AfterCommand)
    }

    fn with_silence(password: &str, script: Vec<Behaviour>, silence: Silence) -> Pageserver {
        let script = Arc::new(Mutex::new(script));
        let behaviours = script.clone();
        let respond = move |_: &str| {
            let behaviour = {
                let mut script = behaviours.lock().unwrap_or_else(PoisonError::into_inner);
                match script.len() {
                    0 => Behaviour::ValidFor(Duration::from_secs(3600)),
                    1 => script[0].clone(),
                    _ => script.remove(0),
                }
            };
            answer(behaviour)
        };
        let backend = FakeBackend::start(Script {
            password: password.to_string(),
            answer: Answer::Computed(Responder::new(respond)),
            silence,
            ..Script::default()
        });
        Pageserver { backend, script }
    }

    /// A libpq connection string of the stand-in (user `cloud_admin`, no password).
    pub fn connstr(&self) -> String {
        format!("host=127.0.0.1 port={} user=cloud_admin", self.backend.port)
    }

    /// `127.0.0.1:<port>`, as errors name the server.
    pub fn address(&self) -> String {
        self.backend.address()
    }

    /// Every query of every connection, in order.
    pub fn seen(&self) -> Vec<Query> {
        let mut all = Vec::new();
        for connection in self.backend.seen() {
            for (query, at) in connection.commands.iter().zip(&connection.command_times) {
                all.push(Query {
                    password: connection.password.clone(),
                    query: query.clone(),
                    at: *at,
                });
            }
        }
        all
    }

    /// Replaces the script.
    pub fn set(&self, script: Vec<Behaviour>) {
        *self.script.lock().unwrap_or_else(PoisonError::into_inner) = script;
    }
}

/// The page service's answer: one `valid_until` column, or an error.
fn answer(behaviour: Behaviour) -> Response {
    let valid = match behaviour {
        Behaviour::ValidFor(valid) => Some(valid),
        Behaviour::Refuse => None,
        Behaviour::Slow(delay) => {
            std::thread::sleep(delay);
            Some(Duration::from_secs(10))
        }
        Behaviour::Fail => return Response::Error("tenant shard not found".to_string()),
        Behaviour::Says(text) => return Response::Row(vec![("valid_until".to_string(), text)]),
    };
    let until = valid.map(|valid| {
        (SystemTime::now() + valid)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            .to_string()
    });
    Response::Row(vec![("valid_until".to_string(), until)])
}
