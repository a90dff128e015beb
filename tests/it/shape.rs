//! The shape of the code (#22): imports between files go one way. Reads every `src/` file's
//! `crate::…` and `super::…` paths (comments and `#[cfg(test)] mod tests` left out), resolves
//! each to the file of the longest module prefix it names, and finds the circles (strongly
//! connected components of more than one file).
//!
//! A `mod.rs` and its own submodules (`supervisor` and the files that split its `impl`, an
//! engine's trait and its implementations) are one unit here: a submodule's use of its parent
//! is not counted, and a parent's relative paths to its submodules (`etcd::Etcd` in
//! `engine/mod.rs`) are not read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`engine::etcd`) → the file's text, for every `.rs` under `src/`.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                parts.pop();
            }
            out.insert(parts.join("::"), std::fs::read_to_string(&p).unwrap());
        }
    }
    out
}

/// The text without `//` comments and without a trailing `#[cfg(test)] mod tests { … }`.
fn code(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    body.lines().map(|l| l.find("//").map_or(l, |i| &l[..i])).collect::<Vec<_>>().join("\n")
}

/// The `a::b::c` paths that follow `prefix` in `text`.
fn paths_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.match_indices(prefix)
        .filter(|(i, _)| *i == 0 || !text[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        .map(|(i, _)| {
            let rest = &text[i + prefix.len()..];
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
            rest[..end].trim_end_matches(':')
        })
        .collect()
}

fn resolve(mods: &BTreeMap<String, String>, path: &str) -> Option<String> {
    let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    (1..=segs.len()).rev().map(|i| segs[..i].join("::")).find(|m| mods.contains_key(m))
}

fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, text) in &mods {
        let text = code(text);
        let mut targets: Vec<String> = paths_after(&text, "crate::").into_iter().filter_map(|p| resolve(&mods, p)).collect();
        // `super::x` in module `a::b` (`a/b.rs` or `a/b/mod.rs`) is `a::x`.
        let mut parent: Vec<&str> = m.split("::").collect();
        parent.pop();
        for p in paths_after(&text, "super::") {
            let full = if parent.is_empty() { p.to_string() } else { format!("{}::{p}", parent.join("::")) };
            targets.extend(resolve(&mods, &full).or_else(|| (!parent.is_empty()).then(|| parent.join("::"))));
        }
        let e = edges.entry(m.clone()).or_default();
        for t in targets {
            // A file's own submodules' items used through its path are not a circle of files.
            if t != *m && !m.starts_with(&format!("{t}::")) {
                e.insert(t);
            }
        }
    }
    edges
}

/// Strongly connected components of more than one node (Tarjan).
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        let next: Vec<&'a str> = t.edges.get(v).map(|s| s.iter().map(String::as_str).collect()).unwrap_or_default();
        for w in next {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = BTreeSet::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.insert(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                t.out.push(comp);
            }
        }
    }
    let mut t = T { edges, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), out: Vec::new() };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn imports_between_files_have_no_circle() {
    let edges = import_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(edges.len() > 50 && edges["supervisor"].contains("engine"), "the graph was read: {edges:?}");
    let found = circles(&edges);
    let how: Vec<String> = found
        .iter()
        .flat_map(|c| {
            c.iter().map(|m| format!("{m} → {}", edges[m].iter().filter(|t| c.contains(*t)).cloned().collect::<Vec<_>>().join(", ")))
        })
        .collect();
    assert!(found.is_empty(), "import circles between files: {found:?}\n{}", how.join("\n"));
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default().insert("a".into());
    g.entry("d".into()).or_default().insert("a".into());
    assert_eq!(circles(&g), vec![["a", "b", "c"].iter().map(|s| s.to_string()).collect::<BTreeSet<_>>()]);
}

/// No source file past ~500 lines (#22): one grown past it is split by responsibility, as
/// `workload` (records, output, runs, driver, check) and `config` (raw, spec, values) were.
/// Unit tests count: they are read with the file.
#[test]
fn no_source_file_is_past_about_500_lines() {
    const LIMIT: usize = 520;
    let mods = modules(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(mods.len() > 50, "the files were read");
    let long: Vec<String> = mods
        .iter()
        .map(|(m, text)| (m, text.lines().count()))
        .filter(|(_, n)| *n > LIMIT)
        .map(|(m, n)| format!("{m}: {n} lines"))
        .collect();
    assert!(long.is_empty(), "split these by responsibility: {long:?}");
}
