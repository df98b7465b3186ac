//! Command-line flags of the standalone `vm-monitor` binary. Logging is the workspace's
//! (`stage_kit::logging`), as in every other binary.

use std::net::SocketAddr;
use std::path::PathBuf;

pub use stage_kit::logging::LogFormat;

use crate::{MonitorConfig, DEFAULT_ADDR, DEFAULT_CGROUP_ROOT};

/// Flags of the `vm-monitor` binary.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "vm-monitor",
    version = stage_kit::VERSION,
    about = "Autoscaling vm-monitor for a Postgres compute"
)]
pub struct Args {
    /// cgroup (v2) whose memory is watched, relative to --cgroup-root.
    #[arg(short = 'c', long)]
    pub cgroup: Option<String>,
    /// Mount point of the cgroup v2 hierarchy.
    #[arg(long, default_value = DEFAULT_CGROUP_ROOT)]
    pub cgroup_root: PathBuf,
    /// Postgres connection string used to size the local file cache.
    #[arg(short = 'p', long)]
    pub pgconnstr: Option<String>,
    /// Websocket listen address (the agent connects to /monitor).
    #[arg(short = 'a', long, default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Args {
    /// The monitor configuration these flags describe.
    pub fn to_config(&self) -> MonitorConfig {
        MonitorConfig {
            addr: self.addr,
            cgroup: self.cgroup.clone(),
            cgroup_root: self.cgroup_root.clone(),
            pgconnstr: self.pgconnstr.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_and_flags() {
        let a = Args::try_parse_from(["vm-monitor"]).unwrap();
        assert_eq!(a.addr, "0.0.0.0:10301".parse().unwrap());
        assert_eq!(a.cgroup_root, PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(a.log_format, LogFormat::Text);
        assert!(a.cgroup.is_none() && a.pgconnstr.is_none());
        let a = Args::try_parse_from([
            "vm-monitor",
            "--cgroup",
            "neon-postgres",
            "--cgroup-root",
            "/tmp/cg",
            "--pgconnstr",
            "host=/tmp",
            "--addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .unwrap();
        let c = a.to_config();
        assert_eq!(c.cgroup.as_deref(), Some("neon-postgres"));
        assert_eq!(c.cgroup_root, PathBuf::from("/tmp/cg"));
        assert_eq!(c.pgconnstr.as_deref(), Some("host=/tmp"));
        assert_eq!(a.log_format, LogFormat::Json);
        assert!(Args::try_parse_from(["vm-monitor", "--addr", "nope"]).is_err());
        assert!(Args::try_parse_from(["vm-monitor", "--log-format", "xml"]).is_err());
    }
}
