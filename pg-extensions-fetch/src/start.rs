//! The stage's work before Postgres starts: control files, then the preload libraries'
//! archives (concurrently), recorded in the document's `extensions` section.

use std::time::Instant;

use compute_spec::error::{ErrorKind, StageError};
use compute_spec::section::ExtensionsSection;
use compute_spec::ComputeDocument;

use crate::access::resolve;
use crate::fetch::{Downloader, Fetched, Limits};
use crate::layout::Installation;
use crate::preload::libraries;
use crate::{control, STAGE};

/// What the stage needs besides the document.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--remote-ext-base-url`, normalised; without it nothing is downloaded.
    pub base_url: Option<String>,
    /// Download limits.
    pub limits: Limits,
}

/// Runs the stage on `document`: without `remote_extensions` in the spec it only records an
/// empty section; a preload library the spec does not allow fails it (naming the library
/// and the spec field); a failed download is logged and counts 0 bytes, as upstream.
pub fn run(
    mut document: ComputeDocument,
    options: &Options,
) -> Result<ComputeDocument, StageError> {
    let spec = document.require_spec(STAGE)?;
    let mut section = ExtensionsSection {
        base_url: options.base_url.clone(),
        ..ExtensionsSection::default()
    };
    let Some(remote) = spec.remote_extensions.as_ref() else {
        tracing::info!("the spec has no remote_extensions: nothing to prepare");
        document.extensions = Some(section);
        return Ok(document);
    };
    let installation =
        Installation::discover(&document.pgbin).map_err(|error| error.to_stage_error())?;
    section.extension_dir = Some(installation.extension_dir.display().to_string());
    section.library_dir = Some(installation.library_dir.display().to_string());
    section.control_files_written =
        control::write_control_files(remote, &installation.extension_dir)
            .map_err(|error| error.to_stage_error())?;
    let mut wanted: Vec<String> = Vec::new();
    for library in libraries(spec) {
        let extension = resolve(remote, &library.name, true).map_err(|error| {
            StageError::new(
                STAGE,
                ErrorKind::InvalidSpec,
                format!(
                    "shared_preload_libraries (in {}) names library {:?}, which \
                     remote_extensions does not allow: {error}",
                    library.field, library.name
                ),
            )
        })?;
        if !wanted.contains(&extension) {
            wanted.push(extension);
        }
    }
    let Some(base_url) = options.base_url.clone() else {
        if !wanted.is_empty() {
            tracing::warn!(
                ?wanted,
                "no --remote-ext-base-url: the preload libraries are not downloaded"
            );
        }
        document.extensions = Some(section);
        return Ok(document);
    };
    let started = Instant::now();
    let downloader = Downloader::new(base_url, installation, options.limits.clone());
    let results: Vec<(String, Option<Fetched>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = wanted
            .iter()
            .map(|extension| {
                let downloader = &downloader;
                scope.spawn(move || (extension.clone(), downloader.fetch(extension)))
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|handle| handle.join().ok())
            .map(|(extension, result)| match result {
                Ok(fetched) => (extension, Some(fetched)),
                Err(error) => {
                    tracing::error!(%extension, %error, "downloading a preload library's extension failed");
                    (extension, None)
                }
            })
            .collect()
    });
    for (extension, fetched) in results {
        if let Some(fetched) = fetched {
            section.num_ext_downloaded += 1;
            section.largest_ext_size = section.largest_ext_size.max(fetched.bytes());
            section.total_ext_download_size += fetched.bytes();
            section.preloaded.push(extension);
        }
    }
    section.load_ext_ms = started.elapsed().as_millis() as u64;
    document.extensions = Some(section);
    Ok(document)
}
