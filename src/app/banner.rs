//! The startup banner: where the server is reachable and, in development, ready-to-paste tokens and links
//! that open the web console signed in (the token in the URL fragment, which the browser never sends).

use std::fmt::Write;

use crate::auth::Claims;

use super::AppState;

/// How long the printed development tokens stay valid.
const DEV_TOKEN_DAYS: i64 = 30;

/// Renders the banner for a server listening on `port`.
pub fn render(state: &AppState, port: u16) -> anyhow::Result<String> {
    let s = &state.settings;
    let host = if s.server.host.is_unspecified() {
        "localhost".to_string()
    } else {
        s.server.host.to_string()
    };
    let base = format!("http://{host}:{port}{}", s.server.path_prefix);
    let ws = format!("ws://{host}:{port}{}/ws", s.server.path_prefix);
    let mut out = String::new();
    writeln!(out, "chatbox is running ({:?} mode)", s.environment)?;
    writeln!(out, "  HTTP API:    {base}")?;
    writeln!(out, "  Chat app:    {base}/   Admin console: {base}/admin/")?;
    writeln!(out, "  WebSocket:   {ws}")?;
    writeln!(out, "  Swagger UI:  {base}/docs")?;
    writeln!(out, "  OpenAPI:     {base}/openapi.json")?;
    writeln!(out, "  AsyncAPI:    {base}/asyncapi.yaml")?;
    writeln!(out, "  Health:      {base}/healthz   Ready: {base}/readyz")?;
    writeln!(out, "  Data dir:    {}", s.data_dir.display())?;
    if s.auth.jwt_secret_generated {
        let exp = time::OffsetDateTime::now_utc().unix_timestamp() + DEV_TOKEN_DAYS * 86_400;
        let user = state.keys.mint(&Claims {
            user_id: "demo-user".into(),
            roles: vec!["user".into()],
            name: Some("Demo User".into()),
            exp: Some(exp),
            nbf: None,
        })?;
        let admin = state.keys.mint(&Claims {
            user_id: "demo-admin".into(),
            roles: vec!["admin".into()],
            name: Some("Demo Admin".into()),
            exp: Some(exp),
            nbf: None,
        })?;
        writeln!(out)?;
        writeln!(
            out,
            "Development tokens (valid {DEV_TOKEN_DAYS} days, signed with the secret in the data dir):"
        )?;
        writeln!(out, "  open chat:   {base}/#token={user}")?;
        writeln!(out, "  open admin:  {base}/admin/#token={admin}")?;
        writeln!(out, "  user:  {user}")?;
        writeln!(out, "  admin: {admin}")?;
        writeln!(out)?;
        writeln!(out, "Try it:  websocat '{ws}?token={user}'")?;
        writeln!(
            out,
            "         then send {{\"type\":\"user_message\",\"content\":\"Hello!\"}}"
        )?;
    }
    Ok(out)
}
