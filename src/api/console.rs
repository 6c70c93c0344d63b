//! The web console: `{P}/` (the chat app) and `{P}/admin/` (the admin console), with their scripts and
//! styles under `{P}/assets/`. The files are the committed build output of `web/` (`web/dist/`), built into
//! the binary (`$OUT_DIR/web_assets.rs`), so serving them never needs Node. Pages carry [`CONSOLE_CSP`].

use poem::http::{StatusCode, header};
use poem::web::Path;
use poem::{Request, Response, handler};

use super::etag::{etag, fresh};

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// The policy of the console's pages: scripts, styles and connections (fetch and the same-origin
/// WebSocket; CSP Level 3 lets `'self'` match `ws:`/`wss:` on the page's own host) from the server only; no
/// inline script or style, no `eval`, no plugins, no framing, no `<base>`.
pub const CONSOLE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// Pages and assets are revalidated on every use (their names carry no version): a `304` when unchanged.
const CACHE_CONTROL: &str = "no-cache";

/// The built file at `path` (relative to `web/dist/`), if any.
pub fn asset(path: &str) -> Option<&'static [u8]> {
    WEB_ASSETS
        .iter()
        .find(|(name, _)| *name == path)
        .map(|(_, bytes)| *bytes)
}

/// The media type of a served file, by its extension; `None` for files that are not served (the build's
/// own records).
fn content_type(path: &str) -> Option<&'static str> {
    let ext = path.rsplit_once('.').map(|(_, ext)| ext)?;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        _ => return None,
    })
}

/// Serves the built file `path` with its type and ETag (`304` when the client has it), or a plain 404.
fn serve(req: &Request, path: &str) -> Response {
    let (Some(bytes), Some(kind)) = (asset(path), content_type(path)) else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .content_type("text/plain; charset=utf-8")
            .body("404 page not found");
    };
    let tag = etag(bytes);
    let mut builder = Response::builder()
        .header(header::ETAG, tag.as_str())
        .header(header::CACHE_CONTROL, CACHE_CONTROL);
    if kind.starts_with("text/html") {
        builder = builder.header(header::CONTENT_SECURITY_POLICY, CONSOLE_CSP);
    }
    if fresh(req, &tag) {
        return builder.status(StatusCode::NOT_MODIFIED).finish();
    }
    builder.content_type(kind).body(bytes)
}

/// A `308` to `location`, for page addresses written without their trailing slash (so the pages' relative
/// asset paths resolve).
pub fn redirect(location: &str) -> Response {
    Response::builder()
        .status(StatusCode::PERMANENT_REDIRECT)
        .header(header::LOCATION, location)
        .finish()
}

/// `{P}/`: the chat app (called by [`super::routes`], whose root belongs to the nested HTTP API).
pub fn chat(req: &Request) -> Response {
    serve(req, "index.html")
}

/// `{P}/admin/`: the admin console.
#[handler]
pub fn admin_page(req: &Request) -> Response {
    serve(req, "admin/index.html")
}

/// `{P}/admin`: to `{P}/admin/`.
#[handler]
pub fn admin_redirect() -> Response {
    redirect("admin/")
}

/// `{P}/assets/{file}`: a script or style of the pages.
#[handler]
pub fn asset_file(req: &Request, Path(file): Path<String>) -> Response {
    serve(req, &format!("assets/{file}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_pages_and_their_scripts_are_built_in() {
        for path in [
            "index.html",
            "admin/index.html",
            "assets/chat.js",
            "assets/admin.js",
            "assets/console.css",
        ] {
            assert!(asset(path).is_some(), "{path} is not built in");
            assert!(content_type(path).is_some(), "{path} has no type");
        }
    }

    #[test]
    fn only_page_files_have_a_type() {
        assert_eq!(content_type("a.js"), Some("text/javascript; charset=utf-8"));
        assert_eq!(content_type("BUILD-SOURCES.txt"), None);
        assert_eq!(content_type("noext"), None);
    }

    #[test]
    fn the_page_policy_forbids_inline_code_and_foreign_origins() {
        assert!(CONSOLE_CSP.starts_with("default-src 'self'"));
        assert!(!CONSOLE_CSP.contains("unsafe"));
        assert!(CONSOLE_CSP.contains("frame-ancestors 'none'"));
    }
}
