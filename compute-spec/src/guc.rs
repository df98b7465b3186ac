//! What may reach `postgresql.conf`: setting names, values checked for their vartype, the
//! rule for writing a value bare or quoted, and a line-by-line check of free-form
//! configuration text (`cluster.postgresql_conf`).
//!
//! The rules follow PostgreSQL's configuration-file lexer (`guc-file.l`) and its value
//! parsers (`parse_bool`, `parse_int`, `parse_real`):
//! * a name is an identifier, optionally qualified once (`neon.safekeepers`); letters,
//!   digits and `_` only. `include`, `include_dir` and `include_if_exists` are directives,
//!   not settings, and are refused;
//! * no value may hold a control character (newline, carriage return, NUL, …), only tab;
//! * `bool`: the forms `parse_bool` accepts (`on`, `off`, `true`, `false`, `yes`, `no`, `1`,
//!   `0` and their unambiguous prefixes, any case);
//! * `integer` and `real`: a decimal number (sign, fraction and exponent allowed: Postgres
//!   rounds), hex `0x1F` for integers, optionally followed by a unit (`B`, `kB`, `MB`, `GB`,
//!   `TB`, `us`, `ms`, `s`, `min`, `h`, `d`, case-sensitive as in Postgres);
//! * `enum` and `string`: any text;
//! * values of vartype `string` are always quoted (as upstream); the others are written bare
//!   when the lexer reads them back as exactly one token (`64MB`, `-1`, `on`,
//!   `scram-sha-256`), and quoted otherwise (`'64 MB'`, `'read committed'`), which means the
//!   same to Postgres.

use crate::open_enum::open_enum;
use crate::quote::quote_conf_value;

open_enum! {
    /// A setting's or option's type, as Postgres reports it in `pg_settings.vartype`
    /// (`GenericOption::vartype`). A value this version does not know is kept verbatim;
    /// [`check_value`] refuses it for a setting with a value.
    pub enum VarType {
        /// `on`/`off` and the other forms of `parse_bool`.
        Bool = "bool",
        /// A whole number, optionally with a unit.
        Integer = "integer",
        /// A number, optionally with a unit.
        Real = "real",
        /// One of a setting's named values.
        Enum = "enum",
        /// Free text, always written quoted.
        String = "string",
    }
}

/// Directives of the configuration file that look like settings.
const DIRECTIVES: [&str; 3] = ["include", "include_dir", "include_if_exists"];

/// Units Postgres accepts after a number (memory and time).
const UNITS: [&str; 11] = [
    "B", "kB", "MB", "GB", "TB", "us", "ms", "s", "min", "h", "d",
];

fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks a setting name: an identifier, optionally qualified once, and not a directive.
pub fn check_name(name: &str) -> Result<(), String> {
    let shaped = match name.split_once('.') {
        Some((prefix, rest)) => is_identifier(prefix) && is_identifier(rest),
        None => is_identifier(name),
    };
    if !shaped {
        return Err(format!(
            "{name:?} is not a setting name: use letters, digits and `_`, with at most one \
             `.` (like `work_mem` or `neon.safekeepers`)"
        ));
    }
    if DIRECTIVES
        .iter()
        .any(|directive| directive.eq_ignore_ascii_case(name))
    {
        return Err(format!(
            "{name:?} is a configuration-file directive, not a setting: put the settings \
             themselves in the spec"
        ));
    }
    Ok(())
}

/// Refuses control characters other than tab: they would end or break a line.
pub fn check_text(value: &str) -> Result<(), String> {
    match value.chars().find(|c| c.is_control() && *c != '\t') {
        Some(c) => Err(format!(
            "contains the control character {c:?}: newlines, carriage returns and NUL bytes \
             cannot be written to postgresql.conf; remove it"
        )),
        None => Ok(()),
    }
}

/// Checks a value for its vartype (and for control characters).
pub fn check_value(value: &str, vartype: &VarType) -> Result<(), String> {
    check_text(value)?;
    let ok = match vartype {
        VarType::Bool => is_bool(value),
        VarType::Integer => is_number(value, true),
        VarType::Real => is_number(value, false),
        VarType::Enum | VarType::String => true,
        VarType::Unknown(other) => {
            let known: Vec<&str> = VarType::KNOWN.iter().map(VarType::as_str).collect();
            return Err(format!(
                "vartype {other:?} is not one of {}: give the setting's pg_settings.vartype",
                known.join(", ")
            ));
        }
    };
    if ok {
        return Ok(());
    }
    let expected = match vartype {
        VarType::Bool => "on, off, true, false, yes, no, 1 or 0",
        VarType::Integer => {
            "a number such as 100, -1, 0x1F or 64MB (units B, kB, MB, GB, TB, us, ms, s, min, h, d)"
        }
        _ => "a number such as 0.5, 1e3 or 10ms",
    };
    Err(format!(
        "{value:?} is not a valid {vartype}: expected {expected}"
    ))
}

/// `parse_bool`'s forms: a prefix of true/false/yes/no, `on`, `of`/`off`, `1`, `0`.
fn is_bool(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    if lower.is_empty() {
        return false;
    }
    let prefix_of = |word: &str| word.starts_with(lower.as_str());
    match lower.as_bytes()[0] {
        b't' => prefix_of("true"),
        b'f' => prefix_of("false"),
        b'y' => prefix_of("yes"),
        b'n' => prefix_of("no"),
        b'o' => lower == "on" || lower == "of" || lower == "off",
        b'1' | b'0' => lower.len() == 1,
        _ => false,
    }
}

/// `parse_int` / `parse_real`: surrounding blanks, a number, blanks, an optional unit.
fn is_number(value: &str, allow_hex: bool) -> bool {
    let text = value.trim_matches([' ', '\t']);
    let digits_end = number_len(text, allow_hex);
    if digits_end == 0 {
        return false;
    }
    let unit = text[digits_end..].trim_start_matches([' ', '\t']);
    unit.is_empty() || UNITS.contains(&unit)
}

/// The length of the number at the start of `text` (0 when there is none).
fn number_len(text: &str, allow_hex: bool) -> usize {
    let bytes = text.as_bytes();
    let mut at = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        at += 1;
    }
    let digits = |from: usize, hex: bool| {
        bytes[from..]
            .iter()
            .take_while(|b| {
                if hex {
                    b.is_ascii_hexdigit()
                } else {
                    b.is_ascii_digit()
                }
            })
            .count()
    };
    if allow_hex && (bytes[at..].starts_with(b"0x") || bytes[at..].starts_with(b"0X")) {
        let count = digits(at + 2, true);
        return if count == 0 { 0 } else { at + 2 + count };
    }
    let whole = digits(at, false);
    at += whole;
    let mut fraction = 0;
    if bytes.get(at) == Some(&b'.') {
        fraction = digits(at + 1, false);
        at += 1 + fraction;
    }
    if whole == 0 && fraction == 0 {
        return 0;
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        let mut exp = at + 1;
        if matches!(bytes.get(exp), Some(b'+' | b'-')) {
            exp += 1;
        }
        let count = digits(exp, false);
        if count > 0 {
            at = exp + count;
        }
    }
    at
}

/// Whether the lexer reads `value` back, unquoted, as exactly one token with this text:
/// an integer with unit letters, a real, or an unquoted string.
pub fn is_bare_token(value: &str) -> bool {
    let bytes = value.as_bytes();
    let Some(&first) = bytes.first() else {
        return false;
    };
    // The lexer's LETTER includes every byte of a multibyte character.
    let letter = |b: u8| b.is_ascii_alphabetic() || b == b'_' || b >= 0x80;
    if letter(first) {
        return bytes
            .iter()
            .all(|&b| letter(b) || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b':' | b'/'));
    }
    let signed = usize::from(matches!(first, b'+' | b'-'));
    let rest = &bytes[signed..];
    let count_digits = |from: &[u8]| from.iter().take_while(|b| b.is_ascii_digit()).count();
    // INTEGER: digits or 0x hex digits, then unit letters.
    let integer_len = if rest.starts_with(b"0x") {
        let hex = rest[2..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if hex == 0 {
            0
        } else {
            2 + hex
        }
    } else {
        count_digits(rest)
    };
    if integer_len > 0 && rest[integer_len..].iter().all(|b| b.is_ascii_alphabetic()) {
        return true;
    }
    // REAL: digits, '.', digits, optional exponent.
    let whole = count_digits(rest);
    if rest.get(whole) != Some(&b'.') {
        return false;
    }
    let fraction = count_digits(&rest[whole + 1..]);
    if fraction == 0 {
        return false;
    }
    let tail = &rest[whole + 1 + fraction..];
    if tail.is_empty() {
        return true;
    }
    let Some(exponent) = tail.strip_prefix(b"e").or_else(|| tail.strip_prefix(b"E")) else {
        return false;
    };
    let exponent = exponent
        .strip_prefix(b"+")
        .or_else(|| exponent.strip_prefix(b"-"))
        .unwrap_or(exponent);
    !exponent.is_empty() && exponent.iter().all(u8::is_ascii_digit)
}

/// The value as written: vartype `string` always quoted, others bare when that is one token.
pub fn render_value(value: &str, vartype: &VarType) -> String {
    if *vartype != VarType::String && is_bare_token(value) {
        value.to_string()
    } else {
        quote_conf_value(value)
    }
}

/// Checks one line of free-form configuration text: blank, a comment, or
/// `name [=] value [# comment]` with a single-token or quoted value. `reserved` lines (the
/// managed-block markers) are refused.
pub fn check_conf_line(line: &str, reserved: &[&str]) -> Result<(), String> {
    check_text(line.trim_end_matches('\r'))?;
    let text = line.trim_matches([' ', '\t', '\r']);
    if reserved.contains(&text) {
        return Err(format!(
            "{text:?} is the marker of the block compute-tools manages; remove the line"
        ));
    }
    if text.is_empty() || text.starts_with('#') {
        return Ok(());
    }
    let name_end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(text.len());
    let name = &text[..name_end];
    check_name(name)?;
    let mut rest = text[name_end..].trim_start_matches([' ', '\t']);
    if let Some(after) = rest.strip_prefix('=') {
        rest = after.trim_start_matches([' ', '\t']);
    }
    let value_len = if rest.starts_with('\'') {
        quoted_len(rest).ok_or_else(|| {
            format!("the value of {name} has no closing quote: end it with ' on the same line")
        })?
    } else {
        rest.find([' ', '\t', '#']).unwrap_or(rest.len())
    };
    let (value, tail) = rest.split_at(value_len);
    if value.is_empty() {
        return Err(format!("{name} has no value: write `{name} = value`"));
    }
    if !value.starts_with('\'') && !is_bare_token(value) {
        return Err(format!(
            "the value {value:?} of {name} must be quoted: write {name} = {}",
            quote_conf_value(value)
        ));
    }
    let tail = tail.trim_start_matches([' ', '\t']);
    if !tail.is_empty() && !tail.starts_with('#') {
        return Err(format!(
            "unexpected {tail:?} after the value of {name}: one setting per line"
        ));
    }
    Ok(())
}

/// The length of the quoted string at the start of `text` (`'…'` with `''` and `\x`
/// escapes, as the lexer's STRING), or `None` when it is not closed. The one scanner of quoted
/// values: `pgconf::entries` and pg-reconcile's redaction use it too.
pub fn quoted_len(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut at = 1;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 2,
            b'\'' if bytes.get(at + 1) == Some(&b'\'') => at += 2,
            b'\'' => return Some(at + 1),
            _ => at += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["work_mem", "neon.safekeepers", "_x", "Port", "a1.b_2"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "1x",
            "a.b.c",
            "statement_timeout = 1\nwork_mem",
            "a b",
            "a=b",
            "x.",
            ".x",
            "a-b",
            "include",
            "INCLUDE_dir",
            "include_if_exists",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn values_by_vartype() {
        let good = [
            ("on", "bool"),
            ("OFF", "bool"),
            ("of", "bool"),
            ("t", "bool"),
            ("yes", "bool"),
            ("0", "bool"),
            ("100", "integer"),
            ("-1", "integer"),
            ("+5", "integer"),
            ("0x1F", "integer"),
            ("64MB", "integer"),
            ("64 MB", "integer"),
            ("1.5GB", "integer"),
            ("10s", "integer"),
            ("5min", "integer"),
            ("0.5", "real"),
            (".5", "real"),
            ("1e3", "real"),
            ("2ms", "real"),
            ("logical", "enum"),
            ("read committed", "enum"),
            ("it's \\ fine", "string"),
            ("", "string"),
            ("tab\there", "string"),
        ];
        for (value, vartype) in good {
            assert_eq!(
                check_value(value, &VarType::from(vartype)),
                Ok(()),
                "{value:?} {vartype}"
            );
        }
        let bad = [
            ("5\ncluster_name = 'X'", "integer"),
            ("x\ny", "string"),
            ("x\ry", "enum"),
            ("x\0", "string"),
            ("o", "bool"),
            ("onn", "bool"),
            ("2", "bool"),
            ("", "bool"),
            ("", "integer"),
            ("5 6", "integer"),
            ("64mb", "integer"),
            ("0x", "integer"),
            ("0x1F", "real"),
            ("1; x", "integer"),
            ("-", "integer"),
            ("x", "float"),
        ];
        for (value, vartype) in bad {
            assert!(
                check_value(value, &VarType::from(vartype)).is_err(),
                "{value:?} {vartype} accepted"
            );
        }
    }

    #[test]
    fn rendering_quotes_what_is_not_one_token() {
        let cases = [
            ("off", "bool", "off"),
            ("55432", "integer", "55432"),
            ("64MB", "integer", "64MB"),
            ("0x1F", "integer", "0x1F"),
            ("-1", "integer", "-1"),
            ("1.5", "real", "1.5"),
            ("1e3", "real", "'1e3'"),
            ("1.5GB", "integer", "'1.5GB'"),
            ("64 MB", "integer", "'64 MB'"),
            ("scram-sha-256", "enum", "scram-sha-256"),
            ("read committed", "enum", "'read committed'"),
            ("logical", "string", "'logical'"),
            ("5 # x", "integer", "'5 # x'"),
            ("café", "enum", "café"),
            ("é-1", "enum", "é-1"),
        ];
        for (value, vartype, rendered) in cases {
            assert_eq!(
                render_value(value, &VarType::from(vartype)),
                rendered,
                "{value:?}"
            );
        }
    }

    #[test]
    fn conf_lines() {
        let markers = ["# begin"];
        for good in [
            "",
            "   ",
            "# comment",
            "shared_buffers = 128MB",
            "shared_buffers=128MB # c",
            "listen_addresses '*'",
            "x.y = 'it''s \\' here' # c",
            "port = 5432\r",
            "application_name = café",
        ] {
            assert_eq!(check_conf_line(good, &markers), Ok(()), "{good:?}");
        }
        for bad in [
            "# begin",
            "include = '/etc/passwd'",
            "include_dir 'conf.d'",
            "a = 'unterminated",
            "a = 1 2",
            "a =",
            "a = b c",
            "= 5",
            "a.b.c = 1",
            "a = x\0",
        ] {
            assert!(check_conf_line(bad, &markers).is_err(), "{bad:?} accepted");
        }
    }
}
