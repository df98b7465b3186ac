//! `compute-ctl`: the compute node entrypoint (see the library docs).

fn main() -> std::process::ExitCode {
    compute_ctl::main_entry()
}
