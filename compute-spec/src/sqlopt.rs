//! Role and database options (`cluster.roles[].options`, `cluster.databases[].options`):
//! parsed against the closed keyword sets of PostgreSQL 14–17's `CREATE ROLE` / `ALTER ROLE`
//! and `CREATE DATABASE`, and rendered from this module's own keyword table, so no text of
//! the spec reaches SQL except through [`crate::quote`] or as a checked number.
//!
//! An option is `{name, value, vartype}` (upstream's GenericOption). The name is a keyword,
//! matched case-insensitively (`"connection limit"` = `"CONNECTION LIMIT"`); its argument is
//! the value, or, when the value is null, the rest of the name (upstream's form
//! `{"name": "IN ROLE pg_monitor", "value": null}`), never both. Arguments are typed:
//! * integers (`CONNECTION LIMIT`, `OID`, `SYSID`) must be integers and are written as such;
//! * booleans (`ALLOW_CONNECTIONS`, `IS_TEMPLATE`) are `true`/`false`/`on`/`off`/`yes`/`no`/
//!   `1`/`0` and are written `true` or `false`;
//! * text (`TEMPLATE`, `LC_COLLATE`, `VALID UNTIL`, …) is written as a string literal; a
//!   lowercase identifier that is not an SQL keyword is written bare when the vartype is not
//!   `string` (upstream's `TEMPLATE template0`), which Postgres reads the same way;
//! * role names (`IN ROLE`, `ROLE`, `ADMIN`, …) are identifiers: the value is one name used
//!   verbatim; in the name form, a comma-separated list with SQL's rules (bare names fold to
//!   lower case, `"Quoted"` names are kept). Lowercase identifiers that are not keywords are
//!   written bare, others quoted.
//!
//! `PASSWORD` is refused (the password is `encrypted_password`), and so is a database's
//! `OWNER` (it is the `owner` field). Options that `ALTER ROLE` does not accept (`IN ROLE`,
//! `ROLE`, `ADMIN`, …) are left out when an existing role is altered.

use std::fmt::Write as _;

use crate::guc::VarType;
use crate::quote::{Ident, Literal};
use crate::spec::GenericOption;

/// Which statement the options belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionsOf {
    /// `CREATE ROLE` / `ALTER ROLE`.
    Role,
    /// `CREATE DATABASE`.
    Database,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arg {
    /// A bare keyword.
    Flag,
    Integer,
    Bool,
    Text,
    /// Always a string literal (a timestamp).
    Literal,
    Roles,
    /// Not accepted here; the message says what to use instead.
    Refused(&'static str),
}

struct Keyword {
    words: &'static str,
    arg: Arg,
    /// Accepted by `ALTER ROLE` too.
    alter: bool,
}

const fn kw(words: &'static str, arg: Arg, alter: bool) -> Keyword {
    Keyword { words, arg, alter }
}

const USE_PASSWORD_FIELD: &str =
    "the password is the role's encrypted_password field; remove this option";

/// `CREATE ROLE` options (PostgreSQL 14–17), multi-word keywords first.
const ROLE_KEYWORDS: &[Keyword] = &[
    kw("CONNECTION LIMIT", Arg::Integer, true),
    kw("VALID UNTIL", Arg::Literal, true),
    kw("IN ROLE", Arg::Roles, false),
    kw("IN GROUP", Arg::Roles, false),
    kw(
        "ENCRYPTED PASSWORD",
        Arg::Refused(USE_PASSWORD_FIELD),
        false,
    ),
    kw(
        "UNENCRYPTED PASSWORD",
        Arg::Refused(USE_PASSWORD_FIELD),
        false,
    ),
    kw("PASSWORD", Arg::Refused(USE_PASSWORD_FIELD), false),
    kw("SUPERUSER", Arg::Flag, true),
    kw("NOSUPERUSER", Arg::Flag, true),
    kw("CREATEDB", Arg::Flag, true),
    kw("NOCREATEDB", Arg::Flag, true),
    kw("CREATEROLE", Arg::Flag, true),
    kw("NOCREATEROLE", Arg::Flag, true),
    kw("INHERIT", Arg::Flag, true),
    kw("NOINHERIT", Arg::Flag, true),
    kw("LOGIN", Arg::Flag, true),
    kw("NOLOGIN", Arg::Flag, true),
    kw("REPLICATION", Arg::Flag, true),
    kw("NOREPLICATION", Arg::Flag, true),
    kw("BYPASSRLS", Arg::Flag, true),
    kw("NOBYPASSRLS", Arg::Flag, true),
    kw("ROLE", Arg::Roles, false),
    kw("ADMIN", Arg::Roles, false),
    kw("USER", Arg::Roles, false),
    kw("SYSID", Arg::Integer, false),
];

/// `CREATE DATABASE` options (PostgreSQL 14–17).
const DATABASE_KEYWORDS: &[Keyword] = &[
    kw("CONNECTION LIMIT", Arg::Integer, false),
    kw(
        "OWNER",
        Arg::Refused("the owner is the database's owner field; remove this option"),
        false,
    ),
    kw("TEMPLATE", Arg::Text, false),
    kw("ENCODING", Arg::Text, false),
    kw("STRATEGY", Arg::Text, false),
    kw("LOCALE_PROVIDER", Arg::Text, false),
    kw("LOCALE", Arg::Text, false),
    kw("LC_COLLATE", Arg::Text, false),
    kw("LC_CTYPE", Arg::Text, false),
    kw("BUILTIN_LOCALE", Arg::Text, false),
    kw("ICU_LOCALE", Arg::Text, false),
    kw("ICU_RULES", Arg::Text, false),
    kw("COLLATION_VERSION", Arg::Text, false),
    kw("TABLESPACE", Arg::Text, false),
    kw("ALLOW_CONNECTIONS", Arg::Bool, false),
    kw("IS_TEMPLATE", Arg::Bool, false),
    kw("OID", Arg::Integer, false),
];

/// SQL keywords that cannot be a bare name or word in these positions (PostgreSQL's
/// reserved and type/function-name keywords).
const KEYWORDS: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "none",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

/// One option, checked and ready to render.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlOption {
    /// The canonical keyword and its rendered argument, e.g. `CONNECTION LIMIT 3`.
    pub sql: String,
    /// Whether `ALTER ROLE` accepts it.
    pub in_alter: bool,
}

/// Why an option was refused: its index in the list and the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionError {
    /// Index in the `options` array.
    pub index: usize,
    /// Which part is wrong: `name` or `value`.
    pub part: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

/// Parses one option for `of`.
pub fn parse(option: &GenericOption, of: OptionsOf) -> Result<SqlOption, (&'static str, String)> {
    let table = match of {
        OptionsOf::Role => ROLE_KEYWORDS,
        OptionsOf::Database => DATABASE_KEYWORDS,
    };
    let statement = match of {
        OptionsOf::Role => "CREATE ROLE",
        OptionsOf::Database => "CREATE DATABASE",
    };
    let found = table
        .iter()
        .find_map(|keyword| Some((keyword, strip_keyword(&option.name, keyword.words)?)));
    let Some((keyword, rest)) = found else {
        let names: Vec<&str> = table.iter().map(|k| k.words).collect();
        return Err((
            "name",
            format!(
                "{:?} is not a {statement} option: use one of {}",
                option.name,
                names.join(", ")
            ),
        ));
    };
    let words = keyword.words;
    if let Arg::Refused(why) = keyword.arg {
        return Err(("name", format!("{words} is not accepted here: {why}")));
    }
    let rest = match of {
        OptionsOf::Database => rest.strip_prefix('=').map_or(rest, str::trim_start),
        OptionsOf::Role => rest,
    };
    let value = option.value.as_deref();
    if value.is_some_and(|v| v.contains('\0')) || rest.contains('\0') {
        return Err(("value", "contains a NUL byte; remove it".to_string()));
    }
    let rendered = match (keyword.arg, value, rest.is_empty()) {
        (Arg::Flag, None, true) => None,
        (Arg::Flag, _, false) => {
            return Err((
                "name",
                format!("{words} takes no argument: set name to {words:?}"),
            ))
        }
        (Arg::Flag, Some(_), true) => {
            return Err((
                "value",
                format!("{words} takes no argument: set value to null"),
            ))
        }
        (_, Some(_), false) => {
            return Err((
                "value",
                format!(
                    "{words} has an argument both in its name and in value: give it in value \
                     and set name to {words:?}"
                ),
            ))
        }
        (_, None, true) => {
            return Err((
                "value",
                format!("{words} needs an argument: give it in value"),
            ))
        }
        (arg, Some(value), true) => Some(
            render_value(arg, value, &option.vartype)
                .map_err(|message| ("value", format!("{words}: {message}")))?,
        ),
        (arg, None, false) => Some(
            render_embedded(arg, rest, &option.vartype)
                .map_err(|message| ("name", format!("{words}: {message}")))?,
        ),
    };
    let mut sql = words.to_string();
    if let Some(rendered) = rendered {
        sql.push(' ');
        sql.push_str(&rendered);
    }
    Ok(SqlOption {
        sql,
        in_alter: keyword.alter,
    })
}

/// The rest of `name` after the keyword's words (matched case-insensitively, any blanks
/// between them), trimmed; `None` when `name` does not start with the keyword.
fn strip_keyword<'a>(name: &'a str, words: &str) -> Option<&'a str> {
    let mut rest = name.trim_start();
    for word in words.split(' ') {
        let head = rest.get(..word.len())?;
        if !head.eq_ignore_ascii_case(word) {
            return None;
        }
        rest = &rest[word.len()..];
        // The keyword must end at a word boundary.
        if rest
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return None;
        }
        rest = rest.trim_start();
    }
    Some(rest.trim_end())
}

fn parse_integer(text: &str) -> Result<i64, String> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| format!("{text:?} is not an integer; give a number such as 10 or -1"))
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Ok(true),
        "false" | "off" | "no" | "0" => Ok(false),
        _ => Err(format!("{text:?} is not a boolean; give true or false")),
    }
}

/// A lowercase identifier that is not a keyword: reads the same bare or quoted.
fn is_plain_word(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && text.len() <= 63
        && !KEYWORDS.contains(&text)
}

fn role_name(name: &str) -> String {
    if is_plain_word(name) {
        name.to_string()
    } else {
        Ident(name).to_string()
    }
}

/// An argument given in `value`.
fn render_value(arg: Arg, value: &str, vartype: &VarType) -> Result<String, String> {
    Ok(match arg {
        Arg::Integer => parse_integer(value)?.to_string(),
        Arg::Bool => parse_bool(value)?.to_string(),
        Arg::Text if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() => {
            value.to_string()
        }
        Arg::Text if *vartype != VarType::String && is_plain_word(value) => value.to_string(),
        Arg::Text | Arg::Literal => Literal(value).to_string(),
        Arg::Roles if value.is_empty() => return Err("the role name is empty".to_string()),
        Arg::Roles => role_name(value),
        Arg::Flag | Arg::Refused(_) => String::new(),
    })
}

/// An argument given in the name after the keyword: SQL text, parsed, never pasted.
fn render_embedded(arg: Arg, text: &str, vartype: &VarType) -> Result<String, String> {
    match arg {
        Arg::Integer | Arg::Bool => render_value(arg, text, vartype),
        Arg::Text | Arg::Literal => {
            let word = match sql_string(text) {
                Some(content) => return render_value(Arg::Literal, &content, vartype),
                None => text,
            };
            if word
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            {
                render_value(arg, word, vartype)
            } else {
                Err(format!(
                    "{text:?} is not a single word or 'quoted' string; give the argument in value"
                ))
            }
        }
        Arg::Roles => {
            let names = role_list(text)?;
            let mut out = String::new();
            for (index, name) in names.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{}", role_name(name));
            }
            Ok(out)
        }
        Arg::Flag | Arg::Refused(_) => Ok(String::new()),
    }
}

/// The content of a whole `'…'` SQL string (with `''` for a quote), or `None`.
fn sql_string(text: &str) -> Option<String> {
    let inner = text.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut content = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' && chars.next() != Some('\'') {
            return None;
        }
        content.push(c);
    }
    Some(content)
}

/// `a, "B c", d` → `["a", "B c", "d"]`: bare names fold to lower case, quoted names keep
/// their text with `""` for a quote.
fn role_list(text: &str) -> Result<Vec<String>, String> {
    let bad = || {
        format!(
            "{text:?} is not a list of role names (name, \"Quoted Name\", …); give one role \
             name in value instead"
        )
    };
    let mut names = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut name = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        name.push('"');
                    }
                    Some('"') => break,
                    Some(c) => name.push(c),
                    None => return Err(bad()),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' || c == '$' {
                    name.push(c.to_ascii_lowercase());
                    chars.next();
                } else {
                    break;
                }
            }
            if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit() || c == '$') {
                return Err(bad());
            }
        }
        if name.is_empty() {
            return Err(bad());
        }
        names.push(name);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Ok(names),
            Some(',') => continue,
            Some(_) => return Err(bad()),
        }
    }
}

/// The options rendered for a statement, each preceded by a space; with `for_alter`, only
/// those `ALTER ROLE` accepts.
pub fn render(
    options: Option<&[GenericOption]>,
    of: OptionsOf,
    for_alter: bool,
) -> Result<String, OptionError> {
    let mut out = String::new();
    for (index, option) in options.unwrap_or_default().iter().enumerate() {
        let parsed = parse(option, of).map_err(|(part, message)| OptionError {
            index,
            part,
            message,
        })?;
        if for_alter && !parsed.in_alter {
            continue;
        }
        out.push(' ');
        out.push_str(&parsed.sql);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
