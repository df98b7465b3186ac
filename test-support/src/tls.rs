//! Test certificates made by the real `openssl` command line: a P-256 CA, server
//! certificates for `localhost`/`127.0.0.1` signed by it with a chosen serial (ECDSA P-256
//! with a SEC1 or a PKCS#8 key, RSA with a PKCS#1 key, an expired one; extended key usage
//! `serverAuth`, which rsyslog's gtls driver checks), certificates with other names or key
//! purposes ([`Names`]), and keys that belong to no certificate. Every file lands in one
//! directory the caller owns.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The kind of server key to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA P-256, `EC PRIVATE KEY` (SEC1), as upstream requires.
    EcSec1,
    /// ECDSA P-256, `PRIVATE KEY` (PKCS#8).
    EcPkcs8,
    /// RSA 2048, `RSA PRIVATE KEY` (PKCS#1).
    RsaPkcs1,
}

/// A certificate authority in a directory, and the server certificates it signed there.
pub struct CertKit {
    dir: PathBuf,
    /// The CA certificate (`sslrootcert` of a verifying client).
    pub ca_cert: PathBuf,
    ca_key: PathBuf,
}

/// A server certificate and its key.
#[derive(Clone, Debug)]
pub struct ServerCert {
    /// The certificate file.
    pub cert: PathBuf,
    /// The key file.
    pub key: PathBuf,
    /// The serial number as `openssl x509 -serial` prints it (upper-case hex).
    pub serial: String,
}

/// What a server certificate names: its subject CN, its subjectAltName and its extended key
/// usage (`openssl x509v3_config` syntax).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// The subject's common name.
    pub common_name: String,
    /// The subjectAltName extension, e.g. `DNS:localhost,IP:127.0.0.1`.
    pub subject_alt_name: String,
    /// The extendedKeyUsage extension, e.g. `serverAuth`.
    pub extended_key_usage: String,
}

impl Names {
    /// A certificate for the DNS name `host` only (CN and subjectAltName), for `serverAuth`.
    pub fn host(host: &str) -> Names {
        Names {
            common_name: host.to_string(),
            subject_alt_name: format!("DNS:{host}"),
            extended_key_usage: "serverAuth".to_string(),
        }
    }
}

impl Default for Names {
    /// `localhost` and `127.0.0.1`, for `serverAuth`.
    fn default() -> Names {
        Names {
            common_name: "localhost".to_string(),
            subject_alt_name: "DNS:localhost,IP:127.0.0.1".to_string(),
            extended_key_usage: "serverAuth".to_string(),
        }
    }
}

/// Runs `openssl` with `args` in `dir`; panics with its stderr on failure.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running openssl {args:?}: {e}"));
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl CertKit {
    /// Makes a P-256 CA (`ca.crt`, `ca.key`) in `dir`.
    pub fn new(dir: &Path) -> CertKit {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {dir:?}: {e}"));
        openssl(
            dir,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "ca.key",
            ],
        );
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-subj",
                "/CN=compute-tools test CA",
                "-days",
                "2",
                "-out",
                "ca.crt",
            ],
        );
        CertKit {
            dir: dir.to_path_buf(),
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
        }
    }

    /// A new key of `kind`, written as `<name>.key`.
    pub fn key(&self, name: &str, kind: KeyType) -> PathBuf {
        let file = format!("{name}.key");
        match kind {
            KeyType::EcSec1 => {
                openssl(
                    &self.dir,
                    &[
                        "ecparam",
                        "-name",
                        "prime256v1",
                        "-genkey",
                        "-noout",
                        "-out",
                        &file,
                    ],
                );
            }
            KeyType::EcPkcs8 => {
                openssl(
                    &self.dir,
                    &[
                        "genpkey",
                        "-algorithm",
                        "EC",
                        "-pkeyopt",
                        "ec_paramgen_curve:P-256",
                        "-out",
                        &file,
                    ],
                );
            }
            KeyType::RsaPkcs1 => {
                openssl(
                    &self.dir,
                    &["genrsa", "-traditional", "-out", &file, "2048"],
                );
            }
        }
        self.dir.join(file)
    }

    /// A server certificate `<name>.crt` for `localhost` and `127.0.0.1` with a new key of
    /// `kind`, serial `serial` (hex digits), valid for `days` days (negative: already
    /// expired).
    pub fn server(&self, name: &str, kind: KeyType, serial: &str, days: i32) -> ServerCert {
        self.server_named(name, kind, serial, days, &Names::default())
    }

    /// [`CertKit::server`] with the names and key purpose of `names`.
    pub fn server_named(
        &self,
        name: &str,
        kind: KeyType,
        serial: &str,
        days: i32,
        names: &Names,
    ) -> ServerCert {
        let key = self.key(name, kind);
        let csr = format!("{name}.csr");
        let cert = format!("{name}.crt");
        let ext = format!("{name}.ext");
        std::fs::write(
            self.dir.join(&ext),
            format!(
                "subjectAltName={}\nextendedKeyUsage={}\n",
                names.subject_alt_name, names.extended_key_usage
            ),
        )
        .unwrap_or_else(|e| panic!("writing {ext}: {e}"));
        let key_arg = key.to_string_lossy().into_owned();
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-key",
                &key_arg,
                "-subj",
                &format!("/CN={}", names.common_name),
                "-out",
                &csr,
            ],
        );
        let ca_cert = self.ca_cert.to_string_lossy().into_owned();
        let ca_key = self.ca_key.to_string_lossy().into_owned();
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_cert,
                "-CAkey",
                &ca_key,
                "-set_serial",
                &format!("0x{serial}"),
                "-days",
                &days.to_string(),
                "-extfile",
                &ext,
                "-out",
                &cert,
            ],
        );
        let printed = openssl(&self.dir, &["x509", "-in", &cert, "-noout", "-serial"]);
        ServerCert {
            cert: self.dir.join(cert),
            key,
            serial: printed.trim().trim_start_matches("serial=").to_string(),
        }
    }
}

/// The serial number of the certificate the Postgres server at `127.0.0.1:port` presents
/// (`openssl s_client -starttls postgres`), or `None` when no TLS handshake happened.
pub fn served_serial(port: u16) -> Option<String> {
    let output = Command::new("openssl")
        .args(["s_client", "-starttls", "postgres", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let begin = text.find("-----BEGIN CERTIFICATE-----")?;
    let end = text[begin..].find("-----END CERTIFICATE-----")? + begin + 25;
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    use std::io::Write;
    child
        .stdin
        .take()?
        .write_all(text[begin..end].as_bytes())
        .ok()?;
    let output = child.wait_with_output().ok()?;
    let serial = String::from_utf8_lossy(&output.stdout);
    Some(serial.trim().trim_start_matches("serial=").to_string())
}
