//! `ctsync check-config`: a readable summary of the settings (never a
//! secret), and with `--connect` an attempt to reach the primary, the
//! replica and Redis that says which fail and why.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, LogFormat};
use crate::http::Probe;
use crate::mssql::{MssqlPrimary, MssqlReplica, Pool};
use crate::probes::{PrimaryProbe, RedisProbe, ReplicaProbe};
use crate::state::RedisState;

/// The summary, one setting per line.
pub fn summary(c: &Config) -> String {
    let tls = if c.tls.trust_server_certificate {
        format!(
            "TLS {:?}, server certificate NOT validated (CTSYNC_TRUST_SERVER_CERTIFICATE=true: development only)",
            c.tls.encrypt
        )
    } else {
        format!("TLS {:?}, server certificate validated", c.tls.encrypt)
    };
    let redis = c.redis_url.expose();
    let redis_tls = if redis.starts_with("rediss://") {
        "TLS"
    } else {
        "no TLS"
    };
    let redis_auth = url::Url::parse(redis)
        .ok()
        .map(|u| u.password().is_some() || !u.username().is_empty())
        .unwrap_or(false);
    let s = &c.sync;
    let lines = [
        "configuration is valid".to_string(),
        format!("primary:  {} ({tls})", c.primary),
        format!("replica:  {} ({tls})", c.replica),
        format!(
            "redis:    {} ({redis_tls}, {})",
            c.redis_url,
            if redis_auth { "password set" } else { "no password" }
        ),
        format!(
            "http:     {} (API tokens: {}; {}; page and API answer to: {})",
            c.http_addr,
            if c.access.has_token() {
                c.access.tokens().names().join(", ")
            } else {
                "NOT set".to_string()
            },
            if c.access.read_only {
                "read-only"
            } else if c.access.has_token() {
                "writes need an operate token"
            } else if c.access.unauthenticated_writes() {
                "writes allowed WITHOUT a token (CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES)"
            } else {
                "read-only: writes need a token"
            },
            c.access.allowed_hosts().join(", ")
        ),
        format!(
            "sync:     poll every {} s; full loads {:?} in pages of {}; change pages of {}; stale tables {}",
            s.poll_interval.as_secs(),
            s.full_load_mode,
            s.full_load_page_size,
            s.change_page_size,
            if s.auto_reload_stale { "reloaded automatically" } else { "wait for an operator" }
        ),
        format!(
            "ddl:      {}",
            c.ddl_queue
                .as_deref()
                .map(|q| format!("listening on {q}"))
                .unwrap_or_else(|| "listener off".into())
        ),
        format!(
            "log:      {} ({})",
            c.log,
            match c.log_format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            }
        ),
    ];
    lines.join("\n")
}

/// What a check may take beyond the connect timeout (its query's answer).
const ANSWER_MARGIN: Duration = Duration::from_secs(10);

/// Tries every dependency, each for at most what one open may take (the
/// connect timeout, `CTSYNC_CONNECT_TIMEOUT_SECS`, bounds the TCP connect
/// and the login each, twice after a routing redirect) plus
/// [`ANSWER_MARGIN`]; `Ok` if all answered.
pub async fn connect(c: &Config) -> Result<String, String> {
    let redis = RedisState::new(c.redis_url.expose()).map_err(|e| format!("REDIS_URL: {e}"))?;
    let probes: Vec<Arc<dyn Probe>> = vec![
        Arc::new(PrimaryProbe(Arc::new(MssqlPrimary::new(Pool::new(
            c.primary.clone(),
            1,
        ))))),
        Arc::new(ReplicaProbe(Arc::new(MssqlReplica::new(Pool::new(
            c.replica.clone(),
            1,
        ))))),
        Arc::new(RedisProbe(Arc::new(redis))),
    ];
    let limit = c
        .connect_timeout
        .saturating_mul(4)
        .saturating_add(ANSWER_MARGIN);
    let mut results = Vec::new();
    for probe in probes {
        let name = probe.name();
        let result = tokio::time::timeout(limit, probe.check())
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", limit.as_secs())));
        results.push((name, result));
    }
    let mut report = Vec::new();
    let mut failed = false;
    for (name, result) in results {
        match result {
            Ok(()) => report.push(format!("{name}: ok")),
            Err(e) => {
                failed = true;
                report.push(format!("{name}: FAILED: {e}"));
            }
        }
    }
    let text = report.join("\n");
    if failed {
        Err(text)
    } else {
        Ok(text)
    }
}
