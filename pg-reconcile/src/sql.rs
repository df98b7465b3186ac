//! Rendering of spec objects into SQL fragments, all quoting through `compute_spec::quote`.

use compute_spec::quote::{Ident, Literal};
use compute_spec::secret::REDACTED;
use compute_spec::spec::{GenericOption, Role};

/// `name 'value'` for vartype string, `name value` otherwise, bare `name` when null; each
/// option preceded by a space (upstream's rendering).
pub fn options(options: Option<&[GenericOption]>) -> String {
    let mut out = String::new();
    for option in options.unwrap_or_default() {
        out.push(' ');
        out.push_str(&option.name);
        match &option.value {
            Some(value) if option.vartype == "string" => {
                out.push(' ');
                out.push_str(&Literal(value).to_string());
            }
            Some(value) => {
                out.push(' ');
                out.push_str(value);
            }
            None => {}
        }
    }
    out
}

/// The password as it is sent: SCRAM verifiers verbatim, md5 digests with the `md5` prefix.
pub fn password_value(role: &Role) -> Option<String> {
    let hash = role.encrypted_password.as_ref()?.expose();
    if hash.starts_with("SCRAM-SHA-256") || hash.starts_with("md5") {
        Some(hash.to_string())
    } else {
        Some(format!("md5{hash}"))
    }
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
    stored == password_value(role).as_deref()
}

/// `"name"`, for building statements.
pub fn ident(name: &str) -> String {
    Ident(name).to_string()
}
