//! Keeps the configuration reference in `docs/operations.md` in step with the code: every environment
//! variable the configuration code reads and every config file key (the serde field names of the section
//! structs) is documented there, and everything documented there is read by the code.
//!
//! The code side is found by scanning the source of the configuration modules (non-test part only; the
//! shared `settings_kit` names no variable or key of its own):
//! `env.get("NAME")` and helpers called as `helper(env, "NAME", ..)`, the `LLM_PROVIDER_<n>_<FIELD>`
//! family from its field list, and the fields of every `Deserialize` struct, nested from `RawConfig`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The configuration source files scanned: everything under `src/config/`, and each configured module's
/// `config.rs` or `config/` folder (those that exist).
fn config_sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        "src/config",
        "src/llm/config",
        "src/store/config",
        "src/notify/config",
        "src/cluster/config",
    ] {
        collect_rust_files(&root.join(dir), &mut files);
    }
    for extra in [
        "src/llm/config.rs",
        "src/store/config.rs",
        "src/notify/config.rs",
        "src/cluster/config.rs",
        "src/files/config.rs",
    ] {
        let path = root.join(extra);
        if path.exists() {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Adds the `.rs` files under `dir` (recursively, if it exists) to `files`.
fn collect_rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.map(|e| e.unwrap().path()) {
        if path.is_dir() {
            collect_rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The part of a source file before its unit tests, with the line breaks rustfmt puts into call chains
/// and argument lists removed (whitespace after `(` and before `.`), so `env\n    .get("X")` reads as
/// `env.get("X")`.
fn non_test_source(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            let mut run = String::from(c);
            while let Some(&next) = chars.peek().filter(|n| n.is_whitespace()) {
                run.push(next);
                chars.next();
            }
            if out.ends_with('(') || chars.peek() == Some(&'.') {
                continue;
            }
            out.push_str(&run);
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads the string literal starting at `text` (after optional whitespace); `None` if there is none.
fn literal_at(text: &str) -> Option<&str> {
    let rest = text.trim_start().strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(&rest[..end])
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
}

/// Every environment variable name the configuration code reads.
pub fn env_vars_read_by_code() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for path in config_sources() {
        let text = non_test_source(&path);
        for pattern in ["env.get(", "(env,"] {
            for (at, _) in text.match_indices(pattern) {
                if let Some(name) =
                    literal_at(&text[at + pattern.len()..]).filter(|n| is_env_name(n))
                {
                    names.insert(name.to_string());
                }
            }
        }
        if text.contains("with_prefix(\"LLM_PROVIDER_\")") {
            let start = text
                .find("const ENV_FIELDS")
                .expect("ENV_FIELDS next to the LLM_PROVIDER_ prefix");
            let list = &text[start..];
            let list = &list[list.find("= &[").unwrap() + 4..list.find("];").unwrap()];
            for field in list.split(',').filter_map(|item| literal_at(item)) {
                names.insert(format!("LLM_PROVIDER_<n>_{field}"));
            }
        }
    }
    names
}

/// A `Deserialize` struct's fields: (serde name, type text).
type Fields = Vec<(String, String)>;

/// Every struct deriving `Deserialize` in the configuration sources, by name.
fn config_structs() -> BTreeMap<String, Fields> {
    let mut structs = BTreeMap::new();
    for path in config_sources() {
        let text = non_test_source(&path);
        let mut rest = text.as_str();
        while let Some(at) = rest.find("Deserialize)]") {
            rest = &rest[at..];
            let Some(decl) = rest.find("pub struct ") else {
                break;
            };
            // Only when the struct follows this derive directly (attributes and doc comments between).
            let between = &rest[..decl];
            if between.contains("enum ") || between.contains("fn ") || between.contains('}') {
                rest = &rest[1..];
                continue;
            }
            let after = &rest[decl + "pub struct ".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let Some(open) = after.find('{') else { break };
            let close = after.find("\n}").unwrap();
            let body = &after[open + 1..close];
            structs.insert(name, parse_fields(body));
            rest = &after[close..];
        }
    }
    structs
}

/// Parses the fields of a struct body, applying `#[serde(rename = "..")]` and leaving out
/// `#[serde(skip)]` fields (filled by the code, not read from the file).
fn parse_fields(body: &str) -> Fields {
    let mut fields = Vec::new();
    let mut rename: Option<String> = None;
    let mut skip = false;
    for line in body.lines().map(str::trim) {
        if line.starts_with("#[serde(") {
            if let Some(at) = line.find("rename = ") {
                rename = literal_at(&line[at + "rename = ".len()..]).map(String::from);
            }
            skip = skip || line == "#[serde(skip)]";
            continue;
        }
        if line.starts_with("//") || line.starts_with("#[") || line.is_empty() {
            continue;
        }
        // `pub`, `pub(super)` or `pub(crate)` before the field name.
        let line = match line.strip_prefix("pub") {
            Some(rest) if rest.starts_with('(') => rest
                .split_once(')')
                .map_or(line, |(_, after)| after.trim_start()),
            Some(rest) if rest.starts_with(' ') => rest.trim_start(),
            _ => line,
        };
        if let Some((name, ty)) = line.split_once(':') {
            let name = name.trim();
            if !std::mem::take(&mut skip)
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                fields.push((
                    rename.take().unwrap_or_else(|| name.to_string()),
                    ty.trim().trim_end_matches(',').to_string(),
                ));
            }
        }
        rename = None;
    }
    fields
}

/// The struct a field type names, if it is one of the config structs (also inside `Option<>`/`Vec<>`).
fn nested<'a>(ty: &str, structs: &'a BTreeMap<String, Fields>) -> Option<(&'a str, bool)> {
    let list = ty.starts_with("Vec<");
    let inner = ty
        .trim_start_matches("Option<")
        .trim_start_matches("Vec<")
        .trim_end_matches('>');
    structs
        .get_key_value(inner)
        .map(|(name, _)| (name.as_str(), list))
}

/// Every config file key as a dotted path (`llm.providers[].apiKey`), from `RawConfig` down. A struct met
/// again under another path (`llm.providers[].retry`) contributes only that path: its keys are listed once.
pub fn file_keys_read_by_code() -> BTreeSet<String> {
    let structs = config_structs();
    assert!(
        structs.contains_key("RawConfig"),
        "RawConfig not found in the config sources"
    );
    let mut keys = BTreeSet::new();
    let mut expanded = BTreeSet::new();
    let mut queue = std::collections::VecDeque::from([(String::new(), "RawConfig".to_string())]);
    expanded.insert("RawConfig".to_string());
    while let Some((prefix, name)) = queue.pop_front() {
        for (field, ty) in &structs[&name] {
            let path = if prefix.is_empty() {
                field.clone()
            } else {
                format!("{prefix}.{field}")
            };
            match nested(ty, &structs) {
                Some((inner, list)) => {
                    let path = if list { format!("{path}[]") } else { path };
                    if prefix.is_empty() {
                        // Top-level sections are the headings of the reference, not keys.
                    } else {
                        keys.insert(path.clone());
                    }
                    if expanded.insert(inner.to_string()) {
                        queue.push_back((path, inner.to_string()));
                    }
                }
                None => {
                    keys.insert(path);
                }
            }
        }
    }
    keys
}

/// The configuration reference part of `docs/operations.md`: the tables' first column (file keys) and
/// second column (environment variables), as backticked names.
fn documented() -> (BTreeSet<String>, BTreeSet<String>) {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"))
            .unwrap();
    let start = doc
        .find("<!-- config-reference:start -->")
        .expect("config-reference:start marker");
    let end = doc
        .find("<!-- config-reference:end -->")
        .expect("config-reference:end marker");
    let mut keys = BTreeSet::new();
    let mut vars = BTreeSet::new();
    for line in doc[start..end].lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').collect();
        if cells.len() < 4 || cells[1].trim_start().starts_with("---") {
            continue;
        }
        keys.extend(backticked(cells[1]));
        vars.extend(backticked(cells[2]));
    }
    (keys, vars)
}

fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn the_scanner_finds_known_names() {
    let vars = env_vars_read_by_code();
    for name in [
        "JWT_SECRET",
        "CHATBOX_PATH_PREFIX",
        "ENCRYPTION_KEY",
        "MAX_MESSAGE_SIZE",
        "LLM_PROVIDER_<n>_API_KEY",
        "MONGO_URI",
        "SMS_RETRIES",
    ] {
        assert!(
            vars.contains(name),
            "{name} not found by the scanner: {vars:?}"
        );
    }
    let keys = file_keys_read_by_code();
    assert!(
        !keys.iter().any(|k| k.starts_with("notification.sms")),
        "a #[serde(skip)] field is not a key: {keys:?}"
    );
    for key in [
        "server.port",
        "chatbox.jwt_secret",
        "chatbox.websocket.read_buffer_size",
        "llm.providers[].apiKey",
        "llm.providers[].type",
        "llm.retry.max_attempts",
        "store.encryption_key",
        "sms.account_sid",
        "notification.admin_phones",
    ] {
        assert!(
            keys.contains(key),
            "{key} not found by the scanner: {keys:?}"
        );
    }
}

#[test]
fn every_environment_variable_the_code_reads_is_documented_and_vice_versa() {
    let code = env_vars_read_by_code();
    let (_, doc) = documented();
    let missing: Vec<_> = code.difference(&doc).collect();
    assert!(
        missing.is_empty(),
        "read by the code but not in docs/operations.md: {missing:?}"
    );
    let stale: Vec<_> = doc.difference(&code).collect();
    assert!(
        stale.is_empty(),
        "in docs/operations.md but not read by the code: {stale:?}"
    );
}

#[test]
fn every_config_file_key_is_documented_and_vice_versa() {
    let code = file_keys_read_by_code();
    let (doc, _) = documented();
    let missing: Vec<_> = code.difference(&doc).collect();
    assert!(
        missing.is_empty(),
        "config keys not in docs/operations.md: {missing:?}"
    );
    let stale: Vec<_> = doc.difference(&code).collect();
    assert!(
        stale.is_empty(),
        "keys in docs/operations.md that the config does not have: {stale:?}"
    );
}
