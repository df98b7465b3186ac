//! `compute-ctl completions <shell>` and `compute-ctl man`: shell completions and the man
//! page, generated from the same clap definition the flags are parsed with. They are words
//! before any flag, so they cannot clash with compute_ctl's flag-only command line.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

const USAGE: &str =
    "usage: compute-ctl completions bash|zsh|fish|elvish|powershell, or compute-ctl man";

/// When the first argument is `completions` or `man`, writes that output and returns the exit
/// code; otherwise `None` (run the compute).
/// Arguments need not be UTF-8: one that is not is never either word (and a shell name that is
/// not is a usage error).
pub fn from_args(args: &[OsString]) -> Option<ExitCode> {
    let invoked = args.first().and_then(|path| Path::new(path).file_name());
    let program = match invoked.and_then(OsStr::to_str) {
        Some("compute_ctl") => "compute_ctl",
        _ => "compute-ctl",
    };
    match args.get(1).and_then(|word| word.to_str()) {
        Some("completions") => Some(completions(program, args.get(2).map(OsString::as_os_str))),
        Some("man") => Some(man(program)),
        _ => None,
    }
}

fn completions(program: &'static str, shell: Option<&OsStr>) -> ExitCode {
    let shell = shell.and_then(OsStr::to_str);
    let Some(shell) = shell.and_then(|name| name.parse::<Shell>().ok()) else {
        eprintln!("{USAGE}");
        return ExitCode::from(compute_spec::exit_code::USAGE);
    };
    let mut command = Cli::command().name(program);
    clap_complete::generate(
        shell,
        &mut command,
        program.to_string(),
        &mut std::io::stdout(),
    );
    ExitCode::from(compute_spec::exit_code::OK)
}

fn man(program: &'static str) -> ExitCode {
    let command = Cli::command().name(program);
    let mut page = Vec::new();
    let rendered = clap_mangen::Man::new(command).render(&mut page);
    let written = rendered.and_then(|()| std::io::stdout().write_all(&page));
    match written {
        Ok(()) => ExitCode::from(compute_spec::exit_code::OK),
        Err(error) => {
            eprintln!("writing the man page: {error}");
            ExitCode::from(compute_spec::exit_code::RUNTIME)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn only_the_two_words_are_taken() {
        assert!(from_args(&args(&["compute-ctl", "-D", "x"])).is_none());
        assert!(from_args(&args(&["compute-ctl"])).is_none());
        assert_eq!(
            from_args(&args(&["compute-ctl", "completions", "nosuchshell"])),
            Some(ExitCode::from(compute_spec::exit_code::USAGE))
        );
    }

    #[test]
    fn non_utf8_arguments_are_not_a_panic() {
        use std::os::unix::ffi::OsStrExt;
        let bad = OsStr::from_bytes(b"\xff\xfe").to_os_string();
        let program = OsString::from("/usr/bin/compute-ctl");
        assert!(from_args(&[program.clone(), bad.clone()]).is_none());
        assert!(from_args(&[bad.clone(), OsString::from("-D")]).is_none());
        assert_eq!(
            from_args(&[program, OsString::from("completions"), bad]),
            Some(ExitCode::from(compute_spec::exit_code::USAGE))
        );
    }
}
