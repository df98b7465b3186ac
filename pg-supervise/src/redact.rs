//! Redacting secrets from Postgres's log messages before they are forwarded or kept.
//!
//! compute-tools never sends a plain password, but a failing batch is logged by Postgres as
//! `STATEMENT: …`, which can hold `PASSWORD 'SCRAM-SHA-256$…'` or `PASSWORD 'md5…'`; an error
//! message can quote such a value too. As a second line of defence, every message is redacted
//! before it is logged or kept for an error report:
//!
//! * the literal after the word `PASSWORD` (any case, so `ENCRYPTED PASSWORD` too) becomes
//!   `'********'`: a standard `'…'` literal (`''` inside), an escaped `E'…'` literal (`\'` too),
//!   a `U&'…'` literal, a dollar-quoted `$$…$$` or `$tag$…$tag$` string, and a bare value
//!   after `=` or `:` (`password=value` in a connection string) as `********`. The literal may start on a later line of the message (the lines
//!   of a multi-line statement are joined into one message first). A literal without its end
//!   is redacted to the end of the message.
//! * anything that looks like a SCRAM verifier (`SCRAM-SHA-256$<iterations>:<salt>$<stored
//!   key>:<server key>`, or a part of one after that prefix) or an md5 hash (`md5` and 32 hex
//!   digits) becomes `********`, wherever it is in the message.
//!
//! The scan works on bytes and cuts only at ASCII characters, so the rest of the message, UTF-8
//! included, is kept as it was.

use crate::logs::LINE_JOINER;

/// What a secret is replaced with.
pub const MASK: &str = "********";
/// The keyword whose following literal is a password.
const KEYWORD: &[u8] = b"password";
/// The prefix of a SCRAM-SHA-256 verifier.
const SCRAM_PREFIX: &[u8] = b"scram-sha-256$";
/// The hex digits of an md5 hash (after `md5`).
const MD5_HEX_DIGITS: usize = 32;

/// `message` with password literals, SCRAM verifiers and md5 hashes masked.
pub fn redact(message: &str) -> String {
    redact_hashes(&redact_password_literals(message))
}

/// Whether `text` ends inside a password value: a keyword with nothing but separators after
/// it, or a quoted literal not closed yet. What would follow it (the next line of the same
/// message) may be the secret, so a message cut there must not go on with a message of its own.
pub fn ends_open(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(found) = find_keyword(bytes, at) {
        let after = found + KEYWORD.len();
        let (start, assigned) = skip_separators(bytes, after);
        if start == bytes.len() {
            return true;
        }
        match literal_end(bytes, start, assigned) {
            Some((end, _, closed)) if end == bytes.len() => return !closed,
            Some((end, _, _)) => at = end,
            None => at = after,
        }
    }
    false
}

/// Masks what the end of a line cut at a byte limit may hold of an md5 hash: `md5` and 1 to
/// 31 hex digits, which [`redact`] would not recognise once the rest of the hash is gone. (A
/// SCRAM verifier is recognised by its prefix alone; a password literal cut short is
/// unterminated, so masked to the end.)
pub fn mask_cut_tail(line: &mut Vec<u8>) {
    // `md5`'s `d` and `5` are hex digits too: the run of hex digits at the end starts with
    // them, right after the `m`.
    let hex = line
        .iter()
        .rev()
        .take_while(|byte| byte.is_ascii_hexdigit())
        .count();
    let Some(m) = line.len().checked_sub(hex + 1) else {
        return;
    };
    let digits = hex.saturating_sub(2);
    if line[m].eq_ignore_ascii_case(&b'm')
        && line[m + 1..].len() >= 2
        && line[m + 1..m + 3].eq_ignore_ascii_case(b"d5")
        && (1..MD5_HEX_DIGITS).contains(&digits)
    {
        line.truncate(m);
        line.extend_from_slice(MASK.as_bytes());
    }
}

/// Masks the literal that follows each word `PASSWORD`.
fn redact_password_literals(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut at = 0;
    while let Some(found) = find_keyword(bytes, at) {
        let after = found + KEYWORD.len();
        let (start, assigned) = skip_separators(bytes, after);
        match literal_end(bytes, start, assigned) {
            Some((end, shape, _)) => {
                out.push_str(&text[copied..start]);
                let quote = match shape {
                    Shape::SingleQuoted => "'",
                    Shape::DoubleQuoted => "\"",
                    Shape::Bare => "",
                };
                out.push_str(quote);
                out.push_str(MASK);
                out.push_str(quote);
                copied = end;
                at = end;
            }
            None => at = after,
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// Masks SCRAM verifiers and md5 hashes anywhere in `text`.
fn redact_hashes(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        let end = if starts_with_ignore_case(&bytes[at..], SCRAM_PREFIX) {
            let verifier = at + SCRAM_PREFIX.len();
            Some(verifier + count_while(&bytes[verifier..], is_verifier_byte))
        } else if starts_with_ignore_case(&bytes[at..], b"md5") {
            let hex = count_while(&bytes[at + 3..], |byte| byte.is_ascii_hexdigit());
            (hex >= MD5_HEX_DIGITS).then_some(at + 3 + hex)
        } else {
            None
        };
        match end {
            Some(end) => {
                out.push_str(&text[copied..at]);
                out.push_str(MASK);
                copied = end;
                at = end;
            }
            None => at += 1,
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// The first `password` at or after `from`, as a whole word (any case). The line joiner of a
/// multi-line message separates words (it is not ASCII, so `is_word_byte` alone would take
/// `PASSWORD` at the end or the start of a line for part of a longer word).
fn find_keyword(bytes: &[u8], from: usize) -> Option<usize> {
    let mut joiner = [0; 4];
    let joiner = LINE_JOINER.encode_utf8(&mut joiner).as_bytes();
    (from..bytes.len()).find(|&at| {
        let end = at + KEYWORD.len();
        starts_with_ignore_case(&bytes[at..], KEYWORD)
            && (at == 0 || !is_word_byte(bytes[at - 1]) || bytes[..at].ends_with(joiner))
            && (bytes.get(end).is_none_or(|&next| !is_word_byte(next))
                || bytes[end..].starts_with(joiner))
    })
}

/// Skips white space (the joiner of a message's lines included), before the `=` or `:` a
/// closing `"` (of a JSON key), and at most one `=` or `:`; returns where the value starts and
/// whether a `=` or `:` was seen.
fn skip_separators(bytes: &[u8], mut at: usize) -> (usize, bool) {
    let mut joiner = [0; 4];
    let joiner = LINE_JOINER.encode_utf8(&mut joiner).as_bytes();
    let mut assigned = false;
    loop {
        match bytes.get(at) {
            Some(byte) if byte.is_ascii_whitespace() => at += 1,
            Some(b'=' | b':') if !assigned => {
                assigned = true;
                at += 1;
            }
            Some(b'"') if !assigned => at += 1,
            Some(_) if bytes[at..].starts_with(joiner) => at += joiner.len(),
            _ => return (at, assigned),
        }
    }
}

/// How a masked value is written back.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// `'********'`: an SQL literal (any kind).
    SingleQuoted,
    /// `"********"`: a JSON string.
    DoubleQuoted,
    /// `********`: a bare value.
    Bare,
}

/// Where the literal starting at `start` ends (exclusive; the end of `bytes` when it is not
/// closed), its shape and whether it is closed, or None when no literal starts there. A
/// double-quoted (JSON) or bare value counts only after `=` or `:` (`password=secret` in a
/// connection string); a bare value ends at the end of its line, so it is always closed.
fn literal_end(bytes: &[u8], start: usize, assigned: bool) -> Option<(usize, Shape, bool)> {
    let rest = &bytes[start..];
    let quoted = |prefix: usize, quote: u8, backslash_escapes: bool, shape: Shape| {
        let (len, closed) = quoted_len(&rest[prefix..], quote, backslash_escapes);
        Some((start + prefix + len, shape, closed))
    };
    match rest {
        [b'\'', ..] => quoted(1, b'\'', false, Shape::SingleQuoted),
        [b'E' | b'e', b'\'', ..] => quoted(2, b'\'', true, Shape::SingleQuoted),
        [b'U' | b'u', b'&', b'\'', ..] => quoted(3, b'\'', false, Shape::SingleQuoted),
        [b'$', ..] if dollar_tag_len(rest).is_some() => {
            let tag_len = dollar_tag_len(rest)?;
            let (tag, body) = rest.split_at(tag_len);
            let close = find(body, tag);
            let body_len = close.map_or(body.len(), |close| close + tag_len);
            Some((
                start + tag_len + body_len,
                Shape::SingleQuoted,
                close.is_some(),
            ))
        }
        [b'"', ..] if assigned => quoted(1, b'"', true, Shape::DoubleQuoted),
        [first, ..] if assigned && !is_value_end(*first) => {
            let value = count_while(rest, |byte| !is_value_end(byte));
            Some((start + value, Shape::Bare, true))
        }
        _ => None,
    }
}

/// The length of a quoted literal's body and closing `quote` (`body` starts after the opening
/// one), and whether it is closed: a doubled quote is a quote inside, and with
/// `backslash_escapes` (`E'…'`, JSON) `\` escapes the next byte. An unterminated literal runs
/// to the end.
fn quoted_len(body: &[u8], quote: u8, backslash_escapes: bool) -> (usize, bool) {
    let mut at = 0;
    while at < body.len() {
        match body[at] {
            b'\\' if backslash_escapes => at += 2,
            byte if byte == quote && body.get(at + 1) == Some(&quote) => at += 2,
            byte if byte == quote => return (at + 1, true),
            _ => at += 1,
        }
    }
    (body.len(), false)
}

/// The length of the opening `$tag$` (or `$$`) at the start of `bytes`, if it is one.
fn dollar_tag_len(bytes: &[u8]) -> Option<usize> {
    let tag = count_while(&bytes[1..], |byte| {
        byte.is_ascii_alphanumeric() || byte == b'_' || !byte.is_ascii()
    });
    let valid_tag = bytes.get(1).is_none_or(|first| !first.is_ascii_digit());
    (valid_tag && bytes.get(1 + tag) == Some(&b'$')).then_some(tag + 2)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn starts_with_ignore_case(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn count_while(bytes: &[u8], keep: impl Fn(u8) -> bool) -> usize {
    bytes.iter().take_while(|&&byte| keep(byte)).count()
}

/// A byte of an SQL identifier or keyword (ASCII; any non-ASCII byte counts too, as Postgres
/// allows letters beyond ASCII in identifiers).
fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$' || !byte.is_ascii()
}

/// A byte of a base64 SCRAM verifier after its prefix: digits, base64, `:` and `$`.
fn is_verifier_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'=' | b':' | b'$')
}

/// A byte that ends a bare `password=value` (in a connection string, a URL query, JSON).
fn is_value_end(byte: u8) -> bool {
    byte.is_ascii_whitespace()
        || matches!(byte, b'\'' | b'"' | b',' | b')' | b';' | b'&' | b'}' | b']')
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAM: &str = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$\
                         c3RvcmVka2V5c3RvcmVka2V5c3RvcmVka2V5c3Q=:\
                         c2VydmVya2V5c2VydmVya2V5c2VydmVya2V5c2U=";
    const MD5: &str = "md5d8578edf8458ce06fbc5bb76a58c5ca4";

    fn check(input: &str, expected: &str) {
        let redacted = redact(input);
        assert_eq!(redacted, expected, "redacting {input:?}");
        assert_eq!(
            redact(&redacted),
            redacted,
            "redacting twice changes nothing"
        );
    }

    #[test]
    fn scram_and_md5_password_literals() {
        check(
            &format!("STATEMENT:  CREATE ROLE a PASSWORD '{SCRAM}' LOGIN"),
            "STATEMENT:  CREATE ROLE a PASSWORD '********' LOGIN",
        );
        check(
            &format!("STATEMENT:  ALTER ROLE a WITH ENCRYPTED PASSWORD '{MD5}';"),
            "STATEMENT:  ALTER ROLE a WITH ENCRYPTED PASSWORD '********';",
        );
        check(
            "alter role a password 'plain text'",
            "alter role a password '********'",
        );
        check(
            "ALTER ROLE a PaSsWoRd'x'",
            "ALTER ROLE a PaSsWoRd'********'",
        );
    }

    #[test]
    fn quotes_inside_literals() {
        check(
            "CREATE ROLE a PASSWORD 'it''s secret' VALID UNTIL 'infinity'",
            "CREATE ROLE a PASSWORD '********' VALID UNTIL 'infinity'",
        );
        check(
            r"CREATE ROLE a PASSWORD E'it\'s '' \\ secret' LOGIN",
            "CREATE ROLE a PASSWORD '********' LOGIN",
        );
        check(
            r"CREATE ROLE a PASSWORD e'a\\' LOGIN",
            "CREATE ROLE a PASSWORD '********' LOGIN",
        );
        check(
            r"CREATE ROLE a PASSWORD U&'d\0061t\+000061' LOGIN",
            "CREATE ROLE a PASSWORD '********' LOGIN",
        );
    }

    #[test]
    fn dollar_quoted_literals() {
        check(
            "CREATE ROLE a PASSWORD $$it's $ secret$$ LOGIN",
            "CREATE ROLE a PASSWORD '********' LOGIN",
        );
        check(
            "CREATE ROLE a PASSWORD $pw$a$$b$p$pw$ LOGIN",
            "CREATE ROLE a PASSWORD '********' LOGIN",
        );
        check(
            "CREATE ROLE a PASSWORD $pw$never closed",
            "CREATE ROLE a PASSWORD '********'",
        );
    }

    #[test]
    fn multi_line_statements() {
        let j = LINE_JOINER;
        check(
            &format!(
                "2026-11-24 22:00:00 UTC [7] ERROR:  role \"b\" already exists{j}\
                 2026-11-24 22:00:00 UTC [7] STATEMENT:  CREATE ROLE a{j}\
                 \t\tENCRYPTED PASSWORD{j}\t\t'{SCRAM}'{j}\t\tLOGIN;{j}\
                 \tCREATE ROLE b PASSWORD 'multi{j}line';"
            ),
            &format!(
                "2026-11-24 22:00:00 UTC [7] ERROR:  role \"b\" already exists{j}\
                 2026-11-24 22:00:00 UTC [7] STATEMENT:  CREATE ROLE a{j}\
                 \t\tENCRYPTED PASSWORD{j}\t\t'********'{j}\t\tLOGIN;{j}\
                 \tCREATE ROLE b PASSWORD '********';"
            ),
        );
    }

    #[test]
    fn keyword_at_a_line_end_or_start() {
        // Found by the `logs` fuzz target: a plain literal (no hash to catch it) after a
        // `PASSWORD` that ends or starts a line of a multi-line statement.
        let j = LINE_JOINER;
        check(
            &format!("STATEMENT:  CREATE ROLE a PASSWORD{j}$tag$CxybCxybz$tag$ s"),
            &format!("STATEMENT:  CREATE ROLE a PASSWORD{j}'********' s"),
        );
        check(
            &format!("STATEMENT:  CREATE ROLE a{j}PASSWORD 'plain secret'{j}LOGIN"),
            &format!("STATEMENT:  CREATE ROLE a{j}PASSWORD '********'{j}LOGIN"),
        );
        check(
            &format!("STATEMENT:  ALTER ROLE a{j}password{j}'plain'"),
            &format!("STATEMENT:  ALTER ROLE a{j}password{j}'********'"),
        );
        // A longer word that merely contains the keyword is still not one.
        check(
            &format!("STATEMENT:  SELECT passwords{j}'kept'"),
            &format!("STATEMENT:  SELECT passwords{j}'kept'"),
        );
    }

    #[test]
    fn several_passwords_in_one_message() {
        check(
            "CREATE ROLE a PASSWORD 'one'; CREATE ROLE b PASSWORD $$two$$; \
             ALTER ROLE c PASSWORD E'three'",
            "CREATE ROLE a PASSWORD '********'; CREATE ROLE b PASSWORD '********'; \
             ALTER ROLE c PASSWORD '********'",
        );
    }

    #[test]
    fn unterminated_literals_are_redacted_to_the_end() {
        check(
            "STATEMENT:  CREATE ROLE a PASSWORD 'secret LOGIN",
            "STATEMENT:  CREATE ROLE a PASSWORD '********'",
        );
    }

    #[test]
    fn hashes_are_redacted_anywhere() {
        check(
            &format!("ERROR:  syntax error at or near \"'{SCRAM}'\""),
            "ERROR:  syntax error at or near \"'********'\"",
        );
        check(
            &format!("ERROR:  syntax error at or near \"'{MD5}'\""),
            "ERROR:  syntax error at or near \"'********'\"",
        );
        check(&format!("x{MD5}y"), "x********y");
        check("DETAIL:  SCRAM-SHA-256$4096:c2FsdA==", "DETAIL:  ********");
        check(&format!("upper {}", MD5.to_uppercase()), "upper ********");
        // Not a hash: too few hex digits, or no digits at all.
        check(
            "md5 is a function: md5('x'), md5abc",
            "md5 is a function: md5('x'), md5abc",
        );
    }

    #[test]
    fn connection_string_passwords() {
        check(
            "could not connect: host=h user=u password=s3cret dbname=d",
            "could not connect: host=h user=u password=******** dbname=d",
        );
        check(
            "host=h password = 'a b' dbname=d",
            "host=h password = '********' dbname=d",
        );
        check(
            "OPTIONS (password 'x', user 'u')",
            "OPTIONS (password '********', user 'u')",
        );
        check("host=h password=$ecret", "host=h password=********");
        check(
            "postgresql://h/db?user=u&password=s3cret&sslmode=require",
            "postgresql://h/db?user=u&password=********&sslmode=require",
        );
    }

    #[test]
    fn json_passwords() {
        check(
            r#"{"user":"u","password":"s\"e,c","host":"h"}"#,
            r#"{"user":"u","password":"********","host":"h"}"#,
        );
        check(r#"{"password": null}"#, r#"{"password": ********}"#);
        check(r#"PASSWORD: "x""#, r#"PASSWORD: "********""#);
    }

    #[test]
    fn other_uses_of_the_word_are_kept() {
        for kept in [
            "FATAL:  password authentication failed for user \"u\"",
            "LOG:  parameter \"password_encryption\" changed to \"scram-sha-256\"",
            "password_encryption = 'scram-sha-256'",
            "ERROR:  role \"a\" has no password",
            "CREATE ROLE a PASSWORD NULL",
            "mypassword 'x' and password_x 'y' and $password 'z'",
            "password",
            "",
        ] {
            check(kept, kept);
        }
    }

    /// Every sequence of four tricky pieces: no panic (cuts stay on character
    /// boundaries), and no hash survives.
    #[test]
    fn no_input_panics_or_keeps_a_hash() {
        const PIECES: [&str; 16] = [
            "password",
            " ",
            "'",
            "E'",
            "$$",
            "$a$",
            "\\",
            "=",
            ":",
            "\"",
            "é",
            "\u{200B}",
            "md5",
            "0123456789abcdef0123456789abcdef",
            "SCRAM-SHA-256$",
            "x",
        ];
        let mut input = String::new();
        for n in 0..PIECES.len().pow(4) {
            input.clear();
            let mut rest = n;
            for _ in 0..4 {
                input.push_str(PIECES[rest % PIECES.len()]);
                rest /= PIECES.len();
            }
            let output = redact(&input).to_ascii_lowercase();
            assert!(
                !output.contains("scram-sha-256$"),
                "{input:?} -> {output:?}"
            );
            assert!(
                !output.contains("md50123456789abcdef0123456789abcdef"),
                "{input:?} -> {output:?}"
            );
        }
    }

    #[test]
    fn an_md5_hash_cut_short_at_the_end_is_masked() {
        for kept in 1..MD5_HEX_DIGITS {
            let mut line = format!("x {}", &MD5[..3 + kept]).into_bytes();
            mask_cut_tail(&mut line);
            assert_eq!(line, b"x ********", "{kept} digits");
        }
        for unchanged in ["x md5", "x md", "x 0123456789abcdef", MD5, "md5 x", "xmd"] {
            let mut line = unchanged.as_bytes().to_vec();
            mask_cut_tail(&mut line);
            assert_eq!(line, unchanged.as_bytes());
        }
        let mut line = b"LOG: MD5D8578EDF".to_vec();
        mask_cut_tail(&mut line);
        assert_eq!(line, b"LOG: ********");
    }

    #[test]
    fn a_text_ending_inside_a_password_value_is_open() {
        let j = LINE_JOINER;
        for open in [
            "CREATE ROLE a PASSWORD".to_string(),
            format!("CREATE ROLE a PASSWORD{j}\t"),
            "ALTER ROLE a PASSWORD 'abc".into(),
            "ALTER ROLE a PASSWORD 'it''".into(),
            "ALTER ROLE a PASSWORD E'ab\\'".into(),
            "ALTER ROLE a PASSWORD $pw$abc".into(),
            "host=h password =".into(),
            r#"{"password": "abc"#.into(),
            "CREATE ROLE a PASSWORD 'x'; CREATE ROLE b PASSWORD".into(),
        ] {
            assert!(ends_open(&open), "{open:?}");
        }
        for closed in [
            "CREATE ROLE a PASSWORD 'abc'",
            "CREATE ROLE a PASSWORD 'abc' LOGIN",
            "ALTER ROLE a PASSWORD $pw$abc$pw$",
            "host=h password=abc",
            "password authentication failed",
            "nothing here",
            "",
        ] {
            assert!(!ends_open(closed), "{closed:?}");
        }
    }

    #[test]
    fn other_text_is_kept_byte_for_byte() {
        check(
            "café LOG: PASSWORD 'pässwörd' — über",
            "café LOG: PASSWORD '********' — über",
        );
        check("über password=päss", "über password=********");
    }
}
