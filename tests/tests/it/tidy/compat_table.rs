//! The README's "Compatibility with compute_ctl" table and the code cannot drift apart: it is
//! one table (no blank line splitting it), every row has the header's four cells, and its last
//! cell names at least one test that shows the row, as `` `package::module::test_name` ``
//! (the package directory and the module path with `_` for `-`, e.g.
//! `compute_ctl::last_sync::a_failed_final_sync_answers_500_and_exits_1`). A name resolves
//! when some workspace `.rs` file whose path holds those segments in order (the package
//! directory, its directories, the file's stem; `mod.rs` and `main.rs` stand for their
//! directory) has a `fn test_name` right under `#[test]` or `#[tokio::test]`.

use std::path::{Path, PathBuf};

use super::{members, root, rust_files};

/// The section that holds the table.
const SECTION: &str = "## Compatibility with compute_ctl";

/// The header the table must have.
const HEADER: [&str; 4] = ["upstream `compute_ctl`", "compute-tools", "why", "test"];

/// A workspace source file: its path segments (as in a test name) and its text.
struct Source {
    segments: Vec<String>,
    text: String,
}

/// The segments a test name may use for `path` (relative to the workspace root).
fn segments(path: &Path) -> Vec<String> {
    let mut parts: Vec<String> = path
        .components()
        .map(|part| part.as_os_str().to_string_lossy().replace('-', "_"))
        .collect();
    if let Some(file) = parts.pop() {
        let stem = file.trim_end_matches(".rs").to_string();
        if stem != "mod" && stem != "main" && stem != "lib" {
            parts.push(stem);
        }
    }
    parts
}

/// Whether `wanted` are, in order, among `have` (not necessarily adjacent).
fn in_order(wanted: &[&str], have: &[String]) -> bool {
    let mut have = have.iter();
    wanted
        .iter()
        .all(|segment| have.any(|part| part == segment))
}

/// Whether `text` has a test function `name`: a `fn name(` whose attributes (the lines right
/// above it, doc comments included) hold `#[test]` or `#[tokio::test…]`.
fn has_test(text: &str, name: &str) -> bool {
    let lines: Vec<&str> = text.lines().collect();
    lines.iter().enumerate().any(|(at, line)| {
        let code = line.trim_start();
        let code = code.strip_prefix("pub ").unwrap_or(code);
        let code = code.strip_prefix("async ").unwrap_or(code);
        if !code.starts_with(&format!("fn {name}(")) {
            return false;
        }
        lines[..at]
            .iter()
            .rev()
            .map(|above| above.trim())
            .take_while(|above| above.starts_with("#[") || above.starts_with("//"))
            .any(|above| above == "#[test]" || above.starts_with("#[tokio::test"))
    })
}

/// The cells of a table line (`\|` is a `|` inside a cell).
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = vec![String::new()];
    let mut escaped = false;
    for c in inner.chars() {
        match c {
            '|' if !escaped => cells.push(String::new()),
            _ => {
                if let Some(cell) = cells.last_mut() {
                    cell.push(c);
                }
            }
        }
        escaped = c == '\\';
    }
    cells.iter().map(|cell| cell.trim().to_string()).collect()
}

/// The backquoted names of a test cell.
fn test_names(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Every problem of the section's table, resolved against `sources`.
fn problems(section: &str, sources: &[Source]) -> Vec<String> {
    let mut problems = Vec::new();
    let lines: Vec<&str> = section.lines().collect();
    let Some(start) = lines.iter().position(|line| line.starts_with('|')) else {
        return vec![format!("no table under {SECTION:?}")];
    };
    let end = lines[start..]
        .iter()
        .position(|line| !line.starts_with('|'))
        .map_or(lines.len(), |length| start + length);
    if let Some(stray) = lines[end..].iter().find(|line| line.starts_with('|')) {
        problems.push(format!(
            "the table is split (a line that is not a row comes before): {stray}"
        ));
    }
    let header = cells(lines[start]);
    if header != HEADER {
        problems.push(format!("the header is {header:?}, not {HEADER:?}"));
    }
    let rows = lines[start..].iter().filter(|line| line.starts_with('|'));
    for row in rows.skip(2) {
        let row_cells = cells(row);
        let shown: String = row.chars().take(70).collect();
        if row_cells.len() != HEADER.len() {
            problems.push(format!(
                "{} cells, not {}: {shown}…",
                row_cells.len(),
                HEADER.len()
            ));
            continue;
        }
        let names = test_names(&row_cells[HEADER.len() - 1]);
        if names.is_empty() {
            problems.push(format!("names no test: {shown}…"));
        }
        for name in names {
            let parts: Vec<&str> = name.split("::").collect();
            let well_formed = parts.len() >= 2
                && parts.iter().all(|part| {
                    !part.is_empty()
                        && part
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                });
            if !well_formed {
                problems.push(format!(
                    "`{name}` is not `package::module::test_name`: {shown}…"
                ));
                continue;
            }
            let (function, modules) = parts.split_last().unwrap_or((&"", &[]));
            let found = sources.iter().any(|source| {
                in_order(modules, &source.segments) && has_test(&source.text, function)
            });
            if !found {
                problems.push(format!("no test `{name}` in the workspace: {shown}…"));
            }
        }
    }
    problems
}

/// The workspace's Rust files, as [`Source`]s.
fn sources() -> Vec<Source> {
    let mut files: Vec<PathBuf> = Vec::new();
    for member in members() {
        rust_files(&root().join(member), &mut files);
    }
    files
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(root()).unwrap_or(&path).to_path_buf();
            Source {
                segments: segments(&relative),
                text: std::fs::read_to_string(&path).unwrap(),
            }
        })
        .collect()
}

/// The README's section, from its heading to the next `## `.
fn section(readme: &str) -> &str {
    let start = readme.find(SECTION).expect("the compatibility section");
    let rest = &readme[start + SECTION.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

#[test]
fn every_compatibility_row_names_a_test_that_exists() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let problems = problems(section(&readme), &sources());
    assert!(
        problems.is_empty(),
        "the README's compatibility table ({} problems):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The checker itself: what it must refuse.
#[test]
fn the_table_check_refuses_what_it_should() {
    let source = |path: &str, text: &str| Source {
        segments: segments(Path::new(path)),
        text: text.to_string(),
    };
    let sources = [
        source(
            "compute-ctl/tests/it/last_sync.rs",
            "/// Doc.\n#[test]\nfn shown() {}\nfn helper() {}\n",
        ),
        source(
            "tests/tests/it/compat/mod.rs",
            "#[tokio::test(flavor = \"x\")]\nasync fn rows() {}\n",
        ),
    ];
    let table = |rows: &str| {
        format!(
            "intro\n\n| upstream `compute_ctl` | compute-tools | why | test |\n|---|---|---|---|\n{rows}\n\nafter\n"
        )
    };
    let good =
        table("| a | b `x\\|y` | c | `compute_ctl::last_sync::shown`, `tests::compat::rows` |");
    assert_eq!(problems(&good, &sources), Vec::<String>::new());
    for (rows, expected) in [
        ("| a | b | c | |", "names no test"),
        ("| a | b | c |", "3 cells, not 4"),
        (
            "| a | b | c | `compute_ctl::last_sync::helper` |",
            "no test `compute_ctl::last_sync::helper`",
        ),
        (
            "| a | b | c | `compute_ctl::compat::shown` |",
            "no test `compute_ctl::compat::shown`",
        ),
        (
            "| a | b | c | `shown` |",
            "is not `package::module::test_name`",
        ),
        (
            "| a | b | c | `tests::compat::rows` |\n\n| d | e | f | `tests::compat::rows` |",
            "the table is split",
        ),
    ] {
        let found = problems(&table(rows), &sources);
        assert!(
            found.iter().any(|problem| problem.contains(expected)),
            "{rows:?}: {found:?}"
        );
    }
    assert!(has_test("#[test]\n// note\nfn a() {}", "a"));
    assert!(!has_test("#[test]\nfn ab() {}", "a"));
}
