//! What the unit tests share: specs, and a compute on a fixed spec.

use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;

use compute_spec::spec::ComputeSpec;
use serde_json::{json, Value};

use crate::cli::{FixedSpec, Outcome};

/// A minimal valid spec with `extra`'s fields.
pub fn spec(extra: Value) -> Value {
    let mut spec = json!({
        "format_version": 1.0,
        "suspend_timeout_seconds": 0,
        "cluster": {"roles": [], "databases": []},
    });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    spec
}

/// A compute on the spec with `extra`'s fields (none: no spec), and its attempts' outcomes.
pub fn fixed(extra: Option<Value>) -> (Arc<FixedSpec>, Receiver<Outcome>) {
    let spec: Option<ComputeSpec> = extra.map(|extra| serde_json::from_value(spec(extra)).unwrap());
    let (sender, outcomes) = mpsc::channel();
    (Arc::new(FixedSpec::new(spec, sender)), outcomes)
}
