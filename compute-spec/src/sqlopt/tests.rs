//! The option tables and renderers against hostile and ordinary options.

use super::*;

fn opt(name: &str, value: Option<&str>, vartype: &str) -> GenericOption {
    GenericOption {
        name: name.to_string(),
        value: value.map(str::to_string),
        vartype: vartype.into(),
    }
}

fn role(name: &str, value: Option<&str>, vartype: &str) -> Result<String, String> {
    parse(&opt(name, value, vartype), OptionsOf::Role)
        .map(|o| o.sql)
        .map_err(|e| e.1)
}

fn db(name: &str, value: Option<&str>, vartype: &str) -> Result<String, String> {
    parse(&opt(name, value, vartype), OptionsOf::Database)
        .map(|o| o.sql)
        .map_err(|e| e.1)
}

#[test]
fn role_options_render_from_the_table() {
    let cases = [
        (("superuser", None, "bool"), "SUPERUSER"),
        (("NoLogin", None, "bool"), "NOLOGIN"),
        (
            ("CONNECTION LIMIT", Some("3"), "integer"),
            "CONNECTION LIMIT 3",
        ),
        (
            ("connection   limit 3", None, "integer"),
            "CONNECTION LIMIT 3",
        ),
        (
            ("CONNECTION LIMIT", Some("-1"), "integer"),
            "CONNECTION LIMIT -1",
        ),
        (
            ("VALID UNTIL", Some("2030-01-01 00:00:00+00"), "string"),
            "VALID UNTIL '2030-01-01 00:00:00+00'",
        ),
        (
            ("VALID UNTIL 'infinity'", None, "string"),
            "VALID UNTIL 'infinity'",
        ),
        (("IN ROLE pg_monitor", None, "string"), "IN ROLE pg_monitor"),
        (
            ("IN ROLE Pg_Monitor, \"Odd \"\"One\"", None, "string"),
            "IN ROLE pg_monitor, \"Odd \"\"One\"",
        ),
        (
            ("IN ROLE", Some("Mixed Case"), "string"),
            "IN ROLE \"Mixed Case\"",
        ),
        (("ROLE", Some("user"), "string"), "ROLE \"user\""),
    ];
    for ((name, value, vartype), expected) in cases {
        assert_eq!(
            role(name, value, vartype).as_deref(),
            Ok(expected),
            "{name:?}"
        );
    }
}

#[test]
fn injections_and_unknown_options_are_refused() {
    let refused = [
        ("CONNECTION LIMIT 3; CREATE ROLE x; --", None, "integer"),
        ("CONNECTION LIMIT", Some("3; CREATE ROLE x"), "integer"),
        ("SUPERUSER; CREATE ROLE x", None, "bool"),
        ("SUPERUSER", Some("true"), "bool"),
        ("SUPERUSERX", None, "bool"),
        ("CREATE ROLE x", None, "string"),
        ("PASSWORD", Some("plain"), "string"),
        ("ENCRYPTED PASSWORD 'x'", None, "string"),
        ("IN ROLE a; DROP ROLE b", None, "string"),
        ("IN ROLE \"unterminated", None, "string"),
        ("IN ROLE", Some(""), "string"),
        ("VALID UNTIL 'a' || 'b'", None, "string"),
        ("VALID UNTIL", None, "string"),
        ("CONNECTION LIMIT 3", Some("4"), "integer"),
        ("", None, "string"),
    ];
    for (name, value, vartype) in refused {
        assert!(
            role(name, value, vartype).is_err(),
            "{name:?} {value:?} accepted"
        );
    }
    for (name, value) in [
        ("OWNER", Some("x")),
        ("TEMPLATE template0; DROP DATABASE y", None),
        ("LC_COLLATE 'C') ; --", None),
        ("IS_TEMPLATE", Some("maybe")),
        ("OID", Some("1 2")),
        ("SUPERUSER", None),
    ] {
        assert!(db(name, value, "string").is_err(), "{name:?} accepted");
    }
}

#[test]
fn database_options_render_from_the_table() {
    let cases = [
        (("LC_COLLATE", Some("C"), "string"), "LC_COLLATE 'C'"),
        (
            ("TEMPLATE", Some("template0"), "enum"),
            "TEMPLATE template0",
        ),
        (
            ("TEMPLATE", Some("template0"), "string"),
            "TEMPLATE 'template0'",
        ),
        (
            ("template", Some("Odd'Name"), "enum"),
            "TEMPLATE 'Odd''Name'",
        ),
        (("TEMPLATE = template0", None, "enum"), "TEMPLATE template0"),
        (("ENCODING", Some("UTF8"), "string"), "ENCODING 'UTF8'"),
        (("ENCODING", Some("6"), "integer"), "ENCODING 6"),
        (
            ("ALLOW_CONNECTIONS", Some("off"), "bool"),
            "ALLOW_CONNECTIONS false",
        ),
        (("is_template", Some("TRUE"), "bool"), "IS_TEMPLATE true"),
        (
            ("CONNECTION LIMIT", Some("5"), "integer"),
            "CONNECTION LIMIT 5",
        ),
        (
            ("LOCALE_PROVIDER", Some("icu"), "enum"),
            "LOCALE_PROVIDER icu",
        ),
        (
            ("LOCALE", Some("en_US.UTF-8"), "enum"),
            "LOCALE 'en_US.UTF-8'",
        ),
        (("STRATEGY", Some("default"), "enum"), "STRATEGY 'default'"),
    ];
    for ((name, value, vartype), expected) in cases {
        assert_eq!(
            db(name, value, vartype).as_deref(),
            Ok(expected),
            "{name:?}"
        );
    }
}

#[test]
fn alter_leaves_out_create_only_options() {
    let options = [
        opt("IN ROLE pg_monitor", None, "string"),
        opt("CONNECTION LIMIT", Some("2"), "integer"),
        opt("NOSUPERUSER", None, "bool"),
    ];
    assert_eq!(
        render(Some(&options), OptionsOf::Role, false).unwrap(),
        " IN ROLE pg_monitor CONNECTION LIMIT 2 NOSUPERUSER"
    );
    assert_eq!(
        render(Some(&options), OptionsOf::Role, true).unwrap(),
        " CONNECTION LIMIT 2 NOSUPERUSER"
    );
    let bad = [opt("NOSUPERUSER", None, "bool"), opt("x", None, "bool")];
    let error = render(Some(&bad), OptionsOf::Role, false).unwrap_err();
    assert_eq!((error.index, error.part), (1, "name"));
}
