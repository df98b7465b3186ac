//! The workspace's binaries for tests that run other packages' programs.
//!
//! `CARGO_BIN_EXE_<name>` only names the binaries of a test's own package. For the others,
//! [`workspace_binary`] asks cargo itself, through the `escargot` crate, instead of guessing
//! `target/<profile>/` paths or running a hand-made nested `cargo build`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use escargot::format::Message;

/// The workspace's binaries, by name, as cargo built them for this run (see [`workspace_binary`]).
fn binaries() -> &'static HashMap<String, PathBuf> {
    static BINARIES: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let failed = |what: &dyn std::fmt::Display| -> ! {
            panic!(
                "cannot build or find the workspace's binaries ({what}); \
                 run `cargo build --workspace --bins` and look at its errors"
            )
        };
        let messages = escargot::CargoBuild::new()
            .manifest_path(&manifest)
            .args(["--workspace", "--bins", "--quiet"])
            .current_release()
            .exec()
            .unwrap_or_else(|e| failed(&e));
        let mut found = HashMap::new();
        for message in messages {
            let message = message.unwrap_or_else(|e| failed(&e));
            if let Ok(Message::CompilerArtifact(artifact)) = message.decode() {
                if let Some(path) = artifact.executable {
                    found.insert(artifact.target.name.to_string(), path.into_owned());
                }
            }
        }
        found
    })
}

/// The path of one of the workspace's binaries, built by cargo if it was not (or is stale).
///
/// The tests run the binaries as a user would, so they need the real executables of other
/// packages, which `CARGO_BIN_EXE_*` only gives for a test's own package. The first call asks
/// cargo (through `escargot`, the same `cargo` and profile as this test run) to build
/// `--workspace --bins` and reads the executables' paths from its JSON messages: under
/// `cargo test --workspace` everything is already built and this is a no-op check; under
/// `cargo test -p compute-tools-tests` it builds what is missing or stale. Nothing guesses
/// `target/<profile>` paths.
///
/// # Panics
///
/// Panics naming the command to run when the build fails or `name` is no binary of the
/// workspace.
pub fn workspace_binary(name: &str) -> PathBuf {
    match binaries().get(name) {
        Some(path) if path.is_file() => path.clone(),
        Some(path) => panic!(
            "cargo reported {} for `{name}` but it is not there; run `cargo build --workspace --bins`",
            path.display()
        ),
        None => {
            let mut known: Vec<&str> = binaries().keys().map(String::as_str).collect();
            known.sort_unstable();
            panic!("`{name}` is not a binary of the workspace (it has: {known:?})")
        }
    }
}
