//! Validation of a [`ComputeSpec`] and the facts derived from it: where the data comes from
//! ([`StorageSource`]), the effective safekeepers, tenant and timeline.
//!
//! Validation reports every problem at once, each naming its field.

use std::collections::HashSet;
use std::fmt;

use crate::grpc_url::GrpcUrl;
use crate::guc;
use crate::ids::{TenantId, TimelineId};
use crate::pgconf::{check_postgresql_conf, check_setting};
use crate::reserved::Reserved;
use crate::spec::{ComputeMode, ComputeSpec, DeltaAction, GenericOption, PageserverProtocol};
use crate::sqlopt::{self, OptionsOf};

/// One problem with one field of the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field, e.g. `cluster.roles[2].name`.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// Every problem found in a spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<FieldError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", error.field, error.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

/// Where a compute's starting data comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageSource {
    /// Neon's pageserver and safekeepers.
    Neon(NeonStorage),
    /// A vanilla PostgreSQL primary (`upstream_connstring`).
    Upstream {
        /// libpq URL or key=value connection string of the primary.
        connstr: String,
    },
    /// Nothing: `initdb` a fresh cluster.
    Empty,
}

/// The Neon storage facts a spec resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeonStorage {
    /// Tenant, from the field or the `neon.tenant_id` setting.
    pub tenant_id: TenantId,
    /// Timeline, from the field or the `neon.timeline_id` setting.
    pub timeline_id: TimelineId,
    /// The protocol basebackups and leases use: `pageserver_connection_info.prefer_protocol`
    /// (libpq with the legacy `pageserver_connstring` fields), as upstream chooses.
    pub protocol: PageserverProtocol,
    /// One libpq connection string per shard, shard 0 first; empty when gRPC is preferred and
    /// a shard has no `libpq_url`.
    pub pageserver_connstrings: Vec<String>,
    /// With gRPC preferred, the `grpc_url` of each shard's first pageserver, shard 0 first
    /// (every listed pageserver has a valid one); empty otherwise.
    pub pageserver_grpc_urls: Vec<GrpcUrl>,
    /// Stripe size when sharded.
    pub stripe_size: Option<u32>,
    /// Safekeepers `host:port` (may be empty for Replica and Static).
    pub safekeepers: Vec<String>,
}

impl ComputeSpec {
    /// The value of a `cluster.settings` entry (the last one wins, as in postgresql.conf).
    pub fn setting(&self, name: &str) -> Option<&str> {
        let settings = self.cluster.settings.as_deref()?;
        let option = settings.iter().rev().find(|option| option.name == name)?;
        option.value.as_deref()
    }

    /// The effective safekeepers: `safekeeper_connstrings`, else the `neon.safekeepers`
    /// setting split on commas.
    pub fn safekeepers(&self) -> Vec<String> {
        if !self.safekeeper_connstrings.is_empty() {
            return self.safekeeper_connstrings.clone();
        }
        let Some(list) = self.setting("neon.safekeepers") else {
            return Vec::new();
        };
        let list = match list.split_once(':') {
            Some((generation, rest)) if generation.starts_with("g#") => rest,
            _ => list,
        };
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// The libpq pageserver connection strings, shard 0 first, if the spec names any.
    pub fn pageserver_connstrings(&self) -> Option<Vec<String>> {
        if let Some(info) = &self.pageserver_connection_info {
            // Shards 0..count in order, as upstream (a missing one is a validation error).
            return info
                .shard_keys()
                .iter()
                .map(|key| info.shards.get(key)?.pageservers.first()?.libpq_url.clone())
                .collect::<Option<Vec<String>>>();
        }
        let list = self
            .pageserver_connstring
            .as_deref()
            .or_else(|| self.setting("neon.pageserver_connstring"))?;
        let list: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(str::to_string)
            .collect();
        (!list.is_empty()).then_some(list)
    }

    fn uses_neon_storage(&self) -> bool {
        self.pageserver_connection_info.is_some()
            || self.pageserver_connstring.is_some()
            || self.setting("neon.pageserver_connstring").is_some()
    }

    /// Checks the spec and resolves where its data comes from. Every problem is reported.
    /// Role names and databases are checked against PostgreSQL's own reserved names only:
    /// where a spec is accepted, [`ComputeSpec::validate_for`] also knows the compute's
    /// admin and privileged roles.
    pub fn validate(&self) -> Result<StorageSource, SpecErrors> {
        self.validate_with(None)
    }

    /// [`ComputeSpec::validate`], and no role of the spec or its delta operations may take
    /// the admin or the privileged role of `reserved` ([`crate::reserved`]).
    pub fn validate_for(&self, reserved: &Reserved<'_>) -> Result<StorageSource, SpecErrors> {
        self.validate_with(Some(reserved))
    }

    /// Only the checks of [`crate::reserved`]: no role, database or delta operation of the
    /// spec takes over the cluster's own objects.
    pub fn check_reserved(&self, reserved: &Reserved<'_>) -> Result<(), SpecErrors> {
        let mut errors = Vec::new();
        crate::reserved::check(self, Some(reserved), &mut |field: &str, message| {
            errors.push(FieldError {
                field: field.to_string(),
                message,
            })
        });
        match errors.is_empty() {
            true => Ok(()),
            false => Err(SpecErrors(errors)),
        }
    }

    fn validate_with(&self, reserved: Option<&Reserved<'_>>) -> Result<StorageSource, SpecErrors> {
        let mut errors = Vec::new();
        let mut error = |field: &str, message: String| {
            errors.push(FieldError {
                field: field.to_string(),
                message,
            })
        };
        check_catalog(self, &mut error);
        crate::reserved::check(self, reserved, &mut error);
        check_conf_values(self, &mut error);
        if self.reconfigure_concurrency == 0 {
            error("reconfigure_concurrency", "must be at least 1".to_string());
        }
        let source = if self.uses_neon_storage() {
            if self.upstream_connstring.is_some() {
                error(
                    "upstream_connstring",
                    "conflicts with the pageserver settings: a spec names one data source, \
                     remove one of them"
                        .to_string(),
                );
            }
            neon_storage(self, &mut error)
        } else if let Some(connstr) = &self.upstream_connstring {
            if connstr.trim().is_empty() {
                error("upstream_connstring", "is empty".to_string());
            }
            Some(StorageSource::Upstream {
                connstr: connstr.clone(),
            })
        } else {
            Some(StorageSource::Empty)
        };
        match source {
            Some(source) if errors.is_empty() => Ok(source),
            _ => Err(SpecErrors(errors)),
        }
    }
}

fn neon_storage(spec: &ComputeSpec, error: &mut impl FnMut(&str, String)) -> Option<StorageSource> {
    let tenant_id = resolve_id(spec, spec.tenant_id, "tenant_id", "neon.tenant_id", error);
    let timeline_id = resolve_id(
        spec,
        spec.timeline_id,
        "timeline_id",
        "neon.timeline_id",
        error,
    );
    let mut shard_map_broken = false;
    if let Some(info) = &spec.pageserver_connection_info {
        for key in info.shards.keys() {
            if crate::spec::ShardIndex::parse(key).is_none() {
                shard_map_broken = true;
                error(
                    &format!("pageserver_connection_info.shards.{key}"),
                    "a shard index is 4 hex digits: the shard number, then the shard count \
                     (0000 unsharded, 0104 = shard 1 of 4)"
                        .to_string(),
                );
            }
        }
        for key in info.shard_keys() {
            if !info.shards.contains_key(&key) {
                shard_map_broken = true;
                error(
                    "pageserver_connection_info.shards",
                    format!(
                        "shard {key} is missing from the shard map (shard_count {}: shards \
                         0..{} are keyed <number><count> in hex)",
                        info.shard_count,
                        info.shard_count.max(1)
                    ),
                );
            }
        }
    }
    let protocol = spec
        .pageserver_connection_info
        .as_ref()
        .map_or(PageserverProtocol::Libpq, |info| info.prefer_protocol);
    let (pageserver_connstrings, pageserver_grpc_urls) = match protocol {
        PageserverProtocol::Libpq => (libpq_connstrings(spec, shard_map_broken, error), Vec::new()),
        PageserverProtocol::Grpc => {
            // Both URLs may be given: libpq's still go to neon.pageserver_connstring.
            let connstrings = spec.pageserver_connstrings().unwrap_or_default();
            (connstrings, grpc_urls(spec, shard_map_broken, error))
        }
    };
    let shards = pageserver_connstrings.len().max(pageserver_grpc_urls.len());
    let stripe_size = spec
        .pageserver_connection_info
        .as_ref()
        .and_then(|info| info.stripe_size)
        .or(spec.shard_stripe_size)
        .or_else(|| spec.setting("neon.stripe_size")?.parse().ok());
    if shards > 1 && stripe_size.is_none() {
        error(
            "shard_stripe_size",
            "is required with more than one pageserver shard".to_string(),
        );
    }
    let safekeepers = spec.safekeepers();
    if spec.mode == ComputeMode::Primary {
        if safekeepers.is_empty() {
            error(
                "safekeeper_connstrings",
                "safekeeper_connstrings is empty: a Primary with Neon storage needs at least one \
                 safekeeper (or the neon.safekeepers setting)"
                    .to_string(),
            );
        }
        let mut seen = HashSet::new();
        for safekeeper in &safekeepers {
            if !seen.insert(safekeeper) {
                error(
                    "safekeeper_connstrings",
                    format!("duplicate entry in safekeeper_connstrings: {safekeeper}!"),
                );
            }
        }
    }
    Some(StorageSource::Neon(NeonStorage {
        tenant_id: tenant_id?,
        timeline_id: timeline_id?,
        protocol,
        pageserver_connstrings,
        pageserver_grpc_urls,
        stripe_size,
        safekeepers,
    }))
}

/// The libpq connection string of every shard (libpq preferred); a missing one is an error.
fn libpq_connstrings(
    spec: &ComputeSpec,
    shard_map_broken: bool,
    error: &mut impl FnMut(&str, String),
) -> Vec<String> {
    if let Some(list) = spec.pageserver_connstrings() {
        return list;
    }
    let message = match &spec.pageserver_connection_info {
        // Already reported, key by key.
        Some(_) if shard_map_broken => return Vec::new(),
        Some(_) => {
            "a shard has no pageserver with a libpq_url (prefer_protocol is libpq; set \
             \"prefer_protocol\": \"grpc\" for gRPC pageservers)"
        }
        None => "names no pageserver",
    };
    error("pageserver_connection_info", message.to_string());
    Vec::new()
}

/// The `grpc_url` of every shard's first pageserver, shard 0 first (gRPC preferred). As
/// upstream, every pageserver listed (leases go to each) needs one, and each must be a
/// `grpc://` URL (its communicator refuses any other scheme); every problem is named.
fn grpc_urls(
    spec: &ComputeSpec,
    shard_map_broken: bool,
    error: &mut impl FnMut(&str, String),
) -> Vec<GrpcUrl> {
    let Some(info) = &spec.pageserver_connection_info else {
        return Vec::new();
    };
    let mut complete = !shard_map_broken;
    for (key, shard) in &info.shards {
        if shard.pageservers.is_empty() {
            complete = false;
            error(
                &format!("pageserver_connection_info.shards.{key}.pageservers"),
                "is empty: a shard needs at least one pageserver".to_string(),
            );
        }
        for (index, pageserver) in shard.pageservers.iter().enumerate() {
            let field =
                format!("pageserver_connection_info.shards.{key}.pageservers[{index}].grpc_url");
            let problem = match pageserver.grpc_url.as_deref().map(GrpcUrl::parse) {
                Some(Ok(_)) => continue,
                Some(Err(problem)) => problem,
                None => "is missing: prefer_protocol is grpc, so every pageserver needs a \
                         grpc:// URL"
                    .to_string(),
            };
            complete = false;
            error(&field, problem);
        }
    }
    if !complete {
        return Vec::new();
    }
    info.shard_keys()
        .iter()
        .filter_map(|key| {
            info.shards
                .get(key)?
                .pageservers
                .first()?
                .grpc_url
                .as_deref()
        })
        .filter_map(|url| GrpcUrl::parse(url).ok())
        .collect()
}

fn resolve_id<T: std::str::FromStr>(
    spec: &ComputeSpec,
    field_value: Option<T>,
    field: &str,
    setting: &str,
    error: &mut impl FnMut(&str, String),
) -> Option<T> {
    if field_value.is_some() {
        return field_value;
    }
    let Some(text) = spec.setting(setting) else {
        error(
            field,
            format!("missing: Neon storage needs {field} or the {setting} setting"),
        );
        return None;
    };
    match text.parse() {
        Ok(id) => Some(id),
        Err(_) => {
            error(
                &format!("cluster.settings.{setting}"),
                format!("{text:?} is not a {field}: expected 32 hex characters"),
            );
            None
        }
    }
}

/// Postgres truncates longer identifiers, so such a name would never match its catalog row.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Everything that is written to `postgresql.conf`: settings, `postgresql_conf`, and the
/// text fields rendered as quoted values.
fn check_conf_values(spec: &ComputeSpec, error: &mut impl FnMut(&str, String)) {
    for (index, option) in spec.cluster.settings.iter().flatten().enumerate() {
        if let Err(bad) = check_setting(option, index) {
            error(&bad.field, bad.message);
        }
    }
    if let Some(text) = &spec.cluster.postgresql_conf {
        if let Err(bad) = check_postgresql_conf(text) {
            error(&bad.field, bad.message);
        }
    }
    let mut text_fields: Vec<(String, &str)> = [
        ("project_id", spec.project_id.as_deref()),
        ("branch_id", spec.branch_id.as_deref()),
        ("endpoint_id", spec.endpoint_id.as_deref()),
        (
            "pageserver_connstring",
            spec.pageserver_connstring.as_deref(),
        ),
        // Written as primary_conninfo for a standby of a vanilla primary.
        ("upstream_connstring", spec.upstream_connstring.as_deref()),
    ]
    .into_iter()
    .filter_map(|(field, value)| Some((field.to_string(), value?)))
    .collect();
    for (index, safekeeper) in spec.safekeeper_connstrings.iter().enumerate() {
        text_fields.push((format!("safekeeper_connstrings[{index}]"), safekeeper));
    }
    for (key, shard) in spec
        .pageserver_connection_info
        .iter()
        .flat_map(|info| info.shards.iter())
    {
        for (index, pageserver) in shard.pageservers.iter().enumerate() {
            if let Some(url) = &pageserver.libpq_url {
                text_fields.push((
                    format!(
                        "pageserver_connection_info.shards.{key}.pageservers[{index}].libpq_url"
                    ),
                    url,
                ));
            }
        }
    }
    for (field, value) in text_fields {
        if let Err(message) = guc::check_text(value) {
            error(&field, message);
        }
    }
}

fn check_options(
    object: &str,
    options: Option<&[GenericOption]>,
    of: OptionsOf,
    field: &str,
    error: &mut impl FnMut(&str, String),
) {
    let what = match of {
        OptionsOf::Role => "role",
        OptionsOf::Database => "database",
    };
    for (index, option) in options.unwrap_or_default().iter().enumerate() {
        if let Err((part, message)) = sqlopt::parse(option, of) {
            error(
                &format!("{field}.options[{index}].{part}"),
                format!("{what} {object:?}, option {:?}: {message}", option.name),
            );
        }
    }
}

fn check_catalog(spec: &ComputeSpec, error: &mut impl FnMut(&str, String)) {
    let mut role_names = HashSet::new();
    for (index, role) in spec.cluster.roles.iter().enumerate() {
        let field = format!("cluster.roles[{index}].name");
        check_name(&role.name, &field, error);
        if !role_names.insert(role.name.as_str()) {
            error(&field, format!("duplicate role {:?}", role.name));
        }
        check_options(
            &role.name,
            role.options.as_deref(),
            OptionsOf::Role,
            &format!("cluster.roles[{index}]"),
            error,
        );
    }
    let mut database_names = HashSet::new();
    for (index, database) in spec.cluster.databases.iter().enumerate() {
        let field = format!("cluster.databases[{index}].name");
        check_name(&database.name, &field, error);
        check_name(
            &database.owner,
            &format!("cluster.databases[{index}].owner"),
            error,
        );
        if !database_names.insert(database.name.as_str()) {
            error(&field, format!("duplicate database {:?}", database.name));
        }
        check_options(
            &database.name,
            database.options.as_deref(),
            OptionsOf::Database,
            &format!("cluster.databases[{index}]"),
            error,
        );
    }
    for (index, delta) in spec.delta_operations.iter().flatten().enumerate() {
        let field = format!("delta_operations[{index}]");
        check_name(&delta.name, &format!("{field}.name"), error);
        let is_rename = matches!(
            delta.action,
            DeltaAction::RenameDb | DeltaAction::RenameRole
        );
        match (&delta.new_name, is_rename) {
            (Some(new_name), true) => check_name(new_name, &format!("{field}.new_name"), error),
            (None, true) => error(
                &format!("{field}.new_name"),
                format!("{} needs new_name", delta.action),
            ),
            _ => {}
        }
    }
}

fn check_name(name: &str, field: &str, error: &mut impl FnMut(&str, String)) {
    if name.is_empty() {
        error(field, "is empty".to_string());
    } else if name.len() > MAX_IDENTIFIER_BYTES {
        error(
            field,
            format!(
                "{name:?} is {} bytes; PostgreSQL names are at most {MAX_IDENTIFIER_BYTES}",
                name.len()
            ),
        );
    } else if name.contains('\0') {
        error(field, "contains a NUL byte".to_string());
    }
}
