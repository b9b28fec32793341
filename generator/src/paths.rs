//! Paths as messages show them: without `.` or `..` segments, and relative to the current directory
//! when they are inside it (`generated/tiny-llama`, not `/work/llmforge/generator/../generated/tiny-llama`).

use std::path::{Component, Path, PathBuf};

/// `path` for a message, against the process's current directory.
pub fn display(path: &Path) -> PathBuf {
    match std::env::current_dir() {
        Ok(cwd) => display_from(&cwd, path),
        Err(_) => lexical(path),
    }
}

/// `path` for a message, against `cwd` (absolute): made absolute, its existing part resolved by the
/// file system (symbolic links and `..` as the system sees them) and the rest lexically, then made
/// relative to `cwd` when inside it (`.` for `cwd` itself).
pub fn display_from(cwd: &Path, path: &Path) -> PathBuf {
    let normal = resolve(&cwd.join(path));
    let base = resolve(cwd);
    match normal.strip_prefix(&base) {
        Ok(rel) if rel.as_os_str().is_empty() => PathBuf::from("."),
        Ok(rel) => rel.to_path_buf(),
        Err(_) => normal,
    }
}

/// The deepest existing ancestor of `path` canonicalised, with the rest of `path` appended lexically.
fn resolve(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut head = path;
    loop {
        if let Ok(real) = head.canonicalize() {
            let mut out = real;
            for c in rest.iter().rev() {
                out.push(c);
            }
            return lexical(&out);
        }
        match (head.parent(), head.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                head = parent;
            }
            // `..` or `.` last, or the root: nothing canonicalises; fall back to the lexical form.
            _ => return lexical(path),
        }
    }
}

/// `path` without `.` segments and with each `..` removing the segment before it (a `..` at the
/// start of a relative path stays).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !matches!(
                    out.components().next_back(),
                    None | Some(Component::ParentDir)
                ) {
                    out.pop();
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_forms() {
        for (path, want) in [
            ("/a/b/../c/./d", "/a/c/d"),
            ("a/../../b", "../b"),
            ("./a/b/..", "a"),
            ("/..", "/"),
            ("../../x", "../../x"),
        ] {
            assert_eq!(lexical(Path::new(path)), PathBuf::from(want), "{path}");
        }
    }

    #[test]
    fn relative_to_the_directory_when_inside_it() {
        let cwd = std::env::temp_dir()
            .canonicalize()
            .expect("temp dir")
            .join(format!("llmforge-paths-{}", std::process::id()));
        std::fs::create_dir_all(cwd.join("generator")).expect("mkdir");
        let shown = |p: &Path| display_from(&cwd, p);
        assert_eq!(
            shown(&cwd.join("generator/../generated/tiny-llama")),
            PathBuf::from("generated/tiny-llama")
        );
        assert_eq!(
            shown(Path::new("./models.toml")),
            PathBuf::from("models.toml")
        );
        assert_eq!(shown(&cwd.join("generator/..")), PathBuf::from("."));
        // Outside the directory: absolute, still without `..`.
        let outside = shown(&cwd.join("../elsewhere/x"));
        assert!(outside.is_absolute(), "{}", outside.display());
        assert!(
            !outside.components().any(|c| c == Component::ParentDir),
            "{}",
            outside.display()
        );
        let _ = std::fs::remove_dir_all(&cwd);
    }
}
