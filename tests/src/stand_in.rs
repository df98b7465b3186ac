//! Stand-ins for the helper processes compute-ctl signals at termination.
//!
//! * [`LocalProxy`]: local_proxy is Neon's program, not packaged: a small python3 process that
//!   holds its pid file's `flock`, as local_proxy does, and records each signal it gets with
//!   the configuration file it then reads.
//! * [`named_sleeper`]: a process whose name (`/proc/<pid>/comm`) is chosen by the test (a
//!   copy of `sleep`), for pid files that must name a pgbouncer — or must not.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{wait_until, KillOnDrop};

const LOCAL_PROXY: &str = r#"
import fcntl, json, os, signal, sys, time
pid_file, config, record = sys.argv[1:4]
held = open(pid_file, "w")
fcntl.flock(held, fcntl.LOCK_EX)
held.write(str(os.getpid()))
held.flush()
def note(line):
    with open(record, "a") as out:
        out.write(line + "\n")
def hup(signum, frame):
    with open(config) as f:
        text = f.read()
    note("HUP " + json.dumps({"pretty": "\n  " in text, "config": json.loads(text)}))
def term(signum, frame):
    note("TERM")
    sys.exit(0)
signal.signal(signal.SIGHUP, hup)
signal.signal(signal.SIGTERM, term)
note("READY")
while True:
    time.sleep(0.05)
"#;

/// A running local_proxy stand-in; killed when dropped.
pub struct LocalProxy {
    /// The stand-in process.
    pub process: KillOnDrop,
    /// Its pid file (flock-held while it runs): compute-ctl's `--local-proxy-pid-file`.
    pub pid_file: PathBuf,
    /// The configuration file it reads at SIGHUP: compute-ctl's `--local-proxy-config`.
    pub config_file: PathBuf,
    record_file: PathBuf,
}

impl LocalProxy {
    /// Starts a stand-in with its files in `dir` (created), ready when this returns.
    ///
    /// # Panics
    ///
    /// Panics when it cannot start or does not get ready within 10 s.
    pub fn start(dir: &Path) -> LocalProxy {
        std::fs::create_dir_all(dir).expect("create the local_proxy directory");
        let stand_in = LocalProxy {
            pid_file: dir.join("pid"),
            config_file: dir.join("config.json"),
            record_file: dir.join("record"),
            process: KillOnDrop(
                Command::new("python3")
                    .args(["-c", LOCAL_PROXY])
                    .args([dir.join("pid"), dir.join("config.json"), dir.join("record")])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start python3"),
            ),
        };
        assert!(
            wait_until(Duration::from_secs(10), || stand_in
                .record()
                .contains(&"READY".to_string())),
            "the local_proxy stand-in never got ready"
        );
        stand_in
    }

    /// Its record: one line per event (`READY`, `HUP {…}`, `TERM`).
    pub fn record(&self) -> Vec<String> {
        std::fs::read_to_string(&self.record_file)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The configuration it read at its `n`th SIGHUP (`{"pretty", "config"}`).
    pub fn hup(&self, n: usize) -> Option<Value> {
        let line = self
            .record()
            .into_iter()
            .filter(|line| line.starts_with("HUP "))
            .nth(n)?;
        serde_json::from_str(&line[4..]).ok()
    }

    /// Whether it got SIGTERM.
    pub fn terminated(&self) -> bool {
        self.record().iter().any(|line| line == "TERM")
    }
}

/// A long `sleep` running under the program name `name` (a copy of `sleep` in `dir`), with
/// its pid written to `dir/<name>.pid`; killed when dropped.
///
/// # Panics
///
/// Panics when it cannot be set up.
pub fn named_sleeper(dir: &Path, name: &str) -> (KillOnDrop, PathBuf) {
    let sleep = ["/usr/bin/sleep", "/bin/sleep"]
        .into_iter()
        .find(|path| Path::new(path).exists())
        .expect("a sleep binary");
    let program = dir.join(name);
    std::fs::copy(sleep, &program).expect("copy sleep");
    let child = Command::new(&program)
        .arg("600")
        .stdin(Stdio::null())
        .spawn()
        .expect("start the named sleeper");
    let pid_file = dir.join(format!("{name}.pid"));
    std::fs::write(&pid_file, format!("{}\n", child.id())).expect("write the pid file");
    (KillOnDrop(child), pid_file)
}
