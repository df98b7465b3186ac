//! The fuzz targets' bodies as property tests on a stable compiler (the fallback of
//! `scripts/fuzz.sh` when nightly or cargo-fuzz is missing): for every target, each committed
//! seed under `corpus/<target>/` as it is, then mutations of the seeds (byte overwrites,
//! insertions, truncation) and random byte strings through proptest.
//!
//! `FUZZ_CASES` sets the number of generated cases per target (default 256).
#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::path::PathBuf;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("no seeds for {target} in {}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "{} holds no seeds", dir.display());
    paths
        .iter()
        .map(|path| std::fs::read(path).unwrap())
        .collect()
}

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(256)
}

/// A seed with edits: `(position, byte, kind)`; kind 0 overwrites, 1 inserts, 2 truncates.
fn mutate(seed: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for &(at, byte, kind) in edits {
        let at = if data.is_empty() {
            0
        } else {
            at % (data.len() + 1)
        };
        match kind % 3 {
            0 if at < data.len() => data[at] = byte,
            1 | 0 => data.insert(at, byte),
            _ => data.truncate(at),
        }
    }
    data
}

fn check(target: &str) {
    let (_, body) = compute_tools_fuzz::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap();
    let seeds = seeds(target);
    for seed in &seeds {
        body(seed);
    }
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = prop_oneof![
        (
            0..seeds.len(),
            proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8)
        )
            .prop_map(move |(index, edits)| mutate(&seeds[index], &edits)),
        proptest::collection::vec(any::<u8>(), 0..512),
    ];
    runner
        .run(&strategy, |data| {
            body(&data);
            Ok(())
        })
        .unwrap_or_else(|error| panic!("target {target}: {error}"));
}

#[test]
fn every_target_is_tested() {
    let names: Vec<&str> = compute_tools_fuzz::TARGETS
        .iter()
        .map(|(name, _)| *name)
        .collect();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz_targets");
    for name in &names {
        assert!(
            dir.join(format!("{name}.rs")).is_file(),
            "no fuzz target for {name}"
        );
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), names.len());
}

macro_rules! targets {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            check(stringify!($name));
        }
    )*};
}

targets!(spec, document, pgconf, tar, wire, http, vm_monitor, logs);
