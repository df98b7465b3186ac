//! The `pg-extensions-fetch` binary: reads the compute document on stdin, writes the remote
//! extensions' control files and downloads the preload libraries' archives into the
//! Postgres installation, writes the document with its `extensions` section on stdout.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pg_extensions_fetch::layout::normalize_base_url;
use pg_extensions_fetch::start::Options;
use pg_extensions_fetch::{Limits, STAGE};
use stage_kit::logging::{self, LogFormat};

/// Prepare the spec's remote extensions before Postgres starts (control files, the archives
/// of `shared_preload_libraries`). Exit codes: 0 ok, 1 run-time failure, 2 bad input.
#[derive(Parser)]
#[command(name = "pg-extensions-fetch", version = stage_kit::VERSION)]
struct Cli {
    /// Remote extension storage; archives are
    /// `<URL>/<build tag>/<arch>/<pg major>/extensions/<ext>.tar.zst`. Without it, only the
    /// control files are written.
    #[arg(short = 'r', long, value_parser = normalize_base_url)]
    remote_ext_base_url: Option<String>,
    /// The whole download of one archive (connect, headers, body) must finish within this.
    #[arg(long, default_value = "60s", value_parser = stage_kit::deadline::parse_flag)]
    download_timeout: Duration,
    /// The largest compressed archive accepted, in bytes.
    #[arg(long, default_value_t = 512 << 20)]
    max_download_bytes: u64,
    /// The most file data one archive may unpack to, in bytes.
    #[arg(long, default_value_t = 2 << 30)]
    max_unpacked_bytes: u64,
    /// The most entries (files, directories) one archive may hold.
    #[arg(long, default_value_t = pg_extensions_fetch::archive::DEFAULT_MAX_ENTRIES)]
    max_entries: u64,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// `--export-trace`.
    #[command(flatten)]
    trace: stage_kit::stage::TraceArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    stage_kit::stage::begin_trace(STAGE, cli.trace);
    let options = Options {
        base_url: cli.remote_ext_base_url,
        limits: Limits {
            download_timeout: cli.download_timeout,
            wait_timeout: cli.download_timeout,
            max_download_bytes: cli.max_download_bytes,
            max_unpacked_bytes: cli.max_unpacked_bytes,
            max_entries: cli.max_entries,
        },
    };
    stage_kit::stage::run(STAGE, |document| {
        pg_extensions_fetch::start::run(document, &options)
    })
}
