//! The `pg-catalog` command line: one subcommand per catalog job, the compute document from
//! `--document FILE` or stdin, a result as one JSON line on stdout (the SQL for `schema`), or
//! the error envelope and [`compute_spec::exit_code`]'s code.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use compute_spec::error::{exit_code, ErrorKind, StageError};
use compute_spec::ComputeDocument;
use serde::de::DeserializeOwned;
use stage_kit::bounded::{self, Problem, DOCUMENT_MAX_BYTES};
use stage_kit::logging::LogFormat;
use stage_kit::stage::{fail, write_json, StageInput};

use crate::dump::{self, Limits};
use crate::schema::SchemaError;
use crate::{ext_stats, extensions, grants, listing, CatalogError, Change, STAGE};

/// Catalog work on a running Postgres described by a compute document (its `connstr`,
/// `instance.socket_dir`, `instance.port` and `pgbin`): the jobs behind compute-ctl's
/// `/grants`, `/extensions`, `/database_schema` and `/dbs_and_roles`, and the
/// installed-extensions scan.
///
/// Exit status: 0 success; 1 run-time failure (Postgres unreachable, a statement or pg_dump
/// failed); 2 bad input or usage (a malformed document or request, a database `schema` cannot
/// find). On failure stdout carries the error envelope {"error": {"stage", "kind", "message",
/// "retryable"}} (for `schema`, only when no SQL was written yet).
#[derive(Debug, clap::Parser)]
#[command(name = "pg-catalog", version = stage_kit::VERSION)]
pub struct Cli {
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the compute document comes from.
#[derive(Debug, clap::Args)]
pub struct DocumentArg {
    /// The compute document (`-`: stdin, the default).
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub document: PathBuf,
}

/// The subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Grant a role the privileges it lacks on a schema.
    ///
    /// The request is the `/grants` body: {"database", "schema", "privileges": ["USAGE", …],
    /// "role"}. Prints {"statement"}: the GRANT run, null when nothing was missing.
    Grants {
        /// The request JSON, or `@FILE` to read it from a file (`@-`: stdin).
        request: String,
        /// The compute document.
        #[command(flatten)]
        document: DocumentArg,
    },
    /// Create an extension in `public` at a version, or update it to that version.
    ///
    /// The request is the `/extensions` body: {"extension", "database", "version"}. Prints
    /// {"statement"}: the CREATE or ALTER EXTENSION run, null when that version is installed.
    Extensions {
        /// The request JSON, or `@FILE` to read it from a file (`@-`: stdin).
        request: String,
        /// The compute document.
        #[command(flatten)]
        document: DocumentArg,
    },
    /// Write the database's `pg_dump --schema-only` to stdout.
    ///
    /// The compute's own pg_dump (beside `pgbin`) runs as the admin user, through the socket
    /// directory. A failure after the SQL began exits 1 with the reason on stderr: the output
    /// is then incomplete.
    Schema {
        /// The database to dump.
        #[arg(long)]
        database: String,
        /// pg_dump is killed when it writes nothing for this long.
        #[arg(long, default_value = "60s", value_parser = stage_kit::deadline::parse_flag)]
        idle_timeout: Duration,
        /// pg_dump is killed when the whole dump takes longer.
        #[arg(long, default_value = "30m", value_parser = stage_kit::deadline::parse_flag)]
        timeout: Duration,
        /// The compute document.
        #[command(flatten)]
        document: DocumentArg,
    },
    /// Count the installed extension versions over the databases.
    ///
    /// Every database that accepts connections and is valid (at most 500) is read. Prints
    /// {"extensions": [{"extname", "version", "n_databases", "owned_by_superuser"}]}, the
    /// payload of compute-ctl's `[NEON_EXT_STAT]` log line.
    InstalledExtensions {
        /// The compute document.
        #[command(flatten)]
        document: DocumentArg,
    },
    /// List every role and database.
    ///
    /// Prints {"roles": [{"name", "encrypted_password", "options"}], "databases": [{"name",
    /// "owner", "options", "restrict_conn", "invalid"}]}, password hashes included, as
    /// `/dbs_and_roles`.
    DbsAndRoles {
        /// The compute document.
        #[command(flatten)]
        document: DocumentArg,
    },
}

/// Runs the command; the process's exit code.
pub fn run(command: Command) -> ExitCode {
    let outcome = match command {
        Command::Grants { request, document } => inputs::<grants::GrantsRequest>(
            "grants", &request, &document,
        )
        .and_then(|(document, request)| {
            let statement = grants::set_role_grants(&document, &request).map_err(failed)?;
            Ok(Change { statement })
        }),
        Command::Extensions { request, document } => {
            inputs::<extensions::ExtensionRequest>("extensions", &request, &document).and_then(
                |(document, request)| {
                    let statement = extensions::install(&document, &request, &extensions::Local)
                        .map_err(failed)?;
                    Ok(Change { statement })
                },
            )
        }
        Command::Schema {
            database,
            idle_timeout,
            timeout,
            document,
        } => {
            let limits = Limits {
                idle: idle_timeout,
                total: timeout,
            };
            return match read_document(&document) {
                Ok(document) => schema(&document, &database, limits),
                Err(exit) => exit.code(),
            };
        }
        Command::InstalledExtensions { document } => {
            let scanned = read_document(&document)
                .and_then(|document| ext_stats::scan(&document).map_err(failed));
            return match scanned {
                Ok(extensions) => finish(Ok::<_, Exit>(ext_stats::StatLine {
                    extensions: &extensions,
                })),
                Err(exit) => exit.code(),
            };
        }
        Command::DbsAndRoles { document } => {
            return finish(
                read_document(&document)
                    .and_then(|document| listing::dbs_and_roles(&document).map_err(failed)),
            );
        }
    };
    finish(outcome)
}

/// Why a run ends without a result.
enum Exit {
    /// An error: its envelope goes to stdout.
    Error(StageError),
    /// The document on the input was an earlier stage's error envelope: passed through.
    Upstream(serde_json::Value),
}

impl Exit {
    fn code(self) -> ExitCode {
        match self {
            Exit::Error(error) => fail(error),
            Exit::Upstream(envelope) => {
                tracing::error!("an earlier stage failed; passing its error through");
                write_json(&envelope);
                ExitCode::from(exit_code::RUNTIME)
            }
        }
    }
}

fn finish(outcome: Result<impl serde::Serialize, Exit>) -> ExitCode {
    match outcome {
        Ok(result) if write_json(&result) => ExitCode::from(exit_code::OK),
        Ok(_) => ExitCode::from(exit_code::RUNTIME),
        Err(exit) => exit.code(),
    }
}

fn usage(message: String) -> Exit {
    Exit::Error(StageError::new(STAGE, ErrorKind::Usage, message))
}

/// A catalog error as the envelope's error.
fn failed(error: CatalogError) -> Exit {
    let kind = match error {
        CatalogError::Document(_) => ErrorKind::InvalidDocument,
        CatalogError::Prepare(_) => ErrorKind::Io,
        CatalogError::Connect { .. }
        | CatalogError::Read { .. }
        | CatalogError::Statement { .. } => ErrorKind::Postgres,
    };
    Exit::Error(StageError::new(STAGE, kind, error.to_string()))
}

/// The request argument's text and the document, neither read from stdin twice.
fn inputs<T: DeserializeOwned>(
    command: &str,
    argument: &str,
    document: &DocumentArg,
) -> Result<(ComputeDocument, T), Exit> {
    let (text, origin) = match argument.strip_prefix('@') {
        Some("-") if is_stdin(document) => {
            return Err(usage(
                "the request (@-) and the document cannot both come from stdin: give \
                 --document FILE"
                    .into(),
            ))
        }
        Some("-") => (
            read_text("-", "the request")?,
            "the request on stdin".to_string(),
        ),
        Some(path) => (
            read_text(path, "the request")?,
            format!("the request file {path}"),
        ),
        None => (argument.to_string(), "the request argument".to_string()),
    };
    let request = compute_spec::parse::decode(&text).map_err(|error| {
        usage(format!(
            "{origin} is not a valid request: {error}; `pg-catalog {command} --help` shows its \
             fields"
        ))
    })?;
    Ok((read_document(document)?, request))
}

fn is_stdin(document: &DocumentArg) -> bool {
    document.document.as_os_str() == "-"
}

/// `path`'s text (`-`: stdin); `what` names it in the error. A file that cannot be read is
/// bad input (exit 2), a failing stdin a run-time failure.
fn read_text(path: &str, what: &str) -> Result<String, Exit> {
    if path == "-" {
        return bounded::read_stdin_string(DOCUMENT_MAX_BYTES).map_err(|error| {
            match error.problem {
                Problem::Read(_) => Exit::Error(StageError::new(
                    STAGE,
                    ErrorKind::Io,
                    format!("reading {what} from stdin: {}", error.problem),
                )),
                problem => usage(format!("reading {what} from stdin: {problem}")),
            }
        });
    }
    // A regular file of at most 128 MiB: a FIFO or a device cannot block or grow us.
    bounded::read_file_string(std::path::Path::new(path), DOCUMENT_MAX_BYTES)
        .map_err(|error| usage(format!("cannot read {what} {error}")))
}

/// The compute document of `--document` (or stdin).
fn read_document(document: &DocumentArg) -> Result<ComputeDocument, Exit> {
    let path = document.document.to_string_lossy();
    let text = read_text(&path, "the document (--document)")?;
    match stage_kit::stage::parse_input(STAGE, &text) {
        Ok(StageInput::Document(document)) => Ok(*document),
        Ok(StageInput::Failed(envelope)) => Err(Exit::Upstream(envelope)),
        Err(mut error) if !is_stdin(document) => {
            // parse_input speaks of stdin; name the file instead.
            error.message = format!(
                "--document {path}: {}",
                error.message.replacen("stdin", "the file", 1)
            );
            Err(Exit::Error(error))
        }
        Err(error) => Err(Exit::Error(error)),
    }
}

/// `schema`: the SQL streamed to stdout.
fn schema(document: &ComputeDocument, database: &str, limits: Limits) -> ExitCode {
    let (sink, chunks) = dump::channel(dump::CHUNKS_IN_FLIGHT);
    let first = match crate::schema::dump_schema(document, database, limits, sink) {
        Ok(first) => first,
        Err(error) => {
            let kind = match error {
                SchemaError::NoSuchDatabase { .. } => ErrorKind::Usage,
                SchemaError::Exited { .. } | SchemaError::Failed(_) => ErrorKind::Child,
            };
            return fail(StageError::new(STAGE, kind, error.to_string()));
        }
    };
    let mut stdout = std::io::stdout().lock();
    let mut written = stdout.write_all(&first);
    let mut chunks = chunks;
    while written.is_ok() {
        match chunks.next() {
            Some(Ok(chunk)) => written = stdout.write_all(&chunk),
            Some(Err(why)) => {
                let _ = stdout.flush();
                tracing::error!("{STAGE}: the schema dump of {database:?} is incomplete: {why}");
                return ExitCode::from(exit_code::RUNTIME);
            }
            None => break,
        }
    }
    match written.and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::from(exit_code::OK),
        Err(error) => {
            // Dropping `chunks` tells the dump thread, which kills pg_dump.
            drop(chunks);
            tracing::error!("{STAGE}: writing the schema to stdout: {error}");
            ExitCode::from(exit_code::RUNTIME)
        }
    }
}
