//! The shipped Prometheus alerting rules (`deploy/prometheus/`): `promtool check rules`
//! accepts them, `promtool test rules` runs their unit tests (series that fire each alert and
//! series that must not), and every series they read is one a compute exports.

use std::path::{Path, PathBuf};
use std::process::Command;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(dir())
        .output()
        .expect("promtool (Debian package prometheus; scripts/install-deps.sh installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}:\n{said}");
    said
}

#[test]
fn the_alerting_rules_pass_promtool_and_their_unit_tests() {
    let checked = promtool(&["check", "rules", "compute-tools.rules.yml"]);
    assert!(checked.contains("SUCCESS: 10 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "compute-tools.rules.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// Every `name` of `text` that looks like a metric of ours.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text
        .lines()
        .filter(|line| line.trim_start().starts_with("expr:"))
    {
        let mut rest = line;
        while let Some(start) = rest.find("compute_") {
            let name: String = rest[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[start + name.len()..];
            names.push(name);
        }
    }
    names.sort();
    names.dedup();
    names
}

#[test]
fn every_series_an_alert_reads_is_one_we_export() {
    let rules = std::fs::read_to_string(dir().join("compute-tools.rules.yml")).unwrap();
    let names = metric_names(&rules);
    assert!(names.len() >= 7, "{names:?}");
    // The metrics are rendered by compute-ctl from names written once in its source.
    let mut sources = String::new();
    let mut pending = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../compute-ctl/src")];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                sources.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    for name in names {
        assert!(
            sources.contains(&format!("\"{name}")),
            "alert rules read {name}, which compute-ctl does not export"
        );
    }
}
