//! stage-kit: the plumbing every compute-tools binary shares, around the `compute-spec` model.
//!
//! * [`stage`]: stdin → stage → stdout — read the compute document (or pass an earlier
//!   stage's error envelope through), run, write the document or the error, exit with the
//!   code of [`compute_spec::exit_code`]; the stage's spans into its section (`compute-trace`).
//! * [`logging`]: stderr logging (text or JSON) for every binary.
//! * [`runas`]: dropping from root to the `postgres` OS user in a child process, with
//!   nothing but async-signal-safe calls between `fork` and `exec`.
//! * [`notify`]: systemd's `sd_notify` datagram protocol.
//! * [`local`]: the admin connection of the tools to their own Postgres.
//! * [`child`]: the one child runner: own process group, parent-death signal, a spawner
//!   thread for long-lived children, deadlines and output caps, pidfds.
//! * [`cgexec`]: the `cgexec -g memory:<cgroup>` wrapping of Postgres under `AUTOSCALING`.
//! * [`core_dump`]: the names of the core dumps a crashed backend leaves in PGDATA.
//! * [`host`]: the host facts `postgresql.conf` depends on, probed for the first document.
//! * [`deadline`]: deadlines from input durations that saturate instead of panicking.
//! * `tls` (feature `tls`, a default one; the workspace dependency turns it off): the
//!   Postgres TLS certificate and key, checked and copied into PGDATA.
//! * [`bounded`]: reading operator input (spec, config, TLS files, stdin) with a size cap;
//!   only regular files, opened without blocking.
//! * [`pgdata_lock`]: one owner per PGDATA, an exclusive `flock` beside it, inherited by the
//!   stages and their children.
//! * [`url`]: URL path segments from input values, percent-encoded, dot segments refused.
//! * [`fsutil`]: files and directories written as root where a link may be planted: a chown
//!   walk that never follows a link, whole-file replacement (0600 until the final mode, never
//!   through a link), private directories (a planted one refused).
//! * [`retry`]: the one retry loop: a typed policy (attempts, back-off, a deadline without
//!   progress) and a predicate for the errors worth another attempt.
//! * [`prom`]: the Prometheus text exposition format: HELP and TYPE lines, escaped labels.
//!
//! Invariants: depends on `compute-spec` and `compute-trace` only among the workspace's packages; nothing here
//! logs a secret.
#![warn(missing_docs)]

pub mod bounded;
pub mod cgexec;
pub mod child;
pub mod core_dump;
pub mod deadline;
pub mod fsutil;
pub mod host;
pub mod local;
pub mod logging;
pub mod notify;
pub mod pgdata_lock;
pub mod prom;
pub mod retry;
pub mod runas;
pub mod stage;
#[cfg(feature = "tls")]
pub mod tls;
pub mod url;

/// The version every binary of the workspace reports: the package version and the git commit
/// it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("COMPUTE_TOOLS_GIT_HASH"),
    ")"
);
