//! The controller: the one thread that runs the stages in order, owns pg-supervise, and
//! moves the compute through its statuses. HTTP workers and the signal thread only change
//! the shared state and send it a [`Event::Wake`].

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Instant;

use compute_sidecars::vm_monitor::{self, VmMonitor};
use compute_spec::error::{ErrorKind, StageError};
use compute_spec::exit_code;
use compute_spec::ComputeDocument;
use nix::sys::signal::Signal;

use crate::cli::{log_format_name, Params};
use crate::lease::{LeaseKeeper, LeaseSettings};
use crate::stages::{self, name, ChildPid};
use crate::state::{ComputeStatus, Shared};
use crate::supervise::{Event, Supervisor};
use compute_trace::process as trace;
use pg_prewarm::Lfc;

mod http_start;
mod live;
mod reconfigure;
mod sidecars;
mod termination;
mod tls_watch;

/// The processes a signal may need to reach.
#[derive(Clone, Debug, Default)]
pub struct Children {
    /// The stage running right now.
    pub stage: ChildPid,
    /// pg-supervise.
    pub supervise: ChildPid,
}

/// How a controller run ended.
enum Outcome {
    /// Postgres stopped; exit with this code (`compute_spec::exit_code`: Postgres's code
    /// passed through, or a run-time failure).
    Exit(u8),
}

/// Builds a server's router: the route table's, which lives above the controller
/// ([`crate::routes::router`], handed in by [`crate::run`]).
pub type RouterFor = fn(&crate::api::Api, compute_http::Port) -> axum::Router;

/// Runs the compute until Postgres stops; returns the process exit code.
pub struct Controller {
    params: Params,
    shared: Arc<Shared>,
    events: Receiver<Event>,
    sender: Sender<Event>,
    children: Children,
    supervisor: Option<Supervisor>,
    /// The shutdown signal already sent to pg-supervise (each is sent once: a second one
    /// escalates).
    signalled: Option<Signal>,
    /// pg-supervise was started: Postgres ran (or tried to), so a final sync follows its exit.
    postgres_started: bool,
    /// pgbouncer and local_proxy were stopped for the termination (once).
    helpers_stopped: bool,
    http_started: bool,
    /// The HTTP API could not bind: a failed start exits at once (no grace to read an error
    /// nobody can reach).
    http_unbound: bool,
    vm_monitor: Option<VmMonitor>,
    /// LFC prewarm/offload, shared with the HTTP API.
    lfc: Arc<Lfc>,
    /// Installed-extension statistics, shared with the HTTP API and the event reader.
    ext_stats: crate::ext_stats::Stats,
    /// The LSN lease thread of a Static compute, while its Postgres runs.
    lease: Option<LeaseKeeper>,
    /// The HTTP servers' routers.
    router: RouterFor,
}

impl Controller {
    /// A controller over `shared`, fed by `events`, serving HTTP with `router`'s routers.
    pub fn new(
        params: Params,
        shared: Arc<Shared>,
        events: (Sender<Event>, Receiver<Event>),
        (children, router): (Children, RouterFor),
    ) -> Controller {
        Controller {
            params,
            shared,
            sender: events.0,
            events: events.1,
            children,
            supervisor: None,
            signalled: None,
            postgres_started: false,
            helpers_stopped: false,
            http_started: false,
            http_unbound: false,
            vm_monitor: None,
            lfc: Arc::default(),
            ext_stats: Arc::default(),
            lease: None,
            router,
        }
    }

    /// Runs the compute; returns the exit code.
    pub fn run(mut self) -> u8 {
        let Outcome::Exit(code) = match self.start() {
            Ok(outcome) => outcome,
            Err(error) => self.fail(error),
        };
        if let Some(monitor) = self.vm_monitor.take() {
            monitor.stop();
        }
        self.stop_lease();
        code
    }

    fn start(&mut self) -> Result<Outcome, StageError> {
        // Status stays `empty` while the spec loads (as upstream); a control plane that has
        // no spec yet leaves it there.
        let document = if self.params.has_spec_source {
            trace::begin_start(trace::startup_parent(), self.shared.lock().started);
            let args = self.params.spec_args.clone();
            self.run_stage(name::COMPUTE_SPEC, &args, b"")?
        } else {
            let args = self.params.document_args.clone();
            let envelope = br#"{"spec": null, "compute_ctl_config": {}}"#;
            self.run_stage(name::COMPUTE_SPEC, &args, envelope)?
        };
        // A pooled compute warms its VM up before it serves (upstream: before the HTTP servers).
        if document.spec.is_none() && self.params.warm_up_memory {
            crate::warm::memory(&document);
        }
        // The key set and TLS paths are the start-time ones for the life of the process.
        self.shared
            .update(|inner| inner.compute_ctl_config = document.compute_ctl_config.clone());
        self.ensure_http()?;
        let document = match document.spec {
            Some(_) => {
                self.ensure_init()?;
                document
            }
            None => match self.wait_for_spec(document)? {
                Some(document) => document,
                None => return Ok(self.after_postgres(exit_code::OK)),
            },
        };
        self.start_compute(document)
    }

    fn ensure_init(&mut self) -> Result<(), StageError> {
        let status = self.shared.status();
        if status == ComputeStatus::Init {
            return Ok(());
        }
        if status.is_terminating() {
            return Err(terminating());
        }
        self.shared
            .transition(ComputeStatus::Init)
            .map_err(internal_state)
    }

    /// Status `empty`: serve HTTP and wait for `/configure` (or a termination).
    fn wait_for_spec(
        &mut self,
        document: ComputeDocument,
    ) -> Result<Option<ComputeDocument>, StageError> {
        crate::warm::prefetch_for_start(&document);
        self.shared.update(|inner| inner.document = Some(document));
        tracing::info!("no spec yet: waiting for POST /configure");
        let pending = loop {
            let mut inner = self
                .shared
                .wait_until(std::time::Duration::from_secs(3600), |inner| {
                    inner.status() != ComputeStatus::Empty
                });
            if inner.status().is_terminating() {
                return Ok(None);
            }
            if inner.status() == ComputeStatus::ConfigurationPending {
                if let Some(pending) = inner.pending.take() {
                    inner.metrics.wait_for_spec_ms = inner.started.elapsed().as_millis() as u64;
                    inner.start_time = std::time::SystemTime::now();
                    inner.started = Instant::now();
                    inner
                        .transition(ComputeStatus::Init)
                        .map_err(internal_state)?;
                    break pending;
                }
            }
        };
        self.shared.update(|_| ());
        let parent = trace::take_hand_off().or_else(trace::startup_parent);
        trace::begin_start(parent, self.shared.lock().started);
        let compute_ctl_config = self.shared.lock().compute_ctl_config.clone();
        let envelope = serde_json::json!({
            "spec": pending.spec,
            "compute_ctl_config": compute_ctl_config,
        });
        let args = self.params.document_args.clone();
        let document =
            self.run_stage(name::COMPUTE_SPEC, &args, envelope.to_string().as_bytes())?;
        Ok(Some(document))
    }

    /// Status `init`: the stages, Postgres, the first reconcile.
    fn start_compute(&mut self, mut document: ComputeDocument) -> Result<Outcome, StageError> {
        // Postgres asks the internal server for missing extension files (always written, as
        // upstream).
        document.instance.extension_server_port = self.params.internal_port;
        self.store(&document);
        // Leases first (upstream's order): the basebackup reads at a Static compute's LSN.
        self.lease = LeaseKeeper::start(self.shared.clone(), LeaseSettings::default());
        if let Some(spec) = document.spec.as_ref() {
            compute_sidecars::vm_tools::before_start(&self.params.sidecars.vm_tools, spec)
                .map_err(|error| sidecars::sidecar_error(ErrorKind::Child, error))?;
        }
        let audit = sidecars::audit_plan(&self.params.sidecars.audit, &document)?;
        let log_args = self.log_args();
        let document = self.run_document_stage(name::SYNC_SAFEKEEPERS, &log_args, &document)?;
        let document = self.run_document_stage(name::BASEBACKUP_FETCH, &log_args, &document)?;
        let document = self.fetch_extensions(&log_args, document)?;
        self.check_not_terminating()?;
        sidecars::audit_install(&self.params.sidecars.audit, &audit, &document)?;
        let bytes = stages::document_bytes(&document)?;
        let mut supervising = trace::span(name::SUPERVISE);
        self.supervisor = Some(Supervisor::start(
            &log_args,
            &bytes,
            self.shared.clone(),
            self.sender.clone(),
            (
                self.children.supervise.clone(),
                crate::ext_stats::own_activity(&self.ext_stats),
            ),
        )?);
        self.postgres_started = true;
        let ready_at = loop {
            match self.next_event() {
                Event::Ready { start_postgres_ms } => {
                    self.shared
                        .update(|inner| inner.metrics.start_postgres_ms = start_postgres_ms);
                    supervising.set("start_postgres_ms", start_postgres_ms);
                    trace::finish(supervising);
                    break Instant::now();
                }
                Event::Exited { code, signal } => {
                    self.reap_supervisor();
                    return Err(StageError::new(
                        name::SUPERVISE,
                        ErrorKind::Postgres,
                        format!(
                            "postgres exited before it was ready ({}); see its log above",
                            describe_exit(code, signal)
                        ),
                    ));
                }
                Event::SupervisorGone { error } => {
                    self.reap_supervisor();
                    return Err(error.unwrap_or_else(supervisor_gone));
                }
                Event::Wake => self.check_not_terminating()?,
            }
        };
        let document = self.reconcile_at_start(document)?;
        compute_sidecars::local_proxy::configure(&self.params.sidecars.local_proxy, &document)
            .map_err(|error| sidecars::sidecar_error(ErrorKind::Io, error))?;
        let done = Instant::now();
        self.shared
            .update(|inner| {
                inner.metrics.config_ms = ready_at.elapsed().as_millis() as u64;
                inner.metrics.total_startup_ms = (done - inner.started).as_millis() as u64;
                inner.transition(ComputeStatus::Running)
            })
            .map_err(|_| terminating())?;
        trace::end_start(done, None);
        let metrics = self.shared.lock().metrics.clone();
        tracing::info!(?metrics, "compute start finished");
        crate::migrations::spawn(&document, &self.shared, self.log_args());
        // Upstream's post-apply `ALTER EXTENSION neon UPDATE`: every primary start.
        pg_catalog::neon_update::spawn(&document);
        let interval = self
            .params
            .deferred
            .installed_extensions_collection_interval;
        crate::ext_stats::spawn(&self.shared, &self.ext_stats, &document, interval);
        let upkeep = self.params.sidecars.audit.cleanup_interval;
        compute_sidecars::audit::cleanup::spawn(&self.shared, &document.pgdata, upkeep);
        self.start_lfc_tasks(&document);
        self.start_tls_watch();
        compute_sidecars::pgbouncer::apply_in_background(
            &self.params.sidecars.pgbouncer,
            &document,
        );
        if vm_monitor::requested() {
            let file_cache_connstr = vm_monitor::file_cache_connstr(
                &document,
                self.params.sidecars.vm_monitor.pgconnstr.as_deref(),
            );
            let path = stages::locate(name::VM_MONITOR);
            self.vm_monitor =
                VmMonitor::start(&path, &self.params.sidecars.vm_monitor, file_cache_connstr);
        }
        self.supervise()
    }

    /// `pg-extensions-fetch` (control files, preload libraries), when the spec has
    /// `remote_extensions` — as upstream, whose pre-start task runs only then.
    fn fetch_extensions(
        &mut self,
        log_args: &[OsString],
        document: ComputeDocument,
    ) -> Result<ComputeDocument, StageError> {
        let wanted = document
            .spec
            .as_ref()
            .is_some_and(|spec| spec.remote_extensions.is_some());
        if !wanted {
            return Ok(document);
        }
        let mut args = log_args.to_vec();
        if let Some(url) = &self.params.deferred.remote_ext_base_url {
            args.push("--remote-ext-base-url".into());
            args.push(url.into());
        }
        self.run_document_stage(name::EXTENSIONS_FETCH, &args, &document)
    }

    /// Autoprewarm on reaching `running`, and the periodic offload, when the spec asks.
    fn start_lfc_tasks(&self, document: &ComputeDocument) {
        let Some(spec) = document.spec.as_ref() else {
            return;
        };
        if spec.autoprewarm {
            self.lfc.start_prewarm(&self.shared, None);
        }
        if let Some(seconds) = spec
            .offload_lfc_interval_seconds
            .filter(|seconds| *seconds > 0)
        {
            let period = std::time::Duration::from_secs(seconds);
            if let Err(error) = self.lfc.spawn_periodic_offload(&self.shared, period) {
                tracing::warn!(%error, "cannot start the periodic LFC offload");
            }
        }
    }

    /// Status `running`: wait for Postgres to stop, apply `/configure`, forward terminations.
    fn supervise(&mut self) -> Result<Outcome, StageError> {
        loop {
            match self.next_event() {
                Event::Ready { .. } => {}
                Event::Exited { code, signal } => {
                    return self.after_exit(code, signal);
                }
                Event::SupervisorGone { error } => {
                    if let Some(error) = error {
                        tracing::error!(%error, "pg-supervise failed");
                    }
                    // pg-supervise passes Postgres's code through as its own.
                    let (code, signal) = self
                        .reap_supervisor()
                        .map_or((None, None), |status| (status.code(), status.signal()));
                    return self.after_exit(code, signal);
                }
                Event::Wake => {
                    if self.forward_termination() {
                        continue;
                    }
                    match self.shared.status() {
                        ComputeStatus::ConfigurationPending => self.reconfigure(),
                        ComputeStatus::RefreshConfigurationPending => {
                            if let Some(outcome) = self.refresh() {
                                return Ok(outcome);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Waits for pg-supervise after it reported `exited` (or closed its stdout).
    fn reap_supervisor(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.supervisor.as_mut().and_then(Supervisor::wait);
        self.supervisor = None;
        self.stop_lease();
        status
    }

    /// No more lease renewals: Postgres stopped, or never started.
    fn stop_lease(&mut self) {
        if let Some(mut lease) = self.lease.take() {
            lease.stop();
        }
    }

    /// Postgres stopped while running or terminating.
    fn after_exit(
        &mut self,
        code: Option<i32>,
        signal: Option<i32>,
    ) -> Result<Outcome, StageError> {
        self.reap_supervisor();
        tracing::info!(exit = %describe_exit(code, signal), "postgres stopped");
        // Terminating or not (a crash while running), as upstream: the final sync first.
        Ok(self.after_postgres(exit_code::of_postgres(code, signal)))
    }

    /// Start-up failure: `failed`, Postgres stopped, HTTP up for the grace period.
    fn fail(&mut self, error: StageError) -> Outcome {
        let status = self.shared.status();
        if status.is_terminating() {
            let signal = if self.shared.lock().immediate_shutdown {
                Signal::SIGQUIT
            } else {
                Signal::SIGTERM
            };
            self.stop_postgres(signal);
            return self.after_postgres(exit_code::RUNTIME);
        }
        tracing::error!(%error, "compute start failed");
        trace::end_start(Instant::now(), Some(&error.message));
        self.stop_lease();
        if let Err(http_error) = self.ensure_http() {
            tracing::error!(%http_error, "the HTTP API is not available to report the error");
        }
        let message = error.to_string();
        self.shared.update(|inner| {
            inner.error = Some(message);
            if inner.transition(ComputeStatus::Failed).is_err() {
                let _ = inner.transition(ComputeStatus::Init);
                let _ = inner.transition(ComputeStatus::Failed);
            }
        });
        self.stop_postgres(Signal::SIGQUIT);
        // Postgres had started: the final sync runs as after any exit (upstream's rule).
        let sync = self.final_sync();
        if self.http_unbound {
            tracing::error!("the HTTP API is not listening: exiting now, without --failed-grace");
            return Outcome::Exit(exit_code::RUNTIME);
        }
        let grace = self.params.failed_grace;
        tracing::info!(?grace, "keeping the HTTP API up so the error can be read");
        let terminating = self
            .shared
            .wait_until(grace, |inner| inner.status().is_terminating())
            .status()
            .is_terminating();
        if terminating {
            // `/terminate` from `failed` (upstream answers 412): Postgres is already down;
            // its answer is the final sync's.
            return self.settle(sync, exit_code::RUNTIME);
        }
        Outcome::Exit(exit_code::RUNTIME)
    }

    fn next_event(&mut self) -> Event {
        self.events
            .recv()
            .unwrap_or(Event::SupervisorGone { error: None })
    }

    fn log_args(&self) -> Vec<OsString> {
        vec![
            "--log-format".into(),
            log_format_name(self.params.log_format).into(),
        ]
    }

    fn store(&self, document: &ComputeDocument) {
        let document = document.clone();
        self.shared.update(|inner| {
            crate::metrics::absorb_sections(&mut inner.metrics, &document);
            inner.document = Some(document);
        });
    }

    fn run_stage(
        &mut self,
        stage: &str,
        args: &[OsString],
        input: &[u8],
    ) -> Result<ComputeDocument, StageError> {
        let started = Instant::now();
        // Marked starting before the status check: the signal thread sets the status, then
        // signals the stage, so a termination requested now is either seen here or kept for
        // the stage and delivered as soon as it runs.
        self.children.stage.starting();
        if self.shared.status().is_terminating() {
            self.children.stage.clear();
            return Err(terminating());
        }
        let result = stages::run(stage, args, input, &self.children.stage);
        if stage == name::COMPUTE_SPEC {
            // The fetch's requests; later stages pass its section through unchanged.
            self.shared
                .update(|inner| crate::metrics::count_requests(&mut inner.counters, &result));
        }
        tracing::info!(
            stage,
            ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "stage finished"
        );
        if self.shared.status().is_terminating() {
            return Err(terminating());
        }
        let document = result?;
        self.store(&document);
        Ok(document)
    }

    fn run_document_stage(
        &mut self,
        stage: &str,
        args: &[OsString],
        document: &ComputeDocument,
    ) -> Result<ComputeDocument, StageError> {
        let bytes = stages::document_bytes(document)?;
        self.run_stage(stage, args, &bytes)
    }
}

fn describe_exit(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (_, Some(signal)) => format!("killed by signal {signal}"),
        (Some(code), None) => format!("exit code {code}"),
        (None, None) => "unknown exit status".to_string(),
    }
}

fn terminating() -> StageError {
    StageError::new(
        crate::stages::STAGE,
        ErrorKind::Child,
        "the compute is terminating; start-up stopped",
    )
}

fn supervisor_gone() -> StageError {
    StageError::new(
        name::SUPERVISE,
        ErrorKind::Child,
        "pg-supervise stopped without an exited event; see its log above",
    )
}

fn internal_state(error: crate::state::InvalidTransition) -> StageError {
    crate::stages::internal(error.to_string())
}
