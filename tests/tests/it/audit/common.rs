//! What the audit tests share: the test's own supervised rsyslogd, the audited sample
//! spec, compute-ctl with its rsyslog files in the test's directories, and the audit
//! record's JSON payload.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use compute_tools_tests::{compute_ctl_command, status, wait_until, write_sample_spec};
use serde_json::{json, Value};

/// The test's own rsyslogd (`-n`), started again by a supervisor thread whenever it stops,
/// as a service manager would; stopped for good on drop.
pub struct Rsyslog {
    /// Its directory: `rsyslog.conf`, `rsyslog.d/`, `work/`, the pid file, its output.
    pub dir: PathBuf,
    stop: Arc<AtomicBool>,
    current: Arc<Mutex<Option<u32>>>,
    thread: Option<JoinHandle<()>>,
}

impl Rsyslog {
    /// `dir/rsyslog.conf` includes `dir/rsyslog.d/*.conf`; with `socket`, it also reads
    /// syslog messages from `dir/log.sock`.
    pub fn start(dir: &Path, socket: bool) -> Rsyslog {
        for sub in ["rsyslog.d", "work"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let mut conf = String::new();
        if socket {
            conf.push_str(&format!(
                "module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
                 input(type=\"imuxsock\" Socket=\"{}\")\n",
                dir.join("log.sock").display()
            ));
        }
        // rsyslogd refuses to run without an action: everything not stopped by the included
        // files is kept in all.log (for the failure messages).
        conf.push_str(&format!(
            "include(file=\"{dir}/rsyslog.d/*.conf\" mode=\"optional\")\n\
             *.* action(type=\"omfile\" file=\"{dir}/all.log\")\n",
            dir = dir.display()
        ));
        std::fs::write(dir.join("rsyslog.conf"), conf).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let current = Arc::new(Mutex::new(None));
        let thread = {
            let (dir, stop, current) = (dir.to_path_buf(), stop.clone(), current.clone());
            std::thread::spawn(move || supervise(&dir, &stop, &current))
        };
        let rsyslog = Rsyslog {
            dir: dir.to_path_buf(),
            stop,
            current,
            thread: Some(thread),
        };
        assert!(
            wait_until(Duration::from_secs(10), || rsyslog.pid().is_some()),
            "rsyslogd did not start: {}",
            rsyslog.output()
        );
        rsyslog
    }

    fn pid(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("rsyslogd.pid"))
            .ok()
            .map(|pid| pid.trim().to_string())
            .filter(|pid| !pid.is_empty())
    }

    pub fn output(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}\nall.log:\n{}", read("rsyslogd.out"), read("all.log"))
    }

    /// The restart command for compute-ctl: stop the running rsyslogd, wait for the
    /// supervisor's next one to write its pid file.
    fn restart_command(&self) -> String {
        let script = self.dir.join("restart.sh");
        let pid_file = self.dir.join("rsyslogd.pid");
        std::fs::write(
            &script,
            format!(
                "old=$(cat '{pid}')\n\
                 kill \"$old\" || exit 1\n\
                 for i in $(seq 400); do\n  \
                   new=$(cat '{pid}' 2>/dev/null)\n  \
                   if [ -n \"$new\" ] && [ \"$new\" != \"$old\" ]; then exit 0; fi\n  \
                   sleep 0.05\n\
                 done\n\
                 echo 'rsyslogd did not come back' >&2\n\
                 exit 1\n",
                pid = pid_file.display()
            ),
        )
        .unwrap();
        format!("sh '{}'", script.display())
    }
}

fn supervise(dir: &Path, stop: &AtomicBool, current: &Mutex<Option<u32>>) {
    while !stop.load(Ordering::SeqCst) {
        let child: std::io::Result<Child> = {
            let mut current = current.lock().unwrap();
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("rsyslogd.out"))
                .unwrap();
            let child = Command::new("/usr/sbin/rsyslogd")
                .arg("-n")
                .arg("-f")
                .arg(dir.join("rsyslog.conf"))
                .arg("-i")
                .arg(dir.join("rsyslogd.pid"))
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn();
            *current = child.as_ref().ok().map(Child::id);
            child
        };
        let Ok(mut child) = child else {
            return;
        };
        let _ = child.wait();
        // A supervisor's pause before it starts the service again.
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(pid) = *self.current.lock().unwrap() {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The sample spec at `level`, with ids, on a free port (unix socket only).
pub fn audited_spec(dir: &Path, port: u16, level: &str, extra: Value) -> PathBuf {
    let path = write_sample_spec(dir, port);
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    spec["audit_log_level"] = json!(level);
    spec["endpoint_id"] = json!("ep-audit-test-1");
    spec["project_id"] = json!("proj-audit-1");
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    std::fs::write(&path, spec.to_string()).unwrap();
    path
}

/// compute-ctl with the real stages, its rsyslog files in `rsyslog`'s directory.
pub fn compute_ctl(
    dir: &Path,
    spec: &Path,
    (http_port, internal_port): (u16, u16),
    rsyslog: Option<&Rsyslog>,
) -> Command {
    let mut command = compute_ctl_command(&dir.join("pgdata"), http_port, internal_port);
    command
        .arg("-S")
        .arg(spec)
        .args([
            "--failed-grace",
            "3s",
            "--audit-log-cleanup-interval",
            "200ms",
        ])
        .env_remove("AUDIT_LOGGING_ENDPOINT")
        .env_remove("AUDIT_LOGGING_TLS_ENDPOINT")
        .stdin(Stdio::null());
    match rsyslog {
        Some(rsyslog) => {
            command
                .arg("--rsyslog-dir")
                .arg(rsyslog.dir.join("rsyslog.d"))
                .arg("--rsyslog-work-dir")
                .arg(rsyslog.dir.join("work"))
                .args(["--rsyslog-restart", &rsyslog.restart_command()]);
        }
        None => {
            command
                .arg("--rsyslog-dir")
                .arg(dir.join("no-rsyslog.d"))
                .args(["--rsyslog-restart", "exit 1"]);
        }
    }
    command
}

/// Waits up to `timeout` for `running`; `failed` ends the test at once, with rsyslogd's
/// output.
pub fn wait_running(http_port: u16, rsyslog: Option<&Rsyslog>, timeout: Duration) {
    pg_test_support::probe::wait_for_status(timeout, "running", || Some(status(http_port)))
        .unwrap_or_else(|last| {
            panic!(
                "not running within {timeout:?}: {last}\nrsyslogd: {}",
                rsyslog.map(Rsyslog::output).unwrap_or_default()
            )
        });
}

/// The JSON payload of an audit record (`<PRI>1 TIMESTAMP HOST - - - - {json}`).
pub fn payload(line: &str) -> Value {
    let start = line
        .find('{')
        .unwrap_or_else(|| panic!("no JSON in {line:?}"));
    serde_json::from_str(&line[start..]).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}
