//! Who may steer ctsync over HTTP: a bearer token for every state-changing
//! request (compared in constant time), an optional read-only mode, a
//! `Host` allowlist against DNS rebinding on the page and the API (the
//! probes and `/metrics` stay reachable by IP), and hardening headers that
//! forbid framing and sniffing on every response.

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
    /// Host names (lower case, without port) the page and API answer to;
    /// empty: any (in-process tests).
    allowed_hosts: BTreeSet<String>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("read_only", &self.read_only)
            .field("allowed_hosts", &self.allowed_hosts)
            .finish()
    }
}

/// `Content-Security-Policy` of every response: only ctsync's own script
/// and style, no framing, no forms.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
form-action 'none'";

impl Access {
    pub fn new(token: Option<String>, read_only: bool, allowed_hosts: &[String]) -> Self {
        Self {
            token: token.filter(|t| !t.is_empty()),
            read_only,
            allowed_hosts: allowed_hosts
                .iter()
                .map(|h| host_only(h).to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        }
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
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

    /// The refusal, if the request's credentials do not allow a write.
    fn refuse_write(&self, authorization: Option<&str>) -> Option<HttpResponse> {
        if self.read_only {
            return Some(refusal(
                StatusCode::FORBIDDEN,
                "ctsync runs read-only (CTSYNC_API_READ_ONLY=true): no flag can be changed over HTTP",
            ));
        }
        let expected = self.token.as_ref()?;
        let given = authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or_default();
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
        access.refuse_write(
            req.headers()
                .get(header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok()),
        )
    } else {
        None
    };
    let mut response = match refused {
        Some(r) => req.into_response(r),
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
