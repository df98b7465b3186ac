//! pg-supervise's log-line handling: lines are grouped into messages
//! (`logs::MessageJoiner`, `logs::starts_with_timestamp`) and every message is redacted
//! (`redact::redact`) before it is forwarded or kept.
//!
//! Two modes, by the first input byte. Raw: the input's lines go through the joiner and the
//! redaction; invariants: no panic, and a message with nothing that looks like a secret
//! (`password`, `md5`, `scram-sha-256$`, any case) comes out unchanged. Structure-aware: a
//! message holding a password literal in one of the shapes the redaction knows (`'…'`,
//! `E'…'`, `U&'…'`, `$$…$$`, `$tag$…$tag$`, `=…`, `: …`, JSON `"password": "…"`), after
//! any keyword case, on the same or a later line; invariant: the secret is not in the output.

use arbitrary::{Result, Unstructured};
use pg_supervise::logs::{starts_with_timestamp, MessageJoiner};
use pg_supervise::redact::redact;

/// Text around the secret: no quotes, `$`, `=`, `:` or backslash, so the literal is the one
/// the message means.
const AROUND: &[char] = &[
    'a', 'p', 's', 'w', 'o', 'r', 'd', 'S', 'Q', 'L', '0', '7', ' ', ',', ';', '(', ')', 'é', '\t',
];
const SECRET: &[char] = &['A', 'b', 'C', 'x', 'y', 'z', '0', '1', '9', 'Q', 'k', 'M'];

fn from(u: &mut Unstructured<'_>, alphabet: &[char], min: usize, max: usize) -> Result<String> {
    let len = u.int_in_range(min..=max)?;
    (0..len).map(|_| u.choose(alphabet).copied()).collect()
}

fn messages(lines: &[String]) -> Vec<String> {
    let mut joiner = MessageJoiner::default();
    let mut out = Vec::new();
    for line in lines {
        let _ = starts_with_timestamp(line);
        out.extend(joiner.push(line.clone()));
    }
    out.extend(joiner.finish());
    out
}

fn raw(data: &[u8]) {
    let text = crate::text(data);
    let lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    for message in messages(&lines) {
        let redacted = redact(&message);
        let lower = message.to_lowercase();
        if !["password", "md5", "scram-sha-256$"]
            .iter()
            .any(|word| lower.contains(word))
        {
            assert_eq!(redacted, message, "a message without secrets was changed");
        }
    }
}

fn secret_message(u: &mut Unstructured<'_>) -> Result<(String, String)> {
    let secret = from(u, SECRET, 8, 16)?;
    let prefix = from(u, AROUND, 0, 20)?;
    let suffix = from(u, AROUND, 0, 20)?;
    let keyword = *u.choose(&["PASSWORD", "password", "Password", "ENCRYPTED PASSWORD"])?;
    let separator = *u.choose(&[" ", "\t", "  ", "\n", " \n\t"])?;
    let literal = match u.int_in_range(0..=7u8)? {
        0 => format!("{keyword}{separator}'{secret}'"),
        1 => format!("{keyword}{separator}E'{secret}'"),
        2 => format!("{keyword}{separator}U&'{secret}'"),
        3 => format!("{keyword}{separator}$${secret}$$"),
        4 => format!("{keyword}{separator}$tag${secret}$tag$"),
        5 => format!("{keyword}={secret}"),
        6 => format!("{keyword}:{separator}{secret}"),
        _ => format!("\"{keyword}\":{separator}\"{secret}\""),
    };
    let message =
        format!("2026-11-24 22:00:00.123 UTC [1] STATEMENT:  {prefix} {literal} {suffix}");
    Ok((secret, message))
}

fn structured(data: &[u8]) {
    let Ok((secret, message)) = secret_message(&mut Unstructured::new(data)) else {
        return;
    };
    if message.matches(&secret).count() > 1 {
        return; // The text around it holds the same characters: nothing to tell apart.
    }
    let lines: Vec<String> = message.split('\n').map(str::to_string).collect();
    for joined in messages(&lines) {
        let redacted = redact(&joined);
        assert!(
            !redacted.contains(&secret),
            "the secret {secret:?} survived redaction: {redacted:?} (from {joined:?})"
        );
    }
}

/// The body.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        raw(rest);
    } else {
        structured(rest);
    }
}
