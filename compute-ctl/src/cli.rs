//! The `compute_ctl` command line (upstream's current and legacy flags) and the validated
//! [`Params`] built from it once; nothing after [`Cli::into_params`] reads the flags.

use std::ffi::OsString;
use std::net::IpAddr;
use std::time::Duration;

use clap::Parser;
use compute_spec::logging::LogFormat;

/// The compute node controller: loads the spec, chains the stage binaries (compute-spec,
/// pg-sync-safekeepers, pg-basebackup-fetch, pg-supervise, pg-reconcile) as child processes,
/// and serves the HTTP API until Postgres stops.
///
/// Each stage is found at $COMPUTE_CTL_STAGE_<NAME> (e.g. COMPUTE_CTL_STAGE_PG_RECONCILE), else
/// beside this executable, else on PATH.
///
/// Exit status: Postgres's exit code (1 if it died by a signal); 1 after a failed start;
/// 2 on bad flags.
#[derive(Debug, Parser)]
#[command(name = "compute_ctl", version = compute_spec::VERSION)]
pub struct Cli {
    /// -D, -C, -b: the local instance (shared with compute-spec).
    #[command(flatten)]
    pub instance: compute_spec::cli::InstanceArgs,
    /// -S, -s, -c, -p, -i, --embedded-default: the spec source (shared with compute-spec).
    #[command(flatten)]
    pub source: compute_spec::cli::SpecSourceArgs,
    /// The privileged role given to users.
    #[arg(long)]
    pub privileged_role_name: Option<String>,
    /// Legacy single HTTP port; an alias of --external-http-port.
    #[arg(long, conflicts_with = "external_http_port")]
    pub http_port: Option<u16>,
    /// External HTTP API port (JWT-authenticated when keys are configured).
    #[arg(long)]
    pub external_http_port: Option<u16>,
    /// Internal HTTP API port (no authentication; 0 disables it).
    #[arg(long, default_value_t = 3081)]
    pub internal_http_port: u16,
    /// Address both HTTP servers listen on (default: 127.0.0.1; 0.0.0.0 when JWT keys are set).
    #[arg(long)]
    pub http_listen: Option<IpAddr>,
    /// How long to keep serving HTTP after a failed start before exiting (humantime or seconds).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub failed_grace: Duration,
    /// vm-monitor cgroup (AUTOSCALING only).
    #[arg(long, default_value = "neon-postgres")]
    pub cgroup: String,
    /// vm-monitor's Postgres connection (AUTOSCALING only).
    #[arg(long)]
    pub filecache_connstr: Option<String>,
    /// vm-monitor websocket listen address (AUTOSCALING only).
    #[arg(long, default_value = "0.0.0.0:10301")]
    pub vm_monitor_addr: String,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// Parses `30s`, `1500ms` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map(|at| text.split_at(at))
        .ok_or_else(|| format!("{text:?} is not a duration; write e.g. 30s or 500ms"))?;
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; write e.g. 30s or 500ms"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" | "min" => Ok(Duration::from_secs(number * 60)),
        _ => Err(format!("{text:?}: unknown unit {unit:?}; use ms, s or m")),
    }
}

/// Validated parameters for one run of the controller.
#[derive(Clone, Debug)]
pub struct Params {
    /// Flags passed to `compute-spec` (the spec source and the document parameters).
    pub spec_args: Vec<OsString>,
    /// Flags passed to `compute-spec` when the spec comes on its stdin (after /configure).
    pub document_args: Vec<OsString>,
    /// Whether the command line names a spec source.
    pub has_spec_source: bool,
    /// The compute id, for JWT checks.
    pub compute_id: Option<String>,
    /// External API port.
    pub external_port: u16,
    /// Internal API port; `None` disables it.
    pub internal_port: Option<u16>,
    /// Listen address chosen on the command line.
    pub http_listen: Option<IpAddr>,
    /// Grace period after a failed start.
    pub failed_grace: Duration,
    /// Log format, passed on to the stages.
    pub log_format: LogFormat,
    /// vm-monitor flags (used only with AUTOSCALING).
    pub vm_monitor: VmMonitorParams,
}

/// What the vm-monitor integration point needs.
#[derive(Clone, Debug)]
pub struct VmMonitorParams {
    /// The cgroup to watch.
    pub cgroup: String,
    /// Postgres connection for file-cache sizing.
    pub pgconnstr: Option<String>,
    /// Websocket listen address.
    pub addr: String,
}

impl Cli {
    /// Builds the validated parameters.
    pub fn into_params(self) -> Params {
        let mut document_args: Vec<OsString> = self.instance.to_args();
        if let Some(id) = &self.source.compute_id {
            document_args.extend(["-i".into(), id.into()]);
        }
        if let Some(name) = &self.privileged_role_name {
            document_args.extend(["--privileged-role-name".into(), name.into()]);
        }
        document_args.extend([
            "--log-format".into(),
            log_format_name(self.log_format).into(),
        ]);
        let source_args = self.source.to_args();
        let has_spec_source = !source_args.is_empty();
        let mut spec_args = document_args.clone();
        spec_args.extend(source_args);
        Params {
            spec_args,
            document_args,
            has_spec_source,
            compute_id: self.source.compute_id,
            external_port: self.http_port.or(self.external_http_port).unwrap_or(3080),
            internal_port: (self.internal_http_port != 0).then_some(self.internal_http_port),
            http_listen: self.http_listen,
            failed_grace: self.failed_grace,
            log_format: self.log_format,
            vm_monitor: VmMonitorParams {
                cgroup: self.cgroup,
                pgconnstr: self.filecache_connstr,
                addr: self.vm_monitor_addr,
            },
        }
    }
}

/// The `--log-format` value for a format.
pub fn log_format_name(format: LogFormat) -> &'static str {
    match format {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_example_parses() {
        let cli = Cli::try_parse_from([
            "compute_ctl",
            "-D",
            "/data",
            "-C",
            "postgresql://cloud_admin@localhost/postgres",
            "-S",
            "spec.json",
            "-b",
            "/usr/lib/postgresql/15/bin/postgres",
            "--http-port",
            "3090",
        ])
        .unwrap();
        let params = cli.into_params();
        assert_eq!(params.external_port, 3090);
        assert_eq!(params.internal_port, Some(3081));
        assert!(params.has_spec_source);
        assert!(params.spec_args.contains(&OsString::from("-S")));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("x").is_err());
    }
}
