//! Operator flags as Redis holds them: read leniently (`keys::parse_flag`:
//! "true" in any case, spaces ignored, is on; anything else is off), and a
//! value written otherwise than exactly "true" or "false" is said once (a
//! WARN per key and value), so "TRUE" or "1" never acts silently.

use std::collections::HashSet;
use std::sync::Mutex;

use ctsync_actors::keys;

/// Remembers which odd values were already said.
#[derive(Default)]
pub(super) struct Flags {
    said: Mutex<HashSet<(String, String)>>,
}

impl Flags {
    /// The flag holding `value`: on or off. `key` names it, and is only
    /// built for an odd value (the poll reads every table's flags).
    pub(super) fn read(&self, key: impl FnOnce() -> String, value: Option<&str>) -> bool {
        let on = keys::parse_flag(value);
        if let Some(v) = value.filter(|v| *v != "true" && *v != "false") {
            let key = key();
            let first = self
                .said
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((key.clone(), v.to_string()));
            if first {
                tracing::warn!(
                    key = %key,
                    value = %v,
                    read_as = if on { "on" } else { "off" },
                    "flag is not written as \"true\" or \"false\": it is read as {}, since only \"true\" (any case, spaces ignored) means on; write \"true\" or \"false\"",
                    if on { "on" } else { "off" }
                );
            }
        }
        on
    }
}
