//! Which remote extension a request names, and whether the spec allows it (upstream's
//! `RemoteExtSpec::get_ext`, same messages).

use compute_spec::spec::RemoteExtensions;

/// Why a name does not resolve to an allowed extension; the text is upstream's, and the
/// HTTP answer is 404 with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotAllowed(pub String);

impl std::fmt::Display for NotAllowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotAllowed {}

/// The library name `library_index` is keyed by: `name` without its first `.so` and
/// everything after it (`postgis-3.so.1` → `postgis-3`).
pub fn library_key(name: &str) -> &str {
    match name.find(".so") {
        Some(at) => &name[..at],
        None => name,
    }
}

/// The extension to download for `name` (an extension name, or a library file name when
/// `is_library`): the library is mapped through `library_index`, then the extension must be
/// in `public_extensions` or `custom_extensions` (an absent list is empty) and have
/// `extension_data`.
pub fn resolve(
    remote: &RemoteExtensions,
    name: &str,
    is_library: bool,
) -> Result<String, NotAllowed> {
    let extension = if is_library {
        let key = library_key(name);
        remote
            .library_index
            .get(key)
            .ok_or_else(|| NotAllowed(format!("library {key} is not found")))?
            .as_str()
    } else {
        name
    };
    let listed = |list: &Option<Vec<String>>| {
        list.as_ref()
            .is_some_and(|names| names.iter().any(|listed| listed == extension))
    };
    if !listed(&remote.public_extensions) && !listed(&remote.custom_extensions) {
        return Err(NotAllowed(format!("extension {extension} is not found")));
    }
    if !remote.extension_data.contains_key(extension) {
        return Err(NotAllowed(format!(
            "real_ext_name {extension} is not found"
        )));
    }
    Ok(extension.to_string())
}

/// Whether the control files of `extension` are written at start: upstream's looser rule,
/// skipped only when both lists are given and neither names it.
pub fn control_files_wanted(remote: &RemoteExtensions, extension: &str) -> bool {
    match (&remote.public_extensions, &remote.custom_extensions) {
        (Some(public), Some(custom)) => {
            public.iter().any(|name| name == extension)
                || custom.iter().any(|name| name == extension)
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote() -> RemoteExtensions {
        serde_json::from_value(serde_json::json!({
            "public_extensions": ["anon"],
            "custom_extensions": null,
            "library_index": {"anon": "anon", "postgis-3": "postgis", "orphan": "gone"},
            "extension_data": {
                "anon": {"control_data": {"anon.control": "x"}, "archive_path": "a"},
                "postgis": {"control_data": {}, "archive_path": "p"}
            }
        }))
        .unwrap()
    }

    #[test]
    fn names_resolve_as_upstream() {
        let remote = remote();
        assert_eq!(resolve(&remote, "anon", false), Ok("anon".into()));
        assert_eq!(resolve(&remote, "anon.so", true), Ok("anon".into()));
        assert_eq!(library_key("postgis-3.so.1.2"), "postgis-3");
        assert_eq!(
            resolve(&remote, "postgis-3.so", true).unwrap_err().0,
            "extension postgis is not found"
        );
        assert_eq!(
            resolve(&remote, "nope.so", true).unwrap_err().0,
            "library nope is not found"
        );
        assert_eq!(
            resolve(&remote, "other", false).unwrap_err().0,
            "extension other is not found"
        );
        let mut remote = remote;
        remote.custom_extensions = Some(vec!["gone".into()]);
        assert_eq!(
            resolve(&remote, "orphan", true).unwrap_err().0,
            "real_ext_name gone is not found"
        );
    }

    #[test]
    fn control_files_follow_the_looser_rule() {
        let mut remote = remote();
        assert!(control_files_wanted(&remote, "postgis"), "one list absent");
        remote.custom_extensions = Some(vec![]);
        assert!(!control_files_wanted(&remote, "postgis"));
        assert!(control_files_wanted(&remote, "anon"));
    }
}
