//! The `pg-basebackup-fetch` binary: reads the compute document on stdin, prepares PGDATA,
//! writes the document with its `basebackup` section on stdout.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pg_basebackup_fetch::template::TemplateCache;
use pg_basebackup_fetch::{RetryPolicy, Timeouts, STAGE};
use stage_kit::logging::{self, LogFormat};

/// Prepare PGDATA (initdb, a Neon pageserver, or a vanilla primary) from the compute document
/// on stdin. Exit codes: 0 ok, 1 run-time failure, 2 bad input.
#[derive(Parser)]
#[command(name = "pg-basebackup-fetch", version = stage_kit::VERSION)]
struct Cli {
    /// Retries after a failed fetch (connection refused or reset, stream cut, a timeout).
    #[arg(long, default_value_t = 10)]
    retries: u32,
    /// Pause before the first retry, in milliseconds.
    #[arg(long, default_value_t = 500)]
    retry_initial_ms: u64,
    /// Factor applied to the pause after each retry.
    #[arg(long, default_value_t = 1.5, value_parser = parse_multiplier)]
    retry_multiplier: f64,
    /// The longest the fetch may go without progress (archive bytes arriving from the
    /// server), over all attempts and the pauses between them, e.g. `2m`: then the start
    /// fails naming the server and the attempts made. A large archive that keeps arriving is
    /// never cut by it.
    #[arg(long, default_value = "2m", value_parser = stage_kit::deadline::parse_flag)]
    no_progress_timeout: Duration,
    /// Time allowed to connect, start up and authenticate, per attempt, e.g. `30s`, `500ms`
    /// (a `connect_timeout` in `upstream_connstring` takes its place for a primary).
    #[arg(long, default_value = "30s", value_parser = stage_kit::deadline::parse_flag)]
    startup_timeout: Duration,
    /// The longest a server may stay silent once connected (before answering the command,
    /// and between two reads of the stream); then the attempt fails and is retried.
    #[arg(long, default_value = "60s", value_parser = stage_kit::deadline::parse_flag)]
    idle_timeout: Duration,
    /// The least number of bytes a basebackup stream must bring in every
    /// `--min-rate-window` once it has started (0: no minimum); a server trickling bytes
    /// just inside `--idle-timeout` then fails the attempt, which is retried.
    #[arg(long, default_value_t = pg_basebackup_fetch::DEFAULT_MIN_RATE_BYTES)]
    min_rate_bytes: u64,
    /// The window of `--min-rate-bytes`.
    #[arg(long, default_value = "60s", value_parser = stage_kit::deadline::parse_flag)]
    min_rate_window: Duration,
    /// How long an unusable TLS certificate or key (`compute_ctl_config.tls`, missing,
    /// unreadable, expired or not matching) is waited for, re-checked every second, before
    /// the start fails naming the file.
    #[arg(long, env = "COMPUTE_CTL_TLS_WAIT", default_value = "60s", value_parser = stage_kit::deadline::parse_flag)]
    tls_wait: Duration,
    /// Where pristine `initdb` clusters are cached for the `initdb` source (default:
    /// /var/cache/compute-tools when writable, else $XDG_CACHE_HOME/compute-tools or
    /// ~/.cache/compute-tools).
    #[arg(long, env = pg_basebackup_fetch::template::CACHE_DIR_ENV, value_name = "DIR")]
    template_cache_dir: Option<std::path::PathBuf>,
    /// Always run `initdb` (no template cache).
    #[arg(long, env = "COMPUTE_TOOLS_NO_TEMPLATE_CACHE")]
    no_template_cache: bool,
    /// How long to wait for another process's lock on PGDATA (`<pgdata>.compute-tools.lock`)
    /// before failing naming it; run by compute-ctl, the stage uses the lock it hands down.
    #[arg(long, default_value = "10s", value_parser = stage_kit::deadline::parse_flag)]
    pgdata_lock_timeout: Duration,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// `--export-trace`.
    #[command(flatten)]
    trace: stage_kit::stage::TraceArgs,
}

/// `--retry-multiplier`: a finite number, zero or more.
fn parse_multiplier(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(multiplier) if multiplier.is_finite() && multiplier >= 0.0 => Ok(multiplier),
        _ => Err(format!(
            "{text:?} is not a retry multiplier; write a number such as 1.5"
        )),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let policy = RetryPolicy {
        retries: cli.retries,
        initial_backoff: Duration::from_millis(cli.retry_initial_ms),
        multiplier: cli.retry_multiplier,
        no_progress: cli.no_progress_timeout,
    };
    let timeouts = Timeouts {
        startup: cli.startup_timeout,
        idle: cli.idle_timeout,
        tls_wait: cli.tls_wait,
        min_rate: (cli.min_rate_bytes > 0 && !cli.min_rate_window.is_zero())
            .then_some((cli.min_rate_bytes, cli.min_rate_window)),
        attempt_cap: Duration::MAX,
    };
    let cache = match (cli.no_template_cache, cli.template_cache_dir) {
        (true, _) => TemplateCache::Off,
        (false, Some(dir)) => TemplateCache::Dir(dir),
        (false, None) => TemplateCache::default_location(),
    };
    let lock_timeout = cli.pgdata_lock_timeout;
    stage_kit::stage::begin_trace(STAGE, cli.trace);
    stage_kit::stage::run(STAGE, |document| {
        // Held until the stage is done; initdb and postgres inherit it.
        let _lock = stage_kit::pgdata_lock::for_stage(STAGE, &document.pgdata, lock_timeout)?;
        pg_basebackup_fetch::run(document, &policy, &timeouts, &cache)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_multiplier_is_a_finite_number_of_zero_or_more() {
        assert_eq!(parse_multiplier("1.5"), Ok(1.5));
        assert_eq!(parse_multiplier("0"), Ok(0.0));
        for bad in ["-1", "nan", "inf", "x"] {
            assert!(parse_multiplier(bad).is_err(), "{bad}");
        }
    }
}
