//! The board (SPEC §8): one page for the humans who run a swarm, embedded in the binary and
//! served at `/`. The page is plain HTML, CSS and JavaScript in `server/board/` (no build
//! step); it reads state through the ordinary read routes (`?at=` for its time slider) and
//! follows `GET /v1/events` over SSE, with the bearer token the user types in, so these
//! routes need no token themselves: they hold no data.
//!
//! Every asset is answered with its content type, a strong `ETag` (a hash of its bytes) and
//! `Cache-Control: no-cache`, so a browser revalidates with `If-None-Match` and gets 304
//! until the binary changes. The content security policy allows nothing but this server:
//! no other host can be loaded, framed or sent to.

use std::sync::LazyLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

/// One embedded file of the board.
struct Asset {
    /// Where it is served.
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: [Asset; 4] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../board/index.html"),
    },
    Asset {
        path: "/board/board.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../board/board.js"),
    },
    Asset {
        path: "/board/board.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../board/board.css"),
    },
    Asset {
        path: "/board/icon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../board/icon.svg"),
    },
];

/// What the page may load: only this server's own scripts, styles, images and API.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The strong entity tag of each asset, in the order of [`ASSETS`].
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let digest = Sha256::digest(asset.bytes);
            let tag = format!("\"{}\"", hex::encode(&digest[..12]));
            HeaderValue::from_str(&tag).expect("a quoted hex string is a valid header value")
        })
        .collect()
});

/// The board's routes; they need no token (the page asks for one before it reads).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS
        .iter()
        .enumerate()
        .fold(Router::new(), |router, (index, asset)| {
            router.route(
                asset.path,
                get(move |headers: HeaderMap| async move { serve(index, &headers) }),
            )
        })
}

fn serve(index: usize, request: &HeaderMap) -> Response {
    let asset = &ASSETS[index];
    let etag = &ETAGS[index];
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|tag| tag.trim() == "*" || tag.trim() == etag)
        });
    let headers = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (
        headers,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.bytes,
    )
        .into_response()
}
