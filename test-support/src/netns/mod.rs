//! Network namespaces for network-fault tests: a peer (a PostgreSQL primary, a fake
//! pageserver or safekeeper behind a [`Proxy`], a control-plane stand-in) lives in a namespace
//! of its own, joined to the test's namespace by a veth pair with a private `/30` of its own,
//! and nftables rules *inside that namespace* drop its packets on demand (never a rule in the
//! machine's own tables).
//!
//! * [`NetNs::create`] makes the namespace, the veth pair and the addresses (`10.100.0.0` to
//!   `10.199.255.255`, one `/30` per namespace, chosen from the process id and a counter and
//!   skipped when the machine already uses it), and an empty `inet netfault` table.
//!   Dropping the [`NetNs`] deletes the namespace (and with it its veth end, its rules and
//!   its addresses), also while a failing test unwinds. Namespaces are named
//!   `ctnf<pid>-<n>`; the first [`NetNs::create`] of a process deletes those whose process is
//!   gone (left by a killed test run).
//! * [`NetNs::run_inside`] runs a closure on a thread that entered the namespace: sockets it
//!   creates and processes it spawns belong to the namespace (so
//!   `ns.run_inside(|| TestPostgres::builder()…start())` runs a real Postgres there, still
//!   reachable by the test over its Unix socket).
//! * [`NetNs::drop_ports`], [`NetNs::drop_all`], [`NetNs::restore`]: packets dropped, not
//!   refused — a peer that vanished, as a client sees it.
//! * [`netns_or_skip`]: a namespace, or (not root, no `ip netns`, no `nft`) a loud skip line
//!   — and a test failure when `CI` is set.
//!
//! The kernel here has no `netem`, so slowness, stalls and cut or refused connections come from
//! [`Proxy`], a forwarding proxy whose listener sits in the namespace.

mod proxy;

use std::fs::File;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

pub use proxy::Proxy;

/// The prefix of every namespace this module makes.
const PREFIX: &str = "ctnf";
/// The nftables table (family `inet`) made in every namespace.
const TABLE: &str = "netfault";
/// First byte pattern of the address range: `10.100.0.0` … `10.199.255.255`.
const FIRST_SECOND_OCTET: u32 = 100;
/// How many `/30` subnets the range holds (100 × 256 × 64).
const SUBNETS: u32 = 100 * 256 * 64;

/// A network namespace joined to the test's namespace by a veth pair; deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    host_if: String,
    host: Ipv4Addr,
    peer: Ipv4Addr,
}

/// A namespace for the test `test`, or `None` after a loud skip line when this machine cannot
/// make one (not root, no `ip netns`, no `nft`).
///
/// # Panics
///
/// Panics instead of skipping when the `CI` environment variable is set: on CI a skipped
/// network-fault test is a failure.
pub fn netns_or_skip(test: &str) -> Option<NetNs> {
    match NetNs::create() {
        Ok(ns) => Some(ns),
        Err(why) => {
            crate::skip_or_fail(
                &format!("network-fault test {test}"),
                &format!(
                    "{why}. These tests need root, iproute2 (`ip netns`) and nftables (`nft`): \
                     run scripts/install-deps.sh and run the tests as root"
                ),
            );
            None
        }
    }
}

impl NetNs {
    /// Makes a namespace with a veth pair to this one, a private `/30`, the loopback up and an
    /// empty `inet netfault` table; the reason when that is not possible here.
    pub fn create() -> Result<NetNs, String> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        static SWEEP: Once = Once::new();
        if !nix::unistd::geteuid().is_root() {
            return Err("the test does not run as root".to_string());
        }
        SWEEP.call_once(|| {
            sweep_stale();
        });
        let pid = std::process::id();
        let used = run("ip", &["-4", "-o", "addr", "show"], None)?;
        let (n, host, peer) = loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let (host, peer) = subnet(pid, n);
            let taken = |address: Ipv4Addr| used.contains(&format!(" {address}/"));
            if !taken(host) && !taken(peer) {
                break (n, host, peer);
            }
        };
        let name = format!("{PREFIX}{pid}-{n}");
        let host_if = format!("nf{pid}h{n}");
        let peer_if = format!("nf{pid}p{n}");
        run("ip", &["netns", "add", &name], None)?;
        // From here on the guard deletes the namespace, whatever fails next.
        let ns = NetNs {
            name,
            host_if,
            host,
            peer,
        };
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", ns.name.as_str()];
            all.extend_from_slice(args);
            run("ip", &all, None)
        };
        run(
            "ip",
            &[
                "link",
                "add",
                &ns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &peer_if,
                "netns",
                &ns.name,
            ],
            None,
        )?;
        run(
            "ip",
            &["addr", "add", &format!("{host}/30"), "dev", &ns.host_if],
            None,
        )?;
        run("ip", &["link", "set", &ns.host_if, "up"], None)?;
        inside(&["addr", "add", &format!("{peer}/30"), "dev", &peer_if])?;
        inside(&["link", "set", &peer_if, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        ns.nft(&format!(
            "add table inet {TABLE}\n\
             add chain inet {TABLE} input {{ type filter hook input priority 0; policy accept; }}\n\
             add chain inet {TABLE} output {{ type filter hook output priority 0; policy accept; }}\n"
        ))?;
        Ok(ns)
    }

    /// The namespace's name (`ctnf<pid>-<n>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of the test's end of the veth pair (`nf<pid>h<n>`).
    pub fn host_interface(&self) -> &str {
        &self.host_if
    }

    /// The test's end of the veth pair.
    pub fn host_addr(&self) -> Ipv4Addr {
        self.host
    }

    /// The namespace's end of the veth pair: where its peers listen.
    pub fn peer_addr(&self) -> Ipv4Addr {
        self.peer
    }

    /// Runs `work` on a thread inside the namespace and returns its result (a panic in it is
    /// this call's panic). Sockets made and processes spawned by `work` belong to the namespace.
    ///
    /// # Panics
    ///
    /// Panics when the namespace cannot be entered.
    pub fn run_inside<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
        std::thread::scope(|scope| {
            let thread = scope.spawn(|| {
                // SAFETY: `setns` reads only the descriptor, which `file` keeps open during the
                // call, and changes only the network namespace of this (new) thread.
                let entered =
                    unsafe { nix::libc::setns(file.as_raw_fd(), nix::libc::CLONE_NEWNET) };
                if entered != 0 {
                    panic!(
                        "cannot enter network namespace {}: {}",
                        self.name,
                        std::io::Error::last_os_error()
                    );
                }
                work()
            });
            match thread.join() {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// A listener inside the namespace on its veth address (`port` 0: any free port).
    ///
    /// # Panics
    ///
    /// Panics when it cannot be bound.
    pub fn listen(&self, port: u16) -> TcpListener {
        let address = SocketAddr::from((self.peer, port));
        self.run_inside(|| {
            TcpListener::bind(address).unwrap_or_else(|e| {
                panic!("cannot listen on {address} in namespace {}: {e}", self.name)
            })
        })
    }

    /// Drops (silently: no reset, no ICMP) every TCP packet to or from these ports of the
    /// namespace, replacing earlier rules.
    ///
    /// # Panics
    ///
    /// Panics when `nft` fails.
    pub fn drop_ports(&self, ports: &[u16]) {
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        let list = list.join(", ");
        self.set_rules(&[
            ("input", format!("tcp dport {{ {list} }}")),
            ("output", format!("tcp sport {{ {list} }}")),
        ]);
    }

    /// Drops every packet between the namespace and the test's side of the veth pair, both
    /// directions, replacing earlier rules: the peer vanished.
    ///
    /// # Panics
    ///
    /// Panics when `nft` fails.
    pub fn drop_all(&self) {
        self.set_rules(&[
            ("input", format!("ip saddr {}", self.host)),
            ("output", format!("ip daddr {}", self.host)),
        ]);
    }

    /// Removes every drop rule: the link is back.
    ///
    /// # Panics
    ///
    /// Panics when `nft` fails.
    pub fn restore(&self) {
        self.set_rules(&[]);
    }

    /// How many packets the current rules dropped (from `nft`'s counters).
    ///
    /// # Panics
    ///
    /// Panics when `nft` fails.
    pub fn dropped_packets(&self) -> u64 {
        let listing = run(
            "ip",
            &[
                "netns",
                "exec",
                &self.name,
                &tool("nft"),
                "list",
                "table",
                "inet",
                TABLE,
            ],
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        listing
            .split("packets ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// Replaces the drop rules: each `(chain, match)` drops (and counts) what it matches.
    fn set_rules(&self, rules: &[(&str, String)]) {
        let mut script =
            format!("flush chain inet {TABLE} input\nflush chain inet {TABLE} output\n");
        for (chain, matches) in rules {
            script.push_str(&format!(
                "add rule inet {TABLE} {chain} {matches} counter drop\n"
            ));
        }
        self.nft(&script).unwrap_or_else(|e| panic!("{e}"));
    }

    fn nft(&self, script: &str) -> Result<String, String> {
        run(
            "ip",
            &["netns", "exec", &self.name, &tool("nft"), "-f", "-"],
            Some(script),
        )
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth pair and so the pair; the host
        // end is deleted too in case the namespace lives on (a process still in it).
        let _ = run("ip", &["netns", "del", &self.name], None);
        let _ = run("ip", &["link", "del", &self.host_if], None);
    }
}

/// The host and peer addresses of subnet `n` of process `pid`.
fn subnet(pid: u32, n: u32) -> (Ipv4Addr, Ipv4Addr) {
    let index = pid.wrapping_mul(64).wrapping_add(n) % SUBNETS;
    let second = FIRST_SECOND_OCTET + index / (256 * 64);
    let third = (index / 64) % 256;
    let fourth = (index % 64) * 4;
    let octets = |last: u32| {
        Ipv4Addr::new(
            10,
            u8::try_from(second).unwrap_or(u8::MAX),
            u8::try_from(third).unwrap_or(0),
            u8::try_from(last).unwrap_or(0),
        )
    };
    (octets(fourth + 1), octets(fourth + 2))
}

/// Deletes the namespaces of this module (`ctnf<pid>-<n>`) whose process is gone, as the
/// first [`NetNs::create`] of a process does; their names.
pub fn sweep_stale() -> Vec<String> {
    let mut deleted = Vec::new();
    let Ok(list) = run("ip", &["netns", "list"], None) else {
        return deleted;
    };
    for name in list
        .lines()
        .filter_map(|line| line.split_whitespace().next())
    {
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        if !crate::probe::process_alive(pid) {
            eprintln!("pg-test-support: deleting stale network namespace {name}");
            if run("ip", &["netns", "del", name], None).is_ok() {
                deleted.push(name.to_string());
            }
        }
    }
    deleted
}

/// `ip` or `nft`: from `PATH`, else from `/usr/sbin` or `/sbin` (where Debian puts them, and
/// which a non-login `PATH` may lack).
fn tool(name: &str) -> String {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()));
    if on_path {
        return name.to_string();
    }
    ["/usr/sbin", "/sbin"]
        .iter()
        .map(|dir| format!("{dir}/{name}"))
        .find(|path| std::path::Path::new(path).is_file())
        .unwrap_or_else(|| name.to_string())
}

/// Runs `program` (found by [`tool`]) with `input` on stdin; its stdout, or an error naming
/// the command and quoting its stderr.
fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, String> {
    let command_line = format!("{program} {}", args.join(" "));
    let mut child = Command::new(tool(program))
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{command_line}`: {e}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("cannot write to `{command_line}`: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("cannot wait for `{command_line}`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{command_line}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_private_distinct_and_in_range() {
        let (host, peer) = subnet(4_194_303, 63);
        assert_eq!(host.octets()[0], 10);
        assert!((100..200).contains(&host.octets()[1]));
        assert_eq!(u32::from(peer), u32::from(host) + 1);
        let a = subnet(1234, 0);
        let b = subnet(1234, 1);
        let c = subnet(1235, 0);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(b, c);
        // /30 aligned: host .1, peer .2 of a block of four.
        assert_eq!(host.octets()[3] % 4, 1);
    }
}
