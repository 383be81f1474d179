//! The checks every request passes before routing (issue 9), against what a web page the
//! user happens to visit can make a browser send to a server on the user's machine:
//!
//! - DNS rebinding: a page on `evil.example` re-points its name at 127.0.0.1 and talks to
//!   the server as a same-origin page. The browser still sends `Host: evil.example`, so the
//!   `Host` must be an IP literal (connecting by address cannot be rebinding), `localhost`,
//!   or a name given with `serve --allow-host`: else 403 `host_not_allowed`.
//! - Cross-site requests (CSRF): a browser sends `Origin` with every cross-origin request and
//!   every POST, so a present `Origin` must be the request's own origin (`http://<Host>` or
//!   `https://<Host>`) or one given with `serve --allow-origin`: else 403
//!   `origin_not_allowed`. `Origin: null` (sandboxed frames, `file:` pages) is refused.
//! - A write whose body is not `application/json` is 415 `unsupported_media_type`: a page
//!   can only send a JSON body cross-origin after a CORS preflight, which the server
//!   answers for the allowed origins only. A write without a body needs no `Content-Type`;
//!   from a page it still carries an `Origin`, which the check above refuses.
//! - A URL whose path or query is not UTF-8 once percent-decoded is 400 `invalid_path` or
//!   `invalid_query` (never decoded lossily into U+FFFD, which could name another entity).
//!
//! `/healthz` is open to any `Host` and `Origin` (load balancers probe by their own names).
//! Requests without a `Host` (HTTP/1.0 clients, the CLI's and `/mcp`'s in-process calls)
//! are no browser's and pass the `Host` check.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;

use crate::error::ApiError;

/// The names and origins a server accepts besides its own (`serve --allow-host`,
/// `serve --allow-origin`), validated and normalized.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpPolicy {
    hosts: Vec<String>,
    origins: Vec<Origin>,
}

impl HttpPolicy {
    /// Validates the allowed host names (no port, no scheme) and origins
    /// (`http://NAME[:PORT]` or `https://NAME[:PORT]`); the error names the flag.
    pub fn new(hosts: &[String], origins: &[String]) -> Result<HttpPolicy, String> {
        let hosts = hosts
            .iter()
            .map(|host| {
                let name = host.trim_end_matches('.').to_ascii_lowercase();
                if is_host_name(&name) {
                    Ok(name)
                } else {
                    Err(format!(
                        "--allow-host must be a host name such as swarm.internal (no scheme, no port), not '{host}'"
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let origins = origins
            .iter()
            .map(|origin| {
                Origin::parse(origin.strip_suffix('/').unwrap_or(origin)).ok_or_else(|| {
                    format!(
                        "--allow-origin must be an origin such as https://board.example:8443 (scheme, host and optional port, no path), not '{origin}'"
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HttpPolicy { hosts, origins })
    }

    /// Whether any origin besides the server's own is allowed (then CORS is answered).
    pub fn has_origins(&self) -> bool {
        !self.origins.is_empty()
    }

    fn allows_host(&self, name: &str) -> bool {
        name == "localhost" || self.hosts.iter().any(|allowed| allowed == name)
    }

    fn allows_origin(&self, origin: &Origin) -> bool {
        self.origins.contains(origin)
    }

    /// The CORS answers for the allowed origins: preflights are answered with the methods
    /// and headers of the API; no cookies are involved (tokens travel in a header).
    pub fn cors(self: &Arc<Self>) -> tower_http::cors::CorsLayer {
        use tower_http::cors::{AllowOrigin, CorsLayer};
        let policy = self.clone();
        CorsLayer::new()
            .allow_origin(AllowOrigin::predicate(move |origin, _| {
                origin
                    .to_str()
                    .ok()
                    .and_then(Origin::parse)
                    .is_some_and(|origin| policy.allows_origin(&origin))
            }))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("last-event-id"),
                HeaderName::from_static("swarmlog-actor"),
                HeaderName::from_static("mcp-session-id"),
                HeaderName::from_static("mcp-protocol-version"),
            ])
            .expose_headers([
                HeaderName::from_static("idempotent-replayed"),
                HeaderName::from_static("mcp-session-id"),
            ])
            .max_age(crate::limits::CORS_PREFLIGHT_MAX_AGE)
    }
}

/// A web origin, normalized the way browsers serialize it: lower case, default port
/// dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    /// `http://NAME[:PORT]` or `https://NAME[:PORT]`, with NAME a host name or an IP
    /// literal; `None` for anything else (a path, user info, `null`, `*`).
    fn parse(text: &str) -> Option<Origin> {
        let lower = text.to_ascii_lowercase();
        let (https, rest) = if let Some(rest) = lower.strip_prefix("http://") {
            (false, rest)
        } else {
            (true, lower.strip_prefix("https://")?)
        };
        let (host, port) = split_host(rest)?;
        let port = match port {
            Some(port) => port,
            None if https => 443,
            None => 80,
        };
        Some(Origin {
            https,
            host: host.trim_end_matches('.').to_owned(),
            port,
        })
    }

    /// Whether this is the origin of a request with `Host: host` (over http or https).
    fn is_of_host(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let Some((name, port)) = split_host(&host) else {
            return false;
        };
        let port = port.unwrap_or(if self.https { 443 } else { 80 });
        self.host == name.trim_end_matches('.') && self.port == port
    }
}

/// Splits `name[:port]` or `[v6][:port]` into its host and port; `None` if it is neither.
fn split_host(text: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        address.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (&text[..address.len() + 2], port)
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if !host.starts_with('[') && !is_host_name(host.trim_end_matches('.')) {
        return None;
    }
    let port = match port {
        None => None,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(digits.parse().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// A DNS name or an IPv4 literal: dot-separated labels of letters, digits and hyphens.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        })
}

/// Whether a `Host` names the server without DNS: an IP literal.
fn is_ip_literal(name: &str) -> bool {
    name.parse::<Ipv4Addr>().is_ok()
        || name
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
            .is_some_and(|address| address.parse::<Ipv6Addr>().is_ok())
}

/// Middleware: the checks of this module, in order URL, `Host`, `Origin`, `Content-Type`.
pub async fn guard(
    State(policy): State<Arc<HttpPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    match check(&policy, &request) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

fn check(policy: &HttpPolicy, request: &Request) -> Result<(), ApiError> {
    check_url(request.uri())?;
    if request.uri().path() == "/healthz" {
        return Ok(());
    }
    let host = host_of(request)?;
    check_host(policy, host.as_deref())?;
    check_origin(policy, request.headers(), host.as_deref())?;
    check_content_type(request)
}

/// 400 unless the path and the query are UTF-8 once percent-decoded. Checking the whole
/// query is checking each name and value: `&`, `=` and `+` are ASCII, which never occurs
/// inside a multi-byte UTF-8 sequence.
pub fn check_url(uri: &Uri) -> Result<(), ApiError> {
    if percent_decode_str(uri.path()).decode_utf8().is_err() {
        return Err(ApiError::malformed(
            "invalid_path",
            "the path is not valid UTF-8 once percent-decoded; ids are UTF-8 (SPEC §3)",
        ));
    }
    if let Some(query) = uri.query() {
        if percent_decode_str(query).decode_utf8().is_err() {
            return Err(ApiError::malformed(
                "invalid_query",
                "the query string is not valid UTF-8 once percent-decoded",
            ));
        }
    }
    Ok(())
}

/// The request's `Host` (or, over HTTP/2, its `:authority`); 400 for more than one or one
/// that is not visible ASCII.
fn host_of(request: &Request) -> Result<Option<String>, ApiError> {
    let mut values = request.headers().get_all(header::HOST).iter();
    let Some(value) = values.next() else {
        return Ok(request
            .uri()
            .authority()
            .map(|authority| authority.to_string()));
    };
    if values.next().is_some() {
        return Err(ApiError::malformed(
            "invalid_host",
            "the request has more than one Host header",
        ));
    }
    let text = value.to_str().map_err(|_| {
        ApiError::malformed("invalid_host", "the Host header must be visible ASCII")
    })?;
    Ok(Some(text.to_owned()))
}

/// 403 `host_not_allowed` unless `Host` is an IP literal, `localhost` or allowed.
fn check_host(policy: &HttpPolicy, host: Option<&str>) -> Result<(), ApiError> {
    let Some(host) = host else {
        return Ok(());
    };
    let allowed = split_host(&host.to_ascii_lowercase()).is_some_and(|(name, _)| {
        let name = name.trim_end_matches('.');
        is_ip_literal(name) || policy.allows_host(name)
    });
    if allowed {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "host_not_allowed",
        format!(
            "Host '{host}' is not this server's address: use an IP address or localhost, or start the server with --allow-host NAME (this refuses DNS rebinding)"
        ),
    )
    .with("host", host))
}

/// 403 `origin_not_allowed` unless a present `Origin` is the request's own or allowed.
fn check_origin(
    policy: &HttpPolicy,
    headers: &HeaderMap,
    host: Option<&str>,
) -> Result<(), ApiError> {
    let mut values = headers.get_all(header::ORIGIN).iter();
    let Some(value) = values.next() else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let allowed = values.next().is_none()
        && Origin::parse(text).is_some_and(|origin| {
            host.is_some_and(|host| origin.is_of_host(host)) || policy.allows_origin(&origin)
        });
    if allowed {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
        format!(
            "requests from the web page origin '{text}' are refused: only the server's own origin and those given with --allow-origin may call it (this refuses cross-site requests)"
        ),
    )
    .with("origin", text))
}

/// 415 `unsupported_media_type` for a write with a body, or with a `Content-Type`, that is
/// not `application/json` (parameters such as `charset` allowed).
fn check_content_type(request: &Request) -> Result<(), ApiError> {
    let writes = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if !writes {
        return Ok(());
    }
    let mut values = request.headers().get_all(header::CONTENT_TYPE).iter();
    let first = values.next();
    let body = request.body();
    let has_body = !body.is_end_stream() && body.size_hint().upper() != Some(0);
    let is_json = |value: &HeaderValue| {
        value.to_str().is_ok_and(|text| {
            text.split(';')
                .next()
                .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
        })
    };
    match first {
        None if !has_body => Ok(()),
        Some(value) if values.next().is_none() && is_json(value) => Ok(()),
        _ => {
            let given = match first.map(|value| value.to_str()) {
                None => "none".to_owned(),
                Some(Ok(text)) => format!("'{text}'"),
                Some(Err(_)) => "not visible ASCII".to_owned(),
            };
            Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "a write's body must be JSON sent with Content-Type: application/json (its Content-Type: {given})"
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_the_way_browsers_serialize_them() {
        let parsed = Origin::parse("HTTPS://Board.Example").expect("an origin");
        assert_eq!(
            parsed,
            Origin {
                https: true,
                host: "board.example".into(),
                port: 443
            }
        );
        assert_eq!(
            Origin::parse("http://127.0.0.1:7070").map(|origin| origin.port),
            Some(7070)
        );
        assert!(Origin::parse("http://[::1]:7070").is_some());
        for bad in [
            "null",
            "*",
            "board.example",
            "http://board.example/path",
            "http://user@board.example",
            "http://board.example:port",
            "http://board.example:99999",
            "ftp://board.example",
            "http://",
            "http://[nope]:1",
        ] {
            assert_eq!(Origin::parse(bad), None, "{bad}");
        }
        let own = Origin::parse("http://localhost:7070").expect("an origin");
        assert!(own.is_of_host("LocalHost:7070"));
        assert!(!own.is_of_host("localhost:7071"));
        assert!(!own.is_of_host("localhost"));
        let tls = Origin::parse("https://swarm.internal").expect("an origin");
        assert!(tls.is_of_host("swarm.internal"));
        assert!(tls.is_of_host("swarm.internal:443"));
        assert!(!tls.is_of_host("swarm.internal.evil.example"));
    }

    #[test]
    fn hosts_pass_by_address_localhost_or_name() {
        let policy = HttpPolicy::new(&["Swarm.Internal.".into()], &[]).expect("valid");
        for host in [
            "127.0.0.1:7070",
            "10.1.2.3",
            "[::1]:7070",
            "localhost:7070",
            "LOCALHOST",
            "swarm.internal:80",
            "swarm.internal.",
        ] {
            assert!(check_host(&policy, Some(host)).is_ok(), "{host}");
        }
        for host in [
            "evil.example",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "[::1",
            "",
            "swarm.internal:x",
        ] {
            assert!(check_host(&policy, Some(host)).is_err(), "{host}");
        }
        assert!(check_host(&policy, None).is_ok(), "no Host: no browser");
        assert!(HttpPolicy::new(&["http://x".into()], &[]).is_err());
        assert!(HttpPolicy::new(&[], &["http://board.example/".into()]).is_ok());
    }

    #[test]
    fn urls_must_be_utf8_once_decoded() {
        for good in ["/v1/kv/caf%C3%A9", "/v1/kv/k?prefix=a%2Bb&x=%E2%82%AC", "/"] {
            let uri: Uri = good.parse().expect("a URI");
            assert!(check_url(&uri).is_ok(), "{good}");
        }
        for (bad, code) in [
            ("/v1/kv/%FF%FE", "invalid_path"),
            ("/v1/kv/%C3", "invalid_path"),
            ("/v1/kv?prefix=%ff", "invalid_query"),
            ("/v1/kv?%C3=1", "invalid_query"),
        ] {
            let uri: Uri = bad.parse().expect("a URI");
            assert_eq!(check_url(&uri).map_err(|error| error.code), Err(code));
        }
    }
}
