//! The web console over HTTP: both pages and their assets served from the binary with their types, ETags
//! (304 on a match) and the pages' Content-Security-Policy, which a 304 keeps; the prefix without its slash
//! redirected; unknown assets and the build's own records not served.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chatbox::api::console::CONSOLE_CSP;

use crate::support::app::spawn_app;

#[tokio::test]
async fn console_pages_and_assets_are_served_with_types_etags_and_the_page_policy() {
    let app = spawn_app().await;
    for (path, kind, page) in [
        ("/", "text/html; charset=utf-8", true),
        ("/admin/", "text/html; charset=utf-8", true),
        ("/assets/chat.js", "text/javascript; charset=utf-8", false),
        ("/assets/admin.js", "text/javascript; charset=utf-8", false),
        ("/assets/console.css", "text/css; charset=utf-8", false),
        ("/assets/favicon.svg", "image/svg+xml", false),
    ] {
        let url = format!("{}{path}", app.base);
        let response = app.http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], kind, "{path}");
        let body = response.bytes().await.unwrap();
        assert_eq!(
            &body[..],
            chatbox::api::console::asset(if path == "/" {
                "index.html"
            } else if path == "/admin/" {
                "admin/index.html"
            } else {
                &path[1..]
            })
            .unwrap(),
            "{path}"
        );
        if page {
            assert_eq!(headers["content-security-policy"], CONSOLE_CSP, "{path}");
        }
        let tag = headers["etag"].to_str().unwrap().to_owned();
        let again = app
            .http
            .get(&url)
            .header("if-none-match", &tag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        if page {
            // The browser merges a 304's headers into the cached page: the policy must stay the page's.
            assert_eq!(again.headers()["content-security-policy"], CONSOLE_CSP);
        }
    }
}

#[tokio::test]
async fn console_addresses_without_their_slash_redirect_and_other_files_are_not_served() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let bare = client.get(&app.base).send().await.unwrap();
    assert_eq!(bare.status(), 308);
    assert_eq!(bare.headers()["location"], "/chatbox/");
    let admin = client
        .get(format!("{}/admin", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 308);
    assert_eq!(admin.headers()["location"], "admin/");
    for path in [
        "/assets/missing.js",
        "/assets/BUILD-SOURCES.txt",
        "/BUILD-SOURCES.txt",
    ] {
        let response = client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    // The API beside the console is untouched.
    let health = client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}
