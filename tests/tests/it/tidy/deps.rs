//! Every dependency a package declares is used by its sources, without building a tool:
//! `cargo metadata` (well under a second, no build) names each workspace package's
//! dependencies and the crate name its code uses for each (a `package = ` rename, a library
//! whose name is not the package's: `md-5` is `md5`), and the package's sources are scanned
//! for that name as a path (`name::…`, `::name::…`, `#[name::attr]`, `#[derive(name::X)]`),
//! in `use name` or `extern crate name` — comments left out.
//!
//! Where a dependency must be used follows its section: `[dependencies]` in `src/` (one used
//! only by tests, benches or examples belongs in `[dev-dependencies]`), `[dev-dependencies]`
//! in `src/` (unit tests), `tests/`, `benches/` or `examples/`, `[build-dependencies]` in
//! `build.rs`. A dev-dependency that repeats a normal one without adding a feature does
//! nothing and is reported too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::rust_files;

/// One dependency of a workspace package, as `cargo metadata` lists it.
struct Dependency {
    /// The package name (`md-5`).
    package: String,
    /// Its key in the manifest: the package name, or the name a `package = ` renames it to.
    key: String,
    /// The name the code uses (`md5`).
    code_name: String,
    /// `None` (normal), `dev` or `build`.
    kind: Option<String>,
    features: Vec<String>,
}

/// A workspace package: its name, its directory and its dependencies.
struct Package {
    name: String,
    dir: PathBuf,
    dependencies: Vec<Dependency>,
}

/// `cargo metadata` of the workspace (offline: the lock file and the downloaded sources are
/// all it reads).
fn metadata() -> Value {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .current_dir(super::root())
        .output()
        .expect("running cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata's JSON")
}

/// The workspace's packages, each dependency with the name its code uses.
fn packages(metadata: &Value) -> Vec<Package> {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
    // Package name → its library's crate name (`md-5` → `md5`).
    let mut libraries = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        for target in package["targets"].as_array().unwrap() {
            let kinds = target["kind"].as_array().unwrap();
            if kinds
                .iter()
                .any(|kind| ["lib", "rlib", "proc-macro"].contains(&kind.as_str().unwrap()))
            {
                libraries.insert(text(&package["name"]), text(&target["name"]));
            }
        }
    }
    let members = metadata["workspace_members"].as_array().unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|package| members.contains(&package["id"]))
        .map(|package| Package {
            name: text(&package["name"]),
            dir: Path::new(package["manifest_path"].as_str().unwrap())
                .parent()
                .unwrap()
                .to_path_buf(),
            dependencies: package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|dependency| {
                    let package = text(&dependency["name"]);
                    let code_name = match dependency["rename"].as_str() {
                        Some(rename) => rename.replace('-', "_"),
                        None => libraries
                            .get(&package)
                            .cloned()
                            .unwrap_or_else(|| package.replace('-', "_")),
                    };
                    Dependency {
                        key: dependency["rename"]
                            .as_str()
                            .map_or_else(|| package.clone(), str::to_string),
                        package,
                        code_name,
                        kind: dependency["kind"].as_str().map(str::to_string),
                        features: dependency["features"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(text)
                            .collect(),
                    }
                })
                .collect(),
        })
        .collect()
}

/// A line without its `//` comment (a `//` inside a string literal is not one).
fn code_of(line: &str) -> &str {
    let bytes = line.as_bytes();
    let (mut in_string, mut at) = (false, 0);
    while at < bytes.len() {
        match (in_string, bytes[at]) {
            (true, b'\\') => at += 1,
            (_, b'"') => in_string = !in_string,
            (false, b'/') if bytes.get(at + 1) == Some(&b'/') => return &line[..at],
            _ => {}
        }
        at += 1;
    }
    line
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `code` uses the crate `name`: `name::` at the start of a path (not `x::name::`,
/// which is a module of another crate), `use name` or `extern crate name`.
fn uses(code: &str, name: &str) -> bool {
    code.match_indices(name).any(|(at, _)| {
        let before = &code[..at];
        let after = &code[at + name.len()..];
        if before.chars().next_back().is_some_and(is_ident)
            || after.chars().next().is_some_and(is_ident)
        {
            return false;
        }
        let path_start = match before.strip_suffix("::") {
            // `::name::…`, the global path: not `x::name` nor `<T>::name`.
            Some(rest) => !rest.ends_with(|c: char| is_ident(c) || c == '>'),
            None => !before.ends_with('.'),
        };
        // `use name` or `extern crate name`: the keyword is a word of its own.
        let after_word = |word: &str| {
            before.ends_with(char::is_whitespace)
                && before
                    .trim_end()
                    .strip_suffix(word)
                    .is_some_and(|rest| !rest.ends_with(is_ident))
        };
        (path_start && after.starts_with("::")) || after_word("use") || after_word("crate")
    })
}

/// The code (comments left out) of the `.rs` files under `dir` (or of the file `dir`), and
/// of the files outside `package_dir` they include with `#[path = "…"]` (another package's
/// test helpers, compiled here).
fn code_under(package_dir: &Path, dir: &Path) -> String {
    let mut files = Vec::new();
    if dir.is_file() {
        files.push(dir.to_path_buf());
    } else {
        rust_files(dir, &mut files);
    }
    let inside = package_dir.canonicalize().unwrap();
    let mut code = String::new();
    let mut at = 0;
    while let Some(path) = files.get(at).cloned() {
        at += 1;
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let included = line
                .trim()
                .strip_prefix("#[path = \"")
                .and_then(|rest| rest.strip_suffix("\"]"));
            if let Some(included) = included {
                let target = path
                    .parent()
                    .unwrap()
                    .join(included)
                    .canonicalize()
                    .unwrap();
                if !target.starts_with(&inside) && !files.contains(&target) {
                    // A directory module brings its submodules.
                    match target.ends_with("mod.rs") {
                        true => rust_files(target.parent().unwrap(), &mut files),
                        false => files.push(target),
                    }
                }
            }
            code.push_str(code_of(line));
            code.push('\n');
        }
    }
    code
}

/// The comment on a manifest line whose dependency only code generated at build time uses.
const GENERATED_CODE_MARK: &str = "# used by the code build.rs generates";

/// What is wrong with `package`'s dependencies, one line each.
fn problems_of(package: &Package) -> Vec<String> {
    let parts = ["src", "tests", "benches", "examples", "build.rs"];
    let code: BTreeMap<&str, String> = parts
        .iter()
        .map(|part| (*part, code_under(&package.dir, &package.dir.join(part))))
        .collect();
    let used_in = |name: &str| -> Vec<&str> {
        parts
            .iter()
            .copied()
            .filter(|part| uses(&code[part], name))
            .collect()
    };
    let manifest = format!(
        "{}/Cargo.toml",
        package.dir.file_name().unwrap().to_string_lossy()
    );
    // Code generated at build time (`include!` from `OUT_DIR`) is not in the tree: its
    // dependencies say so on their manifest line.
    let manifest_text = std::fs::read_to_string(package.dir.join("Cargo.toml")).unwrap_or_default();
    let generated = |name: &str| {
        manifest_text.lines().any(|line| {
            line.split(['=', '.', ' ']).next() == Some(name) && line.contains(GENERATED_CODE_MARK)
        })
    };
    let mut problems = Vec::new();
    for dependency in &package.dependencies {
        if generated(&dependency.package) {
            continue;
        }
        let (section, allowed): (&str, &[&str]) = match dependency.kind.as_deref() {
            Some("build") => ("[build-dependencies]", &["build.rs"]),
            Some(_) => (
                "[dev-dependencies]",
                &["src", "tests", "benches", "examples"],
            ),
            None => ("[dependencies]", &["src"]),
        };
        let found = used_in(&dependency.code_name);
        let named = format!(
            "{}: {section} `{}` (`{}` in code)",
            package.name, dependency.package, dependency.code_name
        );
        if found.is_empty() {
            problems.push(format!(
                "{named} is used nowhere in src/, tests/, benches/, examples/ or build.rs: \
                 remove it from {manifest}"
            ));
        } else if !found.iter().any(|part| allowed.contains(part)) {
            problems.push(format!(
                "{named} is used only in {}: move it to [dev-dependencies] in {manifest}",
                found.join(", ")
            ));
        }
        if dependency.kind.as_deref() == Some("dev") {
            let normal = package
                .dependencies
                .iter()
                .find(|other| other.kind.is_none() && other.package == dependency.package);
            if let Some(normal) = normal {
                if dependency
                    .features
                    .iter()
                    .all(|feature| normal.features.contains(feature))
                {
                    problems.push(format!(
                        "{named} repeats the [dependencies] entry and adds no feature: \
                         remove it from [dev-dependencies] in {manifest} (tests see normal \
                         dependencies)"
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn the_scan_sees_paths_imports_and_attributes_not_comments_or_other_crates_modules() {
    assert!(uses("let x = serde_json::json!({});", "serde_json"));
    assert!(uses("use tracing;", "tracing"));
    assert!(uses("use md5 as digest;", "md5"));
    assert!(uses("extern crate libc;", "libc"));
    assert!(uses("#[derive(thiserror::Error)]", "thiserror"));
    assert!(uses("#[tokio::test]", "tokio"));
    assert!(uses("let v = ::bytes::Bytes::new();", "bytes"));
    assert!(!uses(code_of("// bytes::Bytes in a comment"), "bytes"));
    assert!(!uses(code_of("/// [`bytes::Bytes`]"), "bytes"));
    assert!(uses(
        code_of("let url = \"http://x\"; bytes::Bytes::new()"),
        "bytes"
    ));
    assert!(!uses("compute_spec::serde::Deserialize", "serde"));
    assert!(!uses("<T as Trait>::bytes::X", "bytes"));
    assert!(!uses("let bytes = read(); bytes.len()", "bytes"));
    assert!(!uses("nix_ext::call()", "nix"));
    assert!(!uses("let reuse bytes", "bytes"));
    assert!(!uses("self.tar::", "tar"));
}

/// The check itself, against a planted package: an unused dependency, one used only by a
/// test, a plain repeat in `[dev-dependencies]`, a renamed one used by its new name, one
/// that only generated code uses (marked so).
#[test]
fn a_planted_unused_misplaced_or_repeated_dependency_is_reported() {
    let dir = std::env::temp_dir().join(format!("tidy-deps-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    std::fs::write(
        dir.join("src/lib.rs"),
        "use digest_crate::Md5;\nnix::x();\n",
    )
    .unwrap();
    std::fs::write(dir.join("tests/t.rs"), "tar::Archive::new();\n").unwrap();
    // Used only by generated code, and said so on its manifest line: not reported.
    std::fs::write(
        dir.join("Cargo.toml"),
        format!("[dependencies]\nprost = \"0.14\" {GENERATED_CODE_MARK}\n"),
    )
    .unwrap();
    let dependency = |package: &str, code_name: &str, kind: Option<&str>| Dependency {
        package: package.to_string(),
        key: package.to_string(),
        code_name: code_name.to_string(),
        kind: kind.map(str::to_string),
        features: Vec::new(),
    };
    let package = Package {
        name: "planted".to_string(),
        dir: dir.clone(),
        dependencies: vec![
            dependency("md-5", "digest_crate", None),
            dependency("nix", "nix", None),
            dependency("nix", "nix", Some("dev")),
            dependency("tar", "tar", None),
            dependency("anyhow", "anyhow", None),
            dependency("prost", "prost", None),
        ],
    };
    let problems = problems_of(&package);
    std::fs::remove_dir_all(&dir).unwrap();
    let expected = [
        "planted: [dev-dependencies] `nix` (`nix` in code) repeats the [dependencies] entry",
        "planted: [dependencies] `tar` (`tar` in code) is used only in tests: move it to \
         [dev-dependencies]",
        "planted: [dependencies] `anyhow` (`anyhow` in code) is used nowhere in src/, tests/, \
         benches/, examples/ or build.rs: remove it from",
    ];
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    for (problem, start) in problems.iter().zip(expected) {
        assert!(
            problem.starts_with(start),
            "{problem}\nshould start {start}"
        );
    }
}

#[test]
fn every_dependency_is_used_where_its_section_says() {
    let packages = packages(&metadata());
    assert!(packages.len() >= 8, "only {} packages", packages.len());
    let renamed = packages
        .iter()
        .flat_map(|package| &package.dependencies)
        .any(|dependency| dependency.package == "md-5" && dependency.code_name == "md5");
    assert!(
        renamed,
        "md-5's library is md5: the library names are not read"
    );
    let problems: Vec<String> = packages.iter().flat_map(problems_of).collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The keys of the root manifest's `[workspace.dependencies]`.
fn workspace_dependencies() -> Vec<String> {
    let manifest = std::fs::read_to_string(super::root().join("Cargo.toml")).unwrap();
    let section = manifest
        .split("\n[workspace.dependencies]\n")
        .nth(1)
        .expect("a [workspace.dependencies] section");
    let section = section.split("\n[").next().unwrap_or_default();
    section
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split(['=', '.']).next())
        .map(|key| key.trim().to_string())
        .collect()
}

/// An entry of `[workspace.dependencies]` that no package inherits is dead weight that
/// reads as if something used it.
#[test]
fn every_workspace_dependency_is_inherited_by_a_package() {
    let declared = workspace_dependencies();
    assert!(declared.len() > 10, "read {declared:?}");
    assert!(
        declared.iter().any(|key| key == "stage-kit"),
        "{declared:?}"
    );
    let packages = packages(&metadata());
    let unused: Vec<&String> = declared
        .iter()
        .filter(|key| {
            !packages
                .iter()
                .flat_map(|package| &package.dependencies)
                .any(|dependency| &dependency.key == *key)
        })
        .collect();
    assert!(
        unused.is_empty(),
        "no package depends on these entries of [workspace.dependencies]: remove them from \
         the root Cargo.toml: {unused:?}"
    );
}
