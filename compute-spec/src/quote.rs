//! The one place that quotes names and values for SQL and for `postgresql.conf`.
//!
//! Statements are built from [`Ident`], [`Literal`] and [`DollarQuoted`], whose `Display`
//! does the quoting, so an unquoted name cannot reach SQL by accident:
//!
//! ```
//! use compute_spec::quote::{Ident, Literal};
//! let sql = format!("ALTER ROLE {} PASSWORD {}", Ident("a\"b"), Literal("x'y\\"));
//! assert_eq!(sql, r#"ALTER ROLE "a""b" PASSWORD E'x''y\\'"#);
//! ```
//!
//! Rules (as Neon's `pg_helpers`, with its tested cases):
//! * identifiers are always wrapped in `"…"` with inner `"` doubled (never pre-quote);
//! * literals double `'` and `\`, and take the `E''` form when a backslash is present, so
//!   they mean the same under any `standard_conforming_strings`;
//! * inside PL/pgSQL `DO` blocks names are dollar-quoted with the shortest run of `x`s that
//!   the text does not contain, and the block itself uses a tag one `x` longer;
//! * `postgresql.conf` values are wrapped in `'…'` with `'` and `\` doubled;
//! * libpq connection-string values are wrapped in `'…'` with `'` and `\` backslash-escaped.

use std::fmt;

/// A SQL identifier, quoted when displayed.
#[derive(Clone, Copy, Debug)]
pub struct Ident<'a>(pub &'a str);

impl fmt::Display for Ident<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&quote_ident(self.0))
    }
}

/// A SQL string literal, quoted when displayed.
#[derive(Clone, Copy, Debug)]
pub struct Literal<'a>(pub &'a str);

impl fmt::Display for Literal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&quote_literal(self.0))
    }
}

/// A string dollar-quoted for use inside a PL/pgSQL body, with a tag it does not contain.
#[derive(Clone, Copy, Debug)]
pub struct DollarQuoted<'a>(pub &'a str);

impl fmt::Display for DollarQuoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = dollar_tag(self.0);
        write!(f, "${tag}${}${tag}$", self.0)
    }
}

/// `"name"` with inner double quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'value'` with `'` and `\` doubled, prefixed with `E` when the value has a backslash.
pub fn quote_literal(value: &str) -> String {
    let escaped = value.replace('\'', "''").replace('\\', "\\\\");
    if value.contains('\\') {
        format!("E'{escaped}'")
    } else {
        format!("'{escaped}'")
    }
}

/// The shortest run of `x` that `text` does not contain: the tag for dollar-quoting it.
pub fn dollar_tag(text: &str) -> String {
    let mut tag = String::from("x");
    while text.contains(&tag) {
        tag.push('x');
    }
    tag
}

/// The tag for a `DO $tag$ … $tag$` block holding the given dollar-quoted texts: one `x`
/// longer than any of theirs, so no inner quote can end the block.
pub fn do_block_tag<'a>(texts: impl IntoIterator<Item = &'a str>) -> String {
    let longest = texts.into_iter().map(|text| dollar_tag(text).len()).max();
    "x".repeat(longest.unwrap_or(0).max(1) + 1)
}

/// A `postgresql.conf` value: `'…'` with `'` and `\` doubled.
pub fn quote_conf_value(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''").replace('\\', "\\\\"))
}

/// A libpq key=value connection-string value: `'…'` with `\` and `'` backslash-escaped.
pub fn quote_libpq_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// One word of the libpq `options` parameter (the `-c name=value` list sent at startup): the
/// server splits it on whitespace and takes a backslash as "the next character is literal"
/// (`pg_split_opts`), so `\\` and every whitespace character are backslash-escaped. Nothing
/// in `value` can start another `-c` option.
pub fn quote_options_word(value: &str) -> String {
    let mut word = String::with_capacity(value.len());
    for c in value.chars() {
        if c == '\\' || c.is_ascii_whitespace() || c == '\u{b}' {
            word.push('\\');
        }
        word.push(c);
    }
    word
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server's reading of an `options` string (`pg_split_opts` in postinit.c).
    fn split_options(options: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut chars = options.chars().peekable();
        loop {
            while chars
                .peek()
                .is_some_and(|c| c.is_ascii_whitespace() || *c == '\u{b}')
            {
                chars.next();
            }
            if chars.peek().is_none() {
                return words;
            }
            let mut word = String::new();
            while let Some(c) = chars.next() {
                if c.is_ascii_whitespace() || c == '\u{b}' {
                    break;
                }
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        word.push(next);
                    }
                } else {
                    word.push(c);
                }
            }
            words.push(word);
        }
    }

    #[test]
    fn an_options_word_stays_one_word() {
        for hostile in [
            "plain",
            "a b",
            "x -c statement_timeout=1",
            "tab\there",
            "new\nline",
            "back\\slash\\",
            "vt\u{b}ff\u{c}cr\r",
            "",
        ] {
            let options = format!("-c role={} -c x=y", quote_options_word(hostile));
            assert_eq!(
                split_options(&options),
                ["-c", &format!("role={hostile}"), "-c", "x=y"],
                "{hostile:?}"
            );
        }
    }

    #[test]
    fn identifiers_as_upstream() {
        assert_eq!(quote_ident("name"), "\"name\"");
        assert_eq!(
            quote_ident("\"name\";\\n select 1;"),
            "\"\"\"name\"\";\\n select 1;\""
        );
        assert_eq!(Ident("MyRole").to_string(), "\"MyRole\"");
    }

    #[test]
    fn literals_as_upstream() {
        assert_eq!(quote_literal("test"), "'test'");
        assert_eq!(quote_literal("test\\'"), "E'test\\\\'''");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(""), "''");
    }

    #[test]
    fn dollar_quoting_table() {
        let cases = [
            ("name", "$x$name$x$"),
            ("x", "$xx$x$xx$"),
            ("xx", "$xxx$xx$xxx$"),
            ("$x", "$xx$$x$xx$"),
            ("x$", "$xx$x$$xx$"),
            ("$x$", "$xx$$x$$xx$"),
            ("xx$", "$xxx$xx$$xxx$"),
            ("$xx", "$xxx$$xx$xxx$"),
            ("$xx$", "$xxx$$xx$$xxx$"),
            ("role$", "$x$role$$x$"),
            ("role$$", "$x$role$$$x$"),
            ("role$x$", "$xx$role$x$$xx$"),
            ("name$x$", "$xx$name$x$$xx$"),
            ("", "$x$$x$"),
        ];
        for (text, expected) in cases {
            assert_eq!(DollarQuoted(text).to_string(), expected, "for {text:?}");
        }
    }

    #[test]
    fn do_block_tag_is_longer_than_every_inner_tag() {
        assert_eq!(do_block_tag(["name"]), "xx");
        assert_eq!(do_block_tag(["name", "xx"]), "xxxx");
        assert_eq!(do_block_tag([]), "xx");
    }

    #[test]
    fn libpq_values() {
        assert_eq!(quote_libpq_value("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(quote_libpq_value("it's\\"), "'it\\'s\\\\'");
        let parsed: postgres::Config = format!("host={} user=x", quote_libpq_value("/d i'r"))
            .parse()
            .unwrap();
        assert_eq!(
            parsed.get_hosts(),
            &[postgres::config::Host::Unix("/d i'r".into())]
        );
    }

    #[test]
    fn conf_values_as_upstream() {
        assert_eq!(
            quote_conf_value("here's a backslash \\ and a quote ' and a double-quote \" hooray"),
            "'here''s a backslash \\\\ and a quote '' and a double-quote \" hooray'"
        );
    }
}
