//! The OpenAPI document: operations, parameters, responses and headers, checked against the contract.

use serde_json::Value;

use crate::error::{SpecError, child};
use crate::model::{Doc, Prop, Schema, Ty, parse_prop, parse_schemas};

/// A path or query parameter.
#[derive(Debug, Clone)]
pub(crate) struct Parameter {
    /// `name`.
    pub name: String,
    /// `in` (`path` or `query`).
    pub location: String,
    /// `required`.
    pub required: bool,
    /// `description`.
    pub description: Option<String>,
    /// Its scalar schema.
    pub prop: Prop,
}

/// A declared response header.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    /// The header name, e.g. `Retry-After`.
    pub name: String,
    /// `required`.
    pub required: bool,
    /// `description`.
    pub description: Option<String>,
    /// Its scalar schema.
    pub prop: Prop,
}

/// What a response carries.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// No content.
    Empty,
    /// `application/json` with this schema.
    Json(Box<Prop>),
    /// `text/plain` string.
    Text,
    /// Any other media type (bytes): only on routes served outside the HTTP API (`x-outside-http-api`).
    Binary(String),
}

/// One response of an operation.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    /// The status code.
    pub status: u16,
    /// `description`.
    pub description: String,
    /// The body.
    pub body: Body,
    /// Declared headers, in file order.
    pub headers: Vec<Header>,
}

/// One operation.
#[derive(Debug, Clone)]
pub(crate) struct Operation {
    /// `operationId`.
    pub id: String,
    /// Upper-case HTTP method.
    pub method: String,
    /// The path as written (without the server prefix).
    pub path: String,
    /// `summary`.
    pub summary: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `tags`.
    pub tags: Vec<String>,
    /// Security scheme names required (empty = public).
    pub security: Vec<String>,
    /// Parameters (path-level first, then operation-level).
    pub parameters: Vec<Parameter>,
    /// Responses sorted by status.
    pub responses: Vec<Response>,
    /// A protocol upgrade (a `101` response is declared) or a route marked `x-outside-http-api: true` (the
    /// published schemas): served outside the HTTP API (by the WebSocket transport or the contract routes),
    /// so no response type is generated for it.
    pub upgrade: bool,
}

/// The checked OpenAPI document.
#[derive(Debug, Clone)]
pub(crate) struct OpenApi {
    /// `info.title`.
    pub title: Option<String>,
    /// `info.version`.
    pub version: Option<String>,
    /// `info.description`.
    pub description: Option<String>,
    /// `servers[*].url`.
    pub servers: Vec<String>,
    /// `components.securitySchemes`, in file order.
    pub security: Vec<(String, Value)>,
    /// Component schemas in file order.
    pub schemas: Vec<Schema>,
    /// Operations in file order.
    pub operations: Vec<Operation>,
    /// Top-level `tags`: name and description, in file order.
    pub tags: Vec<(String, Option<String>)>,
}

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Reads and checks the OpenAPI document.
pub(crate) fn parse(doc: Doc<'_>) -> Result<OpenApi, SpecError> {
    let schemas = parse_schemas(doc)?;
    for schema in &schemas {
        if let crate::model::Kind::Object { tag: Some(_), .. } = schema.kind {
            let at = child(
                &child(&child("/components/schemas", &schema.name), "properties"),
                "type",
            );
            return Err(doc.err(
                &child(&at, "const"),
                "\"const\" is only allowed on the \"type\" tag of WebSocket messages",
            ));
        }
    }
    let mut reserved: Vec<String> = Vec::new();
    let mut operations = Vec::new();
    let global_security = security_names(doc, "/security")?;
    if let Some(paths) = doc.get("/paths") {
        let Some(paths) = paths.as_object() else {
            return Err(doc.err("/paths", "\"paths\" must be a mapping"));
        };
        for (path, item) in paths {
            let path_ptr = child("/paths", path);
            let Some(item) = item.as_object() else {
                return Err(doc.err(&path_ptr, "path item must be a mapping"));
            };
            let shared = parse_parameters(doc, &child(&path_ptr, "parameters"))?;
            for (method, _) in item.iter().filter(|(k, _)| METHODS.contains(&k.as_str())) {
                let op_ptr = child(&path_ptr, method);
                let op = parse_operation(doc, &op_ptr, path, method, &shared, &global_security)?;
                let response_type = format!("{}Response", crate::names::pascal(&op.id));
                if reserved.contains(&response_type) {
                    return Err(doc.err(
                        &child(&op_ptr, "operationId"),
                        format!("duplicate operationId \"{}\"", op.id),
                    ));
                }
                reserved.push(response_type);
                operations.push(op);
            }
        }
    }
    let reserved_refs: Vec<&str> = reserved.iter().map(String::as_str).collect();
    let mut all_reserved = reserved_refs.clone();
    all_reserved.push("FieldViolation");
    crate::model::check_type_names(doc, &schemas, &all_reserved)?;
    let mut servers = Vec::new();
    if let Some(list) = doc.get("/servers").and_then(Value::as_array) {
        for i in 0..list.len() {
            servers.push(
                doc.req_str(&child("/servers", &i.to_string()), "url")?
                    .to_owned(),
            );
        }
    }
    let security = doc
        .get("/components/securitySchemes")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let tags = doc
        .get("/tags")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|tag| {
                    let name = tag.get("name")?.as_str()?.to_owned();
                    let description = tag
                        .get("description")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    Some((name, description))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(OpenApi {
        title: doc.opt_str("/info", "title")?.map(str::to_owned),
        version: doc.opt_str("/info", "version")?.map(str::to_owned),
        description: doc.opt_str("/info", "description")?.map(str::to_owned),
        servers,
        security,
        schemas,
        operations,
        tags,
    })
}

fn security_names(doc: Doc<'_>, pointer: &str) -> Result<Option<Vec<String>>, SpecError> {
    let Some(list) = doc.get(pointer) else {
        return Ok(None);
    };
    let Some(list) = list.as_array() else {
        return Err(doc.err(pointer, "\"security\" must be a list"));
    };
    let mut names = Vec::new();
    for (i, req) in list.iter().enumerate() {
        let Some(req) = req.as_object() else {
            return Err(doc.err(
                &child(pointer, &i.to_string()),
                "security requirement must be a mapping",
            ));
        };
        for name in req.keys() {
            if doc
                .get(&child("/components/securitySchemes", name))
                .is_none()
            {
                return Err(doc.err(
                    &child(&child(pointer, &i.to_string()), name),
                    format!("unknown security scheme \"{name}\""),
                ));
            }
            names.push(name.clone());
        }
    }
    Ok(Some(names))
}

fn parse_parameters(doc: Doc<'_>, pointer: &str) -> Result<Vec<Parameter>, SpecError> {
    let Some(list) = doc.get(pointer) else {
        return Ok(Vec::new());
    };
    let Some(list) = list.as_array() else {
        return Err(doc.err(pointer, "\"parameters\" must be a list"));
    };
    let mut out: Vec<Parameter> = Vec::new();
    for i in 0..list.len() {
        let p = doc.deref(&child(pointer, &i.to_string()))?;
        let name = doc.req_str(&p, "name")?.to_owned();
        let location = doc.req_str(&p, "in")?.to_owned();
        if location != "path" && location != "query" {
            return Err(doc.err(
                &child(&p, "in"),
                format!("parameter location \"{location}\" is not supported (path or query)"),
            ));
        }
        let required = match doc.get(&child(&p, "required")) {
            None => location == "path",
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(doc.err(&child(&p, "required"), "\"required\" must be a boolean"));
            }
        };
        let schema_ptr = child(&p, "schema");
        if doc.get(&schema_ptr).is_none() {
            return Err(doc.err(&p, "parameter without \"schema\""));
        }
        let prop = scalar(doc, &schema_ptr)?;
        if out.iter().any(|o| o.name == name && o.location == location) {
            return Err(doc.err(&p, format!("duplicate parameter \"{name}\"")));
        }
        out.push(Parameter {
            description: doc.opt_str(&p, "description")?.map(str::to_owned),
            name,
            location,
            required,
            prop,
        });
    }
    Ok(out)
}

fn scalar(doc: Doc<'_>, pointer: &str) -> Result<Prop, SpecError> {
    let (prop, constant) = parse_prop(doc, pointer)?;
    if constant.is_some() {
        return Err(doc.err(
            &child(pointer, "const"),
            "\"const\" is only allowed on the \"type\" tag of WebSocket messages",
        ));
    }
    if !matches!(prop.ty, Ty::Scalar(_)) {
        return Err(doc.err(
            pointer,
            "only scalar schemas (string, integer, number, boolean) are allowed here",
        ));
    }
    Ok(prop)
}

fn parse_operation(
    doc: Doc<'_>,
    pointer: &str,
    path: &str,
    method: &str,
    shared: &[Parameter],
    global_security: &Option<Vec<String>>,
) -> Result<Operation, SpecError> {
    doc.object(pointer, "operation")?;
    // `x-outside-http-api: true` marks a route served beside the HTTP API, like the WebSocket upgrade: the
    // spec documents it (with any body and media types); the generated operation layer leaves it out.
    let outside = doc.get(&child(pointer, "x-outside-http-api")) == Some(&Value::Bool(true));
    if !outside && doc.get(&child(pointer, "requestBody")).is_some() {
        // The generated operation layer passes parameters only; a body would be silently dropped.
        return Err(doc.err(
            &child(pointer, "requestBody"),
            "request bodies are not supported by the generated operation layer",
        ));
    }
    let id = doc.req_str(pointer, "operationId")?.to_owned();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(doc.err(
            &child(pointer, "operationId"),
            format!("operationId \"{id}\" must be lowerCamelCase"),
        ));
    }
    let mut tags = Vec::new();
    if let Some(list) = doc.get(&child(pointer, "tags")).and_then(Value::as_array) {
        tags = list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
    }
    let mut parameters: Vec<Parameter> = shared.to_vec();
    for p in parse_parameters(doc, &child(pointer, "parameters"))? {
        parameters.retain(|o| !(o.name == p.name && o.location == p.location));
        parameters.push(p);
    }
    let security = match security_names(doc, &child(pointer, "security"))? {
        Some(names) => names,
        None => global_security.clone().unwrap_or_default(),
    };
    let responses_ptr = child(pointer, "responses");
    let responses_map = doc.object(&responses_ptr, "responses")?;
    let mut responses = Vec::new();
    for status in responses_map.keys() {
        let at = child(&responses_ptr, status);
        let code = status
            .parse::<u16>()
            .ok()
            .filter(|c| (100..600).contains(c))
            .ok_or_else(|| {
                doc.err(
                    &at,
                    format!(
                        "response status \"{status}\" is not supported (use explicit status codes)"
                    ),
                )
            })?;
        responses.push(parse_response(doc, &at, code, outside)?);
    }
    if responses.is_empty() {
        return Err(doc.err(&responses_ptr, "operation without responses"));
    }
    responses.sort_by_key(|r| r.status);
    let upgrade = outside || responses.iter().any(|r| r.status == 101);
    Ok(Operation {
        summary: doc.opt_str(pointer, "summary")?.map(str::to_owned),
        description: doc.opt_str(pointer, "description")?.map(str::to_owned),
        id,
        method: method.to_ascii_uppercase(),
        path: path.to_owned(),
        tags,
        security,
        parameters,
        responses,
        upgrade,
    })
}

fn parse_response(
    doc: Doc<'_>,
    at: &str,
    status: u16,
    outside: bool,
) -> Result<Response, SpecError> {
    let pointer = doc.deref(at)?;
    doc.object(&pointer, "response")?;
    let description = doc.req_str(&pointer, "description")?.to_owned();
    let content_ptr = child(&pointer, "content");
    let body = match doc.get(&content_ptr) {
        None => Body::Empty,
        Some(Value::Object(content)) => {
            if content.len() != 1 {
                return Err(doc.err(&content_ptr, "a response must have exactly one media type"));
            }
            let (media, _) = content
                .iter()
                .next()
                .ok_or_else(|| doc.err(&content_ptr, "empty content"))?;
            let media_ptr = child(&content_ptr, media);
            let schema_ptr = child(&media_ptr, "schema");
            if doc.get(&schema_ptr).is_none() {
                return Err(doc.err(&media_ptr, "media type without \"schema\""));
            }
            let (prop, constant) = parse_prop(doc, &schema_ptr)?;
            if constant.is_some() {
                return Err(doc.err(
                    &child(&schema_ptr, "const"),
                    "\"const\" is only allowed on the \"type\" tag of WebSocket messages",
                ));
            }
            match media.as_str() {
                "application/json" | "application/schema+json" => Body::Json(Box::new(prop)),
                "text/plain" if prop.ty == Ty::Scalar(crate::model::Scalar::String) => Body::Text,
                "text/plain" => {
                    return Err(doc.err(&schema_ptr, "text/plain responses must have type: string"));
                }
                other if outside => Body::Binary(other.to_owned()),
                other => {
                    return Err(doc.err(&media_ptr, format!("unsupported media type \"{other}\"")));
                }
            }
        }
        Some(_) => return Err(doc.err(&content_ptr, "\"content\" must be a mapping")),
    };
    let mut headers = Vec::new();
    let headers_ptr = child(&pointer, "headers");
    if let Some(map) = doc.get(&headers_ptr) {
        let Some(map) = map.as_object() else {
            return Err(doc.err(&headers_ptr, "\"headers\" must be a mapping"));
        };
        for name in map.keys() {
            let h = doc.deref(&child(&headers_ptr, name))?;
            let schema_ptr = child(&h, "schema");
            if doc.get(&schema_ptr).is_none() {
                return Err(doc.err(&h, "header without \"schema\""));
            }
            let required = match doc.get(&child(&h, "required")) {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(doc.err(&child(&h, "required"), "\"required\" must be a boolean"));
                }
            };
            headers.push(Header {
                name: name.clone(),
                required,
                description: doc.opt_str(&h, "description")?.map(str::to_owned),
                prop: scalar(doc, &schema_ptr)?,
            });
        }
    }
    Ok(Response {
        status,
        description,
        body,
        headers,
    })
}
