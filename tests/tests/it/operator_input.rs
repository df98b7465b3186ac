//! What an operator hands the binaries — a spec or config file, a document file, the document
//! on stdin, a TLS certificate or key — cannot hang them or grow their memory: each attack
//! (`/dev/zero`, a FIFO nobody writes, a 2 GiB sparse file) is performed on the real binaries,
//! which must fail at once (exit 2, a message naming the file and the cap or the problem) with
//! a small peak resident set (`wait4`'s `ru_maxrss`). Every run has an address-space limit, so
//! a missing defence fails the test instead of exhausting the machine.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use compute_spec::exit_code;
use compute_tools_tests::{binary, run_stage, write_sample_spec};
use pg_test_support::rss::{run_measured, Measured};
use pg_test_support::tls::{CertKit, KeyType};
use pg_test_support::{free_tcp_port, TestDir};
use serde_json::{json, Value};

/// Each run must end within this (a blocked read would be killed here).
const LIMIT: Duration = Duration::from_secs(60);
/// The address space a run may have: far above a refusal's needs, far below the machine's.
const ADDRESS_SPACE: u64 = 4 << 30;
/// A refusal before reading stays far below any cap.
const SMALL_KIB: u64 = 48 << 10;

/// The three hostile files, made in `dir`: a FIFO, `/dev/zero` and a 2 GiB sparse file.
fn attacks(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let fifo = dir.join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo failed");
    let sparse = dir.join("sparse");
    File::create(&sparse).unwrap().set_len(2 << 30).unwrap();
    vec![
        (fifo, "it is a FIFO, not a regular file"),
        (PathBuf::from("/dev/zero"), "it is a character device"),
        (sparse, "it is 2147483648 bytes, over the"),
    ]
}

fn measure(command: &mut Command) -> Measured {
    let measured = run_measured(command, LIMIT, Some(ADDRESS_SPACE));
    eprintln!(
        "{:?}: exit {}, {:?}, peak {} KiB",
        command.get_program(),
        measured.run.code,
        measured.took,
        measured.peak_rss_kib
    );
    measured
}

/// A refusal: exit 2, an error envelope whose message has every one of `says`, fast, small.
fn assert_refused(measured: &Measured, says: &[&str], peak_kib: u64) {
    let run = &measured.run;
    assert_eq!(
        run.code,
        i32::from(exit_code::USAGE),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    let message = run.json["error"]["message"].as_str().unwrap_or_default();
    for said in says {
        assert!(message.contains(said), "{said:?} not in {message:?}");
    }
    assert!(
        measured.took < Duration::from_secs(10),
        "took {:?}",
        measured.took
    );
    assert!(
        measured.peak_rss_kib < peak_kib,
        "peak {} KiB: {message}",
        measured.peak_rss_kib
    );
}

/// A feeding child, killed and reaped when dropped (a failing test leaves nothing running).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A compute document for the sample spec (compute-spec's output).
fn document(dir: &Path) -> PathBuf {
    let spec = write_sample_spec(dir, free_tcp_port());
    let pgdata = dir.join("pgdata");
    let started = run_stage(
        "compute-spec",
        &["-S", spec.to_str().unwrap(), "-D", pgdata.to_str().unwrap()],
        "",
    );
    assert_eq!(started.code, 0, "{}", started.stderr);
    let path = dir.join("document.json");
    std::fs::write(&path, &started.stdout).unwrap();
    path
}

#[test]
fn spec_and_document_files_that_are_fifos_devices_or_huge_are_refused_at_once() {
    let dir = TestDir::new("input-files");
    let document = document(dir.path());
    let pgdata = dir.path().join("pgdata");
    for (path, problem) in attacks(dir.path()) {
        let shown = path.to_str().unwrap();
        for flag in ["-S", "-c"] {
            let measured = measure(
                Command::new(binary("compute-spec"))
                    .args([flag, shown, "-D", pgdata.to_str().unwrap()])
                    .stdin(Stdio::null()),
            );
            let named = if flag == "-S" {
                "spec file"
            } else {
                "config file"
            };
            let cap = if problem.contains("bytes") {
                "64 MiB cap"
            } else {
                problem
            };
            assert_refused(
                &measured,
                &[&format!("{named} {shown}: "), problem, cap],
                SMALL_KIB,
            );
        }
        let measured = measure(
            Command::new(binary("pg-reconcile"))
                .args(["--dry-run", "--spec", shown])
                .stdin(File::open(&document).unwrap()),
        );
        assert_refused(
            &measured,
            &[&format!("--spec {shown}: "), problem],
            SMALL_KIB,
        );
        let measured = measure(
            Command::new(binary("pg-catalog"))
                .args(["dbs-and-roles", "--document", shown])
                .stdin(Stdio::null()),
        );
        assert_refused(&measured, &[&format!("{shown}: "), problem], SMALL_KIB);
    }
}

#[test]
fn an_endless_or_huge_stdin_is_refused_with_bounded_memory() {
    let dir = TestDir::new("input-stdin");
    let sparse = dir.path().join("sparse");
    File::create(&sparse).unwrap().set_len(2 << 30).unwrap();
    // compute-spec reads a spec on stdin (64 MiB cap), the stages a document (128 MiB).
    let readers: [(&str, &[&str], &str, u64); 8] = [
        (
            "compute-spec",
            &["-D", "/nonexistent/pgdata"],
            "64 MiB cap",
            64,
        ),
        ("pg-sync-safekeepers", &[], "128 MiB cap", 128),
        ("pg-basebackup-fetch", &[], "128 MiB cap", 128),
        ("pg-extensions-fetch", &[], "128 MiB cap", 128),
        ("pg-reconcile", &[], "128 MiB cap", 128),
        ("pg-supervise", &[], "128 MiB cap", 128),
        ("pg-catalog", &["dbs-and-roles"], "128 MiB cap", 128),
        ("compute-sidecars", &["render"], "128 MiB cap", 128),
    ];
    for (name, args, cap, cap_mib) in readers {
        // An endless device: refused unread.
        let measured = measure(
            Command::new(binary(name))
                .args(args)
                .stdin(File::open("/dev/zero").unwrap()),
        );
        assert_refused(
            &measured,
            &["stdin: it is a character device, not a terminal"],
            SMALL_KIB,
        );
        // An endless pipe: read up to the cap, then refused; memory stays near the cap.
        let mut feeder = KillOnDrop(
            Command::new("cat")
                .arg("/dev/zero")
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let measured = measure(
            Command::new(binary(name))
                .args(args)
                .stdin(feeder.0.stdout.take().unwrap()),
        );
        drop(feeder);
        assert_refused(
            &measured,
            &["stdin: it holds more than the", cap],
            (cap_mib + 48) << 10,
        );
        // A huge regular file on stdin: refused by its size, unread.
        let measured = measure(
            Command::new(binary(name))
                .args(args)
                .stdin(File::open(&sparse).unwrap()),
        );
        assert_refused(
            &measured,
            &["stdin: it is 2147483648 bytes, over the", cap],
            SMALL_KIB,
        );
    }
}

/// `pg-basebackup-fetch` installs the TLS pair after making PGDATA (here by initdb): a path that
/// is a FIFO, `/dev/zero` or huge fails the stage after the bounded wait (`COMPUTE_CTL_TLS_WAIT`),
/// never blocking past it or growing its memory.
#[test]
fn tls_paths_that_are_fifos_devices_or_huge_fail_the_stage_without_blocking_or_memory() {
    let dir = TestDir::new("input-tls");
    let kit = CertKit::new(&dir.path().join("certs"));
    let good = kit.server("server", KeyType::EcSec1, "2002", 2);
    let spec_path = write_sample_spec(dir.path(), free_tcp_port());
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&spec_path).unwrap()).unwrap();
    spec["features"] = json!(["tls_experimental"]);
    let mut cases = Vec::new();
    for (path, problem) in attacks(dir.path()) {
        let problem = problem.replace("over the", "over the 1 MiB cap");
        cases.push(("cert_path", path.clone(), good.key.clone(), problem.clone()));
        cases.push(("key_path", good.cert.clone(), path, problem));
    }
    for (i, (field, cert_path, key_path, problem)) in cases.into_iter().enumerate() {
        let config = dir.path().join(format!("config-{i}.json"));
        let body = json!({
            "spec": spec,
            "compute_ctl_config": {"tls": {"cert_path": cert_path, "key_path": key_path}},
        });
        std::fs::write(&config, body.to_string()).unwrap();
        let pgdata = dir.path().join(format!("pgdata-{i}"));
        let started = run_stage(
            "compute-spec",
            &[
                "-c",
                config.to_str().unwrap(),
                "-D",
                pgdata.to_str().unwrap(),
            ],
            "",
        );
        assert_eq!(started.code, 0, "{}", started.stderr);
        let document = dir.path().join(format!("document-{i}.json"));
        std::fs::write(&document, &started.stdout).unwrap();
        let measured = measure(
            Command::new(binary("pg-basebackup-fetch"))
                .env("COMPUTE_CTL_TLS_WAIT", "2s")
                .stdin(File::open(&document).unwrap()),
        );
        let named = if field == "cert_path" {
            &cert_path
        } else {
            &key_path
        };
        let named = format!(
            "compute_ctl_config.tls.{field} {:?}: ",
            named.to_str().unwrap()
        );
        let run = &measured.run;
        assert_eq!(run.code, i32::from(exit_code::USAGE), "{}", run.stderr);
        let message = run.json["error"]["message"].as_str().unwrap_or_default();
        for said in [named.as_str(), &problem, "after waiting 2 s"] {
            assert!(message.contains(said), "{said:?} not in {message:?}");
        }
        // initdb, then the bounded wait: never blocked beyond it.
        assert!(
            measured.took < Duration::from_secs(30),
            "took {:?}",
            measured.took
        );
        // Includes initdb's children (`wait4` reports the largest of the tree).
        assert!(
            measured.peak_rss_kib < 256 << 10,
            "peak {} KiB: {message}",
            measured.peak_rss_kib
        );
    }
}
