//! Integration tests against real PostgreSQL servers.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::path::Path;
use std::time::Instant;

use nix::sys::signal::kill;
use nix::unistd::Pid;
use pg_test_support::{TestDir, TestPostgres};

fn pid_alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

fn select_one(pg: &TestPostgres) -> i32 {
    pg.client().query_one("select 1", &[]).unwrap().get(0)
}

#[test]
fn two_instances_in_parallel() {
    let handles: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(TestPostgres::start))
        .collect();
    let pgs: Vec<TestPostgres> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_ne!(pgs[0].data_dir(), pgs[1].data_dir());
    assert_ne!(pgs[0].pid(), pgs[1].pid());
    for pg in &pgs {
        assert_eq!(select_one(pg), 1);
        assert_eq!(pg.psql("select 1"), "1");
        let data_dir: String = pg
            .client()
            .query_one("show data_directory", &[])
            .unwrap()
            .get(0);
        assert_eq!(Path::new(&data_dir), pg.data_dir());
    }
}

#[test]
fn builder_settings_take_effect() {
    let pg = TestPostgres::builder()
        .superuser("test_admin")
        .setting("wal_level", "replica")
        .setting("max_wal_senders", 5)
        .hba_line("local replication all trust")
        .start();
    assert_eq!(pg.superuser(), "test_admin");
    assert_eq!(pg.psql("SHOW wal_level"), "replica");
    assert_eq!(pg.psql("SHOW max_wal_senders"), "5");
    assert_eq!(pg.psql("SHOW listen_addresses"), "");
    assert_eq!(pg.psql("SHOW fsync"), "off");
    assert_eq!(pg.psql("SHOW shared_buffers"), "16MB");
    if pg.data_dir().starts_with("/dev/shm") {
        assert_eq!(pg.psql("SHOW dynamic_shared_memory_type"), "mmap");
    }
    assert_eq!(pg.psql("select current_user"), "test_admin");
    let hba = std::fs::read_to_string(pg.data_dir().join("pg_hba.conf")).unwrap();
    assert!(hba.starts_with("local replication all trust\n"), "{hba}");
}

#[test]
fn tcp_connects_over_loopback() {
    let pg = TestPostgres::builder().tcp(true).start();
    let connstr = format!(
        "host=127.0.0.1 port={} user={} dbname=postgres",
        pg.port(),
        pg.superuser()
    );
    let mut client = postgres::Client::connect(&connstr, postgres::NoTls).unwrap();
    let addr: Option<String> = client
        .query_one("select host(inet_client_addr())", &[])
        .unwrap()
        .get(0);
    assert_eq!(addr.as_deref(), Some("127.0.0.1"));
}

#[test]
fn unix_only_has_no_tcp_listener() {
    let pg = TestPostgres::start();
    assert!(std::net::TcpStream::connect(("127.0.0.1", pg.port())).is_err());
}

#[test]
fn url_and_connstr_work() {
    let pg = TestPostgres::start();
    pg.psql("create database other");
    let mut c = postgres::Client::connect(&pg.url("other"), postgres::NoTls).unwrap();
    let db: String = c
        .query_one("select current_database()", &[])
        .unwrap()
        .get(0);
    assert_eq!(db, "other");
    let db: String = pg
        .client_for("other")
        .query_one("select current_database()", &[])
        .unwrap()
        .get(0);
    assert_eq!(db, "other");
    // psql understands the URL form too.
    let mut cmd = std::process::Command::new(pg.program("psql"));
    pg_test_support::as_postgres_user(&mut cmd);
    let out = cmd
        .current_dir(pg.dir())
        .args(["-XAtq", "-c", "select current_database()", &pg.url("other")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "other");
}

#[test]
fn drop_stops_server_and_removes_dir() {
    let pg = TestPostgres::start();
    let (pid, dir) = (pg.pid(), pg.dir().to_path_buf());
    assert!(pid_alive(pid));
    assert!(dir.join("data/postmaster.pid").is_file());
    drop(pg);
    assert!(!pid_alive(pid), "postmaster {pid} still alive after drop");
    assert!(!dir.exists(), "{} still exists after drop", dir.display());
}

#[test]
fn panic_in_test_body_still_cleans_up() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(move || {
        let pg = TestPostgres::start();
        tx.send((pg.pid(), pg.dir().to_path_buf())).unwrap();
        assert_eq!(pg.psql("select 1"), "1");
        panic!("simulated test failure");
    });
    assert!(result.is_err());
    let (pid, dir) = rx.recv().unwrap();
    assert!(!pid_alive(pid), "postmaster {pid} still alive after panic");
    assert!(!dir.exists(), "{} still exists after panic", dir.display());
}

#[test]
fn stop_fast_stops_server() {
    let mut pg = TestPostgres::start();
    let pid = pg.pid();
    let t = Instant::now();
    pg.stop_fast();
    eprintln!("stop_fast took {:?}", t.elapsed());
    assert!(!pid_alive(pid));
    assert!(
        pg.data_dir().join("PG_VERSION").is_file(),
        "data dir kept until drop"
    );
    assert!(
        !pg.data_dir().join("postmaster.pid").exists(),
        "clean shutdown removes the pid file"
    );
    let dir = pg.dir().to_path_buf();
    drop(pg);
    assert!(!dir.exists());
}

#[test]
fn bad_setting_panics_with_log_tail() {
    let result = std::panic::catch_unwind(|| {
        TestPostgres::builder()
            .setting("no_such_setting_xyz", "1")
            .start()
    });
    let err = result.expect_err("start with an unknown setting must fail");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("no_such_setting_xyz"),
        "panic message lacks the log: {msg}"
    );
}

#[test]
fn test_dir_is_private_and_removed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new("td");
    let path = dir.path().to_path_buf();
    assert!(path.starts_with(pg_test_support::test_root()));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    if let Some((uid, _, _)) = pg_test_support::postgres_os_user() {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&path).unwrap().uid(), uid);
    }
    drop(dir);
    assert!(!path.exists());
}

#[test]
fn free_ports_are_distinct() {
    let a = pg_test_support::free_tcp_port();
    let b = pg_test_support::free_tcp_port();
    assert_ne!(a, b);
    assert!(pg_test_support::pg_bin("postgres").is_file());
}
