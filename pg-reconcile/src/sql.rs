//! Rendering of spec objects into SQL fragments, all quoting through `compute_spec::quote`.

use compute_spec::quote::{Ident, Literal};
use compute_spec::secret::REDACTED;
use compute_spec::spec::{GenericOption, Role};
use compute_spec::sqlopt::{self, OptionError, OptionsOf};

/// The options of a role or database, each preceded by a space, rendered from
/// `compute_spec::sqlopt`'s keyword table (never pasted): the keyword, then its typed
/// argument. With `for_alter`, only the options `ALTER ROLE` accepts.
pub fn options(
    options: Option<&[GenericOption]>,
    of: OptionsOf,
    for_alter: bool,
) -> Result<String, OptionError> {
    sqlopt::render(options, of, for_alter)
}

/// The password as it is sent: SCRAM verifiers verbatim, md5 digests with the `md5` prefix.
/// The md5 digest of the empty password is `None`: Postgres would clear it ("empty string
/// is not a valid password"), and comparing with it would alter the role on every run.
pub fn password_value(role: &Role) -> Option<String> {
    let value = spec_password(role)?;
    (value != empty_password_md5(&role.name)).then_some(value)
}

/// The spec's password with the `md5` prefix where it needs one.
fn spec_password(role: &Role) -> Option<String> {
    let hash = role.encrypted_password.as_ref()?.expose();
    if hash.starts_with("SCRAM-SHA-256") || hash.starts_with("md5") {
        Some(hash.to_string())
    } else {
        Some(format!("md5{hash}"))
    }
}

/// `md5` + md5(password + role name) for the empty password.
fn empty_password_md5(name: &str) -> String {
    use md5::Digest;
    use std::fmt::Write as _;
    let mut hex = String::with_capacity(35);
    hex.push_str("md5");
    for byte in md5::Md5::digest(name.as_bytes()).iter() {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// ` PASSWORD '…'` or ` PASSWORD NULL`, with the hash shown or redacted.
pub fn password_clause(role: &Role, redact: bool) -> String {
    match password_value(role) {
        None => " PASSWORD NULL".to_string(),
        Some(_) if redact => format!(" PASSWORD '{REDACTED}'"),
        Some(value) => format!(" PASSWORD {}", Literal(&value)),
    }
}

/// Whether the stored `pg_authid.rolpassword` already equals what the spec asks for.
pub fn password_matches(stored: Option<&str>, role: &Role) -> bool {
    let Some(hash) = role
        .encrypted_password
        .as_ref()
        .map(|secret| secret.expose())
    else {
        return stored.is_none();
    };
    match stored {
        Some(stored) if hash.starts_with("SCRAM-SHA-256") || hash.starts_with("md5") => {
            stored == hash
        }
        Some(stored) => stored.strip_prefix("md5") == Some(hash),
        None => password_value(role).is_none(),
    }
}

/// `"name"`, for building statements.
pub fn ident(name: &str) -> String {
    Ident(name).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_spec::secret::Secret;
    use compute_spec::spec::Database;

    fn fixture() -> compute_spec::ComputeSpec {
        let text = include_str!("../../../shared/fixtures/neon/compute_api-cluster_spec.json");
        serde_json::from_str(text).unwrap()
    }

    /// Upstream's `pg_helpers_tests`: the first database's and role's rendering.
    #[test]
    fn options_render_as_upstream() {
        let spec = fixture();
        let db: &Database = &spec.cluster.databases[0];
        let rendered = format!(
            "{} OWNER {}",
            options(db.options.as_deref(), OptionsOf::Database, false).unwrap(),
            ident(&db.owner)
        );
        assert_eq!(
            rendered,
            " LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0 OWNER \"alexk\""
        );
        let role = &spec.cluster.roles[0];
        let rendered = format!(
            "{} LOGIN{}",
            options(role.options.as_deref(), OptionsOf::Role, false).unwrap(),
            password_clause(role, false)
        );
        assert_eq!(
            rendered,
            " LOGIN PASSWORD 'md56b1d16b78004bbd51fa06af9eda75972'"
        );
        assert_eq!(password_clause(role, true), " PASSWORD '********'");
    }

    #[test]
    fn null_valued_options_render_bare() {
        let opts = [GenericOption {
            name: "IN ROLE pg_monitor".into(),
            value: None,
            vartype: "string".into(),
        }];
        assert_eq!(
            options(Some(&opts), OptionsOf::Role, false).unwrap(),
            " IN ROLE pg_monitor"
        );
        assert_eq!(options(None, OptionsOf::Role, false).unwrap(), "");
    }

    #[test]
    fn passwords_compare_with_the_md5_prefix() {
        let role = |hash: Option<&str>| Role {
            name: "r".into(),
            encrypted_password: hash.map(Secret::new),
            options: None,
            extra: Default::default(),
        };
        let md5 = "6b1d16b78004bbd51fa06af9eda75972";
        let scram = "SCRAM-SHA-256$4096:abc$def:ghi";
        assert!(password_matches(
            Some(&format!("md5{md5}")),
            &role(Some(md5))
        ));
        assert!(!password_matches(Some(md5), &role(Some(md5))));
        assert!(password_matches(Some(scram), &role(Some(scram))));
        assert!(!password_matches(
            Some(&format!("md5{md5}")),
            &role(Some(scram))
        ));
        assert!(password_matches(None, &role(None)));
        assert!(!password_matches(Some(scram), &role(None)));
        assert!(!password_matches(None, &role(Some(md5))));
        // The md5 of the empty password counts as none (Postgres clears it).
        let empty = Role {
            name: "role0".into(),
            encrypted_password: Some(Secret::new("7018e40b9d81af30a8b22e3cb93d9930")),
            options: None,
            extra: Default::default(),
        };
        assert_eq!(password_value(&empty), None);
        assert!(password_matches(None, &empty));
        // The hash is escaped like any literal.
        assert_eq!(
            password_clause(&role(Some("a'b\\")), false),
            " PASSWORD E'md5a''b\\\\'"
        );
    }
}
