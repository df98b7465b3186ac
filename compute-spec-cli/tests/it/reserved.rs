//! The `compute-spec` binary refuses a spec that would take the cluster's own objects: exit
//! 2 with an `invalid_spec` envelope naming the JSON path, the admin role read from `-C` and
//! the privileged role from `--privileged-role-name`.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::process::Command;

use pg_test_support::TestDir;
use serde_json::{json, Value};

struct Outcome {
    code: Option<i32>,
    envelope: Value,
}

fn run(spec: &Value, flags: &[&str]) -> Outcome {
    let dir = TestDir::new("compute-spec-reserved");
    let pgdata = dir.path().join("pgdata");
    let output = Command::new(env!("CARGO_BIN_EXE_compute-spec"))
        .args(["-s", &spec.to_string(), "-D", pgdata.to_str().unwrap()])
        .args(flags)
        .output()
        .unwrap();
    assert!(!pgdata.exists(), "nothing is created");
    let stdout = String::from_utf8_lossy(&output.stdout);
    Outcome {
        code: output.status.code(),
        envelope: serde_json::from_str(&stdout).unwrap(),
    }
}

fn spec(roles: Value, deltas: Value) -> Value {
    json!({"format_version": 1.0, "cluster": {"roles": roles, "databases": []},
           "delta_operations": deltas})
}

fn assert_refused(outcome: &Outcome, path: &str, name: &str) {
    assert_eq!(outcome.code, Some(2), "{}", outcome.envelope);
    assert_eq!(outcome.envelope["error"]["kind"], "invalid_spec");
    let message = outcome.envelope["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("{path}: ")), "{message}");
    assert!(message.contains(&format!("{name:?}")), "{message}");
}

#[test]
fn deleting_template1_or_renaming_to_postgres_exits_2_naming_the_path() {
    let deltas = json!([{"action": "delete_db", "name": "old"},
                        {"action": "delete_db", "name": "template1"},
                        {"action": "rename_db", "name": "app", "new_name": "postgres"}]);
    let outcome = run(&spec(json!([]), deltas), &[]);
    assert_refused(&outcome, "delta_operations[1].name", "template1");
    assert_refused(&outcome, "delta_operations[2].new_name", "app");
    let message = outcome.envelope["error"]["message"].as_str().unwrap();
    assert!(!message.contains("delta_operations[0]"), "{message}");
}

#[test]
fn the_admin_role_is_the_user_of_the_connstr() {
    let demote = spec(
        json!([{"name": "alice", "options": [{"name": "NOSUPERUSER", "vartype": "bool"}]}]),
        json!([]),
    );
    let outcome = run(&demote, &["-C", "postgresql://alice@localhost/postgres"]);
    assert_refused(&outcome, "cluster.roles[0].options", "alice");
    // With the default -C (cloud_admin), alice is an ordinary role.
    let accepted = run(&demote, &[]);
    assert_eq!(accepted.code, Some(0), "{}", accepted.envelope);
    // A key=value -C too; and deleting the admin is refused.
    let delete = spec(json!([]), json!([{"action": "delete_role", "name": "bob"}]));
    let outcome = run(&delete, &["-C", "user=bob dbname=postgres"]);
    assert_refused(&outcome, "delta_operations[0].name", "bob");
}

#[test]
fn the_privileged_role_is_the_flags_and_builtin_names_are_always_refused() {
    let roles = spec(json!([{"name": "my_superuser"}]), json!([]));
    let outcome = run(&roles, &["--privileged-role-name", "my_superuser"]);
    assert_refused(&outcome, "cluster.roles[0].name", "my_superuser");
    assert_eq!(run(&roles, &[]).code, Some(0));
    for name in ["pg_signal_backend", "public", "current_user"] {
        let outcome = run(&spec(json!([{"name": name}]), json!([])), &[]);
        assert_refused(&outcome, "cluster.roles[0].name", name);
    }
}
