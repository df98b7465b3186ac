//! Obtaining a spec: a file, inline JSON, the `{spec, compute_ctl_config}` envelope, stdin,
//! the embedded sample, or a control plane.

use std::path::{Path, PathBuf};
use std::time::Duration;

use compute_spec::error::{ErrorKind, PeerRequest, StageError};
use compute_spec::parse::{decode, parse_any, parse_bare, parse_envelope, EMBEDDED_SAMPLE_SPEC};
use compute_spec::spec::{ControlPlaneComputeStatus, ControlPlaneSpecResponse};

use compute_spec::parse::LoadedSpec;
use stage_kit::bounded::{self, Problem, SPEC_MAX_BYTES};
use stage_kit::retry::{Backoff, Policy, Retry, Stop};

const STAGE: &str = "compute-spec";

/// Where to get the spec from.
#[derive(Clone, Debug)]
pub enum SpecSource {
    /// `-S/--spec-path`: a bare spec file.
    SpecPath(PathBuf),
    /// `-s/--spec`: a bare spec as a JSON string.
    Inline(String),
    /// `-c/--config`: the `{spec, compute_ctl_config}` envelope.
    Config(PathBuf),
    /// A bare spec or an envelope on stdin.
    Stdin,
    /// The sample spec compiled into the binary.
    Embedded,
    /// `GET {base}/compute/api/v2/computes/{id}/spec`.
    ControlPlane {
        /// Base URL.
        base_url: String,
        /// The compute id.
        compute_id: String,
        /// Bearer token (`NEON_CONTROL_PLANE_TOKEN`).
        token: String,
    },
}

impl SpecSource {
    /// The short name written in the `spec_load` section.
    pub fn name(&self) -> &'static str {
        match self {
            SpecSource::SpecPath(_) => "spec-path",
            SpecSource::Inline(_) => "spec",
            SpecSource::Config(_) => "config",
            SpecSource::Stdin => "stdin",
            SpecSource::Embedded => "embedded",
            SpecSource::ControlPlane { .. } => "control-plane",
        }
    }
}

/// Loads and parses a spec from `source`. The spec is not validated here.
pub fn load(source: &SpecSource) -> Result<LoadedSpec, StageError> {
    match source {
        SpecSource::SpecPath(path) => {
            let text = read_file(path, "spec file")?;
            parse_bare(&text, &format!("spec file {}", path.display()))
        }
        SpecSource::Inline(text) => parse_bare(text, "--spec"),
        SpecSource::Config(path) => {
            let text = read_file(path, "config file")?;
            parse_envelope(&text, &format!("config file {}", path.display()))
        }
        SpecSource::Stdin => {
            let text = read_bounded("the spec from", bounded::read_stdin_string(SPEC_MAX_BYTES))?;
            parse_any(&text, "stdin")
        }
        SpecSource::Embedded => parse_bare(EMBEDDED_SAMPLE_SPEC, "the embedded sample spec"),
        SpecSource::ControlPlane {
            base_url,
            compute_id,
            token,
        } => fetch_from_control_plane(base_url, compute_id, token, CONTROL_PLANE_DEADLINE),
    }
}

/// A spec or config file: a regular file of at most [`SPEC_MAX_BYTES`] (64 MiB), refused
/// before reading when it is a FIFO, a device or larger.
fn read_file(path: &Path, what: &str) -> Result<String, StageError> {
    read_bounded(what, bounded::read_file_string(path, SPEC_MAX_BYTES))
}

fn read_bounded(
    what: &str,
    result: Result<String, bounded::ReadError>,
) -> Result<String, StageError> {
    result.map_err(|error| {
        // A file that cannot be read for the system's reasons is a run-time failure; a
        // missing, irregular or oversized one is bad input.
        let kind = match &error.problem {
            Problem::Open(e) if e.kind() != std::io::ErrorKind::NotFound => ErrorKind::Io,
            Problem::Read(_) => ErrorKind::Io,
            _ => ErrorKind::Usage,
        };
        StageError::new(STAGE, kind, format!("reading {what} {error}"))
    })
}

/// Up to 3 attempts 100 ms apart (upstream's).
const CONTROL_PLANE_RETRIES: Policy = Policy {
    attempts: 3,
    backoff: Backoff::fixed(Duration::from_millis(100)),
    deadline: None,
};
/// The deadline of one control-plane request: connecting, sending, and reading the whole
/// answer, body included.
pub const CONTROL_PLANE_DEADLINE: Duration = Duration::from_secs(30);
/// Statuses that mean "the control plane is having a bad moment": retried.
const RETRIED_STATUSES: [u16; 4] = [500, 502, 503, 504];

enum Attempt {
    Done(Box<Result<LoadedSpec, StageError>>),
    Retry(StageError),
}

/// The `rpc` label of a spec fetch (upstream's `CPlaneRequestRPC::GetConfig`).
const GET_CONFIG: &str = "GetConfig";
/// The `http_status` of a request that got no answer (upstream's `UNKNOWN_HTTP_STATUS`).
const UNKNOWN_STATUS: &str = "unknown";

fn request(http_status: String) -> PeerRequest {
    PeerRequest {
        rpc: GET_CONFIG.to_string(),
        http_status,
    }
}

/// `GET {base_url}/compute/api/v2/computes/{compute_id}/spec`, up to 3 attempts 100 ms
/// apart; each attempt must have its whole answer within `deadline`. 500, 502, 503 and 504,
/// network errors, timeouts and undecodable answers are retried; other statuses are not.
pub fn fetch_from_control_plane(
    base_url: &str,
    compute_id: &str,
    token: &str,
    deadline: Duration,
) -> Result<LoadedSpec, StageError> {
    let url = format!(
        "{}/compute/api/v2/computes/{}/spec",
        base_url.trim_end_matches('/'),
        compute_id
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(deadline))
        .timeout_connect(Some(deadline))
        .build()
        .into();
    let mut requests = Vec::new();
    let outcome = Retry::new(&CONTROL_PLANE_RETRIES)
        .when(|_: &StageError| true)
        .run(|attempt| {
            let (status, outcome) = fetch_once(&agent, &url, token, deadline);
            requests.push(request(status));
            match outcome {
                Attempt::Done(result) => Ok(result),
                Attempt::Retry(error) => {
                    let attempt = attempt.number;
                    tracing::warn!(attempt, %url, "control plane request failed: {}", error.message);
                    Err(error)
                }
            }
        });
    match outcome {
        Ok((result, attempts)) => match *result {
            Ok(mut loaded) => {
                loaded.control_plane_attempts = attempts;
                loaded.requests = requests;
                Ok(loaded)
            }
            Err(mut error) => {
                error.requests = requests;
                Err(error)
            }
        },
        Err(Stop::Exhausted { attempts, last } | Stop::OutOfTime { attempts, last, .. }) => {
            let mut error = last;
            error.message = format!("{} (gave up after {attempts} attempts)", error.message);
            error.requests = requests;
            Err(error)
        }
        Err(Stop::Final { mut error, .. }) => {
            error.requests = requests;
            Err(error)
        }
    }
}

/// One request: its `http_status` (the answer's status with its reason phrase, `unknown`
/// without one) and what it means.
fn fetch_once(
    agent: &ureq::Agent,
    url: &str,
    token: &str,
    deadline: Duration,
) -> (String, Attempt) {
    let response = agent
        .get(url)
        .header("Authorization", &format!("Bearer {token}"))
        .call();
    let response = match response {
        Ok(response) => response,
        Err(error) => {
            let failed = Attempt::Retry(StageError::new(
                STAGE,
                ErrorKind::Network,
                format!(
                    "control plane {url}: {error} (deadline {deadline:?} for the whole answer); \
                     check that the control plane is up and reachable from here"
                ),
            ));
            return (UNKNOWN_STATUS.to_string(), failed);
        }
    };
    (
        response.status().to_string(),
        answered(response, url, deadline),
    )
}

/// What an answer means.
fn answered(
    mut response: ureq::http::Response<ureq::Body>,
    url: &str,
    deadline: Duration,
) -> Attempt {
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string();
    if let Err(error) = &body {
        if matches!(error, ureq::Error::Timeout(_)) {
            return Attempt::Retry(StageError::new(
                STAGE,
                ErrorKind::Network,
                format!(
                    "control plane {url}: the answer did not arrive within {deadline:?}: {error}; \
                     check that the control plane is up and reachable from here"
                ),
            ));
        }
    }
    if RETRIED_STATUSES.contains(&status) {
        return Attempt::Retry(StageError::new(
            STAGE,
            ErrorKind::Network,
            format!("control plane {url} answered {status}"),
        ));
    }
    if status != 200 {
        let detail = body.unwrap_or_default();
        return Attempt::Done(Box::new(Err(StageError::new(
            STAGE,
            ErrorKind::Server,
            format!(
                "control plane {url} answered {status}: {}; is compute id {:?} known to it?",
                detail.trim(),
                url.rsplit('/').nth(1).unwrap_or_default()
            ),
        ))));
    }
    let parsed = body
        .map_err(|error| error.to_string())
        .and_then(|text| decode::<ControlPlaneSpecResponse>(&text));
    let response = match parsed {
        Ok(response) => response,
        Err(error) => {
            return Attempt::Retry(StageError::new(
                STAGE,
                ErrorKind::Network,
                format!("control plane {url} sent an undecodable answer: {error}"),
            ))
        }
    };
    let result = match (response.status, response.spec) {
        (ControlPlaneComputeStatus::Attached, None) => Err(StageError::new(
            STAGE,
            ErrorKind::Server,
            format!("control plane {url} says the compute is attached but sent no spec"),
        )),
        (ControlPlaneComputeStatus::Empty, _) => Ok(LoadedSpec {
            spec: None,
            compute_ctl_config: response.compute_ctl_config,
            control_plane_attempts: 0,
            requests: Vec::new(),
        }),
        (ControlPlaneComputeStatus::Attached, Some(spec)) => Ok(LoadedSpec {
            spec: Some(spec),
            compute_ctl_config: response.compute_ctl_config,
            control_plane_attempts: 0,
            requests: Vec::new(),
        }),
    };
    Attempt::Done(Box::new(result))
}
