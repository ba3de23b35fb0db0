//! The architecture of the core, checked (a test module; see `docs/architecture.md`).
//!
//! Every module belongs to a layer, its first folder: `domain`, `ports`, `services`, `adapters`,
//! `entry`, in that order. A module may use its own layer and the layers before it, never a
//! later one. And the units of the core, a layer's modules and folders (`domain::key`,
//! `adapters::local`, ...), use each other without a circle.
//!
//! The sources are read as text: every `crate::` and `super::` path outside comments and test
//! modules is a use of the module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LAYERS: [&str; 5] = ["domain", "ports", "services", "adapters", "entry"];

/// A unit: a layer's module or folder, such as `["domain", "key"]`, or a layer's `mod.rs`
/// alone, such as `["ports"]`.
type Unit = Vec<String>;

/// The module path of a source file: `src/adapters/local/store/keys.rs` is
/// `adapters::local::store::keys`, a `mod.rs` is its folder.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).expect("files are under src");
    let mut path: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    path
}

fn unit_of(module: &[String]) -> Unit {
    module.iter().take(2).cloned().collect()
}

fn layer_of(unit: &Unit) -> Option<usize> {
    LAYERS
        .iter()
        .position(|layer| unit.first() == Some(&layer.to_string()))
}

/// The source without comments, string contents and `#[cfg(test)]` items.
fn code_of(source: &str) -> String {
    let mut code = String::with_capacity(source.len());
    let mut rest = source;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map_or("", |end| &after[end..]);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |end| &after[end + 2..]);
        } else if let Some(after) = rest.strip_prefix('"') {
            let mut chars = after.char_indices();
            let mut end = after.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    _ => {}
                }
            }
            code.push_str("\"\"");
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix("#[cfg(test)]") {
            rest = skip_item(after);
        } else {
            let c = rest.chars().next().expect("not empty");
            code.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    code
}

/// What follows the item at the start of `text`: up to its `;` or its balanced `{ }` block.
fn skip_item(text: &str) -> &str {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 1 => return &text[i + 1..],
            '}' => depth = depth.saturating_sub(1),
            ';' if depth == 0 => return &text[i + 1..],
            _ => {}
        }
    }
    ""
}

/// The modules `code` (of `module`) names: the longest path of identifiers after each
/// `crate::` or run of `super::`.
fn uses(module: &[String], code: &str) -> BTreeSet<Vec<String>> {
    let mut named = BTreeSet::new();
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| !w.is_empty())
        .collect();
    for word in words {
        let parts: Vec<&str> = word.split("::").collect();
        let (mut path, rest): (Vec<String>, &[&str]) = match parts.first() {
            Some(&"crate") => (Vec::new(), &parts[1..]),
            Some(&"super") => {
                let supers = parts.iter().take_while(|p| **p == "super").count();
                let base = module.len().saturating_sub(supers);
                (module[..base].to_vec(), &parts[supers..])
            }
            _ => continue,
        };
        path.extend(
            rest.iter()
                .take_while(|p| p.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
                .map(|p| p.to_string()),
        );
        named.insert(path);
    }
    named
}

fn sources(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("src is readable").path();
        if path.is_dir() {
            sources(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// Every use of one unit by another, with the files that make it.
fn unit_graph() -> BTreeMap<Unit, BTreeMap<Unit, BTreeSet<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<Unit, BTreeMap<Unit, BTreeSet<String>>> = BTreeMap::new();
    for file in files {
        let module = module_of(&src, &file);
        let from = unit_of(&module);
        if layer_of(&from).is_none() {
            continue; // lib.rs and this file
        }
        let code = code_of(&std::fs::read_to_string(&file).expect("sources are UTF-8"));
        for used in uses(&module, &code) {
            let to = unit_of(&used);
            // A layer's mod.rs declares and re-exports its own units: that is structure.
            let parent_of = to.len() > from.len() && to.starts_with(&from);
            if to != from && !parent_of && layer_of(&to).is_some() {
                let name = file.strip_prefix(&src).unwrap().display().to_string();
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(name);
            }
        }
    }
    graph
}

fn name(unit: &Unit) -> String {
    unit.join("::")
}

#[test]
fn no_layer_uses_a_later_one() {
    let mut wrong = Vec::new();
    for (from, uses) in unit_graph() {
        for (to, files) in uses {
            if layer_of(&to) > layer_of(&from) {
                wrong.push(format!("{} uses {} ({files:?})", name(&from), name(&to)));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn units_use_each_other_without_a_circle() {
    let graph = unit_graph();
    // Depth-first search; a unit met again while still on the path closes a circle.
    fn visit(
        unit: &Unit,
        graph: &BTreeMap<Unit, BTreeMap<Unit, BTreeSet<String>>>,
        path: &mut Vec<Unit>,
        done: &mut BTreeSet<Unit>,
    ) -> Option<Vec<Unit>> {
        if let Some(start) = path.iter().position(|u| u == unit) {
            let mut circle = path[start..].to_vec();
            circle.push(unit.clone());
            return Some(circle);
        }
        if !done.insert(unit.clone()) {
            return None;
        }
        path.push(unit.clone());
        for next in graph.get(unit).into_iter().flat_map(|uses| uses.keys()) {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for unit in graph.keys() {
        let circle = visit(unit, &graph, &mut Vec::new(), &mut done);
        let circle: Vec<String> = circle.iter().flatten().map(name).collect();
        assert!(circle.is_empty(), "import circle: {}", circle.join(" -> "));
    }
}

#[test]
fn the_check_sees_what_it_checks() {
    let code = code_of(
        "use crate::ports::{Clock, keys::StoredKey}; // crate::entry\n\
         let s = \"crate::entry\"; #[cfg(test)] mod tests { use crate::entry::api; }\n\
         use super::super::domain::key;",
    );
    let module = [
        "adapters".to_string(),
        "local".to_string(),
        "fs".to_string(),
    ];
    let named = uses(&module, &code);
    let expected: BTreeSet<Vec<String>> = [vec!["ports"], vec!["adapters", "domain", "key"]]
        .iter()
        .map(|p| p.iter().map(|s| s.to_string()).collect())
        .collect();
    assert_eq!(named, expected);
    let graph = unit_graph();
    let services = ["services".to_string(), "dataprep".to_string()].to_vec();
    assert!(graph[&services].contains_key(&vec!["ports".to_string()]));
}
