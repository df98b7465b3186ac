//! The table's vocabulary: servers, JSON types, the checks on a response and the row builder.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Srv {
    Ext,
    Int,
    /// The external server over IPv6 loopback (upstream binds `[::]`).
    ExtV6,
}

/// A JSON type.
#[derive(Clone, Copy, Debug)]
pub enum Ty {
    Str,
    StrOrNull,
    Uint,
    Array,
}

impl Ty {
    pub fn matches(self, value: &Value) -> bool {
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
pub enum Check {
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
    pub fn describe(&self) -> String {
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

    pub fn verify(&self, reply: &Reply) -> Result<(), String> {
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
pub enum Then {
    /// Poll `/status` (our token) until it says this.
    WaitStatus(&'static str),
}

/// One request and what upstream answers.
pub struct Row {
    pub server: Srv,
    pub method: &'static str,
    pub target: String,
    pub case: &'static str,
    pub tok: Tok,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub status: u16,
    pub checks: Vec<Check>,
    /// `deliberate difference: …` or `…`.
    pub note: Option<&'static str>,
    pub then: Option<Then>,
}

pub fn ext(method: &'static str, target: &str, case: &'static str) -> Row {
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

pub fn int(method: &'static str, target: &str, case: &'static str) -> Row {
    Row {
        server: Srv::Int,
        ..ext(method, target, case)
    }
}

impl Row {
    pub fn server(mut self, server: Srv) -> Row {
        self.server = server;
        self
    }

    pub fn tok(mut self, tok: Tok) -> Row {
        self.tok = tok;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Row {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// A body with this `Content-Type` (none if `None`).
    pub fn body(mut self, content_type: Option<&str>, body: impl Into<Vec<u8>>) -> Row {
        if let Some(content_type) = content_type {
            self = self.header("Content-Type", content_type);
        }
        self.body = body.into();
        self
    }

    /// A JSON body with `Content-Type: application/json`.
    pub fn json(self, body: &Value) -> Row {
        self.body(Some(JSON), body.to_string())
    }

    pub fn expect(mut self, status: u16, checks: Vec<Check>) -> Row {
        self.status = status;
        self.checks = checks;
        self
    }

    pub fn note(mut self, note: &'static str) -> Row {
        self.note = Some(note);
        self
    }

    pub fn then(mut self, then: Then) -> Row {
        self.then = Some(then);
        self
    }

    pub fn expected(&self) -> String {
        let mut out = self.status.to_string();
        for check in &self.checks {
            let _ = write!(out, " {}", check.describe());
        }
        out
    }
}
