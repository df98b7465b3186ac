//! [`TestPostgres`]: a running postmaster in its own [`TestDir`].

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{
    as_postgres_user, chown_to_postgres, free_tcp_port, fsutil, pg_bin_dir, template, TestDir,
    MAX_SOCKET_PATH,
};

/// How long to wait for a new server to report `ready`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often to poll `postmaster.pid` or the process state.
const POLL: Duration = Duration::from_millis(5);
/// How long `Drop` waits after an immediate shutdown request before `SIGKILL`.
const DROP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`TestPostgres::stop_fast`] waits before giving up and killing the server.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Configures and starts a [`TestPostgres`]; create it with [`TestPostgres::builder`].
#[derive(Debug, Clone)]
pub struct TestPostgresBuilder {
    superuser: String,
    settings: Vec<(String, String)>,
    hba_lines: Vec<String>,
    tcp: bool,
    extension_files: Vec<(String, String)>,
    /// The primary, for a standby.
    standby_of: Option<crate::standby::Primary>,
    /// The server's binaries (None: [`pg_bin_dir`]).
    bin_dir: Option<PathBuf>,
}

impl Default for TestPostgresBuilder {
    fn default() -> Self {
        TestPostgresBuilder {
            superuser: "cloud_admin".to_string(),
            settings: Vec::new(),
            hba_lines: Vec::new(),
            tcp: false,
            extension_files: Vec::new(),
            standby_of: None,
            bin_dir: None,
        }
    }
}

impl TestPostgresBuilder {
    /// The bootstrap superuser created by `initdb` (default `"cloud_admin"`).
    pub fn superuser(mut self, name: &str) -> Self {
        self.superuser = name.to_string();
        self
    }

    /// Adds the line `name = 'value'` to `postgresql.conf`, after the helper's own settings
    /// so it can override them. `value` is given unquoted (e.g. `"replica"`, `5`); it is
    /// quoted and escaped here.
    pub fn setting(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        self.settings.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds a line at the top of `pg_hba.conf` (lines added earlier come first). The default
    /// file trusts every local and loopback connection.
    pub fn hba_line(mut self, line: &str) -> Self {
        self.hba_lines.push(line.to_string());
        self
    }

    /// Runs PostgreSQL `major` (Debian's or the cache's, see [`crate::majors`]) instead of
    /// the run's ([`pg_bin_dir`]). Call [`crate::require_major`] first to skip where it is not
    /// installed.
    ///
    /// # Panics
    ///
    /// When `major` is not installed.
    pub fn major(mut self, major: u32) -> Self {
        let dir = crate::majors::major_bin_dir(major)
            .unwrap_or_else(|| panic!("{}", crate::majors::missing(major)));
        self.bin_dir = Some(dir);
        self
    }

    /// Runs the server binaries of `dir` instead of the run's ([`pg_bin_dir`]).
    pub fn bin_dir(mut self, dir: &Path) -> Self {
        self.bin_dir = Some(dir.to_path_buf());
        self
    }

    /// Whether to also listen on TCP `127.0.0.1:<port>` (default `false`: Unix socket only,
    /// `listen_addresses = ''`).
    pub fn tcp(mut self, enabled: bool) -> Self {
        self.tcp = enabled;
        self
    }

    /// Adds a file to the server's extension directory (`neon.control`, `neon--1.0.sql`):
    /// the server then runs from a private copy of the installation
    /// (`<dir>/install/…`, see the `install` module), so the system's extension directory
    /// is never written.
    pub fn extension_file(mut self, name: &str, contents: &str) -> Self {
        self.extension_files
            .push((name.to_string(), contents.to_string()));
        self
    }

    /// Offers a stand-in `neon` extension (versions 1.0 and 1.1, default 1.1; its one
    /// function `neon_stand_in()` returns the installed version) in the private extension
    /// directory, `relocatable` as asked (the real one is not).
    pub fn neon_stand_in(self, relocatable: bool) -> Self {
        self.extension_file(
            "neon.control",
            &format!(
                "default_version = '1.1'\nrelocatable = {relocatable}\ncomment = 'test stand-in'\n"
            ),
        )
        .extension_file(
            "neon--1.0.sql",
            "CREATE FUNCTION neon_stand_in() RETURNS text LANGUAGE sql AS $$ SELECT '1.0' $$;\n",
        )
        .extension_file(
            "neon--1.0--1.1.sql",
            "CREATE OR REPLACE FUNCTION neon_stand_in() RETURNS text LANGUAGE sql \
             AS $$ SELECT '1.1' $$;\n",
        )
    }

    /// Makes the server a streaming replica of `primary` (of its binaries): the data
    /// directory is `pg_basebackup -R -X stream` of it (over its Unix socket, as its
    /// superuser, who becomes this server's), not a copy of the template — or, when no
    /// `pg_basebackup` as new as the primary is at hand (the cache's builds of majors newer
    /// than Debian's), the same made by hand (a low-level backup, see the `standby` module);
    /// the kit's settings follow the primary's in `postgresql.conf`. The server counts as
    /// started once it accepts (read-only) connections.
    pub fn standby_of(mut self, primary: &TestPostgres) -> Self {
        self.superuser = primary.superuser().to_string();
        self.standby_of = Some(crate::standby::Primary {
            connstr: primary.connstr("postgres"),
            data_dir: primary.data_dir().to_path_buf(),
            major: primary.major(),
        });
        self.bin_dir = Some(primary.bin_dir().to_path_buf());
        self
    }

    /// Creates the data directory from the template cluster (or the primary's base backup,
    /// [`standby_of`](Self::standby_of)) and starts the server, waiting until it accepts
    /// connections.
    ///
    /// # Panics
    ///
    /// Panics (with the tail of the server log where relevant) when anything fails.
    pub fn start(self) -> TestPostgres {
        // A TCP port can be taken by someone else between choosing and binding it; retry
        // with a fresh port in that case.
        let attempts = if self.tcp { 3 } else { 1 };
        for attempt in 1..=attempts {
            match self.try_start() {
                Ok(pg) => return pg,
                Err(StartError::PortTaken(log)) if attempt < attempts => {
                    eprintln!("pg-test-support: TCP port taken, retrying:\n{log}");
                }
                Err(StartError::PortTaken(log) | StartError::Failed(log)) => panic!("{log}"),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    fn try_start(&self) -> Result<TestPostgres, StartError> {
        let bin_dir = self.bin_dir.clone().unwrap_or_else(pg_bin_dir);
        let dir = TestDir::new("pg");
        let port = free_tcp_port();
        let socket_dir = dir.path().to_path_buf();
        let socket_len = socket_dir
            .join(format!(".s.PGSQL.{port}"))
            .as_os_str()
            .len();
        assert!(
            socket_len < MAX_SOCKET_PATH,
            "socket path in {} is too long ({socket_len} bytes)",
            socket_dir.display()
        );
        let data_dir = dir.path().join("data");
        match &self.standby_of {
            None => {
                let template = template::ensure_template(&bin_dir, &self.superuser);
                fsutil::copy_dir_recursive(&template, &data_dir);
            }
            Some(primary) => crate::standby::base_backup(&bin_dir, primary, dir.path(), &data_dir),
        }
        self.write_config(&data_dir, &socket_dir, port);
        let log_path = dir.path().join("postgres.log");
        let log = fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let log_err = log
            .try_clone()
            .expect("cannot duplicate the log file handle");
        chown_to_postgres(dir.path());

        let postgres = if self.extension_files.is_empty() {
            bin_dir.join("postgres")
        } else {
            let root = dir.path().join("install");
            let postgres = crate::install::private_install(&root, &bin_dir, &self.extension_files);
            chown_to_postgres(&root);
            postgres
        };
        let mut cmd = Command::new(&postgres);
        as_postgres_user(&mut cmd)
            .arg("-D")
            .arg(&data_dir)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", postgres.display()));
        let mut pg = TestPostgres {
            child,
            exited: false,
            port,
            superuser: self.superuser.clone(),
            bin_dir,
            data_dir,
            socket_dir,
            log_path,
            dir,
        };
        match pg.wait_ready() {
            Ok(()) => Ok(pg),
            Err(why) => {
                pg.shut_down(Signal::SIGQUIT, DROP_TIMEOUT);
                let tail = fsutil::file_tail(&pg.log_path, 4000);
                let msg = format!(
                    "test postgres in {} {why}; tail of postgres.log:\n{tail}",
                    pg.data_dir.display()
                );
                if self.tcp && tail.contains("could not bind") {
                    Err(StartError::PortTaken(msg))
                } else {
                    Err(StartError::Failed(msg))
                }
            }
        }
    }

    fn write_config(&self, data_dir: &Path, socket_dir: &Path, port: u16) {
        let listen = if self.tcp { "127.0.0.1" } else { "" };
        let mut conf = String::from("\n# Added by pg-test-support\n");
        let mut settings: Vec<(&str, String)> = vec![
            ("listen_addresses", listen.to_string()),
            ("port", port.to_string()),
            (
                "unix_socket_directories",
                socket_dir.to_string_lossy().into_owned(),
            ),
            ("fsync", "off".into()),
            ("synchronous_commit", "off".into()),
            ("full_page_writes", "off".into()),
            ("shared_buffers", "16MB".into()),
            ("max_connections", "50".into()),
            ("log_min_messages", "warning".into()),
        ];
        if data_dir.starts_with("/dev/shm") {
            // Keep dynamic shared memory inside the data dir (still tmpfs), so a killed
            // server leaves no `/dev/shm/PostgreSQL.*` segments behind.
            settings.push(("dynamic_shared_memory_type", "mmap".into()));
        }
        settings.extend(self.settings.iter().map(|(k, v)| (k.as_str(), v.clone())));
        for (name, value) in settings {
            let _ = writeln!(conf, "{name} = '{}'", value.replace('\'', "''"));
        }
        let conf_path = data_dir.join("postgresql.conf");
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", conf_path.display()));
        file.write_all(conf.as_bytes())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf_path.display()));

        if !self.hba_lines.is_empty() {
            let hba_path = data_dir.join("pg_hba.conf");
            let old = fs::read_to_string(&hba_path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", hba_path.display()));
            let mut hba = self.hba_lines.join("\n");
            hba.push('\n');
            hba.push_str(&old);
            fs::write(&hba_path, hba)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", hba_path.display()));
        }
    }
}

enum StartError {
    PortTaken(String),
    Failed(String),
}

/// A running, throwaway PostgreSQL server owned by one test.
///
/// Its temporary directory holds the data directory (`data/`), the Unix socket and
/// `postgres.log`. Dropping it stops the server (immediate shutdown, `SIGKILL` after ~5 s)
/// and removes the directory, also while a panicking test unwinds.
#[derive(Debug)]
pub struct TestPostgres {
    child: Child,
    exited: bool,
    port: u16,
    superuser: String,
    bin_dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    // Last, so it is removed after the server is stopped in `Drop`.
    dir: TestDir,
}

impl TestPostgres {
    /// Starts a server with the default settings (see [`TestPostgresBuilder`]).
    pub fn start() -> TestPostgres {
        TestPostgres::builder().start()
    }

    /// A builder to configure the server before starting it.
    pub fn builder() -> TestPostgresBuilder {
        TestPostgresBuilder::default()
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding the server's Unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The temporary directory holding everything of this server, including `postgres.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's port (part of the socket name; the TCP port when built with `tcp(true)`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The bootstrap superuser's name.
    pub fn superuser(&self) -> &str {
        &self.superuser
    }

    /// The directory of the PostgreSQL binaries this server runs.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The PostgreSQL program `name` to use with this server: its own, or Debian's client
    /// program when its installation has none (see [`crate::majors::client_program`]).
    pub fn program(&self, name: &str) -> PathBuf {
        crate::majors::client_program(&self.bin_dir, name)
    }

    /// The server's major version (14, 15, …).
    pub fn major(&self) -> u32 {
        crate::majors::bin_major(&self.bin_dir)
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("process id out of i32 range")
    }

    /// A libpq key/value connection string for `dbname` over the Unix socket:
    /// `host=<socket_dir> port=<port> user=<superuser> dbname=<dbname>`.
    pub fn connstr(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            crate::conninfo::quote_conn_value(&self.socket_dir.to_string_lossy()),
            self.port,
            crate::conninfo::quote_conn_value(&self.superuser),
            crate::conninfo::quote_conn_value(dbname)
        )
    }

    /// A `postgresql://` URL for `dbname` over the Unix socket, usable by the `postgres`
    /// crate and by `psql`:
    /// `postgresql://<user>@localhost:<port>/<dbname>?host=<percent-encoded socket dir>`.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgresql://{}@localhost:{}/{}?host={}",
            crate::conninfo::percent_encode(&self.superuser),
            self.port,
            crate::conninfo::percent_encode(dbname),
            crate::conninfo::percent_encode(&self.socket_dir.to_string_lossy())
        )
    }

    /// The kit's own server settings (performance, logging, listening) as
    /// `postgresql.conf` lines, read back from the server: a test that renders a whole
    /// `postgresql.conf` from a spec puts them in `cluster.postgresql_conf` so the server
    /// keeps running as the kit started it.
    pub fn server_conf(&self) -> String {
        let mut client = self.client();
        let mut text = String::new();
        for name in [
            "listen_addresses",
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "shared_buffers",
            "max_connections",
            "log_min_messages",
            "dynamic_shared_memory_type",
        ] {
            let value: String = client
                .query_one("SELECT pg_catalog.current_setting($1)", &[&name])
                .unwrap_or_else(|e| panic!("cannot read setting {name}: {e}"))
                .get(0);
            let _ = writeln!(
                text,
                "{name} = {}",
                compute_spec::quote::quote_conf_value(&value)
            );
        }
        text
    }

    /// A client connected to the `postgres` database as the superuser.
    pub fn client(&self) -> postgres::Client {
        self.client_for("postgres")
    }

    /// A client connected to `dbname` as the superuser (Unix socket, no TLS).
    ///
    /// # Panics
    ///
    /// Panics when the connection fails.
    pub fn client_for(&self, dbname: &str) -> postgres::Client {
        let connstr = self.connstr(dbname);
        postgres::Client::connect(&connstr, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to test postgres ({connstr}): {e}"))
    }

    /// Runs `sql` with `psql -XAtq -v ON_ERROR_STOP=1 -c` against the `postgres` database
    /// and returns its standard output without the final newline.
    ///
    /// # Panics
    ///
    /// Panics with psql's standard error when it fails.
    pub fn psql(&self, sql: &str) -> String {
        let psql = crate::majors::client_program(&self.bin_dir, "psql");
        let mut cmd = Command::new(&psql);
        as_postgres_user(&mut cmd)
            .current_dir(self.dir.path())
            .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.connstr("postgres"))
            .arg("-c")
            .arg(sql)
            .stdin(Stdio::null());
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", psql.display()));
        assert!(
            out.status.success(),
            "psql -c {sql:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let mut stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if stdout.ends_with('\n') {
            stdout.pop();
        }
        stdout
    }

    /// Stops the server with a fast shutdown (`SIGINT`) and waits until the postmaster has
    /// exited. The directory stays until the `TestPostgres` is dropped.
    ///
    /// # Panics
    ///
    /// Panics when the server had to be killed because it did not stop within 60 s.
    pub fn stop_fast(&mut self) {
        assert!(
            self.shut_down(Signal::SIGINT, STOP_TIMEOUT),
            "test postgres (pid {}) did not stop within {STOP_TIMEOUT:?} after SIGINT; killed it",
            self.pid()
        );
    }

    /// Polls `postmaster.pid` until its status line says `ready`.
    fn wait_ready(&mut self) -> Result<(), String> {
        let pid_file = self.data_dir.join("postmaster.pid");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(text) = fs::read_to_string(&pid_file) {
                // Line 1 is the pid; the last line is the status ("starting", "ready", ...).
                let lines: Vec<&str> = text.lines().map(str::trim).collect();
                let ours = lines.first() == Some(&self.child.id().to_string().as_str());
                if ours && lines.iter().rev().find(|l| !l.is_empty()) == Some(&"ready") {
                    return Ok(());
                }
            }
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exited = true;
                    return Err(format!("exited during start-up ({status})"));
                }
                Ok(None) => {}
                Err(e) => return Err(format!("cannot be waited for: {e}")),
            }
            if Instant::now() > deadline {
                return Err(format!("was not ready within {START_TIMEOUT:?}"));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sends `signal` and waits up to `timeout` for the postmaster to exit; then kills it
    /// with `SIGKILL`. Returns whether it exited before the timeout. Never panics (it is
    /// used from `Drop`).
    fn shut_down(&mut self, signal: Signal, timeout: Duration) -> bool {
        if self.exited {
            return true;
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            self.exited = true;
            return true;
        }
        let _ = kill(pid, signal);
        let deadline = Instant::now() + timeout;
        loop {
            // `try_wait` reaps the child; a zombie would still answer `kill(pid, 0)`.
            match self.child.try_wait() {
                Ok(Some(_)) => {
                    self.exited = true;
                    return true;
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                Ok(None) | Err(_) => break,
            }
        }
        let _ = kill(pid, Signal::SIGKILL);
        let _ = self.child.wait();
        self.exited = true;
        false
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.shut_down(Signal::SIGQUIT, DROP_TIMEOUT);
        // `self.dir` is dropped next and removes the directory.
    }
}
