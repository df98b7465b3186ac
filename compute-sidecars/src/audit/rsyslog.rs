//! The two rsyslog configurations (pure text; every value was checked by
//! [`super::target`] before it gets here, so none can end a string constant).
//!
//! * [`audit_conf`] (upstream's §11.2): imfile reads pgauditlogtofile's files in
//!   `<PGDATA>/log`, each record (a line starting with its timestamp; continuation lines
//!   belong to it) becomes a JSON payload with `endpoint_id`, `project_id` and `msg` in an
//!   RFC 5424 frame, forwarded over TCP (optionally TLS), and kept out of every other rule.
//! * [`export_conf`] (§11.3): messages of program `postgres` forwarded over TCP in
//!   `RSYSLOG_SyslogProtocol23Format`.

use super::target::Target;

/// What the audit configuration needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditConf {
    /// PGDATA (checked for rsyslog).
    pub pgdata: String,
    /// rsyslog's work directory, where imfile keeps its state (checked).
    pub work_dir: String,
    /// The receiver.
    pub target: Target,
    /// TLS (`AUDIT_LOGGING_TLS_ENDPOINT`): the CA bundle the receiver's certificate is
    /// checked against (checked); `None`: plain TCP.
    pub tls_ca_file: Option<String>,
    /// `endpoint_id` of the payload (checked).
    pub endpoint_id: String,
    /// `project_id` of the payload (checked).
    pub project_id: String,
}

/// A record starts with pgauditlogtofile's timestamp, `YYYY-MM-DD HH:MM:SS.mmm <zone>,`.
/// (Upstream's pattern takes only the zone `GMT`; any zone name is taken here, so a compute
/// whose `log_timezone` is not GMT still forwards one record per event.)
const RECORD_START: &str =
    "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{3} [A-Za-z0-9+-]+,";

/// `compute_audit_rsyslog.conf`.
pub fn audit_conf(conf: &AuditConf) -> String {
    let AuditConf {
        pgdata,
        work_dir,
        target,
        tls_ca_file,
        endpoint_id,
        project_id,
    } = conf;
    let mut text = format!(
        "# Written by compute_ctl at start for the compute's audit_log_level: the pgaudit\n\
         # records of {pgdata}/log go to {host}:{port}. Rewritten at every start.\n\
         module(load=\"imfile\")\n\
         global(workDirectory=\"{work_dir}\")\n",
        host = target.host,
        port = target.port,
    );
    if let Some(ca_file) = tls_ca_file {
        text.push_str(&format!(
            "global(DefaultNetstreamDriverCAFile=\"{ca_file}\")\n"
        ));
    }
    text.push_str(&format!(
        "input(type=\"imfile\" File=\"{pgdata}/log/*.log\" Tag=\"pgaudit_log\"\n      \
         Severity=\"info\" Facility=\"local5\" readTimeout=\"1\"\n      \
         startmsg.regex=\"{RECORD_START}\")\n\
         template(name=\"PgAuditLog\" type=\"string\"\n         \
         string=\"<%PRI%>1 %TIMESTAMP:::date-rfc3339% %HOSTNAME% - - - - %$.json_log%\")\n\
         if $syslogtag == \"pgaudit_log\" then {{\n    \
         set $.json_log!endpoint_id = \"{endpoint_id}\";\n    \
         set $.json_log!project_id = \"{project_id}\";\n    \
         set $.json_log!msg = $msg;\n    \
         action(type=\"omfwd\" target=\"{host}\" port=\"{port}\" protocol=\"tcp\"\n           \
         template=\"PgAuditLog\" queue.type=\"linkedList\" queue.size=\"1000\"\n           \
         action.resumeRetryCount=\"10\"",
        host = target.host,
        port = target.port,
    ));
    if tls_ca_file.is_some() {
        text.push_str(&format!(
            "\n           StreamDriver=\"gtls\" StreamDriverMode=\"1\" \
             StreamDriverAuthMode=\"x509/name\"\n           \
             StreamDriverPermittedPeers=\"{host}\"\n           \
             streamdriver.CheckExtendedKeyPurpose=\"on\" \
             streamdriver.PermitExpiredCerts=\"off\"",
            host = target.host
        ));
    }
    text.push_str(")\n    stop\n}\n");
    text
}

/// `postgres_logs.conf`: Postgres's messages go to the collector and no further (`stop`, as
/// upstream's rule): the host's later rules never see them.
pub fn export_conf(target: &Target) -> String {
    format!(
        "# Written by compute_ctl from the spec's logs_export_host: Postgres's syslog\n\
         # messages go to {host}:{port}.\n\
         if $programname == \"postgres\" then {{\n    \
         action(type=\"omfwd\" target=\"{host}\" port=\"{port}\" protocol=\"tcp\"\n           \
         template=\"RSYSLOG_SyslogProtocol23Format\" action.resumeRetryCount=\"3\"\n           \
         queue.type=\"linkedList\" queue.size=\"1000\")\n    \
         stop\n\
         }}\n",
        host = target.host,
        port = target.port,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(tls: bool) -> AuditConf {
        AuditConf {
            pgdata: "/var/db/postgres/compute".into(),
            work_dir: "/var/log/rsyslog".into(),
            target: Target {
                host: "audit.example.com".into(),
                port: 6514,
            },
            tls_ca_file: tls.then(|| "/etc/ssl/certs/ca-certificates.crt".into()),
            endpoint_id: "ep-cool-darkness-123456".into(),
            project_id: "cool-darkness-123456".into(),
        }
    }

    #[test]
    fn plain_audit_conf_is_exact() {
        let expected = r#"# Written by compute_ctl at start for the compute's audit_log_level: the pgaudit
# records of /var/db/postgres/compute/log go to audit.example.com:6514. Rewritten at every start.
module(load="imfile")
global(workDirectory="/var/log/rsyslog")
input(type="imfile" File="/var/db/postgres/compute/log/*.log" Tag="pgaudit_log"
      Severity="info" Facility="local5" readTimeout="1"
      startmsg.regex="^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{3} [A-Za-z0-9+-]+,")
template(name="PgAuditLog" type="string"
         string="<%PRI%>1 %TIMESTAMP:::date-rfc3339% %HOSTNAME% - - - - %$.json_log%")
if $syslogtag == "pgaudit_log" then {
    set $.json_log!endpoint_id = "ep-cool-darkness-123456";
    set $.json_log!project_id = "cool-darkness-123456";
    set $.json_log!msg = $msg;
    action(type="omfwd" target="audit.example.com" port="6514" protocol="tcp"
           template="PgAuditLog" queue.type="linkedList" queue.size="1000"
           action.resumeRetryCount="10")
    stop
}
"#;
        assert_eq!(audit_conf(&conf(false)), expected);
    }

    #[test]
    fn tls_audit_conf_is_exact() {
        let text = audit_conf(&conf(true));
        let expected_head = "module(load=\"imfile\")\n\
             global(workDirectory=\"/var/log/rsyslog\")\n\
             global(DefaultNetstreamDriverCAFile=\"/etc/ssl/certs/ca-certificates.crt\")\n\
             input(";
        assert!(text.contains(expected_head), "{text}");
        let expected_tail = r#"           action.resumeRetryCount="10"
           StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/name"
           StreamDriverPermittedPeers="audit.example.com"
           streamdriver.CheckExtendedKeyPurpose="on" streamdriver.PermitExpiredCerts="off")
    stop
}
"#;
        assert!(text.ends_with(expected_tail), "{text}");
    }

    #[test]
    fn export_conf_is_exact() {
        let target = Target {
            host: "10.0.0.7".into(),
            port: 10514,
        };
        let expected = r#"# Written by compute_ctl from the spec's logs_export_host: Postgres's syslog
# messages go to 10.0.0.7:10514.
if $programname == "postgres" then {
    action(type="omfwd" target="10.0.0.7" port="10514" protocol="tcp"
           template="RSYSLOG_SyslogProtocol23Format" action.resumeRetryCount="3"
           queue.type="linkedList" queue.size="1000")
    stop
}
"#;
        assert_eq!(export_conf(&target), expected);
    }
}
