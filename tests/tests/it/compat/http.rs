//! A raw HTTP/1.1 client (any method, any header, no Content-Type unless asked), so every status code and framing case can be exercised.

use super::*;

/// One response.
#[derive(Debug, Default)]
pub struct Reply {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.body)
            .map_err(|error| format!("body is not JSON ({error}): {}", short(&self.text())))
    }

    pub fn summary(&self) -> String {
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

pub fn short(text: &str) -> String {
    let text = text.replace('\n', "\\n");
    if text.chars().count() > 90 {
        format!("{}…", text.chars().take(90).collect::<String>())
    } else {
        text
    }
}

pub fn send(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Reply, String> {
    send_to("127.0.0.1", port, method, target, headers, body)
}

pub fn send_to(
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

pub fn parse_response(raw: &[u8], head_only: bool) -> Result<Reply, String> {
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

pub fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
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
