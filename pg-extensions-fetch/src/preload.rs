//! The libraries in `shared_preload_libraries` that come from remote extension storage, as
//! upstream picks them: the `cluster.settings` value plus the last `cluster.postgresql_conf`
//! line starting with `shared_preload_libraries` (its text after `='`), split on `,`, `'`
//! and spaces; `neon`, `databricks_auth`, empty names and names not in `library_index`
//! dropped.

use compute_spec::spec::ComputeSpec;

/// The setting.
const SETTING: &str = "shared_preload_libraries";

/// One preload library and the spec field that named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreloadLibrary {
    /// The library name as written.
    pub name: String,
    /// `cluster.settings` or `cluster.postgresql_conf`.
    pub field: &'static str,
}

/// The remote preload libraries of `spec`, in order, each once.
pub fn libraries(spec: &ComputeSpec) -> Vec<PreloadLibrary> {
    let Some(remote) = spec.remote_extensions.as_ref() else {
        return Vec::new();
    };
    let mut sources: Vec<(&str, &'static str)> = Vec::new();
    if let Some(value) = spec
        .cluster
        .settings
        .iter()
        .flatten()
        .filter(|option| option.name == SETTING)
        .find_map(|option| option.value.as_deref())
    {
        sources.push((value, "cluster.settings"));
    }
    if let Some(line) = spec
        .cluster
        .postgresql_conf
        .as_deref()
        .and_then(|conf| conf.lines().rev().find(|line| line.starts_with(SETTING)))
    {
        if let Some((_, value)) = line.split_once("='") {
            sources.push((value, "cluster.postgresql_conf"));
        }
    }
    let mut found: Vec<PreloadLibrary> = Vec::new();
    for (value, field) in sources {
        for name in value.split([',', '\'', ' ']) {
            let skip = name.is_empty()
                || name == "neon"
                || name == "databricks_auth"
                || !remote.library_index.contains_key(name)
                || found.iter().any(|library| library.name == name);
            if !skip {
                found.push(PreloadLibrary {
                    name: name.to_string(),
                    field,
                });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_libraries_are_picked_as_upstream() {
        let spec: ComputeSpec = serde_json::from_value(serde_json::json!({
            "format_version": 1.0,
            "cluster": {
                "roles": [], "databases": [],
                "settings": [{"name": "shared_preload_libraries", "value": "neon,anon, pg_cron", "vartype": "string"}],
                "postgresql_conf": "shared_preload_libraries='x'\nshared_preload_libraries='timescaledb,anon'\n"
            },
            "remote_extensions": {
                "library_index": {"anon": "anon", "timescaledb": "timescaledb", "x": "x", "neon": "neon"},
                "extension_data": {}
            }
        }))
        .unwrap();
        let names: Vec<(String, &str)> = libraries(&spec)
            .into_iter()
            .map(|library| (library.name, library.field))
            .collect();
        assert_eq!(
            names,
            [
                ("anon".to_string(), "cluster.settings"),
                ("timescaledb".to_string(), "cluster.postgresql_conf"),
            ]
        );
    }
}
