//! The `compute_ctl` command line (upstream's current and legacy flags) and the validated
//! [`Params`] built from it once; nothing after [`Cli::into_params`] reads the flags.

use std::ffi::OsString;
use std::net::IpAddr;
use std::time::Duration;

use clap::Parser;
use stage_kit::deadline::parse_flag as parse_duration;
use stage_kit::logging::LogFormat;

/// The compute node controller: loads the spec, chains the stage binaries (compute-spec,
/// pg-sync-safekeepers, pg-basebackup-fetch, pg-supervise, pg-reconcile) as child processes,
/// and serves the HTTP API until Postgres stops.
///
/// Each stage is found at `$COMPUTE_CTL_STAGE_<NAME>` (e.g. COMPUTE_CTL_STAGE_PG_RECONCILE), else
/// beside this executable, else on PATH.
///
/// Exit status: Postgres's exit code (1 if it died by a signal); 1 after a failed start;
/// 2 on bad flags.
#[derive(Debug, Parser)]
#[command(name = "compute_ctl", version = stage_kit::VERSION)]
pub struct Cli {
    /// -D, -C, -b: the local instance (shared with compute-spec).
    #[command(flatten)]
    pub instance: compute_spec_cli::cli::InstanceArgs,
    /// -S, -s, -c, -p, -i, --embedded-default: the spec source (shared with compute-spec).
    #[command(flatten)]
    pub source: compute_spec_cli::cli::SpecSourceArgs,
    /// The privileged role given to users.
    #[arg(long)]
    pub privileged_role_name: Option<String>,
    /// The external HTTP API port, as older launchers pass it (with --lakebase-mode true the
    /// internal port is this + 1, as upstream).
    #[arg(long, conflicts_with_all = ["external_http_port", "internal_http_port"])]
    pub http_port: Option<u16>,
    /// External HTTP API port (JWT-authenticated when keys are configured) [default: 3080].
    #[arg(long)]
    pub external_http_port: Option<u16>,
    /// Internal HTTP API port (no authentication; 0 disables it) [default: 3081].
    #[arg(long)]
    pub internal_http_port: Option<u16>,
    /// Address the external API listens on (default: [::] with JWT keys, which takes IPv4
    /// too, or 0.0.0.0 where IPv6 is off; else 127.0.0.1; a non-loopback address needs keys).
    #[arg(long)]
    pub http_listen: Option<IpAddr>,
    /// Address the internal API (unauthenticated) listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub internal_http_listen: IpAddr,
    /// How long to keep serving HTTP after a failed start before exiting (humantime or seconds).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub failed_grace: Duration,
    /// How long to wait for another process's lock on PGDATA (`<pgdata>.compute-tools.lock`,
    /// e.g. a compute still exiting) before exiting non-zero naming it.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub pgdata_lock_timeout: Duration,
    /// How long the HTTP API stays up after a fast `/terminate` (an immediate one: at most
    /// 300 ms), answering 201 to repeated calls, as upstream.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub terminated_grace: Duration,
    /// Deadline for a request's headers, and for the next request on an idle keep-alive
    /// connection.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub http_header_timeout: Duration,
    /// Deadline for a whole request body.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub http_body_timeout: Duration,
    /// Base URL of the remote extension server (upstream's -r).
    #[arg(short = 'r', long, value_parser = parse_base_url)]
    pub remote_ext_base_url: Option<String>,
    /// Development mode: a shutdown signal spares pgbouncer and local_proxy.
    #[arg(long)]
    pub dev: bool,
    /// Seconds between scans of installed extensions.
    #[arg(long, default_value_t = 3600)]
    pub installed_extensions_collection_interval: u64,
    /// Lakebase only: seconds allowed from init to running (ignored otherwise, as upstream).
    #[arg(long)]
    pub pg_init_timeout: Option<u64>,
    /// Databricks Lakebase mode (`--lakebase-mode true`); accepted, not supported.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub lakebase_mode: bool,
    /// How often the TLS certificate and key (`compute_ctl_config.tls`) are checked for a
    /// change, which reconfigures Postgres with the new pair.
    #[arg(long, env = "COMPUTE_CTL_TLS_WATCH_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub tls_watch_interval: Duration,
    /// Before waiting for a spec, warm the VM's memory up (upstream's pooled-VM prewarm: a
    /// throwaway Postgres beside PGDATA with 512 MiB of shared_buffers, started, stopped,
    /// removed): `auto` when `AUTOSCALING` is set (a NeonVM, where it makes the hypervisor
    /// hand the memory over), `always` (upstream: every start without a spec), `never`.
    /// Never in lakebase mode (as upstream).
    #[arg(long, value_enum, default_value = "auto")]
    pub warm_up_memory: WarmUpMemory,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// --resize-swap-on-bind, --cgroup, --pgbouncer-*, --rsyslog-*, …: the sidecars' flags.
    #[command(flatten)]
    pub sidecars: compute_sidecars::flags::SidecarArgs,
}

/// `--warm-up-memory`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WarmUpMemory {
    /// When `AUTOSCALING` is set.
    Auto,
    /// On every start without a spec (upstream).
    Always,
    /// Not at all.
    Never,
}

/// `-r`: one trailing `/`, no query string (as upstream).
fn parse_base_url(text: &str) -> Result<String, String> {
    if text.contains('?') {
        return Err(format!(
            "{text:?}: the remote extension URL cannot have a query string"
        ));
    }
    if !(text.starts_with("http://") || text.starts_with("https://")) {
        return Err(format!("{text:?}: expected an http:// or https:// URL"));
    }
    Ok(format!("{}/", text.trim_end_matches('/')))
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
    /// Listen address of the external API chosen on the command line.
    pub http_listen: Option<IpAddr>,
    /// Listen address of the internal API.
    pub internal_http_listen: IpAddr,
    /// Grace period after a failed start.
    pub failed_grace: Duration,
    /// How long HTTP stays up after a fast `/terminate`.
    pub terminated_grace: Duration,
    /// The HTTP servers' deadlines.
    pub http_deadlines: compute_http::Deadlines,
    /// Whether the spec source can be read again (`-c` or `-p`) by `/refresh_configuration`.
    pub refreshable_source: bool,
    /// Upstream flags accepted now and acted on by features still to come.
    pub deferred: DeferredFlags,
    /// Log format, passed on to the stages.
    pub log_format: LogFormat,
    /// `--tls-watch-interval`.
    pub tls_watch_interval: Duration,
    /// Whether a start without a spec warms the VM's memory up first (`--warm-up-memory`).
    pub warm_up_memory: bool,
    /// The sidecars' parameters (pgbouncer, local_proxy, the VM tools, rsyslog, vm-monitor).
    pub sidecars: compute_sidecars::flags::SidecarParams,
}

/// Upstream flags that are not one subsystem's parameters: `-r` (remote extensions),
/// `--dev` (termination), the installed-extensions scan's interval ([`crate::ext_stats`]),
/// and the lakebase flags, parsed and kept but not acted on.
#[derive(Clone, Debug, Default)]
pub struct DeferredFlags {
    /// `-r`.
    pub remote_ext_base_url: Option<String>,
    /// `--dev`.
    pub dev: bool,
    /// `--resize-swap-on-bind`.
    pub resize_swap_on_bind: bool,
    /// `--set-disk-quota-for-fs`.
    pub set_disk_quota_for_fs: Option<String>,
    /// `--installed-extensions-collection-interval` (seconds; [`crate::ext_stats`]).
    pub installed_extensions_collection_interval: u64,
    /// `--pg-init-timeout`.
    pub pg_init_timeout: Option<u64>,
    /// `--lakebase-mode`.
    pub lakebase_mode: bool,
}

impl DeferredFlags {
    /// Logs once, at start, each given flag that is accepted but not acted on yet.
    pub fn log(&self) {
        let mut given = Vec::new();
        // `--remote-ext-base-url` is acted on (remote_ext.rs, pg-extensions-fetch), `--dev`
        // by the controller's termination (pgbouncer and local_proxy spared on a signal).
        if self.pg_init_timeout.is_some() {
            given.push("--pg-init-timeout (lakebase only)");
        }
        if self.lakebase_mode {
            given.push("--lakebase-mode true");
        }
        if !given.is_empty() {
            tracing::warn!(
                flags = %given.join(", "),
                "accepted and not acted on yet: their features are not built"
            );
        }
        if std::env::var_os("INSTANCE_ID").is_some() {
            tracing::warn!(
                "INSTANCE_ID is set: unlike upstream, compute-ctl keeps authenticating requests"
            );
        }
    }
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
        let refreshable_source = matches!(
            source_args.first().and_then(|flag| flag.to_str()),
            Some("-c" | "-p")
        );
        let (external_port, internal_port) = match self.http_port {
            Some(port) if self.lakebase_mode => (port, port.checked_add(1).unwrap_or(0)),
            Some(port) => (port, 3081),
            None => (
                self.external_http_port.unwrap_or(3080),
                self.internal_http_port.unwrap_or(3081),
            ),
        };
        let mut spec_args = document_args.clone();
        spec_args.extend(source_args);
        Params {
            spec_args,
            document_args,
            has_spec_source,
            compute_id: self.source.compute_id,
            external_port,
            internal_port: (internal_port != 0).then_some(internal_port),
            http_listen: self.http_listen,
            internal_http_listen: self.internal_http_listen,
            failed_grace: self.failed_grace,
            terminated_grace: self.terminated_grace,
            http_deadlines: compute_http::Deadlines {
                header: self.http_header_timeout,
                body: self.http_body_timeout,
            },
            refreshable_source,
            deferred: DeferredFlags {
                remote_ext_base_url: self.remote_ext_base_url,
                dev: self.dev,
                resize_swap_on_bind: self.sidecars.resize_swap_on_bind,
                set_disk_quota_for_fs: self.sidecars.set_disk_quota_for_fs.clone(),
                installed_extensions_collection_interval: self
                    .installed_extensions_collection_interval,
                pg_init_timeout: self.pg_init_timeout,
                lakebase_mode: self.lakebase_mode,
            },
            log_format: self.log_format,
            tls_watch_interval: self.tls_watch_interval,
            warm_up_memory: !self.lakebase_mode
                && match self.warm_up_memory {
                    WarmUpMemory::Always => true,
                    WarmUpMemory::Never => false,
                    WarmUpMemory::Auto => std::env::var_os("AUTOSCALING").is_some(),
                },
            sidecars: self.sidecars.into_params(),
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

    /// `--help` names the address the code binds with keys (`compute/http_start.rs`).
    #[test]
    fn the_help_names_the_default_listen_address() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        let listen = help
            .split("--http-listen")
            .nth(1)
            .expect("an --http-listen entry");
        assert!(listen.contains("default: [::] with JWT keys"), "{listen}");
    }

    #[test]
    fn every_upstream_flag_is_accepted() {
        let cli = Cli::try_parse_from([
            "compute_ctl",
            "-D",
            "/data",
            "-C",
            "postgresql://cloud_admin@localhost/postgres",
            "-b",
            "/usr/lib/postgresql/15/bin/postgres",
            "-c",
            "/config.json",
            "-i",
            "compute-1",
            "-r",
            "http://ext-server:8080//",
            "--dev",
            "--resize-swap-on-bind",
            "--set-disk-quota-for-fs",
            "/var/db/postgres",
            "--installed-extensions-collection-interval",
            "60",
            "--pg-init-timeout",
            "10",
            "--lakebase-mode",
            "false",
            "--external-http-port",
            "3080",
            "--internal-http-port",
            "3081",
            "--privileged-role-name",
            "neon_superuser",
            "--cgroup",
            "neon-postgres",
            "--vm-monitor-addr",
            "0.0.0.0:10301",
        ])
        .unwrap();
        let params = cli.into_params();
        assert_eq!(
            params.deferred.remote_ext_base_url.as_deref(),
            Some("http://ext-server:8080/")
        );
        assert!(params.deferred.dev && params.deferred.resize_swap_on_bind);
        assert!(params.refreshable_source);
        assert_eq!(
            (params.external_port, params.internal_port),
            (3080, Some(3081))
        );

        let lakebase = Cli::try_parse_from([
            "compute_ctl",
            "-D",
            "/d",
            "--http-port",
            "4000",
            "--lakebase-mode",
            "true",
        ])
        .unwrap()
        .into_params();
        assert_eq!(
            (lakebase.external_port, lakebase.internal_port),
            (4000, Some(4001))
        );

        for conflicting in [
            &["--http-port", "1", "--external-http-port", "2"][..],
            &["--http-port", "1", "--internal-http-port", "2"][..],
            &["-r", "http://x/?a=b"][..],
            &["-c", "/a", "-p", "http://cp"][..],
        ] {
            let mut args = vec!["compute_ctl", "-D", "/d"];
            args.extend_from_slice(conflicting);
            assert!(Cli::try_parse_from(&args).is_err(), "{conflicting:?}");
        }
    }
}
