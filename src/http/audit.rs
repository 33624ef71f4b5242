//! Records each accepted write or action of the API: who (the peer
//! address, or the client a trusted proxy names, and the token's name),
//! what, on which table, and how it ended; logged at INFO and appended to
//! `mssql_sync:audit` (see `crate::state::audit`).

use actix_web::HttpRequest;

use super::HttpState;
use crate::state::audit::Entry;

/// Who sent the request (see `Access::client`).
pub fn caller(shared: &HttpState, req: &HttpRequest) -> String {
    shared.access.client(
        req.peer_addr(),
        req.headers()
            .get("x-forwarded-for")
            .and_then(|h| h.to_str().ok()),
    )
}

/// Records that `action` on `table` was done, with `detail` and `result`.
pub async fn record<T, E: std::fmt::Display>(
    shared: &HttpState,
    req: &HttpRequest,
    action: &str,
    table: &str,
    detail: String,
    result: &Result<T, E>,
) {
    let token = super::Caller::of(req).token;
    let entry = Entry::now("http", &caller(shared, req), action, table)
        .detail(detail)
        .outcome(result)
        .token(token.as_deref());
    match &shared.audit {
        // A failure to store it is logged there; the write stands.
        Some(audit) => {
            let _ = audit.audit(&entry).await;
        }
        None => crate::state::audit::log(&entry),
    }
}
