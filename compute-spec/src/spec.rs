//! The Neon-compatible spec model: [`ComputeSpec`] and everything in it, the
//! [`ComputeConfig`] envelope, and validation ([`ComputeSpec::validate`]).
//!
//! Field names, defaults and JSON shapes follow Neon's `compute_api` (see
//! `shared/reference/neon-compute-ctl.md` §2). Unknown fields never fail a parse: they are
//! kept in `extra` maps and written back, so a newer control plane's fields pass through.
//! This project adds one field, [`ComputeSpec::upstream_connstring`]: a vanilla PostgreSQL
//! primary to clone from.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::guc::VarType;
use crate::ids::{Lsn, TenantId, TimelineId};
use crate::open_enum::open_enum;
use crate::secret::Secret;

type Extra = Map<String, Value>;

fn default_reconfigure_concurrency() -> usize {
    1
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// The desired state of one compute, as a control plane sends it.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ComputeSpec {
    /// Always 1.0; never validated (as upstream).
    pub format_version: f32,
    /// Logged only.
    #[serde(default)]
    pub operation_uuid: Option<String>,
    /// Feature flags; unknown names are kept as they are.
    #[serde(default)]
    pub features: Vec<ComputeFeature>,
    /// Swap size for `--resize-swap-on-bind`.
    #[serde(default)]
    pub swap_size_bytes: Option<u64>,
    /// Disk quota for `--set-disk-quota-for-fs`.
    #[serde(default)]
    pub disk_quota_bytes: Option<u64>,
    /// When true the vm-monitor gets no Postgres connection (no file-cache resizing).
    #[serde(default)]
    pub disable_lfc_resizing: Option<bool>,
    /// The desired end state: roles, databases, settings.
    pub cluster: Cluster,
    /// Explicit drops and renames, replayed on every start (so each must be idempotent).
    #[serde(default)]
    pub delta_operations: Option<Vec<DeltaOp>>,
    /// Skip all role, database and extension SQL.
    #[serde(default)]
    pub skip_pg_catalog_updates: bool,
    /// Neon tenant; falls back to the `neon.tenant_id` setting.
    #[serde(default)]
    pub tenant_id: Option<TenantId>,
    /// Neon timeline; falls back to the `neon.timeline_id` setting.
    #[serde(default)]
    pub timeline_id: Option<TimelineId>,
    /// Preferred pageserver description (shards and URLs).
    #[serde(default)]
    pub pageserver_connection_info: Option<PageserverConnectionInfo>,
    /// Legacy: comma-separated libpq connection strings, one per shard.
    #[serde(default)]
    pub pageserver_connstring: Option<String>,
    /// Stripe size (pages) for the legacy connection string with more than one shard.
    #[serde(default)]
    pub shard_stripe_size: Option<u32>,
    /// Written as `neon.project_id`.
    #[serde(default)]
    pub project_id: Option<String>,
    /// Written as `neon.branch_id`.
    #[serde(default)]
    pub branch_id: Option<String>,
    /// Written as `neon.endpoint_id`.
    #[serde(default)]
    pub endpoint_id: Option<String>,
    /// When set, `neon.safekeepers` is prefixed `g#<generation>:`.
    #[serde(default)]
    pub safekeepers_generation: Option<u32>,
    /// `host:port` of each safekeeper; falls back to the `neon.safekeepers` setting.
    #[serde(default)]
    pub safekeeper_connstrings: Vec<String>,
    /// Primary, Replica or Static at an LSN.
    #[serde(default)]
    pub mode: ComputeMode,
    /// JWT used as the password to pageservers and safekeepers.
    #[serde(default)]
    pub storage_auth_token: Option<Secret>,
    /// Extensions that can be downloaded on demand.
    #[serde(default)]
    pub remote_extensions: Option<RemoteExtensions>,
    /// Settings for the `[pgbouncer]` section, in order.
    #[serde(default)]
    pub pgbouncer_settings: Option<IndexMap<String, String>>,
    /// local_proxy configuration.
    #[serde(default)]
    pub local_proxy_config: Option<LocalProxyConfig>,
    /// Parallel per-database connections during a live reconfiguration.
    #[serde(default = "default_reconfigure_concurrency")]
    pub reconfigure_concurrency: usize,
    /// Drop all logical replication subscriptions once per timeline.
    #[serde(default)]
    pub drop_subscriptions_before_start: bool,
    /// pgaudit level.
    #[serde(default)]
    pub audit_log_level: AuditLogLevel,
    /// Forward Postgres logs to this `host:port` via syslog.
    #[serde(default)]
    pub logs_export_host: Option<String>,
    /// File-cache state store address.
    #[serde(default)]
    pub endpoint_storage_addr: Option<String>,
    /// File-cache state store token.
    #[serde(default)]
    pub endpoint_storage_token: Option<Secret>,
    /// Prewarm the file cache after start.
    #[serde(default)]
    pub autoprewarm: bool,
    /// Periodic file-cache state upload interval.
    #[serde(default)]
    pub offload_lfc_interval_seconds: Option<u64>,
    /// `-1` never suspend, `0` default. Defaulted to 0: older specs lack it.
    #[serde(default)]
    pub suspend_timeout_seconds: i64,
    /// Databricks-only settings, carried through untouched.
    #[serde(default)]
    pub databricks_settings: Option<Value>,
    /// compute-tools extension: a vanilla PostgreSQL primary (libpq URL or key=value string)
    /// to clone PGDATA from with `BASE_BACKUP`, instead of a Neon pageserver.
    #[serde(default)]
    pub upstream_connstring: Option<String>,
    /// Fields this version does not model (e.g. `timestamp`), passed through unchanged.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A feature flag. Unknown names parse without error and are written back as they came.
#[derive(Clone, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(with = "String")]
pub enum ComputeFeature {
    /// `activity_monitor_experimental`: count `pg_stat_database` activity.
    ActivityMonitorExperimental,
    /// `tls_experimental`.
    TlsExperimental,
    /// Any other name.
    Unknown(String),
}

impl ComputeFeature {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            ComputeFeature::ActivityMonitorExperimental => "activity_monitor_experimental",
            ComputeFeature::TlsExperimental => "tls_experimental",
            ComputeFeature::Unknown(name) => name,
        }
    }
}

impl Serialize for ComputeFeature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ComputeFeature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(match name.as_str() {
            "activity_monitor_experimental" => ComputeFeature::ActivityMonitorExperimental,
            "tls_experimental" => ComputeFeature::TlsExperimental,
            _ => ComputeFeature::Unknown(name),
        })
    }
}

/// The compute's role in its timeline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ComputeMode {
    /// Read-write.
    #[default]
    Primary,
    /// Read-only at a fixed LSN.
    Static(Lsn),
    /// Read-only, following the primary.
    Replica,
}

impl ComputeMode {
    /// The `neon.compute_mode` value: `primary`, `static` or `replica`.
    pub fn as_setting(self) -> &'static str {
        match self {
            ComputeMode::Primary => "primary",
            ComputeMode::Static(_) => "static",
            ComputeMode::Replica => "replica",
        }
    }
}

/// pgaudit levels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AuditLogLevel {
    /// No auditing.
    #[default]
    Disabled,
    /// DDL and role changes, logged.
    Log,
    /// DDL and role changes.
    Base,
    /// HIPAA level.
    Hipaa,
    /// Everything but misc.
    Extended,
    /// Everything with parameters.
    Full,
}

/// Roles, databases and settings.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Cluster {
    /// Logged only.
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// Logged only.
    #[serde(default)]
    pub name: Option<String>,
    /// Logged only.
    #[serde(default)]
    pub state: Option<String>,
    /// Roles that must exist.
    pub roles: Vec<Role>,
    /// Databases that must exist.
    pub databases: Vec<Database>,
    /// `postgresql.conf` text copied to the top of the rendered file: settings and comments
    /// only (no include directives), each line checked; everything rendered after it wins.
    #[serde(default)]
    pub postgresql_conf: Option<String>,
    /// Settings appended to `postgresql.conf` in the managed block; names must be GUC-shaped
    /// and values fit their vartype.
    #[serde(default)]
    pub settings: Option<Vec<GenericOption>>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A role the compute must have.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Role {
    /// Role name, used verbatim (never pre-quoted).
    pub name: String,
    /// md5 hex digest without the `md5` prefix, or a full `SCRAM-SHA-256$…` verifier; never
    /// plaintext. Null means no password.
    #[serde(default)]
    pub encrypted_password: Option<Secret>,
    /// `CREATE ROLE` options: keywords from PostgreSQL's closed set (`SUPERUSER`, `LOGIN`,
    /// `CONNECTION LIMIT`, `VALID UNTIL`, `IN ROLE`, …), the argument in `value` or after the
    /// keyword in `name`; `ALTER ROLE` gets those it accepts.
    #[serde(default)]
    pub options: Option<Vec<GenericOption>>,
    /// Fields this version does not model, kept so a document passes them on unchanged.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A database the compute must have.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Database {
    /// Database name, used verbatim.
    pub name: String,
    /// Owner role name.
    pub owner: String,
    /// `CREATE DATABASE` options from PostgreSQL's closed set (`TEMPLATE`, `ENCODING`,
    /// `LOCALE`, `LC_COLLATE`, `CONNECTION LIMIT`, `IS_TEMPLATE`, …; not `OWNER`).
    #[serde(default)]
    pub options: Option<Vec<GenericOption>>,
    /// Output only (`/dbs_and_roles`): the database does not allow connections.
    #[serde(default, skip_serializing_if = "is_false")]
    pub restrict_conn: bool,
    /// Output only: an interrupted `DROP DATABASE` left it invalid.
    #[serde(default, skip_serializing_if = "is_false")]
    pub invalid: bool,
    /// Fields this version does not model, kept so a document passes them on unchanged.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A named option: a GUC (settings) or a SQL option (roles, databases). Checked by
/// validation and again when rendered: see `compute_spec::guc` and `compute_spec::sqlopt`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GenericOption {
    /// Setting name (letters, digits, `_`, at most one `.`) or option keyword.
    pub name: String,
    /// Its value; null renders the bare name (options) or no line (settings). Never a
    /// newline or other control character.
    #[serde(default)]
    pub value: Option<String>,
    /// `bool`, `integer`, `real`, `enum` or `string` (another value is kept verbatim):
    /// settings values are checked for it; `string` values are always quoted, others when
    /// they are not one token.
    pub vartype: VarType,
}

/// An explicit drop or rename: `delete_db`, `rename_db`, `delete_role`, `rename_role`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeltaOp {
    /// The action; other values are ignored (and kept).
    pub action: DeltaAction,
    /// The object's (old) name.
    pub name: String,
    /// The new name for renames.
    #[serde(default)]
    pub new_name: Option<String>,
    /// Fields this version does not model, kept so a document passes them on unchanged.
    #[serde(flatten)]
    pub extra: Extra,
}

open_enum! {
    /// What a delta does.
    pub enum DeltaAction {
        /// Drop a database.
        DeleteDb = "delete_db",
        /// Rename a database (needs `new_name`).
        RenameDb = "rename_db",
        /// Drop a role (its objects reassigned first).
        DeleteRole = "delete_role",
        /// Rename a role (needs `new_name`).
        RenameRole = "rename_role",
    }
}

/// Pageservers, per shard.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct PageserverConnectionInfo {
    /// 0 means unsharded.
    #[serde(default)]
    pub shard_count: u8,
    /// Stripe size in pages.
    #[serde(default)]
    pub stripe_size: Option<u32>,
    /// Keyed by the shard index in 4 hex digits: number then count (`0000`, `0204`).
    #[serde(default)]
    pub shards: IndexMap<String, PageserverShardInfo>,
    /// `libpq` (default) or `grpc`.
    #[serde(default)]
    pub prefer_protocol: PageserverProtocol,
}

pub use crate::shard::ShardIndex;

impl PageserverConnectionInfo {
    /// The shards a compute needs, in order: every number below `shard_count` (one shard,
    /// `0000`, when unsharded).
    pub fn needed_shards(&self) -> impl Iterator<Item = ShardIndex> + '_ {
        (0..self.shard_count.max(1)).map(|number| ShardIndex {
            number,
            count: self.shard_count,
        })
    }

    /// The keys of [`Self::needed_shards`] in the shard map.
    pub fn shard_keys(&self) -> Vec<String> {
        self.needed_shards()
            .map(|index| index.to_string())
            .collect()
    }
}

/// The pageservers of one shard (only the first is used).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct PageserverShardInfo {
    /// Candidate pageservers.
    #[serde(default)]
    pub pageservers: Vec<PageserverShardConnectionInfo>,
}

/// How to reach one pageserver.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct PageserverShardConnectionInfo {
    /// Pageserver node id.
    #[serde(default)]
    pub id: Option<u64>,
    /// libpq URL or key=value string.
    #[serde(default)]
    pub libpq_url: Option<String>,
    /// `grpc://` URL.
    #[serde(default)]
    pub grpc_url: Option<String>,
}

/// Pageserver protocol preference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PageserverProtocol {
    /// The page-service protocol over libpq.
    #[default]
    Libpq,
    /// gRPC.
    Grpc,
}

/// Extensions available for download (upstream's `RemoteExtSpec`). An extension may be
/// downloaded when `public_extensions` or `custom_extensions` names it (an absent or null list
/// is empty) and `extension_data` describes it; a library is found through `library_index`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RemoteExtensions {
    /// Allowed for everyone.
    #[serde(default)]
    pub public_extensions: Option<Vec<String>>,
    /// Allowed for this compute.
    #[serde(default)]
    pub custom_extensions: Option<Vec<String>>,
    /// Library name (without `.so`) → extension name. Required, as upstream.
    pub library_index: IndexMap<String, String>,
    /// Extension name → control files and archive. Required, as upstream.
    pub extension_data: IndexMap<String, RemoteExtensionData>,
    /// Fields this version does not know, passed through.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Control files and archive path of one remote extension.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RemoteExtensionData {
    /// Control file name (`<name>.control`) → its text; written before Postgres starts.
    pub control_data: IndexMap<String, String>,
    /// Archive path in extension storage (carried, never used: the URL is built from the
    /// extension name, as upstream).
    pub archive_path: String,
    /// Fields this version does not know, passed through.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// local_proxy configuration, carried through.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct LocalProxyConfig {
    /// JWKS providers; their roles are created without the privileged-role membership.
    #[serde(default)]
    pub jwks: Option<Vec<LocalProxyJwks>>,
    /// TLS key and certificate.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// One JWKS provider of local_proxy.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct LocalProxyJwks {
    /// Provider id.
    pub id: String,
    /// Roles authenticated by this provider.
    #[serde(default)]
    pub role_names: Vec<String>,
    /// JWKS URL.
    pub jwks_url: String,
    /// Provider name.
    pub provider_name: String,
    /// Expected audience.
    #[serde(default)]
    pub jwt_audience: Option<String>,
}

/// Key and certificate paths.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct TlsConfig {
    /// Private key path.
    pub key_path: String,
    /// Certificate path.
    pub cert_path: String,
}

/// The `--config` file and `/configure` body: `{spec, compute_ctl_config}`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ComputeConfig {
    /// Null means "no spec yet": start empty and wait for `/configure`.
    #[serde(default)]
    pub spec: Option<ComputeSpec>,
    /// Keys for the HTTP API's JWT auth, and TLS.
    pub compute_ctl_config: ComputeCtlConfig,
}

/// compute_ctl's own configuration.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct ComputeCtlConfig {
    /// Public keys for the HTTP API's JWT auth, fixed when compute-ctl starts. Absent: no
    /// authentication (compute-ctl then listens on loopback only); present but empty: every
    /// authenticated route is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Jwks>,
    /// TLS for Postgres.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// A JSON Web Key Set.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct Jwks {
    /// The keys as JWK objects.
    #[serde(default)]
    pub keys: Vec<Value>,
}

/// The control plane's answer to `GET /compute/api/v2/computes/{id}/spec`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ControlPlaneSpecResponse {
    /// The spec, absent while the compute is pooled.
    #[serde(default)]
    pub spec: Option<ComputeSpec>,
    /// `empty` or `attached`.
    pub status: ControlPlaneComputeStatus,
    /// Keys and TLS.
    #[serde(default)]
    pub compute_ctl_config: ComputeCtlConfig,
}

/// Whether the control plane has a spec for this compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ControlPlaneComputeStatus {
    /// No spec yet: wait for `/configure`.
    Empty,
    /// A spec is attached.
    Attached,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A field a newer control plane adds to a role, a database or a delta survives a parse
    /// and a write, so a stage never drops what a later stage (or a newer tool) reads.
    #[test]
    fn roles_databases_and_deltas_keep_unknown_fields() {
        let role: Role = serde_json::from_str(
            r#"{"name": "r", "encrypted_password": null, "options": null, "future": [1, 2]}"#,
        )
        .unwrap();
        assert_eq!(role.extra.get("future"), Some(&serde_json::json!([1, 2])));
        let database: Database =
            serde_json::from_str(r#"{"name": "d", "owner": "r", "future": {"a": true}}"#).unwrap();
        let delta: DeltaOp =
            serde_json::from_str(r#"{"action": "delete_db", "name": "d", "future": "x"}"#).unwrap();
        for (written, key, expected) in [
            (
                serde_json::to_value(&role).unwrap(),
                "future",
                serde_json::json!([1, 2]),
            ),
            (
                serde_json::to_value(&database).unwrap(),
                "future",
                serde_json::json!({"a": true}),
            ),
            (
                serde_json::to_value(&delta).unwrap(),
                "future",
                serde_json::json!("x"),
            ),
        ] {
            assert_eq!(written.get(key), Some(&expected), "{written}");
        }
    }
}
