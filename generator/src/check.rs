//! `generator --check`: what differs between `generated/` on disk and a [`Plan`] — files whose contents
//! are stale, files that are missing, and files or directories that should not be there.

use crate::{GenError, Plan};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Differences between a plan and the directory, each path relative to `generated/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub stale: Vec<PathBuf>,
    pub missing: Vec<PathBuf>,
    /// Files and directories that the plan does not produce (a directory is named once, not its files).
    pub extra: Vec<PathBuf>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.stale.is_empty() && self.missing.is_empty() && self.extra.is_empty()
    }

    /// One line per difference, e.g. `stale: tiny-llama/src/cache.rs`.
    pub fn lines(&self) -> Vec<String> {
        let tagged = [
            ("stale", &self.stale),
            ("missing", &self.missing),
            ("extra", &self.extra),
        ];
        tagged
            .iter()
            .flat_map(|(tag, paths)| paths.iter().map(move |p| format!("{tag}: {}", p.display())))
            .collect()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GenError + '_ {
    move |source| GenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Compare `plan` with the tree under `root` (the `generated/` directory, which may not exist yet).
pub fn check(root: &Path, plan: &Plan) -> Result<Report, GenError> {
    let mut report = Report::default();
    for (rel, text) in &plan.files {
        let path = root.join(rel);
        match std::fs::read(&path) {
            Ok(bytes) if bytes == text.as_bytes() => {}
            Ok(_) => report.stale.push(rel.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => report.missing.push(rel.clone()),
            Err(e) => return Err(io(&path)(e)),
        }
    }
    let expected_dirs: BTreeSet<PathBuf> = plan
        .files
        .keys()
        .flat_map(|p| p.ancestors().skip(1).map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    let tops: Vec<PathBuf> = if plan.whole {
        if !root.exists() {
            return Ok(report);
        }
        list(root)?
            .into_iter()
            .map(|p| PathBuf::from(p.file_name().unwrap_or_default()))
            .collect()
    } else {
        plan.crates.iter().map(|c| PathBuf::from(&c.dir)).collect()
    };
    for top in tops {
        extras(root, &top, plan, &expected_dirs, &mut report.extra)?;
    }
    Ok(report)
}

/// Entries of a directory, sorted by name.
fn list(dir: &Path) -> Result<Vec<PathBuf>, GenError> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        entries.push(entry.map_err(io(dir))?.path());
    }
    entries.sort();
    Ok(entries)
}

/// Walk `rel` (relative to `root`), pushing whatever the plan does not produce.
fn extras(
    root: &Path,
    rel: &Path,
    plan: &Plan,
    expected_dirs: &BTreeSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) -> Result<(), GenError> {
    let path = root.join(rel);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(&path)(e)),
    };
    if meta.is_dir() && expected_dirs.contains(rel) {
        for child in list(&path)? {
            let name = child.file_name().unwrap_or_default();
            extras(root, &rel.join(name), plan, expected_dirs, out)?;
        }
    } else if !(meta.is_file() && plan.files.contains_key(rel)) {
        out.push(rel.to_path_buf());
    }
    Ok(())
}
