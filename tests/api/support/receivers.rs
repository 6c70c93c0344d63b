//! Real receivers for notification tests: an SMTP server (aiosmtpd, a Python package that
//! `scripts/test.sh` installs into a venv and announces with `CHATBOX_TEST_PYTHON`) writing to a maildir, a
//! small HTTP server that records webhook requests and answers with scripted statuses, and a fake of Twilio's
//! Messages API that checks requests and answers as Twilio does.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Request, Response};
use serde_json::Value;
use sha2::Sha256;

use crate::support::wait::{POLL_DEADLINE, eventually};

/// The Python interpreter that has aiosmtpd: `CHATBOX_TEST_PYTHON`, else the venv `scripts/test.sh` creates.
fn python() -> PathBuf {
    let candidates: Vec<PathBuf> = std::env::var_os("CHATBOX_TEST_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            std::env::var_os("CHATBOX_TOOLS_DIR")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("XDG_CACHE_HOME")
                        .map(|d| PathBuf::from(d).join("chatbox-tools"))
                })
                .or_else(|| {
                    std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/chatbox-tools"))
                })
                .map(|d| d.join("aiosmtpd-venv/bin/python")),
        )
        .collect();
    for python in &candidates {
        let works = Command::new(python)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if works {
            return python.clone();
        }
    }
    panic!(
        "no Python with aiosmtpd found (tried {candidates:?}): run scripts/test.sh once (it installs aiosmtpd into \
         a venv and exports CHATBOX_TEST_PYTHON), or set CHATBOX_TEST_PYTHON to a python where `pip install aiosmtpd` was run"
    );
}

/// A loopback port nothing listens on at the moment (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real SMTP server on a free loopback port, killed on drop.
pub struct SmtpServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
    python: PathBuf,
    dir: tempfile::TempDir,
}

/// One received mail, parsed by Python's `email` package.
#[derive(Debug)]
pub struct Mail {
    /// Headers and bodies: `subject`, `from`, `to`, `rcpt_to`, `content_type`, `text`, `html`.
    pub json: Value,
}

const PARSE_MAIL: &str = r#"
import email, email.policy, json, sys
with open(sys.argv[1], "rb") as f:
    m = email.message_from_binary_file(f, policy=email.policy.default)
plain = m.get_body(("plain",))
html = m.get_body(("html",))
print(json.dumps({
    "subject": str(m["subject"]), "from": str(m["from"]), "to": str(m["to"]),
    "rcpt_to": str(m["X-RcptTo"]), "content_type": m.get_content_type(),
    "text": plain.get_content() if plain else None, "html": html.get_content() if html else None,
}))
"#;

/// aiosmtpd with TLS and required authentication: `port maildir cert key mode user password`.
const SECURE_SMTP: &str = r#"
import ssl, sys, threading
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword
port, maildir, cert, key, mode, user, password = sys.argv[1:8]
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
def authenticate(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == user.encode() and data.password == password.encode()
    return AuthResult(success=ok, handled=False)
# With TLS from the first byte the whole session is encrypted; aiosmtpd only tracks STARTTLS for AUTH.
tls = ({"tls_context": ctx, "require_starttls": True, "auth_require_tls": True} if mode == "starttls"
       else {"ssl_context": ctx, "auth_require_tls": False})
controller = Controller(Mailbox(maildir), hostname="127.0.0.1", port=int(port), authenticator=authenticate,
                        auth_required=True, **tls)
controller.start()
threading.Event().wait()
"#;

/// A private CA and a server certificate for 127.0.0.1 and localhost that it issued, as PEM files.
pub struct TestCa {
    /// The CA certificate (what `SMTP_CA_FILE` points to).
    pub ca: PathBuf,
    /// The server certificate.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCa {
    /// Generates a fresh CA and server certificate.
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "chatbox test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        Self {
            ca: write("ca.pem", ca.pem()),
            cert: write("server.pem", cert.pem()),
            key: write("server.key", key.serialize_pem()),
            _dir: dir,
        }
    }
}

impl SmtpServer {
    /// Starts aiosmtpd with its Mailbox handler (plain SMTP, no authentication) and waits until it accepts
    /// connections.
    pub async fn start() -> Self {
        Self::spawn(|port, maildir| {
            vec![
                "-m".into(),
                "aiosmtpd".into(),
                "-n".into(),
                "-l".into(),
                format!("127.0.0.1:{port}"),
                "-c".into(),
                "aiosmtpd.handlers.Mailbox".into(),
                maildir.display().to_string(),
            ]
        })
        .await
    }

    /// Starts aiosmtpd with TLS (`mode` `starttls`, required before anything else, or `tls` from the first
    /// byte) with a certificate for 127.0.0.1 issued by `ca`, requiring AUTH as `user`/`password`.
    pub async fn start_tls(mode: &str, ca: &TestCa, user: &str, password: &str) -> Self {
        let (cert, key) = (ca.cert.display().to_string(), ca.key.display().to_string());
        let mode = mode.to_string();
        let (user, password) = (user.to_string(), password.to_string());
        Self::spawn(move |port, maildir| {
            vec![
                "-c".into(),
                SECURE_SMTP.into(),
                port.to_string(),
                maildir.display().to_string(),
                cert.clone(),
                key.clone(),
                mode.clone(),
                user.clone(),
                password.clone(),
            ]
        })
        .await
    }

    /// Runs the venv's Python with `args(port, maildir)` and waits until the port accepts connections.
    async fn spawn(args: impl Fn(u16, &Path) -> Vec<String>) -> Self {
        let python = python();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("aiosmtpd.log")).unwrap();
        let child = Command::new(&python)
            .args(args(port, &dir.path().join("maildir")))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start aiosmtpd");
        let mut server = Self {
            port,
            child,
            python,
            dir,
        };
        let deadline = tokio::time::Instant::now() + POLL_DEADLINE;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("aiosmtpd exited with {status}: {}", server.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "aiosmtpd did not start: {}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("aiosmtpd.log")).unwrap_or_default()
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("maildir/new"))
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    fn parse(&self, path: &Path) -> Mail {
        let out = Command::new(&self.python)
            .args(["-c", PARSE_MAIL])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mail {
            json: serde_json::from_slice(&out.stdout).unwrap(),
        }
    }

    /// Waits until at least `n` mails have arrived and returns them all.
    pub async fn wait_for_mails(&self, n: usize) -> Vec<Mail> {
        let files = eventually(&format!("{n} mail(s)"), || {
            Some(self.files()).filter(|f| f.len() >= n)
        })
        .await;
        files.iter().map(|f| self.parse(f)).collect()
    }

    /// Mails received so far.
    pub fn count(&self) -> usize {
        self.files().len()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Asserts the signature is `sha256=HMAC-SHA256(secret, "<timestamp>.<body>")` with a fresh timestamp,
    /// recomputed here independently of the server's code.
    pub fn assert_signed_with(&self, secret: &str) {
        let timestamp = &self.headers["x-chatbox-timestamp"];
        let sent: i64 = timestamp.parse().unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(
            (now - sent).abs() < 300,
            "stale timestamp {sent} (now {now})"
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(&self.body);
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            self.headers["x-chatbox-signature"], expected,
            "signature mismatch"
        );
    }
}

struct ReceiverState {
    received: Mutex<Vec<Received>>,
    statuses: Mutex<VecDeque<u16>>,
    delay: Duration,
}

/// A webhook receiver on a free loopback port; stops on drop.
pub struct WebhookReceiver {
    /// `http://127.0.0.1:<port>/hooks/help?token=...`
    pub url: String,
    state: Arc<ReceiverState>,
    server: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    /// Answers the scripted `statuses` in order, then 200; each answer after `delay`.
    pub async fn start(statuses: &[u16], delay: Duration) -> Self {
        let state = Arc::new(ReceiverState {
            received: Mutex::new(Vec::new()),
            statuses: Mutex::new(statuses.iter().copied().collect()),
            delay,
        });
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
        let shared = Arc::clone(&state);
        let endpoint = poem::endpoint::make(move |req: Request| {
            let state = Arc::clone(&shared);
            async move {
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_string(),
                            v.to_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect();
                let body = req.into_body().into_vec().await.unwrap_or_default();
                state
                    .received
                    .lock()
                    .unwrap()
                    .push(Received { headers, body });
                tokio::time::sleep(state.delay).await;
                let status = state.statuses.lock().unwrap().pop_front().unwrap_or(200);
                Response::builder()
                    .status(poem::http::StatusCode::from_u16(status).unwrap())
                    .finish()
            }
        });
        let server = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor)
                .run(endpoint)
                .await;
        });
        Self {
            url: format!("http://127.0.0.1:{port}/hooks/help?token=t0k3n"),
            state,
            server,
        }
    }

    /// Requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests have arrived and returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        eventually(&format!("{n} webhook request(s)"), || {
            Some(self.received()).filter(|r| r.len() >= n)
        })
        .await
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One request the fake Twilio API got.
#[derive(Debug, Clone)]
pub struct TwilioRequest {
    /// HTTP method.
    pub method: String,
    /// Path of the request.
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    /// The form fields, in the order sent.
    pub form: Vec<(String, String)>,
    /// When it arrived.
    pub at: tokio::time::Instant,
}

impl TwilioRequest {
    /// The value of form field `name`.
    pub fn field(&self, name: &str) -> &str {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no form field {name} in {:?}", self.form))
    }
}

struct TwilioState {
    sid: String,
    token: String,
    received: Mutex<Vec<TwilioRequest>>,
    /// Scripted statuses per `To` number, answered in order, then 201.
    script: Mutex<HashMap<String, VecDeque<u16>>>,
    /// While true, requests wait before they are answered.
    hold: tokio::sync::watch::Sender<bool>,
}

/// A Twilio error body: `{code, message, more_info, status}`.
fn twilio_error(status: u16, code: u32, message: &str) -> Response {
    let body = serde_json::json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    });
    let mut response = Response::builder()
        .status(poem::http::StatusCode::from_u16(status).unwrap())
        .content_type("application/json")
        .body(body.to_string());
    if status == 429 {
        response
            .headers_mut()
            .insert("retry-after", "1".parse().unwrap());
    }
    response
}

impl TwilioState {
    /// Answers as Twilio's Messages API does: 404 for another path, 401 for wrong credentials, 400 for a
    /// missing field, else the scripted status or 201 with the message resource.
    fn answer(&self, request: &TwilioRequest) -> Response {
        let expected_path = format!("/2010-04-01/Accounts/{}/Messages.json", self.sid);
        if request.method != "POST" || request.path != expected_path {
            return twilio_error(404, 20404, "The requested resource was not found");
        }
        let credentials = format!("{}:{}", self.sid, self.token);
        let expected_auth = format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, credentials)
        );
        if request.headers.get("authorization") != Some(&expected_auth) {
            return twilio_error(401, 20003, "Authenticate");
        }
        let fields: Vec<&str> = request.form.iter().map(|(k, _)| k.as_str()).collect();
        for name in ["To", "From", "Body"] {
            if !fields.contains(&name) {
                return twilio_error(400, 21604, &format!("A '{name}' parameter is required."));
            }
        }
        let to = request.field("To").to_string();
        let scripted = self
            .script
            .lock()
            .unwrap()
            .get_mut(&to)
            .and_then(VecDeque::pop_front);
        match scripted {
            Some(400) => twilio_error(
                400,
                21211,
                &format!("The 'To' number {to} is not a valid phone number."),
            ),
            Some(429) => twilio_error(429, 20429, "Too Many Requests"),
            Some(500) => twilio_error(500, 20500, "Internal Server Error"),
            Some(other) if other != 201 => twilio_error(other, 20001, "Scripted failure"),
            _ => {
                let message_sid = format!("SM{}", uuid::Uuid::new_v4().simple());
                let body = serde_json::json!({
                    "account_sid": self.sid,
                    "api_version": "2010-04-01",
                    "body": request.field("Body"),
                    "direction": "outbound-api",
                    "error_code": null,
                    "error_message": null,
                    "from": request.field("From"),
                    "num_segments": "1",
                    "price": null,
                    "sid": message_sid,
                    "status": "queued",
                    "to": to,
                    "uri": format!("/2010-04-01/Accounts/{}/Messages/{message_sid}.json", self.sid),
                });
                Response::builder()
                    .status(poem::http::StatusCode::CREATED)
                    .content_type("application/json")
                    .body(body.to_string())
            }
        }
    }
}

/// A fake of Twilio's Messages API on a free loopback port, checking path, basic auth and form fields as
/// Twilio does and answering in its format; stops on drop.
pub struct FakeTwilio {
    /// `http://127.0.0.1:<port>`: what `SMS_API_BASE_URL` is set to.
    pub base_url: String,
    state: Arc<TwilioState>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeTwilio {
    /// Accepts account `sid` with `token`; `script` gives, per `To` number, the statuses to answer first
    /// (400: invalid number, 429 with `Retry-After: 1`, 500), then 201.
    pub async fn start(sid: &str, token: &str, script: &[(&str, &[u16])]) -> Self {
        let state = Arc::new(TwilioState {
            sid: sid.to_string(),
            token: token.to_string(),
            received: Mutex::new(Vec::new()),
            script: Mutex::new(
                script
                    .iter()
                    .map(|(to, statuses)| (to.to_string(), statuses.iter().copied().collect()))
                    .collect(),
            ),
            hold: tokio::sync::watch::Sender::new(false),
        });
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
        let shared = Arc::clone(&state);
        let endpoint = poem::endpoint::make(move |req: Request| {
            let state = Arc::clone(&shared);
            async move {
                let at = tokio::time::Instant::now();
                let (req, mut body) = req.split();
                let form = match <poem::web::Form<Vec<(String, String)>> as poem::FromRequest>::from_request(&req, &mut body).await {
                    Ok(poem::web::Form(form)) => form,
                    Err(_) => Vec::new(),
                };
                let request = TwilioRequest {
                    method: req.method().to_string(),
                    path: req.uri().path().to_string(),
                    headers: req
                        .headers()
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.as_str().to_string(),
                                v.to_str().unwrap_or_default().to_string(),
                            )
                        })
                        .collect(),
                    form,
                    at,
                };
                state.received.lock().unwrap().push(request.clone());
                let mut hold = state.hold.subscribe();
                let _ = hold.wait_for(|held| !held).await;
                state.answer(&request)
            }
        });
        let server = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor)
                .run(endpoint)
                .await;
        });
        Self {
            base_url: format!("http://127.0.0.1:{port}"),
            state,
            server,
        }
    }

    /// Makes requests wait unanswered (`true`) until called again with `false`.
    pub fn hold(&self, held: bool) {
        self.state.hold.send_replace(held);
    }

    /// Requests received so far.
    pub fn received(&self) -> Vec<TwilioRequest> {
        self.state.received.lock().unwrap().clone()
    }

    /// Requests received so far for `to`.
    pub fn received_for(&self, to: &str) -> Vec<TwilioRequest> {
        self.received()
            .into_iter()
            .filter(|r| r.form.iter().any(|(k, v)| k == "To" && v == to))
            .collect()
    }

    /// Waits until at least `n` requests have arrived and returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<TwilioRequest> {
        eventually(&format!("{n} Twilio request(s)"), || {
            Some(self.received()).filter(|r| r.len() >= n)
        })
        .await
    }
}

impl Drop for FakeTwilio {
    fn drop(&mut self) {
        self.server.abort();
    }
}
