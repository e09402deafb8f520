//! The floors of ARCHITECTURE.md ("Dependency direction"), checked against the code on every test run.
//!
//! It reads every file under `src/`, expands each `crate::…` path it names (in `use` trees and inline, with
//! `super::` resolved against the file's place), and checks:
//! - the kernel (`error.rs`, `db/`, `domain/`, `config.rs`, `secret.rs`, `mail.rs`) names only the kernel;
//! - `http/` names only the kernel and itself: never a module, never `app`;
//! - a module never names `app` or `cli`; only its `api` files (`api.rs`, `api/…`) name `http`;
//! - a module names another module only through that module's facade (`crate::modules::x::Item`, where
//!   `Item` is not one of `x`'s own files or folders), and only a module it may depend on; `app` and
//!   `cli` also use modules through their facades only;
//! - no file is longer than the limit, except the few named below with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Which modules each module may use (through their facades). Nothing may use `messaging`.
const MODULE_DEPENDENCIES: &[(&str, &[&str])] = &[
    ("events", &[]),
    ("accounts", &["events"]),
    ("contacts", &["accounts", "events"]),
    ("channels", &["accounts", "events"]),
    ("messaging", &["accounts", "contacts", "channels", "events"]),
];

const KERNEL: &[&str] = &["error", "db", "domain", "config", "secret", "mail"];

/// Lines a file may have.
const MAX_LINES: usize = 600;

/// Files allowed above [`MAX_LINES`], each with the reason one concept needs the room.
const LONG_FILES: &[(&str, &str)] = &[];

struct SourceFile {
    /// Path below `src/`, with `/` separators.
    rel: String,
    /// The module path of the file (`["modules", "contacts", "api", "tags"]`); empty for `lib.rs`.
    module: Vec<String>,
    text: String,
}

fn sources() -> Vec<SourceFile> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    walk(&root, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
            let mut module: Vec<String> = rel.trim_end_matches(".rs").split('/').map(str::to_string).collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                module.pop();
            }
            SourceFile { text: fs::read_to_string(&p).unwrap(), rel, module }
        })
        .collect()
}

/// The code without comments and string literals (so "crate::x" in a doc or a message is not a use).
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                out.push_str("\"\"");
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
            }
            // A char literal such as '"' or '{' (lifetimes like 'a are left alone).
            '\'' => {
                let rest: String = chars.clone().take(3).collect();
                let literal = rest.len() >= 2 && (rest.as_bytes()[1] == b'\'' || rest.starts_with('\\'));
                if literal {
                    let mut escaped = false;
                    for c in chars.by_ref() {
                        if escaped {
                            escaped = false;
                        } else if c == '\\' {
                            escaped = true;
                        } else if c == '\'' {
                            break;
                        }
                    }
                    out.push_str("' '");
                } else {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Expands a use tree (`a::{b, c::{d, self}}`) into flat paths.
fn expand(tree: &str) -> Vec<String> {
    // `a as b` keeps `a`; then whitespace is noise.
    let tree: String = tree.replace(" as ", "@").chars().filter(|c| !c.is_whitespace()).collect();
    fn go(prefix: &str, tree: &str, out: &mut Vec<String>) {
        match tree.find('{') {
            None => {
                let item = tree.split('@').next().unwrap_or(tree);
                if item == "self" {
                    out.push(prefix.trim_end_matches("::").to_string());
                } else if !item.is_empty() {
                    out.push(format!("{prefix}{item}"));
                }
            }
            Some(open) => {
                let head = &tree[..open];
                let inner = &tree[open + 1..tree.rfind('}').unwrap()];
                let mut depth = 0;
                let mut start = 0;
                let mut parts = Vec::new();
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
                for p in parts {
                    go(&format!("{prefix}{head}"), p, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    go("", &tree, &mut out);
    out
}

/// Inline modules (`mod name { … }`) of the code: their byte ranges and names, so `super::` inside one
/// resolves from there.
fn inline_modules(code: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(i) = code[from..].find("mod ") {
        let at = from + i;
        from = at + 4;
        if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
            continue;
        }
        let rest = &code[at + 4..];
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let after = rest[name.len()..].trim_start();
        if name.is_empty() || !after.starts_with('{') {
            continue;
        }
        let open = at + 4 + rest.len() - after.len();
        let mut depth = 0;
        for (j, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        out.push((open, open + j, name.clone()));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Every crate path the file names, as segments from the crate root (`["modules", "events", "EventBus"]`).
fn paths_named(file: &SourceFile) -> Vec<Vec<String>> {
    let code = code_of(&file.text);
    let inline = inline_modules(&code);
    let mut raw: Vec<(usize, String)> = Vec::new();
    // `use` statements (possibly spanning lines, possibly `pub use`).
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(i) = code[from..].find("use ") {
        let at = from + i;
        let after = &code[at + 4..];
        let end = after.find(';').unwrap_or(after.len());
        from = at + 4 + end;
        if at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
            raw.extend(expand(&after[..end]).into_iter().map(|p| (at, p)));
        }
    }
    // Inline paths: `crate::a::b`, `super::a`.
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_' || bytes[at - 1] == b':') {
                continue;
            }
            let path: String =
                code[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
            raw.push((at, path.trim_end_matches(':').to_string()));
        }
    }
    raw.into_iter()
        .filter_map(|(at, p)| {
            let mut base = file.module.clone();
            base.extend(inline.iter().filter(|(s, e, _)| *s < at && at < *e).map(|(_, _, n)| n.clone()));
            resolve(&base, &p)
        })
        .collect()
}

/// `crate::…` and `super::…` paths (from the module `base`) as segments from the crate root, without a
/// trailing glob; other paths (std, crates, `self`) are not ours to check.
fn resolve(base: &[String], path: &str) -> Option<Vec<String>> {
    let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty() && *s != "*").collect();
    match segments.first() {
        Some(&"crate") => Some(segments[1..].iter().map(|s| s.to_string()).collect()),
        Some(&"super") => {
            let mut base = base.to_vec();
            let mut i = 0;
            while segments.get(i) == Some(&"super") {
                base.pop();
                i += 1;
            }
            base.extend(segments[i..].iter().map(|s| s.to_string()));
            Some(base)
        }
        _ => None,
    }
}

fn is_kernel(segments: &[String]) -> bool {
    segments.first().is_some_and(|s| KERNEL.contains(&s.as_str()))
}

/// The files and folders directly inside `src/modules/<name>/`: its internals.
fn internals(sources: &[SourceFile]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in sources {
        if f.module.len() >= 3 && f.module[0] == "modules" {
            out.entry(f.module[1].clone()).or_default().insert(f.module[2].clone());
        }
    }
    out
}

fn violations(sources: &[SourceFile]) -> Vec<String> {
    let internals = internals(sources);
    let allowed: BTreeMap<&str, &[&str]> = MODULE_DEPENDENCIES.iter().copied().collect();
    let mut found = Vec::new();
    for f in sources {
        let floor = f.module.first().map(String::as_str).unwrap_or("");
        for p in paths_named(f) {
            let Some(top) = p.first().map(String::as_str) else { continue };
            let shown = format!("{}: crate::{}", f.rel, p.join("::"));
            if KERNEL.contains(&floor) {
                if !is_kernel(&p) {
                    found.push(format!("{shown} (the kernel names only the kernel)"));
                }
                continue;
            }
            match floor {
                "http" if !(is_kernel(&p) || top == "http") => {
                    found.push(format!("{shown} (http names only the kernel and itself)"));
                }
                "modules" => {
                    let Some(own) = f.module.get(1) else { continue };
                    let in_api = f.module.get(2).is_some_and(|s| s == "api");
                    match top {
                        "app" | "cli" => found.push(format!("{shown} (a module never reaches up to {top})")),
                        "http" if !in_api => found.push(format!("{shown} (only a module's api files use http)")),
                        "modules" => {
                            let Some(other) = p.get(1) else { continue };
                            if other == own {
                                continue;
                            }
                            let may = allowed.get(own.as_str()).is_some_and(|a| a.contains(&other.as_str()));
                            if !may {
                                found.push(format!("{shown} ({own} may not depend on {other})"));
                            } else if let Some(item) = p.get(2)
                                && internals.get(other).is_some_and(|i| i.contains(item))
                            {
                                found.push(format!("{shown} (past {other}'s facade into its `{item}`)"));
                            }
                        }
                        _ => {}
                    }
                }
                // The composition root and the command line use modules through their facades too.
                "app" | "cli" if top == "modules" => {
                    if let (Some(other), Some(item)) = (p.get(1), p.get(2))
                        && internals.get(other).is_some_and(|i| i.contains(item))
                    {
                        found.push(format!("{shown} (past {other}'s facade into its `{item}`)"));
                    }
                }
                _ => {}
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn every_file_keeps_to_its_floor() {
    let found = violations(&sources());
    assert!(found.is_empty(), "imports that break the floors of ARCHITECTURE.md:\n{}", found.join("\n"));
}

#[test]
fn no_file_outgrows_one_concept() {
    let long: Vec<String> = sources()
        .iter()
        .filter(|f| !LONG_FILES.iter().any(|(name, _)| *name == f.rel))
        .map(|f| (f.rel.clone(), f.text.lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(rel, n)| format!("{rel}: {n} lines"))
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines (split them by concept):\n{}", long.join("\n"));
}

/// The checker itself: each rule fires on a file that breaks it and stays quiet on one that keeps it.
#[test]
fn the_checker_sees_each_kind_of_breach() {
    let file = |rel: &str, text: &str| {
        let mut module: Vec<String> = rel.trim_end_matches(".rs").split('/').map(str::to_string).collect();
        if module.last().is_some_and(|m| m == "mod") {
            module.pop();
        }
        SourceFile { rel: rel.to_string(), module, text: text.to_string() }
    };
    let tree = |extra: Vec<SourceFile>| {
        let mut files = vec![
            file("modules/channels/mod.rs", "mod providers;\npub use providers::Telegram;"),
            file("modules/channels/providers/mod.rs", ""),
            file("modules/contacts/mod.rs", ""),
            file("modules/contacts/store.rs", ""),
            file("modules/events/mod.rs", ""),
        ];
        files.extend(extra);
        violations(&files)
    };
    let breaches = [
        file("http/ctx.rs", "use crate::modules::accounts::Access;"),
        file("http/mod.rs", "fn f(s: crate::app::AppState) {}"),
        file("db/list.rs", "use crate::http::envelope::Page;"),
        file("modules/contacts/service.rs", "use crate::app::AppState;"),
        file("modules/contacts/service.rs", "use crate::http::{envelope, error::AppError};"),
        file("modules/contacts/directory.rs", "use crate::modules::channels::{Channels, providers::Telegram};"),
        file("modules/contacts/directory.rs", "fn f() { super::super::channels::providers::all(); }"),
        file("modules/events/relay.rs", "use crate::modules::contacts::Contacts;"),
        file("modules/channels/service.rs", "use crate::modules::contacts::Directory;"),
        file("app/mod.rs", "use crate::modules::channels::providers::all;"),
    ];
    for b in breaches {
        let rel = b.rel.clone();
        assert!(!tree(vec![b]).is_empty(), "{rel} should break a rule");
    }
    let fine = [
        file("modules/contacts/api/tags.rs", "use crate::http::envelope;\nuse crate::modules::accounts::RequestCtx;"),
        file("modules/contacts/service.rs", "use super::store;\nuse crate::modules::events::{EventBus, Events};"),
        file("modules/channels/service.rs", "// crate::app::AppState in a comment\nconst S: &str = \"crate::http\";"),
        file("http/list.rs", "use crate::db::list::ListQuery;\nuse crate::error::AppError;"),
        file("app/mod.rs", "use crate::modules::channels::{self, Channels};"),
    ];
    for f in fine {
        let rel = f.rel.clone();
        assert_eq!(tree(vec![f]), Vec::<String>::new(), "{rel} keeps the rules");
    }
}
