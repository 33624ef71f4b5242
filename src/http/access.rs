//! Who may steer ctsync over HTTP: every state-changing request must be
//! `application/json` (no form or no-cors request can be) and carry the
//! bearer token (compared in constant time); without a token writes are off
//! unless the operator opts in. A `Host` allowlist guards against DNS
//! rebinding (probes and `/metrics` stay reachable by IP), and hardening
//! headers forbid framing and sniffing on every response. Each refusal is
//! logged at WARN with the peer address and counted.

use std::collections::BTreeSet;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::HttpState;

/// The access rules of the HTTP server.
#[derive(Clone, Default)]
pub struct Access {
    /// `CTSYNC_API_TOKEN`: required as `Authorization: Bearer …` on writes.
    token: Option<String>,
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
            .field("token", &self.token.as_ref().map(|_| "<set>"))
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
    pub disabled_reason: Option<&'static str>,
}

impl Access {
    /// Writes need `token`; without one they are refused unless
    /// `allow_unauthenticated_writes`; `read_only` refuses them all.
    pub fn new(token: Option<String>, read_only: bool, allowed_hosts: &[String]) -> Self {
        Self::with_writes(token, read_only, false, allowed_hosts)
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
            token: token.filter(|t| !t.is_empty()),
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
        let Some(peer) = peer else {
            return "unknown".into();
        };
        if !self.trusted_proxies.contains(&peer.ip()) {
            return peer.to_string();
        }
        let client = forwarded_for.and_then(|list| {
            list.split(',')
                .map(str::trim)
                .rev()
                .map(|a| a.parse::<std::net::IpAddr>())
                .find(|a| !matches!(a, Ok(ip) if self.trusted_proxies.contains(ip)))
        });
        match client {
            Some(Ok(ip)) => format!("{ip} via {peer}"),
            // Not an address: the proxy's word cannot be logged as one.
            Some(Err(_)) => format!("{peer} (unreadable X-Forwarded-For)"),
            None => peer.to_string(),
        }
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Anyone may write: no token, not read-only, opted in.
    pub fn unauthenticated_writes(&self) -> bool {
        self.token.is_none() && !self.read_only && self.allow_unauthenticated_writes
    }

    /// The opt-in is set but a token makes it moot.
    pub fn opt_in_ignored(&self) -> bool {
        self.token.is_some() && self.allow_unauthenticated_writes
    }

    pub fn writes(&self) -> Writes {
        let disabled_reason = if self.read_only {
            Some(READ_ONLY)
        } else if self.token.is_none() && !self.allow_unauthenticated_writes {
            Some(NO_TOKEN)
        } else {
            None
        };
        Writes {
            enabled: disabled_reason.is_none(),
            token_required: self.token.is_some(),
            disabled_reason,
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
    }

    /// The refusal, if the request's credentials do not allow a write.
    fn refuse_write(&self, authorization: Option<&str>) -> Option<HttpResponse> {
        if let Some(reason) = self.writes().disabled_reason {
            return Some(refusal(StatusCode::FORBIDDEN, reason));
        }
        let expected = self.token.as_ref()?;
        let given = authorization.and_then(bearer).unwrap_or_default();
        if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            None
        } else {
            let mut response = refusal(
                StatusCode::UNAUTHORIZED,
                "this request changes state: send the API token as `Authorization: Bearer <CTSYNC_API_TOKEN>`",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ctsync\""),
            );
            Some(response)
        }
    }
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

/// Compares in time independent of where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for (i, byte) in b.iter().enumerate() {
        diff |= a.get(i).copied().unwrap_or(0) ^ byte;
    }
    diff == 0
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

/// Says at WARN who was refused what, and counts it (never a header).
fn refused_logged(access: &Access, req: &ServiceRequest, status: StatusCode) {
    let from = access.client(
        req.peer_addr(),
        req.headers()
            .get("x-forwarded-for")
            .and_then(|h| h.to_str().ok()),
    );
    tracing::warn!(
        status = status.as_u16(),
        method = %req.method(),
        path = req.path(),
        from,
        "HTTP request refused by the access rules"
    );
    ctsync_actors::telemetry::http_refused(status.as_u16());
}

/// The middleware: Host allowlist, write authorization, hardening headers.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let access = req
        .app_data::<web::Data<HttpState>>()
        .map(|s| s.access.clone())
        .unwrap_or_default();
    let refused = if !host_exempt(req.path())
        && !access.host_allowed(
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok()),
        ) {
        Some(refusal(
            StatusCode::MISDIRECTED_REQUEST,
            "this Host is not one ctsync answers to; add it to CTSYNC_ALLOWED_HOSTS (comma-separated)",
        ))
    } else if writes(req.method()) {
        refuse_content_type(
            req.headers()
                .get(header::CONTENT_TYPE)
                .and_then(|h| h.to_str().ok()),
        )
        .or_else(|| {
            access.refuse_write(
                req.headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|h| h.to_str().ok()),
            )
        })
    } else {
        None
    };
    let mut response = match refused {
        Some(r) => {
            refused_logged(&access, &req, r.status());
            req.into_response(r)
        }
        None => next.call(req).await?.map_into_boxed_body(),
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
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        for bad in [&b"secre"[..], b"secret!", b"", b"Secret"] {
            assert!(!constant_time_eq(bad, b"secret"));
        }
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let a = Access::new(Some("Sup3r-T0ken".into()), false, &[]);
        assert!(!format!("{a:?}").contains("Sup3r"));
    }
}
