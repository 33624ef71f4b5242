//! Requests the access rules refused (401, 403, 415, 421), tallied per
//! minute and address: the first few of each address in a minute are
//! logged one by one, the tally goes to `mssql_sync:audit:refused` once the
//! minute is over (or at shutdown), so a flood cannot flood the log or push
//! accepted entries out of the audit trail.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use crate::state::audit::Entry;
use crate::state::RedisState;

/// Addresses tallied one by one in a minute; the rest are tallied together.
pub const MAX_ADDRESSES: usize = 100;

/// Refusals of one address in a minute that are logged one by one; the
/// rest only in the minute's tally.
pub const LOGGED_PER_ADDRESS: u64 = 20;

/// How often a finished minute is looked for when no request comes.
pub const FLUSH_EVERY: Duration = Duration::from_secs(10);

const MINUTE_MS: u64 = 60_000;

/// The `from` of the tally past [`MAX_ADDRESSES`] addresses.
pub const OTHERS: &str = "other addresses";

/// The tally of one address (or of the addresses past [`MAX_ADDRESSES`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub by_status: BTreeMap<u16, u64>,
    /// Unix ms of the first refusal tallied.
    pub first_ms: u64,
}

impl Tally {
    pub fn total(&self) -> u64 {
        self.by_status.values().sum()
    }

    fn detail(&self) -> String {
        let parts: Vec<String> = self
            .by_status
            .iter()
            .map(|(status, n)| format!("{status}×{n}"))
            .collect();
        format!("{} refused: {}", self.total(), parts.join(", "))
    }
}

/// One finished minute's tallies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Minute {
    /// Unix ms of the minute's start.
    pub start_ms: u64,
    pub by_address: BTreeMap<String, Tally>,
    /// Past [`MAX_ADDRESSES`] addresses.
    pub others: Tally,
}

impl Minute {
    /// One audit entry per address (and one for the others).
    pub fn entries(&self) -> Vec<Entry> {
        let time = |ms: u64| crate::state::audit::rfc3339(UNIX_EPOCH + Duration::from_millis(ms));
        let minute = time(self.start_ms);
        let entry = |from: String, tally: &Tally| {
            let mut e = Entry::now("http", &from, "refused", "")
                .detail(format!("{} in the minute from {minute}", tally.detail()));
            // When the first of them came, so it sorts among the accepted.
            e.at = time(tally.first_ms);
            e.outcome = "refused".into();
            e
        };
        let mut all: Vec<Entry> = self
            .by_address
            .iter()
            .map(|(from, tally)| entry(from.clone(), tally))
            .collect();
        if self.others.total() > 0 {
            all.push(entry(OTHERS.to_string(), &self.others));
        }
        all
    }
}

#[derive(Debug, Default)]
struct Window {
    minute: Option<Minute>,
}

/// The tallies of the current minute, shared by the HTTP workers.
#[derive(Debug, Clone, Default)]
pub struct Refusals(Arc<Mutex<Window>>);

impl Refusals {
    /// Counts a refusal of `status` from `from` at Unix ms `now_ms`: whether
    /// to log it one by one, and the minute it finished, if it did.
    pub fn note(&self, now_ms: u64, from: &str, status: u16) -> (bool, Option<Minute>) {
        let start_ms = now_ms - now_ms % MINUTE_MS;
        let mut window = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let finished = match &window.minute {
            Some(m) if m.start_ms != start_ms => window.minute.take(),
            _ => None,
        };
        let minute = window.minute.get_or_insert_with(|| Minute {
            start_ms,
            ..Minute::default()
        });
        let known = minute.by_address.len();
        let log;
        if let Some(tally) = minute.by_address.get_mut(from) {
            *tally.by_status.entry(status).or_default() += 1;
            log = tally.total() <= LOGGED_PER_ADDRESS;
        } else if known < MAX_ADDRESSES {
            let tally = Tally {
                by_status: [(status, 1)].into(),
                first_ms: now_ms,
            };
            minute.by_address.insert(from.to_string(), tally);
            log = true;
        } else {
            if minute.others.total() == 0 {
                minute.others.first_ms = now_ms;
            }
            *minute.others.by_status.entry(status).or_default() += 1;
            log = false;
        }
        (log, finished)
    }

    /// The minute being tallied, if it ended before `now_ms`.
    pub fn take_finished(&self, now_ms: u64) -> Option<Minute> {
        let start_ms = now_ms - now_ms % MINUTE_MS;
        let mut window = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match &window.minute {
            Some(m) if m.start_ms < start_ms => window.minute.take(),
            _ => None,
        }
    }

    /// Whatever is tallied (at shutdown).
    pub fn take_all(&self) -> Option<Minute> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .minute
            .take()
    }
}

/// Says what was not logged one by one, and stores the minute's tallies
/// (a failure to store them is logged; nothing else depends on them).
pub async fn flush(minute: Option<Minute>, store: Option<&RedisState>) {
    let Some(minute) = minute else { return };
    for (from, tally) in &minute.by_address {
        if tally.total() > LOGGED_PER_ADDRESS {
            tracing::warn!(
                from = %from,
                refused = tally.total(),
                "HTTP requests refused by the access rules: {}; only the first {LOGGED_PER_ADDRESS} were logged one by one",
                tally.detail()
            );
        }
    }
    if minute.others.total() > 0 {
        tracing::warn!(
            refused = minute.others.total(),
            "HTTP requests refused by the access rules from more than {MAX_ADDRESSES} addresses in a minute: {} from the others, not logged one by one",
            minute.others.detail()
        );
    }
    if let Some(store) = store {
        let _ = store.audit_refusals(&minute.entries()).await;
    }
}

/// Unix ms now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Stores each minute once it is over, when no refusal comes to end it.
pub fn spawn_flusher(refusals: Refusals, store: Option<Arc<RedisState>>) {
    actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        loop {
            tick.tick().await;
            flush(refusals.take_finished(now_ms()), store.as_deref()).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000; // a minute's start

    #[test]
    fn refusals_are_tallied_per_minute_and_address() {
        let r = Refusals::default();
        assert_eq!(r.note(T0 + 1, "a", 401), (true, None));
        assert_eq!(r.note(T0 + 2, "a", 401).1, None);
        assert_eq!(r.note(T0 + 3, "a", 421).1, None);
        assert_eq!(r.note(T0 + 59_999, "b", 403).1, None);
        assert_eq!(r.take_finished(T0 + 59_999), None, "the minute is not over");
        let (logged, finished) = r.note(T0 + 60_000, "a", 401);
        assert!(logged, "the first of a new minute");
        let m = finished.expect("the first minute ended");
        assert_eq!(m.start_ms, T0);
        assert_eq!(m.by_address["a"].by_status, [(401, 2), (421, 1)].into());
        assert_eq!(m.by_address["b"].by_status, [(403, 1)].into());
        let entries = m.entries();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].from, "a");
        assert_eq!(entries[0].action, "refused");
        assert_eq!(entries[0].outcome, "refused");
        assert!(
            entries[0].detail.starts_with("3 refused: 401×2, 421×1"),
            "{}",
            entries[0].detail
        );
        assert_eq!(
            entries[0].at,
            crate::state::audit::rfc3339(UNIX_EPOCH + Duration::from_millis(T0 + 1)),
            "when the first came"
        );
        assert_eq!(
            entries[1].at,
            crate::state::audit::rfc3339(UNIX_EPOCH + Duration::from_millis(T0 + 59_999))
        );
        let second = r.take_finished(T0 + 120_000).expect("the second minute");
        assert_eq!(second.by_address["a"].total(), 1);
        assert_eq!(r.take_all(), None);
    }

    #[test]
    fn a_flood_is_logged_a_few_times_and_kept_to_a_bounded_tally() {
        let r = Refusals::default();
        let logged = (0..1_000).filter(|_| r.note(T0, "flood", 401).0).count();
        assert_eq!(logged as u64, LOGGED_PER_ADDRESS);
        for i in 0..(MAX_ADDRESSES + 50) {
            r.note(T0, &format!("10.0.{}.{}", i / 256, i % 256), 421);
        }
        let m = r.take_all().expect("tally");
        assert_eq!(m.by_address.len(), MAX_ADDRESSES);
        assert_eq!(m.by_address["flood"].total(), 1_000);
        assert_eq!(m.others.total(), 51);
        let entries = m.entries();
        assert_eq!(entries.len(), MAX_ADDRESSES + 1);
        assert_eq!(entries.last().map(|e| e.from.as_str()), Some(OTHERS));
    }
}
