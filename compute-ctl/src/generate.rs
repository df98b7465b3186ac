//! `compute-ctl completions <shell>` and `compute-ctl man`: shell completions and the man
//! page, generated from the same clap definition the flags are parsed with. They are words
//! before any flag, so they cannot clash with compute_ctl's flag-only command line.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

const USAGE: &str =
    "usage: compute-ctl completions bash|zsh|fish|elvish|powershell, or compute-ctl man";

/// When the first argument is `completions` or `man`, writes that output and returns the exit
/// code; otherwise `None` (run the compute).
pub fn from_args(args: &[String]) -> Option<ExitCode> {
    let invoked = args.first().and_then(|path| path.rsplit('/').next());
    let program = match invoked {
        Some("compute_ctl") => "compute_ctl",
        _ => "compute-ctl",
    };
    match args.get(1).map(String::as_str) {
        Some("completions") => Some(completions(program, args.get(2).map(String::as_str))),
        Some("man") => Some(man(program)),
        _ => None,
    }
}

fn completions(program: &'static str, shell: Option<&str>) -> ExitCode {
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

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
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
}
