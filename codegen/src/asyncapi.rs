//! The AsyncAPI document: messages per direction, channel, servers and security, checked against the contract.

use serde_json::Value;

use crate::error::{SpecError, child};
use crate::model::{Doc, Kind, SCHEMA_REF, Schema, parse_schemas, unescape};

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Client to server (`operations.receiveClientMessage`).
    Client,
    /// Server to client (`operations.sendServerMessage`).
    Server,
}

impl Direction {
    /// `client` or `server`, as used in schema file names.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
        }
    }
}

/// One example of a message.
#[derive(Debug, Clone)]
pub(crate) struct Example {
    /// `name`.
    pub name: Option<String>,
    /// `summary`.
    pub summary: Option<String>,
    /// The complete JSON frame.
    pub payload: Value,
}

/// A message listed by one of the two operations.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// The wire `type` value (`name`).
    pub name: String,
    /// `title`.
    pub title: Option<String>,
    /// `summary`.
    pub summary: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// The payload schema's name.
    pub schema: String,
    /// `examples`.
    pub examples: Vec<Example>,
}

/// A server entry.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    /// Its key.
    pub key: String,
    /// `host`.
    pub host: Option<String>,
    /// `protocol`.
    pub protocol: Option<String>,
    /// `pathname`.
    pub pathname: Option<String>,
    /// `description`.
    pub description: Option<String>,
}

/// The checked AsyncAPI document.
#[derive(Debug, Clone)]
pub(crate) struct AsyncApi {
    /// `info.title`.
    pub title: Option<String>,
    /// `info.version`.
    pub version: Option<String>,
    /// `info.description`.
    pub description: Option<String>,
    /// Servers in file order.
    pub servers: Vec<Server>,
    /// `channels.chat.address` (or the first channel's).
    pub address: Option<String>,
    /// The channel's description.
    pub channel_description: Option<String>,
    /// `components.securitySchemes`, in file order.
    pub security: Vec<(String, Value)>,
    /// Component schemas in file order.
    pub schemas: Vec<Schema>,
    /// Client -> server messages.
    pub client: Vec<Message>,
    /// Server -> client messages.
    pub server: Vec<Message>,
}

/// Reads and checks the AsyncAPI document.
pub(crate) fn parse(doc: Doc<'_>) -> Result<AsyncApi, SpecError> {
    let schemas = parse_schemas(doc)?;
    crate::model::check_type_names(
        doc,
        &schemas,
        &["ClientMessage", "ServerMessage", "FieldViolation"],
    )?;
    let client = parse_operation(doc, &schemas, "receiveClientMessage", "receive")?;
    let server = parse_operation(doc, &schemas, "sendServerMessage", "send")?;
    let mut servers = Vec::new();
    if let Some(map) = doc.get("/servers").and_then(Value::as_object) {
        for key in map.keys() {
            let p = child("/servers", key);
            servers.push(Server {
                key: key.clone(),
                host: doc.opt_str(&p, "host")?.map(str::to_owned),
                protocol: doc.opt_str(&p, "protocol")?.map(str::to_owned),
                pathname: doc.opt_str(&p, "pathname")?.map(str::to_owned),
                description: doc.opt_str(&p, "description")?.map(str::to_owned),
            });
        }
    }
    let channel = match doc.get("/channels/chat") {
        Some(_) => Some("/channels/chat".to_owned()),
        None => doc
            .get("/channels")
            .and_then(Value::as_object)
            .and_then(|m| m.keys().next())
            .map(|k| child("/channels", k)),
    };
    let (address, channel_description) = match &channel {
        Some(p) => (
            doc.opt_str(p, "address")?.map(str::to_owned),
            doc.opt_str(p, "description")?.map(str::to_owned),
        ),
        None => (None, None),
    };
    let security = doc
        .get("/components/securitySchemes")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Ok(AsyncApi {
        title: doc.opt_str("/info", "title")?.map(str::to_owned),
        version: doc.opt_str("/info", "version")?.map(str::to_owned),
        description: doc.opt_str("/info", "description")?.map(str::to_owned),
        servers,
        address,
        channel_description,
        security,
        schemas,
        client,
        server,
    })
}

fn parse_operation(
    doc: Doc<'_>,
    schemas: &[Schema],
    key: &str,
    action: &str,
) -> Result<Vec<Message>, SpecError> {
    let op = child("/operations", key);
    doc.object(&op, &format!("operation {key}"))?;
    let found = doc.req_str(&op, "action")?;
    if found != action {
        return Err(doc.err(
            &child(&op, "action"),
            format!("operation {key} must have action \"{action}\", not \"{found}\""),
        ));
    }
    let list_ptr = child(&op, "messages");
    let Some(list) = doc.get(&list_ptr).and_then(Value::as_array) else {
        return Err(doc.err(&op, "missing \"messages\" list"));
    };
    let mut out: Vec<Message> = Vec::new();
    for i in 0..list.len() {
        let at = child(&list_ptr, &i.to_string());
        let message = parse_message(doc, schemas, &at)?;
        let variant = crate::names::type_name(&message.name);
        if let Some(other) = out
            .iter()
            .find(|m| crate::names::type_name(&m.name) == variant)
        {
            return Err(doc.err(
                &at,
                format!(
                    "duplicate variant {}: messages \"{}\" and \"{}\" both map to it",
                    variant.unraw(),
                    other.name,
                    message.name
                ),
            ));
        }
        out.push(message);
    }
    Ok(out)
}

fn parse_message(doc: Doc<'_>, schemas: &[Schema], at: &str) -> Result<Message, SpecError> {
    let pointer = doc.deref(at)?;
    doc.object(&pointer, "message")?;
    let name = doc.req_str(&pointer, "name")?.to_owned();
    let payload_ptr = child(&pointer, "payload");
    let Some(payload) = doc.get(&payload_ptr) else {
        return Err(doc.err(&pointer, "missing \"payload\""));
    };
    let Some(target) = payload.get("$ref") else {
        return Err(doc.err(
            &payload_ptr,
            "payload must be a $ref to #/components/schemas/<Name>",
        ));
    };
    let ref_ptr = child(&payload_ptr, "$ref");
    doc.ref_target(&ref_ptr, target)?;
    let target_str = target.as_str().unwrap_or_default();
    let Some(schema_name) = target_str.strip_prefix(SCHEMA_REF).map(unescape) else {
        return Err(doc.err(
            &ref_ptr,
            format!("payload $ref \"{target_str}\" must point to #/components/schemas/<Name>"),
        ));
    };
    let schema_ptr = child("/components/schemas", &schema_name);
    let Some(schema) = schemas.iter().find(|s| s.name == schema_name) else {
        return Err(doc.err(&ref_ptr, format!("broken $ref \"{target_str}\"")));
    };
    match &schema.kind {
        Kind::Object { tag: Some(tag), .. } if *tag == name => {}
        Kind::Object { tag: Some(tag), .. } => {
            return Err(doc.err(
                &child(&child(&schema_ptr, "properties"), "type"),
                format!(
                    "message \"{name}\" uses schema {schema_name} whose \"type\" const is \"{tag}\""
                ),
            ));
        }
        _ => {
            return Err(doc.err(
                &schema_ptr,
                format!("payload schema of message \"{name}\" lacks a first property \"type\" with const \"{name}\""),
            ));
        }
    }
    let mut examples = Vec::new();
    if let Some(list) = doc.get(&child(&pointer, "examples")) {
        let ex_ptr = child(&pointer, "examples");
        let Some(list) = list.as_array() else {
            return Err(doc.err(&ex_ptr, "\"examples\" must be a list"));
        };
        for (i, ex) in list.iter().enumerate() {
            let p = child(&ex_ptr, &i.to_string());
            let Some(payload) = ex.get("payload") else {
                return Err(doc.err(&p, "example without \"payload\""));
            };
            if payload.get("type").and_then(Value::as_str) != Some(name.as_str()) {
                return Err(doc.err(
                    &child(&p, "payload"),
                    format!("example payload must have \"type\": \"{name}\""),
                ));
            }
            examples.push(Example {
                name: doc.opt_str(&p, "name")?.map(str::to_owned),
                summary: doc.opt_str(&p, "summary")?.map(str::to_owned),
                payload: payload.clone(),
            });
        }
    }
    Ok(Message {
        title: doc.opt_str(&pointer, "title")?.map(str::to_owned),
        summary: doc.opt_str(&pointer, "summary")?.map(str::to_owned),
        description: doc.opt_str(&pointer, "description")?.map(str::to_owned),
        name,
        schema: schema_name,
        examples,
    })
}
