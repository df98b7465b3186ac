//! compute-sidecars: the programs beside Postgres that a compute configures, starts or stops —
//! what compute-ctl does to them, as a library it calls from its controller (and the
//! `compute-sidecars` binary, which renders their files from a compute document by hand).
//!
//! * [`pgbouncer`]: `pgbouncer_settings` into pgbouncer's INI file, `RELOAD`, SIGKILL on
//!   termination.
//! * [`local_proxy`]: `local_proxy_config` into local_proxy's JSON file, SIGHUP/SIGTERM to a
//!   pid file that is `flock`-held.
//! * [`audit`]: the compliance audit and log export rsyslog files, rsyslog restarts, and the
//!   audit log directory's upkeep ([`audit::cleanup`]).
//! * [`vm_tools`]: the NeonVM swap and disk-quota tools run before Postgres starts.
//! * [`vm_monitor`]: the `vm-monitor` child of an autoscaling compute.
//! * [`render`]: every file above as one typed, serialisable result (the binary's output).
//! * [`flags`]: their command-line flags as compute-ctl takes them, and the parameters.
//!
//! Input is a [`compute_spec::ComputeDocument`] or its spec plus typed parameters (paths,
//! flags); errors are typed per sidecar, each naming what failed. Where a sidecar needs the
//! compute's state (the audit upkeep: its size metric, whether the compute stopped) it takes
//! a small trait its caller implements ([`audit::cleanup::UpkeepHost`]). Every program is
//! started through `stage_kit::child` (a deadline and capped output for the tools, a
//! long-lived child for vm-monitor), without compute-ctl's systemd notification socket.
//!
//! Depends on `compute-spec` and `stage-kit` only in the workspace; no HTTP.

pub mod audit;
pub mod flags;
pub mod local_proxy;
pub mod pgbouncer;
pub mod render;
pub mod vm_monitor;
pub mod vm_tools;
