//! Breaking-change check of the AsyncAPI document against an earlier release of it (`chatbox-codegen compat`).
//!
//! Every message of the old document (by direction and `type`) must still exist, and its payload schema
//! must accept what the old one promised: no removed field, no changed type or format, no narrowed limit
//! (`maxLength`, `maximum`, `x-max-bytes`, ... lowered or added; `minLength`, `minimum`, ... raised or
//! added), no field newly required, no removed or changed enum value or `const`. The same rules apply in
//! both directions (a conservative reading: a client built for the old document keeps working only if its
//! frames still validate and it still understands every frame it gets). A break is accepted only when the
//! major part of `info.version` changed.

use std::collections::HashSet;

use serde_json::Value;

use crate::SpecError;
use crate::asyncapi::{self, Direction};
use crate::model::Doc;

/// One incompatible change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// Where: the message (`server message ai_response`) and the field path inside its payload.
    pub at: String,
    /// What changed.
    pub what: String,
}

/// The outcome of comparing two versions of the AsyncAPI document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `info.version` of the old document.
    pub old_version: String,
    /// `info.version` of the new document.
    pub new_version: String,
    /// Every incompatible change, in message order.
    pub breaks: Vec<Break>,
}

impl Report {
    /// Whether the major part of `info.version` (the digits before the first `.`) changed.
    pub fn major_changed(&self) -> bool {
        major(&self.old_version) != major(&self.new_version)
    }

    /// Whether the new document may be released: no break, or a major version change.
    pub fn passes(&self) -> bool {
        self.breaks.is_empty() || self.major_changed()
    }
}

fn major(version: &str) -> &str {
    version.split('.').next().unwrap_or_default().trim()
}

/// Compares two AsyncAPI documents (YAML text; the labels name them in errors and in the report).
pub fn check_asyncapi(
    old: &str,
    old_label: &str,
    new: &str,
    new_label: &str,
) -> Result<Report, SpecError> {
    let old_root = crate::yaml::parse(old_label, old)?;
    let new_root = crate::yaml::parse(new_label, new)?;
    let old_doc = Doc {
        file: old_label,
        root: &old_root,
    };
    let new_doc = Doc {
        file: new_label,
        root: &new_root,
    };
    let old_api = asyncapi::parse(old_doc)?;
    let new_api = asyncapi::parse(new_doc)?;
    let mut breaks = Vec::new();
    for (direction, old_list, new_list) in [
        (Direction::Server, &old_api.server, &new_api.server),
        (Direction::Client, &old_api.client, &new_api.client),
    ] {
        for message in old_list {
            let at = format!("{} message {}", direction.as_str(), message.name);
            let Some(now) = new_list.iter().find(|m| m.name == message.name) else {
                breaks.push(Break {
                    at,
                    what: "message removed".to_owned(),
                });
                continue;
            };
            let mut walk = Walk {
                old: old_doc,
                new: new_doc,
                breaks: &mut breaks,
                seen: HashSet::new(),
                message: at,
            };
            walk.schema(&schema_ref(&message.schema), &schema_ref(&now.schema), "");
        }
    }
    Ok(Report {
        old_version: old_api.version.unwrap_or_default(),
        new_version: new_api.version.unwrap_or_default(),
        breaks,
    })
}

fn schema_ref(name: &str) -> Value {
    serde_json::json!({ "$ref": format!("#/components/schemas/{}", name.replace('~', "~0").replace('/', "~1")) })
}

/// Limits whose lowering (or appearance) narrows what is accepted.
const UPPER: &[&str] = &[
    "maxLength",
    "maxItems",
    "maxProperties",
    "maximum",
    "exclusiveMaximum",
    "x-max-bytes",
];
/// Limits whose raising (or appearance) narrows what is accepted.
const LOWER: &[&str] = &[
    "minLength",
    "minItems",
    "minProperties",
    "minimum",
    "exclusiveMinimum",
];

/// One comparison of a message's payload, old against new.
struct Walk<'a, 'b> {
    old: Doc<'a>,
    new: Doc<'a>,
    breaks: &'b mut Vec<Break>,
    /// Pairs of named schemas already compared (recursive schemas end here).
    seen: HashSet<(String, String)>,
    message: String,
}

impl Walk<'_, '_> {
    fn report(&mut self, path: &str, what: String) {
        let at = if path.is_empty() {
            self.message.clone()
        } else {
            format!("{} field {path}", self.message)
        };
        self.breaks.push(Break { at, what });
    }

    fn schema(&mut self, old: &Value, new: &Value, path: &str) {
        let (old, old_name) = resolve(self.old, old);
        let (new, new_name) = resolve(self.new, new);
        if let (Some(o), Some(n)) = (&old_name, &new_name)
            && !self.seen.insert((o.clone(), n.clone()))
        {
            return;
        }
        let text = |v: Option<&Value>| v.map_or_else(|| "none".to_owned(), Value::to_string);
        for key in ["type", "format", "const"] {
            let (o, n) = (old.get(key), new.get(key));
            if o != n {
                self.report(
                    path,
                    format!("{key} changed from {} to {}", text(o), text(n)),
                );
            }
        }
        for key in UPPER {
            if let Some(n) = new.get(*key).and_then(Value::as_f64) {
                match old.get(*key).and_then(Value::as_f64) {
                    Some(o) if n >= o => {}
                    o => self.report(
                        path,
                        format!(
                            "{key} narrowed from {} to {n}",
                            o.map_or("none".to_owned(), |o| o.to_string())
                        ),
                    ),
                }
            }
        }
        for key in LOWER {
            if let Some(n) = new.get(*key).and_then(Value::as_f64) {
                match old.get(*key).and_then(Value::as_f64) {
                    Some(o) if n <= o => {}
                    o => self.report(
                        path,
                        format!(
                            "{key} narrowed from {} to {n}",
                            o.map_or("none".to_owned(), |o| o.to_string())
                        ),
                    ),
                }
            }
        }
        if let Some(pattern) = new.get("pattern")
            && old.get("pattern") != Some(pattern)
        {
            self.report(path, format!("pattern changed to {pattern}"));
        }
        self.enums(&old, &new, path);
        self.objects(&old, &new, path);
        if let (Some(o), Some(n)) = (old.get("items"), new.get("items")) {
            self.schema(o, n, &format!("{path}[]"));
        }
        if let (Some(o @ Value::Object(_)), Some(n @ Value::Object(_))) = (
            old.get("additionalProperties"),
            new.get("additionalProperties"),
        ) {
            self.schema(o, n, &format!("{path}{{*}}"));
        }
    }

    fn enums(&mut self, old: &Value, new: &Value, path: &str) {
        let Some(values) = new.get("enum").and_then(Value::as_array) else {
            return;
        };
        match old.get("enum").and_then(Value::as_array) {
            None => self.report(path, "enum added (the values are narrowed)".to_owned()),
            Some(before) => {
                for value in before.iter().filter(|v| !values.contains(v)) {
                    self.report(path, format!("enum value {value} removed or changed"));
                }
            }
        }
    }

    fn objects(&mut self, old: &Value, new: &Value, path: &str) {
        let names = |v: &Value| -> Vec<String> {
            v.get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        };
        let was_required = names(old);
        for field in names(new) {
            if !was_required.contains(&field) {
                self.report(
                    &join(path, &field),
                    "field newly required (or new required field)".to_owned(),
                );
            }
        }
        let Some(old_props) = old.get("properties").and_then(Value::as_object) else {
            return;
        };
        let empty = serde_json::Map::new();
        let new_props = new
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        for (field, schema) in old_props {
            let at = join(path, field);
            match new_props.get(field) {
                None => self.report(&at, "field removed".to_owned()),
                Some(now) => self.schema(schema, now, &at),
            }
        }
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// Follows `$ref` (and a described reference, `allOf: [{$ref}]`) to the schema; returns it with the name
/// of the last named schema followed. An unresolvable reference yields `null` (the parser rejected those).
fn resolve(doc: Doc<'_>, schema: &Value) -> (Value, Option<String>) {
    let mut current = schema.clone();
    let mut name = None;
    for _ in 0..32 {
        let next = match (current.get("$ref"), current.get("allOf")) {
            (Some(Value::String(target)), _) => target.clone(),
            (None, Some(Value::Array(items))) if items.len() == 1 => {
                current = items[0].clone();
                continue;
            }
            _ => break,
        };
        let pointer = next.trim_start_matches('#');
        name = Some(pointer.to_owned());
        current = doc.root.pointer(pointer).cloned().unwrap_or(Value::Null);
    }
    (current, name)
}
