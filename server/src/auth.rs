//! Authentication and roles (SPEC §4): bearer tokens from a TOML file, each bound to an
//! agent id and a role. Secrets are compared in constant time (as SHA-256 digests) and
//! never logged. Every secret is unique in the file (two entries with one secret would let
//! the later one's role win silently), and SIGHUP reloads the file: the new tokens replace
//! the old ones as a whole, and a file that does not load leaves the old ones in place.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::error::ApiError;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Acts as its own agent only.
    Agent,
    /// Reads and subscribes only.
    Reader,
    /// Anything.
    Admin,
}

impl Role {
    /// The role's name, as the tokens file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Reader => "reader",
            Role::Admin => "admin",
        }
    }
}

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The agent the token is bound to (`None` without `--tokens`).
    pub agent: Option<String>,
    /// The role.
    pub role: Role,
}

impl Principal {
    /// Everyone is admin when the server runs without `--tokens` (loopback only).
    pub fn open_admin() -> Self {
        Principal {
            agent: None,
            role: Role::Admin,
        }
    }

    /// 403 unless the principal may write.
    pub fn require_writer(&self) -> Result<(), ApiError> {
        if self.role == Role::Reader {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a reader token may only read and subscribe",
            ));
        }
        Ok(())
    }

    /// 403 unless admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role != Role::Admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only an admin token may do this",
            ));
        }
        Ok(())
    }

    /// 403 unless the principal may read `agent`'s inbox: an agent token reads only its
    /// own; reader and admin tokens read any (issue 9).
    pub fn require_reading_inbox_of(&self, agent: &str) -> Result<(), ApiError> {
        match (&self.role, &self.agent) {
            (Role::Agent, Some(own)) if own != agent => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "an agent token reads only its own inbox: this token acts as agent '{own}', not '{agent}' (reader and admin tokens read any inbox)"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// 403 unless the principal may act as `agent` (its own, or anyone for an admin).
    pub fn require_acting_as(&self, agent: &str) -> Result<(), ApiError> {
        self.require_writer()?;
        match (&self.role, &self.agent) {
            (Role::Admin, _) => Ok(()),
            (_, Some(own)) if own == agent => Ok(()),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "this token acts as agent '{}', not '{agent}'",
                    self.agent.as_deref().unwrap_or("?")
                ),
            )),
        }
    }
}

/// The caller of a routed request, as the authentication middleware resolved it; a route
/// the middleware does not cover is a programmer error, answered as JSON like every other.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::internal("no principal on a routed request", &parts.uri))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    secret_sha256: Option<String>,
    agent: String,
    role: Role,
}

/// The loaded tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<([u8; 32], Principal)>,
}

/// Why a token file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("token file {path}: {reason}")]
pub struct TokensError {
    path: String,
    reason: String,
}

impl Tokens {
    /// Loads and checks a token file.
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let fail = |reason: String| TokensError {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|error| fail(error.to_string()))?;
        Tokens::parse(&text).map_err(fail)
    }

    /// Parses token-file text.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let file: TokenFile = toml::from_str(text).map_err(|error| error.to_string())?;
        if file.token.is_empty() {
            return Err("it defines no [[token]]".into());
        }
        let mut entries: Vec<([u8; 32], Principal)> = Vec::new();
        for (index, entry) in file.token.into_iter().enumerate() {
            let digest = match (&entry.secret, &entry.secret_sha256) {
                (Some(secret), None) if secret.len() >= 16 => sha256(secret.as_bytes()),
                (Some(_), None) => {
                    return Err(format!(
                        "token {index}: a secret needs at least 16 characters"
                    ))
                }
                (None, Some(hex_digest)) => hex::decode(hex_digest)
                    .ok()
                    .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                    .ok_or_else(|| format!("token {index}: secret_sha256 must be 64 hex digits"))?,
                _ => {
                    return Err(format!(
                        "token {index}: give exactly one of secret or secret_sha256"
                    ))
                }
            };
            if !swarmlog_projections::limits::is_valid_id(&entry.agent) {
                return Err(format!("token {index}: agent must be a valid id"));
            }
            if let Some((earlier, (_, principal))) = entries
                .iter()
                .enumerate()
                .find(|(_, (known, _))| *known == digest)
            {
                return Err(format!(
                    "token {index} (agent '{}') has the same secret as token {earlier} (agent '{}'); every token needs a secret of its own",
                    entry.agent,
                    principal.agent.as_deref().unwrap_or("?"),
                ));
            }
            entries.push((
                digest,
                Principal {
                    agent: Some(entry.agent),
                    role: entry.role,
                },
            ));
        }
        Ok(Tokens { entries })
    }

    /// The principal of a presented secret, comparing digests in constant time.
    pub fn authenticate(&self, secret: &str) -> Option<Principal> {
        let presented = sha256(secret.as_bytes());
        let mut found = None;
        for (digest, principal) in &self.entries {
            let difference = digest
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if difference == 0 {
                found = Some(principal.clone());
            }
        }
        found
    }
}

/// The tokens a server checks requests against: loaded from its file at start, and
/// replaced as a whole by [`TokenStore::reload`] (SIGHUP). Requests read the current set
/// through a lock held only to clone an `Arc`.
#[derive(Debug, Clone)]
pub struct TokenStore {
    path: PathBuf,
    current: Arc<RwLock<Arc<Tokens>>>,
}

impl TokenStore {
    /// Loads the tokens file at `path`.
    pub fn load(path: &Path) -> Result<TokenStore, TokensError> {
        let tokens = Tokens::load(path)?;
        Ok(TokenStore {
            path: path.to_path_buf(),
            current: Arc::new(RwLock::new(Arc::new(tokens))),
        })
    }

    /// The tokens in force.
    pub fn current(&self) -> Arc<Tokens> {
        // A writer that panicked held the lock only to swap an `Arc`: the value is whole.
        let guard = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.clone()
    }

    /// Loads the file again and puts its tokens in force; on an error the tokens in force
    /// stay. Returns how many tokens are in force now.
    pub fn reload(&self) -> Result<usize, TokensError> {
        let tokens = Tokens::load(&self.path)?;
        let count = tokens.entries.len();
        let mut guard = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Arc::new(tokens);
        Ok(count)
    }

    /// The file the tokens come from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reloads the tokens file each time the process gets SIGHUP, until the task is aborted;
/// counts each outcome in `swarmlog_token_reloads_total`. A file that does not load is
/// logged and leaves the tokens in force. Without a tokens file SIGHUP is logged and
/// ignored (it no longer ends the process).
#[cfg(unix)]
pub async fn reload_on_hangup(store: Option<TokenStore>, engine: crate::Engine) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGHUP; the tokens file will not be reloaded");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        let Some(store) = &store else {
            tracing::info!("SIGHUP: no --tokens file to reload");
            continue;
        };
        let outcome = match store.reload() {
            Ok(count) => {
                tracing::info!(file = %store.path().display(), tokens = count, "SIGHUP: reloaded the tokens");
                "loaded"
            }
            Err(error) => {
                tracing::error!(%error, "SIGHUP: the tokens file does not load; the tokens in force stay");
                "refused"
            }
        };
        engine
            .metrics()
            .token_reloads
            .get_or_create(&vec![("outcome".to_owned(), outcome.to_owned())])
            .inc();
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Middleware of every API route: resolves the principal (401 for a missing or unknown
/// token when tokens are configured), refuses writes by readers (403), refuses ids in the
/// query that break the id rule (`invalid_id`, [`crate::extract::check_query_ids`]), and
/// stores the principal in the request.
pub async fn authenticate(
    State(app): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let principal = match principal_of(&app, &request) {
        Ok(principal) => principal,
        Err(error) => return error.into_response(),
    };
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if !reads {
        if let Err(error) = principal.require_writer() {
            return error.into_response();
        }
    }
    // In the same middleware rather than a layer of its own: each layer costs every
    // request a boxed future and a clone of the route it wraps.
    if let Err(error) = crate::extract::check_query_ids(request.uri()) {
        return error.into_response();
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// The middleware of `/mcp`: a valid token is required (401), but every role may speak
/// MCP; each tool call then goes through [`authenticate`] with the same token, so a
/// reader's write tools are refused there (403).
pub async fn authenticate_mcp(
    State(app): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    match principal_of(&app, &request) {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

/// Who presents the request: everyone is admin without `--tokens`; else the bearer
/// token's principal, or 401.
fn principal_of(app: &AppState, request: &Request) -> Result<Principal, ApiError> {
    let Some(store) = &app.tokens else {
        return Ok(Principal::open_admin());
    };
    let tokens = store.current();
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .and_then(|secret| tokens.authenticate(secret.trim()))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required (Authorization: Bearer SECRET)",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_resolve_to_their_principal_and_nothing_else() {
        let digest = hex::encode(sha256(b"reader-secret-0123456789"));
        let text = format!(
            "[[token]]\nsecret = \"agent-secret-0123456789\"\nagent = \"agent-1\"\nrole = \"agent\"\n\n[[token]]\nsecret_sha256 = \"{digest}\"\nagent = \"auditor\"\nrole = \"reader\"\n"
        );
        let tokens = Tokens::parse(&text).expect("valid file");
        let agent = tokens
            .authenticate("agent-secret-0123456789")
            .expect("known");
        assert_eq!(
            (agent.agent.as_deref(), agent.role),
            (Some("agent-1"), Role::Agent)
        );
        assert_eq!(
            tokens
                .authenticate("reader-secret-0123456789")
                .map(|p| p.role),
            Some(Role::Reader)
        );
        assert_eq!(tokens.authenticate("agent-secret-012345678"), None);
        assert!(agent.require_acting_as("agent-1").is_ok());
        assert_eq!(
            agent.require_acting_as("agent-2").map_err(|e| e.status),
            Err(StatusCode::FORBIDDEN)
        );
        assert!(
            Tokens::parse("[[token]]\nsecret = \"short\"\nagent = \"a\"\nrole = \"agent\"\n")
                .is_err()
        );
        assert!(Tokens::parse(
            "[[token]]\nsecret = \"long-enough-secret-1\"\nagent = \"a\"\nrole = \"king\"\n"
        )
        .is_err());
    }

    #[test]
    fn a_secret_given_twice_refuses_the_file_naming_both_entries() {
        let digest = hex::encode(sha256(b"shared-secret-0123456789"));
        let text = format!(
            "[[token]]\nsecret = \"shared-secret-0123456789\"\nagent = \"reader-1\"\nrole = \"reader\"\n\n[[token]]\nsecret = \"other-secret-0123456789\"\nagent = \"x\"\nrole = \"agent\"\n\n[[token]]\nsecret_sha256 = \"{digest}\"\nagent = \"boss\"\nrole = \"admin\"\n"
        );
        let error = Tokens::parse(&text).expect_err("a duplicate");
        assert!(
            error.contains("token 2 (agent 'boss')")
                && error.contains("token 0 (agent 'reader-1')"),
            "{error}"
        );
        assert!(!error.contains("shared-secret"), "{error}");
    }
}
