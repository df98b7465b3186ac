//! The Prometheus text exposition format (version 0.0.4, what `/metrics` serves as
//! `text/plain; version=0.0.4`): families with their `# HELP` and `# TYPE` lines, samples
//! with labels, and the escaping the format asks for — of label values (`\`, `"`, newline)
//! and of HELP texts (`\`, newline). The one writer of the workspace: nothing else writes a
//! `# TYPE` line by hand.
//!
//! Why not a crate: `prometheus-client` writes OpenMetrics text (`# EOF`, `_total` and unit
//! rules of its own), not the 0.0.4 lines upstream's `/metrics` serves and our compatibility
//! test compares; the `prometheus` crate's registry would hold state our counters already
//! hold elsewhere. Rendering is a few lines: these.

use std::fmt::Write as _;

/// A family's type (`# TYPE` line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (`…_total`).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A sample's value as the format writes it.
pub trait Value {
    /// Appends the value's text to `out`.
    fn write_to(&self, out: &mut String);
}

impl Value for u64 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for i64 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for f64 {
    /// Finite values as Rust writes them (no exponent), the rest as the format spells them:
    /// `NaN`, `+Inf`, `-Inf`.
    fn write_to(&self, out: &mut String) {
        match *self {
            value if value.is_nan() => out.push_str("NaN"),
            f64::INFINITY => out.push_str("+Inf"),
            f64::NEG_INFINITY => out.push_str("-Inf"),
            value => {
                let _ = write!(out, "{value}");
            }
        }
    }
}

/// The text of a scrape, family by family.
#[derive(Debug, Default)]
pub struct Text {
    out: String,
}

impl Text {
    /// An empty text.
    pub fn new() -> Text {
        Text::default()
    }

    /// Starts family `name`: its `# HELP` and `# TYPE` lines; then its samples.
    pub fn family(&mut self, name: &'static str, kind: Kind, help: &str) -> Family<'_> {
        self.family_named(name.to_string(), kind, help)
    }

    /// [`Text::family`] for a name made at run time (from a field name, say): it must be a
    /// valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`, checked in debug builds).
    pub fn family_named(&mut self, name: String, kind: Kind, help: &str) -> Family<'_> {
        debug_assert!(valid_name(&name, true), "not a metric name: {name:?}");
        let _ = writeln!(
            self.out,
            "# HELP {name} {}\n# TYPE {name} {}",
            escape_help(help),
            kind.as_str()
        );
        Family {
            out: &mut self.out,
            name,
        }
    }

    /// A family of one sample without labels.
    pub fn single(&mut self, name: &'static str, kind: Kind, help: &str, value: impl Value) {
        self.family(name, kind, help).sample(&[], value);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A family being written: its samples follow its HELP and TYPE lines.
#[derive(Debug)]
pub struct Family<'a> {
    out: &'a mut String,
    name: String,
}

impl Family<'_> {
    /// One sample: `name{label="value",…} value` (no braces without labels); label values
    /// escaped. Label names come from code (`[a-zA-Z_][a-zA-Z0-9_]*`, checked in debug
    /// builds).
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Value) {
        self.out.push_str(&self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (index, (label, text)) in labels.iter().enumerate() {
                debug_assert!(valid_name(label, false), "not a label name: {label:?}");
                if index > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label_value(text));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        value.write_to(self.out);
        self.out.push('\n');
    }
}

/// A label value as the format quotes it: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A HELP text as the format writes it: `\` → `\\`, newline → `\n` (quotes stay).
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A metric name (`colons`) or a label name.
fn valid_name(name: &str, colons: bool) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':');
    name.chars()
        .next()
        .is_some_and(|first| allowed(first) && !first.is_ascii_digit())
        && name.chars().all(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_samples_are_written_as_the_format_says() {
        let mut text = Text::new();
        text.single("up", Kind::Gauge, "Whether it runs", 1u64);
        let mut family = text.family("requests_total", Kind::Counter, "Requests by status");
        family.sample(&[("status", "200"), ("rpc", "GetConfig")], 3u64);
        family.sample(&[("status", "a\"b\\c\nd")], 1u64);
        text.family_named("startup_seconds".to_string(), Kind::Gauge, "Phases")
            .sample(&[("phase", "total")], 0.25f64);
        assert_eq!(
            text.finish(),
            "# HELP up Whether it runs\n# TYPE up gauge\nup 1\n\
             # HELP requests_total Requests by status\n# TYPE requests_total counter\n\
             requests_total{status=\"200\",rpc=\"GetConfig\"} 3\n\
             requests_total{status=\"a\\\"b\\\\c\\nd\"} 1\n\
             # HELP startup_seconds Phases\n# TYPE startup_seconds gauge\n\
             startup_seconds{phase=\"total\"} 0.25\n"
        );
    }

    #[test]
    fn help_texts_and_odd_values_are_escaped() {
        let mut text = Text::new();
        text.single("a", Kind::Gauge, "back\\slash\nnew \"line\"", f64::NAN);
        text.single("b", Kind::Gauge, "x", f64::INFINITY);
        text.single("c", Kind::Gauge, "x", f64::NEG_INFINITY);
        text.single("d", Kind::Gauge, "x", 0.000_000_1f64);
        text.single("e", Kind::Gauge, "x", -3i64);
        let text = text.finish();
        assert!(
            text.starts_with("# HELP a back\\\\slash\\nnew \"line\"\n"),
            "{text}"
        );
        for line in ["a NaN\n", "b +Inf\n", "c -Inf\n", "d 0.0000001\n", "e -3\n"] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("compute_ctl_up", true));
        assert!(valid_name("a:b_c9", true));
        assert!(!valid_name("a:b", false));
        assert!(!valid_name("9a", true));
        assert!(!valid_name("a-b", true));
        assert!(!valid_name("", true));
    }
}
