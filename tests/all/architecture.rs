//! ARCHITECTURE.md stays true: every path it names exists, and every identifier it
//! puts in backticks is still defined (or at least used) somewhere in the code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    rusm_e2e::components_dir().parent().unwrap().to_owned()
}

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every word (identifier characters) in the project's Rust code.
fn code_words(root: &Path) -> BTreeSet<String> {
    let mut files = Vec::new();
    for dir in ["crates", "tests", "examples", "components", "fuzz"] {
        rust_sources(&root.join(dir), &mut files);
    }
    let mut words = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if !word.is_empty() {
                words.insert(word.to_owned());
            }
        }
    }
    words
}

/// The backticked spans of `text`, with the crate section (`crates/NAME`) each is in.
fn spans(text: &str) -> Vec<(Option<String>, String)> {
    let mut found = Vec::new();
    let mut section = None;
    let mut in_block = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            continue;
        }
        if let Some(heading) = line.strip_prefix("### `crates/") {
            section = heading
                .split('`')
                .next()
                .map(|name| format!("crates/{name}"));
        } else if line.starts_with("## ") || line.starts_with("### ") {
            section = None;
        }
        for (i, span) in line.split('`').enumerate() {
            if i % 2 == 1 {
                found.push((section.clone(), span.to_owned()));
            }
        }
    }
    found
}

/// Crates whose items the architecture names by their full path; they are not ours
/// to find in the tree.
const EXTERNAL: [&str; 4] = ["tokio::", "wasmtime::", "std::", "libc::"];

fn looks_like_path(span: &str) -> bool {
    let file_like = [".rs", ".md", ".toml", ".wit", ".sh"]
        .iter()
        .any(|ext| span.ends_with(ext));
    (file_like || span.ends_with('/') || span.starts_with("crates/"))
        && !span.contains(['*', ' ', ':', '{', '<'])
}

fn looks_like_identifier(span: &str) -> bool {
    !span.is_empty()
        && span
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == ':')
        && span.chars().next().is_some_and(char::is_alphabetic)
        && (span.contains("::") || span.contains('_') || span.chars().any(char::is_uppercase))
}

/// Whether `name` names a file somewhere under `dir`.
fn file_under(dir: &Path, name: &str) -> bool {
    let mut files = Vec::new();
    rust_sources(dir, &mut files);
    files
        .iter()
        .any(|f| f.to_string_lossy().ends_with(&format!("/{name}")))
}

#[test]
fn every_path_and_identifier_in_the_architecture_exists() {
    let root = root();
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let words = code_words(&root);
    let mut missing = Vec::new();
    let mut checked = 0;
    for (section, span) in spans(&text) {
        if looks_like_path(&span) {
            checked += 1;
            let exists = root.join(&span).exists()
                || section
                    .as_ref()
                    .is_some_and(|s| root.join(s).join("src").join(&span).exists())
                || section
                    .as_ref()
                    .is_some_and(|s| file_under(&root.join(s), &span));
            if !exists {
                missing.push(format!("path `{span}`"));
            }
        } else if looks_like_identifier(&span) && !EXTERNAL.iter().any(|c| span.starts_with(c)) {
            checked += 1;
            let defined = span
                .split("::")
                .filter(|s| !s.is_empty())
                .all(|segment| words.contains(segment));
            if !defined {
                missing.push(format!("identifier `{span}`"));
            }
        }
    }
    assert!(checked > 100, "only {checked} spans were checked");
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names what the tree no longer has: {missing:#?}"
    );
}
