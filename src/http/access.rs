//! Who may steer ctsync over HTTP, and what each caller sees: every
//! state-changing request must be `application/json` (no form or no-cors
//! request can be) and carry an `operate` token (see `tokens`); without any
//! token writes are off unless the operator opts in. With tokens, a caller
//! without one sees no error text or host names. A `Host` allowlist guards
//! against DNS rebinding, hardening headers forbid framing and sniffing, and
//! each refusal is logged, counted and aggregated (see `refusals`).

use std::collections::BTreeSet;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::tokens::{Role, Tokens};
use super::HttpState;

/// The access rules of the HTTP server.
#[derive(Clone, Default)]
pub struct Access {
    /// `CTSYNC_API_TOKEN` and `CTSYNC_API_TOKENS_FILE`: an `operate` one is
    /// required as `Authorization: Bearer …` on writes.
    tokens: Tokens,
    /// `CTSYNC_API_READ_ONLY`: every write is refused.
    pub read_only: bool,
    /// `CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES`: without a token, writes
    /// are accepted from anyone (otherwise refused).
    allow_unauthenticated_writes: bool,
    /// Host names (lower case, without port) the page and API answer to;
    /// empty: any (in-process tests).
    allowed_hosts: BTreeSet<String>,
    /// `CTSYNC_TRUSTED_PROXIES`: peers whose `X-Forwarded-For` is believed.
    trusted_proxies: BTreeSet<std::net::IpAddr>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("tokens", &self.tokens)
            .field("read_only", &self.read_only)
            .field(
                "allow_unauthenticated_writes",
                &self.allow_unauthenticated_writes,
            )
            .field("allowed_hosts", &self.allowed_hosts)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

/// `Content-Security-Policy` of every response: only ctsync's own script
/// and style, no framing, no forms.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
form-action 'none'";

/// The setting that opts in to writes without a token.
pub const ALLOW_UNAUTHENTICATED: &str = "CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES";

/// Why writes are refused when no token is set (the API's 403 and the
/// page's disabled controls say the same).
pub const NO_TOKEN: &str = "writes are off: no API token is set. Set CTSYNC_API_TOKEN (or \
CTSYNC_API_TOKEN_FILE) and send it as `Authorization: Bearer <token>`, or set \
CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES=true to let anyone who reaches this port write";

const READ_ONLY: &str =
    "ctsync runs read-only (CTSYNC_API_READ_ONLY=true): no flag can be changed over HTTP";

/// Whether, and how, this server accepts writes (for the page).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Writes {
    /// Writes can succeed (perhaps with the token).
    pub enabled: bool,
    /// Writes need `Authorization: Bearer <token>`.
    pub token_required: bool,
    /// Why writes are refused, when they are.
    pub disabled_reason: Option<String>,
}

/// Whom a trusted proxy's `X-Forwarded-For` names.
enum Forwarded {
    /// Not from a trusted proxy, or it names no one else.
    Direct,
    Client(std::net::IpAddr),
    Unreadable,
}

/// Who sent a request, as the access rules found it; kept in the request's
/// extensions for the handlers (what they show, the audit trail).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Caller {
    /// The name of the token the request carried; `None`: no token.
    pub token: Option<String>,
    /// The token's role.
    pub role: Option<Role>,
    /// Error messages and host names are shown: no token is configured, or
    /// the caller has one.
    pub details: bool,
}

impl Caller {
    /// The caller of `req` (one without a token when the rules did not run).
    pub fn of(req: &actix_web::HttpRequest) -> Self {
        use actix_web::HttpMessage;
        req.extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or_default()
    }
}

/// Why a `read` token cannot act.
pub const READ_ROLE: &str =
    "has the read role: actions need a token with the operate role (CTSYNC_API_TOKENS_FILE)";

impl Access {
    /// Writes need `token`; without one they are refused unless
    /// `allow_unauthenticated_writes`; `read_only` refuses them all.
    pub fn new(token: Option<String>, read_only: bool, allowed_hosts: &[String]) -> Self {
        Self::with_writes(token, read_only, false, allowed_hosts)
    }

    /// Adds the named tokens of a token file.
    pub fn with_tokens(mut self, tokens: Tokens) -> Self {
        self.tokens = tokens;
        self
    }

    /// [`Access::new`], with the operator's opt-in to writes without a
    /// token (`CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES`).
    pub fn with_writes(
        token: Option<String>,
        read_only: bool,
        allow_unauthenticated_writes: bool,
        allowed_hosts: &[String],
    ) -> Self {
        Self {
            tokens: Tokens::single(token),
            read_only,
            allow_unauthenticated_writes,
            allowed_hosts: allowed_hosts
                .iter()
                .map(|h| host_only(h).to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            trusted_proxies: BTreeSet::new(),
        }
    }

    /// Believes `X-Forwarded-For` from these peers only.
    pub fn with_trusted_proxies(mut self, proxies: Vec<std::net::IpAddr>) -> Self {
        self.trusted_proxies = proxies.into_iter().collect();
        self
    }

    /// Who sent a request, for the log and the audit trail: the peer
    /// address; from a trusted proxy, the client its `X-Forwarded-For`
    /// names (the last address no trusted proxy added), `via` the proxy.
    pub fn client(
        &self,
        peer: Option<std::net::SocketAddr>,
        forwarded_for: Option<&str>,
    ) -> String {
        self.describe(peer, forwarded_for, |peer, forwarded| match forwarded {
            Forwarded::Direct => peer.to_string(),
            Forwarded::Client(ip) => format!("{ip} via {peer}"),
            // Not an address: the proxy's word cannot be logged as one.
            Forwarded::Unreadable => format!("{peer} (unreadable X-Forwarded-For)"),
        })
    }

    /// The client's address without a port (each connection has its
    /// own), for tallying refusals per address.
    pub fn client_address(
        &self,
        peer: Option<std::net::SocketAddr>,
        forwarded_for: Option<&str>,
    ) -> String {
        self.describe(peer, forwarded_for, |peer, forwarded| match forwarded {
            Forwarded::Client(ip) => ip.to_string(),
            Forwarded::Direct | Forwarded::Unreadable => peer.ip().to_string(),
        })
    }

    fn describe(
        &self,
        peer: Option<std::net::SocketAddr>,
        forwarded_for: Option<&str>,
        shown: impl FnOnce(std::net::SocketAddr, Forwarded) -> String,
    ) -> String {
        match peer {
            Some(peer) => shown(peer, self.forwarded_client(peer, forwarded_for)),
            None => "unknown".into(),
        }
    }

    fn forwarded_client(
        &self,
        peer: std::net::SocketAddr,
        forwarded_for: Option<&str>,
    ) -> Forwarded {
        if !self.trusted_proxies.contains(&peer.ip()) {
            return Forwarded::Direct;
        }
        let client = forwarded_for.and_then(|list| {
            list.split(',')
                .map(str::trim)
                .rev()
                .map(|a| a.parse::<std::net::IpAddr>())
                .find(|a| !matches!(a, Ok(ip) if self.trusted_proxies.contains(ip)))
        });
        match client {
            Some(Ok(ip)) => Forwarded::Client(ip),
            Some(Err(_)) => Forwarded::Unreadable,
            None => Forwarded::Direct,
        }
    }

    pub fn has_token(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The configured tokens (names and roles only).
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// Anyone may write: no token, not read-only, opted in.
    pub fn unauthenticated_writes(&self) -> bool {
        self.tokens.is_empty() && !self.read_only && self.allow_unauthenticated_writes
    }

    /// The opt-in is set but a token makes it moot.
    pub fn opt_in_ignored(&self) -> bool {
        !self.tokens.is_empty() && self.allow_unauthenticated_writes
    }

    /// Whether the server accepts writes at all (with an `operate` token
    /// where tokens are configured).
    pub fn writes(&self) -> Writes {
        let disabled_reason = if self.read_only {
            Some(READ_ONLY.to_string())
        } else if self.tokens.is_empty() && !self.allow_unauthenticated_writes {
            Some(NO_TOKEN.to_string())
        } else {
            None
        };
        Writes {
            enabled: disabled_reason.is_none(),
            token_required: !self.tokens.is_empty(),
            disabled_reason,
        }
    }

    /// [`Access::writes`] as `caller` may use them: a `read` token cannot.
    pub fn writes_for(&self, caller: &Caller) -> Writes {
        let mut writes = self.writes();
        if writes.enabled && caller.role == Some(Role::Read) {
            writes.enabled = false;
            writes.disabled_reason = Some(format!(
                "the token {} {READ_ROLE}",
                caller.token.as_deref().unwrap_or_default()
            ));
        }
        writes
    }

    /// The caller a request's `Authorization` names: `Err` for a token
    /// that is none of the configured ones. Without tokens configured,
    /// every caller sees everything and no header matters.
    fn caller(&self, authorization: Option<&str>) -> Result<Caller, ()> {
        if self.tokens.is_empty() {
            return Ok(Caller {
                details: true,
                ..Caller::default()
            });
        }
        let Some(given) = authorization.and_then(bearer) else {
            return Ok(Caller::default());
        };
        match self.tokens.identify(given) {
            Some((name, role)) => Ok(Caller {
                token: Some(name.to_string()),
                role: Some(role),
                details: true,
            }),
            None => Err(()),
        }
    }

    /// The allowed host names, for the log line at start.
    pub fn allowed_hosts(&self) -> Vec<String> {
        self.allowed_hosts.iter().cloned().collect()
    }

    fn host_allowed(&self, host: Option<&str>) -> bool {
        if self.allowed_hosts.is_empty() {
            return true;
        }
        host.map(|h| host_only(h).to_ascii_lowercase())
            .is_some_and(|h| self.allowed_hosts.contains(&h))
    }

    /// Says at start who may write over HTTP (a WARN if anyone may).
    pub fn log_at_start(&self, bound: std::net::SocketAddr) {
        if self.unauthenticated_writes() {
            tracing::warn!(
                addr = %bound,
                "CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES=true without CTSYNC_API_TOKEN: anyone who can reach the HTTP port can enable, disable, force-load and verify tables; set CTSYNC_API_TOKEN (or CTSYNC_API_TOKEN_FILE) instead"
            );
        } else if self.opt_in_ignored() {
            tracing::info!("CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES has no effect: CTSYNC_API_TOKEN is set, writes need it");
        } else if let Some(reason) = self.writes().disabled_reason {
            tracing::info!(addr = %bound, "HTTP API and page are read-only: {reason}");
        }
        if !self.tokens.is_empty() {
            tracing::info!(
                tokens = %self.tokens.names().join(", "),
                "API tokens: without one, the API and page show no error text or host names"
            );
        }
    }

    /// The refusal, if `caller` may not write.
    fn refuse_write(&self, caller: &Caller) -> Option<HttpResponse> {
        let writes = self.writes_for(caller);
        if let Some(reason) = writes.disabled_reason {
            return Some(refusal(StatusCode::FORBIDDEN, &reason));
        }
        if self.tokens.is_empty() || caller.role == Some(Role::Operate) {
            return None;
        }
        Some(unauthorized(
            "this request changes state: send a token with the operate role as `Authorization: Bearer <token>` (CTSYNC_API_TOKEN or CTSYNC_API_TOKENS_FILE)",
        ))
    }
}

/// 401 with the challenge (RFC 6750).
fn unauthorized(message: &str) -> HttpResponse {
    let mut response = refusal(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"ctsync\""),
    );
    response
}

/// The credentials of `Authorization: Bearer <token>`; the scheme in any
/// case (RFC 7235), spaces around the token ignored.
fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Every write must say it is JSON: a form post, `text/plain` or any other
/// request a page of another origin can send without a CORS preflight
/// cannot.
fn refuse_content_type(content_type: Option<&str>) -> Option<HttpResponse> {
    let essence = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    if essence.as_deref() == Some("application/json") {
        return None;
    }
    Some(refusal(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "this request changes state: send it with `Content-Type: application/json` (forms and other content types are refused)",
    ))
}

/// The host part of a `Host` header or name: without the port, IPv6
/// brackets kept off.
fn host_only(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    if host.matches(':').count() > 1 {
        return host; // a bare IPv6 address
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

fn refusal(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}

/// Probes and metrics answer to any `Host` (Prometheus and orchestrators
/// use IP addresses).
fn host_exempt(path: &str) -> bool {
    matches!(path, "/metrics" | "/healthz" | "/readyz")
}

fn writes(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Says at WARN who was refused what (the first few of each address in a
/// minute; see `refusals`), counts it and tallies it (never a header).
fn refused_logged(
    shared: Option<&HttpState>,
    access: &Access,
    req: &ServiceRequest,
    status: StatusCode,
) {
    let forwarded_for = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|h| h.to_str().ok());
    let from = access.client(req.peer_addr(), forwarded_for);
    ctsync_actors::telemetry::http_refused(status.as_u16());
    let address = access.client_address(req.peer_addr(), forwarded_for);
    let (log, finished) = match shared {
        Some(s) => s
            .refusals
            .note(super::refusals::now_ms(), &address, status.as_u16()),
        None => (true, None),
    };
    if log {
        tracing::warn!(
            status = status.as_u16(),
            method = %req.method(),
            path = req.path(),
            from,
            "HTTP request refused by the access rules"
        );
    }
    if finished.is_some() {
        let store = shared.and_then(|s| s.audit.clone());
        actix_rt::spawn(async move { super::refusals::flush(finished, store.as_deref()).await });
    }
}

fn header_str(req: &ServiceRequest, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|h| h.to_str().ok())
}

/// The refusal of `req`, or who sent it.
fn check(access: &Access, req: &ServiceRequest) -> Result<Caller, Box<HttpResponse>> {
    if !host_exempt(req.path()) && !access.host_allowed(header_str(req, header::HOST)) {
        return Err(Box::new(refusal(
            StatusCode::MISDIRECTED_REQUEST,
            "this Host is not one ctsync answers to; add it to CTSYNC_ALLOWED_HOSTS (comma-separated)",
        )));
    }
    let caller = match access.caller(header_str(req, header::AUTHORIZATION)) {
        Ok(caller) => caller,
        // Probes and metrics are for anyone: a stale token does not matter.
        Err(()) if matches!(req.path(), "/metrics" | "/healthz") => Caller::default(),
        Err(()) => {
            return Err(Box::new(unauthorized(
                "the API token is none of the configured ones (CTSYNC_API_TOKEN, CTSYNC_API_TOKENS_FILE)",
            )))
        }
    };
    if writes(req.method()) {
        if let Some(refused) = refuse_content_type(header_str(req, header::CONTENT_TYPE)) {
            return Err(Box::new(refused));
        }
        if let Some(refused) = access.refuse_write(&caller) {
            return Err(Box::new(refused));
        }
    }
    Ok(caller)
}

/// The middleware: Host allowlist, the caller's token, write
/// authorization, hardening headers.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    use actix_web::HttpMessage;
    let shared = req.app_data::<web::Data<HttpState>>().cloned();
    let access = shared
        .as_ref()
        .map(|s| s.access.clone())
        .unwrap_or_default();
    let mut response = match check(&access, &req) {
        Err(r) => {
            refused_logged(
                shared.as_ref().map(|d| d.get_ref()),
                &access,
                &req,
                r.status(),
            );
            req.into_response(*r)
        }
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.call(req).await?.map_into_boxed_body()
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_without_port_and_case() {
        let a = Access::new(
            None,
            false,
            &["localhost".into(), "CTSYNC".into(), "::1".into()],
        );
        for ok in ["localhost", "localhost:8080", "Ctsync:80", "[::1]:8080"] {
            assert!(a.host_allowed(Some(ok)), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
        ] {
            assert!(!a.host_allowed(Some(bad)), "{bad}");
        }
        assert!(!a.host_allowed(None));
    }

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        for ok in ["Bearer t0k", "bearer t0k", "BEARER  t0k ", "bEaReR\tt0k"] {
            assert_eq!(bearer(ok), Some("t0k"), "{ok}");
        }
        for bad in ["Basic t0k", "Bearert0k", "t0k", ""] {
            assert_ne!(bearer(bad), Some("t0k"), "{bad}");
        }
    }

    #[test]
    fn only_json_is_a_write() {
        for ok in ["application/json", "Application/JSON; charset=utf-8"] {
            assert!(refuse_content_type(Some(ok)).is_none(), "{ok}");
        }
        for bad in [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain",
            "application/json-patch+json",
            "",
        ] {
            assert!(refuse_content_type(Some(bad)).is_some(), "{bad}");
        }
        assert!(refuse_content_type(None).is_some());
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let a = Access::new(Some("Sup3r-T0ken".into()), false, &[]);
        assert!(!format!("{a:?}").contains("Sup3r"));
    }
}
