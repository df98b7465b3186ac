//! `postgresql.conf` rendering (`compute_spec::pgconf`), structure-aware.
//!
//! The input is a list of settings (name, value or null, vartype) and a free-form
//! `postgresql_conf` text, each drawn from alphabets that reach the quoting rules (quotes,
//! backslashes, `#`, `=`, blanks, multibyte characters, control characters).
//!
//! Invariants: no panic; when the managed block renders, it is one line per non-null
//! setting between its two markers, and reading it back (`pgconf::entries` + `unquote`)
//! gives exactly the settings, in order, name lower-cased; when the whole file renders,
//! every line is blank, a comment, an include, or exactly one setting, and every managed
//! setting is among the settings read back.

use arbitrary::{Arbitrary, Result, Unstructured};
use compute_spec::pgconf::{entries, managed_block, render, unquote};
use compute_spec::spec::{ComputeSpec, GenericOption};
use serde_json::json;

const NAME_CHARS: &[char] = &['a', 'b', 'Z', '_', '.', '0', '9', '-', ' ', '#', '=', 'é'];
const VALUE_CHARS: &[char] = &[
    'a', 'Z', '0', '1', '.', '-', '+', '_', ':', '/', ' ', '\t', '\'', '\\', '#', '=', '"', 'x',
    'e', 'é', '\n', '\r', '\u{0}', '\u{7f}', 'k', 'B', 's',
];
const VARTYPES: &[&str] = &["bool", "integer", "real", "enum", "string", "", "other"];

fn from_alphabet(u: &mut Unstructured<'_>, alphabet: &[char], max: usize) -> Result<String> {
    let len = u.int_in_range(0..=max)?;
    (0..len).map(|_| u.choose(alphabet).copied()).collect()
}

fn any_string(u: &mut Unstructured<'_>, alphabet: &[char], max: usize) -> Result<String> {
    if u.ratio(1, 4)? {
        String::arbitrary(u)
    } else {
        from_alphabet(u, alphabet, max)
    }
}

fn option(u: &mut Unstructured<'_>) -> Result<GenericOption> {
    let name = any_string(u, NAME_CHARS, 12)?;
    let value = if u.ratio(1, 8)? {
        None
    } else {
        Some(any_string(u, VALUE_CHARS, 16)?)
    };
    let vartype = (*u.choose(VARTYPES)?).into();
    Ok(GenericOption {
        name,
        value,
        vartype,
    })
}

/// The body.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(count) = u.int_in_range(0..=8usize) else {
        return;
    };
    let mut settings = Vec::new();
    for _ in 0..count {
        match option(&mut u) {
            Ok(option) => settings.push(option),
            Err(_) => break,
        }
    }
    let conf_text = any_string(&mut u, VALUE_CHARS, 40).ok();
    check_block(&settings);
    check_file(&settings, conf_text);
}

fn check_block(settings: &[GenericOption]) {
    let Ok(block) = managed_block(settings) else {
        return;
    };
    let expected: Vec<(String, String)> = settings
        .iter()
        .filter_map(|option| {
            let value = option.value.clone()?;
            Some((option.name.to_ascii_lowercase(), value))
        })
        .collect();
    assert_eq!(
        block.lines().count(),
        expected.len() + 2,
        "not one line per setting:\n{block}"
    );
    let read: Vec<(String, String)> = entries(&block)
        .into_iter()
        .map(|(name, value)| (name, unquote(&value)))
        .collect();
    assert_eq!(read, expected, "the block reads back differently:\n{block}");
}

fn check_file(settings: &[GenericOption], conf_text: Option<String>) {
    let spec = json!({
        "format_version": 1.0,
        "suspend_timeout_seconds": 0,
        "cluster": {
            "roles": [],
            "databases": [],
            "settings": settings,
            "postgresql_conf": conf_text,
        },
    });
    let spec: ComputeSpec = match serde_json::from_value(spec) {
        Ok(spec) => spec,
        Err(error) => panic!("a spec of settings does not decode: {error}"),
    };
    let Ok(file) = render(&spec, &crate::spec::params()) else {
        return;
    };
    let read = entries(&file);
    let mut settings_lines = 0;
    for line in file.lines() {
        let text = line.trim_matches([' ', '\t', '\r']);
        if text.is_empty() || text.starts_with('#') || text.starts_with("include") {
            continue;
        }
        settings_lines += 1;
        assert_eq!(
            entries(line).len(),
            1,
            "line {line:?} is not exactly one setting:\n{file}"
        );
    }
    assert_eq!(
        settings_lines,
        read.len(),
        "lines and settings differ:\n{file}"
    );
    let read: Vec<(String, String)> = read
        .into_iter()
        .map(|(name, value)| (name, unquote(&value)))
        .collect();
    for option in settings {
        let Some(value) = &option.value else { continue };
        let wanted = (option.name.to_ascii_lowercase(), value.clone());
        assert!(
            read.contains(&wanted),
            "setting {wanted:?} is not read back from:\n{file}"
        );
    }
}
