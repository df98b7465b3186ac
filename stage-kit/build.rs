//! Records the git commit the binaries are built from, for `--version`. The environment
//! variable `COMPUTE_TOOLS_GIT_HASH` overrides it (e.g. in a container build without `.git`).

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=COMPUTE_TOOLS_GIT_HASH");
    let git_dir = Path::new("../.git");
    for watched in ["HEAD", "refs/heads", "packed-refs"] {
        let path = git_dir.join(watched);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let hash = std::env::var("COMPUTE_TOOLS_GIT_HASH").ok().or_else(|| {
        let output = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        let hash = String::from_utf8(output.stdout).ok()?;
        (output.status.success() && !hash.trim().is_empty()).then(|| hash.trim().to_string())
    });
    let hash = hash.unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=COMPUTE_TOOLS_GIT_HASH={hash}");
}
