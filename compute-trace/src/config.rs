//! The exporter's configuration from the standard OpenTelemetry environment variables (the
//! subset upstream's exporter honours, plus the batch queue's sizes):
//!
//! | variable | effect |
//! |---|---|
//! | `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none` | off |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | the URL spans are posted to, as given |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | the collector's base URL; spans go to `<base>/v1/traces` |
//! | `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL` | `http/protobuf` only (the default) |
//! | `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT` | milliseconds one export may take (10000) |
//! | `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS` | `key=value,…` request headers (values URL-encoded) |
//! | `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` | the resource (`service.name`, …) |
//! | `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` | the queue (2048) and a batch (512), in spans |
//!
//! Unlike upstream, tracing is off unless an endpoint is set (upstream posts to
//! `http://localhost:4318` by default). Only `http://` endpoints: the exporter links no TLS.

use std::time::Duration;

use compute_spec::trace::AttributeValue;

/// Where and how spans are exported.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// The URL each batch is posted to.
    pub endpoint: String,
    /// Extra request headers (may hold credentials: never logged).
    pub headers: Vec<(String, String)>,
    /// The longest one export may take, connection included.
    pub timeout: Duration,
    /// The resource's attributes, `service.name` first.
    pub resource: Vec<(String, AttributeValue)>,
    /// The most spans waiting for export; more are dropped and counted.
    pub max_queue: usize,
    /// The most spans in one export.
    pub max_batch: usize,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("endpoint", &self.endpoint)
            .field("headers", &self.headers.len())
            .field("timeout", &self.timeout)
            .field("resource", &self.resource)
            .field("max_queue", &self.max_queue)
            .field("max_batch", &self.max_batch)
            .finish()
    }
}

/// The default time limit of one export (the OpenTelemetry default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl Config {
    /// The configuration in the process environment: `Ok(None)` when tracing is off, an
    /// error naming the variable when it is set wrong.
    pub fn from_env(default_service: &str) -> Result<Option<Config>, String> {
        Config::from_vars(default_service, |name| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        })
    }

    /// The configuration `var` gives (a variable's value, `None` when unset or empty).
    pub fn from_vars(
        default_service: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Config>, String> {
        let either = |signal: &str, general: &str| {
            var(signal)
                .map(|value| (signal.to_string(), value))
                .or_else(|| var(general).map(|value| (general.to_string(), value)))
        };
        if var("OTEL_SDK_DISABLED").is_some_and(|value| value.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match var("OTEL_TRACES_EXPORTER").map(|value| value.trim().to_ascii_lowercase()) {
            None => {}
            Some(exporter) if exporter == "otlp" => {}
            Some(exporter) if exporter == "none" => return Ok(None),
            Some(other) => {
                return Err(format!(
                    "OTEL_TRACES_EXPORTER={other:?}: only otlp (or none) is supported"
                ))
            }
        }
        let endpoint = match (
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(traces), _) => (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                traces.trim().to_string(),
            ),
            (None, Some(base)) => (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("{}/v1/traces", base.trim().trim_end_matches('/')),
            ),
            (None, None) => return Ok(None),
        };
        let (endpoint_var, endpoint) = endpoint;
        if !endpoint.starts_with("http://") || endpoint.len() <= "http://".len() {
            return Err(format!(
                "{endpoint_var}: {:?} is not an http:// URL (https is not supported: run the \
                 collector beside the compute and give its http:// address)",
                shown_endpoint(&endpoint)
            ));
        }
        if let Some((name, protocol)) = either(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ) {
            if protocol.trim() != "http/protobuf" {
                return Err(format!(
                    "{name}={protocol:?}: only http/protobuf is supported"
                ));
            }
        }
        let timeout = match either(
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ) {
            Some((name, text)) => match text.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => return Err(format!("{name}={text:?} is not a number of milliseconds")),
            },
            None => DEFAULT_TIMEOUT,
        };
        let mut headers = Vec::new();
        for name in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            if let Some(text) = var(name) {
                for (key, value) in pairs(name, &text)? {
                    headers
                        .retain(|(known, _): &(String, String)| !known.eq_ignore_ascii_case(&key));
                    headers.push((key, value));
                }
            }
        }
        let mut resource: Vec<(String, AttributeValue)> = Vec::new();
        if let Some(text) = var("OTEL_RESOURCE_ATTRIBUTES") {
            for (key, value) in pairs("OTEL_RESOURCE_ATTRIBUTES", &text)? {
                resource.retain(|(known, _)| *known != key);
                resource.push((key, AttributeValue::Text(value)));
            }
        }
        let service = var("OTEL_SERVICE_NAME")
            .map(|name| name.trim().to_string())
            .or_else(|| {
                resource.iter().find_map(|(key, value)| match value {
                    AttributeValue::Text(name) if key == "service.name" => Some(name.clone()),
                    _ => None,
                })
            })
            .unwrap_or_else(|| default_service.to_string());
        resource.retain(|(key, _)| key != "service.name");
        resource.insert(
            0,
            ("service.name".to_string(), AttributeValue::Text(service)),
        );
        let size = |name: &str, default: usize| match var(name) {
            Some(text) => match text.trim().parse::<usize>() {
                Ok(size) if size > 0 => Ok(size),
                _ => Err(format!("{name}={text:?} is not a positive number of spans")),
            },
            None => Ok(default),
        };
        let max_queue = size("OTEL_BSP_MAX_QUEUE_SIZE", 2048)?;
        let max_batch = size("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)?.min(max_queue);
        Ok(Some(Config {
            endpoint,
            headers,
            timeout,
            resource,
            max_queue,
            max_batch,
        }))
    }

    /// The endpoint without credentials, for messages.
    pub fn shown_endpoint(&self) -> String {
        shown_endpoint(&self.endpoint)
    }
}

/// `url` without a `user:password@` part.
fn shown_endpoint(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

/// `key=value,key=value` with URL-encoded values (the W3C Baggage form the OpenTelemetry
/// variables use); a pair without `=` or with an empty key is an error naming `variable`.
fn pairs(variable: &str, text: &str) -> Result<Vec<(String, String)>, String> {
    let mut found = Vec::new();
    for pair in text
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!(
                "{variable}: an entry has no `=` (write key=value,…)"
            ));
        };
        let key = percent_decode(key.trim());
        if key.is_empty() {
            return Err(format!("{variable}: an entry has an empty key"));
        }
        found.push((key, percent_decode(value.trim())));
    }
    Ok(found)
}

/// Decodes `%XX` escapes (a malformed one is kept as written).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = |byte: u8| char::from(byte).to_digit(16);
        match (bytes[at], bytes.get(at + 1), bytes.get(at + 2)) {
            (b'%', Some(&high), Some(&low)) if hex(high).is_some() && hex(low).is_some() => {
                let value = hex(high).unwrap_or(0) * 16 + hex(low).unwrap_or(0);
                out.push(value as u8);
                at += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Option<Config>, String> {
        Config::from_vars("compute_ctl", |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
    }

    #[test]
    fn off_unless_an_endpoint_is_set_and_not_disabled() {
        assert_eq!(config(&[]), Ok(None));
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/");
        let on = config(&[base]).unwrap().unwrap();
        assert_eq!(on.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(on.timeout, DEFAULT_TIMEOUT);
        assert_eq!(
            on.resource,
            [("service.name".to_string(), "compute_ctl".into())]
        );
        assert_eq!((on.max_queue, on.max_batch), (2048, 512));
        assert_eq!(config(&[base, ("OTEL_SDK_DISABLED", "TRUE")]), Ok(None));
        assert_eq!(config(&[base, ("OTEL_TRACES_EXPORTER", "none")]), Ok(None));
        let traces = (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://other:4318/custom",
        );
        assert_eq!(
            config(&[base, traces]).unwrap().unwrap().endpoint,
            "http://other:4318/custom"
        );
    }

    #[test]
    fn the_standard_variables_are_read_and_bad_ones_named() {
        let on = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "250"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20abc, x-a=1",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "X-A=2"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=ignored,k8s.pod.name=p%2C1",
            ),
            ("OTEL_SERVICE_NAME", "compute"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "4"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(on.timeout, Duration::from_millis(250));
        assert_eq!(
            on.headers,
            [
                ("authorization".to_string(), "Bearer abc".to_string()),
                ("X-A".to_string(), "2".to_string())
            ]
        );
        assert_eq!(
            on.resource,
            [
                ("service.name".to_string(), "compute".into()),
                ("k8s.pod.name".to_string(), "p,1".into())
            ]
        );
        assert_eq!((on.max_queue, on.max_batch), (4, 4));
        assert!(
            !format!("{on:?}").contains("abc"),
            "headers are never shown"
        );
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        for (bad, named) in [
            (
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ),
            (
                ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            (("OTEL_BSP_MAX_QUEUE_SIZE", "0"), "OTEL_BSP_MAX_QUEUE_SIZE"),
            (("OTEL_TRACES_EXPORTER", "zipkin"), "OTEL_TRACES_EXPORTER"),
        ] {
            let error = config(&[endpoint, bad]).unwrap_err();
            assert!(error.starts_with(named), "{error}");
        }
        let secret = ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://user:hunter2@c:4318");
        let error = config(&[secret]).unwrap_err();
        assert!(
            error.contains("https://c:4318/v1/traces") && !error.contains("hunter2"),
            "{error}"
        );
    }
}
