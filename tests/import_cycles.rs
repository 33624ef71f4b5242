//! No import circles among the modules of `actors/src` and `src/`: every
//! `use` and every inline `crate::`/`super::`/`self::` path is resolved to
//! the module (file) it names, and the graph of those edges must have no
//! cycle. A module's own children (declared, re-exported) are structure,
//! not imports, so edges from a module to its descendants are not counted.
//! The detector is checked on a planted circle first, so it cannot pass by
//! finding nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type ModPath = Vec<String>;

/// Files of a crate's source folder, by module path (`a/b.rs` and
/// `a/b/mod.rs` are `a::b`; `lib.rs` is the crate root). Binary roots
/// (`main.rs`) are their own crates and left out.
fn modules(root: &Path) -> BTreeMap<ModPath, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<ModPath, String>) {
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, root, out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel: PathBuf = path.strip_prefix(root).expect("inside").to_path_buf();
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            match parts.last().map(String::as_str) {
                Some("main") if parts.len() == 1 => continue,
                Some("lib") if parts.len() == 1 => parts.clear(),
                Some("mod") => {
                    parts.pop();
                }
                _ => {}
            }
            out.insert(parts, std::fs::read_to_string(&path).expect("read"));
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The text without comments and string literals (their contents could
/// look like paths).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && next.is_some_and(|n| n != '\\') && chars.get(i + 2) == Some(&'\'') {
            out.push_str("' '");
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Every path a `use` tree names (`a::{b, c::{d}}` → `a::b`, `a::c::d`).
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or(tree).trim().to_string()];
    };
    let prefix = tree[..open].trim_end_matches("::").trim();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| {
            if p == "self" {
                prefix.to_string()
            } else {
                format!("{prefix}::{p}")
            }
        })
        .collect()
}

/// The relative paths (`crate::…`, `super::…`, `self::…`) a module's code
/// names, in `use` trees and inline.
fn named_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before_ok = at == 0 || !rest[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        let tail = &rest[at + 4..];
        match tail.find(';') {
            Some(end) if before_ok => {
                out.extend(expand(&tail[..end]));
                rest = &tail[end..];
            }
            _ => rest = tail,
        }
    }
    let bytes: Vec<char> = code.chars().collect();
    let text: String = bytes.iter().collect();
    for root in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(found) = text[from..].find(root) {
            let at = from + found;
            let boundary = at == 0
                || !text[..at]
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            let end = text[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(text.len(), |e| at + e);
            if boundary {
                out.push(text[at..end].trim_end_matches(':').to_string());
            }
            from = end.max(at + root.len());
        }
    }
    out
}

/// The module a path names from `here`, if it names one of `known`.
fn resolve(here: &ModPath, path: &str, known: &BTreeSet<ModPath>, is_dir: bool) -> Option<ModPath> {
    let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: ModPath = match segments.first()? {
        &"crate" => Vec::new(),
        &"self" | &"super" => {
            // `super` of a file module is its folder's module; of a
            // `mod.rs`, the module above that folder.
            let mut b = here.clone();
            if !is_dir && segments[0] == "super" {
                b.pop();
            }
            b
        }
        _ => return None,
    };
    let mut rest = &segments[1..];
    if segments[0] == "super" && is_dir {
        base.pop();
    }
    while rest.first() == Some(&"super") {
        base.pop();
        rest = &rest[1..];
    }
    let mut best = known.contains(&base).then(|| base.clone());
    for s in rest {
        base.push(s.to_string());
        if known.contains(&base) {
            best = Some(base.clone());
        }
    }
    best
}

/// Import edges between the modules of one crate (ancestor → descendant
/// edges left out).
fn edges(
    mods: &BTreeMap<ModPath, String>,
    dirs: &BTreeSet<ModPath>,
) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let known: BTreeSet<ModPath> = mods.keys().cloned().collect();
    let mut out: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (here, text) in mods {
        let is_dir = dirs.contains(here);
        for path in named_paths(&code_only(text)) {
            if let Some(to) = resolve(here, &path, &known, is_dir) {
                if &to != here && !to.starts_with(here) {
                    out.entry(here.clone()).or_default().insert(to);
                }
            }
        }
    }
    out
}

/// The cycles (strongly connected components of more than one module).
fn cycles(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    let nodes: Vec<&ModPath> = graph
        .keys()
        .chain(graph.values().flatten())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let reach = |from: &ModPath| -> BTreeSet<ModPath> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for m in graph.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    stack.push(m.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&ModPath, BTreeSet<ModPath>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in &nodes {
        if done.contains(*n) || !reachable[n].contains(*n) {
            continue;
        }
        let component: Vec<ModPath> = nodes
            .iter()
            .filter(|m| reachable[n].contains(**m) && reachable[**m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        done.extend(component.iter().cloned());
        out.push(component);
    }
    out
}

fn folder_modules(root: &Path) -> BTreeSet<ModPath> {
    let mut out = BTreeSet::new();
    out.insert(Vec::new());
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<ModPath>) {
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.join("mod.rs").exists() {
                    let rel = path.strip_prefix(root).expect("inside");
                    out.insert(
                        rel.iter()
                            .map(|p| p.to_string_lossy().to_string())
                            .collect(),
                    );
                }
                walk(&path, root, out);
            }
        }
    }
    walk(root, root, &mut out);
    out
}

fn show(c: &[ModPath]) -> String {
    c.iter()
        .map(|m| {
            if m.is_empty() {
                "(root)".to_string()
            } else {
                m.join("::")
            }
        })
        .collect::<Vec<_>>()
        .join(" ⇄ ")
}

#[test]
fn the_detector_finds_a_planted_circle() {
    let mut mods = BTreeMap::new();
    mods.insert(vec![], "mod a; mod b; pub use a::X;".to_string());
    mods.insert(
        vec!["a".to_string()],
        "use super::b::Y; pub struct X;".to_string(),
    );
    mods.insert(
        vec!["b".to_string()],
        "pub struct Y; fn f() -> crate::a::X { todo() } // crate::c".to_string(),
    );
    let found = cycles(&edges(&mods, &BTreeSet::from([vec![]])));
    assert_eq!(
        found,
        vec![vec![vec!["a".to_string()], vec!["b".to_string()]]]
    );
    // Without b's way back there is none; a parent's re-export is no edge.
    mods.insert(vec!["b".to_string()], "pub struct Y;".to_string());
    assert!(cycles(&edges(&mods, &BTreeSet::from([vec![]]))).is_empty());
}

#[test]
fn no_module_of_actors_src_or_src_imports_in_a_circle() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for dir in ["actors/src", "src"] {
        let root = base.join(dir);
        let mods = modules(&root);
        assert!(mods.len() > 20, "{dir}: {} modules read", mods.len());
        let graph = edges(&mods, &folder_modules(&root));
        let imports: usize = graph.values().map(BTreeSet::len).sum();
        assert!(imports > 50, "{dir}: only {imports} imports resolved");
        println!(
            "{dir}: {} modules, {imports} imports between them",
            mods.len()
        );
        found.extend(cycles(&graph).iter().map(|c| format!("{dir}: {}", show(c))));
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}
