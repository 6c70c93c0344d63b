//! Unit tests of the spec compiler on small inline specs.

use crate::{GeneratedFile, SpecError, Specs, generate};

pub(crate) const ASYNCAPI: &str = r##"
asyncapi: 3.0.0
info: {title: Chat, version: 1.0.0, description: Test protocol.}
servers:
  dev: {host: 'localhost:8080', protocol: ws, pathname: /chatbox}
channels:
  chat:
    address: /ws
    messages:
      UserMessage: {$ref: '#/components/messages/UserMessage'}
      UserMessageEcho: {$ref: '#/components/messages/UserMessageEcho'}
      ErrorMessage: {$ref: '#/components/messages/ErrorMessage'}
operations:
  receiveClientMessage:
    action: receive
    channel: {$ref: '#/channels/chat'}
    messages:
      - $ref: '#/channels/chat/messages/UserMessage'
  sendServerMessage:
    action: send
    channel: {$ref: '#/channels/chat'}
    messages:
      - $ref: '#/channels/chat/messages/UserMessageEcho'
      - $ref: '#/channels/chat/messages/ErrorMessage'
components:
  securitySchemes:
    bearerAuth: {type: http, scheme: bearer, bearerFormat: JWT}
  messages:
    UserMessage:
      name: user_message
      title: User message
      summary: The user says something.
      payload: {$ref: '#/components/schemas/UserMessage'}
      examples:
        - name: hello
          summary: Hello.
          payload: {type: user_message, session_id: s1, content: hi}
    UserMessageEcho:
      name: user_message
      summary: Echo to other devices.
      payload: {$ref: '#/components/schemas/UserMessage'}
    ErrorMessage:
      name: error
      summary: Something failed.
      payload: {$ref: '#/components/schemas/ErrorMessage'}
  schemas:
    UserMessage:
      type: object
      description: A chat message.
      additionalProperties: false
      required: [type, session_id, content]
      properties:
        type: {type: string, const: user_message, description: Message type.}
        session_id: {type: string, maxLength: 128, x-max-bytes: 128, description: Session.}
        content: {type: string, maxLength: 10000, x-max-bytes: 10, description: Text.}
        tags: {type: array, maxItems: 3, items: {type: string, maxLength: 5}, description: Tags.}
        metadata: {$ref: '#/components/schemas/Metadata'}
        sender: {$ref: '#/components/schemas/Sender'}
        seq: {type: integer, format: int64, minimum: 1, description: Sequence.}
        count: {type: integer, format: int32, description: Count.}
        score: {type: number, minimum: 0, description: Score.}
        done: {type: boolean, description: Done.}
    ErrorMessage:
      type: object
      required: [type, error]
      properties:
        type: {type: string, const: error}
        error: {$ref: '#/components/schemas/ErrorBody'}
    ErrorBody:
      type: object
      description: Error details.
      required: [code]
      properties:
        code: {type: string, minLength: 1, description: Code.}
        retry_after: {type: integer, description: Milliseconds.}
    Metadata:
      type: object
      description: String to string map.
      additionalProperties: {type: string, maxLength: 1000, x-max-bytes: 1000}
    Sender:
      type: string
      description: Who sent it.
      enum: [user, ai, in-progress]
"##;

const OPENAPI: &str = r##"
openapi: 3.0.3
info: {title: Chat HTTP, version: 1.0.0}
servers: [{url: /chatbox}]
paths:
  /sessions/{sessionId}:
    get:
      operationId: getSession
      tags: [sessions]
      summary: One session.
      description: Returns one session.
      security: [{bearerAuth: []}]
      parameters:
        - {name: sessionId, in: path, required: true, description: The id., schema: {type: string, maxLength: 64}}
        - {name: limit, in: query, schema: {type: integer, format: int32, minimum: 1, maximum: 100}}
      responses:
        200:
          description: The session.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/SessionMetadata'}
        '404':
          description: Not found.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/ApiError'}
        '429':
          description: Slow down.
          headers:
            Retry-After:
              description: Seconds to wait.
              required: true
              schema: {type: integer}
          content:
            application/json:
              schema: {$ref: '#/components/schemas/ApiError'}
  /ws:
    get:
      operationId: openWebSocket
      summary: The WebSocket handshake.
      responses:
        '101':
          description: Switching Protocols.
        '401':
          description: No token.
          content:
            text/plain:
              schema: {type: string}
  /metrics:
    get:
      operationId: getMetrics
      summary: Prometheus metrics.
      responses:
        '200':
          description: Exposition text.
          content:
            text/plain:
              schema: {type: string}
        '204':
          description: Nothing.
components:
  securitySchemes:
    bearerAuth: {type: http, scheme: bearer, bearerFormat: JWT}
  schemas:
    SessionMetadata:
      type: object
      description: A session.
      required: [id, TotalSessions]
      properties:
        id: {type: string, description: Id.}
        TotalSessions: {type: integer, description: Count.}
        type: {type: string, description: A keyword-named field.}
        status: {$ref: '#/components/schemas/Status'}
        names: {type: array, maxItems: 2, items: {type: string, maxLength: 3}, description: Names.}
    ApiError:
      type: object
      required: [error]
      properties:
        error: {type: string, description: Message.}
    Status:
      type: string
      enum: [active, ended]
"##;

fn specs(asyncapi: &str, openapi: &str) -> Specs {
    match Specs::from_yaml(asyncapi, openapi) {
        Ok(s) => s,
        Err(e) => panic!("fixture does not parse: {e}"),
    }
}

fn files() -> Vec<GeneratedFile> {
    match generate(&specs(ASYNCAPI, OPENAPI)) {
        Ok(f) => f,
        Err(e) => panic!("fixture does not compile: {e}"),
    }
}

pub(crate) fn file(path: &str) -> String {
    files()
        .into_iter()
        .find(|f| f.path == path)
        .map(|f| f.contents)
        .unwrap_or_else(|| panic!("no {path}"))
}

/// Removes all whitespace and trailing commas, so assertions do not depend on prettyplease's line breaking.
fn squash(s: &str) -> String {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    s.replace(",)", ")")
        .replace(",}", "}")
        .replace(",]", "]")
        .replace(",>", ">")
}

fn assert_has(haystack: &str, needle: &str) {
    let needle_squashed = squash(needle);
    let needle_squashed = needle_squashed.trim_end_matches(',');
    assert!(
        squash(haystack).contains(needle_squashed),
        "missing:\n{needle}\n--- in ---\n{haystack}"
    );
}

fn assert_lacks(haystack: &str, needle: &str) {
    assert!(
        !squash(haystack).contains(&squash(needle)),
        "unexpected:\n{needle}"
    );
}

fn rust() -> String {
    file("rust/protocol.rs")
}

/// The Rust source between `pub mod http` and the end.
fn http_part() -> String {
    let r = rust();
    let at = r.find("pub mod http").unwrap_or(0);
    r[at..].to_owned()
}

fn ws_part() -> String {
    let r = rust();
    let at = r.find("pub mod http").unwrap_or(r.len());
    r[..at].to_owned()
}

fn error(asyncapi: &str, openapi: &str) -> String {
    match Specs::from_yaml(asyncapi, openapi).and_then(|s| generate(&s)) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn ws_error(replace: &str, with: &str) -> String {
    assert!(ASYNCAPI.contains(replace), "fixture lacks {replace}");
    error(&ASYNCAPI.replacen(replace, with, 1), OPENAPI)
}

fn http_error(replace: &str, with: &str) -> String {
    assert!(OPENAPI.contains(replace), "fixture lacks {replace}");
    error(ASYNCAPI, &OPENAPI.replacen(replace, with, 1))
}

#[test]
fn outputs_are_sorted_and_cover_every_message_and_schema() {
    let paths: Vec<String> = files().into_iter().map(|f| f.path).collect();
    assert_eq!(
        paths,
        [
            "docs/http.md",
            "docs/websocket.md",
            "rust/operations.rs",
            "rust/protocol.rs",
            "schemas/http/ApiError.json",
            "schemas/http/SessionMetadata.json",
            "schemas/http/Status.json",
            "schemas/ws/error.server.json",
            "schemas/ws/user_message.client.json",
            "schemas/ws/user_message.server.json",
            "typescript/README.md",
            "typescript/package.json",
            "typescript/src/http.ts",
            "typescript/src/index.ts",
            "typescript/src/rest.ts",
            "typescript/src/socket.ts",
            "typescript/src/ws.ts",
            "typescript/tsconfig.json",
        ]
    );
}

#[test]
fn generating_twice_gives_identical_bytes() {
    assert_eq!(files(), files());
    let reparsed = generate(&specs(ASYNCAPI, OPENAPI)).ok();
    assert_eq!(reparsed, Some(files()));
}

#[test]
fn rust_file_starts_with_the_generated_header() {
    let r = rust();
    assert!(r.starts_with("// @generated"), "{r}");
    assert!(r.contains("Do not edit"));
    assert!(syn::parse_file(&r).is_ok());
}

#[test]
fn object_schema_becomes_a_struct_with_required_and_optional_fields() {
    let ws = ws_part();
    assert_has(
        &ws,
        "/// A chat message.
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        pub struct UserMessage {
            /// Session.
            pub session_id: String,
            /// Text.
            pub content: String,
            /// Tags.
            #[serde(default, skip_serializing_if = \"Option::is_none\")]
            pub tags: Option<Vec<String>>,",
    );
    assert_has(&ws, "pub metadata: Option<Metadata>,");
    assert_has(&ws, "pub seq: Option<i64>,");
    assert_has(&ws, "pub count: Option<i32>,");
    assert_has(&ws, "pub score: Option<f64>,");
    assert_has(&ws, "pub done: Option<bool>,");
    // The type tag is not a field.
    assert_lacks(&ws, "pub r#type");
    assert_lacks(&ws, "poem_openapi");
}

#[test]
fn map_schema_becomes_a_btreemap_alias_with_a_value_byte_constant() {
    let ws = ws_part();
    assert_has(
        &ws,
        "/// String to string map.\npub type Metadata = std::collections::BTreeMap<String, String>;",
    );
    assert_has(&ws, "pub const METADATA_VALUE_MAX_BYTES: usize = 1000;");
}

#[test]
fn string_enum_becomes_a_copy_enum_with_renames_and_as_str() {
    let ws = ws_part();
    assert_has(
        &ws,
        "#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum Sender {
            /// `user`
            #[serde(rename = \"user\")]
            User,",
    );
    assert_has(&ws, "#[serde(rename = \"in-progress\")] InProgress,");
    assert_has(&ws, "Self::InProgress => \"in-progress\",");
    assert_has(&ws, "pub fn as_str(&self) -> &'static str");
}

#[test]
fn messages_become_enums_tagged_by_type() {
    let ws = ws_part();
    assert_has(
        &ws,
        "#[serde(tag = \"type\")]
        pub enum ClientMessage {
            /// The user says something.
            #[serde(rename = \"user_message\")]
            UserMessage(UserMessage),
        }",
    );
    assert_has(
        &ws,
        "pub enum ServerMessage {
            /// Echo to other devices.
            #[serde(rename = \"user_message\")]
            UserMessage(UserMessage),
            /// Something failed.
            #[serde(rename = \"error\")]
            Error(ErrorMessage),
        }",
    );
    assert_has(
        &ws,
        "pub fn message_type(&self) -> &'static str { match self { Self::UserMessage(_) => \"user_message\", Self::Error(_) => \"error\", } }",
    );
}

#[test]
fn validate_checks_bytes_chars_items_map_values_numbers_and_nested_structs() {
    let ws = ws_part();
    assert_has(&ws, "pub const USER_MESSAGE_CONTENT_MAX_BYTES: usize = 10;");
    assert_has(
        &ws,
        "pub const USER_MESSAGE_SESSION_ID_MAX_BYTES: usize = 128;",
    );
    assert_has(
        &ws,
        "if self.content.len() > USER_MESSAGE_CONTENT_MAX_BYTES { return Err(FieldViolation::new(\"content\", \"x-max-bytes\")); }",
    );
    // A byte limit at or below maxLength implies it.
    assert_lacks(&ws, "self.session_id.chars().count()");
    assert_lacks(&ws, "self.content.chars().count()");
    assert_has(
        &ws,
        "if let Some(value) = &self.tags && value.len() > 3 { return Err(FieldViolation::new(\"tags\", \"maxItems\")); }",
    );
    assert_has(
        &ws,
        "for (index, item) in value.iter().enumerate() { if item.chars().count() > 5 { return Err(FieldViolation::new(format!(\"tags[{index}]\"), \"maxLength\")); } }",
    );
    assert_has(
        &ws,
        "for (key, entry) in value.iter() { if entry.len() > METADATA_VALUE_MAX_BYTES { return Err(FieldViolation::new(format!(\"metadata.{key}\"), \"x-max-bytes\")); } }",
    );
    assert_has(
        &ws,
        "if let Some(value) = &self.seq && *value < 1 { return Err(FieldViolation::new(\"seq\", \"minimum\")); }",
    );
    assert_has(&ws, "if let Some(value) = &self.score && *value < 0.0");
    assert_has(
        &ws,
        "self.error.validate().map_err(|e| e.within(\"error\"))?;",
    );
    assert_has(
        &ws,
        "if self.code.chars().count() < 1 { return Err(FieldViolation::new(\"code\", \"minLength\")); }",
    );
    assert_has(&ws, "pub struct FieldViolation { /// The JSON name");
}

#[test]
fn http_structs_derive_poem_object_with_renames_for_poem() {
    let http = http_part();
    assert_has(
        &http,
        "#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, poem_openapi::Object)]
        pub struct SessionMetadata {
            /// Id.
            pub id: String,
            /// Count.
            #[serde(rename = \"TotalSessions\")]
            #[oai(rename = \"TotalSessions\")]
            pub total_sessions: i64,
            /// A keyword-named field.
            #[serde(default, skip_serializing_if = \"Option::is_none\")]
            #[oai(skip_serializing_if_is_none)]
            pub r#type: Option<String>,",
    );
    assert_has(
        &http,
        "#[oai(skip_serializing_if_is_none, validator(max_items = 2, max_length = 3))] pub names: Option<Vec<String>>,",
    );
    assert_has(
        &http,
        "poem_openapi::Enum)] pub enum Status { /// `active` #[serde(rename = \"active\")] #[oai(rename = \"active\")] Active,",
    );
}

#[test]
fn operations_become_api_response_enums() {
    let http = http_part();
    assert_has(
        &http,
        "/// One session.
        ///
        /// Responses of `getSession` (`GET /sessions/{sessionId}`), one variant per status declared in the spec.
        #[derive(poem_openapi::ApiResponse)]
        pub enum GetSessionResponse {
            /// The session.
            #[oai(status = 200)]
            Status200(poem_openapi::payload::Json<SessionMetadata>),
            /// Not found.
            #[oai(status = 404)]
            Status404(poem_openapi::payload::Json<ApiError>),
            /// Slow down.
            #[oai(status = 429)]
            Status429(poem_openapi::payload::Json<ApiError>, #[oai(header = \"Retry-After\")] i64,),
        }",
    );
    assert_has(
        &http,
        "pub enum GetMetricsResponse {
            /// Exposition text.
            #[oai(status = 200)]
            Status200(poem_openapi::payload::PlainText<String>),
            /// Nothing.
            #[oai(status = 204)]
            Status204,
        }",
    );
}

#[test]
fn operations_with_an_error_body_map_error_statuses_to_their_variants() {
    let openapi = OPENAPI
        .replacen("  /ws:\n", &format!("{ERROR_OPERATION}  /ws:\n"), 1)
        .replacen(
            "    Status:\n",
            &format!("{ERROR_COMPONENTS}    Status:\n"),
            1,
        );
    let generated = match generate(&specs(ASYNCAPI, &openapi)) {
        Ok(files) => files,
        Err(e) => panic!("fixture does not compile: {e}"),
    };
    let rust = generated
        .into_iter()
        .find(|f| f.path == "rust/protocol.rs")
        .map(|f| f.contents)
        .unwrap_or_default();
    let http = rust[rust.find("pub mod http").unwrap_or(0)..].to_owned();
    assert_has(
        &http,
        "impl ErrorStatuses for EndSessionResponse {
            fn from_error(status: u16, body: ErrorBody) -> Result<Self, ErrorBody> {
                match status {
                    404 => Ok(Self::Status404(poem_openapi::payload::Json(body))),
                    500 => Ok(Self::Status500(poem_openapi::payload::Json(body))),
                    _ => Err(body),
                }
            }
            fn from_rate_limit(body: RateLimitError, retry_after: Option<i64>) -> Option<Self> {
                Some(Self::Status429(poem_openapi::payload::Json(body), retry_after))
            }
            fn internal(body: ErrorBody) -> Self {
                Self::Status500(poem_openapi::payload::Json(body))
            }
        }",
    );
    assert_has(&http, "pub trait ErrorStatuses: Sized {");
    // No 500 with an ErrorBody: the operation answers its own statuses only.
    assert_lacks(&http, "impl ErrorStatuses for GetSessionResponse");
    // Without the error components (the main fixture), neither the trait nor an impl.
    assert_lacks(&http_part(), "ErrorStatuses");
}

/// An operation declaring error statuses with the spec's error bodies, for
/// [`operations_with_an_error_body_map_error_statuses_to_their_variants`].
const ERROR_OPERATION: &str = r##"  /sessions/{sessionId}/end:
    post:
      operationId: endSession
      summary: Ends a session.
      responses:
        '200':
          description: Ended.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/SessionMetadata'}
        '404':
          description: Not found.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/ErrorBody'}
        '429':
          description: Slow down.
          headers:
            Retry-After:
              description: Seconds to wait.
              schema: {type: integer}
          content:
            application/json:
              schema: {$ref: '#/components/schemas/RateLimitError'}
        '500':
          description: Failure.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/ErrorBody'}
"##;

/// The error components [`ERROR_OPERATION`] uses.
const ERROR_COMPONENTS: &str = r##"    ErrorBody:
      type: object
      required: [error]
      properties:
        error: {type: string, description: Message.}
    RateLimitError:
      type: object
      required: [error]
      properties:
        error: {type: string, description: Message.}
"##;

#[test]
fn each_operation_becomes_a_trait_and_an_endpoint_of_its_tag_service() {
    let ops = file("rust/operations.rs");
    assert_has(
        &ops,
        "pub trait GetSession {
            /// One session.
            ///
            /// Returns one session.
            fn get_session(
                req: &poem::Request,
                state: &std::sync::Arc<crate::state::AppState>,
                auth: super::auth::BearerAuth,
                session_id: String,
                limit: Option<super::params::Raw<i64>>,
            ) -> impl std::future::Future<Output = crate::protocol::http::GetSessionResponse> + Send;
        }",
    );
    assert_has(
        &ops,
        "#[oai(path = \"/sessions/:sessionId\", method = \"get\", operation_id = \"getSession\", tag = \"ApiTags::Sessions\")]
        async fn get_session(
            &self,
            req: &poem::Request,
            auth: super::auth::BearerAuth,
            poem::web::Data(state): poem::web::Data<&std::sync::Arc<crate::state::AppState>>,
            #[oai(name = \"sessionId\")] session_id: poem_openapi::param::Path<String>,
            #[oai(name = \"limit\")] limit: poem_openapi::param::Query<Option<super::params::Raw<i64>>>,
        ) -> crate::protocol::http::GetSessionResponse {
            <super::Handlers as GetSession>::get_session(req, state, auth, session_id.0, limit.0).await
        }",
    );
    // A public operation takes no token; the upgrade is served by the WebSocket transport, not here.
    assert_has(
        &ops,
        "fn get_metrics(req: &poem::Request, state: &std::sync::Arc<crate::state::AppState>,)",
    );
    assert_lacks(&ops, "open_web_socket");
    assert_has(
        &ops,
        "#[derive(poem_openapi::Tags)] pub enum ApiTags { #[oai(rename = \"sessions\")] Sessions, }",
    );
    assert_has(&ops, "pub type Apis = (SessionsApi, UntaggedApi);");
}

#[test]
fn a_request_body_is_refused_rather_than_dropped() {
    let message = http_error(
        "      operationId: getSession\n",
        "      operationId: getSession\n      requestBody: {content: {application/json: {schema: {type: string}}}}\n",
    );
    assert!(
        message.contains("/requestBody") && message.contains("not supported"),
        "{message}"
    );
}

#[test]
fn upgrade_operations_are_documented_but_get_no_response_type() {
    assert_lacks(&http_part(), "OpenWebSocketResponse");
    let doc = file("docs/http.md");
    assert!(doc.contains("### `GET /ws`"), "{doc}");
    assert!(doc.contains("Switching Protocols."), "{doc}");
}

#[test]
fn optional_headers_are_options() {
    let openapi = OPENAPI.replace(
        "required: true\n              schema: {type: integer}",
        "schema: {type: integer}",
    );
    let files = match generate(&specs(ASYNCAPI, &openapi)) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    };
    let r = files
        .iter()
        .find(|f| f.path == "rust/protocol.rs")
        .map(|f| f.contents.clone())
        .unwrap_or_default();
    assert_has(&r, "#[oai(header = \"Retry-After\")] Option<i64>");
}

#[test]
fn ws_json_schema_is_self_contained_with_defs_and_the_type_const() {
    let text = file("schemas/ws/user_message.client.json");
    assert!(text.ends_with("}\n"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(v["properties"]["type"]["const"], "user_message");
    assert_eq!(v["additionalProperties"], false);
    assert_eq!(v["properties"]["metadata"]["$ref"], "#/$defs/Metadata");
    assert_eq!(v["$defs"]["Sender"]["enum"][2], "in-progress");
    assert!(v.get("$id").is_none());
    let error = file("schemas/ws/error.server.json");
    let v: serde_json::Value = serde_json::from_str(&error).unwrap_or_default();
    assert_eq!(v["$defs"]["ErrorBody"]["required"][0], "code");
}

#[test]
fn http_json_schema_is_written_per_component() {
    let v: serde_json::Value =
        serde_json::from_str(&file("schemas/http/SessionMetadata.json")).unwrap_or_default();
    assert_eq!(v["title"], "SessionMetadata");
    assert_eq!(v["properties"]["status"]["$ref"], "#/$defs/Status");
    assert_eq!(v["$defs"]["Status"]["enum"][1], "ended");
}

#[test]
fn websocket_doc_lists_messages_fields_and_examples() {
    let md = file("docs/websocket.md");
    assert!(md.starts_with("# Chat\n"));
    assert!(
        md.contains("| dev | `localhost:8080` | ws | `/chatbox/ws` |"),
        "{md}"
    );
    assert!(md.contains("- **bearerAuth**: http, scheme `bearer`, format JWT."));
    assert!(md.contains("### `user_message` (client → server)"));
    assert!(md.contains("### `user_message` (server → client)"));
    assert!(
        md.contains("| `type` | string | yes | always `\"user_message\"` | The message type. |")
    );
    assert!(md.contains("| `content` | string | yes | ≤ 10 bytes, ≤ 10000 chars | Text. |"));
    assert!(md.contains("| `metadata` | [Metadata](#schema-metadata) | no |"));
    assert!(md.contains("```json\n{\n  \"type\": \"user_message\","));
    assert!(md.contains("<a id=\"schema-sender\"></a>"));
    assert!(md.ends_with("\n") && !md.ends_with("\n\n"));
}

#[test]
fn http_doc_lists_operations_parameters_and_responses() {
    let md = file("docs/http.md");
    assert!(md.contains("Base path: `/chatbox`"));
    assert!(md.contains("### `GET /sessions/{sessionId}`"));
    assert!(md.contains("- Auth: bearerAuth"));
    assert!(md.contains("| `sessionId` | path | string | yes | ≤ 64 chars | The id. |"));
    assert!(md.contains("| `limit` | query | integer (int32) | no | ≥ 1, ≤ 100 |  |"));
    assert!(md.contains("| 429 | Slow down. | `application/json` [ApiError](#schema-apierror) | `Retry-After` (integer (int64)): Seconds to wait. |"), "{md}");
    assert!(md.contains("| 200 | Exposition text. | `text/plain` string |"));
    assert!(md.contains("| `TotalSessions` | integer (int64) | yes |"));
}

fn assert_error(message: &str, expected: &str) {
    assert_eq!(message, expected);
}

#[test]
fn one_of_is_rejected_at_its_pointer() {
    let e = ws_error(
        "content: {type: string, maxLength: 10000, x-max-bytes: 10, description: Text.}",
        "content: {oneOf: [{type: string}, {type: integer}]}",
    );
    assert_error(
        &e,
        "spec/asyncapi.yaml#/components/schemas/UserMessage/properties/content: missing \"type\" (or $ref)",
    );
    let e = ws_error(
        "content: {type: string, maxLength: 10000, x-max-bytes: 10, description: Text.}",
        "content: {type: string, oneOf: [{maxLength: 3}]}",
    );
    assert_error(
        &e,
        "spec/asyncapi.yaml#/components/schemas/UserMessage/properties/content/oneOf: unsupported keyword \"oneOf\"",
    );
}

#[test]
fn all_of_on_a_schema_is_rejected() {
    let e = ws_error(
        "    ErrorBody:\n      type: object\n",
        "    ErrorBody:\n      allOf: [{type: object}]\n      type: object\n",
    );
    assert_error(
        &e,
        "spec/asyncapi.yaml#/components/schemas/ErrorBody/allOf: unsupported keyword \"allOf\"",
    );
}

#[test]
fn a_described_reference_in_all_of_compiles_like_a_bare_reference() {
    let bare = "error: {$ref: '#/components/schemas/ErrorBody'}";
    let described = "error: {description: Why., $ref: '#/components/schemas/ErrorBody'}";
    let wrapped = "error: {description: Why., allOf: [{$ref: '#/components/schemas/ErrorBody'}]}";
    assert!(ASYNCAPI.contains(bare));
    let compile = |text: &str| match generate(&specs(&ASYNCAPI.replacen(bare, text, 1), OPENAPI)) {
        Ok(files) => files,
        Err(e) => panic!("does not compile: {e}"),
    };
    let rust_of = |files: &[GeneratedFile]| {
        files
            .iter()
            .find(|f| f.path == crate::RUST_PATH)
            .map(|f| f.contents.clone())
            .unwrap_or_default()
    };
    let with_sibling = compile(described);
    let with_all_of = compile(wrapped);
    assert_eq!(rust_of(&with_sibling), rust_of(&with_all_of));
    assert_has(&rust_of(&with_all_of), "/// Why.");
    let schema = with_all_of
        .iter()
        .find(|f| f.path == "schemas/ws/error.server.json")
        .map(|f| f.contents.clone())
        .unwrap_or_default();
    assert_has(&schema, r##""allOf": [{"$ref": "#/$defs/ErrorBody"}]"##);
}

#[test]
fn all_of_on_a_property_holds_one_bare_reference() {
    let bare = "error: {$ref: '#/components/schemas/ErrorBody'}";
    let e = ws_error(
        bare,
        "error: {allOf: [{$ref: '#/components/schemas/ErrorBody'}, {$ref: '#/components/schemas/Metadata'}]}",
    );
    assert_error(
        &e,
        "spec/asyncapi.yaml#/components/schemas/ErrorMessage/properties/error/allOf: \"allOf\" must hold exactly one {$ref} (to describe a reference)",
    );
    let e = ws_error(
        bare,
        "error: {allOf: [{$ref: '#/components/schemas/ErrorBody', description: X.}]}",
    );
    assert_error(
        &e,
        "spec/asyncapi.yaml#/components/schemas/ErrorMessage/properties/error/allOf/0: the item of \"allOf\" must be a bare {$ref}",
    );
    let e = ws_error(
        bare,
        "error: {type: object, allOf: [{$ref: '#/components/schemas/ErrorBody'}]}",
    );
    assert!(e.contains("properties/error"), "{e}");
}

#[test]
fn inline_objects_and_enums_are_rejected() {
    let e = ws_error(
        "retry_after: {type: integer, description: Milliseconds.}",
        "retry_after: {type: object, properties: {a: {type: string}}}",
    );
    assert!(
        e.starts_with(
            "spec/asyncapi.yaml#/components/schemas/ErrorBody/properties/retry_after: inline object"
        ),
        "{e}"
    );
    let e = ws_error(
        "retry_after: {type: integer, description: Milliseconds.}",
        "retry_after: {type: string, enum: [a, b]}",
    );
    assert!(e.starts_with("spec/asyncapi.yaml#/components/schemas/ErrorBody/properties/retry_after/enum: unsupported keyword \"enum\""), "{e}");
}

#[test]
fn unknown_types_and_formats_are_rejected() {
    let e = ws_error(
        "retry_after: {type: integer, description: Milliseconds.}",
        "retry_after: {type: integr}",
    );
    assert_error(
        &e,
        "spec/asyncapi.yaml#/components/schemas/ErrorBody/properties/retry_after/type: unknown type \"integr\"",
    );
    let e = ws_error(
        "retry_after: {type: integer, description: Milliseconds.}",
        "retry_after: {type: integer, format: int16}",
    );
    assert!(e.starts_with("spec/asyncapi.yaml#/components/schemas/ErrorBody/properties/retry_after/format: unsupported integer format"), "{e}");
    let e = ws_error(
        "retry_after: {type: integer, description: Milliseconds.}",
        "retry_after: {type: [integer, 'null']}",
    );
    assert!(
        e.starts_with(
            "spec/asyncapi.yaml#/components/schemas/ErrorBody/properties/retry_after/type:"
        ),
        "{e}"
    );
}

#[test]
fn broken_refs_are_rejected() {
    let e = ws_error(
        "metadata: {$ref: '#/components/schemas/Metadata'}",
        "metadata: {$ref: '#/components/schemas/Nope'}",
    );
    assert_error(
        &e,
        "spec/asyncapi.yaml#/components/schemas/UserMessage/properties/metadata/$ref: broken $ref \"#/components/schemas/Nope\": nothing there",
    );
    let e = ws_error(
        "- $ref: '#/channels/chat/messages/ErrorMessage'",
        "- $ref: '#/channels/chat/messages/Missing'",
    );
    assert_error(
        &e,
        "spec/asyncapi.yaml#/operations/sendServerMessage/messages/1/$ref: broken $ref \"#/channels/chat/messages/Missing\": nothing there",
    );
    let e = http_error(
        "schema: {$ref: '#/components/schemas/ApiError'}",
        "schema: {$ref: 'other.yaml#/Foo'}",
    );
    assert!(e.starts_with("spec/openapi.yaml#/paths/~1sessions~1{sessionId}/get/responses/404/content/application~1json/schema/$ref: broken $ref"), "{e}");
}

#[test]
fn messages_without_name_or_payload_are_rejected() {
    let e = ws_error("      name: error\n", "");
    assert_error(
        &e,
        "spec/asyncapi.yaml#/components/messages/ErrorMessage: missing \"name\"",
    );
    let e = ws_error(
        "      payload: {$ref: '#/components/schemas/ErrorMessage'}\n",
        "",
    );
    assert_error(
        &e,
        "spec/asyncapi.yaml#/components/messages/ErrorMessage: missing \"payload\"",
    );
}

#[test]
fn payloads_need_the_type_const_of_their_message() {
    let e = ws_error("type: {type: string, const: error}", "kind: {type: string}");
    assert_error(
        &e,
        "spec/asyncapi.yaml#/components/schemas/ErrorMessage/required/0: required property \"type\" is not declared in properties",
    );
    let e = ws_error("required: [type, error]", "required: [error]");
    assert_error(
        &e,
        "spec/asyncapi.yaml#/components/schemas/ErrorMessage/properties/type: the \"type\" tag must be listed in \"required\"",
    );
    let e = ws_error(
        "type: {type: string, const: error}",
        "type: {type: string, const: failure}",
    );
    assert_error(
        &e,
        "spec/asyncapi.yaml#/components/schemas/ErrorMessage/properties/type: message \"error\" uses schema ErrorMessage whose \"type\" const is \"failure\"",
    );
    let e = ws_error(
        "required: [type, error]\n      properties:\n        type: {type: string, const: error}\n",
        "required: [error]\n      properties:\n",
    );
    assert_error(
        &e,
        "spec/asyncapi.yaml#/components/schemas/ErrorMessage: payload schema of message \"error\" lacks a first property \"type\" with const \"error\"",
    );
}

#[test]
fn const_is_only_allowed_on_the_type_tag() {
    let e = ws_error(
        "code: {type: string, minLength: 1, description: Code.}",
        "code: {type: string, const: X}",
    );
    assert_error(
        &e,
        "spec/asyncapi.yaml#/components/schemas/ErrorBody/properties/code/const: \"const\" is only allowed on the \"type\" tag of WebSocket messages (the first property, named type)",
    );
}

#[test]
fn duplicate_variants_are_rejected() {
    let e = ws_error(
        "      - $ref: '#/channels/chat/messages/ErrorMessage'",
        "      - $ref: '#/channels/chat/messages/ErrorMessage'\n      - $ref: '#/channels/chat/messages/ErrorMessage'",
    );
    assert_error(
        &e,
        "spec/asyncapi.yaml#/operations/sendServerMessage/messages/2: duplicate variant Error: messages \"error\" and \"error\" both map to it",
    );
}

#[test]
fn example_type_must_match_the_message() {
    let e = ws_error(
        "payload: {type: user_message, session_id: s1, content: hi}",
        "payload: {type: user_msg}",
    );
    assert_error(
        &e,
        "spec/asyncapi.yaml#/components/messages/UserMessage/examples/0/payload: example payload must have \"type\": \"user_message\"",
    );
}

#[test]
fn http_constructs_outside_the_subset_are_rejected() {
    let e = http_error(
        "          description: Nothing.\n",
        "          description: Nothing.\n          content: {application/xml: {schema: {type: string}}}\n",
    );
    assert_error(
        &e,
        "spec/openapi.yaml#/paths/~1metrics/get/responses/204/content/application~1xml: unsupported media type \"application/xml\"",
    );
    let e = http_error("'204':", "default:");
    assert_error(
        &e,
        "spec/openapi.yaml#/paths/~1metrics/get/responses/default: response status \"default\" is not supported (use explicit status codes)",
    );
    let e = http_error("{name: limit, in: query,", "{name: limit, in: header,");
    assert_error(
        &e,
        "spec/openapi.yaml#/paths/~1sessions~1{sessionId}/get/parameters/1/in: parameter location \"header\" is not supported (path or query)",
    );
    let e = http_error("      operationId: getMetrics\n", "");
    assert_error(
        &e,
        "spec/openapi.yaml#/paths/~1metrics/get: missing \"operationId\"",
    );
    let e = http_error(
        "schema: {type: string}\n        '204'",
        "schema: {type: integer}\n        '204'",
    );
    assert_error(
        &e,
        "spec/openapi.yaml#/paths/~1metrics/get/responses/200/content/text~1plain/schema: text/plain responses must have type: string",
    );
    let e = http_error("security: [{bearerAuth: []}]", "security: [{basic: []}]");
    assert_error(
        &e,
        "spec/openapi.yaml#/paths/~1sessions~1{sessionId}/get/security/0/basic: unknown security scheme \"basic\"",
    );
}

#[test]
fn yaml_errors_name_the_file() {
    let e = error("a: [", OPENAPI);
    assert!(e.starts_with("spec/asyncapi.yaml: invalid YAML"), "{e}");
    let err = Specs::from_yaml(ASYNCAPI, OPENAPI).and_then(|s| generate(&s));
    assert!(err.is_ok());
    let e = match Specs::from_yaml(ASYNCAPI, "paths: []").and_then(|s| generate(&s)) {
        Err(e @ SpecError::Invalid { .. }) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(e.pointer(), Some("/paths"));
}

#[test]
fn the_repository_specs_compile_when_present() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec");
    if !dir.join("asyncapi.yaml").exists() || !dir.join("openapi.yaml").exists() {
        return;
    }
    let generated = Specs::load(&dir).and_then(|s| generate(&s));
    if let Err(e) = generated {
        panic!("{e}");
    }
}
