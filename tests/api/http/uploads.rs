//! Uploads over HTTP: round trips with ranges, every refusal (size, type, quota, body, token), another
//! user's file, signed links, encryption at rest and key rotation, the admin's file routes and the
//! deletion cascades, on the local store of the data directory and on a real S3-compatible server (moto).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::app::{SharedData, TestApp, app, spawn_app};
use crate::support::http::{call, delete, get, post};
use crate::support::schemas::assert_response;

/// The first bytes of a PNG image.
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";

/// A PNG-shaped file of `len` bytes whose bytes after the magic vary with their offset.
pub fn png(len: usize) -> Vec<u8> {
    let mut bytes = PNG_MAGIC.to_vec();
    bytes.extend((bytes.len()..len).map(|i| (i * 7 % 251) as u8));
    bytes.truncate(len);
    bytes
}

/// What an upload answered.
pub struct Uploaded {
    pub status: u16,
    pub body: Value,
}

impl Uploaded {
    pub fn id(&self) -> String {
        self.body["file_id"].as_str().unwrap().to_string()
    }
}

/// `POST /uploads` with `bytes` as the `file` part named `name`.
pub async fn upload(app: &TestApp, token: &str, name: &str, bytes: Vec<u8>) -> Uploaded {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name(name.to_string())
        .mime_str("application/octet-stream")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("note", "a field before the file is skipped")
        .part("file", part);
    let response = app
        .http
        .post(format!("{}/uploads", app.base))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_response("POST", "/uploads", status, &body);
    Uploaded { status, body }
}

/// `GET /uploads/{id}` with `token` and an optional `Range`: status, headers and bytes.
pub async fn download(
    app: &TestApp,
    path_and_query: &str,
    token: Option<&str>,
    range: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let url = format!("http://{}{path_and_query}", app.host());
    let mut request = app.http.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).map_or("", |v| v.to_str().unwrap())
}

/// The objects stored in the local uploads directory of `app`.
fn local_objects(app: &TestApp) -> Vec<std::path::PathBuf> {
    let dir = app.state.settings.data_dir.join("uploads");
    let mut out = Vec::new();
    let mut stack = vec![dir];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

async fn round_trip_with_ranges(app: &TestApp) {
    let token = app.user_token("uploader");
    // Three sealed chunks and a bit: ranges cross chunk boundaries.
    let bytes = png(3 * 64 * 1024 + 123);
    let up = upload(app, &token, "holiday photo.png", bytes.clone()).await;
    assert_eq!(up.status, 201, "{}", up.body);
    assert_eq!(up.body["name"], "holiday photo.png");
    assert_eq!(up.body["content_type"], "image/png");
    assert_eq!(up.body["size"], bytes.len());
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    assert_eq!(up.body["sha256"], sha);
    let path = format!("/chatbox/uploads/{}", up.id());

    let (status, headers, body) = download(app, &path, Some(&token), None).await;
    assert_eq!(status, 200);
    assert_eq!(body, bytes);
    assert_eq!(header(&headers, "content-type"), "image/png");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    assert_eq!(header(&headers, "accept-ranges"), "bytes");
    assert!(header(&headers, "content-security-policy").starts_with("sandbox"));
    assert_eq!(
        header(&headers, "content-disposition"),
        "inline; filename=\"holiday photo.png\"; filename*=UTF-8''holiday%20photo.png"
    );

    for (range, from, to) in [
        ("bytes=0-0", 0, 0),
        ("bytes=100-70000", 100, 70000),
        ("bytes=65535-131072", 65535, 131072),
        (
            &format!("bytes={}-", bytes.len() - 5) as &str,
            bytes.len() - 5,
            bytes.len() - 1,
        ),
        ("bytes=-10", bytes.len() - 10, bytes.len() - 1),
    ] {
        let (status, headers, body) = download(app, &path, Some(&token), Some(range)).await;
        assert_eq!(status, 206, "{range}");
        assert_eq!(body, bytes[from..=to], "{range}");
        assert_eq!(
            header(&headers, "content-range"),
            format!("bytes {from}-{to}/{}", bytes.len())
        );
    }
    let (status, headers, body) =
        download(app, &path, Some(&token), Some("bytes=999999999-")).await;
    assert_eq!(status, 416);
    assert_eq!(
        header(&headers, "content-range"),
        format!("bytes */{}", bytes.len())
    );
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["code"], "RANGE_NOT_SATISFIABLE");

    // The owner deletes it; then it is gone.
    let answer = call(
        app,
        Method::DELETE,
        &format!("/uploads/{}", up.id()),
        Some(&token),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, json!({"status": "deleted"}));
    let (status, _, _) = download(app, &path, Some(&token), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_upload_round_trips_with_ranges_and_safe_headers() {
    let app = spawn_app().await;
    round_trip_with_ranges(&app).await;
    assert!(
        local_objects(&app).is_empty(),
        "the deleted file's object is gone"
    );
}

#[tokio::test]
async fn an_empty_text_file_and_a_text_file_round_trip() {
    let app = spawn_app().await;
    let token = app.user_token("texter");
    let text = "line one\nligne deux é\n".repeat(10).into_bytes();
    let up = upload(&app, &token, "notes.md", text.clone()).await;
    assert_eq!(up.status, 201);
    assert_eq!(up.body["content_type"], "text/plain; charset=utf-8");
    let path = format!("/chatbox/uploads/{}", up.id());
    let (status, headers, body) = download(&app, &path, Some(&token), None).await;
    assert_eq!((status, body), (200, text));
    assert!(header(&headers, "content-disposition").starts_with("attachment;"));
    let empty = upload(&app, &token, "empty.txt", Vec::new()).await;
    assert_eq!(empty.status, 201);
    assert_eq!(empty.body["size"], 0);
    let path = format!("/chatbox/uploads/{}", empty.id());
    let (status, _, body) = download(&app, &path, Some(&token), None).await;
    assert_eq!((status, body.len()), (200, 0));
}

/// Sends a request head declaring `declared` body bytes and `sent` of them, and returns the status line
/// the server answers with (it answers before the body is complete).
async fn raw_upload_status(app: &TestApp, token: &str, declared: u64, sent: usize) -> String {
    let mut stream = tokio::net::TcpStream::connect(app.host()).await.unwrap();
    let head = format!(
        "POST /chatbox/uploads HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: {declared}\r\n\r\n",
        app.host()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut body =
        b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n"
            .to_vec();
    body.extend(png(sent));
    stream.write_all(&body).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = stream.read(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn bad_uploads_are_refused_with_clear_errors_and_leave_nothing_behind() {
    let app = app()
        .env("UPLOADS_MAX_SIZE", "200000")
        .env("UPLOADS_QUOTA", "300000")
        .env("UPLOADS_MAX_FILES", "3")
        .spawn()
        .await;
    let token = app.user_token("refused");
    let code = |u: &Uploaded| u.body["code"].as_str().unwrap_or_default().to_string();

    // Over the size limit while streaming: 413, and no partial object stays.
    let big = upload(&app, &token, "big.png", png(200_001)).await;
    assert_eq!((big.status, code(&big)), (413, "FILE_TOO_LARGE".into()));
    assert_eq!(big.body["error"], "File too large");
    // A declared length over the limit is refused before the body is read.
    let status = raw_upload_status(&app, &token, 50_000_000, 1000).await;
    assert!(status.contains(" 413 "), "{status}");
    // Types come from the bytes: an executable named like an image, a zip, a binary blob.
    for (name, bytes) in [
        (
            "photo.png",
            b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec(),
        ),
        ("doc.txt", b"PK\x03\x04\x14\0\0\0\x08\0".to_vec()),
        ("data.txt", vec![0u8, 1, 2, 3, 0, 0xff]),
    ] {
        let refused = upload(&app, &token, name, bytes).await;
        assert_eq!(
            (refused.status, code(&refused)),
            (415, "UNSUPPORTED_FILE_TYPE".into()),
            "{name}"
        );
        assert_eq!(refused.body["error"], "File type not allowed");
    }
    // Not multipart, no file part, no token.
    let answer = app
        .http
        .post(format!("{}/uploads", app.base))
        .bearer_auth(&token)
        .body("just text")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let form = reqwest::multipart::Form::new().text("other", "no file");
    let answer = app
        .http
        .post(format!("{}/uploads", app.base))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let answer = app
        .http
        .post(format!("{}/uploads", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["code"], "UNAUTHORIZED");
    assert!(local_objects(&app).is_empty(), "{:?}", local_objects(&app));

    // Names are sanitised: no path, no control or reordering characters.
    let named = upload(
        &app,
        &token,
        "../../etc/evil\u{202e}gnp.txt",
        b"hello".to_vec(),
    )
    .await;
    assert_eq!(named.status, 201);
    assert_eq!(named.body["name"], "evilgnp.txt");
    // The quota: bytes, then files.
    let first = upload(&app, &token, "a.png", png(150_000)).await;
    assert_eq!(first.status, 201);
    let over = upload(&app, &token, "b.png", png(150_000)).await;
    assert_eq!((over.status, code(&over)), (413, "QUOTA_EXCEEDED".into()));
    assert_eq!(over.body["error"], "Upload quota exceeded");
    let third = upload(&app, &token, "c.txt", b"small".to_vec()).await;
    assert_eq!(third.status, 201);
    let fourth = upload(&app, &token, "d.txt", b"small".to_vec()).await;
    assert_eq!(
        (fourth.status, code(&fourth)),
        (413, "QUOTA_EXCEEDED".into())
    );
    assert_eq!(
        local_objects(&app).len(),
        3,
        "only the stored files have objects"
    );
}

#[tokio::test]
async fn uploads_are_rate_limited_like_messages() {
    let app = app()
        .env("RATE_LIMIT", "2")
        .env("RATE_LIMIT_WINDOW", "1h")
        .spawn()
        .await;
    let token = app.user_token("hasty");
    for _ in 0..2 {
        assert_eq!(
            upload(&app, &token, "a.txt", b"a".to_vec()).await.status,
            201
        );
    }
    let limited = upload(&app, &token, "a.txt", b"a".to_vec()).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.body["error"], "rate_limit_exceeded");
}

#[tokio::test]
async fn another_users_file_is_not_found_and_signed_links_cover_one_file_until_expiry() {
    let app = spawn_app().await;
    let owner = app.user_token("owner");
    let stranger = app.user_token("stranger");
    let admin = app.admin_token("boss");
    let up = upload(&app, &owner, "secret.png", png(1000)).await;
    let id = up.id();
    let path = format!("/chatbox/uploads/{id}");
    for token in [&stranger, &admin] {
        let (status, _, body) = download(&app, &path, Some(token), None).await;
        assert_eq!(status, 404);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (body["error"].as_str(), body["code"].as_str()),
            (Some("File not found"), Some("NOT_FOUND"))
        );
        let answer = call(&app, Method::DELETE, &format!("/uploads/{id}"), Some(token)).await;
        assert_eq!(answer.status, 404);
        let answer = call(
            &app,
            Method::POST,
            &format!("/uploads/{id}/link"),
            Some(token),
        )
        .await;
        assert_eq!(answer.status, 404);
    }
    let (status, _, _) = download(&app, &path, None, None).await;
    assert_eq!(status, 401);
    let (status, _, _) = download(&app, &path, Some("not-a-token"), None).await;
    assert_eq!(status, 401);
    // Unknown ids and ids of no upload shape are 404 too.
    let (status, _, _) = download(
        &app,
        "/chatbox/uploads/0123456789abcdef0123456789abcdef",
        Some(&owner),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = download(&app, "/chatbox/uploads/..%2F..%2Fetc", Some(&owner), None).await;
    assert_eq!(status, 404);

    // A signed link needs no token, for this file only and until it expires.
    let link = call(
        &app,
        Method::POST,
        &format!("/uploads/{id}/link"),
        Some(&owner),
    )
    .await;
    assert_eq!(link.status, 200);
    let url = link.body["url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&format!("{path}?expires=")), "{url}");
    let (status, _, body) = download(&app, &url, None, None).await;
    assert_eq!((status, body), (200, png(1000)));
    let other = upload(&app, &owner, "other.png", png(10)).await;
    let moved = url.replace(&id, &other.id());
    assert_eq!(download(&app, &moved, None, None).await.0, 401);
    let expires: i64 = url
        .split("expires=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let stretched = url.replace(
        &format!("expires={expires}"),
        &format!("expires={}", expires + 3600),
    );
    assert_eq!(download(&app, &stretched, None, None).await.0, 401);
    // A link signed an hour ago has expired.
    let old = app.state.files.link(
        &id,
        time::OffsetDateTime::now_utc() - time::Duration::hours(1),
    );
    assert_eq!(download(&app, &old.url, None, None).await.0, 401);
}

#[tokio::test]
async fn stored_objects_are_encrypted_and_key_rotation_rewraps_file_keys() {
    let data = SharedData::new();
    let k1 = "1".repeat(64);
    let k2 = "2".repeat(64);
    let first = app()
        .embedded()
        .data(&data)
        .env("ENCRYPTION_KEYS", format!("k1:{k1}"))
        .env("ENCRYPTION_ACTIVE_KEY_ID", "k1")
        .spawn()
        .await;
    let token = first.user_token("rotating");
    let plain = "a recognisable line of plaintext\n"
        .repeat(5000)
        .into_bytes();
    let up = upload(&first, &token, "plain.txt", plain.clone()).await;
    let id = up.id();
    let stored = first.state.files.objects().raw(&id).await.unwrap();
    assert!(stored.len() > plain.len());
    assert!(
        !stored.windows(24).any(|w| w == &plain[..24]),
        "the stored object holds no plaintext"
    );
    first.stop().await;

    let second = app()
        .embedded()
        .data(&data)
        .env("ENCRYPTION_KEYS", format!("k1:{k1},k2:{k2}"))
        .env("ENCRYPTION_ACTIVE_KEY_ID", "k2")
        .spawn()
        .await;
    assert_eq!(second.state.files.rotate().await.unwrap(), 1);
    assert_eq!(
        second.state.files.rotate().await.unwrap(),
        0,
        "nothing left"
    );
    let record = second.state.store.get_file(&id).await.unwrap().unwrap();
    assert_eq!(record.key_id, "k2");
    second.stop().await;

    // Only the new key now: the file still opens, name included.
    let third = app()
        .embedded()
        .data(&data)
        .env("ENCRYPTION_KEYS", format!("k2:{k2}"))
        .env("ENCRYPTION_ACTIVE_KEY_ID", "k2")
        .spawn()
        .await;
    let (status, headers, body) = download(
        &third,
        &format!("/chatbox/uploads/{id}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!((status, body == plain), (200, true));
    assert!(header(&headers, "content-disposition").contains("plain.txt"));
}

/// Opens a WebSocket for `token` and returns it with its session id (after one chat turn).
pub async fn chatting(app: &TestApp, token: &str) -> (crate::support::app::WsClient, String) {
    let (ws, frames) = app.chat_once(token, "hello").await;
    let session = frames
        .iter()
        .find_map(|f| f["session_id"].as_str())
        .unwrap()
        .to_string();
    (ws, session)
}

#[tokio::test]
async fn a_file_message_names_an_upload_and_every_device_sees_its_download_path() {
    let app = spawn_app().await;
    let token = app.user_token("sharer");
    let (mut ws, session) = chatting(&app, &token).await;
    let mut second = app.connect_ws(&token).await;
    second.recv_until("connection_status").await;
    let up = upload(&app, &token, "cat.png", png(500)).await;
    let id = up.id();
    ws.send(
        json!({"type": "file_upload", "session_id": session, "file_id": id, "content": "my cat"}),
    )
    .await;
    let event = ws.recv_until("file_upload").await.pop().unwrap();
    let other = second.recv_until("file_upload").await.pop().unwrap();
    for e in [&event, &other] {
        assert_eq!(e["file_url"], format!("/chatbox/uploads/{id}"));
        assert_eq!(e["metadata"]["filename"], "cat.png");
        assert_eq!(e["metadata"]["type"], "image/png");
        assert_eq!(e["content"], "my cat");
    }
    let record = app.state.store.get_file(&id).await.unwrap().unwrap();
    assert_eq!(record.session_id.as_deref(), Some(session.as_str()));

    // Another user cannot post it, nor an id of upload shape that names nothing without a URL.
    let thief = app.user_token("thief");
    let (mut tws, tsession) = chatting(&app, &thief).await;
    tws.send(json!({"type": "file_upload", "session_id": tsession, "file_id": id}))
        .await;
    let error = tws.recv_until("error").await.pop().unwrap();
    assert_eq!(
        (
            error["error"]["code"].as_str(),
            error["error"]["message"].as_str()
        ),
        (Some("INVALID_FORMAT"), Some("File not found"))
    );
    tws.send(json!({"type": "file_upload", "session_id": tsession, "file_id": "0123456789abcdef0123456789abcdef"}))
        .await;
    let error = tws.recv_until("error").await.pop().unwrap();
    assert_eq!(error["error"]["message"], "File not found");
    // A file id that is not an upload still needs a public https URL (the Go service's form).
    tws.send(json!({"type": "file_upload", "session_id": tsession, "file_id": "f-1"}))
        .await;
    let error = tws.recv_until("error").await.pop().unwrap();
    assert_eq!(error["error"]["message"], "Invalid file URL");
}

#[tokio::test]
async fn the_admin_assisting_a_session_reads_its_files_lists_and_removes_them_audited() {
    let app = spawn_app().await;
    let token = app.user_token("helped");
    let admin = app.admin_token("helper");
    let (mut ws, session) = chatting(&app, &token).await;
    let up = upload(
        &app,
        &token,
        "form.pdf",
        b"%PDF-1.7\n%\xe2\xe3\n1 0 obj\n".to_vec(),
    )
    .await;
    assert_eq!(up.body["content_type"], "application/pdf");
    let id = up.id();
    ws.send(json!({"type": "file_upload", "session_id": session, "file_id": id}))
        .await;
    ws.recv_until("file_upload").await;
    let path = format!("/chatbox/uploads/{id}");
    assert_eq!(
        download(&app, &path, Some(&admin), None).await.0,
        404,
        "not assisting yet"
    );
    let taken = post(&app, &format!("/admin/takeover/{session}"), &admin).await;
    assert_eq!(taken.status, 200);
    assert_eq!(download(&app, &path, Some(&admin), None).await.0, 200);

    let list = get(&app, &format!("/admin/sessions/{session}/files"), &admin).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body["count"], 1);
    assert_eq!(list.body["files"][0]["file_id"], id);
    assert_eq!(list.body["files"][0]["name"], "form.pdf");
    assert_eq!(
        get(&app, &format!("/admin/sessions/{session}/files"), &token)
            .await
            .status,
        403
    );
    let missing = delete(
        &app,
        &format!("/admin/sessions/{session}/files/0123456789abcdef0123456789abcdef"),
        &admin,
    )
    .await;
    assert_eq!(missing.status, 404);
    let removed = delete(
        &app,
        &format!("/admin/sessions/{session}/files/{id}"),
        &admin,
    )
    .await;
    assert_eq!(removed.status, 200);
    assert_eq!(download(&app, &path, Some(&token), None).await.0, 404);
    let audit = get(&app, "/admin/audit?limit=10", &admin).await;
    let actions: Vec<&str> = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"file_list") && actions.contains(&"file_delete"),
        "{actions:?}"
    );
    let entry = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "file_delete")
        .unwrap();
    assert_eq!(entry["details"]["file_id"], id);
}

#[tokio::test]
async fn files_go_with_their_user_their_session_and_unused_uploads_after_the_orphan_time() {
    let app = app().env("UPLOADS_ORPHAN_TTL", "1h").spawn().await;
    let token = app.user_token("leaving");
    let admin = app.admin_token("gdpr");
    let (mut ws, session) = chatting(&app, &token).await;
    let posted = upload(&app, &token, "posted.txt", b"posted".to_vec())
        .await
        .id();
    let orphan = upload(&app, &token, "orphan.txt", b"orphan".to_vec())
        .await
        .id();
    ws.send(json!({"type": "file_upload", "session_id": session, "file_id": posted}))
        .await;
    ws.recv_until("file_upload").await;

    // The orphan goes once the orphan time has passed; the posted file stays while its session exists.
    let files = &app.state.files;
    let now = time::OffsetDateTime::now_utc();
    assert_eq!(files.purge(now).await.unwrap(), 0);
    assert_eq!(
        files.purge(now + time::Duration::hours(2)).await.unwrap(),
        1
    );
    assert!(app.state.store.get_file(&orphan).await.unwrap().is_none());
    assert!(app.state.store.get_file(&posted).await.unwrap().is_some());

    // A file of an administrator posted in the user's older session; the user then has a newer one.
    let helper = app
        .state
        .files
        .upload("helper-admin", Some("form.txt"), &b"for the user"[..])
        .await
        .unwrap();
    app.state
        .store
        .attach_file(&helper.record.id, &session)
        .await
        .unwrap();
    drop(ws);
    post(&app, &format!("/sessions/{session}/end"), &token).await;
    let (_ws, newer) = chatting(&app, &token).await;
    assert_ne!(newer, session);

    // Deleting the user deletes the files, objects included, also the administrator's in the user's sessions.
    let other = upload(&app, &token, "kept-till-delete.txt", b"x".to_vec())
        .await
        .id();
    let answer = delete(&app, "/admin/users/leaving", &admin).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    for id in [&posted, &other, &helper.record.id] {
        assert!(app.state.store.get_file(id).await.unwrap().is_none());
    }
    assert!(local_objects(&app).is_empty(), "{:?}", local_objects(&app));
}

#[tokio::test]
async fn files_of_a_session_removed_by_retention_are_purged() {
    let app = spawn_app().await;
    let token = app.user_token("retained");
    let (mut ws, session) = chatting(&app, &token).await;
    let id = upload(&app, &token, "old.txt", b"old".to_vec()).await.id();
    ws.send(json!({"type": "file_upload", "session_id": session, "file_id": id}))
        .await;
    ws.recv_until("file_upload").await;
    drop(ws);
    post(&app, &format!("/sessions/{session}/end"), &token).await;
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let files = &app.state.files;
    assert_eq!(files.purge_expired(2, later).await.unwrap(), 0, "not yet");
    assert!(app.state.store.get_file(&id).await.unwrap().is_some());
    assert_eq!(files.purge_expired(0, later).await.unwrap(), 1);
    assert!(app.state.store.get_file(&id).await.unwrap().is_none());
    assert!(local_objects(&app).is_empty());
}

/// A server whose uploads go to a fresh bucket of the S3-compatible test server (moto, started by
/// scripts/test.sh; `CHATBOX_TEST_S3_ENDPOINT`).
async fn on_s3() -> (TestApp, String) {
    let endpoint = std::env::var("CHATBOX_TEST_S3_ENDPOINT")
        .expect("CHATBOX_TEST_S3_ENDPOINT: run scripts/test.sh, which starts moto");
    let bucket = format!("t-{}", uuid::Uuid::new_v4().simple());
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    let app = app()
        .env("UPLOADS_S3_BUCKET", bucket.clone())
        .env("UPLOADS_S3_ENDPOINT", endpoint)
        .env("UPLOADS_S3_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .spawn()
        .await;
    (app, bucket)
}

#[tokio::test]
async fn on_s3_uploads_round_trip_with_ranges_and_are_encrypted_at_rest() {
    let (app, _bucket) = on_s3().await;
    round_trip_with_ranges(&app).await;
    // A file larger than one multipart part (5 MiB) goes up in parts and comes back whole.
    let token = app.user_token("s3user");
    let bytes = png(11 * 1024 * 1024 + 17);
    let up = upload(&app, &token, "big.png", bytes.clone()).await;
    assert_eq!(up.status, 201, "{}", up.body);
    let path = format!("/chatbox/uploads/{}", up.id());
    let (status, _, body) = download(&app, &path, Some(&token), None).await;
    assert_eq!((status, body.len()), (200, bytes.len()));
    assert!(body == bytes);
    let (status, _, body) =
        download(&app, &path, Some(&token), Some("bytes=5242870-5242890")).await;
    assert_eq!(
        (status, body.as_slice()),
        (206, &bytes[5_242_870..=5_242_890])
    );
    let stored = app.state.files.objects().raw(&up.id()).await.unwrap();
    assert!(!stored.windows(16).any(|w| w == &bytes[1000..1016]));
    assert!(
        local_objects(&app).is_empty(),
        "nothing in the data directory"
    );
    let refused = upload(&app, &token, "x.bin", vec![0u8; 100]).await;
    assert_eq!(refused.status, 415);
}

#[tokio::test]
async fn an_upload_cut_off_mid_body_leaves_no_object_and_no_record() {
    let app = spawn_app().await;
    let token = app.user_token("cut");
    let deadline = || std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut stream = tokio::net::TcpStream::connect(app.host()).await.unwrap();
    let head = format!(
        "POST /chatbox/uploads HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 5000000\r\n\r\n",
        app.host()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut body =
        b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n"
            .to_vec();
    // Past the type check: the object is being written (its staging file exists).
    body.extend(png(600_000));
    stream.write_all(&body).await.unwrap();
    stream.flush().await.unwrap();
    let until = deadline();
    while local_objects(&app).is_empty() && std::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        !local_objects(&app).is_empty(),
        "the upload started writing"
    );
    // The client goes away mid-body: the server aborts the partial object.
    drop(stream);
    let until = deadline();
    while !local_objects(&app).is_empty() && std::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(local_objects(&app).is_empty(), "{:?}", local_objects(&app));
    let files = app
        .state
        .store
        .list_files(chatbox::store::FileFilter::User("cut"), 10)
        .await
        .unwrap();
    assert!(files.is_empty());
    // The user's next upload works.
    assert_eq!(
        upload(&app, &token, "b.txt", b"ok".to_vec()).await.status,
        201
    );
}
