//! The demo page, served only when the gateway is given [`DemoSettings`] (`switchyard dev`
//! does; gateways started from a config file never do): a chat room over the browser
//! client, on the same listener and origin as `/ws`.
//!
//! - `GET /demo`: the page (`client/js/demo/index.html`)
//! - `GET /demo/demo.js`: its script
//! - `GET /demo/switchyard.js`: the browser client, one ES module
//!   (`client/js/dist/switchyard.js`, built and committed by `npm run build`)
//! - `POST /demo/token` with `{"user":"alice"}`: a token for that user, from the minting
//!   function the settings carry; the gateway knows nothing of secrets or scopes.
//!
//! The files are compiled into the binary.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use switchyard_protocol::ErrorCode;

use crate::error::{json_response, Rejection};

const INDEX_HTML: &str = include_str!("../../client/js/demo/index.html");
const DEMO_JS: &str = include_str!("../../client/js/demo/demo.js");
const CLIENT_JS: &str = include_str!("../../client/js/dist/switchyard.js");

/// How long a demo token lives.
pub const DEMO_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Room patterns a demo token may subscribe and publish to.
pub const DEMO_ROOM_PATTERNS: [&str; 2] = ["lobby", "chat.>"];
/// Largest `POST /demo/token` body.
pub const MAX_TOKEN_BODY_BYTES: usize = 1024;

/// The page may load only itself and talk only to its own origin.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
    connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// Signs a token for a user id, or says why it cannot (a user id the server would refuse).
pub type MintToken = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// Turns the demo on; carries the function that mints its tokens.
#[derive(Clone)]
pub struct DemoSettings {
    mint: MintToken,
}

impl DemoSettings {
    pub fn new(mint: MintToken) -> DemoSettings {
        DemoSettings { mint }
    }
}

impl std::fmt::Debug for DemoSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoSettings").finish_non_exhaustive()
    }
}

/// Whether `path` is the demo's.
pub(crate) fn is_demo_path(path: &str) -> bool {
    path == "/demo" || path.starts_with("/demo/")
}

pub(crate) async fn handle(demo: &DemoSettings, req: Request<Incoming>) -> Response<Full<Bytes>> {
    route(demo, req)
        .await
        .unwrap_or_else(Rejection::into_response)
}

async fn route(
    demo: &DemoSettings,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Rejection> {
    let page = |body: &'static str, content_type: &'static str| Ok(asset(body, content_type));
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/demo" | "/demo/" | "/demo/index.html") => {
            let mut response = asset(INDEX_HTML, "text/html; charset=utf-8");
            response.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(PAGE_POLICY),
            );
            Ok(response)
        }
        (&Method::GET, "/demo/demo.js") => page(DEMO_JS, "text/javascript; charset=utf-8"),
        (&Method::GET, "/demo/switchyard.js") => page(CLIENT_JS, "text/javascript; charset=utf-8"),
        (&Method::POST, "/demo/token") => token(demo, req).await,
        _ => Err(Rejection::client(ErrorCode::NotFound, "no such demo path")),
    }
}

fn asset(body: &'static str, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    no_store(headers);
    response
}

/// Dev files change with every build: never cache them, never sniff their type.
fn no_store(headers: &mut http::HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[derive(Deserialize)]
struct TokenBody {
    user: String,
}

#[derive(Serialize)]
struct TokenAnswer {
    token: String,
}

async fn token(
    demo: &DemoSettings,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Rejection> {
    let too_large = || Rejection::client(ErrorCode::TooLarge, "request body too large");
    let body = Limited::new(req.into_body(), MAX_TOKEN_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                Rejection::client(ErrorCode::BadRequest, "cannot read request body")
            }
        })?
        .to_bytes();
    let body: TokenBody = serde_json::from_slice(&body).map_err(|_| {
        Rejection::client(
            ErrorCode::BadRequest,
            r#"the body must be {"user":"<name>"}"#,
        )
    })?;
    let token = (demo.mint)(&body.user).map_err(|e| Rejection::client(ErrorCode::BadRequest, e))?;
    let answer = serde_json::to_vec(&TokenAnswer { token })
        .map_err(|e| Rejection::internal(format!("cannot encode answer: {e}")))?;
    let mut response = json_response(StatusCode::OK, answer);
    no_store(response.headers_mut());
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_paths() {
        for path in ["/demo", "/demo/", "/demo/switchyard.js", "/demo/token"] {
            assert!(is_demo_path(path), "{path}");
        }
        for path in ["/demox", "/ws", "/api/v1/demo", "/"] {
            assert!(!is_demo_path(path), "{path}");
        }
    }

    #[test]
    fn the_page_loads_the_client_it_is_served_with() {
        assert!(INDEX_HTML.contains(r#"src="/demo/demo.js""#));
        assert!(DEMO_JS.contains(r#"from "/demo/switchyard.js""#));
        assert!(CLIENT_JS.contains("export const { Client"));
        assert!(DEMO_JS.contains(r#""/demo/token""#));
    }

    #[test]
    fn settings_hide_the_minting_function() {
        let settings = DemoSettings::new(Arc::new(|user: &str| Ok(format!("t.{user}"))));
        assert_eq!(format!("{settings:?}"), "DemoSettings { .. }");
        assert_eq!((settings.mint)("alice").unwrap(), "t.alice");
    }
}
