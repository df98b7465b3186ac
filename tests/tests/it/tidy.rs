//! What lints cannot say about the workspace, checked on every test run: no Rust source file
//! over 600 lines, every package documented by a `//!` comment and named in
//! docs/ARCHITECTURE.md, every package under the workspace's lint policy, the
//! `compute-spec` model crate free of I/O dependencies, no package but the model crate
//! touching the `extra` maps, every file of a package's one test binary (`tests/it/`) a
//! module of it; and in [`layers`], compute-ctl's modules in layers without a cycle and the
//! production line budgets; in [`compat_table`], every row of the README's compatibility table
//! names a test that exists; in [`deps`], every declared dependency used where its section
//! says.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::path::{Path, PathBuf};

mod compat_table;
mod deps;
mod layers;

/// The longest a source file may be: past it, a file holds more than one idea.
const MAX_LINES: usize = 600;

/// What the model crate may depend on: the format, nothing that does I/O.
const MODEL_DEPENDENCIES: &[&str] = &[
    "serde",
    "serde_json",
    "schemars",
    "indexmap",
    "thiserror",
    "serde_path_to_error",
    // RFC 3339 text of a timestamp, to and from `SystemTime`; it reads no clock.
    "humantime",
];

/// The model crate: the only package that may touch the `extra` maps.
const MODEL_CRATE: &str = "compute-spec";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The workspace members, from the root Cargo.toml's `members = [...]`.
fn members() -> Vec<String> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let start = manifest.find("members = [").expect("a members list") + "members = [".len();
    let end = start
        + manifest[start..]
            .find(']')
            .expect("the end of the members list");
    let members: Vec<String> = manifest[start..end]
        .split(',')
        .map(|item| item.trim().trim_matches('"').to_string())
        .filter(|item| !item.is_empty())
        .collect();
    assert!(members.len() >= 8, "members: {members:?}");
    members
}

/// The `name = "…"` of a package's manifest.
fn package_name(manifest: &str) -> String {
    manifest
        .lines()
        .find_map(|line| line.strip_prefix("name = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("a package name")
        .to_string()
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, found);
            }
        } else if name.ends_with(".rs") {
            found.push(path);
        }
    }
}

#[test]
fn no_source_file_is_over_the_limit() {
    let mut files = Vec::new();
    for member in members() {
        rust_files(&root().join(member), &mut files);
    }
    assert!(files.len() > 50, "found only {} files", files.len());
    let mut long: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let lines = std::fs::read_to_string(path).unwrap().lines().count();
            let shown = path.strip_prefix(root()).unwrap_or(path).display();
            (lines > MAX_LINES).then(|| format!("{shown}: {lines} lines"))
        })
        .collect();
    long.sort();
    assert!(
        long.is_empty(),
        "split these files (at most {MAX_LINES} lines each):\n{}",
        long.join("\n")
    );
}

#[test]
fn every_package_is_documented_named_and_linted() {
    let architecture = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let mut problems = Vec::new();
    for member in members() {
        let dir = root().join(&member);
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let name = package_name(&manifest);
        let crate_root = ["src/lib.rs", "src/main.rs"]
            .iter()
            .map(|file| dir.join(file))
            .find(|path| path.exists());
        match crate_root {
            Some(path) => {
                let text = std::fs::read_to_string(&path).unwrap();
                if !text.trim_start().starts_with("//!") {
                    problems.push(format!("{}: no `//!` doc first", path.display()));
                }
            }
            None => problems.push(format!("{member}: neither src/lib.rs nor src/main.rs")),
        }
        if !architecture.contains(&format!("`{member}/`")) {
            problems.push(format!(
                "docs/ARCHITECTURE.md does not name `{member}/` (package {name})"
            ));
        }
        let linted = manifest
            .split("[lints]")
            .nth(1)
            .is_some_and(|rest| rest.trim_start().starts_with("workspace = true"));
        if !linted {
            problems.push(format!(
                "{member}/Cargo.toml: no `[lints] workspace = true`"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_model_crate_does_no_io() {
    let manifest = std::fs::read_to_string(root().join("compute-spec/Cargo.toml")).unwrap();
    let section = manifest
        .split("[dependencies]")
        .nth(1)
        .expect("a [dependencies] section");
    let section = section.split("\n[").next().unwrap();
    let dependencies: Vec<&str> = section
        .lines()
        .filter_map(|line| line.split(['=', '.']).next())
        .map(str::trim)
        .filter(|name| !name.is_empty() && !name.starts_with('#'))
        .collect();
    assert!(!dependencies.is_empty());
    for dependency in dependencies {
        assert!(
            MODEL_DEPENDENCIES.contains(&dependency),
            "compute-spec depends on {dependency}: the model crate is format only; \
             put I/O in stage-kit or compute-spec-cli"
        );
    }
}

/// What no production code of the model crate may name: the file system, the network,
/// processes, the standard streams, the environment and the clock (its I/O happens in
/// stage-kit and the stages; the document carries what they found).
const MODEL_IO: &[&str] = &[
    "std::fs",
    "std::net",
    "std::process",
    "std::os",
    "std::env",
    "stdin()",
    "stdout()",
    "stderr()",
    "File::",
    "SystemTime::now",
    "Instant::now",
];

#[test]
fn the_model_crate_code_does_no_io() {
    let mut found = Vec::new();
    for (file, code) in layers::production_code(&root().join(MODEL_CRATE)) {
        for (number, line) in code.lines().enumerate() {
            for name in MODEL_IO.iter().filter(|name| line.contains(*name)) {
                found.push(format!("{}:{}: {name}", file.display(), number + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the model crate's production code does I/O (probe in stage-kit, e.g. stage_kit::host, \
         and carry the result in the document):\n{}",
        found.join("\n")
    );
}

/// Whether a line of code reads or writes a field named `extra` (`doc.extra`,
/// `section.extra.insert(…)`, `&mut x.extra`), or initialises one by shorthand (`extra,` on
/// its own line), but not `x.extra_y`, `x.extract()` or a struct base `..extra`.
fn touches_extra(code: &str) -> bool {
    let field = code.match_indices(".extra").any(|(at, found)| {
        let before = code[..at].chars().next_back();
        let after = code[at + found.len()..].chars().next();
        before != Some('.') && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    });
    field || code.trim() == "extra,"
}

/// The `extra` maps of the document, its sections and the spec hold only fields this version
/// does not know, passed through: a stage result is a named field of the model, never an
/// entry of `extra`. So no package but the model crate touches them: in `src/` of every other
/// package (its unit tests included) there is no `.extra` and no `extra` shorthand; a value is
/// built with `extra: Default::default()`. Integration tests (`tests/`) may look.
#[test]
fn only_the_model_crate_touches_extra() {
    assert!(touches_extra("section.extra.insert(key, value);"));
    assert!(touches_extra(
        "let found = document.reconcile.as_ref()?.extra.get(\"x\")?;"
    ));
    assert!(touches_extra("        extra,"));
    assert!(!touches_extra(
        "let extra = [(\"a\", \"b\")]; x.extract(&extra, ..extra)"
    ));
    assert!(!touches_extra("        extra: Default::default(),"));
    let mut found = Vec::new();
    let mut scanned = 0;
    for member in members() {
        if member == MODEL_CRATE {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&root().join(&member).join("src"), &mut files);
        for path in files {
            scanned += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            let shown = path
                .strip_prefix(root())
                .unwrap_or(&path)
                .display()
                .to_string();
            for (number, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                if touches_extra(code) {
                    found.push(format!("{shown}:{}: {}", number + 1, line.trim()));
                }
            }
        }
    }
    assert!(scanned > 50, "scanned only {scanned} files");
    assert!(
        found.is_empty(),
        "only {MODEL_CRATE} may touch the `extra` maps (fields this version does not know): \
         make a stage's result a named field of its section in {MODEL_CRATE}:\n{}",
        found.join("\n")
    );
}

/// A file in `tests/it/` that `main.rs` does not name is compiled nowhere: its tests would
/// silently never run.
#[test]
fn every_file_of_a_test_binary_is_one_of_its_modules() {
    let mut binaries = 0;
    for member in members() {
        let dir = match member.as_str() {
            "tests" => root().join("tests/tests/it"),
            _ => root().join(&member).join("tests/it"),
        };
        let Ok(main) = std::fs::read_to_string(dir.join("main.rs")) else {
            continue;
        };
        binaries += 1;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let module = match name.strip_suffix(".rs") {
                Some("main") => continue,
                Some(module) => module.to_string(),
                None if path.join("mod.rs").exists() => name,
                None => continue,
            };
            assert!(
                main.lines().any(|line| line == format!("mod {module};")),
                "{} is not a module of {}: add `mod {module};` there",
                path.display(),
                dir.join("main.rs").display()
            );
        }
    }
    assert!(
        binaries >= 8,
        "only {binaries} packages have tests/it/main.rs"
    );
}
