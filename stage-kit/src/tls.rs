//! TLS for Postgres (`compute_ctl_config.tls`, used when the spec's `features` has
//! `tls_experimental`): the certificate and key are checked, then copied into PGDATA as
//! `server.crt` (the whole chain) and `server.key`, mode 0600, owned by the postgres user.
//!
//! What is accepted: a PEM certificate chain whose first certificate is not expired, and a PEM
//! private key matching that certificate's public key — ECDSA P-256 (SEC1 `EC PRIVATE KEY`, as
//! upstream, or PKCS#8 `PRIVATE KEY`) or RSA (PKCS#1 `RSA PRIVATE KEY` or PKCS#8). Upstream
//! accepts only P-256 SEC1 and blocks forever on anything else; here every refusal is an error
//! naming the file and the problem, and [`install_waiting`] gives up after a bounded wait.
//! Each file must be a regular file of at most 1 MiB ([`crate::bounded`]): a FIFO or a device
//! is refused without blocking or reading it.
//!
//! Parsing is the RustCrypto crates' (`x509-cert`, `p256`, `rsa`); nothing is parsed by hand.
//! The key's contents are never logged.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use compute_spec::spec::TlsConfig;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::pkcs1::DecodeRsaPrivateKey;
use sha2::{Digest, Sha256};
use x509_cert::der::Encode;
use x509_cert::Certificate;

use crate::bounded::TLS_FILE_MAX_BYTES;
use crate::runas::PostgresUser;

pub use compute_spec::pgconf::tls::{SERVER_CRT, SERVER_KEY};

/// Why the certificate or key cannot be used; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TlsError {
    /// What is wrong, and with which file.
    pub message: String,
}

fn error(field: &str, path: &str, problem: impl std::fmt::Display) -> TlsError {
    TlsError {
        message: format!("compute_ctl_config.tls.{field} {path:?}: {problem}"),
    }
}

/// The kind of key a checked pair has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA on P-256.
    EcdsaP256,
    /// RSA.
    Rsa,
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyKind::EcdsaP256 => "ECDSA P-256",
            KeyKind::Rsa => "RSA",
        })
    }
}

/// A certificate chain and key that belong together, as read.
#[derive(Clone)]
pub struct Checked {
    /// The certificate file's bytes (the whole chain).
    pub chain: Vec<u8>,
    /// The key file's bytes.
    key: Vec<u8>,
    /// The key kind.
    pub kind: KeyKind,
    /// The first certificate's serial number, hex.
    pub serial: String,
    /// SHA-256 of the certificate and key files (what the watcher compares).
    pub digest: [u8; 32],
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked")
            .field("kind", &self.kind)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

/// SHA-256 over the certificate file and then the key file: changes when either is renewed.
pub fn digest(tls: &TlsConfig) -> Result<[u8; 32], TlsError> {
    let chain = read(&tls.cert_path, "cert_path")?;
    let key = read(&tls.key_path, "key_path")?;
    Ok(digest_of(&chain, &key))
}

fn digest_of(chain: &[u8], key: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((chain.len() as u64).to_le_bytes());
    hasher.update(chain);
    hasher.update(key);
    hasher.finalize().into()
}

/// One of the two files: a regular file of at most [`TLS_FILE_MAX_BYTES`] (a FIFO cannot
/// block us, `/dev/zero` cannot grow our memory).
fn read(path: &str, field: &str) -> Result<Vec<u8>, TlsError> {
    crate::bounded::read_file(Path::new(path), TLS_FILE_MAX_BYTES)
        .map_err(|e| error(field, path, format!("cannot read: {}", e.problem)))
}

/// Reads both files and checks that they are a usable pair (see the module doc).
pub fn check(tls: &TlsConfig) -> Result<Checked, TlsError> {
    let chain = read(&tls.cert_path, "cert_path")?;
    let key = read(&tls.key_path, "key_path")?;
    let cert_error = |problem: String| error("cert_path", &tls.cert_path, problem);
    let certs = Certificate::load_pem_chain(&chain)
        .map_err(|e| cert_error(format!("not a PEM certificate chain: {e}")))?;
    let Some(first) = certs.first() else {
        return Err(cert_error("no certificate in the file".into()));
    };
    let tbs = &first.tbs_certificate;
    let not_after = tbs.validity.not_after.to_system_time();
    if not_after <= SystemTime::now() {
        let ago = SystemTime::now()
            .duration_since(not_after)
            .unwrap_or_default()
            .as_secs();
        return Err(cert_error(format!("the certificate expired {ago} s ago")));
    }
    let spki = tbs
        .subject_public_key_info
        .to_der()
        .map_err(|e| cert_error(format!("cannot encode the public key: {e}")))?;
    let key_text = std::str::from_utf8(&key)
        .map_err(|_| error("key_path", &tls.key_path, "not a PEM file (not UTF-8)"))?;
    let kind = key_matches(key_text, &spki).map_err(|problem| match problem {
        KeyProblem::Unreadable => error(
            "key_path",
            &tls.key_path,
            "not an unencrypted PEM private key for ECDSA P-256 (SEC1 or PKCS#8) or RSA \
             (PKCS#1 or PKCS#8)",
        ),
        KeyProblem::Mismatch(kind) => error(
            "key_path",
            &tls.key_path,
            format!(
                "this {kind} key does not match the public key of the first certificate in {:?}",
                tls.cert_path
            ),
        ),
    })?;
    // Upper-case hex without the sign byte DER adds, as `openssl x509 -serial` prints it.
    let bytes = tbs.serial_number.as_bytes();
    let significant = bytes.iter().position(|&byte| byte != 0).unwrap_or(0);
    let serial = bytes[significant.min(bytes.len().saturating_sub(1))..]
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect();
    let digest = digest_of(&chain, &key);
    Ok(Checked {
        chain,
        key,
        kind,
        serial,
        digest,
    })
}

enum KeyProblem {
    Unreadable,
    Mismatch(KeyKind),
}

/// Parses the key and compares its public half with the certificate's `spki` (DER).
fn key_matches(text: &str, spki: &[u8]) -> Result<KeyKind, KeyProblem> {
    let ec = p256::SecretKey::from_sec1_pem(text)
        .ok()
        .or_else(|| p256::SecretKey::from_pkcs8_pem(text).ok());
    if let Some(secret) = ec {
        let matches = p256::PublicKey::from_public_key_der(spki)
            .is_ok_and(|public| public == secret.public_key());
        return matches
            .then_some(KeyKind::EcdsaP256)
            .ok_or(KeyProblem::Mismatch(KeyKind::EcdsaP256));
    }
    let rsa = rsa::RsaPrivateKey::from_pkcs1_pem(text)
        .ok()
        .or_else(|| rsa::RsaPrivateKey::from_pkcs8_pem(text).ok());
    if let Some(secret) = rsa {
        let matches = rsa::RsaPublicKey::from_public_key_der(spki)
            .is_ok_and(|public| public == secret.to_public_key());
        return matches
            .then_some(KeyKind::Rsa)
            .ok_or(KeyProblem::Mismatch(KeyKind::Rsa));
    }
    Err(KeyProblem::Unreadable)
}

/// Checks the pair and writes `server.crt` and `server.key` into `pgdata` (each written to a
/// temporary file, mode 0600, given to `user`, then renamed over the old one, so a reloading
/// Postgres never reads half a file).
pub fn install(
    pgdata: &Path,
    tls: &TlsConfig,
    user: Option<&PostgresUser>,
) -> Result<Checked, TlsError> {
    let checked = check(tls)?;
    write_private(&pgdata.join(SERVER_KEY), &checked.key, user)?;
    write_private(&pgdata.join(SERVER_CRT), &checked.chain, user)?;
    Ok(checked)
}

/// [`install`], retried every second while the pair is missing or unusable (a certificate
/// manager may still be writing it), until `wait` has passed: then the last error, saying
/// how long it waited.
pub fn install_waiting(
    pgdata: &Path,
    tls: &TlsConfig,
    user: Option<&PostgresUser>,
    wait: Duration,
) -> Result<Checked, TlsError> {
    let started = Instant::now();
    let deadline = crate::deadline::after(wait);
    let mut logged = false;
    loop {
        match install(pgdata, tls, user) {
            Ok(checked) => return Ok(checked),
            Err(problem) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(TlsError {
                        message: format!(
                            "{} (still so after waiting {} s)",
                            problem.message,
                            started.elapsed().as_secs()
                        ),
                    });
                }
                if !logged {
                    tracing::warn!(error = %problem, wait_s = wait.as_secs(), "the TLS certificate is not usable yet; waiting");
                    logged = true;
                }
                std::thread::sleep((deadline - now).min(Duration::from_secs(1)));
            }
        }
    }
}

/// The environment variable holding the bounded wait of [`install_waiting`] (a duration such
/// as `60s`), read by every stage that installs the pair.
pub const WAIT_ENV: &str = "COMPUTE_CTL_TLS_WAIT";

/// The wait [`WAIT_ENV`] gives, 60 s when unset; an error naming the variable when it is not
/// a duration.
pub fn wait_from_env() -> Result<Duration, TlsError> {
    match std::env::var(WAIT_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(Duration::from_secs(60)),
        Err(std::env::VarError::NotUnicode(_)) => Err(TlsError {
            message: format!("{WAIT_ENV} is not UTF-8"),
        }),
        Ok(text) => humantime::parse_duration(&text).map_err(|e| TlsError {
            message: format!("{WAIT_ENV}={text:?} is not a duration such as 60s: {e}"),
        }),
    }
}

/// Whether `pgdata` already holds exactly this pair (nothing to install, nothing to reload).
pub fn is_installed(pgdata: &Path, checked: &Checked) -> bool {
    fs::read(pgdata.join(SERVER_CRT)).is_ok_and(|bytes| bytes == checked.chain)
        && fs::read(pgdata.join(SERVER_KEY)).is_ok_and(|bytes| bytes == checked.key)
}

fn write_private(path: &Path, bytes: &[u8], user: Option<&PostgresUser>) -> Result<(), TlsError> {
    let options = crate::fsutil::FileOptions::mode(0o600)
        .owned_by(user.map(PostgresUser::owner))
        .synced();
    crate::fsutil::replace_file(path, bytes, options).map_err(|error| TlsError {
        message: error.to_string(),
    })
}
