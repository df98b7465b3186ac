//! compute-ctl's modules in layers without a cycle, and the production line budgets
//! (compute-ctl under 4,000; no crate but the model over 5,000).
//!
//! Production lines: the non-blank lines (comments included) of the files reachable from a
//! package's crate roots (`src/lib.rs`, `src/main.rs`, `src/bin/*.rs`) through `mod`
//! declarations, leaving out every `#[cfg(test)]` item — test modules inline or in their own
//! files (`#[cfg(test)] mod tests;`, `#[path = "…_tests.rs"]`), test-only imports and helpers.
//! Integration tests (`tests/`) and benches are not production code.
//!
//! The module graph: the `crate::…` paths (and a module file's `super::…`) in each top-level
//! module's production code, comments left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{members, root};

/// compute-ctl's production lines stay under this: it orchestrates, features live in crates.
const COMPUTE_CTL_BUDGET: usize = 4_000;

/// No crate but the model (`MODEL_CRATE`) has more production lines than this.
const CRATE_BUDGET: usize = 5_000;

/// The model crate: the contract's types, exempt from [`CRATE_BUDGET`].
const MODEL_CRATE: &str = "compute-spec";

/// compute-ctl's top-level modules in layers, bottom first. A module may import (`crate::x`)
/// modules of its own layer or of a layer below, never of a layer above, nor the crate root
/// (`lib.rs` wires everything). The HTTP transport is the `compute-http` crate, below all.
const COMPUTE_CTL_LAYERS: &[(&str, &[&str])] = &[
    // The command line, the status machine and shared state, the stage runner.
    ("foundation", &["cli", "generate", "state", "stages"]),
    // pg-supervise's events, metrics of the state, the read-ahead of the binaries.
    ("runner", &["supervise", "metrics", "warm"]),
    // What every handler reaches, and what handlers share (`wrong_status`, `validate`).
    ("api", &["api"]),
    // Route adapters and background jobs over the feature crates.
    (
        "features",
        &[
            "catalog",
            "control",
            "ext_stats",
            "lease",
            "lfc",
            "migrations",
            "probes",
            "promote",
            "remote_ext",
            "sql",
        ],
    ),
    // The controller (the stages in order, the statuses), and the signals that stop it.
    ("controller", &["compute", "signals"]),
    // The one route table: handler, method, auth rule, server.
    ("wiring", &["routes"]),
];

/// A source file's production part: its lines outside `#[cfg(test)]` items, and the files
/// of the modules it declares outside them.
struct Production {
    lines: Vec<String>,
    modules: Vec<(String, PathBuf)>,
}

/// The production part of `path`; `crate_root` for `lib.rs`, `main.rs` and `src/bin/*.rs`
/// (whose modules sit beside them, as `mod.rs`'s do).
fn production(path: &Path, crate_root: bool) -> Production {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let parent = path.parent().unwrap();
    let stem = path.file_stem().unwrap().to_string_lossy();
    let children = if crate_root || stem == "mod" {
        parent.to_path_buf()
    } else {
        parent.join(&*stem)
    };
    let mut found = Production {
        lines: Vec::new(),
        modules: Vec::new(),
    };
    let mut path_attribute = None;
    let mut at = 0;
    while at < lines.len() {
        let line = lines[at];
        if line.trim() == "#[cfg(test)]" {
            at = after_item(&lines, at);
            continue;
        }
        let trimmed = line.trim();
        if let Some(file) = trimmed
            .strip_prefix("#[path = \"")
            .and_then(|rest| rest.strip_suffix("\"]"))
        {
            path_attribute = Some(parent.join(file));
        } else if let Some(name) = module_declaration(trimmed) {
            let file = path_attribute.take().unwrap_or_else(|| {
                let flat = children.join(format!("{name}.rs"));
                if flat.exists() {
                    flat
                } else {
                    children.join(name).join("mod.rs")
                }
            });
            assert!(
                file.exists(),
                "{}: mod {name}: no file {}",
                path.display(),
                file.display()
            );
            found.modules.push((name.to_string(), file));
        }
        found.lines.push(line.to_string());
        at += 1;
    }
    found
}

/// The line after the `#[cfg(test)]` item whose attribute is at `at`: its other attributes,
/// then the item up to its `;` or to the closing brace at the attribute's indentation.
fn after_item(lines: &[&str], at: usize) -> usize {
    let indent = &lines[at][..lines[at].len() - lines[at].trim_start().len()];
    let mut next = at + 1;
    while next < lines.len() && lines[next].trim_start().starts_with("#[") {
        next += 1;
    }
    if lines
        .get(next)
        .is_some_and(|line| line.trim_end().ends_with(';'))
    {
        return next + 1;
    }
    let (close, close_semicolon) = (format!("{indent}}}"), format!("{indent}}};"));
    while next < lines.len() {
        let line = lines[next].trim_end();
        next += 1;
        if line == close || line == close_semicolon {
            break;
        }
    }
    next
}

/// `name` of a `mod name;` line (any visibility).
fn module_declaration(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("pub ").unwrap_or(line);
    let rest = ["pub(crate) ", "pub(super) "]
        .iter()
        .find_map(|visibility| line.strip_prefix(visibility))
        .unwrap_or(rest);
    let name = rest.strip_prefix("mod ")?.strip_suffix(';')?;
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then_some(name)
}

/// The production files of `files`' module trees, with their production parts.
fn module_tree(files: Vec<(PathBuf, bool)>) -> Vec<(PathBuf, Production)> {
    let mut todo = files;
    let mut seen = BTreeSet::new();
    let mut tree = Vec::new();
    while let Some((file, crate_root)) = todo.pop() {
        if !seen.insert(file.clone()) {
            continue;
        }
        let part = production(&file, crate_root);
        todo.extend(part.modules.iter().map(|(_, file)| (file.clone(), false)));
        tree.push((file, part));
    }
    tree
}

/// A package's production files and their production parts (see the module doc).
fn production_files(package: &Path) -> Vec<(PathBuf, Production)> {
    let src = package.join("src");
    let mut roots: Vec<(PathBuf, bool)> = ["lib.rs", "main.rs"]
        .iter()
        .map(|name| src.join(name))
        .filter(|path| path.exists())
        .map(|path| (path, true))
        .collect();
    if let Ok(bins) = std::fs::read_dir(src.join("bin")) {
        for entry in bins {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "rs") {
                roots.push((path, true));
            }
        }
    }
    module_tree(roots)
}

/// A package's production code, file by file, comments left out.
pub(super) fn production_code(package: &Path) -> Vec<(PathBuf, String)> {
    production_files(package)
        .iter()
        .map(|(file, part)| (file.clone(), code_of(part)))
        .collect()
}

/// A package's production lines (see the module doc).
fn production_lines(package: &Path) -> usize {
    production_files(package)
        .iter()
        .flat_map(|(_, part)| &part.lines)
        .filter(|line| !line.trim().is_empty())
        .count()
}

#[test]
fn production_lines_stay_within_the_budgets() {
    let mut over = Vec::new();
    let mut counted = BTreeMap::new();
    for member in members() {
        let lines = production_lines(&root().join(&member));
        let (within, budget) = match member.as_str() {
            "compute-ctl" => (
                lines < COMPUTE_CTL_BUDGET,
                format!("fewer than {COMPUTE_CTL_BUDGET}"),
            ),
            MODEL_CRATE => (true, "none".to_string()),
            _ => (lines <= CRATE_BUDGET, format!("at most {CRATE_BUDGET}")),
        };
        if !within {
            over.push(format!(
                "{member}: {lines} production lines (budget: {budget})"
            ));
        }
        counted.insert(member, lines);
    }
    // The counter sees the code (a broken one would pass every budget).
    assert!(counted["compute-ctl"] > 1_000, "{counted:?}");
    assert!(
        over.is_empty(),
        "over the line budget — move a feature into a crate of its own, where it belongs \
         (compute-ctl orchestrates), or split the crate:\n{}\nall: {counted:?}",
        over.join("\n")
    );
}

/// The names after `prefix` (`crate::`, or `super::` in a top-level module's own file) in
/// `code`: `crate::a::b` names `a`, a `crate::{a, b::c}` group names `a` and `b`.
fn referenced(code: &str, prefix: &str, found: &mut BTreeSet<String>) {
    let ident = |text: &str| -> String {
        text.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        let Some(group) = rest.strip_prefix('{') else {
            found.insert(ident(rest));
            continue;
        };
        let (mut depth, mut item) = (0, 0);
        for (index, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    found.insert(ident(&group[item..index]));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    found.insert(ident(&group[item..index]));
                    item = index + 1;
                }
                _ => {}
            }
        }
    }
    found.remove("");
}

/// Production code without comments (doc links are not imports).
fn code_of(part: &Production) -> String {
    part.lines
        .iter()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// compute-ctl's module graph: each top-level module (declared in `lib.rs`) and what its
/// production code references — other top-level modules, or `<crate root>` for an item of
/// `lib.rs` itself.
fn compute_ctl_graph() -> BTreeMap<String, BTreeSet<String>> {
    let lib = root().join("compute-ctl/src/lib.rs");
    let top = production(&lib, true).modules;
    let names: BTreeSet<String> = top.iter().map(|(name, _)| name.clone()).collect();
    let mut graph = BTreeMap::new();
    for (module, file) in &top {
        let mut found = BTreeSet::new();
        for (path, part) in module_tree(vec![(file.clone(), false)]) {
            let code = code_of(&part);
            referenced(&code, "crate::", &mut found);
            if &path == file {
                referenced(&code, "super::", &mut found);
            }
        }
        let edges = found
            .into_iter()
            .filter(|name| name != module)
            .map(|name| match names.contains(&name) {
                true => name,
                false => "<crate root>".to_string(),
            })
            .collect();
        graph.insert(module.clone(), edges);
    }
    graph
}

/// A path `from → … → from` in `graph`, if `from` is on a cycle.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![from.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap();
        for next in graph.get(last).into_iter().flatten() {
            if next == from {
                let mut cycle = path.clone();
                cycle.push(next.clone());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
    }
    None
}

#[test]
fn compute_ctl_modules_have_no_cycle() {
    let graph = compute_ctl_graph();
    assert!(graph.len() > 10, "{graph:?}");
    let cycles: BTreeSet<String> = graph
        .keys()
        .filter_map(|module| cycle_through(&graph, module))
        .map(|cycle| cycle.join(" -> "))
        .collect();
    assert!(
        cycles.is_empty(),
        "compute-ctl's modules import each other in a cycle; move what both need below both \
         (see COMPUTE_CTL_LAYERS):\n{}",
        cycles.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn compute_ctl_modules_import_only_their_layer_or_below() {
    let graph = compute_ctl_graph();
    let layer_of = |module: &str| {
        COMPUTE_CTL_LAYERS
            .iter()
            .position(|(_, modules)| modules.contains(&module))
    };
    let mut problems = Vec::new();
    for (module, edges) in &graph {
        let Some(from) = layer_of(module) else {
            problems.push(format!(
                "{module} is in no layer: add it to COMPUTE_CTL_LAYERS"
            ));
            continue;
        };
        for target in edges {
            match layer_of(target) {
                None if target == "<crate root>" => problems.push(format!(
                    "{module} -> the crate root (an item of lib.rs): move the item into a module"
                )),
                None => problems.push(format!("{module} -> {target}: {target} is in no layer")),
                Some(to) if to > from => problems.push(format!(
                    "{module} ({}) -> {target} ({}): an upward import",
                    COMPUTE_CTL_LAYERS[from].0, COMPUTE_CTL_LAYERS[to].0
                )),
                Some(_) => {}
            }
        }
    }
    for (layer, modules) in COMPUTE_CTL_LAYERS {
        for module in *modules {
            if !graph.contains_key(*module) {
                problems.push(format!("layer {layer} lists {module}, which is no module"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The transport below compute-ctl's layers knows no handler and no feature: `compute-http`
/// depends on no package of the workspace.
#[test]
fn the_http_transport_depends_on_no_workspace_package() {
    let manifest = std::fs::read_to_string(root().join("compute-http/Cargo.toml")).unwrap();
    let dependencies = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("a [dependencies] section");
    let packages: Vec<String> = members()
        .iter()
        .map(|member| {
            let manifest = std::fs::read_to_string(root().join(member).join("Cargo.toml"));
            super::package_name(&manifest.unwrap())
        })
        .collect();
    for line in dependencies.lines() {
        let name = line.split(['=', '.']).next().unwrap_or_default().trim();
        assert!(
            !packages.iter().any(|package| package == name),
            "compute-http depends on {name}: the transport must know no handler or feature"
        );
    }
}
