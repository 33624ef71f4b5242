//! The audit trail: every accepted write or action, over HTTP or from the
//! CLI, logged at INFO and appended to the capped Redis stream
//! `mssql_sync:audit`; refused requests, tallied per minute and address, in
//! `mssql_sync:audit:refused`. `ctsync audit` reads both back. A token's
//! name, never a token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ctsync_actors::keys;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::RedisState;

/// The stream's key.
pub fn stream() -> String {
    format!("{}:audit", keys::PREFIX)
}

/// The stream of refused requests' tallies (one entry per minute and
/// address), apart so that no flood can push accepted entries out.
pub fn refused_stream() -> String {
    format!("{}:audit:refused", keys::PREFIX)
}

/// Entries each stream keeps, about (`XADD … MAXLEN ~`): the oldest go
/// first.
pub const CAP: usize = 10_000;

/// One accepted write or action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The stream entry's id (`<unix ms>-<n>`); empty before it is stored.
    pub id: String,
    /// When, RFC 3339 in UTC.
    pub at: String,
    /// `http` or `cli`.
    pub actor: String,
    /// The peer address (`http`) or the OS user (`cli`).
    pub from: String,
    /// `enable`, `disable`, `force_full_load`, `set_version`, `verify`.
    pub action: String,
    pub table: String,
    /// What was set or found, e.g. `version=42` or `0 differences`.
    pub detail: String,
    /// `ok`, `failed: <why>`, or `refused` (a tally of refused requests).
    pub outcome: String,
    /// The name of the API token used (`CTSYNC_API_TOKEN` or a token
    /// file's name); empty without one (the CLI, unauthenticated writes).
    pub token: String,
}

/// The fields, in the order they are stored.
const FIELDS: [&str; 8] = [
    "at", "actor", "from", "action", "table", "detail", "outcome", "token",
];

impl Entry {
    /// An entry stamped now.
    pub fn now(actor: &str, from: &str, action: &str, table: &str) -> Self {
        Self {
            id: String::new(),
            at: rfc3339(SystemTime::now()),
            actor: actor.into(),
            from: from.into(),
            action: action.into(),
            table: table.into(),
            detail: String::new(),
            outcome: "ok".into(),
            token: String::new(),
        }
    }

    /// Names the token the caller used.
    pub fn token(mut self, name: Option<&str>) -> Self {
        self.token = name.unwrap_or_default().into();
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// The outcome of `result`: `ok` or `failed: <error>`.
    pub fn outcome<T, E: std::fmt::Display>(mut self, result: &Result<T, E>) -> Self {
        if let Err(e) = result {
            self.outcome = format!("failed: {e}");
        }
        self
    }

    fn values(&self) -> [&str; 8] {
        [
            &self.at,
            &self.actor,
            &self.from,
            &self.action,
            &self.table,
            &self.detail,
            &self.outcome,
            &self.token,
        ]
    }

    /// Unix ms of `at` (0 when unreadable).
    fn at_ms(&self) -> i128 {
        OffsetDateTime::parse(&self.at, &Rfc3339)
            .map_or(0, |t| t.unix_timestamp_nanos() / 1_000_000)
    }

    fn from_fields(id: String, fields: &[String]) -> Self {
        let get = |name: &str| {
            fields
                .chunks(2)
                .find(|kv| kv.first().map(String::as_str) == Some(name))
                .and_then(|kv| kv.get(1))
                .cloned()
                .unwrap_or_default()
        };
        Self {
            id,
            at: get("at"),
            actor: get("actor"),
            from: get("from"),
            action: get("action"),
            table: get("table"),
            detail: get("detail"),
            outcome: get("outcome"),
            token: get("token"),
        }
    }
}

/// `at` as RFC 3339 in UTC, to the millisecond.
pub fn rfc3339(at: SystemTime) -> String {
    let ms = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_millis()).unwrap_or(i128::MAX));
    OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Why `--since` could not be read.
#[derive(Debug, thiserror::Error)]
#[error("--since {given:?}: expected an RFC 3339 time (2026-01-31T08:00:00Z) or a duration back from now (90s, 15m, 1h, 2d)")]
pub struct BadSince {
    given: String,
}

/// The Unix ms `since` names: an RFC 3339 time, or a duration (`90s`,
/// `15m`, `1h`, `2d`) back from `now`.
pub fn since_ms(since: &str, now: SystemTime) -> Result<u64, BadSince> {
    let bad = || BadSince {
        given: since.into(),
    };
    let text = since.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        let ms = t.unix_timestamp_nanos() / 1_000_000;
        return u64::try_from(ms).map_err(|_| bad());
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3_600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(bad()),
    };
    let back = now
        .checked_sub(Duration::from_secs(secs))
        .unwrap_or(UNIX_EPOCH);
    Ok(back
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
}

/// The entry's INFO line.
pub fn log(entry: &Entry) {
    tracing::info!(
        actor = %entry.actor,
        from = %entry.from,
        action = %entry.action,
        table = %entry.table,
        detail = %entry.detail,
        outcome = %entry.outcome,
        token = %entry.token,
        "audit: {} {} by {} {}",
        entry.action,
        entry.table,
        entry.actor,
        entry.from
    );
}

impl RedisState {
    /// Logs `entry` at INFO and appends it to the stream (capped at about
    /// [`CAP`]). The write already happened: a failure to store the entry
    /// is logged at WARN and returned for the caller to report.
    pub async fn audit(&self, entry: &Entry) -> ctsync_actors::Result<()> {
        log(entry);
        let stored = self
            .cmd::<String>(&format!("XADD {}", stream()), &xadd(&stream(), entry))
            .await
            .map(|_| ());
        if let Err(e) = &stored {
            tracing::warn!(error = %e, action = %entry.action, table = %entry.table, "audit entry not stored in {}", stream());
        }
        stored
    }

    /// Appends the tallies of refused requests to [`refused_stream`] in
    /// one round trip (capped like the trail); a failure is logged at WARN.
    pub async fn audit_refusals(&self, entries: &[Entry]) -> ctsync_actors::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for entry in entries {
            pipe.add_command(xadd(&refused_stream(), entry)).ignore();
        }
        let stored = self
            .pipe::<()>(&format!("XADD {}", refused_stream()), &pipe)
            .await;
        if let Err(e) = &stored {
            tracing::warn!(error = %e, entries = entries.len(), "tallies of refused requests not stored in {}", refused_stream());
        }
        stored
    }

    /// The stored entries, accepted and refused, from Unix ms `since` on
    /// (all without), oldest first.
    pub async fn audit_entries(&self, since: Option<u64>) -> ctsync_actors::Result<Vec<Entry>> {
        let mut all = self.stream_entries(&stream(), since).await?;
        // A tally is stored after its minute: read a minute further back,
        // and keep what its time says.
        let tallies = self
            .stream_entries(&refused_stream(), since.map(|ms| ms.saturating_sub(60_000)))
            .await?;
        let since = since.map_or(0, i128::from);
        all.extend(tallies.into_iter().filter(|e| e.at_ms() >= since));
        all.sort_by_key(Entry::at_ms);
        Ok(all)
    }

    async fn stream_entries(
        &self,
        key: &str,
        since: Option<u64>,
    ) -> ctsync_actors::Result<Vec<Entry>> {
        let start = since.map_or_else(|| "-".to_string(), |ms| ms.to_string());
        let raw: Vec<(String, Vec<String>)> = self
            .cmd(
                &format!("XRANGE {key}"),
                redis::cmd("XRANGE").arg(key).arg(start).arg("+"),
            )
            .await?;
        Ok(raw
            .into_iter()
            .map(|(id, fields)| Entry::from_fields(id, &fields))
            .collect())
    }
}

/// `XADD key MAXLEN ~ CAP * field value…` of `entry`.
fn xadd(key: &str, entry: &Entry) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(key).arg("MAXLEN").arg("~").arg(CAP).arg("*");
    for (field, value) in FIELDS.iter().zip(entry.values()) {
        cmd.arg(*field).arg(value);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_times_and_durations() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(since_ms("1h", now).ok(), Some((1_000_000 - 3_600) * 1_000));
        assert_eq!(since_ms("90s", now).ok(), Some((1_000_000 - 90) * 1_000));
        assert_eq!(
            since_ms("2d", now).ok(),
            Some((1_000_000 - 172_800) * 1_000)
        );
        assert_eq!(
            since_ms("1970-01-01T00:00:01.5Z", now).ok(),
            Some(1_500),
            "RFC 3339"
        );
        assert_eq!(since_ms("1970-01-01T01:00:00+01:00", now).ok(), Some(0));
        for bad in [
            "",
            "h",
            "1",
            "1w",
            "yesterday",
            "-1h",
            "2026-13-01T00:00:00Z",
        ] {
            assert!(since_ms(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let at = UNIX_EPOCH + Duration::from_millis(1_500);
        assert_eq!(rfc3339(at), "1970-01-01T00:00:01.5Z");
    }
}
