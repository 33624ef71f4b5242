//! The Redis key names that form ctsync's public interface. Operators type
//! these by hand; never rename them.

use crate::error::{Error, Result};
use crate::model::{SyncVersion, TableId};

pub const PREFIX: &str = "mssql_sync";

pub fn enabled(table: &TableId) -> String {
    format!("{PREFIX}:enabled:{}", table.key_name())
}

pub fn force_full_load(table: &TableId) -> String {
    format!("{PREFIX}:force_full_load:{}", table.key_name())
}

pub fn version(table: &TableId) -> String {
    format!("{PREFIX}:version:{}", table.key_name())
}

/// Counter of Force Load requests made through the API or CLI.
pub fn force_requests(table: &TableId) -> String {
    format!("{PREFIX}:force_requests:{}", table.key_name())
}

pub fn progress(table: &TableId) -> String {
    format!("{PREFIX}:progress:{}", table.key_name())
}

/// The primary database identity (`broker_guid|create_date`) the table's
/// version belongs to.
pub fn primary_identity(table: &TableId) -> String {
    format!("{PREFIX}:primary_identity:{}", table.key_name())
}

/// Every per-table key, in a fixed order (used to move a renamed table).
pub fn table_keys(table: &TableId) -> [String; 6] {
    [
        enabled(table),
        force_full_load(table),
        version(table),
        progress(table),
        primary_identity(table),
        force_requests(table),
    ]
}

/// The lease an instance holds while it runs the table's cycles; its value
/// is `<instance id> <token>` (see `crate::fence`).
pub fn table_lease(table: &TableId) -> String {
    format!("{PREFIX}:lease:table:{}", table.key_name())
}

/// The lease of a singleton actor (`module_sync`, `ddl_listener`).
pub fn singleton_lease(name: &str) -> String {
    format!("{PREFIX}:lease:{name}")
}

/// The statuses of the tables an instance runs (JSON, expires with its
/// lease TTL), so any instance's page shows every table.
pub fn instance_status(instance: &str) -> String {
    format!("{PREFIX}:status:{instance}")
}

/// Sorted set of live instances, scored by when their heartbeat expires
/// (Unix ms).
pub const INSTANCES: &str = "mssql_sync:instances";

pub const CONFIG_PRIMARY_URL: &str = "mssql_sync:config:primary_url";
pub const CONFIG_REPLICA_URL: &str = "mssql_sync:config:replica_url";
/// Created once and never deleted by ctsync: gone means Redis lost its data.
pub const MARKER: &str = "mssql_sync:marker";
/// Redis list of DDL events that could not be applied.
pub const DDL_FAILED: &str = "mssql_sync:ddl_failed";

/// Reads `mssql_sync:version:<T>`; a value that is not a non-negative
/// integer is an error naming the key (never taken as "no version", which
/// would reload, nor as a version CT cleanup could have passed).
pub fn parse_version(key: &str, value: Option<&str>) -> Result<Option<SyncVersion>> {
    value
        .map(|v| match v.trim().parse::<SyncVersion>() {
            Ok(n) if n >= 0 => Ok(n),
            _ => Err(Error::BadValue {
                key: key.to_string(),
                value: v.to_string(),
            }),
        })
        .transpose()
}

/// Reads a counter; anything unreadable counts as 0.
pub fn parse_count(value: Option<&str>) -> u64 {
    value.and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Reads a flag value as an operator would write it: `"true"` (any case,
/// surrounding spaces ignored) is on, anything else is off.
pub fn parse_flag(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_match_the_public_interface() {
        let user = TableId::new("dbo", "User");
        assert_eq!(enabled(&user), "mssql_sync:enabled:User");
        assert_eq!(force_full_load(&user), "mssql_sync:force_full_load:User");
        assert_eq!(version(&user), "mssql_sync:version:User");
        let order = TableId::new("sales", "Order");
        assert_eq!(enabled(&order), "mssql_sync:enabled:sales.Order");
        assert_eq!(progress(&order), "mssql_sync:progress:sales.Order");
    }

    #[test]
    fn a_version_must_be_a_non_negative_integer() {
        let key = "mssql_sync:version:User";
        assert_eq!(parse_version(key, Some(" 42 ")).unwrap(), Some(42));
        assert_eq!(parse_version(key, None).unwrap(), None);
        for bad in ["abc", "-5", "", "1.5", "9223372036854775808"] {
            let e = parse_version(key, Some(bad)).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
            assert!(matches!(
                parse_version(key, Some(bad)),
                Err(Error::BadValue { .. })
            ));
        }
    }

    #[test]
    fn only_true_turns_a_flag_on() {
        assert!(parse_flag(Some("true")));
        assert!(parse_flag(Some(" TRUE ")));
        assert!(!parse_flag(Some("false")));
        assert!(!parse_flag(Some("1")));
        assert!(!parse_flag(None));
    }
}
