//! In-process fencing: at most one owner of a table's cycle at a time. The
//! supervisor issues a token (a number that only grows) to each TableActor
//! it starts and revokes it when it retires the actor; the SinkActor
//! refuses a table write whose token is not the table's current one, so a
//! retired actor whose cycle is still running cannot write to the replica.
//! The check and the write happen inside the sink's one atomic handler.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::model::TableId;

#[derive(Debug, Default)]
struct Tokens {
    /// The table's current token (0: none was ever issued).
    current: BTreeMap<TableId, u64>,
    /// The last token issued for any table: tokens never repeat.
    last: u64,
}

/// Cloneable handle to the table → token registry.
#[derive(Debug, Clone, Default)]
pub struct Fence {
    tokens: Arc<Mutex<Tokens>>,
}

impl Fence {
    fn lock(&self) -> MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new token for `table`; every earlier one is refused from now on.
    pub fn issue(&self, table: &TableId) -> u64 {
        let mut t = self.lock();
        t.last += 1;
        let token = t.last;
        t.current.insert(table.clone(), token);
        token
    }

    /// Refuses every token of `table` until a new one is issued.
    pub fn revoke(&self, table: &TableId) {
        let mut t = self.lock();
        t.last += 1;
        let token = t.last;
        t.current.insert(table.clone(), token);
    }

    /// `Ok` if `token` is the table's current token.
    pub fn check(&self, table: &TableId, token: u64) -> Result<()> {
        let current = self.lock().current.get(table).copied().unwrap_or(0);
        if current == token {
            Ok(())
        } else {
            Err(Error::Fenced {
                table: table.clone(),
                token,
                current,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_latest_token_of_a_table_passes() {
        let fence = Fence::default();
        let t = TableId::new("dbo", "T");
        let u = TableId::new("dbo", "U");
        let first = fence.issue(&t);
        let other = fence.issue(&u);
        assert!(fence.check(&t, first).is_ok());
        let second = fence.issue(&t);
        assert!(second > first);
        assert!(matches!(fence.check(&t, first), Err(Error::Fenced { .. })));
        assert!(fence.check(&t, second).is_ok());
        assert!(fence.check(&u, other).is_ok(), "tables are fenced apart");
        fence.revoke(&t);
        assert!(fence.check(&t, second).is_err());
    }
}
