//! The modules of `src/` import downward only: no two top-level modules
//! reach each other, directly or through others. A cycle makes a part
//! impossible to test, reuse or change alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module of a file under src/ (`src/probe/chat.rs` → `probe`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// Code outside `#[cfg(test)]` modules: tests may reach anywhere.
fn non_test_code(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

/// Modules named as `crate::name` in the code.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            // `use crate::{a, b::c}`
            if let Some(group) = rest.strip_prefix('{') {
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                for part in inner.split(',') {
                    let n: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !n.is_empty() {
                        found.insert(n);
                    }
                }
            }
        } else {
            found.insert(name);
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = testkit::rust_files(&src);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(&src, f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(from) = module_of(&src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        let deps = edges.entry(from.clone()).or_default();
        for to in crate_paths(non_test_code(&text)) {
            if to != from && modules.contains(&to) {
                deps.insert(to);
            }
        }
    }
    edges
}

/// A cycle through `start`, if any, as the list of modules on it.
fn cycle_from(
    edges: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    let here = path.last().unwrap().clone();
    for next in edges.get(&here).into_iter().flatten() {
        if next == start {
            let mut cycle = path.clone();
            cycle.push(next.clone());
            return Some(cycle);
        }
        if !path.contains(next) {
            path.push(next.clone());
            if let Some(c) = cycle_from(edges, start, path) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn no_import_cycles_between_modules() {
    let edges = graph();
    assert!(edges.len() >= 10, "found too few modules: {edges:?}");
    assert!(
        edges["daemon"].contains("schedule"),
        "the scan must see real imports: {edges:?}"
    );
    let cycles: Vec<String> = edges
        .keys()
        .filter_map(|m| cycle_from(&edges, m, &mut vec![m.clone()]))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_scanner_sees_a_cycle() {
    let mut edges = BTreeMap::new();
    edges.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    edges.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(
        cycle_from(&edges, "a", &mut vec!["a".into()]),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
    assert_eq!(
        crate_paths("use crate::{config, probe::Reason};\nlet x = crate::metrics::X;"),
        BTreeSet::from(["config".into(), "probe".into(), "metrics".into()])
    );
}

#[test]
fn label_sits_at_the_bottom() {
    let edges = graph();
    // `baseline` (the pure latency learner) sits below `breaker`.
    for bottom in ["label", "baseline", "breaker", "classify", "tier", "secret"] {
        let allowed = |d: &str| d == "label" || (bottom == "breaker" && d == "baseline");
        let deps: Vec<_> = edges[bottom].iter().filter(|d| !allowed(d)).collect();
        assert!(deps.is_empty(), "{bottom} imports {deps:?}");
    }
}
