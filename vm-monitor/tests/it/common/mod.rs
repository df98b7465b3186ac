//! Shared helpers: a fake autoscaler-agent and a fake cgroup directory.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};
use vm_monitor::{MonitorConfig, MonitorHandle};

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// Starts a monitor on 127.0.0.1:0 with the given cgroup set-up.
pub fn start(cgroup: Option<(&Path, &str)>, pgconnstr: Option<String>) -> MonitorHandle {
    let mut c = MonitorConfig::new("127.0.0.1:0".parse().unwrap());
    if let Some((root, name)) = cgroup {
        c.cgroup_root = root.to_path_buf();
        c.cgroup = Some(name.to_owned());
    }
    c.pgconnstr = pgconnstr;
    vm_monitor::start(c).expect("monitor starts")
}

/// A fake cgroup directory `<root>/<name>` with `memory.stat` and `memory.max`.
pub struct FakeCgroup {
    pub root: tempfile::TempDir,
    pub name: &'static str,
}

impl FakeCgroup {
    pub fn new(non_reclaimable: u64, memory_max: &str) -> Self {
        let root = tempfile::tempdir().unwrap();
        let cg = FakeCgroup {
            root,
            name: "neon-postgres",
        };
        std::fs::create_dir(cg.dir()).unwrap();
        std::fs::write(cg.dir().join("memory.max"), format!("{memory_max}\n")).unwrap();
        std::fs::write(cg.dir().join("memory.high"), "max\n").unwrap();
        cg.set_usage(non_reclaimable);
        cg
    }

    pub fn dir(&self) -> PathBuf {
        self.root.path().join(self.name)
    }

    /// Atomically rewrites memory.stat so that active+inactive anon = `bytes`.
    pub fn set_usage(&self, bytes: u64) {
        let active = bytes / 3;
        let inactive = bytes - active;
        let text = format!(
            "anon {bytes}\nfile 4096\nkernel 0\nactive_anon {active}\ninactive_anon {inactive}\nactive_file 999999999\ninactive_file 12\n"
        );
        let tmp = self.root.path().join("memory.stat.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir().join("memory.stat")).unwrap();
    }

    /// Sorted (name, content) of every file in the cgroup directory.
    pub fn snapshot(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = std::fs::read_dir(self.dir())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                let content = if name == "memory.stat" {
                    String::new()
                } else {
                    std::fs::read_to_string(e.path()).unwrap()
                };
                (name, content)
            })
            .collect();
        v.sort();
        v
    }
}

/// What the agent received.
#[derive(Debug)]
pub enum Received {
    Json(Value),
    Closed,
}

/// A fake autoscaler-agent.
pub struct Agent {
    pub ws: WebSocket<TcpStream>,
}

impl Agent {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let (ws, _) = tungstenite::client(format!("ws://{addr}/monitor"), stream)
            .unwrap_or_else(|e| panic!("websocket upgrade failed: {e}"));
        Agent { ws }
    }

    /// Connects and completes the v1 handshake.
    pub fn connect_v1(addr: SocketAddr) -> Self {
        let mut a = Self::connect(addr);
        a.send_text(r#"{"min":1,"max":1}"#);
        let reply = a.recv_json(Duration::from_secs(3));
        assert_eq!(reply, json!({"version": 1}));
        a
    }

    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).unwrap();
    }

    pub fn send(&mut self, kind: &str, content: Value, id: u64) {
        let v = json!({"type": kind, "content": content, "id": id});
        self.send_text(&v.to_string());
    }

    /// Next text message or close, `None` on timeout.
    pub fn recv(&mut self, timeout: Duration) -> Option<Received> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    let v = serde_json::from_str(t.as_str())
                        .unwrap_or_else(|e| panic!("monitor sent non-JSON {t:?}: {e}"));
                    return Some(Received::Json(v));
                }
                Ok(Message::Close(_)) => return Some(Received::Closed),
                Ok(other) => panic!("unexpected frame {other:?}"),
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Some(Received::Closed),
            }
        }
        None
    }

    pub fn recv_json(&mut self, timeout: Duration) -> Value {
        match self.recv(timeout) {
            Some(Received::Json(v)) => v,
            other => panic!("expected a JSON message, got {other:?}"),
        }
    }

    /// Next message that is not an `UpscaleRequest`.
    pub fn recv_reply(&mut self) -> Value {
        loop {
            let v = self.recv_json(Duration::from_secs(3));
            if v["type"] != "UpscaleRequest" {
                return v;
            }
        }
    }

    /// Waits for the connection to be closed by the monitor.
    pub fn expect_closed(&mut self, timeout: Duration) {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Some(Received::Closed) => return,
                Some(Received::Json(v)) if v["type"] == "UpscaleRequest" => {}
                other => panic!("expected close, got {other:?}"),
            }
        }
    }
}
