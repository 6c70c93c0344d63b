//! Several real `chatbox` binaries in cluster mode on one FerretDB database and one Redis, signing tokens
//! with one secret, and clients for them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chatbox::auth::{Claims, JwtKeys};
use secrecy::SecretString;
use serde_json::Value;

use crate::support::app::{WsClient, try_connect};
use crate::support::process::Server;

/// The JWT secret every node signs with.
pub const SECRET: &str = "q8Zr1vN3xK5wL7pT9yB2cF4hJ6mQ0sUaZZ-nodes";
const KEY: &str = "7f3a9c21e4b85d06f1a2c3e4d5b6a7980fedcba9876543210a1b2c3d4e5f6a7b";

/// Nodes sharing a database and Redis, with tokens for any user.
pub struct Nodes {
    /// The nodes, in start order.
    pub nodes: Vec<Server>,
    keys: JwtKeys,
    _dirs: Vec<tempfile::TempDir>,
}

impl Nodes {
    /// `count` nodes on the Redis of scripts/test.sh (`REDIS_URL`), with `extra` settings.
    pub async fn start(count: usize, extra: &[(&'static str, &str)]) -> Self {
        let redis = std::env::var("REDIS_URL").expect("REDIS_URL (run through scripts/test.sh)");
        Self::start_on(&redis, count, extra).await
    }

    /// `count` nodes on the Redis at `redis`, with `extra` settings.
    pub async fn start_on(redis: &str, count: usize, extra: &[(&'static str, &str)]) -> Self {
        let mongo =
            std::env::var("MONGODB_URI").expect("MONGODB_URI (run through scripts/test.sh)");
        let database = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut env: Vec<(&str, String)> = vec![
            ("MONGO_URI", mongo),
            ("MONGO_DATABASE", database),
            ("REDIS_URL", redis.to_string()),
            ("ENCRYPTION_KEY", KEY.into()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_string())));
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..count {
            let dir = tempfile::tempdir().unwrap();
            // Every node signs and checks tokens with one secret: the development secret file of its
            // data dir, the same for all (the banner then prints ready tokens).
            std::fs::create_dir_all(dir.path().join("data")).unwrap();
            std::fs::write(dir.path().join("data/dev-jwt-secret"), SECRET).unwrap();
            nodes.push(Server::start(dir.path(), &env).await);
            dirs.push(dir);
        }
        Self {
            nodes,
            keys: JwtKeys::new(&SecretString::from(SECRET), None).unwrap(),
            _dirs: dirs,
        }
    }

    /// A token for `user_id` with `roles`.
    pub fn token(&self, user_id: &str, roles: &[&str]) -> String {
        self.keys
            .mint(&Claims {
                user_id: user_id.into(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                name: None,
                exp: None,
                nbf: None,
            })
            .unwrap()
    }

    /// Opens a WebSocket on node `i` (0-based) and reads its `connection_status`.
    pub async fn connect(&self, i: usize, token: &str) -> (WsClient, Value) {
        let mut ws = self.nodes[i].banner.connect(token).await;
        let status = ws.recv().await;
        assert_eq!(status["type"], "connection_status", "{status}");
        (ws, status)
    }

    /// Tries to open a WebSocket on node `i`; the HTTP status on refusal.
    pub async fn try_connect(&self, i: usize, token: &str) -> Result<WsClient, u16> {
        let url = format!("{}?token={token}", self.nodes[i].banner.ws);
        try_connect(&url, &[]).await.map_err(|(status, _)| status)
    }

    /// Sends an HTTP request to node `i` (path below the API base) with `token`; its status and JSON body.
    pub async fn http(&self, i: usize, method: &str, path: &str, token: &str) -> (u16, Value) {
        let url = format!("{}{path}", self.nodes[i].banner.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = reqwest::Client::new()
            .request(method, url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Connects to node `i` resuming after `last_seq` and returns every frame up to the
    /// `connection_status` that closes the replay (the first one opens the connection).
    pub async fn resume(&self, i: usize, token: &str, last_seq: i64) -> Vec<Value> {
        let url = format!(
            "{}?token={token}&last_seq={last_seq}",
            self.nodes[i].banner.ws
        );
        let mut ws = WsClient::connect(&url).await;
        let mut frames = ws.recv_until("connection_status").await;
        frames.extend(ws.recv_until("connection_status").await);
        frames
    }
}

/// A user id of its own for one test.
pub fn new_user() -> String {
    format!("u-{}", uuid::Uuid::new_v4().simple())
}
