//! The PostgreSQL wire messages a fake backend sends, built as bytes (one encoder for the
//! scripted [`FakeBackend`](super::FakeBackend) and for byte-level scripts,
//! [`scripted`](super::scripted)), and the reading of frontend messages.

use std::io::Read;

/// One backend message: `tag`, its length, `body`.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut message = vec![tag];
    // Test messages are far below 2 GiB; a larger one would be a broken test.
    let length = u32::try_from(body.len() + 4).unwrap_or(u32::MAX);
    message.extend_from_slice(&length.to_be_bytes());
    message.extend_from_slice(body);
    message
}

/// An `AuthenticationRequest` with `code` (0 = ok, 3 = cleartext, 5 = md5 …) and `extra`
/// bytes (the md5 salt).
pub fn auth(code: i32, extra: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(extra);
    message(b'R', &body)
}

/// `ReadyForQuery`, idle.
pub fn ready() -> Vec<u8> {
    message(b'Z', b"I")
}

/// An `ErrorResponse` with severity, SQLSTATE `code` and message `text`.
pub fn error(severity: &str, code: &str, text: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', text),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    message(b'E', &body)
}

/// A `RowDescription` of text columns named `names`.
pub fn row_description(names: &[&str]) -> Vec<u8> {
    const TEXT_OID: i32 = 25;
    let mut body = count(names.len()).to_vec();
    for name in names {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(&0i32.to_be_bytes()); // table oid
        body.extend_from_slice(&0i16.to_be_bytes()); // column number
        body.extend_from_slice(&TEXT_OID.to_be_bytes());
        body.extend_from_slice(&(-1i16).to_be_bytes()); // type size
        body.extend_from_slice(&(-1i32).to_be_bytes()); // type modifier
        body.extend_from_slice(&0i16.to_be_bytes()); // text format
    }
    message(b'T', &body)
}

/// A `DataRow` of text values (`None`: NULL).
pub fn data_row(values: &[Option<&str>]) -> Vec<u8> {
    let mut body = count(values.len()).to_vec();
    for value in values {
        match value {
            Some(value) => {
                let length = i32::try_from(value.len()).unwrap_or(i32::MAX);
                body.extend_from_slice(&length.to_be_bytes());
                body.extend_from_slice(value.as_bytes());
            }
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    message(b'D', &body)
}

/// A column count as the protocol's `Int16`.
fn count(columns: usize) -> [u8; 2] {
    i16::try_from(columns).unwrap_or(i16::MAX).to_be_bytes()
}

/// Reads one frontend message; the startup packet (`startup`) has no tag and gets tag 0.
pub fn read_frontend(stream: &mut impl Read, startup: bool) -> std::io::Result<(u8, Vec<u8>)> {
    let mut tag = [0u8];
    if !startup {
        stream.read_exact(&mut tag)?;
    }
    let mut length = [0u8; 4];
    stream.read_exact(&mut length)?;
    let length = u32::from_be_bytes(length) as usize;
    let mut body = vec![0; length.saturating_sub(4)];
    stream.read_exact(&mut body)?;
    Ok((tag[0], body))
}
