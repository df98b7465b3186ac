//! The values that reach an rsyslog configuration, each checked so that none can end its
//! string constant or add a directive: the forwarding targets (`host:port`), the ids of the
//! JSON payload and the paths.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// A checked forwarding target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// A DNS name, an IPv4 address or an IPv6 address (without brackets).
    pub host: String,
    /// The TCP port (not 0).
    pub port: u16,
}

/// An audit endpoint (`AUDIT_LOGGING_ENDPOINT`, `AUDIT_LOGGING_TLS_ENDPOINT`): `host:port`
/// with a DNS name, an IPv4 address or a bracketed IPv6 address (`[::1]:514`); the port is
/// required.
pub fn audit_endpoint(text: &str) -> Result<Target, String> {
    let expected = "expected host:port (a DNS name, an IPv4 address or [IPv6]) with a port \
                    from 1 to 65535, like logs.example.com:6514";
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{text:?}: no ']' after the IPv6 address; {expected}"))?;
        inside
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("{text:?}: {inside:?} is not an IPv6 address; {expected}"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("{text:?}: no port after the address; {expected}"))?;
        (inside, port)
    } else {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?}: no port; {expected}"))?;
        check_host(host).map_err(|why| format!("{text:?}: {why}; {expected}"))?;
        (host, port)
    };
    let port = parse_port(port).map_err(|why| format!("{text:?}: {why}; {expected}"))?;
    Ok(Target {
        host: host.to_string(),
        port,
    })
}

/// `logs_export_host`: split at the first `:` as upstream (so no IPv6 address); the host a
/// DNS name or an IPv4 address, the port required.
pub fn export_host(text: &str) -> Result<Target, String> {
    let expected = "expected host:port (a DNS name or an IPv4 address) with a port from 1 to \
                    65535, like logs.example.com:10514";
    let (host, port) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: no port; {expected}"))?;
    check_host(host).map_err(|why| format!("{text:?}: {why}; {expected}"))?;
    let port = parse_port(port).map_err(|why| format!("{text:?}: {why}; {expected}"))?;
    Ok(Target {
        host: host.to_string(),
        port,
    })
}

fn parse_port(text: &str) -> Result<u16, String> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u16>() {
        Ok(port) if digits && port > 0 => Ok(port),
        _ => Err(format!("{text:?} is not a port")),
    }
}

/// A DNS name (labels of letters, digits, `-` and `_`, separated by dots, at most 253
/// characters) or an IPv4 address.
fn check_host(host: &str) -> Result<(), String> {
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let name = host.strip_suffix('.').unwrap_or(host);
    if !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok) {
        return Ok(());
    }
    Err(format!("{host:?} is not a host name or an IPv4 address"))
}

/// An id written into the audit payload (`endpoint_id`, `project_id`): letters, digits and
/// `-`, `_`, `.`, `:`, at most 255 characters (Neon's ids are `ep-…` and lower-case words);
/// `field` names the spec field in the error.
pub fn check_id(field: &str, value: &str) -> Result<(), String> {
    let allowed = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if allowed && value.len() <= 255 {
        return Ok(());
    }
    Err(format!(
        "{field} {value:?} cannot be written to the rsyslog configuration: use letters, \
         digits, '-', '_', '.' and ':' only (at most 255 characters)"
    ))
}

/// A path written into an rsyslog string constant: absolute, UTF-8, no `"`, `\`, control
/// characters or glob characters; `what` names the flag or field in the error.
pub fn check_path(what: &str, path: &Path) -> Result<String, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("{what} {} is not UTF-8", path.display()))?;
    let bad = text
        .chars()
        .find(|c| c.is_control() || matches!(c, '"' | '\\' | '*' | '?' | '[' | ']' | '`'));
    if let Some(c) = bad {
        return Err(format!(
            "{what} {text:?} cannot be written to the rsyslog configuration: it contains \
             {c:?}; use a path without quotes, backslashes, glob or control characters"
        ));
    }
    if !path.is_absolute() {
        return Err(format!(
            "{what} {text:?} must be an absolute path for rsyslog"
        ));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: u16) -> Target {
        Target {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn audit_endpoints() {
        assert_eq!(
            audit_endpoint("logs.example.com:6514"),
            Ok(target("logs.example.com", 6514))
        );
        assert_eq!(audit_endpoint("10.1.2.3:514"), Ok(target("10.1.2.3", 514)));
        assert_eq!(audit_endpoint("[::1]:514"), Ok(target("::1", 514)));
        assert_eq!(audit_endpoint("localhost:1"), Ok(target("localhost", 1)));
        for bad in [
            "",
            "host",
            "host:",
            "host:0",
            "host:65536",
            "host:+1",
            ":514",
            "::1:514",
            "[::1]",
            "[::1]514",
            "[nothost]:514",
            "a b:514",
            "host\":514",
            "host\n:514",
            "-host:514",
            "host:514\naction(type=\"omfile\")",
            "x\" action(type=\"omfile\" file=\"/tmp/x\") #:1",
        ] {
            let error = audit_endpoint(bad).unwrap_err();
            assert!(error.contains("expected host:port"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn export_hosts_split_at_the_first_colon() {
        assert_eq!(
            export_host("collector:10514"),
            Ok(target("collector", 10514))
        );
        for bad in [
            "collector",
            "[::1]:514",
            "::1:514",
            "a:1:2",
            "h\":1",
            "h:1\"#",
        ] {
            assert!(export_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_and_paths() {
        assert!(check_id("endpoint_id", "ep-cool-darkness-123456").is_ok());
        assert!(check_id("project_id", "").is_ok());
        for bad in ["ep\"x", "ep\nx", "ep x", "ep\\x", "ep$x", "ep%x", "ep}x"] {
            let error = check_id("endpoint_id", bad).unwrap_err();
            assert!(error.starts_with("endpoint_id "), "{error}");
        }
        assert!(check_id("endpoint_id", &"a".repeat(256)).is_err());
        assert_eq!(
            check_path("--pgdata", Path::new("/var/db/pgdata")),
            Ok("/var/db/pgdata".into())
        );
        for bad in ["/a\"b", "/a\\b", "/a\nb", "/a*b", "relative"] {
            assert!(check_path("--pgdata", Path::new(bad)).is_err(), "{bad:?}");
        }
    }
}
