//! The `postgresql.conf` lines of TLS (upstream's §9): with `compute_ctl_config.tls` given and
//! the spec's `features` holding `tls_experimental`, `ssl = on` and the two files in PGDATA
//! that the stages copy the certificate chain and key to. TLS is offered, never required
//! (`pg_hba.conf` keeps its `host` line).

use crate::document::ComputeDocument;
use crate::spec::{ComputeFeature, ComputeSpec, TlsConfig};

/// The certificate chain's file name in PGDATA (`ssl_cert_file`).
pub const SERVER_CRT: &str = "server.crt";
/// The private key's file name in PGDATA (`ssl_key_file`).
pub const SERVER_KEY: &str = "server.key";

/// The TLS configuration a start of `spec` in `document` uses: `compute_ctl_config.tls` when
/// the spec has the `tls_experimental` feature, else `None`.
pub fn wanted<'a>(document: &'a ComputeDocument, spec: &ComputeSpec) -> Option<&'a TlsConfig> {
    if !spec.features.contains(&ComputeFeature::TlsExperimental) {
        return None;
    }
    document.compute_ctl_config.tls.as_ref()
}

/// The settings lines (values quoted) that turn TLS on with the files in PGDATA.
pub fn lines() -> Vec<(String, String)> {
    vec![
        ("ssl".into(), "on".into()),
        ("ssl_cert_file".into(), format!("'{SERVER_CRT}'")),
        ("ssl_key_file".into(), format!("'{SERVER_KEY}'")),
    ]
}
