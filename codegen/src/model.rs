//! The checked model of both documents: the accepted JSON-Schema subset, messages and operations.
//!
//! Everything the emitters need is validated here, once, with errors naming the JSON pointer.

use serde_json::{Map, Number, Value};

use crate::error::{SpecError, child};

/// Prefix of local schema references.
pub(crate) const SCHEMA_REF: &str = "#/components/schemas/";

/// A scalar wire type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar {
    /// `type: string`
    String,
    /// `type: integer, format: int32`
    I32,
    /// `type: integer` (int64)
    I64,
    /// `type: number`
    F64,
    /// `type: boolean`
    Bool,
}

/// The shape of a property (or array item, or map value).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ty {
    /// A scalar.
    Scalar(Scalar),
    /// `$ref` to a component schema.
    Named(String),
    /// `type: array`.
    Array(Box<Prop>),
    /// `type: object` with `additionalProperties: <schema>`.
    Map(Box<Prop>),
}

/// Validation keywords of a property schema.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Limits {
    /// `maxLength` (characters).
    pub max_length: Option<u64>,
    /// `minLength` (characters).
    pub min_length: Option<u64>,
    /// `x-max-bytes` (UTF-8 bytes).
    pub max_bytes: Option<u64>,
    /// `maxItems`.
    pub max_items: Option<u64>,
    /// `minItems`.
    pub min_items: Option<u64>,
    /// `minimum`.
    pub minimum: Option<Number>,
    /// `maximum`.
    pub maximum: Option<Number>,
    /// `pattern` (documentation only).
    pub pattern: Option<String>,
}

impl Limits {
    /// Whether any limit is enforced by generated validation.
    pub(crate) fn enforced(&self) -> bool {
        self.max_length.is_some()
            || self.min_length.is_some()
            || self.max_bytes.is_some()
            || self.max_items.is_some()
            || self.min_items.is_some()
            || self.minimum.is_some()
            || self.maximum.is_some()
    }
}

/// A property schema of the accepted subset.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Prop {
    /// Its shape.
    pub ty: Ty,
    /// Its limits.
    pub limits: Limits,
    /// `format`, if any.
    pub format: Option<String>,
    /// `description`, if any.
    pub description: Option<String>,
}

/// One property of an object schema.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Field {
    /// The JSON name.
    pub wire: String,
    /// Whether it is listed in `required`.
    pub required: bool,
    /// Its schema.
    pub prop: Prop,
}

/// What a component schema is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// An object with properties (a struct).
    Object {
        /// Properties in file order, the `type` tag left out.
        fields: Vec<Field>,
        /// The `const` of the first property `type`, for WebSocket message payloads.
        tag: Option<String>,
    },
    /// A string-keyed map.
    Map(Prop),
    /// A string enum.
    Enum(Vec<String>),
}

/// A named component schema.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Schema {
    /// Its key under `components.schemas`.
    pub name: String,
    /// Its `description`.
    pub description: Option<String>,
    /// Its shape.
    pub kind: Kind,
}

/// A document being read: its file label and root value.
#[derive(Clone, Copy)]
pub(crate) struct Doc<'a> {
    /// The label used in errors, e.g. `spec/asyncapi.yaml`.
    pub file: &'a str,
    /// The parsed document.
    pub root: &'a Value,
}

impl<'a> Doc<'a> {
    /// An error at `pointer`.
    pub(crate) fn err(&self, pointer: &str, message: impl std::fmt::Display) -> SpecError {
        SpecError::invalid(self.file, pointer, message)
    }

    /// The value at `pointer`, if any.
    pub(crate) fn get(&self, pointer: &str) -> Option<&'a Value> {
        self.root.pointer(pointer)
    }

    /// The mapping at `pointer`, or an error naming what was expected.
    pub(crate) fn object(
        &self,
        pointer: &str,
        what: &str,
    ) -> Result<&'a Map<String, Value>, SpecError> {
        match self.get(pointer) {
            Some(Value::Object(map)) => Ok(map),
            Some(_) => Err(self.err(pointer, format!("{what} must be a mapping"))),
            None => Err(self.err(pointer, format!("missing {what}"))),
        }
    }

    /// An optional string member of the mapping at `pointer`.
    pub(crate) fn opt_str(&self, pointer: &str, key: &str) -> Result<Option<&'a str>, SpecError> {
        match self.get(pointer).and_then(|v| v.get(key)) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.err(&child(pointer, key), format!("\"{key}\" must be a string"))),
        }
    }

    /// A required string member of the mapping at `pointer`.
    pub(crate) fn req_str(&self, pointer: &str, key: &str) -> Result<&'a str, SpecError> {
        self.opt_str(pointer, key)?
            .ok_or_else(|| self.err(pointer, format!("missing \"{key}\"")))
    }

    /// Follows `$ref`s (local ones only) from `pointer` until a mapping without `$ref`; returns its pointer.
    pub(crate) fn deref(&self, pointer: &str) -> Result<String, SpecError> {
        let mut current = pointer.to_owned();
        for _ in 0..16 {
            let Some(target) = self.get(&current).and_then(|v| v.get("$ref")) else {
                return Ok(current);
            };
            current = self.ref_target(&child(&current, "$ref"), target)?;
        }
        Err(self.err(pointer, "$ref chain too long (a cycle?)"))
    }

    /// Checks a `$ref` value at `at` and returns the pointer it names.
    pub(crate) fn ref_target(&self, at: &str, target: &Value) -> Result<String, SpecError> {
        let Some(target) = target.as_str() else {
            return Err(self.err(at, "$ref must be a string"));
        };
        let Some(pointer) = target.strip_prefix('#') else {
            return Err(self.err(
                at,
                format!("broken $ref \"{target}\": only local references (#/...) are supported"),
            ));
        };
        if self.get(pointer).is_none() {
            return Err(self.err(at, format!("broken $ref \"{target}\": nothing there")));
        }
        Ok(pointer.to_owned())
    }
}

/// Keywords that may accompany any schema without meaning anything to the compiler.
const DOC_KEYWORDS: &[&str] = &[
    "description",
    "title",
    "example",
    "examples",
    "deprecated",
    "externalDocs",
];

fn check_keywords(
    doc: Doc<'_>,
    pointer: &str,
    map: &Map<String, Value>,
    allowed: &[&str],
) -> Result<(), SpecError> {
    for key in map.keys() {
        if key.starts_with("x-") && key != "x-max-bytes" {
            continue;
        }
        if !allowed.contains(&key.as_str()) && !DOC_KEYWORDS.contains(&key.as_str()) {
            return Err(doc.err(
                &child(pointer, key),
                format!("unsupported keyword \"{key}\""),
            ));
        }
    }
    Ok(())
}

fn opt_u64(
    doc: Doc<'_>,
    pointer: &str,
    map: &Map<String, Value>,
    key: &str,
) -> Result<Option<u64>, SpecError> {
    match map.get(key) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            doc.err(
                &child(pointer, key),
                format!("\"{key}\" must be a non-negative integer"),
            )
        }),
    }
}

fn opt_number(
    doc: Doc<'_>,
    pointer: &str,
    map: &Map<String, Value>,
    key: &str,
    integer: bool,
) -> Result<Option<Number>, SpecError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) if !integer || n.is_i64() || n.is_u64() => Ok(Some(n.clone())),
        Some(_) => Err(doc.err(
            &child(pointer, key),
            format!(
                "\"{key}\" must be {}",
                if integer { "an integer" } else { "a number" }
            ),
        )),
    }
}

fn description(doc: Doc<'_>, pointer: &str) -> Result<Option<String>, SpecError> {
    Ok(doc.opt_str(pointer, "description")?.map(str::to_owned))
}

/// A reference property: `{$ref, description?}` (`key` = `$ref`) or `{allOf: [{$ref}], description?}`
/// (`key` = `allOf`); only `description` and `x-` extensions may stand beside `key`.
fn named_ref(
    doc: Doc<'_>,
    pointer: &str,
    key: &str,
    desc: Option<String>,
) -> Result<Prop, SpecError> {
    let map = doc.object(pointer, "schema")?;
    check_keywords(doc, pointer, map, &[key])?;
    for other in map.keys() {
        if other != key && other != "description" && !other.starts_with("x-") {
            return Err(doc.err(
                &child(pointer, other),
                format!("\"{other}\" next to {key} (only description is allowed)"),
            ));
        }
    }
    let ref_ptr = if key == "$ref" {
        pointer.to_owned()
    } else {
        child(&child(pointer, key), "0")
    };
    let at = child(&ref_ptr, "$ref");
    let target = doc.get(&at).cloned().unwrap_or(Value::Null);
    let target_str = target.as_str().unwrap_or_default();
    let Some(name) = target_str
        .strip_prefix(SCHEMA_REF)
        .filter(|n| !n.contains('/'))
    else {
        return Err(doc.err(
            &at,
            format!("broken $ref \"{target_str}\": must point to #/components/schemas/<Name>"),
        ));
    };
    doc.ref_target(&at, &target)?;
    Ok(Prop {
        ty: Ty::Named(unescape(name)),
        limits: Limits::default(),
        format: None,
        description: desc,
    })
}

/// Parses a property schema (also used for array items, map values, parameters and headers).
/// Returns the schema and its `const`, which only the caller may accept.
pub(crate) fn parse_prop(doc: Doc<'_>, pointer: &str) -> Result<(Prop, Option<String>), SpecError> {
    let map = doc.object(pointer, "schema")?;
    let desc = description(doc, pointer)?;
    if map.contains_key("$ref") {
        return Ok((named_ref(doc, pointer, "$ref", desc)?, None));
    }
    if let Some(all) = map.get("allOf") {
        // `allOf: [{$ref}]` beside a description: the OpenAPI 3.0 way to describe a reference (siblings of a
        // bare `$ref` are ignored by 3.0 tools), compiled exactly like `{$ref, description}`.
        let at = child(pointer, "allOf");
        let single = all.as_array().filter(|items| items.len() == 1);
        if single.is_none() {
            return Err(doc.err(
                &at,
                "\"allOf\" must hold exactly one {$ref} (to describe a reference)",
            ));
        }
        let inner = doc.object(&child(&at, "0"), "schema")?;
        if inner.len() != 1 || !inner.contains_key("$ref") {
            return Err(doc.err(
                &child(&at, "0"),
                "the item of \"allOf\" must be a bare {$ref}",
            ));
        }
        return Ok((named_ref(doc, pointer, "allOf", desc)?, None));
    }
    let ty = match map.get("type") {
        None => return Err(doc.err(pointer, "missing \"type\" (or $ref)")),
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(doc.err(&child(pointer, "type"), "\"type\" must be a single string")),
    };
    let format = doc.opt_str(pointer, "format")?.map(str::to_owned);
    let mut limits = Limits::default();
    let mut constant = None;
    let ty = match ty {
        "string" => {
            if map.contains_key("enum") {
                return Err(doc.err(
                    &child(pointer, "enum"),
                    "unsupported keyword \"enum\" (inline enums are not allowed: declare a named schema and use $ref)",
                ));
            }
            check_keywords(
                doc,
                pointer,
                map,
                &[
                    "type",
                    "maxLength",
                    "minLength",
                    "pattern",
                    "format",
                    "const",
                    "x-max-bytes",
                ],
            )?;
            limits.max_length = opt_u64(doc, pointer, map, "maxLength")?;
            limits.min_length = opt_u64(doc, pointer, map, "minLength")?;
            limits.max_bytes = opt_u64(doc, pointer, map, "x-max-bytes")?;
            limits.pattern = doc.opt_str(pointer, "pattern")?.map(str::to_owned);
            if let Some(c) = map.get("const") {
                constant = Some(
                    c.as_str()
                        .ok_or_else(|| {
                            doc.err(&child(pointer, "const"), "\"const\" must be a string")
                        })?
                        .to_owned(),
                );
            }
            Ty::Scalar(Scalar::String)
        }
        "integer" => {
            check_keywords(doc, pointer, map, &["type", "format", "minimum", "maximum"])?;
            limits.minimum = opt_number(doc, pointer, map, "minimum", true)?;
            limits.maximum = opt_number(doc, pointer, map, "maximum", true)?;
            match format.as_deref() {
                None | Some("int64") => Ty::Scalar(Scalar::I64),
                Some("int32") => Ty::Scalar(Scalar::I32),
                Some(other) => {
                    return Err(doc.err(
                        &child(pointer, "format"),
                        format!("unsupported integer format \"{other}\" (int32 or int64)"),
                    ));
                }
            }
        }
        "number" => {
            check_keywords(doc, pointer, map, &["type", "format", "minimum", "maximum"])?;
            limits.minimum = opt_number(doc, pointer, map, "minimum", false)?;
            limits.maximum = opt_number(doc, pointer, map, "maximum", false)?;
            Ty::Scalar(Scalar::F64)
        }
        "boolean" => {
            check_keywords(doc, pointer, map, &["type"])?;
            Ty::Scalar(Scalar::Bool)
        }
        "array" => {
            check_keywords(
                doc,
                pointer,
                map,
                &["type", "items", "maxItems", "minItems"],
            )?;
            limits.max_items = opt_u64(doc, pointer, map, "maxItems")?;
            limits.min_items = opt_u64(doc, pointer, map, "minItems")?;
            let items_ptr = child(pointer, "items");
            if !map.contains_key("items") {
                return Err(doc.err(pointer, "array without \"items\""));
            }
            let (items, c) = parse_prop(doc, &items_ptr)?;
            if c.is_some() {
                return Err(doc.err(
                    &child(&items_ptr, "const"),
                    "\"const\" is only allowed on the \"type\" tag of WebSocket messages",
                ));
            }
            Ty::Array(Box::new(items))
        }
        "object" => match (map.get("properties"), map.get("additionalProperties")) {
            (None, Some(Value::Object(_))) => {
                check_keywords(doc, pointer, map, &["type", "additionalProperties"])?;
                Ty::Map(Box::new(parse_map_value(doc, pointer)?))
            }
            _ => {
                return Err(doc.err(
                    pointer,
                    "inline object schemas are not allowed: declare it under components.schemas and use $ref",
                ));
            }
        },
        other => return Err(doc.err(&child(pointer, "type"), format!("unknown type \"{other}\""))),
    };
    Ok((
        Prop {
            ty,
            limits,
            format,
            description: desc,
        },
        constant,
    ))
}

fn parse_map_value(doc: Doc<'_>, pointer: &str) -> Result<Prop, SpecError> {
    let value_ptr = child(pointer, "additionalProperties");
    let (value, c) = parse_prop(doc, &value_ptr)?;
    if c.is_some() {
        return Err(doc.err(
            &child(&value_ptr, "const"),
            "\"const\" is only allowed on the \"type\" tag of WebSocket messages",
        ));
    }
    Ok(value)
}

/// Undoes RFC 6901 escaping of one reference token.
pub(crate) fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Parses `components.schemas` of a document, in file order. A missing section is an empty list.
pub(crate) fn parse_schemas(doc: Doc<'_>) -> Result<Vec<Schema>, SpecError> {
    let base = "/components/schemas";
    let Some(section) = doc.get(base) else {
        return Ok(Vec::new());
    };
    let Some(section) = section.as_object() else {
        return Err(doc.err(base, "components.schemas must be a mapping"));
    };
    section.keys().map(|name| parse_schema(doc, name)).collect()
}

fn parse_schema(doc: Doc<'_>, name: &str) -> Result<Schema, SpecError> {
    let pointer = child("/components/schemas", name);
    let map = doc.object(&pointer, "schema")?;
    let desc = description(doc, &pointer)?;
    for composite in ["oneOf", "anyOf", "allOf", "not", "$ref"] {
        if map.contains_key(composite) {
            return Err(doc.err(
                &child(&pointer, composite),
                format!("unsupported keyword \"{composite}\""),
            ));
        }
    }
    let kind = match map.get("type").and_then(Value::as_str) {
        Some("object") => {
            let props = map.get("properties");
            let additional = map.get("additionalProperties");
            match (props, additional) {
                (None, Some(Value::Object(_))) => {
                    check_keywords(doc, &pointer, map, &["type", "additionalProperties"])?;
                    Kind::Map(parse_map_value(doc, &pointer)?)
                }
                (_, Some(Value::Object(_))) => {
                    return Err(doc.err(
                        &child(&pointer, "additionalProperties"),
                        "an object with properties must not have an additionalProperties schema",
                    ));
                }
                (_, Some(Value::Bool(true))) => {
                    return Err(doc.err(
                        &child(&pointer, "additionalProperties"),
                        "additionalProperties: true is not supported",
                    ));
                }
                (_, Some(Value::Bool(false)) | None) => {
                    check_keywords(
                        doc,
                        &pointer,
                        map,
                        &["type", "properties", "required", "additionalProperties"],
                    )?;
                    parse_object(doc, &pointer)?
                }
                (_, Some(_)) => {
                    return Err(doc.err(
                        &child(&pointer, "additionalProperties"),
                        "additionalProperties must be false or a schema",
                    ));
                }
            }
        }
        Some("string") if map.contains_key("enum") => {
            check_keywords(doc, &pointer, map, &["type", "enum"])?;
            let enum_ptr = child(&pointer, "enum");
            let Some(values) = map.get("enum").and_then(Value::as_array) else {
                return Err(doc.err(&enum_ptr, "\"enum\" must be a list of strings"));
            };
            let mut out: Vec<String> = Vec::new();
            for (i, v) in values.iter().enumerate() {
                let at = child(&enum_ptr, &i.to_string());
                let s = v
                    .as_str()
                    .ok_or_else(|| doc.err(&at, "enum values must be strings"))?;
                if out.iter().any(|o| o == s) {
                    return Err(doc.err(&at, format!("duplicate enum value \"{s}\"")));
                }
                if out
                    .iter()
                    .any(|o| crate::names::type_name(o) == crate::names::type_name(s))
                {
                    return Err(doc.err(
                        &at,
                        format!(
                            "enum value \"{s}\" gives the same Rust variant name as another value"
                        ),
                    ));
                }
                out.push(s.to_owned());
            }
            if out.is_empty() {
                return Err(doc.err(&enum_ptr, "empty enum"));
            }
            Kind::Enum(out)
        }
        Some(other @ ("string" | "integer" | "number" | "boolean" | "array")) => {
            return Err(doc.err(
                &pointer,
                format!("a component schema must be an object, a map or a string enum, not a bare {other}"),
            ));
        }
        Some(other) => {
            return Err(doc.err(
                &child(&pointer, "type"),
                format!("unknown type \"{other}\""),
            ));
        }
        None => return Err(doc.err(&pointer, "missing \"type\"")),
    };
    Ok(Schema {
        name: name.to_owned(),
        description: desc,
        kind,
    })
}

fn parse_object(doc: Doc<'_>, pointer: &str) -> Result<Kind, SpecError> {
    let props_ptr = child(pointer, "properties");
    let required_ptr = child(pointer, "required");
    let props = match doc.get(&props_ptr) {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(doc.err(&props_ptr, "\"properties\" must be a mapping")),
    };
    let mut required: Vec<&str> = Vec::new();
    if let Some(list) = doc.get(&required_ptr) {
        let Some(list) = list.as_array() else {
            return Err(doc.err(&required_ptr, "\"required\" must be a list"));
        };
        for (i, r) in list.iter().enumerate() {
            let at = child(&required_ptr, &i.to_string());
            let r = r
                .as_str()
                .ok_or_else(|| doc.err(&at, "\"required\" entries must be strings"))?;
            if !props.contains_key(r) {
                return Err(doc.err(
                    &at,
                    format!("required property \"{r}\" is not declared in properties"),
                ));
            }
            required.push(r);
        }
    }
    let mut fields: Vec<Field> = Vec::new();
    let mut tag = None;
    for (index, wire) in props.keys().enumerate() {
        let at = child(&props_ptr, wire);
        let (prop, constant) = parse_prop(doc, &at)?;
        let is_required = required.contains(&wire.as_str());
        if let Some(constant) = constant {
            if wire != "type" || index != 0 {
                return Err(doc.err(
                    &child(&at, "const"),
                    "\"const\" is only allowed on the \"type\" tag of WebSocket messages (the first property, named type)",
                ));
            }
            if !is_required {
                return Err(doc.err(&at, "the \"type\" tag must be listed in \"required\""));
            }
            tag = Some(constant);
            continue;
        }
        let rust = crate::names::field(wire);
        if let Some(clash) = fields.iter().find(|f| crate::names::field(&f.wire) == rust) {
            return Err(doc.err(
                &at,
                format!(
                    "property \"{wire}\" gives the same Rust field name as \"{}\"",
                    clash.wire
                ),
            ));
        }
        fields.push(Field {
            wire: wire.clone(),
            required: is_required,
            prop,
        });
    }
    Ok(Kind::Object { fields, tag })
}

/// Checks that every schema has a Rust type name of its own.
pub(crate) fn check_type_names(
    doc: Doc<'_>,
    schemas: &[Schema],
    reserved: &[&str],
) -> Result<(), SpecError> {
    let mut seen: Vec<(String, &str)> = Vec::new();
    for s in schemas {
        let rust = crate::names::type_name(&s.name).unraw().to_owned();
        let at = child("/components/schemas", &s.name);
        if reserved.contains(&rust.as_str()) {
            return Err(doc.err(
                &at,
                format!(
                    "schema name \"{}\" clashes with the generated type {rust}",
                    s.name
                ),
            ));
        }
        if let Some((_, other)) = seen.iter().find(|(r, _)| *r == rust) {
            return Err(doc.err(
                &at,
                format!(
                    "schema \"{}\" gives the same Rust type name as \"{other}\"",
                    s.name
                ),
            ));
        }
        seen.push((rust, &s.name));
    }
    Ok(())
}
