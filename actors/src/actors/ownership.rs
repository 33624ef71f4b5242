//! Which tables an instance runs, when several share one Redis: each table
//! goes to the live instance with the highest rendezvous score for it, so
//! every instance gets about tables ÷ instances, and an instance joining or
//! leaving moves only the tables it gains or had (no reshuffle). Scores use
//! FNV-1a, stable across builds, so instances of different versions agree.

use std::time::Duration;

use tokio::time::Instant;

use crate::model::TableId;

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(std::iter::once(&0xffu8)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    // A final mix, so that similar names spread well.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// The live instance that should run `table` (`None`: no live instance).
pub fn preferred_owner<'a>(table: &TableId, instances: &'a [String]) -> Option<&'a str> {
    let key = table.key_name();
    instances
        .iter()
        .max_by_key(|i| (fnv1a(&[i.as_bytes(), key.as_bytes()]), i.as_str()))
        .map(String::as_str)
}

/// Until when an instance may write after a renewal that started at
/// `asked`: four fifths of the TTL, so it stops writing well before another
/// instance can take the lease (Redis counts the TTL from later than
/// `asked`, and clocks run at slightly different rates).
pub fn write_deadline(asked: Instant, ttl: Duration) -> Instant {
    asked + ttl.mul_f64(0.8)
}

/// A singleton's lease as this instance last saw it: held until a time.
#[derive(Debug, Clone, Default)]
pub struct SingletonLease {
    until: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
}

impl SingletonLease {
    pub fn set(&self, until: Option<Instant>) {
        *self.until.lock().unwrap_or_else(|e| e.into_inner()) = until;
    }

    /// Whether this instance holds the lease now.
    pub fn held(&self) -> bool {
        self.until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|u| Instant::now() < u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("instance-{i}")).collect()
    }

    #[test]
    fn tables_spread_evenly_and_move_only_when_their_owner_changes() {
        let tables: Vec<TableId> = (0..600)
            .map(|i| TableId::new("dbo", format!("T{i}")))
            .collect();
        let two = names(2);
        let three = names(3);
        let owner = |t: &TableId, set: &[String]| preferred_owner(t, set).unwrap().to_string();
        for n in 0..3 {
            let count = tables
                .iter()
                .filter(|t| owner(t, &three) == three[n])
                .count();
            assert!(
                (150..250).contains(&count),
                "instance {n} got {count} of 600"
            );
        }
        // A third instance joins: only tables it takes move.
        for t in &tables {
            let before = owner(t, &two);
            let after = owner(t, &three);
            assert!(
                after == before || after == three[2],
                "{t} moved between old instances"
            );
        }
        // The middle one dies: only its tables move.
        let survivors = vec![three[0].clone(), three[2].clone()];
        for t in &tables {
            let before = owner(t, &three);
            if before != three[1] {
                assert_eq!(
                    owner(t, &survivors),
                    before,
                    "{t} moved though its owner lives"
                );
            }
        }
        assert_eq!(preferred_owner(&tables[0], &[]), None);
    }

    #[test]
    fn the_write_deadline_comes_before_the_lease_expires() {
        let now = Instant::now();
        let ttl = Duration::from_secs(15);
        assert!(write_deadline(now, ttl) < now + ttl);
        assert!(write_deadline(now, ttl) > now + ttl / 2);
    }
}
