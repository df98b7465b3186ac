//! What a termination does to the processes beside Postgres, and what compute-ctl's flags
//! reach: `--dev` spares pgbouncer and local_proxy when a signal stops the compute (upstream's
//! development mode) but not on `/terminate`; a pgbouncer pid file naming another program
//! kills nothing; `--cgroup` alone (no `COMPUTE_CTL_CGROUP`) reaches the stages that start
//! Postgres through `cgexec`; a SIGKILLed compute-ctl leaves no stage and no `initdb`
//! running. Stand-ins: `compute_tools_tests::stand_in`.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use compute_tools_tests::stand_in::{named_sleeper, LocalProxy};
use compute_tools_tests::{
    compute_ctl_command, post, process_alive, wait_running, wait_until, write_sample_spec,
    PostgresChild,
};
use pg_test_support::{free_tcp_port, TestDir};

/// A compute-ctl on the sample spec, with the given pid files for pgbouncer and
/// local_proxy, `running` when this returns.
struct Compute {
    child: PostgresChild,
    http_port: u16,
}

impl Compute {
    fn start(
        dir: &Path,
        pgbouncer_pid: &Path,
        proxy: &LocalProxy,
        extra: &[&str],
        env: &[(&str, &Path)],
    ) -> Compute {
        let port = free_tcp_port();
        let spec = write_sample_spec(dir, port);
        let pgdata = dir.join("pgdata");
        let http_port = free_tcp_port();
        let mut command = compute_ctl_command(&pgdata, http_port, 0);
        command
            .args(["-S", spec.to_str().unwrap()])
            .args(["--pgbouncer-pid-file", pgbouncer_pid.to_str().unwrap()])
            .args(["--local-proxy-pid-file", proxy.pid_file.to_str().unwrap()])
            .args(["--local-proxy-config", proxy.config_file.to_str().unwrap()])
            .args(extra)
            .env_remove("COMPUTE_CTL_CGROUP")
            .env_remove("AUTOSCALING")
            .stdin(Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        let child = PostgresChild::new(command.spawn().unwrap(), &pgdata);
        wait_running(http_port, Duration::from_secs(90));
        Compute { child, http_port }
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    fn wait_exit(&mut self) {
        assert!(
            wait_until(Duration::from_secs(30), || self
                .child
                .try_wait()
                .ok()
                .flatten()
                .is_some()),
            "compute-ctl did not exit"
        );
    }
}

fn pid_of(pid_file: &Path) -> i32 {
    std::fs::read_to_string(pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn dev_spares_pgbouncer_and_local_proxy_on_a_signal() {
    let dir = TestDir::new("e2e-dev-signal");
    let proxy = LocalProxy::start(&dir.path().join("local_proxy"));
    let (_bouncer, bouncer_pid) = named_sleeper(dir.path(), "pgbouncer");
    let mut compute = Compute::start(dir.path(), &bouncer_pid, &proxy, &["--dev"], &[]);
    compute.signal(nix::sys::signal::Signal::SIGTERM);
    compute.wait_exit();
    assert!(
        process_alive(pid_of(&bouncer_pid)),
        "--dev: pgbouncer was killed"
    );
    // Give a late signal the time to land before saying none came.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !proxy.terminated(),
        "--dev: local_proxy got SIGTERM: {:?}",
        proxy.record()
    );
}

#[test]
fn terminate_stops_them_even_with_dev() {
    let dir = TestDir::new("e2e-dev-terminate");
    let proxy = LocalProxy::start(&dir.path().join("local_proxy"));
    let (_bouncer, bouncer_pid) = named_sleeper(dir.path(), "pgbouncer");
    let mut compute = Compute::start(dir.path(), &bouncer_pid, &proxy, &["--dev"], &[]);
    let pid = pid_of(&bouncer_pid);
    let url = format!("http://127.0.0.1:{}/terminate", compute.http_port);
    let (code, answer) = post(&url, "");
    assert_eq!(code, 200, "{answer}");
    compute.wait_exit();
    assert!(
        wait_until(Duration::from_secs(10), || proxy.terminated()),
        "local_proxy not stopped: {:?}",
        proxy.record()
    );
    assert!(
        wait_until(Duration::from_secs(10), || !process_alive(pid)),
        "pgbouncer not killed"
    );
}

#[test]
fn a_signal_stops_them_but_never_a_stranger_named_in_the_pid_file() {
    let dir = TestDir::new("e2e-signal-stranger");
    let proxy = LocalProxy::start(&dir.path().join("local_proxy"));
    // A stale pid file whose pid now belongs to another program.
    let (_stranger, stale_pid_file) = named_sleeper(dir.path(), "not-pgbouncer");
    let mut compute = Compute::start(dir.path(), &stale_pid_file, &proxy, &[], &[]);
    compute.signal(nix::sys::signal::Signal::SIGINT);
    compute.wait_exit();
    assert!(
        wait_until(Duration::from_secs(10), || proxy.terminated()),
        "local_proxy not stopped: {:?}",
        proxy.record()
    );
    assert!(
        process_alive(pid_of(&stale_pid_file)),
        "a process that is not pgbouncer was killed"
    );
}

/// A `cgexec` stand-in: records its arguments, then runs the program as the real one does.
fn cgexec_stand_in(dir: &Path) -> (PathBuf, PathBuf) {
    let shared = dir.join("cgexec");
    std::fs::create_dir(&shared).unwrap();
    // Postgres runs as the postgres user: the record must be writable by it.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let record = shared.join("record");
    let script = shared.join("cgexec");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1 $2\" >> '{}'\nshift 2\nexec \"$@\"\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, record)
}

#[test]
fn the_cgroup_flag_alone_reaches_the_stages() {
    let dir = TestDir::new("e2e-cgroup-flag");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let proxy = LocalProxy::start(&dir.path().join("local_proxy"));
    let (script, record) = cgexec_stand_in(dir.path());
    let no_vm_monitor = PathBuf::from("/bin/true");
    let mut compute = Compute::start(
        dir.path(),
        &dir.path().join("no-pgbouncer.pid"),
        &proxy,
        &["--cgroup", "flag-cgroup"],
        &[
            ("AUTOSCALING", Path::new("1")),
            ("COMPUTE_CTL_CGEXEC", &script),
            ("COMPUTE_CTL_STAGE_VM_MONITOR", &no_vm_monitor),
        ],
    );
    let recorded = std::fs::read_to_string(&record).unwrap_or_default();
    assert!(
        recorded.lines().any(|line| line == "-g memory:flag-cgroup"),
        "cgexec was not given the flag's cgroup: {recorded:?}"
    );
    assert!(!recorded.contains("neon-postgres"), "{recorded:?}");
    compute.signal(nix::sys::signal::Signal::SIGTERM);
    compute.wait_exit();
}

/// A Postgres installation whose `initdb` never finishes by itself: a copy of `initdb` (so
/// it looks for `postgres` and its share directory here) beside a `postgres` script that
/// passes everything to the real one except the bootstrap run, which writes its pid to
/// `boot.pid` and sleeps without reading: `initdb` blocks writing to it (no stopped process,
/// so nothing but a death signal ends `initdb`). Returns the `postgres` to give as `-b`.
fn stalling_installation(dir: &Path) -> PathBuf {
    let real = pg_test_support::pg_bin("postgres");
    let real_bin = real.parent().unwrap();
    let major = real_bin.parent().unwrap().file_name().unwrap();
    let bin = dir.join("lib/postgresql").join(major).join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(dir.join("share/postgresql")).unwrap();
    let sharedir = std::process::Command::new(real_bin.join("pg_config"))
        .arg("--sharedir")
        .output()
        .unwrap();
    let sharedir = String::from_utf8(sharedir.stdout).unwrap();
    std::os::unix::fs::symlink(sharedir.trim(), dir.join("share/postgresql").join(major)).unwrap();
    std::fs::copy(real_bin.join("initdb"), bin.join("initdb")).unwrap();
    let postgres = bin.join("postgres");
    std::fs::write(
        &postgres,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --boot ]; then echo $$ > '{}'; exec sleep 60; fi\nexec '{}' \"$@\"\n",
            dir.join("boot.pid").display(),
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&postgres, std::fs::Permissions::from_mode(0o755)).unwrap();
    // initdb runs as the postgres user: the script writes boot.pid here.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    postgres
}

/// SIGKILL of compute-ctl while pg-basebackup-fetch runs `initdb`: the stage (SIGTERM from
/// its parent-death signal) and `initdb` (SIGKILL from the stage's) both end. `initdb`
/// cannot finish by itself ([`stalling_installation`]): only a death signal ends it.
#[test]
fn sigkill_of_compute_ctl_during_initdb_leaves_no_stage_or_initdb() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use pg_test_support::probe::{processes_of, wait_dead};

    let dir = TestDir::new("term-");
    let postgres = stalling_installation(&dir.path().join("install"));
    let spec = write_sample_spec(dir.path(), free_tcp_port());
    let pgdata = dir.path().join("pgdata");
    // compute_ctl_command's flags, with this installation's postgres.
    let mut command = std::process::Command::new(compute_tools_tests::binary("compute-ctl"));
    command
        .args(["-C", "postgresql://cloud_admin@localhost/postgres", "-b"])
        .arg(&postgres)
        .arg("-D")
        .arg(&pgdata)
        .args(["--external-http-port", &free_tcp_port().to_string()])
        .args(["--internal-http-port", "0", "--terminated-grace", "0s"])
        .args(["-S", spec.to_str().unwrap()])
        .env("COMPUTE_TOOLS_NO_TEMPLATE_CACHE", "true")
        .env_remove("COMPUTE_CTL_CGROUP")
        .env_remove("AUTOSCALING")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut compute = command.spawn().unwrap();
    let boot_pid = dir.path().join("install/boot.pid");
    let needle = pgdata.to_string_lossy().into_owned();
    let initdb = pg_test_support::wait_for(Duration::from_secs(60), || {
        let found = processes_of("initdb", &needle).first().copied();
        found.filter(|_| boot_pid.exists())
    });
    let Some(initdb) = initdb else {
        let _ = compute.kill();
        let _ = compute.wait();
        panic!("initdb never reached its bootstrap on {needle}");
    };
    let stat = std::fs::read_to_string(format!("/proc/{initdb}/stat")).unwrap();
    let stage: i32 = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let stage_name = std::fs::read_to_string(format!("/proc/{stage}/comm")).unwrap();
    kill(Pid::from_raw(compute.id() as i32), Signal::SIGKILL).unwrap();
    compute.wait().unwrap();
    let stage_died = wait_dead(stage, Duration::from_secs(5));
    let initdb_died = wait_dead(initdb, Duration::from_secs(5));
    let boot: Option<i32> = std::fs::read_to_string(&boot_pid)
        .ok()
        .and_then(|text| text.trim().parse().ok());
    let survivors = [(stage, stage_died), (initdb, initdb_died)]
        .into_iter()
        .filter(|(_, died)| !died)
        .map(|(pid, _)| pid);
    for pid in survivors.chain(boot) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert!(
        stage_died,
        "the stage {stage_name:?} (pid {stage}) outlived compute-ctl"
    );
    assert!(initdb_died, "initdb (pid {initdb}) outlived compute-ctl");
}
