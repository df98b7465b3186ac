//! The cluster's own objects (`compute_spec::reserved`): each reserved role name and
//! protected database is refused at every JSON path a spec can name it, with the path, the
//! name, the reason and what to do; names PostgreSQL does not reserve (other case, the
//! upstream fixtures' roles) stay accepted.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use compute_spec::reserved::Reserved;
use compute_spec::spec::ComputeSpec;
use compute_spec::validate::SpecErrors;
use serde_json::{json, Value};

const RESERVED: Reserved<'static> = Reserved {
    admin: "cloud_admin",
    privileged: "neon_superuser",
};

/// Names PostgreSQL reserves, whatever the compute's configuration.
const BUILTIN: [&str; 8] = [
    "pg_monitor",
    "pg_anything",
    "pg_",
    "public",
    "none",
    "current_user",
    "session_user",
    "current_role",
];

fn spec(roles: Value, databases: Value, deltas: Value) -> ComputeSpec {
    serde_json::from_value(json!({
        "format_version": 1.0,
        "cluster": {"roles": roles, "databases": databases},
        "delta_operations": deltas,
    }))
    .unwrap()
}

fn role(name: &str) -> ComputeSpec {
    spec(json!([{"name": name}]), json!([]), json!([]))
}

fn delta(action: &str, name: &str, new_name: Option<&str>) -> ComputeSpec {
    let mut op = json!({"action": action, "name": name});
    if let Some(new_name) = new_name {
        op["new_name"] = json!(new_name);
    }
    spec(json!([]), json!([]), json!([op]))
}

/// The one error of `errors`: at `field`, naming `name`, saying what to do.
fn assert_refused(errors: SpecErrors, field: &str, name: &str, todo: &str) {
    assert_eq!(errors.0.len(), 1, "{errors}");
    let error = &errors.0[0];
    assert_eq!(error.field, field, "{errors}");
    assert!(error.message.contains(&format!("{name:?}")), "{errors}");
    assert!(error.message.contains(todo), "{errors}");
    assert!(errors.to_string().starts_with(field), "{errors}");
}

#[test]
fn builtin_role_names_are_refused_as_spec_roles_even_without_the_compute_names() {
    for name in BUILTIN {
        for result in [role(name).validate(), role(name).validate_for(&RESERVED)] {
            let errors = result.map(|_| ()).unwrap_err();
            assert_refused(
                errors,
                "cluster.roles[0].name",
                name,
                "give the role another name",
            );
        }
    }
}

#[test]
fn the_privileged_role_is_refused_as_a_spec_role() {
    let errors = role("neon_superuser").validate_for(&RESERVED).unwrap_err();
    assert_refused(
        errors,
        "cluster.roles[0].name",
        "neon_superuser",
        "--privileged-role-name",
    );
    // Another privileged role name: that one is refused, this one is an ordinary role.
    let other = Reserved {
        admin: "cloud_admin",
        privileged: "my_superuser",
    };
    assert!(role("my_superuser").validate_for(&other).is_err());
    assert!(role("neon_superuser").validate_for(&other).is_ok());
    // Without the compute's names it cannot be known.
    assert!(role("neon_superuser").validate().is_ok());
}

#[test]
fn the_admin_role_may_set_its_password_but_not_its_options() {
    // As upstream's docker-compose spec: the admin role with a password and no options.
    let password_only = spec(
        json!([{"name": "cloud_admin", "encrypted_password": "b093c0d3b281ba6da1eacc608620abd8",
                "options": null}]),
        json!([]),
        json!([]),
    );
    assert!(password_only.validate_for(&RESERVED).is_ok());
    let empty_options = spec(
        json!([{"name": "cloud_admin", "options": []}]),
        json!([]),
        json!([]),
    );
    assert!(empty_options.validate_for(&RESERVED).is_ok());
    for option in ["NOSUPERUSER", "NOLOGIN", "SUPERUSER"] {
        let demoted = spec(
            json!([{"name": "ok"}, {"name": "cloud_admin",
                    "options": [{"name": option, "vartype": "bool"}]}]),
            json!([]),
            json!([]),
        );
        let errors = demoted.validate_for(&RESERVED).unwrap_err();
        assert_refused(
            errors,
            "cluster.roles[1].options",
            "cloud_admin",
            "remove the options",
        );
    }
    // The admin is whoever -C connects as.
    let alice = Reserved {
        admin: "alice",
        privileged: "neon_superuser",
    };
    let demoted = spec(
        json!([{"name": "alice", "options": [{"name": "NOSUPERUSER", "vartype": "bool"}]}]),
        json!([]),
        json!([]),
    );
    assert!(demoted.validate_for(&alice).is_err());
    assert!(demoted.validate_for(&RESERVED).is_ok());
}

#[test]
fn names_are_compared_exactly_as_postgres_compares_them() {
    for name in [
        "PUBLIC",
        "None",
        "CURRENT_USER",
        "Pg_monitor",
        "PG_x",
        "xpg_",
        "Neon_superuser",
        "postgres",
    ] {
        assert!(role(name).validate_for(&RESERVED).is_ok(), "{name}");
    }
}

#[test]
fn deleting_or_renaming_a_reserved_role_is_refused() {
    for name in BUILTIN.into_iter().chain(["cloud_admin", "neon_superuser"]) {
        let errors = delta("delete_role", name, None)
            .validate_for(&RESERVED)
            .unwrap_err();
        assert_refused(
            errors,
            "delta_operations[0].name",
            name,
            "remove this delta operation",
        );
        let errors = delta("rename_role", name, Some("x"))
            .validate_for(&RESERVED)
            .unwrap_err();
        assert_refused(
            errors,
            "delta_operations[0].name",
            name,
            "remove this delta operation",
        );
        let errors = delta("rename_role", "x", Some(name))
            .validate_for(&RESERVED)
            .unwrap_err();
        assert_refused(
            errors,
            "delta_operations[0].new_name",
            name,
            "choose another new_name",
        );
    }
    assert!(delta("delete_role", "PUBLIC", None)
        .validate_for(&RESERVED)
        .is_ok());
}

#[test]
fn deleting_or_renaming_a_protected_database_is_refused() {
    for name in ["template0", "template1", "postgres"] {
        for (action, new_name) in [("delete_db", None), ("rename_db", Some("x"))] {
            // Refused even without the compute's names.
            let errors = delta(action, name, new_name).validate().unwrap_err();
            assert_refused(
                errors,
                "delta_operations[0].name",
                name,
                "remove this delta operation",
            );
        }
        let errors = delta("rename_db", "x", Some(name)).validate().unwrap_err();
        assert_refused(
            errors,
            "delta_operations[0].new_name",
            name,
            "choose another new_name",
        );
    }
    for name in ["Template1", "postgres2", "neondb"] {
        assert!(delta("delete_db", name, None).validate().is_ok(), "{name}");
    }
}

#[test]
fn a_role_delta_may_name_a_database_name_and_the_reverse() {
    // A role called template1 is no database; a database called public is no role.
    assert!(delta("delete_role", "template1", None)
        .validate_for(&RESERVED)
        .is_ok());
    assert!(delta("delete_db", "public", None)
        .validate_for(&RESERVED)
        .is_ok());
    assert!(delta("rename_db", "a", Some("cloud_admin"))
        .validate_for(&RESERVED)
        .is_ok());
}

#[test]
fn template_databases_are_refused_as_spec_databases_and_postgres_is_not() {
    for name in ["template0", "template1"] {
        let errors = spec(
            json!([]),
            json!([{"name": name, "owner": "cloud_admin"}]),
            json!([]),
        )
        .validate_for(&RESERVED)
        .unwrap_err();
        assert_refused(
            errors,
            "cluster.databases[0].name",
            name,
            "remove it from cluster.databases",
        );
    }
    let postgres = spec(
        json!([]),
        json!([{"name": "postgres", "owner": "cloud_admin"}]),
        json!([]),
    );
    assert!(postgres.validate_for(&RESERVED).is_ok());
}

#[test]
fn a_database_owner_is_no_builtin_role_but_may_be_the_admin_or_privileged_role() {
    for owner in BUILTIN {
        let errors = spec(
            json!([]),
            json!([{"name": "db", "owner": owner}]),
            json!([]),
        )
        .validate_for(&RESERVED)
        .unwrap_err();
        assert_refused(
            errors,
            "cluster.databases[0].owner",
            owner,
            "name a role of cluster.roles as its owner",
        );
    }
    for owner in ["cloud_admin", "neon_superuser"] {
        let ok = spec(
            json!([]),
            json!([{"name": "db", "owner": owner}]),
            json!([]),
        );
        assert!(ok.validate_for(&RESERVED).is_ok(), "{owner}");
    }
}

#[test]
fn every_reserved_field_is_reported_at_once_and_check_reserved_agrees() {
    let bad = spec(
        json!([{"name": "ok"}, {"name": "pg_x"}, {"name": "neon_superuser"},
               {"name": "cloud_admin", "options": [{"name": "NOLOGIN", "vartype": "bool"}]}]),
        json!([{"name": "template1", "owner": "public"}]),
        json!([
            {"action": "delete_db", "name": "template1"},
            {"action": "rename_db", "name": "postgres", "new_name": "template0"},
            {"action": "delete_role", "name": "cloud_admin"},
            {"action": "rename_role", "name": "ok", "new_name": "session_user"},
            {"action": "delete_db", "name": "fine"},
        ]),
    );
    let expected = [
        "cluster.roles[1].name",
        "cluster.roles[2].name",
        "cluster.roles[3].options",
        "cluster.databases[0].name",
        "cluster.databases[0].owner",
        "delta_operations[0].name",
        "delta_operations[1].name",
        "delta_operations[1].new_name",
        "delta_operations[2].name",
        "delta_operations[3].new_name",
    ];
    let fields = |errors: SpecErrors| -> Vec<String> {
        errors.0.into_iter().map(|error| error.field).collect()
    };
    assert_eq!(fields(bad.validate_for(&RESERVED).unwrap_err()), expected);
    assert_eq!(fields(bad.check_reserved(&RESERVED).unwrap_err()), expected);
    assert!(role("ok").check_reserved(&RESERVED).is_ok());
}
