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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgconf::{params_for_start, render};

    fn document(tls: bool, feature: bool) -> ComputeDocument {
        let mut spec: serde_json::Value =
            serde_json::from_str(crate::parse::EMBEDDED_SAMPLE_SPEC).unwrap();
        if feature {
            spec["features"] = serde_json::json!(["tls_experimental"]);
        }
        let mut document: ComputeDocument = serde_json::from_value(serde_json::json!({
            "document_version": 1,
            "spec": spec,
            "pgdata": "/pgdata",
            "pgbin": "/usr/bin/postgres",
            "connstr": "postgresql://cloud_admin@localhost/postgres",
            "instance": {"port": 5432, "socket_dir": "/pgdata"},
        }))
        .unwrap();
        if tls {
            document.compute_ctl_config.tls = Some(TlsConfig {
                key_path: "/tls/key".into(),
                cert_path: "/tls/crt".into(),
            });
        }
        document
    }

    /// TLS needs both the paths and the feature, as upstream; then the file turns `ssl` on
    /// with the copies in PGDATA, after the spec's settings (which cannot turn it off).
    #[test]
    fn ssl_lines_need_the_paths_and_the_feature() {
        for (tls, feature, expected) in [
            (false, false, false),
            (true, false, false),
            (false, true, false),
            (true, true, true),
        ] {
            let document = document(tls, feature);
            let spec = document.spec.clone().unwrap();
            assert_eq!(wanted(&document, &spec).is_some(), expected);
            let text = render(&spec, &params_for_start(&document, &spec)).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            let ssl = lines.iter().position(|line| *line == "ssl=on");
            assert_eq!(ssl.is_some(), expected, "{text}");
            if let Some(ssl) = ssl {
                assert_eq!(lines[ssl + 1], "ssl_cert_file='server.crt'");
                assert_eq!(lines[ssl + 2], "ssl_key_file='server.key'");
                let managed_end = lines
                    .iter()
                    .position(|line| *line == crate::pgconf::MANAGED_END)
                    .unwrap();
                assert!(ssl > managed_end, "{text}");
            }
        }
    }
}
