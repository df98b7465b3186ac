//! A pageserver's gRPC address as the spec gives it (`pageserver_connection_info.shards.*.
//! pageservers[].grpc_url`): upstream's `grpc://[user@]host[:port]`, read without any I/O.
//!
//! As upstream: the scheme is `grpc` in any case (the communicator refuses any other), a user
//! part is allowed and ignored (the control plane writes `grpc://no_user@host:port`), and a
//! URL without a port means port 80, where upstream's HTTP/2 transport goes for a scheme that
//! is not `https`. Stricter than upstream, which only fails when it connects: the host must be
//! a DNS name, an IPv4 address or a bracketed IPv6 address, and nothing may follow the port
//! but a `/`.

use std::fmt;
// `core::net`: the address types only (parsing, no sockets).
use core::net::Ipv6Addr;

/// The port of a `grpc://` URL without one (upstream's transport: 80 for plain HTTP/2).
pub const DEFAULT_PORT: u16 = 80;

/// A pageserver's gRPC endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GrpcUrl {
    /// A DNS name, an IPv4 address, or an IPv6 address (without its brackets).
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl GrpcUrl {
    /// Reads `text`; the error says what is wrong (never repeating a user part, which could
    /// hold a secret).
    pub fn parse(text: &str) -> Result<GrpcUrl, String> {
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("contains white space or a control character".to_string());
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err("is not a URL: expected grpc://host:port".to_string());
        };
        match scheme.to_ascii_lowercase().as_str() {
            "grpc" => {}
            "postgresql" | "postgres" => {
                return Err(
                    "is a libpq URL (postgresql://): it belongs in libpq_url; a grpc_url is \
                     grpc://host:port"
                        .to_string(),
                )
            }
            other => {
                return Err(format!(
                    "has the scheme {other:?}: a grpc_url is grpc://host:port"
                ))
            }
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if !tail.is_empty() && tail != "/" {
            return Err(
                "has a path, query or fragment: a grpc_url is grpc://host:port".to_string(),
            );
        }
        // A user part (`no_user@`) is allowed and ignored, as upstream.
        let host_port = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host_port)| host_port);
        let (host, port) = split_host_port(host_port)?;
        let port = match port {
            None => DEFAULT_PORT,
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port > 0 && text.bytes().all(|b| b.is_ascii_digit()) => port,
                _ => return Err(format!("has the port {text:?}: expected 1 to 65535")),
            },
        };
        Ok(GrpcUrl { host, port })
    }

    /// The URI an HTTP/2 client connects to: `http://host:port` (gRPC without TLS).
    pub fn http_uri(&self) -> String {
        format!("http://{self}")
    }
}

/// `host:port` (an IPv6 host in brackets): how errors and logs name the pageserver.
impl fmt::Display for GrpcUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The host and the port text of `host[:port]` or `[v6][:port]`.
fn split_host_port(text: &str) -> Result<(String, Option<&str>), String> {
    if let Some(bracketed) = text.strip_prefix('[') {
        let Some((address, after)) = bracketed.split_once(']') else {
            return Err("has an IPv6 address without its closing ]".to_string());
        };
        if address.parse::<Ipv6Addr>().is_err() {
            return Err(format!("has {address:?} in brackets, not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| {
                "has something after its IPv6 address that is not :port".to_string()
            })?),
        };
        return Ok((address.to_string(), port));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    };
    if host.is_empty() {
        return Err("has no host: expected grpc://host:port".to_string());
    }
    let name_like = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !name_like {
        return Err(format!(
            "has the host {host:?}: expected a DNS name, an IPv4 address or [an IPv6 address]"
        ));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(host: &str, port: u16) -> Result<GrpcUrl, String> {
        Ok(GrpcUrl {
            host: host.to_string(),
            port,
        })
    }

    #[test]
    fn upstream_forms_are_read() {
        assert_eq!(
            GrpcUrl::parse("grpc://no_user@ps-1.local:51051"),
            url("ps-1.local", 51051)
        );
        assert_eq!(GrpcUrl::parse("GRPC://127.0.0.1:1/"), url("127.0.0.1", 1));
        assert_eq!(GrpcUrl::parse("grpc://[::1]:6401"), url("::1", 6401));
        assert_eq!(GrpcUrl::parse("grpc://ps"), url("ps", DEFAULT_PORT));
        assert_eq!(
            GrpcUrl::parse("grpc://[::1]").unwrap().to_string(),
            "[::1]:80"
        );
        assert_eq!(
            GrpcUrl::parse("grpc://u:secret@ps:5").unwrap().http_uri(),
            "http://ps:5"
        );
    }

    #[test]
    fn anything_else_is_refused_saying_why() {
        let cases = [
            ("postgresql://no_user@ps:6400", "belongs in libpq_url"),
            ("http://ps:1", "has the scheme \"http\""),
            ("host=ps port=1", "white space"),
            ("ps:1", "is not a URL"),
            ("grpc://ps:1/page_api", "has a path"),
            ("grpc://ps:1?x=1", "has a path"),
            ("grpc://:1", "has no host"),
            ("grpc://ps:0", "has the port \"0\""),
            ("grpc://ps:65536", "has the port \"65536\""),
            ("grpc://ps:+1", "has the port \"+1\""),
            ("grpc://ps:", "has the port \"\""),
            ("grpc://p%73:1", "has the host"),
            ("grpc://[::1:1", "without its closing ]"),
            ("grpc://[zz]:1", "not an IPv6 address"),
            ("grpc://[::1]x", "that is not :port"),
            ("grpc://ps:1\n", "control character"),
        ];
        for (text, expected) in cases {
            let error = GrpcUrl::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
        let secret = GrpcUrl::parse("grpc://u:hunter2@:1").unwrap_err();
        assert!(!secret.contains("hunter2"), "{secret}");
    }
}
