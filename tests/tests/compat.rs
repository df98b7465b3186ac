//! Wire compatibility with Neon's `compute_ctl` (`neon-compute-ctl-2.md` §2, §14): a real
//! compute (compute-ctl, the real stage binaries, real PostgreSQL from initdb) started with
//! an Ed25519 key set and `-i compute-1`, then a TABLE of upstream requests replayed in
//! order — one row per route × case, each with the status and body shape upstream answers.
//! A second, smaller table runs against a compute whose start failed.
//!
//! Rows that change the compute's state (refresh, configure, terminate) come last. Every row
//! runs even when an earlier one fails; the failure message lists all mismatching rows.
//!
//! Markers in the tables:
//! * `deliberate difference`: our documented behaviour differs from upstream's on purpose
//!   (see the doc comments in `compute-ctl/src/*.rs`); the row asserts ours.
//! * rows without a note assert upstream's behaviour.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use compute_tools_tests::{binary, wait_until, write_sample_spec, PostgresChild};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pg_test_support::{free_tcp_port, TestDir};
use serde_json::{json, Value};

const COMPUTE_ID: &str = "compute-1";
const TENANT: &str = "3aa8fcc61f6d357410b7de754b1d9001";
const TIMELINE: &str = "de200bd42b49cc1814412c7e592dd6e9";
const JSON: &str = "application/json";
const PLAIN: &str = "text/plain; charset=utf-8";
const METRICS_TYPE: &str = "text/plain; version=0.0.4";
const E415: &str = "expected request with `content-type: application/json`";
const UNPARSABLE: &str = "failed to parse the request body as json: ";
const UNDESERIALIZABLE: &str = "failed to deserialize the json body into the target type: ";
/// A request id longer than compute-ctl keeps (250 visible ASCII bytes).
const LONG_REQUEST_ID: &str = concat!(
    "req-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "req-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "req-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab",
);
/// Upstream's 2 MiB body limit.
const MAX_BODY: usize = 2 * 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Tokens

/// The `Authorization` a row sends.
#[derive(Clone, Copy, Debug)]
enum Tok {
    /// No header.
    None,
    /// `compute_ctl:admin`, `aud: ["compute"]`.
    Admin,
    /// `compute_id: compute-1`, expiring in an hour.
    Ours,
    /// `compute_id: compute-2`.
    OtherCompute,
    /// Ours, expired 90 s ago (beyond the 60 s leeway).
    Expired,
    /// Ours, expired 30 s ago (within the leeway).
    JustExpired,
    /// Ours without `exp`.
    NoExp,
    /// Ours signed by a key outside the set.
    BadSignature,
    /// Ours signed with HS256 (the set is EdDSA).
    WrongAlgorithm,
    /// No `compute_id`, no scope.
    NoComputeId,
    /// Admin scope without `aud`.
    AdminNoAud,
    /// Admin scope, `aud: ["other"]`.
    AdminWrongAud,
    /// Admin scope, `aud: "compute"` (a bare string).
    AdminBareAud,
    /// Admin scope with another compute's id (admins may reach any compute).
    AdminOtherCompute,
    /// `scope: compute_ctl:other`.
    UnknownScope,
    /// `Bearer not-a-jwt`.
    Garbage,
    /// Ours with the scheme in lower case (`bearer <token>`).
    LowerCaseScheme,
    /// This exact header value.
    Raw(&'static str),
}

/// The key set and the tokens made from it.
struct Keys {
    ours: SigningKey,
    other: SigningKey,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            ours: SigningKey::from_bytes(&[7u8; 32]),
            other: SigningKey::from_bytes(&[9u8; 32]),
        }
    }

    /// The JWK of our key, as upstream's control plane writes it.
    fn jwk(&self) -> Value {
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.ours.verifying_key().as_bytes());
        json!({
            "kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA", "use": "sig",
            "key_ops": ["verify"], "kid": "compat-key"
        })
    }

    fn sign(key: &SigningKey, claims: &Value) -> String {
        let der = key.to_pkcs8_der().expect("PKCS#8 of an Ed25519 key");
        let encoding = EncodingKey::from_ed_der(der.as_bytes());
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &encoding)
            .expect("signing a token")
    }

    fn authorization(&self, tok: Tok) -> Option<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs();
        let hour = now + 3600;
        let ours = |exp: Option<u64>| match exp {
            Some(exp) => json!({"compute_id": COMPUTE_ID, "exp": exp}),
            None => json!({"compute_id": COMPUTE_ID}),
        };
        let signed = |claims: Value| Keys::sign(&self.ours, &claims);
        let token = match tok {
            Tok::None => return None,
            Tok::Raw(value) => return Some(value.to_string()),
            Tok::Garbage => "not-a-jwt".to_string(),
            Tok::LowerCaseScheme => return Some(format!("bearer {}", signed(ours(Some(hour))))),
            Tok::Admin => {
                signed(json!({"scope": "compute_ctl:admin", "aud": ["compute"], "exp": hour}))
            }
            Tok::Ours => signed(ours(Some(hour))),
            Tok::OtherCompute => signed(json!({"compute_id": "compute-2", "exp": hour})),
            Tok::Expired => signed(ours(Some(now - 90))),
            Tok::JustExpired => signed(ours(Some(now - 30))),
            Tok::NoExp => signed(ours(None)),
            Tok::BadSignature => Keys::sign(&self.other, &ours(Some(hour))),
            Tok::WrongAlgorithm => jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &ours(Some(hour)),
                &EncodingKey::from_secret(b"compat-secret"),
            )
            .expect("signing an HS256 token"),
            Tok::NoComputeId => signed(json!({"exp": hour})),
            Tok::AdminNoAud => signed(json!({"scope": "compute_ctl:admin", "exp": hour})),
            Tok::AdminWrongAud => {
                signed(json!({"scope": "compute_ctl:admin", "aud": ["other"], "exp": hour}))
            }
            Tok::AdminBareAud => {
                signed(json!({"scope": "compute_ctl:admin", "aud": "compute", "exp": hour}))
            }
            Tok::AdminOtherCompute => signed(json!({
                "scope": "compute_ctl:admin", "aud": ["other", "compute"],
                "compute_id": "compute-2", "exp": hour
            })),
            Tok::UnknownScope => {
                signed(json!({"scope": "compute_ctl:other", "compute_id": COMPUTE_ID}))
            }
        };
        Some(format!("Bearer {token}"))
    }
}

// ---------------------------------------------------------------------------------------
// A raw HTTP/1.1 client (any method, any header, no Content-Type unless asked)

/// One response.
#[derive(Debug, Default)]
struct Reply {
    status: u16,
    /// Lower-case names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.body)
            .map_err(|error| format!("body is not JSON ({error}): {}", short(&self.text())))
    }

    fn summary(&self) -> String {
        let mut out = self.status.to_string();
        if self.body.is_empty() {
            out.push_str(" empty");
        } else {
            let _ = write!(out, " {}", short(&self.text()));
        }
        if let Some(allow) = self.header("allow") {
            let _ = write!(out, " Allow={allow}");
        }
        out
    }
}

fn short(text: &str) -> String {
    let text = text.replace('\n', "\\n");
    if text.chars().count() > 90 {
        format!("{}…", text.chars().take(90).collect::<String>())
    } else {
        text
    }
}

fn send(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Reply, String> {
    send_to("127.0.0.1", port, method, target, headers, body)
}

fn send_to(
    host: &str,
    port: u16,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Reply, String> {
    let mut stream = TcpStream::connect((host, port))
        .map_err(|error| format!("connecting to {host} port {port}: {error}"))?;
    let authority = match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(180)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    // With `Transfer-Encoding: chunked` among the headers the body goes out in 64 KiB
    // chunks and no length is declared up front.
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked")
    });
    let body: Vec<u8> = if chunked {
        let mut encoded = Vec::with_capacity(body.len() + 64);
        for chunk in body.chunks(64 * 1024) {
            encoded.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            encoded.extend_from_slice(chunk);
            encoded.extend_from_slice(b"\r\n");
        }
        encoded.extend_from_slice(b"0\r\n\r\n");
        encoded
    } else {
        if !body.is_empty() || !matches!(method, "GET" | "HEAD") {
            let _ = write!(head, "Content-Length: {}\r\n", body.len());
        }
        body.to_vec()
    };
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .map_err(|error| format!("sending the request: {error}"))?;
    // The body goes out on another thread: a server that answers before reading it (413)
    // must not leave this one blocked on a full socket buffer.
    let writer = if body.is_empty() {
        None
    } else {
        let mut clone = stream
            .try_clone()
            .map_err(|error| format!("cloning the socket: {error}"))?;
        Some(std::thread::spawn(move || {
            let _ = clone.write_all(&body);
        }))
    };
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    drop(stream);
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    if let Err(error) = read {
        // A reset after the answer (the server closed with the body unread) is fine.
        if !raw.windows(4).any(|window| window == b"\r\n\r\n") {
            return Err(format!("reading the response: {error}"));
        }
    }
    parse_response(&raw, method == "HEAD")
}

fn parse_response(raw: &[u8], head_only: bool) -> Result<Reply, String> {
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| format!("no response head in {:?}", String::from_utf8_lossy(raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let mut reply = Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    };
    if head_only {
        return Ok(reply);
    }
    if reply
        .header("transfer-encoding")
        .is_some_and(|value| value.eq_ignore_ascii_case("chunked"))
    {
        reply.body = dechunk(&reply.body)?;
    } else if let Some(length) = reply
        .header("content-length")
        .and_then(|length| length.parse::<usize>().ok())
    {
        if reply.body.len() < length {
            return Err(format!(
                "body cut short: {} of {length} bytes",
                reply.body.len()
            ));
        }
        reply.body.truncate(length);
    }
    Ok(reply)
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let end = data
            .windows(2)
            .position(|window| window == b"\r\n")
            .ok_or("chunk size line missing")?;
        let size_text = String::from_utf8_lossy(&data[..end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|error| format!("chunk size {size_text:?}: {error}"))?;
        data = &data[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("chunk cut short".to_string());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

// ---------------------------------------------------------------------------------------
// The table's vocabulary

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Srv {
    Ext,
    Int,
    /// The external server over IPv6 loopback (upstream binds `[::]`).
    ExtV6,
}

/// A JSON type.
#[derive(Clone, Copy, Debug)]
enum Ty {
    Str,
    StrOrNull,
    Uint,
    Array,
}

impl Ty {
    fn matches(self, value: &Value) -> bool {
        match self {
            Ty::Str => value.is_string(),
            Ty::StrOrNull => value.is_string() || value.is_null(),
            Ty::Uint => value.is_u64(),
            Ty::Array => value.is_array(),
        }
    }
}

/// One expectation on a response (besides its status).
#[derive(Clone)]
enum Check {
    /// No body.
    Empty,
    /// Exactly this JSON (and `Content-Type: application/json`).
    Json(Value),
    /// `{"error": <exactly this>}` (and `Content-Type: application/json`).
    Error(&'static str),
    /// `{"error": <starting with this>}`.
    ErrorPrefix(&'static str),
    /// `{"error": <containing this>}`.
    ErrorContains(&'static str),
    /// Exactly this body text.
    Text(&'static str),
    /// The body text starts with this.
    TextPrefix(&'static str),
    /// The body text contains this.
    Contains(&'static str),
    /// This header with exactly this value.
    Header(&'static str, &'static str),
    /// A JSON object with exactly these keys, of these types.
    Keys(&'static [(&'static str, Ty)]),
    /// The JSON value at this pointer equals this.
    Field(&'static str, Value),
    /// A named check of its own.
    Custom(&'static str, fn(&Reply) -> Result<(), String>),
}

impl Check {
    fn describe(&self) -> String {
        match self {
            Check::Empty => "empty".to_string(),
            Check::Json(value) => short(&value.to_string()),
            Check::Error(text) => format!("error={text:?}"),
            Check::ErrorPrefix(text) => format!("error^={text:?}"),
            Check::ErrorContains(text) => format!("error~{text:?}"),
            Check::Text(text) => format!("text={text:?}"),
            Check::TextPrefix(text) => format!("text^={text:?}"),
            Check::Contains(text) => format!("body~{:?}", short(text)),
            Check::Header(name, value) => format!("{name}={value}"),
            Check::Keys(keys) => format!(
                "keys({})",
                keys.iter()
                    .map(|(key, _)| *key)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Check::Field(pointer, value) => format!("{pointer}={value}"),
            Check::Custom(name, _) => (*name).to_string(),
        }
    }

    fn verify(&self, reply: &Reply) -> Result<(), String> {
        let json_type = || match reply.header("content-type") {
            Some(JSON) => Ok(()),
            other => Err(format!("Content-Type {other:?}, expected {JSON}")),
        };
        let error_text = || -> Result<String, String> {
            json_type()?;
            let body = reply.json()?;
            let object = body.as_object().ok_or(format!("not an object: {body}"))?;
            if object.len() != 1 {
                return Err(format!("not {{\"error\": …}} alone: {body}"));
            }
            body["error"]
                .as_str()
                .map(str::to_string)
                .ok_or(format!("no error string: {body}"))
        };
        match self {
            Check::Empty => match reply.body.is_empty() {
                true => Ok(()),
                false => Err(format!("body not empty: {}", short(&reply.text()))),
            },
            Check::Json(expected) => {
                json_type()?;
                let got = reply.json()?;
                match &got == expected {
                    true => Ok(()),
                    false => Err(format!("JSON {got}, expected {expected}")),
                }
            }
            Check::Error(expected) => {
                let got = error_text()?;
                match got == *expected {
                    true => Ok(()),
                    false => Err(format!("error {got:?}")),
                }
            }
            Check::ErrorPrefix(prefix) => {
                let got = error_text()?;
                match got.starts_with(prefix) {
                    true => Ok(()),
                    false => Err(format!("error {got:?}")),
                }
            }
            Check::ErrorContains(part) => {
                let got = error_text()?;
                match got.contains(part) {
                    true => Ok(()),
                    false => Err(format!("error {got:?}")),
                }
            }
            Check::Text(expected) => match reply.text() == *expected {
                true => Ok(()),
                false => Err(format!("text {:?}", short(&reply.text()))),
            },
            Check::TextPrefix(prefix) => match reply.text().starts_with(prefix) {
                true => Ok(()),
                false => Err(format!("text {:?}", short(&reply.text()))),
            },
            Check::Contains(part) => match reply.text().contains(part) {
                true => Ok(()),
                false => Err(format!("body lacks {part:?}")),
            },
            Check::Header(name, expected) => match reply.header(name) {
                Some(value) if value == *expected => Ok(()),
                other => Err(format!("header {name}: {other:?}")),
            },
            Check::Keys(keys) => {
                json_type()?;
                let body = reply.json()?;
                let object = body.as_object().ok_or(format!("not an object: {body}"))?;
                let mut problems = Vec::new();
                for (key, ty) in *keys {
                    match object.get(*key) {
                        None => problems.push(format!("{key} missing")),
                        Some(value) if !ty.matches(value) => {
                            problems.push(format!("{key}={value} is not {ty:?}"))
                        }
                        Some(_) => {}
                    }
                }
                for key in object.keys() {
                    if !keys.iter().any(|(name, _)| name == key) {
                        problems.push(format!("unexpected key {key}"));
                    }
                }
                match problems.is_empty() {
                    true => Ok(()),
                    false => Err(problems.join("; ")),
                }
            }
            Check::Field(pointer, expected) => {
                let body = reply.json()?;
                match body.pointer(pointer) {
                    Some(value) if value == expected => Ok(()),
                    other => Err(format!("{pointer} is {other:?}")),
                }
            }
            Check::Custom(_, check) => check(reply),
        }
    }
}

/// What runs after a row, before the next.
#[derive(Clone, Copy, Debug)]
enum Then {
    /// Poll `/status` (our token) until it says this.
    WaitStatus(&'static str),
}

/// One request and what upstream answers.
struct Row {
    server: Srv,
    method: &'static str,
    target: String,
    case: &'static str,
    tok: Tok,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
    checks: Vec<Check>,
    /// `deliberate difference: …` or `…`.
    note: Option<&'static str>,
    then: Option<Then>,
}

fn ext(method: &'static str, target: &str, case: &'static str) -> Row {
    Row {
        server: Srv::Ext,
        method,
        target: target.to_string(),
        case,
        tok: Tok::None,
        headers: Vec::new(),
        body: Vec::new(),
        status: 0,
        checks: Vec::new(),
        note: None,
        then: None,
    }
}

fn int(method: &'static str, target: &str, case: &'static str) -> Row {
    Row {
        server: Srv::Int,
        ..ext(method, target, case)
    }
}

impl Row {
    fn server(mut self, server: Srv) -> Row {
        self.server = server;
        self
    }

    fn tok(mut self, tok: Tok) -> Row {
        self.tok = tok;
        self
    }

    fn header(mut self, name: &str, value: &str) -> Row {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// A body with this `Content-Type` (none if `None`).
    fn body(mut self, content_type: Option<&str>, body: impl Into<Vec<u8>>) -> Row {
        if let Some(content_type) = content_type {
            self = self.header("Content-Type", content_type);
        }
        self.body = body.into();
        self
    }

    /// A JSON body with `Content-Type: application/json`.
    fn json(self, body: &Value) -> Row {
        self.body(Some(JSON), body.to_string())
    }

    fn expect(mut self, status: u16, checks: Vec<Check>) -> Row {
        self.status = status;
        self.checks = checks;
        self
    }

    fn note(mut self, note: &'static str) -> Row {
        self.note = Some(note);
        self
    }

    fn then(mut self, then: Then) -> Row {
        self.then = Some(then);
        self
    }

    fn expected(&self) -> String {
        let mut out = self.status.to_string();
        for check in &self.checks {
            let _ = write!(out, " {}", check.describe());
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// Custom checks

fn status_body(reply: &Reply) -> Result<(), String> {
    let body = reply.json()?;
    let start = body["start_time"].as_str().unwrap_or_default();
    if !start.ends_with('Z') || start.len() < 20 || start.as_bytes().get(10) != Some(&b'T') {
        return Err(format!("start_time {start:?} is not RFC 3339 ending in Z"));
    }
    if let Some(active) = body["last_active"].as_str() {
        if !active.ends_with("+00:00") {
            return Err(format!("last_active {active:?} does not end in +00:00"));
        }
    }
    for (key, expected) in [("tenant", TENANT), ("timeline", TIMELINE)] {
        if body[key] != expected {
            return Err(format!("{key} is {}", body[key]));
        }
    }
    Ok(())
}

fn one_compute_ctl_up(reply: &Reply) -> Result<(), String> {
    let text = reply.text();
    let series: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("compute_ctl_up"))
        .collect();
    let help = "# HELP compute_ctl_up Whether compute_ctl is running";
    let kind = "# TYPE compute_ctl_up gauge";
    if !text.lines().any(|line| line == help) || !text.lines().any(|line| line == kind) {
        return Err("compute_ctl_up lacks its HELP or TYPE line".to_string());
    }
    match series.as_slice() {
        [_] => Ok(()),
        _ => Err(format!("compute_ctl_up series: {series:?}")),
    }
}

/// Upstream's unlabelled families (§14): always exported, with upstream's HELP and TYPE.
fn upstream_families(reply: &Reply) -> Result<(), String> {
    let text = reply.text();
    let lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();
    for (name, kind, help) in [
        ("compute_audit_log_dir_size", "gauge", "Size of audit log directory in bytes"),
        (
            "compute_pg_current_downtime_ms",
            "gauge",
            "Non-cumulative duration of Postgres downtime in ms; resets after successful check",
        ),
        (
            "compute_pg_downtime_ms_total",
            "counter",
            "Cumulative duration of Postgres downtime in ms",
        ),
        (
            "compute_ctl_lfc_prewarms_total",
            "counter",
            "Total number of LFC prewarms requested by compute_ctl or autoprewarm option",
        ),
        (
            "compute_ctl_lfc_prewarm_errors_total",
            "counter",
            "Total number of LFC prewarm errors",
        ),
        (
            "compute_ctl_lfc_offloads_total",
            "counter",
            "Total number of LFC offloads requested by compute_ctl or lfc_offload_period_seconds option",
        ),
        (
            "compute_ctl_lfc_offload_errors_total",
            "counter",
            "Total number of LFC offload errors",
        ),
        (
            "pg_cctl_pagestream_request_errors_total",
            "counter",
            "Number of PageStream request errors reported by the postgres process",
        ),
        (
            "pg_cctl_configure_statement_timeout_errors_total",
            "counter",
            "Number of compute configuration errors due to Postgres statement timeouts.",
        ),
    ] {
        let help_line = format!("# HELP {name} {help}");
        let type_line = format!("# TYPE {name} {kind}");
        let sample = format!("{name} ");
        if !lines.contains(&help_line.as_str()) {
            problems.push(format!("no `{help_line}`"));
        }
        if !lines.contains(&type_line.as_str()) {
            problems.push(format!("no `{type_line}`"));
        }
        let samples = lines
            .iter()
            .filter(|line| line.starts_with(&sample))
            .count();
        if samples != 1 {
            problems.push(format!("{samples} samples of {name}"));
        }
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(problems.join("; ")),
    }
}

fn request_id_is_uuid(reply: &Reply) -> Result<(), String> {
    let id = reply.header("x-request-id").unwrap_or_default();
    let groups: Vec<usize> = id.split('-').map(str::len).collect();
    let hex = id.chars().all(|c| c == '-' || c.is_ascii_hexdigit());
    match (groups.as_slice(), hex) {
        ([8, 4, 4, 4, 12], true) => Ok(()),
        _ => Err(format!("x-request-id {id:?} is not a UUID")),
    }
}

fn dbs_and_roles(reply: &Reply) -> Result<(), String> {
    let body = reply.json()?;
    let roles = body["roles"].as_array().ok_or("no roles array")?;
    let databases = body["databases"].as_array().ok_or("no databases array")?;
    let role_keys = ["name", "encrypted_password", "options"];
    let db_keys = ["name", "owner", "options", "restrict_conn", "invalid"];
    for (items, keys) in [(roles, &role_keys[..]), (databases, &db_keys[..])] {
        for item in items {
            let object = item.as_object().ok_or(format!("not an object: {item}"))?;
            let mut names: Vec<&str> = object.keys().map(String::as_str).collect();
            names.sort_unstable();
            let mut wanted = keys.to_vec();
            wanted.sort_unstable();
            if names != wanted || !item["options"].is_null() {
                return Err(format!("entry {item} is not {keys:?} with options null"));
            }
        }
    }
    let owner = databases.iter().find(|db| db["name"] == "app");
    match owner {
        Some(db) if db["owner"] == "app_owner" && db["restrict_conn"] == false => Ok(()),
        _ => Err("database app owned by app_owner is missing".to_string()),
    }
}

fn prewarm_ran(reply: &Reply) -> Result<(), String> {
    let state = reply.json()?;
    match state["status"].as_str() {
        Some("prewarming" | "failed" | "cancelled" | "completed" | "skipped") => Ok(()),
        _ => Err(format!("prewarm state {state}")),
    }
}

fn offload_ran(reply: &Reply) -> Result<(), String> {
    let state = reply.json()?;
    match state["status"].as_str() {
        Some("offloading" | "failed" | "completed" | "skipped") => Ok(()),
        _ => Err(format!("offload state {state}")),
    }
}

// ---------------------------------------------------------------------------------------
// The table

const STATUS_KEYS: &[(&str, Ty)] = &[
    ("start_time", Ty::Str),
    ("tenant", Ty::StrOrNull),
    ("timeline", Ty::StrOrNull),
    ("status", Ty::Str),
    ("last_active", Ty::StrOrNull),
    ("error", Ty::StrOrNull),
];

const METRICS_KEYS: &[(&str, Ty)] = &[
    ("wait_for_spec_ms", Ty::Uint),
    ("sync_sk_check_ms", Ty::Uint),
    ("sync_safekeepers_ms", Ty::Uint),
    ("pageserver_connect_micros", Ty::Uint),
    ("basebackup_ms", Ty::Uint),
    ("basebackup_bytes", Ty::Uint),
    ("start_postgres_ms", Ty::Uint),
    ("config_ms", Ty::Uint),
    ("total_startup_ms", Ty::Uint),
    ("load_ext_ms", Ty::Uint),
    ("num_ext_downloaded", Ty::Uint),
    ("largest_ext_size", Ty::Uint),
    ("total_ext_download_size", Ty::Uint),
];

fn running_status() -> Vec<Check> {
    vec![
        Check::Keys(STATUS_KEYS),
        Check::Field("/status", json!("running")),
        Check::Field("/error", Value::Null),
        Check::Custom("start_time Z, tenant, timeline", status_body),
    ]
}

/// A spec upstream's `ParsedSpec` accepts too (Neon storage: pageserver, ids, safekeepers).
fn neon_spec(safekeepers: &[&str]) -> Value {
    json!({
        "format_version": 1.0,
        "cluster": {"roles": [], "databases": []},
        "mode": "Primary",
        "tenant_id": TENANT,
        "timeline_id": TIMELINE,
        "pageserver_connstring": "postgresql://no_user@pageserver.invalid:6400",
        "safekeeper_connstrings": safekeepers,
    })
}

fn table(spec: &Value) -> Vec<Row> {
    use Check::*;
    let mut wrong_type = spec.clone();
    wrong_type["cluster"]["roles"] = json!(1);
    let over_limit = vec![b' '; MAX_BODY + 1];
    let promote = json!({"spec": neon_spec(&["sk1:5454"]), "wal_flush_lsn": "0/3000060"});
    let promote_invalid =
        json!({"spec": neon_spec(&["sk1:5454", "sk1:5454"]), "wal_flush_lsn": "0/3000060"});
    let configure_invalid =
        json!({"spec": neon_spec(&["sk1:5454", "sk1:5454"]), "compute_ctl_config": {}});
    // The key set in a /configure is required but ignored: it cannot lock anyone out.
    let configure = json!({"spec": spec, "compute_ctl_config": {"jwks": {"keys": []}}});
    // Unknown members anywhere are ignored (no deny_unknown_fields upstream).
    let mut with_unknown = spec.clone();
    with_unknown["some_future_field"] = json!({"x": 1});
    with_unknown["cluster"]["some_future_field"] = json!([1]);
    let configure_unknown = json!({
        "spec": with_unknown,
        "compute_ctl_config": {"jwks": {"keys": []}, "some_future_field": true},
        "some_future_field": "x",
    });
    let grants = json!({"database": "app", "schema": "public", "privileges": ["USAGE", "CREATE"], "role": "app_reader"});
    let extension = json!({"extension": "pg_trgm", "database": "app", "version": "1.6"});
    vec![
        // ---- §2.1 routing: unknown paths, methods (405 before auth), HEAD, request ids.
        ext("GET", "/nope", "unknown path").expect(404, vec![Empty]),
        ext("GET", "/status/extra", "unknown subpath").expect(404, vec![Empty]),
        ext("POST", "/extensions", "internal route on external").expect(404, vec![Empty]),
        ext("POST", "/refresh_configuration", "internal route on external")
            .expect(404, vec![Empty]),
        int("GET", "/nope", "unknown path").expect(404, vec![Empty]),
        int("POST", "/configure", "external route on internal").expect(404, vec![Empty]),
        int("POST", "/terminate", "external route on internal").expect(404, vec![Empty]),
        int("POST", "/extension_server/", "empty filename").expect(404, vec![Empty]),
        ext("PUT", "/status", "405 no token").expect(
            405,
            vec![Empty, Header("allow", "GET,HEAD")],
        ),
        ext("DELETE", "/status", "405 bad token")
            .tok(Tok::BadSignature)
            .expect(405, vec![Empty, Header("allow", "GET,HEAD")]),
        ext("POST", "/metrics", "405").expect(405, vec![Empty, Header("allow", "GET,HEAD")]),
        ext("POST", "/metrics.json", "405").expect(405, vec![Empty, Header("allow", "GET,HEAD")]),
        ext("GET", "/configure", "405").expect(405, vec![Empty, Header("allow", "POST")]),
        ext("GET", "/terminate", "405").expect(405, vec![Empty, Header("allow", "POST")]),
        ext("GET", "/check_writability", "405").expect(405, vec![Empty, Header("allow", "POST")]),
        ext("GET", "/promote", "405").expect(405, vec![Empty, Header("allow", "POST")]),
        ext("POST", "/insights", "405").expect(405, vec![Empty, Header("allow", "GET,HEAD")]),
        ext("POST", "/dbs_and_roles", "405").expect(405, vec![Empty, Header("allow", "GET,HEAD")]),
        ext("POST", "/database_schema", "405")
            .expect(405, vec![Empty, Header("allow", "GET,HEAD")]),
        ext("POST", "/hadron_liveness_probe", "405")
            .expect(405, vec![Empty, Header("allow", "GET,HEAD")]),
        ext("POST", "/autoscaling_metrics", "405")
            .expect(405, vec![Empty, Header("allow", "GET,HEAD")]),
        ext("PUT", "/lfc/prewarm", "405").expect(405, vec![Empty, Header("allow", "GET,HEAD,POST,DELETE")]),
        ext("DELETE", "/lfc/offload", "405")
            .expect(405, vec![Empty, Header("allow", "GET,HEAD,POST")]),
        int("GET", "/extensions", "405").expect(405, vec![Empty, Header("allow", "POST")]),
        int("GET", "/grants", "405").expect(405, vec![Empty, Header("allow", "POST")]),
        int("GET", "/refresh_configuration", "405")
            .expect(405, vec![Empty, Header("allow", "POST")]),
        int("GET", "/extension_server/foo", "405").expect(405, vec![Empty, Header("allow", "POST")]),
        ext("GET", "/status", "X-Request-Id echoed")
            .tok(Tok::Ours)
            .header("X-Request-Id", "compat-req-1")
            .expect(200, vec![Header("x-request-id", "compat-req-1")]),
        ext("GET", "/nope", "X-Request-Id echoed on 404")
            .header("X-Request-Id", "compat-req-2")
            .expect(404, vec![Empty, Header("x-request-id", "compat-req-2")]),
        ext("PUT", "/status", "X-Request-Id echoed on 405")
            .header("X-Request-Id", "compat-req-3")
            .expect(405, vec![Empty, Header("x-request-id", "compat-req-3")]),
        ext("GET", "/status", "long X-Request-Id echoed")
            .tok(Tok::Ours)
            .header("X-Request-Id", LONG_REQUEST_ID)
            .expect(200, vec![Header("x-request-id", LONG_REQUEST_ID)]),
        ext("GET", "/status", "empty X-Request-Id echoed")
            .tok(Tok::Ours)
            .header("X-Request-Id", "")
            .expect(200, vec![Header("x-request-id", "")]),
        ext("GET", "/status", "X-Request-Id generated")
            .tok(Tok::Ours)
            .expect(200, vec![Custom("x-request-id is a UUID", request_id_is_uuid)]),
        int("POST", "/nope", "X-Request-Id generated (internal)")
            .expect(404, vec![Custom("x-request-id is a UUID", request_id_is_uuid)]),
        ext("GET", "/status/", "trailing slash").expect(404, vec![Empty]),
        ext("GET", "/status?verbose=1", "query ignored")
            .tok(Tok::Ours)
            .expect(200, vec![Keys(STATUS_KEYS)]),
        ext("HEAD", "/configure", "HEAD on POST route")
            .expect(405, vec![Empty, Header("allow", "POST")]),
        ext("OPTIONS", "/status", "OPTIONS").expect(405, vec![Empty, Header("allow", "GET,HEAD")]),
        ext("GET", "/metrics", "20 KB header")
            .header("X-Filler", &"a".repeat(20_000))
            // deliberate difference: request heads are capped at 16 KiB and 64 fields, 431
            // (http.rs); upstream's hyper defaults accept this.
            .note("deliberate difference: 431 for a head over 16 KiB (http.rs)")
            .expect(431, vec![]),
        ext("HEAD", "/status", "HEAD on GET route")
            .tok(Tok::Ours)
            .expect(200, vec![Empty]),
        ext("HEAD", "/metrics", "HEAD on GET route").expect(200, vec![Empty]),
        ext("HEAD", "/lfc/offload", "HEAD on GET route")
            .tok(Tok::Ours)
            .expect(200, vec![Empty]),
        // ---- §2.3 JWT table (on GET /status, then on other routes).
        ext("GET", "/status", "no Authorization")
            .expect(400, vec![Error("invalid authorization token")]),
        ext("GET", "/status", "Basic scheme")
            .tok(Tok::Raw("Basic Y29tcHV0ZTpwYXNz"))
            .expect(400, vec![Error("invalid authorization token")]),
        ext("GET", "/status", "Token scheme")
            .tok(Tok::Raw("Token abc"))
            .expect(400, vec![Error("invalid authorization token")]),
        ext("GET", "/status", "Bearer without token")
            .tok(Tok::Raw("Bearer"))
            .expect(400, vec![Error("invalid authorization token")]),
        ext("GET", "/status", "lower-case scheme")
            .tok(Tok::LowerCaseScheme)
            .expect(200, vec![Keys(STATUS_KEYS)]),
        ext("GET", "/status", "X-Request-Id echoed on 401")
            .tok(Tok::BadSignature)
            .header("X-Request-Id", "compat-req-4")
            .expect(
                401,
                vec![
                    Header("x-request-id", "compat-req-4"),
                    Error("failed to verify authorization token"),
                ],
            ),
        ext("GET", "/status", "not a JWT")
            .tok(Tok::Garbage)
            .expect(401, vec![Error("failed to verify authorization token")]),
        ext("GET", "/status", "bad signature")
            .tok(Tok::BadSignature)
            .expect(401, vec![Error("failed to verify authorization token")]),
        ext("GET", "/status", "HS256 token, EdDSA set")
            .tok(Tok::WrongAlgorithm)
            .expect(401, vec![Error("failed to verify authorization token")]),
        ext("GET", "/status", "expired beyond 60 s leeway")
            .tok(Tok::Expired)
            .expect(401, vec![Error("failed to verify authorization token")]),
        ext("GET", "/status", "expired within leeway")
            .tok(Tok::JustExpired)
            .expect(200, vec![Keys(STATUS_KEYS)]),
        ext("GET", "/status", "no exp")
            .tok(Tok::NoExp)
            .expect(200, vec![Keys(STATUS_KEYS)]),
        ext("GET", "/status", "unknown scope")
            .tok(Tok::UnknownScope)
            .expect(401, vec![Error("failed to verify authorization token")]),
        ext("GET", "/status", "admin, bare-string aud")
            .tok(Tok::AdminBareAud)
            .expect(401, vec![Error("failed to verify authorization token")]),
        ext("GET", "/status", "admin without aud").tok(Tok::AdminNoAud).expect(
            401,
            vec![Error("missing audience in authorization token claims")],
        ),
        ext("GET", "/status", "admin, wrong aud").tok(Tok::AdminWrongAud).expect(
            401,
            vec![Error("invalid audience in authorization token claims")],
        ),
        ext("GET", "/status", "no compute_id").tok(Tok::NoComputeId).expect(
            403,
            vec![Error("missing compute_id in authorization token claims")],
        ),
        ext("GET", "/status", "other compute").tok(Tok::OtherCompute).expect(
            403,
            vec![Error("invalid compute ID in authorization token claims")],
        ),
        ext("GET", "/status", "admin").tok(Tok::Admin).expect(200, running_status()),
        ext("GET", "/status", "admin naming another compute")
            .tok(Tok::AdminOtherCompute)
            .expect(200, vec![Keys(STATUS_KEYS)]),
        ext("GET", "/status", "ours").tok(Tok::Ours).expect(200, running_status()),
        ext("POST", "/check_writability", "no token")
            .expect(400, vec![Error("invalid authorization token")]),
        ext("POST", "/check_writability", "other compute")
            .tok(Tok::OtherCompute)
            .expect(
                403,
                vec![Error("invalid compute ID in authorization token claims")],
            ),
        ext("POST", "/terminate", "no token")
            .expect(400, vec![Error("invalid authorization token")]),
        ext("POST", "/terminate", "expired")
            .tok(Tok::Expired)
            .expect(401, vec![Error("failed to verify authorization token")]),
        ext("POST", "/configure", "other compute (auth before body)")
            .tok(Tok::OtherCompute)
            .body(None, "x")
            .expect(
                403,
                vec![Error("invalid compute ID in authorization token claims")],
            ),
        ext("GET", "/lfc/prewarm", "admin without aud").tok(Tok::AdminNoAud).expect(
            401,
            vec![Error("missing audience in authorization token claims")],
        ),
        ext("GET", "/database_schema?database=app", "no token")
            .expect(400, vec![Error("invalid authorization token")]),
        // ---- §2.4 read-only external routes.
        ext("GET", "/metrics.json", "ours")
            .tok(Tok::Ours)
            .expect(200, vec![Keys(METRICS_KEYS)]),
        ext("GET", "/metrics.json", "admin")
            .tok(Tok::Admin)
            .expect(200, vec![Keys(METRICS_KEYS)]),
        ext("GET", "/metrics", "unauthenticated").expect(
            200,
            vec![
                Header("content-type", METRICS_TYPE),
                Contains("compute_ctl_up{build_tag=\"latest\",status=\"running\"} 1\n"),
                Custom("one compute_ctl_up series", one_compute_ctl_up),
                Contains("# TYPE pg_cctl_pagestream_request_errors_total counter"),
                Contains("\npg_cctl_pagestream_request_errors_total 0\n"),
            ],
        ),
        ext("GET", "/metrics", "bad token ignored")
            .tok(Tok::BadSignature)
            .expect(200, vec![Header("content-type", METRICS_TYPE)]),
        ext("GET", "/autoscaling_metrics", "unauthenticated, no communicator socket")
            .expect(500, vec![ErrorPrefix("")]),
        ext("GET", "/insights", "no pg_stat_statements")
            .tok(Tok::Ours)
            // deliberate difference: upstream's failure string has doubled braces
            // (`{{"pg_stat_statements": []}}`); ours is an empty list (sql.rs::insights).
            .note("deliberate difference: empty list, not doubled braces")
            .expect(200, vec![Json(json!("{\"pg_stat_statements\": []}"))]),
        ext("POST", "/check_writability", "ours")
            .tok(Tok::Ours)
            .expect(200, vec![Json(json!(true))]),
        ext("POST", "/check_writability", "admin, twice")
            .tok(Tok::Admin)
            .expect(200, vec![Json(json!(true))]),
        ext("GET", "/dbs_and_roles", "ours").tok(Tok::Ours).expect(
            200,
            vec![
                Keys(&[("roles", Ty::Array), ("databases", Ty::Array)]),
                Custom("roles/databases shapes", dbs_and_roles),
                Contains("\"app_owner\""),
            ],
        ),
        ext("GET", "/database_schema?database=app", "existing database")
            .tok(Tok::Ours)
            .expect(
                200,
                vec![
                    Header("content-type", JSON),
                    Contains("PostgreSQL database dump"),
                ],
            ),
        ext("GET", "/database_schema?database=missing_db", "missing database")
            .tok(Tok::Ours)
            .expect(404, vec![Error("database does not exist")]),
        ext("GET", "/database_schema?database=no%20such%20db", "encoded name, missing")
            .tok(Tok::Ours)
            .expect(404, vec![Error("database does not exist")]),
        ext("GET", "/database_schema?database=", "empty name")
            .tok(Tok::Ours)
            // PGDATABASE="" falls back to the user's database, which does not exist, and
            // its FATAL does not name "" — upstream's generic 500.
            .expect(500, vec![Error("failed to execute pg_dump")]),
        ext("GET", "/database_schema?database=app&format=x", "unknown parameter ignored")
            .tok(Tok::Ours)
            .expect(200, vec![Contains("PostgreSQL database dump")]),
        ext("GET", "/database_schema", "no query")
            .tok(Tok::Ours)
            .expect(400, vec![ErrorPrefix("failed to deserialize query string: ")]),
        ext("GET", "/database_schema?db=app", "wrong parameter")
            .tok(Tok::Ours)
            .expect(
                400,
                vec![Error(
                    "failed to deserialize query string: missing field `database`",
                )],
            ),
        ext("GET", "/database_schema?database=app&database=x", "duplicate parameter")
            .tok(Tok::Ours)
            .expect(
                400,
                vec![Error(
                    "failed to deserialize query string: duplicate field `database`",
                )],
            ),
        ext("GET", "/hadron_liveness_probe", "postgres up")
            .tok(Tok::Ours)
            .expect(200, vec![Json(json!("ok"))]),
        ext("GET", "/hadron_liveness_probe", "no token")
            .expect(400, vec![Error("invalid authorization token")]),
        ext("POST", "/terminate?mode=slow", "bad mode")
            .tok(Tok::Ours)
            // Upstream's optional-query rejection: plain text, original case. Whether the
            // field path (`mode: `) precedes serde's text is not pinned down here.
            .expect(
                400,
                vec![
                    Header("content-type", PLAIN),
                    TextPrefix("Failed to deserialize query string: "),
                    Contains("unknown variant `slow`, expected `fast` or `immediate`"),
                ],
            ),
        ext("POST", "/terminate?mode=fast&mode=slow", "duplicate mode")
            .tok(Tok::Ours)
            .expect(
                400,
                vec![
                    Header("content-type", PLAIN),
                    TextPrefix("Failed to deserialize query string: "),
                    Contains("duplicate field `mode`"),
                ],
            ),
        // ---- §6 LFC (GET before POST: the POSTs start background runs).
        ext("GET", "/lfc/prewarm", "initial")
            .tok(Tok::Ours)
            .expect(200, vec![Json(json!({"status": "not_prewarmed"}))]),
        ext("GET", "/lfc/offload", "initial")
            .tok(Tok::Ours)
            .expect(200, vec![Json(json!({"status": "not_offloaded"}))]),
        ext("POST", "/lfc/prewarm?from_endpoint=a&from_endpoint=b", "duplicate query")
            .tok(Tok::Ours)
            .expect(
                400,
                vec![
                    Header("content-type", PLAIN),
                    TextPrefix("Failed to deserialize query string: "),
                    Contains("duplicate field `from_endpoint`"),
                ],
            ),
        ext("POST", "/lfc/prewarm", "start").tok(Tok::Ours).expect(202, vec![Empty]),
        ext("DELETE", "/lfc/prewarm", "cancel").tok(Tok::Ours).expect(202, vec![Empty]),
        ext("GET", "/lfc/prewarm", "after a run")
            .tok(Tok::Ours)
            .expect(200, vec![Custom("prewarm state after a run", prewarm_ran)]),
        ext("POST", "/lfc/offload", "start").tok(Tok::Ours).expect(202, vec![Empty]),
        ext("GET", "/lfc/offload", "after a run")
            .tok(Tok::Ours)
            .expect(200, vec![Custom("offload state after a run", offload_ran)]),
        ext("POST", "/lfc/offload", "other compute").tok(Tok::OtherCompute).expect(
            403,
            vec![Error("invalid compute ID in authorization token claims")],
        ),
        ext("GET", "/metrics", "LFC counters and upstream families").expect(
            200,
            vec![
                Custom("upstream's unlabelled families", upstream_families),
                Contains("\ncompute_ctl_lfc_prewarms_total 1\n"),
                Contains("\ncompute_ctl_lfc_offloads_total 1\n"),
            ],
        ),
        // ---- §7 promote (plain-text framework rejections; the state object on failure).
        ext("POST", "/promote", "no content type")
            .tok(Tok::Ours)
            .body(None, promote.to_string())
            .expect(
                415,
                vec![
                    Header("content-type", PLAIN),
                    Text("Expected request with `Content-Type: application/json`"),
                ],
            ),
        ext("POST", "/promote", "syntax error")
            .tok(Tok::Ours)
            .body(Some(JSON), "{")
            .expect(
                400,
                vec![
                    Header("content-type", PLAIN),
                    Contains("Failed to parse the request body as JSON: "),
                ],
            ),
        ext("POST", "/promote", "missing wal_flush_lsn")
            .tok(Tok::Ours)
            .json(&json!({"spec": neon_spec(&["sk1:5454"])}))
            .expect(
                422,
                vec![
                    Header("content-type", PLAIN),
                    Contains("Failed to deserialize the JSON body into the target type: "),
                    Contains("missing field `wal_flush_lsn`"),
                ],
            ),
        ext("POST", "/promote", "bad LSN")
            .tok(Tok::Ours)
            .json(&json!({"spec": neon_spec(&["sk1:5454"]), "wal_flush_lsn": "not-an-lsn"}))
            .expect(
                422,
                vec![
                    Header("content-type", PLAIN),
                    Contains("Failed to deserialize the JSON body into the target type: "),
                    Contains("wal_flush_lsn"),
                ],
            ),
        ext("POST", "/promote", "invalid spec")
            .tok(Tok::Ours)
            .json(&promote_invalid)
            .expect(
                400,
                vec![ErrorContains(
                    "duplicate entry in safekeeper_connstrings: sk1:5454!",
                )],
            ),
        ext("POST", "/promote", "primary is not a replica")
            .tok(Tok::Ours)
            .json(&promote)
            .expect(
                500,
                vec![Json(
                    json!({"status": "failed", "error": "compute mode \"Primary\" is not replica"}),
                )],
            ),
        ext("POST", "/promote", "result cached").tok(Tok::Admin).json(&promote).expect(
            500,
            vec![Field("/status", json!("failed"))],
        ),
        // ---- §2.5 internal server (no auth).
        int("POST", "/extension_server/foo.control", "no remote storage")
            .expect(412, vec![Error("remote storage is not configured")]),
        int("POST", "/extension_server/libfoo.so?is_library=true", "library, no remote storage")
            .expect(412, vec![Error("remote storage is not configured")]),
        int("POST", "/extension_server/foo?is_library=maybe", "bad query")
            .expect(400, vec![ErrorPrefix("failed to deserialize query string: ")]),
        int("POST", "/extensions", "no content type")
            .body(None, extension.to_string())
            .expect(415, vec![Error(E415)]),
        int("POST", "/extensions", "text/json")
            .body(Some("text/json"), extension.to_string())
            .expect(415, vec![Error(E415)]),
        int("POST", "/extensions", "syntax error")
            .body(Some(JSON), "{\"extension\":")
            .expect(400, vec![ErrorPrefix(UNPARSABLE)]),
        int("POST", "/extensions", "missing version")
            .json(&json!({"extension": "pg_trgm", "database": "app"}))
            .expect(
                422,
                vec![ErrorPrefix(UNDESERIALIZABLE), ErrorContains("missing field `version`")],
            ),
        int("POST", "/extensions", "install pg_trgm 1.6")
            .json(&extension)
            .expect(201, vec![Json(json!({"extension": "pg_trgm", "version": "1.6"}))]),
        int("POST", "/extensions", "already installed")
            .json(&extension)
            .expect(201, vec![Json(json!({"extension": "pg_trgm", "version": "1.6"}))]),
        int("POST", "/extensions", "unknown version")
            .json(&json!({"extension": "hstore", "database": "app", "version": "9.9"}))
            .expect(500, vec![ErrorPrefix("failed to install extension: ")]),
        int("POST", "/grants", "no content type")
            .body(None, grants.to_string())
            .expect(415, vec![Error(E415)]),
        int("POST", "/grants", "lower-case privilege")
            .json(&json!({"database": "app", "schema": "public", "privileges": ["usage"], "role": "app_reader"}))
            .expect(
                422,
                vec![ErrorPrefix(
                    "failed to deserialize the json body into the target type: privileges[0]: unknown variant `usage`",
                )],
            ),
        int("POST", "/grants", "privileges not a list")
            .json(&json!({"database": "app", "schema": "public", "privileges": "USAGE", "role": "app_reader"}))
            .expect(
                422,
                vec![ErrorPrefix(
                    "failed to deserialize the json body into the target type: privileges: invalid type: string \"USAGE\"",
                )],
            ),
        int("POST", "/grants", "missing role")
            .json(&json!({"database": "app", "schema": "public", "privileges": ["USAGE"]}))
            .expect(
                422,
                vec![ErrorPrefix(UNDESERIALIZABLE), ErrorContains("missing field `role`")],
            ),
        int("POST", "/grants", "grant").json(&grants).expect(201, vec![Json(grants.clone())]),
        int("POST", "/grants", "unknown database")
            .json(&json!({"database": "no_such_db", "schema": "public", "privileges": ["USAGE"], "role": "app_reader"}))
            .expect(
                500,
                vec![ErrorPrefix("failed to grant role privileges to the schema: ")],
            ),
        int("POST", "/extensions", "unknown database")
            .json(&json!({"extension": "pg_trgm", "database": "no_such_db", "version": "1.6"}))
            .expect(500, vec![ErrorPrefix("failed to install extension: ")]),
        int("POST", "/grants", "unknown role")
            .json(&json!({"database": "app", "schema": "public", "privileges": ["USAGE"], "role": "no_such_role"}))
            .expect(
                500,
                vec![ErrorPrefix("failed to grant role privileges to the schema: ")],
            ),
        int("GET", "/status", "internal status without token")
            // deliberate difference: ours serves /status and /metrics.json on the internal
            // (loopback) server without a token; upstream has no such routes there (404).
            .note("deliberate difference: internal /status (routes.rs)")
            .expect(200, running_status()),
        int("GET", "/metrics", "internal metrics")
            // deliberate difference: /metrics, /healthz, /readyz on both servers (routes.rs).
            .note("deliberate difference: internal /metrics (routes.rs)")
            .expect(200, vec![Header("content-type", METRICS_TYPE)]),
        ext("GET", "/healthz", "ours, unauthenticated")
            // deliberate difference: our probe routes (upstream 404).
            .note("deliberate difference: /healthz is ours (routes.rs)")
            .expect(200, vec![Json(json!({"status": "ok"}))]),
        int("POST", "/failpoints", "release build")
            // Upstream registers /failpoints only in `testing` builds: 404 elsewhere.
            .json(&json!([]))
            .expect(404, vec![Empty]),
        // ---- state-changing rows: refresh, configure, terminate.
        int("POST", "/refresh_configuration", "running")
            .expect(200, vec![Empty])
            .then(Then::WaitStatus("running")),
        ext("GET", "/metrics", "refresh counted").expect(
            200,
            vec![
                Contains("\npg_cctl_pagestream_request_errors_total 1\n"),
                // Upstream's configurator moves to `refresh_configuration` with set_status
                // (gauge updated), then back to `running` directly (gauge untouched).
                Contains(
                    "compute_ctl_up{build_tag=\"latest\",status=\"refresh-configuration\"} 1\n",
                ),
                Custom("one compute_ctl_up series", one_compute_ctl_up),
            ],
        ),
        ext("POST", "/configure", "no content type")
            .tok(Tok::Ours)
            .body(None, configure.to_string())
            .expect(415, vec![Error(E415)]),
        ext("POST", "/configure", "text/json")
            .tok(Tok::Ours)
            .body(Some("text/json"), configure.to_string())
            .expect(415, vec![Error(E415)]),
        ext("POST", "/configure", "unparsable content type")
            .tok(Tok::Ours)
            .body(Some("json"), configure.to_string())
            .expect(415, vec![Error(E415)]),
        ext("POST", "/configure", "syntax error")
            .tok(Tok::Ours)
            .body(Some("application/json; charset=utf-8"), "{\"spec\": ")
            .expect(400, vec![ErrorPrefix(UNPARSABLE)]),
        ext("POST", "/configure", "+json accepted, syntax error")
            .tok(Tok::Ours)
            .body(Some("application/vnd.neon+json"), "{")
            .expect(400, vec![ErrorPrefix(UNPARSABLE)]),
        ext("POST", "/configure", "trailing garbage")
            .tok(Tok::Ours)
            .body(Some(JSON), format!("{configure} x"))
            .expect(400, vec![ErrorPrefix(UNPARSABLE)]),
        ext("POST", "/configure", "missing compute_ctl_config")
            .tok(Tok::Ours)
            .json(&json!({"spec": spec}))
            .expect(
                422,
                vec![
                    ErrorPrefix(UNDESERIALIZABLE),
                    ErrorContains("missing field `compute_ctl_config`"),
                ],
            ),
        ext("POST", "/configure", "compute_ctl_config of the wrong type")
            .tok(Tok::Ours)
            .json(&json!({"spec": spec, "compute_ctl_config": 1}))
            .expect(
                422,
                vec![ErrorPrefix(
                    "failed to deserialize the json body into the target type: compute_ctl_config: invalid type: integer `1`",
                )],
            ),
        ext("POST", "/configure", "not an object")
            .tok(Tok::Ours)
            .json(&json!([]))
            .expect(422, vec![ErrorPrefix(UNDESERIALIZABLE)]),
        ext("POST", "/configure", "missing spec")
            .tok(Tok::Ours)
            .json(&json!({"compute_ctl_config": {}}))
            .expect(
                422,
                vec![ErrorPrefix(UNDESERIALIZABLE), ErrorContains("missing field `spec`")],
            ),
        ext("POST", "/configure", "wrong type names the path")
            .tok(Tok::Ours)
            .json(&json!({"spec": wrong_type, "compute_ctl_config": {}}))
            .expect(
                422,
                vec![ErrorPrefix(
                    "failed to deserialize the json body into the target type: spec.cluster.roles: invalid type: integer `1`",
                )],
            ),
        ext("POST", "/configure", "over 2 MiB")
            .tok(Tok::Ours)
            .body(Some(JSON), over_limit.clone())
            .expect(
                413,
                vec![Error("failed to buffer the request body: length limit exceeded")],
            ),
        ext("POST", "/configure", "over 2 MiB, chunked (no length)")
            .tok(Tok::Ours)
            .header("Transfer-Encoding", "chunked")
            .body(Some(JSON), over_limit)
            .expect(
                413,
                vec![Error("failed to buffer the request body: length limit exceeded")],
            ),
        ext("POST", "/configure", "exactly 2 MiB is read (then 400)")
            .tok(Tok::Ours)
            .body(Some(JSON), vec![b' '; MAX_BODY])
            .expect(400, vec![ErrorPrefix(UNPARSABLE)]),
        ext("POST", "/configure", "exactly 2 MiB chunked is read (then 400)")
            .tok(Tok::Ours)
            .header("Transfer-Encoding", "chunked")
            .body(Some(JSON), vec![b' '; MAX_BODY])
            .expect(400, vec![ErrorPrefix(UNPARSABLE)]),
        ext("POST", "/configure", "empty body")
            .tok(Tok::Ours)
            .body(Some(JSON), "")
            .expect(400, vec![ErrorPrefix(UNPARSABLE)]),
        ext("POST", "/configure", "content type in mixed case")
            .tok(Tok::Ours)
            .body(Some("Application/JSON"), "{")
            .expect(400, vec![ErrorPrefix(UNPARSABLE)]),
        ext("POST", "/configure", "invalid spec (duplicate safekeepers)")
            .tok(Tok::Ours)
            .json(&configure_invalid)
            .expect(
                400,
                vec![ErrorContains(
                    "duplicate entry in safekeeper_connstrings: sk1:5454!",
                )],
            ),
        ext("POST", "/configure", "reconfigure, keys in body ignored")
            .tok(Tok::Ours)
            .json(&configure)
            .expect(200, running_status()),
        ext("POST", "/configure", "unknown members ignored")
            .tok(Tok::Ours)
            .json(&configure_unknown)
            .expect(200, running_status()),
        ext("GET", "/status", "key set unchanged by /configure")
            .tok(Tok::Ours)
            .expect(200, running_status()),
        ext("POST", "/terminate", "fast")
            .tok(Tok::Ours)
            .expect(200, vec![Json(json!({"lsn": null}))]),
        ext("POST", "/terminate", "again within linger")
            .tok(Tok::Admin)
            .expect(201, vec![Json(json!({"lsn": null}))]),
        ext("POST", "/terminate?mode=immediate", "again, immediate")
            .tok(Tok::Ours)
            .expect(201, vec![Json(json!({"lsn": null}))]),
        ext("GET", "/status", "terminated")
            .tok(Tok::Ours)
            .expect(200, vec![Field("/status", json!("terminated"))]),
        ext("POST", "/configure", "after terminate")
            .tok(Tok::Ours)
            .json(&configure)
            .expect(412, vec![Error("invalid compute status: terminated")]),
        ext("POST", "/configure", "invalid spec after terminate: 400 before 412")
            .tok(Tok::Ours)
            .json(&configure_invalid)
            .expect(
                400,
                vec![ErrorContains(
                    "duplicate entry in safekeeper_connstrings: sk1:5454!",
                )],
            ),
        ext("POST", "/check_writability", "after terminate")
            .tok(Tok::Ours)
            .expect(412, vec![Error("invalid compute status: terminated")]),
        int("POST", "/refresh_configuration", "after terminate").expect(
            500,
            vec![Error("Cannot refresh compute configuration in state Terminated")],
        ),
        int("POST", "/extensions", "after terminate")
            .json(&extension)
            .expect(412, vec![Error("invalid compute status: terminated")]),
        int("POST", "/grants", "after terminate")
            .json(&grants)
            .expect(412, vec![Error("invalid compute status: terminated")]),
        ext("GET", "/insights", "after terminate")
            .tok(Tok::Ours)
            .expect(412, vec![Error("invalid compute status: terminated")]),
        ext("GET", "/hadron_liveness_probe", "postgres down")
            .tok(Tok::Ours)
            .expect(500, vec![ErrorPrefix("")]),
        ext("GET", "/metrics", "terminated is never exported").expect(
            200,
            vec![
                Contains(
                    "compute_ctl_up{build_tag=\"latest\",status=\"termination-pending-fast\"} 1\n",
                ),
                Custom("one compute_ctl_up series", one_compute_ctl_up),
            ],
        ),
    ]
}

/// The rows for a compute whose start failed (Postgres refused its configuration). Upstream
/// keeps serving in `failed`; every route that needs a running compute answers 412.
fn failed_table(spec: &Value) -> Vec<Row> {
    use Check::*;
    let failed = || vec![Error("invalid compute status: failed")];
    let configure = json!({"spec": spec, "compute_ctl_config": {}});
    vec![
        ext("GET", "/status", "failed start").tok(Tok::Ours).expect(
            200,
            vec![
                Keys(STATUS_KEYS),
                Field("/status", json!("failed")),
                Custom("error is a non-empty string", failed_error),
            ],
        ),
        ext("GET", "/metrics", "over IPv6 loopback")
            .server(Srv::ExtV6)
            .expect(200, vec![Header("content-type", METRICS_TYPE)]),
        ext("GET", "/metrics", "failed").expect(
            200,
            vec![
                Contains("compute_ctl_up{build_tag=\"latest\",status=\"failed\"} 1\n"),
                Custom("one compute_ctl_up series", one_compute_ctl_up),
            ],
        ),
        ext("POST", "/check_writability", "failed")
            .tok(Tok::Ours)
            .expect(412, failed()),
        ext("GET", "/insights", "failed").tok(Tok::Ours).expect(412, failed()),
        ext("POST", "/configure", "valid spec while failed")
            .tok(Tok::Ours)
            .json(&configure)
            .expect(412, failed()),
        int("POST", "/extensions", "failed")
            .json(&json!({"extension": "pg_trgm", "database": "app", "version": "1.6"}))
            .expect(412, failed()),
        int("POST", "/grants", "failed")
            .json(&json!({"database": "app", "schema": "public", "privileges": ["USAGE"], "role": "app_reader"}))
            .expect(412, failed()),
        ext("POST", "/configure", "invalid spec while failed: 400 before 412")
            .tok(Tok::Ours)
            .json(&json!({"spec": neon_spec(&[]), "compute_ctl_config": {}}))
            .expect(400, vec![ErrorContains("safekeeper_connstrings")]),
        ext("GET", "/dbs_and_roles", "postgres down")
            .tok(Tok::Ours)
            .expect(500, vec![ErrorPrefix("")]),
        ext("GET", "/database_schema?database=app", "postgres down")
            .tok(Tok::Ours)
            .expect(500, vec![Error("failed to execute pg_dump")]),
        ext("GET", "/hadron_liveness_probe", "postgres down")
            .tok(Tok::Ours)
            .expect(500, vec![ErrorPrefix("")]),
        ext("GET", "/lfc/prewarm", "failed")
            .tok(Tok::Ours)
            .expect(200, vec![Json(json!({"status": "not_prewarmed"}))]),
        ext("POST", "/terminate", "from failed")
            .tok(Tok::Ours)
            // deliberate difference: upstream answers 412 `invalid compute status: failed`
            // and leaves only a signal; ours terminates (control.rs::terminate).
            .note("deliberate difference: /terminate from failed works (upstream 412)")
            .expect(200, vec![Json(json!({"lsn": null}))]),
        ext("POST", "/terminate", "again within linger")
            .tok(Tok::Ours)
            .expect(201, vec![Json(json!({"lsn": null}))]),
    ]
}

fn failed_error(reply: &Reply) -> Result<(), String> {
    let body = reply.json()?;
    match body["error"].as_str() {
        Some(error) if !error.trim().is_empty() => Ok(()),
        _ => Err(format!("error is {}", body["error"])),
    }
}

// ---------------------------------------------------------------------------------------
// The compute and the replay

struct Outcome {
    row: usize,
    route: String,
    case: &'static str,
    expected: String,
    got: String,
    problems: Vec<String>,
    note: Option<&'static str>,
}

/// A compute-ctl with its key set, ports and temp dir (all removed on drop, even when the
/// test fails: the child and its postmaster are killed first, then the directory goes).
struct Compute {
    child: PostgresChild,
    keys: Keys,
    external: u16,
    internal: u16,
    spec: Value,
    _dir: TestDir,
}

impl Compute {
    /// Starts compute-ctl on the sample spec (initdb source) with `tune` applied to it, an
    /// Ed25519 key set and `-i compute-1`.
    /// `listen`: `--http-listen` (none: compute-ctl's default for a keyed API).
    fn start(prefix: &str, listen: Option<&str>, tune: impl FnOnce(&mut Value)) -> Compute {
        let dir = TestDir::new(prefix);
        let spec_path = write_sample_spec(dir.path(), free_tcp_port());
        let mut spec: Value =
            serde_json::from_str(&std::fs::read_to_string(&spec_path).expect("spec.json"))
                .expect("spec.json is JSON");
        spec["tenant_id"] = json!(TENANT);
        spec["timeline_id"] = json!(TIMELINE);
        tune(&mut spec);
        let keys = Keys::new();
        let config = json!({"spec": spec, "compute_ctl_config": {"jwks": {"keys": [keys.jwk()]}}});
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, config.to_string()).expect("writing config.json");
        let pgdata = dir.path().join("pgdata");
        let (external, internal) = (free_tcp_port(), free_tcp_port());
        let mut command = Command::new(binary("compute-ctl"));
        if let Some(listen) = listen {
            command.args(["--http-listen", listen]);
        }
        let child = command
            .arg("-c")
            .arg(&config_path)
            .args(["-i", COMPUTE_ID])
            .arg("-b")
            .arg(pg_test_support::pg_bin("postgres"))
            .arg("-D")
            .arg(&pgdata)
            .args(["--external-http-port", &external.to_string()])
            .args(["--internal-http-port", &internal.to_string()])
            .args(["--terminated-grace", "3s"])
            .args(["--failed-grace", "120s"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawning compute-ctl");
        Compute {
            child: PostgresChild::new(child, &pgdata),
            keys,
            external,
            internal,
            spec,
            _dir: dir,
        }
    }

    /// Polls `/status` (our token) until it says `wanted`; `failed` ends the wait early.
    fn wait_for_status(&self, wanted: &str, timeout: Duration) -> Result<(), String> {
        let authorization = self.keys.authorization(Tok::Ours).expect("a token");
        let headers = [("Authorization".to_string(), authorization)];
        let mut last = Value::Null;
        wait_until(timeout, || {
            let answer =
                send(self.external, "GET", "/status", &headers, b"").and_then(|reply| reply.json());
            if let Ok(status) = answer {
                last = status;
            }
            last["status"] == wanted || last["status"] == "failed"
        });
        match last["status"] == wanted {
            true => Ok(()),
            false => Err(format!("status never became {wanted}; last: {last}")),
        }
    }

    fn run_row(&self, row: &Row) -> (String, Vec<String>) {
        let (host, port) = match row.server {
            Srv::Ext => ("127.0.0.1", self.external),
            Srv::Int => ("127.0.0.1", self.internal),
            Srv::ExtV6 => ("::1", self.external),
        };
        let mut headers = row.headers.clone();
        if let Some(value) = self.keys.authorization(row.tok) {
            headers.push(("Authorization".to_string(), value));
        }
        let reply = match send_to(host, port, row.method, &row.target, &headers, &row.body) {
            Ok(reply) => reply,
            Err(error) => return (format!("no answer: {error}"), vec![error]),
        };
        let mut problems = Vec::new();
        if reply.status != row.status {
            problems.push(format!("status {}", reply.status));
        }
        for check in &row.checks {
            if let Err(problem) = check.verify(&reply) {
                problems.push(format!("{}: {problem}", check.describe()));
            }
        }
        (reply.summary(), problems)
    }

    /// Replays every row in order (a mismatch does not stop the replay), then checks that
    /// the process exits with `code` once the linger after `/terminate` has passed.
    fn replay(&mut self, rows: &[Row], code: i32) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            let (got, mut problems) = self.run_row(row);
            if let Some(Then::WaitStatus(wanted)) = row.then {
                if let Err(error) = self.wait_for_status(wanted, Duration::from_secs(60)) {
                    problems.push(error);
                }
            }
            let server = match row.server {
                Srv::Ext => "ext",
                Srv::Int => "int",
                Srv::ExtV6 => "ext6",
            };
            outcomes.push(Outcome {
                row: index + 1,
                route: format!("{server} {} {}", row.method, row.target),
                case: row.case,
                expected: row.expected(),
                got,
                problems,
                note: row.note,
            });
        }
        let mut exit = None;
        let exited = wait_until(Duration::from_secs(30), || {
            exit = self.child.try_wait().ok().flatten();
            exit.is_some()
        });
        let got = exit.and_then(|status| status.code());
        outcomes.push(Outcome {
            row: rows.len() + 1,
            route: "process".to_string(),
            case: "exits after the linger",
            expected: format!("exit {code}"),
            got: format!("{got:?}"),
            problems: match (exited, got) {
                (false, _) => vec!["still running 30 s after /terminate".to_string()],
                (true, got) if got == Some(code) => Vec::new(),
                (true, got) => vec![format!("exit code {got:?}")],
            },
            note: None,
        });
        outcomes
    }
}

/// Prints every row, then fails listing ALL mismatching rows.
fn report(outcomes: &[Outcome]) {
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.problems.is_empty()).collect();
    println!("{}", render(&outcomes.iter().collect::<Vec<_>>()));
    if !failed.is_empty() {
        panic!(
            "{} of {} rows do not match upstream:\n{}",
            failed.len(),
            outcomes.len(),
            render(&failed)
        );
    }
}

fn render(outcomes: &[&Outcome]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>3} | {:<50} | {:<38} | {:<40} | got",
        "#", "route", "case", "expected"
    );
    for outcome in outcomes {
        let verdict = match outcome.problems.is_empty() {
            true => "ok".to_string(),
            false => format!("MISMATCH: {}", outcome.problems.join("; ")),
        };
        let _ = writeln!(
            out,
            "{:>3} | {:<50} | {:<38} | {:<40} | {} [{verdict}]",
            outcome.row,
            short(&outcome.route),
            outcome.case,
            short(&outcome.expected),
            outcome.got,
        );
        if let Some(note) = outcome.note {
            let _ = writeln!(out, "    |   note: {note}");
        }
    }
    out
}

#[test]
fn upstream_requests_get_upstream_answers() {
    let mut compute = Compute::start("compat", Some("127.0.0.1"), |_| {});
    if let Err(error) = compute.wait_for_status("running", Duration::from_secs(120)) {
        panic!("the compute did not start: {error}");
    }
    let rows = table(&compute.spec);
    let outcomes = compute.replay(&rows, 0);
    report(&outcomes);
}

#[test]
fn a_failed_compute_gets_upstream_answers() {
    // Postgres refuses the value, so the start fails after initdb.
    // Started without --http-listen: the external server's default address is checked too.
    let mut compute = Compute::start("compatf", None, |spec| {
        spec["cluster"]["settings"]
            .as_array_mut()
            .expect("the sample spec has settings")
            .push(json!({"name": "shared_buffers", "value": "lots", "vartype": "string"}));
    });
    if let Err(error) = compute.wait_for_status("failed", Duration::from_secs(120)) {
        panic!("the compute did not fail: {error}");
    }
    let mut spec = compute.spec.clone();
    spec["cluster"]["settings"]
        .as_array_mut()
        .expect("settings")
        .pop();
    let rows = failed_table(&spec);
    // A failed start exits 1 (cli.rs), also after a /terminate.
    let outcomes = compute.replay(&rows, 1);
    report(&outcomes);
}

/// Guards against a table that silently shrinks.
#[test]
fn the_table_covers_every_route() {
    let spec = json!({"format_version": 1.0, "cluster": {"roles": [], "databases": []}});
    let rows = table(&spec);
    for route in [
        "/status",
        "/metrics.json",
        "/metrics",
        "/autoscaling_metrics",
        "/configure",
        "/terminate",
        "/insights",
        "/check_writability",
        "/dbs_and_roles",
        "/database_schema",
        "/hadron_liveness_probe",
        "/promote",
        "/lfc/prewarm",
        "/lfc/offload",
        "/extension_server/",
        "/extensions",
        "/grants",
        "/refresh_configuration",
    ] {
        assert!(
            rows.iter().any(|row| row.target.starts_with(route)),
            "no row for {route}"
        );
    }
    assert!(rows.len() >= 140, "{} rows", rows.len());
    assert!(failed_table(&spec).len() >= 10);
}
