//! The stage's work before Postgres starts: control files, then the preload libraries'
//! archives (concurrently), recorded in the document's `extensions` section.

use std::time::Instant;

use compute_spec::error::{ErrorKind, StageError};
use compute_spec::section::ExtensionsSection;
use compute_spec::ComputeDocument;

use crate::access::resolve;
use crate::fetch::{Downloader, Fetched, Limits};
use crate::layout::Installation;
use crate::preload::{libraries, PreloadLibrary};
use crate::{control, FetchError, STAGE};

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
/// and the spec field); a failed download is logged and does not count, as upstream, unless
/// the library is then missing from the library directory, which fails the stage (naming
/// the library, its spec field and the download error) instead of Postgres's start.
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
    // Each extension to download, with the preload libraries that need it.
    let mut wanted: Vec<(String, Vec<PreloadLibrary>)> = Vec::new();
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
        match wanted.iter_mut().find(|(name, _)| *name == extension) {
            Some((_, libraries)) => libraries.push(library),
            None => wanted.push((extension, vec![library])),
        }
    }
    let Some(base_url) = options.base_url.clone() else {
        if !wanted.is_empty() {
            let extensions: Vec<&str> = wanted.iter().map(|(name, _)| name.as_str()).collect();
            tracing::warn!(
                ?extensions,
                "no --remote-ext-base-url: the preload libraries' extensions are not downloaded"
            );
        }
        document.extensions = Some(section);
        return Ok(document);
    };
    let started = Instant::now();
    let downloader = Downloader::new(base_url, installation, options.limits.clone());
    let results: Vec<Result<Fetched, FetchError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = wanted
            .iter()
            .map(|(extension, _)| {
                let downloader = &downloader;
                scope.spawn(move || {
                    let mut span = stage_kit::stage::span("download");
                    span.set_kind(compute_spec::trace::SpanKind::Client);
                    span.set("extension", extension.as_str());
                    let fetched = downloader.fetch(extension);
                    if let Err(error) = &fetched {
                        span.fail(error);
                    }
                    fetched
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(FetchError::Io("a download thread panicked".into())))
            })
            .collect()
    });
    let mut missing = Vec::new();
    for ((extension, libraries), result) in wanted.into_iter().zip(results) {
        match result {
            Ok(fetched) => {
                section.num_ext_downloaded += 1;
                section.largest_ext_size = section.largest_ext_size.max(fetched.bytes());
                section.total_ext_download_size += fetched.bytes();
                section.preloaded.push(extension);
            }
            Err(error) => {
                // As upstream, a failed download alone does not stop the start (the library
                // may be installed locally); a library that is not there would only make
                // Postgres fail later with a vaguer message, so that stops it here.
                tracing::error!(%extension, %error, "downloading a preload library's extension failed");
                let library_dir = &downloader.installation().library_dir;
                for library in libraries {
                    let file = library_dir.join(format!("{}.so", library.name));
                    if !file.exists() {
                        missing.push(format!(
                            "shared_preload_libraries (in {}) needs library {:?}, which is not \
                             in {} and whose extension {extension} could not be downloaded: {error}",
                            library.field,
                            library.name,
                            library_dir.display()
                        ));
                    }
                }
            }
        }
    }
    section.load_ext_ms = started.elapsed().as_millis() as u64;
    if !missing.is_empty() {
        return Err(StageError::new(
            STAGE,
            ErrorKind::Network,
            missing.join("; "),
        ));
    }
    document.extensions = Some(section);
    Ok(document)
}
