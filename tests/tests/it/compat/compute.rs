//! The compute under test and the replay: start compute-ctl, replay the rows in order, report every mismatch.

use super::*;

// The compute and the replay

pub struct Outcome {
    pub row: usize,
    pub route: String,
    pub case: &'static str,
    pub expected: String,
    pub got: String,
    pub problems: Vec<String>,
    pub note: Option<&'static str>,
}

/// A compute-ctl with its key set, ports and temp dir (all removed on drop, even when the
/// test fails: the child and its postmaster are killed first, then the directory goes).
pub struct Compute {
    pub child: PostgresChild,
    pub keys: Keys,
    pub external: u16,
    pub internal: u16,
    pub spec: Value,
    pub _dir: TestDir,
}

impl Compute {
    /// Starts compute-ctl on the sample spec (initdb source) with `tune` applied to it, an
    /// Ed25519 key set and `-i compute-1`.
    /// `listen`: `--http-listen` (none: compute-ctl's default for a keyed API).
    pub fn start(prefix: &str, listen: Option<&str>, tune: impl FnOnce(&mut Value)) -> Compute {
        let dir = TestDir::new(prefix);
        let spec_path = write_sample_spec(dir.path(), free_tcp_port());
        let mut spec: Value =
            serde_json::from_str(&std::fs::read_to_string(&spec_path).expect("spec.json"))
                .expect("spec.json is JSON");
        spec["tenant_id"] = json!(TENANT);
        spec["timeline_id"] = json!(TIMELINE);
        tune(&mut spec);
        let keys = Keys::new();
        let config = json!({"spec": spec, "compute_ctl_config": {"jwks": {"keys": [keys.jwk()]}}});
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, config.to_string()).expect("writing config.json");
        let pgdata = dir.path().join("pgdata");
        let (external, internal) = (free_tcp_port(), free_tcp_port());
        let mut command = Command::new(binary("compute-ctl"));
        if let Some(listen) = listen {
            command.args(["--http-listen", listen]);
        }
        let child = command
            .arg("-c")
            .arg(&config_path)
            .args(["-i", COMPUTE_ID])
            .arg("-b")
            .arg(pg_test_support::pg_bin("postgres"))
            .arg("-D")
            .arg(&pgdata)
            .args(["--external-http-port", &external.to_string()])
            .args(["--internal-http-port", &internal.to_string()])
            .args(["--terminated-grace", "3s"])
            .args(["--failed-grace", "120s"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawning compute-ctl");
        Compute {
            child: PostgresChild::new(child, &pgdata),
            keys,
            external,
            internal,
            spec,
            _dir: dir,
        }
    }

    /// Polls `/status` (our token) until it says `wanted`; `failed` ends the wait early.
    pub fn wait_for_status(&self, wanted: &str, timeout: Duration) -> Result<(), String> {
        let authorization = self.keys.authorization(Tok::Ours).expect("a token");
        let headers = [("Authorization".to_string(), authorization)];
        pg_test_support::probe::wait_for_status(timeout, wanted, || {
            send(self.external, "GET", "/status", &headers, b"")
                .and_then(|reply| reply.json())
                .ok()
        })
        .map(|_| ())
        .map_err(|last| format!("status never became {wanted}; last: {last}"))
    }

    pub fn run_row(&self, row: &Row) -> (String, Vec<String>) {
        let (host, port) = match row.server {
            Srv::Ext => ("127.0.0.1", self.external),
            Srv::Int => ("127.0.0.1", self.internal),
            Srv::ExtV6 => ("::1", self.external),
        };
        let mut headers = row.headers.clone();
        if let Some(value) = self.keys.authorization(row.tok) {
            headers.push(("Authorization".to_string(), value));
        }
        let reply = match send_to(host, port, row.method, &row.target, &headers, &row.body) {
            Ok(reply) => reply,
            Err(error) => return (format!("no answer: {error}"), vec![error]),
        };
        let mut problems = Vec::new();
        if reply.status != row.status {
            problems.push(format!("status {}", reply.status));
        }
        for check in &row.checks {
            if let Err(problem) = check.verify(&reply) {
                problems.push(format!("{}: {problem}", check.describe()));
            }
        }
        (reply.summary(), problems)
    }

    /// Replays every row in order (a mismatch does not stop the replay), then checks that
    /// the process exits with `code` once the linger after `/terminate` has passed.
    pub fn replay(&mut self, rows: &[Row], code: i32) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            let (got, mut problems) = self.run_row(row);
            if let Some(Then::WaitStatus(wanted)) = row.then {
                if let Err(error) = self.wait_for_status(wanted, Duration::from_secs(60)) {
                    problems.push(error);
                }
            }
            let server = match row.server {
                Srv::Ext => "ext",
                Srv::Int => "int",
                Srv::ExtV6 => "ext6",
            };
            outcomes.push(Outcome {
                row: index + 1,
                route: format!("{server} {} {}", row.method, row.target),
                case: row.case,
                expected: row.expected(),
                got,
                problems,
                note: row.note,
            });
        }
        let mut exit = None;
        let exited = wait_until(Duration::from_secs(30), || {
            exit = self.child.try_wait().ok().flatten();
            exit.is_some()
        });
        let got = exit.and_then(|status| status.code());
        outcomes.push(Outcome {
            row: rows.len() + 1,
            route: "process".to_string(),
            case: "exits after the linger",
            expected: format!("exit {code}"),
            got: format!("{got:?}"),
            problems: match (exited, got) {
                (false, _) => vec!["still running 30 s after /terminate".to_string()],
                (true, got) if got == Some(code) => Vec::new(),
                (true, got) => vec![format!("exit code {got:?}")],
            },
            note: None,
        });
        outcomes
    }
}

/// Prints every row, then fails listing ALL mismatching rows.
pub fn report(outcomes: &[Outcome]) {
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.problems.is_empty()).collect();
    println!("{}", render(&outcomes.iter().collect::<Vec<_>>()));
    if !failed.is_empty() {
        panic!(
            "{} of {} rows do not match upstream:\n{}",
            failed.len(),
            outcomes.len(),
            render(&failed)
        );
    }
}

pub fn render(outcomes: &[&Outcome]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>3} | {:<50} | {:<38} | {:<40} | got",
        "#", "route", "case", "expected"
    );
    for outcome in outcomes {
        let verdict = match outcome.problems.is_empty() {
            true => "ok".to_string(),
            false => format!("MISMATCH: {}", outcome.problems.join("; ")),
        };
        let _ = writeln!(
            out,
            "{:>3} | {:<50} | {:<38} | {:<40} | {} [{verdict}]",
            outcome.row,
            short(&outcome.route),
            outcome.case,
            short(&outcome.expected),
            outcome.got,
        );
        if let Some(note) = outcome.note {
            let _ = writeln!(out, "    |   note: {note}");
        }
    }
    out
}
