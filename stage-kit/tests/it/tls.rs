//! The TLS pair checks and the copy into PGDATA, on certificates and keys the real `openssl`
//! made: what is accepted (ECDSA P-256 SEC1 and PKCS#8, RSA PKCS#1), what is refused and how
//! the refusal names the file (a mismatched key, an expired certificate, a missing or
//! non-PEM file), the copy's mode and owner, and the bounded wait.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use compute_spec::spec::TlsConfig;
use pg_test_support::tls::{CertKit, KeyType, ServerCert};
use stage_kit::runas::PostgresUser;
use stage_kit::tls::{self, KeyKind};

fn config(cert: &ServerCert) -> TlsConfig {
    TlsConfig {
        key_path: cert.key.to_string_lossy().into_owned(),
        cert_path: cert.cert.to_string_lossy().into_owned(),
    }
}

#[test]
fn accepted_pairs_are_copied_with_the_whole_chain_mode_0600_and_the_postgres_owner() {
    let dir = tempfile::tempdir().unwrap();
    let kit = CertKit::new(&dir.path().join("certs"));
    let pgdata = dir.path().join("pgdata");
    std::fs::create_dir(&pgdata).unwrap();
    let user = PostgresUser::for_current_process(None).unwrap();
    for (name, kind, expected) in [
        ("sec1", KeyType::EcSec1, KeyKind::EcdsaP256),
        ("pkcs8", KeyType::EcPkcs8, KeyKind::EcdsaP256),
        ("rsa", KeyType::RsaPkcs1, KeyKind::Rsa),
    ] {
        let cert = kit.server(name, kind, "A1", 2);
        // The file a certificate manager writes: the server certificate, then the CA's.
        let mut chain = std::fs::read(&cert.cert).unwrap();
        chain.extend(std::fs::read(&kit.ca_cert).unwrap());
        std::fs::write(&cert.cert, &chain).unwrap();

        let checked = tls::install(&pgdata, &config(&cert), user.as_ref()).unwrap();
        assert_eq!(checked.kind, expected, "{name}");
        assert_eq!(checked.serial, "A1", "{name}");
        assert_eq!(std::fs::read(pgdata.join("server.crt")).unwrap(), chain);
        assert_eq!(
            std::fs::read(pgdata.join("server.key")).unwrap(),
            std::fs::read(&cert.key).unwrap()
        );
        assert!(tls::is_installed(&pgdata, &checked));
        for file in ["server.crt", "server.key"] {
            let metadata = std::fs::metadata(pgdata.join(file)).unwrap();
            assert_eq!(metadata.mode() & 0o777, 0o600, "{name} {file}");
            if let Some(user) = &user {
                assert_eq!(metadata.uid(), user.uid, "{name} {file}");
            }
        }
        assert!(!pgdata.join("server.tmp").exists());
    }
}

#[test]
fn refusals_name_the_file_and_the_problem_and_leave_pgdata_alone() {
    let dir = tempfile::tempdir().unwrap();
    let kit = CertKit::new(&dir.path().join("certs"));
    let pgdata = dir.path().join("pgdata");
    std::fs::create_dir(&pgdata).unwrap();
    let good = kit.server("good", KeyType::EcSec1, "01", 2);
    let expired = kit.server("expired", KeyType::EcSec1, "02", -1);
    let other_ec = kit.key("other-ec", KeyType::EcSec1);
    let other_rsa = kit.key("other-rsa", KeyType::RsaPkcs1);
    let rsa = kit.server("rsa", KeyType::RsaPkcs1, "03", 2);
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();

    let cases = [
        (
            path(&good.cert),
            path(&other_ec),
            "key_path",
            "does not match",
        ),
        (
            path(&rsa.cert),
            path(&other_rsa),
            "key_path",
            "does not match",
        ),
        // An EC key for an RSA certificate.
        (
            path(&rsa.cert),
            path(&good.key),
            "key_path",
            "does not match",
        ),
        (
            path(&expired.cert),
            path(&expired.key),
            "cert_path",
            "expired",
        ),
        (
            path(&junk),
            path(&good.key),
            "cert_path",
            "not a PEM certificate",
        ),
        (
            path(&good.cert),
            path(&junk),
            "key_path",
            "not an unencrypted PEM private key",
        ),
        (path(&missing), path(&good.key), "cert_path", "cannot read"),
        (path(&good.cert), path(&missing), "key_path", "cannot read"),
        // The certificate given as the key.
        (
            path(&good.cert),
            path(&good.cert),
            "key_path",
            "not an unencrypted PEM",
        ),
    ];
    for (cert_path, key_path, field, problem) in cases {
        let named = if field == "cert_path" {
            &cert_path
        } else {
            &key_path
        };
        let config = TlsConfig {
            key_path: key_path.clone(),
            cert_path: cert_path.clone(),
        };
        let error = tls::install(&pgdata, &config, None).unwrap_err().message;
        assert!(
            error.starts_with(&format!("compute_ctl_config.tls.{field} {named:?}: ")),
            "{error}"
        );
        assert!(error.contains(problem), "{error}");
        assert!(!error.contains("PRIVATE KEY-----"), "{error}");
        assert!(
            std::fs::read_dir(&pgdata).unwrap().next().is_none(),
            "a refused pair wrote into PGDATA ({error})"
        );
    }
}

#[test]
fn the_wait_is_bounded_and_a_pair_that_appears_during_it_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let kit = CertKit::new(&dir.path().join("certs"));
    let pgdata = dir.path().join("pgdata");
    std::fs::create_dir(&pgdata).unwrap();
    let good = kit.server("good", KeyType::EcSec1, "0B", 2);
    let wrong = kit.key("wrong", KeyType::EcSec1);
    let config = TlsConfig {
        key_path: dir.path().join("live.key").to_string_lossy().into_owned(),
        cert_path: good.cert.to_string_lossy().into_owned(),
    };
    std::fs::copy(&wrong, &config.key_path).unwrap();

    let started = Instant::now();
    let error = tls::install_waiting(&pgdata, &config, None, Duration::from_millis(1500))
        .unwrap_err()
        .message;
    let waited = started.elapsed();
    assert!(error.contains("does not match"), "{error}");
    assert!(error.contains("after waiting 1 s"), "{error}");
    assert!(waited >= Duration::from_millis(1500), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");

    // The right key arrives while the stage waits.
    let key_path = config.key_path.clone();
    let right = good.key.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        std::fs::copy(right, key_path).unwrap();
    });
    let checked = tls::install_waiting(&pgdata, &config, None, Duration::from_secs(20)).unwrap();
    writer.join().unwrap();
    assert_eq!(checked.serial, "0B");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn the_digest_follows_either_file() {
    let dir = tempfile::tempdir().unwrap();
    let kit = CertKit::new(&dir.path().join("certs"));
    let first = kit.server("first", KeyType::EcSec1, "01", 2);
    let second = kit.server("second", KeyType::EcSec1, "02", 2);
    let before = tls::digest(&config(&first)).unwrap();
    assert_eq!(before, tls::digest(&config(&first)).unwrap());
    std::fs::copy(&second.key, &first.key).unwrap();
    let key_changed = tls::digest(&config(&first)).unwrap();
    assert_ne!(before, key_changed);
    std::fs::copy(&second.cert, &first.cert).unwrap();
    assert_ne!(key_changed, tls::digest(&config(&first)).unwrap());
}

/// A FIFO given as the certificate or the key (nobody writes it) is refused at each try: the
/// bounded wait ends on time instead of blocking in `open` for ever.
#[test]
fn a_fifo_as_certificate_or_key_does_not_block_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let kit = CertKit::new(&dir.path().join("certs"));
    let good = kit.server("good", KeyType::EcSec1, "0C", 2);
    let pgdata = dir.path().join("pgdata");
    std::fs::create_dir(&pgdata).unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let fifo = fifo.to_string_lossy().into_owned();
    for (field, config) in [
        (
            "cert_path",
            TlsConfig {
                cert_path: fifo.clone(),
                key_path: good.key.to_string_lossy().into_owned(),
            },
        ),
        (
            "key_path",
            TlsConfig {
                cert_path: good.cert.to_string_lossy().into_owned(),
                key_path: fifo.clone(),
            },
        ),
    ] {
        let (done, result) = std::sync::mpsc::channel();
        let pgdata = pgdata.clone();
        let started = Instant::now();
        // On a thread: without the defence it blocks for ever, and the test must still end.
        std::thread::spawn(move || {
            let _ = done.send(tls::install_waiting(
                &pgdata,
                &config,
                None,
                Duration::from_millis(1500),
            ));
        });
        let error = result
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{field} as a FIFO blocked the wait for 10 s"))
            .unwrap_err()
            .message;
        let waited = started.elapsed();
        assert!(
            error.starts_with(&format!("compute_ctl_config.tls.{field} {fifo:?}: ")),
            "{error}"
        );
        assert!(
            error.contains("it is a FIFO, not a regular file"),
            "{error}"
        );
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }
}
