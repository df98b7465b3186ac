//! `compute_ctl`: upstream's name for `compute-ctl`, same entry point.

fn main() -> std::process::ExitCode {
    compute_ctl::main_entry()
}
