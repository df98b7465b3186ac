//! The `compute-spec` command line: flags → spec source and document parameters. The spec
//! source and instance flags are shared with `compute-ctl` ([`SpecSourceArgs`], [`InstanceArgs`]).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use crate::begin::{start_document, DocumentParams};
use crate::load::{load, SpecSource};
use compute_spec::document::DEFAULT_PRIVILEGED_ROLE;
use compute_spec::error::{ErrorKind, StageError};
use stage_kit::logging::LogFormat;
use stage_kit::stage::{elapsed_ms, finish};

const STAGE: &str = "compute-spec";

/// Where the spec comes from: the flags `compute-spec` and `compute-ctl` share.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct SpecSourceArgs {
    /// Bare spec JSON file (legacy compute_ctl -S).
    #[arg(short = 'S', long = "spec-path")]
    pub spec_path: Option<PathBuf>,
    /// Bare spec as a JSON string (legacy compute_ctl -s).
    #[arg(short = 's', long = "spec")]
    pub spec: Option<String>,
    /// The {spec, compute_ctl_config} envelope file.
    #[arg(short = 'c', long = "config", conflicts_with = "control_plane_uri")]
    pub config: Option<PathBuf>,
    /// Control plane base URL; needs --compute-id.
    #[arg(short = 'p', long = "control-plane-uri", requires = "compute_id")]
    pub control_plane_uri: Option<String>,
    /// The compute's id (also checked against a JWT's compute_id claim by compute-ctl).
    #[arg(short = 'i', long = "compute-id")]
    pub compute_id: Option<String>,
    /// Use the sample spec compiled into the binary (initdb, two roles, two databases).
    #[arg(long)]
    pub embedded_default: bool,
}

impl SpecSourceArgs {
    /// The flag (with its value) naming the source these flags choose, for passing on to
    /// `compute-spec`; empty when none is given. Legacy precedence: --spec, --spec-path,
    /// --config, control plane, embedded. `-i` is not included.
    pub fn to_args(&self) -> Vec<OsString> {
        if let Some(spec) = &self.spec {
            return vec!["-s".into(), spec.into()];
        }
        if let Some(path) = &self.spec_path {
            return vec!["-S".into(), path.into()];
        }
        if let Some(path) = &self.config {
            return vec!["-c".into(), path.into()];
        }
        if let Some(uri) = &self.control_plane_uri {
            return vec!["-p".into(), uri.into()];
        }
        if self.embedded_default {
            return vec!["--embedded-default".into()];
        }
        Vec::new()
    }

    /// The source the flags name; stdin when none is given and stdin is not a terminal.
    pub fn source(&self) -> Result<SpecSource, StageError> {
        if let Some(spec) = &self.spec {
            return Ok(SpecSource::Inline(spec.clone()));
        }
        if let Some(path) = &self.spec_path {
            return Ok(SpecSource::SpecPath(path.clone()));
        }
        if let Some(path) = &self.config {
            return Ok(SpecSource::Config(path.clone()));
        }
        if let (Some(base_url), Some(compute_id)) = (&self.control_plane_uri, &self.compute_id) {
            return Ok(SpecSource::ControlPlane {
                base_url: base_url.clone(),
                compute_id: compute_id.clone(),
                token: std::env::var("NEON_CONTROL_PLANE_TOKEN").unwrap_or_default(),
            });
        }
        if self.embedded_default {
            return Ok(SpecSource::Embedded);
        }
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return Ok(SpecSource::Stdin);
        }
        Err(StageError::new(
            STAGE,
            ErrorKind::Usage,
            "no spec given: pass -S FILE, -s JSON, -c FILE, -p URL -i ID, --embedded-default, \
             or pipe a spec on stdin",
        ))
    }
}

/// The local instance: the flags `compute-spec` and `compute-ctl` share.
#[derive(Clone, Debug, clap::Args)]
pub struct InstanceArgs {
    /// Data directory (rebuilt on every start).
    #[arg(short = 'D', long = "pgdata", value_parser = utf8_path())]
    pub pgdata: PathBuf,
    /// How the tools connect to their own Postgres.
    #[arg(
        short = 'C',
        long = "connstr",
        default_value = "postgresql://cloud_admin@localhost/postgres"
    )]
    pub connstr: String,
    /// The postgres binary.
    #[arg(
        short = 'b',
        long = "pgbin",
        env = "POSTGRES_PATH",
        default_value = "postgres",
        value_parser = utf8_path()
    )]
    pub pgbin: PathBuf,
}

/// A path flag that goes into the JSON compute document: UTF-8 only, else a usage error
/// (exit 2) naming the flag and the path.
pub fn utf8_path() -> impl clap::builder::TypedValueParser<Value = PathBuf> {
    use clap::builder::TypedValueParser;
    clap::builder::OsStringValueParser::new().try_map(|value| {
        value.into_string().map(PathBuf::from).map_err(|bad| {
            format!(
                "{} is not valid UTF-8: the path is written into the JSON compute document, \
                 so it must be UTF-8; rename the directory",
                std::path::Path::new(&bad).display()
            )
        })
    })
}

impl InstanceArgs {
    /// `-D`, `-C` and `-b` with their values, for passing on to `compute-spec`.
    pub fn to_args(&self) -> Vec<OsString> {
        vec![
            "-D".into(),
            self.pgdata.clone().into(),
            "-C".into(),
            self.connstr.clone().into(),
            "-b".into(),
            self.pgbin.clone().into(),
        ]
    }
}

/// Loads a compute spec, validates it and writes the compute document on stdout.
///
/// Exit status: 0 success; 1 run-time failure (control plane unreachable, file unreadable);
/// 2 bad input or usage (invalid spec, bad flags). On failure stdout carries the error
/// envelope {"error": {"stage", "kind", "message", "retryable"}}.
#[derive(Debug, Parser)]
#[command(name = "compute-spec", version = stage_kit::VERSION)]
pub struct Cli {
    /// Where the spec comes from.
    #[command(flatten)]
    pub source: SpecSourceArgs,
    /// The local instance.
    #[command(flatten)]
    pub instance: InstanceArgs,
    /// The privileged role given to users.
    #[arg(long, default_value = DEFAULT_PRIVILEGED_ROLE)]
    pub privileged_role_name: String,
    /// Unix socket directory (default: PGDATA when the socket path fits, else under /tmp).
    #[arg(long, value_parser = utf8_path())]
    pub socket_dir: Option<PathBuf>,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// `--export-trace`.
    #[command(flatten)]
    pub trace: stage_kit::stage::TraceArgs,
}

impl Cli {
    /// The spec source the flags name.
    pub fn spec_source(&self) -> Result<SpecSource, StageError> {
        self.source.source()
    }

    /// The document parameters the flags give.
    pub fn document_params(&self) -> DocumentParams {
        DocumentParams {
            pgdata: self.instance.pgdata.clone(),
            pgbin: self.instance.pgbin.clone(),
            connstr: self.instance.connstr.clone(),
            compute_id: self.source.compute_id.clone(),
            privileged_role_name: self.privileged_role_name.clone(),
            socket_dir: self.socket_dir.clone(),
        }
    }
}

/// Runs the `compute-spec` stage with parsed flags.
pub fn run(cli: &Cli) -> ExitCode {
    let started = Instant::now();
    stage_kit::stage::begin_trace(STAGE, cli.trace);
    let result = cli.spec_source().and_then(|source| {
        let mut span = stage_kit::stage::span("load");
        span.set("source", source.name());
        let loaded = load(&source).inspect_err(|error| span.fail(&error.message))?;
        drop(span);
        start_document(
            STAGE,
            &cli.document_params(),
            loaded,
            source.name(),
            elapsed_ms(started),
        )
    });
    finish(result)
}
