//! Connecting to the compute's own Postgres: the admin connection every stage uses.
//!
//! The user, database, password and options come from the document's `connstr`; host and
//! port from its `instance` (the Unix socket directory the tools control). Neon's forced
//! session options come first so that a user's `ALTER DATABASE … SET` (role, read-only,
//! search_path, statement_timeout) cannot break the tools; options in the connection string
//! are appended after them, so they win.
//!
//! Sessions opened after start-up (HTTP routes, background jobs) are bounded: a [`Session`]
//! has its caller's [`Limits`] — `statement_timeout` and `lock_timeout` appended after every
//! other option (so neither the forced `statement_timeout=0` nor the connection string's
//! options can lift them) and a client-side deadline after which a watchdog thread sends
//! Postgres a cancel request (again every second until the session ends), for work that
//! outlives its statements' own timeouts. [`Session::describe`] names the limit a timed-out
//! statement hit.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use compute_spec::document::ComputeDocument;
use compute_spec::error::{ErrorKind, StageError};

/// Session options forced on the tools' own connections (`-c name=value` form).
/// `pgaudit.log=none`: the tools' own statements are not audited (as upstream's compute_ctl
/// sessions); a superuser setting, which the admin role may set.
pub fn forced_options(user: &str) -> String {
    let role = compute_spec::quote::quote_options_word(user);
    format!(
        "-c role={role} -c default_transaction_read_only=off -c search_path= \
         -c statement_timeout=0 -c pgaudit.log=none"
    )
}

/// The admin connection configuration for `database` (the connstr's database when `None`).
pub fn admin_config(
    document: &ComputeDocument,
    stage: &str,
    application_name: &str,
    database: Option<&str>,
) -> Result<postgres::Config, StageError> {
    let mut config: postgres::Config = document.connstr.parse().map_err(|error| {
        StageError::new(
            stage,
            ErrorKind::InvalidDocument,
            format!("connstr is not a libpq URL or key=value string: {error}"),
        )
    })?;
    let user = config.get_user().unwrap_or("cloud_admin").to_string();
    if config.get_user().is_none() {
        config.user(&user);
    }
    if let Some(database) = database {
        config.dbname(database);
    } else if config.get_dbname().is_none() {
        config.dbname("postgres");
    }
    let user_options = config.get_options().map(str::to_string);
    let mut options = forced_options(&user);
    if let Some(user_options) = user_options {
        options.push(' ');
        options.push_str(&user_options);
    }
    config
        .options(&options)
        .application_name(application_name)
        .connect_timeout(Duration::from_secs(10));
    // The tools reach their instance through its socket directory, whatever the URL's host.
    let mut local = postgres::Config::new();
    local.host_path(&document.instance.socket_dir);
    local.port(document.instance.port);
    copy_identity(&config, &mut local);
    Ok(local)
}

fn copy_identity(from: &postgres::Config, to: &mut postgres::Config) {
    if let Some(user) = from.get_user() {
        to.user(user);
    }
    if let Some(password) = from.get_password() {
        to.password(password);
    }
    if let Some(dbname) = from.get_dbname() {
        to.dbname(dbname);
    }
    if let Some(options) = from.get_options() {
        to.options(options);
    }
    if let Some(name) = from.get_application_name() {
        to.application_name(name);
    }
    if let Some(timeout) = from.get_connect_timeout() {
        to.connect_timeout(*timeout);
    }
}

/// The user the tools connect as (from the connstr; `cloud_admin` when it names none).
pub fn admin_user(document: &ComputeDocument) -> String {
    document
        .connstr
        .parse::<postgres::Config>()
        .ok()
        .and_then(|config| config.get_user().map(str::to_string))
        .unwrap_or_else(|| "cloud_admin".to_string())
}

/// A Postgres error as its server message (`ERROR: …` with detail and hint), else the
/// client's text.
pub fn pg_error_text(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.to_string(),
        None => error.to_string(),
    }
}

/// The bounds of one session opened after start-up (see [`Session`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `statement_timeout`: each statement.
    pub statement: Duration,
    /// `lock_timeout`: each wait for a lock.
    pub lock: Duration,
    /// From the connection on: past it, a cancel request (again every second).
    pub deadline: Duration,
}

impl Limits {
    /// Limits of `statement` and `lock` seconds per statement and lock wait, `deadline`
    /// seconds for the whole session.
    pub const fn seconds(statement: u64, lock: u64, deadline: u64) -> Limits {
        Limits {
            statement: Duration::from_secs(statement),
            lock: Duration::from_secs(lock),
            deadline: Duration::from_secs(deadline),
        }
    }
}

/// How often a session past its deadline is sent a cancel request again.
const CANCEL_AGAIN: Duration = Duration::from_secs(1);

/// [`admin_config`] with `limits`' `statement_timeout` and `lock_timeout`, last among the
/// options so that they win.
pub fn limited_config(
    document: &ComputeDocument,
    stage: &str,
    application_name: &str,
    database: Option<&str>,
    limits: Limits,
) -> Result<postgres::Config, StageError> {
    let mut config = admin_config(document, stage, application_name, database)?;
    limit_options(&mut config, limits);
    Ok(config)
}

/// Appends `limits`' `statement_timeout` and `lock_timeout` to `config`'s options (last, so
/// that they win).
pub fn limit_options(config: &mut postgres::Config, limits: Limits) {
    let mut options = config.get_options().unwrap_or_default().to_string();
    let _ = write!(
        options,
        " -c statement_timeout={} -c lock_timeout={}",
        limits.statement.as_millis().max(1),
        limits.lock.as_millis().max(1)
    );
    config.options(options.trim_start());
}

/// A bounded session: the client (through `Deref`), its [`Limits`], and the watchdog that
/// sends a cancel request once the session outlives its deadline (stopped when it is
/// dropped).
pub struct Session {
    client: postgres::Client,
    limits: Limits,
    fired: Arc<AtomicBool>,
    /// Dropped with the session: the watchdog ends.
    _stop: Option<mpsc::Sender<()>>,
}

impl Session {
    /// Connects with `config` (from [`limited_config`], whose limits `limits` must be) and
    /// arms the watchdog.
    pub fn connect(config: &postgres::Config, limits: Limits) -> Result<Session, postgres::Error> {
        let client = config.connect(postgres::NoTls)?;
        let fired = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel::<()>();
        let token = client.cancel_token();
        let watchdog = {
            let fired = fired.clone();
            move || {
                let mut wait = limits.deadline;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
                    if !fired.swap(true, Ordering::SeqCst) {
                        tracing::warn!(
                            deadline = %humantime::format_duration(limits.deadline),
                            "a Postgres session outlived its deadline: sending a cancel request"
                        );
                    }
                    if let Err(error) = token.cancel_query(postgres::NoTls) {
                        tracing::warn!(error = %pg_error_text(&error), "sending a cancel request");
                    }
                    wait = CANCEL_AGAIN;
                }
            }
        };
        let armed = std::thread::Builder::new()
            .name("sql-deadline".into())
            .spawn(watchdog);
        let stop = match armed {
            Ok(_) => Some(stop),
            Err(error) => {
                // Its statements keep their server-side timeouts.
                tracing::warn!(%error, "cannot start a session's deadline watchdog");
                None
            }
        };
        Ok(Session {
            client,
            limits,
            fired,
            _stop: stop,
        })
    }

    /// The session's limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether the deadline passed (a cancel request was sent).
    pub fn expired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// `error` as [`pg_error_text`], naming the limit behind a cancelled statement or a lock
    /// wait given up: the deadline once it passed, else the statement and lock timeouts.
    pub fn describe(&self, error: &postgres::Error) -> String {
        let text = pg_error_text(error);
        let code = error.code().map(|code| code.code());
        let format = |duration: Duration| humantime::format_duration(duration).to_string();
        if self.expired() {
            format!(
                "{text} (no answer within the {} deadline: a cancel request was sent)",
                format(self.limits.deadline)
            )
        } else if matches!(code, Some(QUERY_CANCELED | LOCK_NOT_AVAILABLE)) {
            format!(
                "{text} (statement_timeout {}, lock_timeout {})",
                format(self.limits.statement),
                format(self.limits.lock)
            )
        } else {
            text
        }
    }
}

/// SQLSTATE `query_canceled`: a statement timeout or a cancel request.
const QUERY_CANCELED: &str = "57014";
/// SQLSTATE `lock_not_available`: a lock timeout.
const LOCK_NOT_AVAILABLE: &str = "55P03";

impl std::ops::Deref for Session {
    type Target = postgres::Client;

    fn deref(&self) -> &postgres::Client {
        &self.client
    }
}

impl std::ops::DerefMut for Session {
    fn deref_mut(&mut self) -> &mut postgres::Client {
        &mut self.client
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pg_test_support::TestPostgres;
    use std::time::Instant;

    /// A document for `server`, whose connstr sets `statement_timeout=0` itself.
    fn document(server: &TestPostgres) -> ComputeDocument {
        serde_json::from_value(serde_json::json!({
            "document_version": 1,
            "pgdata": server.data_dir(),
            "pgbin": server.bin_dir().join("postgres"),
            "connstr": format!(
                "postgresql://{}@localhost/postgres?options=-c%20statement_timeout%3D0%20-c%20lock_timeout%3D0",
                server.superuser()
            ),
            "instance": {"port": server.port(), "socket_dir": server.socket_dir()},
        }))
        .unwrap()
    }

    fn session(server: &TestPostgres, limits: Limits) -> Session {
        let config = limited_config(&document(server), "test", "test", None, limits).unwrap();
        Session::connect(&config, limits).unwrap()
    }

    #[test]
    fn a_session_keeps_its_limits_and_names_them() {
        let server = TestPostgres::start();
        let limits = Limits {
            statement: Duration::from_millis(1500),
            lock: Duration::from_millis(300),
            deadline: Duration::from_secs(30),
        };
        let mut session = session(&server, limits);
        let show = |session: &mut Session, name: &str| -> String {
            session
                .query_one(&format!("SHOW {name}"), &[])
                .unwrap()
                .get(0)
        };
        assert_eq!(show(&mut session, "statement_timeout"), "1500ms");
        assert_eq!(show(&mut session, "lock_timeout"), "300ms");

        // Another session holds a lock the statement needs: the lock timeout ends the wait.
        server.psql("CREATE TABLE locked ()");
        let mut holder = server.client();
        let mut transaction = holder.transaction().unwrap();
        transaction
            .batch_execute("LOCK TABLE locked IN ACCESS EXCLUSIVE MODE")
            .unwrap();
        let started = Instant::now();
        let error = session
            .batch_execute("SELECT * FROM public.locked")
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        let text = session.describe(&error);
        assert!(text.contains("lock timeout"), "{text}");
        assert!(text.contains("lock_timeout 300ms"), "{text}");
        transaction.rollback().unwrap();

        let started = Instant::now();
        let error = session.batch_execute("SELECT pg_sleep(30)").unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        let text = session.describe(&error);
        assert!(text.contains("statement timeout"), "{text}");
        assert!(text.contains("statement_timeout 1s 500ms"), "{text}");
        assert!(!session.expired());
    }

    #[test]
    fn past_its_deadline_a_session_is_cancelled() {
        let server = TestPostgres::start();
        let mut session = session(&server, Limits::seconds(60, 60, 1));
        // Work that lifts its own statement timeout is still cancelled at the deadline.
        let started = Instant::now();
        let error = session
            .batch_execute("SET statement_timeout = 0; SELECT pg_sleep(60)")
            .unwrap_err();
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(1), "{took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
        assert!(session.expired());
        let text = session.describe(&error);
        assert!(text.contains("no answer within the 1s deadline"), "{text}");
        // And every statement after it, while the session lasts.
        let started = Instant::now();
        assert!(session.batch_execute("SELECT pg_sleep(60)").is_err());
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
