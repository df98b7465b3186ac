//! The compute document (`compute_spec::ComputeDocument`), as every stage reads it on stdin.
//!
//! Invariants: no panic; a document that parses writes back to JSON that parses to the same
//! JSON (unknown fields included); its spec passes the spec target's invariants; the start's
//! rendering parameters derive from it.

use compute_spec::document::ComputeDocument;
use compute_spec::parse::decode;

/// The body.
pub fn run(data: &[u8]) {
    let text = crate::text(data);
    let Ok(document) = decode::<ComputeDocument>(&text) else {
        return;
    };
    let first = serde_json::to_string(&document).expect("a parsed document serialises");
    let again: ComputeDocument = match decode(&first) {
        Ok(again) => again,
        Err(error) => panic!("a written document does not parse again: {error}\n{first}"),
    };
    let second = serde_json::to_string(&again).expect("a parsed document serialises");
    assert_eq!(
        first, second,
        "a document changes in a write/read round trip"
    );
    let _ = document.bin_dir();
    let _ = document.sibling_binary("postgres");
    if let Ok(spec) = document.require_spec("fuzz") {
        crate::spec::check_spec(spec);
        let params = compute_spec::pgconf::params_for_start(&document, spec);
        let _ = compute_spec::pgconf::render(spec, &params);
    }
}
