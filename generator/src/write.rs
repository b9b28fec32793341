//! Write a [`Plan`] under `generated/`: only files whose contents changed are rewritten, and (for a
//! whole plan) whatever the plan does not produce is removed.

use crate::check::{Report, check};
use crate::{GenError, Plan};
use std::path::{Path, PathBuf};

/// What a write did, each path relative to `generated/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    pub written: Vec<PathBuf>,
    pub removed: Vec<PathBuf>,
    pub unchanged: usize,
}

pub fn write(root: &Path, plan: &Plan) -> Result<Written, GenError> {
    let Report {
        stale,
        missing,
        extra,
    } = check(root, plan)?;
    let mut done = Written::default();
    for rel in &extra {
        let path = root.join(rel);
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|source| GenError::Io {
            path: path.clone(),
            source,
        })?;
        done.removed.push(rel.clone());
    }
    for rel in stale.into_iter().chain(missing) {
        let path = root.join(&rel);
        let Some(text) = plan.files.get(&rel) else {
            continue;
        };
        let io = |source| GenError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, text).map_err(io)?;
        done.written.push(rel);
    }
    done.written.sort();
    done.unchanged = plan.files.len() - done.written.len();
    Ok(done)
}
