//! How many connections a run uses: the concurrency (`--concurrency`, upstream's start-up
//! rule from `max_connections`, or the spec's `reconfigure_concurrency`), bounded by what the
//! server allows ([`connection_limit`]): every fan-out of the run shares that one bound.

use compute_spec::spec::ComputeSpec;

use crate::snapshot::Snapshot;
use crate::Options;

/// `--concurrency`, else the spec's `reconfigure_concurrency` (on a live compute).
pub fn concurrency_on_reconfigure(spec: &ComputeSpec, options: &Options) -> usize {
    options
        .concurrency
        .unwrap_or(spec.reconfigure_concurrency)
        .max(1)
}

/// `--concurrency`, else upstream's start-up rule from `max_connections` (spec settings,
/// then `postgresql_conf`, then the running server).
pub fn concurrency_at_startup(
    spec: &ComputeSpec,
    options: &Options,
    server_max: Option<u32>,
) -> usize {
    if let Some(n) = options.concurrency {
        return n.max(1);
    }
    let from_conf = spec.cluster.postgresql_conf.as_deref().and_then(|text| {
        text.lines().rev().find_map(|line| {
            let (name, value) = line.split_once('=')?;
            (name.trim() == "max_connections")
                .then(|| value.trim().trim_matches('\'').parse().ok())?
        })
    });
    let max = spec
        .setting("max_connections")
        .and_then(|value| value.trim().parse().ok())
        .or(from_conf)
        .or(server_max);
    startup_concurrency(max)
}

/// The per-database concurrency at start-up, from `max_connections` (upstream's rule):
/// below 10 as is, 10–29 → 10, 30–299 → a third, 300 and more → 100, unknown → 10.
pub fn startup_concurrency(max_connections: Option<u32>) -> usize {
    match max_connections {
        None => 10,
        Some(n @ 0..=9) => (n as usize).max(1),
        Some(10..=29) => 10,
        Some(n @ 30..=299) => n as usize / 3,
        Some(_) => 100,
    }
}

/// The most connections a run opens at once: `wanted` (the concurrency), but never more
/// than the server's `max_connections` less its reserved connections
/// (`superuser_reserved_connections`, `reserved_connections`) and a margin for other
/// clients (a tenth of `max_connections`, at least 2); at least 1.
pub fn connection_limit(wanted: usize, snapshot: &Snapshot) -> usize {
    let server = snapshot.max_connections.map(|max| {
        let margin = (max / 10).max(2);
        max.saturating_sub(snapshot.reserved_connections)
            .saturating_sub(margin) as usize
    });
    wanted.min(server.unwrap_or(wanted)).max(1)
}

/// How many `CREATE DATABASE`s run side by side: each copies its template through the WAL on
/// the server's CPUs, so more of them than the machine has cores only contend (`limit` still
/// bounds it). The compute's Postgres runs on this machine, so its cores are ours.
pub fn copy_lanes(limit: usize) -> usize {
    cores().min(limit).max(1)
}

/// How many databases are read side by side before planning: each read is a new session,
/// whose start (the server's fork, page faults and exit) is CPU work, with a round trip or
/// two of waiting: twice the machine's cores (`limit` still bounds it). More only contend:
/// 1,000 bare sessions took 2.5 s 4 at once and 3.3 s 2 at once here, on 2 cores.
pub fn read_lanes(limit: usize) -> usize {
    (2 * cores()).min(limit).max(1)
}

/// The cores this process may use (its cgroup's quota counted), at least 2.
fn cores() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_follows_upstream() {
        let cases = [
            (None, 10),
            (Some(0), 1),
            (Some(5), 5),
            (Some(10), 10),
            (Some(29), 10),
            (Some(30), 10),
            (Some(100), 33),
            (Some(299), 99),
            (Some(300), 100),
            (Some(5000), 100),
        ];
        for (max, expected) in cases {
            assert_eq!(startup_concurrency(max), expected, "{max:?}");
        }
    }

    #[test]
    fn the_server_bounds_the_concurrency() {
        let server = |max: Option<u32>, reserved: u32| Snapshot {
            max_connections: max,
            reserved_connections: reserved,
            ..Default::default()
        };
        // 20 - 3 reserved - a margin of 2.
        assert_eq!(connection_limit(200, &server(Some(20), 3)), 15);
        assert_eq!(connection_limit(10, &server(Some(20), 3)), 10);
        // 100 - 3 - a tenth.
        assert_eq!(connection_limit(100, &server(Some(100), 3)), 87);
        assert_eq!(connection_limit(7, &server(None, 0)), 7);
        assert_eq!(connection_limit(7, &server(Some(4), 3)), 1);
        assert_eq!(connection_limit(0, &server(Some(100), 3)), 1);
    }
}
