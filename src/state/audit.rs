//! The audit trail: every accepted write or action, over HTTP or from the
//! CLI, logged at INFO and appended to the capped Redis stream
//! `mssql_sync:audit`, which `ctsync audit` reads back. Never a token.

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

/// Entries the stream keeps, about (`XADD … MAXLEN ~`): the oldest go first.
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
    /// `ok`, or `failed: <why>`.
    pub outcome: String,
}

/// The fields, in the order they are stored.
const FIELDS: [&str; 7] = [
    "at", "actor", "from", "action", "table", "detail", "outcome",
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
        }
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

    fn values(&self) -> [&str; 7] {
        [
            &self.at,
            &self.actor,
            &self.from,
            &self.action,
            &self.table,
            &self.detail,
            &self.outcome,
        ]
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
        let mut cmd = redis::cmd("XADD");
        cmd.arg(stream()).arg("MAXLEN").arg("~").arg(CAP).arg("*");
        for (field, value) in FIELDS.iter().zip(entry.values()) {
            cmd.arg(*field).arg(value);
        }
        let stored = self
            .cmd::<String>(&format!("XADD {}", stream()), &cmd)
            .await
            .map(|_| ());
        if let Err(e) = &stored {
            tracing::warn!(error = %e, action = %entry.action, table = %entry.table, "audit entry not stored in {}", stream());
        }
        stored
    }

    /// The stored entries from Unix ms `since` on (all without), oldest
    /// first.
    pub async fn audit_entries(&self, since: Option<u64>) -> ctsync_actors::Result<Vec<Entry>> {
        let start = since.map_or_else(|| "-".to_string(), |ms| ms.to_string());
        let raw: Vec<(String, Vec<String>)> = self
            .cmd(
                &format!("XRANGE {}", stream()),
                redis::cmd("XRANGE").arg(stream()).arg(start).arg("+"),
            )
            .await?;
        Ok(raw
            .into_iter()
            .map(|(id, fields)| Entry::from_fields(id, &fields))
            .collect())
    }
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
