//! Spec and envelope parsing + validation (`compute_spec::parse`, `ComputeSpec::validate`).
//!
//! Invariants: no panic; a spec that parses serialises to JSON that parses again to the same
//! JSON (what a stage writes, the next one reads); every validation error names a field; a
//! spec that validates renders `postgresql.conf` (validation refuses everything the renderer
//! would, first).

use compute_spec::parse::{parse_any, parse_bare, parse_envelope};
use compute_spec::pgconf::{render, ConfParams};
use compute_spec::spec::ComputeSpec;

/// Rendering parameters that are themselves valid, so a failure is the spec's.
pub fn params() -> ConfParams {
    ConfParams {
        port: 55432,
        socket_dir: "/tmp/fuzz-socket".into(),
        privileged_role_name: "neon_superuser".to_string(),
        extension_server_port: Some(3081),
        dynamic_shared_memory_mmap: false,
        extra_lines: Vec::new(),
        neon_library: false,
    }
}

/// The body.
pub fn run(data: &[u8]) {
    let text = crate::text(data);
    let _ = parse_bare(&text, "fuzz");
    let _ = parse_envelope(&text, "fuzz");
    let Ok(loaded) = parse_any(&text, "fuzz") else {
        return;
    };
    if let Some(spec) = loaded.spec {
        check_spec(&spec);
    }
}

/// The invariants of one parsed spec (shared with the document target).
pub fn check_spec(spec: &ComputeSpec) {
    let first = serde_json::to_string(spec).expect("a parsed spec serialises");
    let again = match parse_bare(&first, "round trip") {
        Ok(loaded) => loaded.spec.expect("a bare spec parses to Some"),
        Err(error) => panic!("a serialised spec does not parse again: {error}\n{first}"),
    };
    let second = serde_json::to_string(&again).expect("a parsed spec serialises");
    assert_eq!(first, second, "a spec changes in a write/read round trip");
    match spec.validate() {
        Ok(_source) => {
            if let Err(error) = render(spec, &params()) {
                panic!("a spec that validates does not render postgresql.conf: {error}\n{first}");
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a validation failure without errors");
            for error in &errors.0 {
                assert!(
                    !error.field.is_empty(),
                    "an error without a field: {errors}"
                );
                assert!(
                    !error.message.is_empty(),
                    "an error without a message: {errors}"
                );
            }
        }
    }
}
