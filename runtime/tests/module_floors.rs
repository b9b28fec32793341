//! The runtime's modules import each other without loops, except inside one backend's kernel code
//! (`backend::cpu::*` or `backend::cuda::*` among themselves): a type that lower modules use must live
//! on a floor below them, not in a module that also imports them. The import graph is read from the
//! sources (`crate::…` and `super::…` paths outside comments); its strongly connected components
//! larger than one module must each lie inside one backend.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every module of the crate by path (`backend::cpu::gemm`), with its file's text.
fn modules(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).expect("src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            let mut p = prefix.to_vec();
            p.push(path.file_name().unwrap().to_string_lossy().into_owned());
            modules(&path, &p, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let mut name = prefix.to_vec();
        if stem != "mod" && stem != "lib" {
            name.push(stem);
        }
        let text = std::fs::read_to_string(&path).expect("source file");
        out.insert(name.join("::"), text);
    }
}

/// The text without comments (line comments and doc comments).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Paths following `marker` (`crate::` or `super::`), as segments.
fn paths_after<'a>(code: &'a str, marker: &str) -> Vec<Vec<&'a str>> {
    code.match_indices(marker)
        .map(|(i, _)| {
            let rest = &code[i + marker.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            rest[..end].split("::").filter(|s| !s.is_empty()).collect()
        })
        .collect()
}

/// The longest module prefix of `segments`.
fn resolve(mods: &BTreeMap<String, String>, segments: &[&str]) -> Option<String> {
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|m| mods.contains_key(m))
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut mods = BTreeMap::new();
    modules(&src(), &[], &mut mods);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, text) in &mods {
        let code = code(text);
        let parent: Vec<&str> = m.split("::").filter(|s| !s.is_empty()).collect();
        let parent = &parent[..parent.len().saturating_sub(1)];
        let mut targets: Vec<String> = paths_after(&code, "crate::")
            .iter()
            .filter_map(|p| resolve(&mods, p))
            .collect();
        targets.extend(paths_after(&code, "super::").iter().filter_map(|p| {
            let full: Vec<&str> = parent.iter().copied().chain(p.iter().copied()).collect();
            resolve(&mods, &full)
        }));
        let set = edges.entry(m.clone()).or_default();
        set.extend(targets.into_iter().filter(|t| t != m && !t.is_empty()));
    }
    edges
}

/// Strongly connected components (Tarjan).
fn components(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on.insert(v);
        let edges = s.edges;
        for w in edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            s.out.push(comp);
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn modules_import_each_other_without_loops_outside_a_backends_kernels() {
    let edges = graph();
    assert!(
        edges.len() > 40,
        "the module walk found too few modules: {edges:?}"
    );
    let backend_of = |m: &str| {
        ["backend::cpu::", "backend::cuda::"]
            .into_iter()
            .find(|b| m.starts_with(b))
    };
    let loops: Vec<Vec<String>> = components(&edges)
        .into_iter()
        .filter(|c| c.len() > 1)
        .filter(|c| {
            let b = backend_of(&c[0]);
            b.is_none() || c.iter().any(|m| backend_of(m) != b)
        })
        .collect();
    assert!(
        loops.is_empty(),
        "modules importing each other in a loop (move the shared types to a lower floor): {loops:?}"
    );
}

#[test]
fn the_ground_floor_imports_nothing_above_it() {
    let edges = graph();
    // The vocabulary every floor shares, and what each may import of the runtime (the model
    // description, `precision`, `spec`, `config` and `manifest`, is its own crate below the runtime,
    // `llmforge-spec`, which cannot import the runtime at all).
    let floor: [(&str, &[&str]); 4] = [
        ("step", &[]),
        ("options", &["step"]),
        ("admission", &[]),
        ("backend_error", &["admission"]),
    ];
    for (m, allowed) in floor {
        let got: Vec<&String> = edges[m]
            .iter()
            .filter(|t| !allowed.contains(&t.as_str()))
            .collect();
        assert!(
            got.is_empty(),
            "{m} imports {got:?}, above the ground floor"
        );
    }
}

#[test]
fn a_backend_reaches_the_other_backend_and_the_cpu_plan_executor_through_nothing() {
    // Both backends consume the layer plan (`plan`, in `llmforge-spec`); the CPU executes it through
    // `model`, CUDA maps it onto its kernels. Shared tables (`rope`) sit below both.
    let edges = graph();
    for (m, targets) in &edges {
        let forbidden: &[&str] = if m.starts_with("backend::cuda") {
            &["backend::cpu", "model"]
        } else if m.starts_with("backend::cpu") {
            &["backend::cuda"]
        } else {
            &[]
        };
        let got: Vec<&String> = targets
            .iter()
            .filter(|t| forbidden.iter().any(|f| t.starts_with(f)))
            .collect();
        assert!(got.is_empty(), "{m} imports {got:?}");
    }
    assert!(
        edges.keys().any(|m| m.starts_with("backend::cuda")),
        "no CUDA modules walked"
    );
}
