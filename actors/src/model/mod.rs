//! The domain model shared by every port and actor: table ids, column
//! definitions and SQL types, row values, and the change batches that move
//! from the primary to the replica. Nothing here knows about tiberius or Redis.

mod table_id;
mod value;

pub use table_id::TableId;
pub use value::{Row, RowKey, Value};

/// A CT version as returned by `CHANGE_TRACKING_CURRENT_VERSION()`.
pub type SyncVersion = i64;

/// Length of a character or binary type as `sys.columns.max_length` gives
/// it: bytes (so `nvarchar(50)` is `N(100)`), or MAX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Len {
    N(u32),
    Max,
}

/// The SQL Server types ctsync understands. `Unsupported` keeps the name so a
/// table using it can be put into an error state with a clear message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlType {
    Bit,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Decimal {
        precision: u8,
        scale: u8,
    },
    Numeric {
        precision: u8,
        scale: u8,
    },
    Money,
    SmallMoney,
    Real,
    Float {
        precision: u8,
    },
    Char(Len),
    VarChar(Len),
    NChar(Len),
    NVarChar(Len),
    Text,
    NText,
    Binary(Len),
    VarBinary(Len),
    Image,
    UniqueIdentifier,
    Date,
    Time {
        scale: u8,
    },
    DateTime,
    SmallDateTime,
    DateTime2 {
        scale: u8,
    },
    DateTimeOffset {
        scale: u8,
    },
    /// `rowversion`/`timestamp` on the primary; cloned as `binary(8)`.
    RowVersion,
    Xml,
    Unsupported(String),
}

impl SqlType {
    /// Character types: the ones that carry a collation.
    pub fn is_character(&self) -> bool {
        matches!(
            self,
            SqlType::Char(_)
                | SqlType::VarChar(_)
                | SqlType::NChar(_)
                | SqlType::NVarChar(_)
                | SqlType::Text
                | SqlType::NText
        )
    }

    /// Deprecated LOB types and MAX types: never compared, never used as a
    /// keyset pagination column.
    pub fn is_lob(&self) -> bool {
        matches!(
            self,
            SqlType::Text
                | SqlType::NText
                | SqlType::Image
                | SqlType::Xml
                | SqlType::VarChar(Len::Max)
                | SqlType::NVarChar(Len::Max)
                | SqlType::VarBinary(Len::Max)
        )
    }
}

/// `IDENTITY(seed, increment)` of a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub seed: i128,
    pub increment: i128,
}

/// A computed column's definition as stored in `sys.computed_columns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Computed {
    pub definition: String,
    pub persisted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
    pub identity: Option<Identity>,
    pub computed: Option<Computed>,
    pub collation: Option<String>,
    /// The column has a DEFAULT constraint on the primary (not cloned).
    pub has_default: bool,
}

impl ColumnDef {
    /// A plain column (no identity, not computed, default collation).
    pub fn new(name: impl Into<String>, ty: SqlType, nullable: bool) -> Self {
        Self {
            name: name.into(),
            ty,
            nullable,
            identity: None,
            computed: None,
            collation: None,
            has_default: false,
        }
    }

    /// Computed columns are never written; the replica computes them.
    pub fn is_written(&self) -> bool {
        self.computed.is_none()
    }
}

/// One change to a replica table's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnOp {
    Add(ColumnDef),
    Drop(String),
    /// Change type, length or nullability to the given definition.
    Alter(ColumnDef),
}

/// One primary-key column and its sort direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyColumn {
    pub name: String,
    pub descending: bool,
}

/// A table definition read from the primary's catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    pub id: TableId,
    pub columns: Vec<ColumnDef>,
    /// Primary key columns in key order; empty if the table has none.
    pub primary_key: Vec<KeyColumn>,
}

impl TableSchema {
    /// The columns whose values identify a row: the primary key, or the first
    /// non-LOB column when there is none. `None` if no column can serve.
    pub fn key_columns(&self) -> Option<Vec<String>> {
        if !self.primary_key.is_empty() {
            return Some(self.primary_key.iter().map(|k| k.name.clone()).collect());
        }
        self.columns
            .iter()
            .find(|c| !c.ty.is_lob() && c.is_written())
            .map(|c| vec![c.name.clone()])
    }

    /// Columns that are read from the primary and written to the replica, in
    /// catalog order (computed columns excluded).
    pub fn written_columns(&self) -> Vec<&ColumnDef> {
        self.columns.iter().filter(|c| c.is_written()).collect()
    }

    pub fn has_identity(&self) -> bool {
        self.columns.iter().any(|c| c.identity.is_some())
    }

    /// The first column of an unsupported type, if any: the table cannot be
    /// replicated until it is fixed.
    pub fn unsupported_column(&self) -> Option<(&str, &str)> {
        self.columns.iter().find_map(|c| match &c.ty {
            SqlType::Unsupported(t) => Some((c.name.as_str(), t.as_str())),
            _ => None,
        })
    }

    /// The definitions of [`TableSchema::key_columns`], in key order.
    pub fn key_column_defs(&self) -> Option<Vec<&ColumnDef>> {
        self.key_columns()?
            .iter()
            .map(|k| self.columns.iter().find(|c| &c.name == k))
            .collect()
    }

    /// Position of each key column within [`TableSchema::written_columns`].
    pub fn key_positions(&self) -> Option<Vec<usize>> {
        let keys = self.key_columns()?;
        let written = self.written_columns();
        keys.iter()
            .map(|k| written.iter().position(|c| &c.name == k))
            .collect()
    }
}

/// One page of net changes read from `CHANGETABLE(CHANGES …)`: every changed
/// key, and the current row for keys whose row still exists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangePage {
    /// Keys to delete on the replica (every changed key).
    pub keys: Vec<RowKey>,
    /// Current rows to insert after the deletes (keys whose row exists).
    pub rows: Vec<Row>,
    /// The last key of this page, to continue from; `None` when this was the
    /// last page.
    pub next_after: Option<RowKey>,
}

/// What the replica must apply in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeBatch {
    pub table: TableId,
    pub keys: Vec<RowKey>,
    pub rows: Vec<Row>,
    /// When set, the replica's own version record is moved to it in the same
    /// transaction (the last page of a cycle), and a recorded backlog is
    /// cleared.
    pub version: Option<SyncVersion>,
    /// A page that is not the last of its backlog records where the backlog
    /// stands, in the same transaction (see [`Backlog`]).
    pub backlog: Option<Backlog>,
}

/// An incremental run part-way through its change set, as recorded on the
/// replica with each committed page that is not the last: a restart
/// continues after `cursor` toward `target` instead of starting over.
///
/// Why that is correct: every page read its rows after `target` was read
/// (the change set is copied after `CHANGE_TRACKING_CURRENT_VERSION()`), so
/// each key up to `cursor` changed in (`since`, `target`] already shows a
/// state at least as new as `target`. The rest of the backlog is the keys
/// after `cursor` changed since `since` (a superset of those changed up to
/// `target`); once they are applied, every change up to `target` is on the
/// replica, and `target` is stored. Keys up to `cursor` changed after
/// `target` come again in the next cycle's change set, which starts there.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Backlog {
    /// The stored version the run started from; a different stored version
    /// (set by hand, or moved on) makes the backlog void.
    pub since: SyncVersion,
    /// The version stored when the backlog's last page commits.
    pub target: SyncVersion,
    /// The key columns the cursor is made of (a changed primary key voids it).
    pub key_columns: Vec<String>,
    /// The last key committed.
    pub cursor: RowKey,
}

/// Where the primary came from: a restored or failed-over database gets a
/// new identity and must not be synced from old versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryIdentity {
    pub broker_guid: String,
    pub create_date: String,
}

impl PrimaryIdentity {
    pub fn encode(&self) -> String {
        format!("{}|{}", self.broker_guid, self.create_date)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (g, d) = s.split_once('|')?;
        Some(Self {
            broker_guid: g.to_string(),
            create_date: d.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_columns_fall_back_to_first_non_lob_column_without_pk() {
        let schema = TableSchema {
            id: TableId::new("dbo", "T"),
            columns: vec![
                ColumnDef::new("notes", SqlType::Text, true),
                ColumnDef::new("code", SqlType::Int, false),
            ],
            primary_key: vec![],
        };
        assert_eq!(schema.key_columns(), Some(vec!["code".to_string()]));
    }

    #[test]
    fn key_column_defs_follow_key_order_with_their_types() {
        let key = |name: &str| KeyColumn {
            name: name.into(),
            descending: false,
        };
        let schema = TableSchema {
            id: TableId::new("dbo", "T"),
            columns: vec![
                ColumnDef::new("a", SqlType::Int, false),
                ColumnDef::new("b", SqlType::BigInt, false),
            ],
            primary_key: vec![key("b"), key("a")],
        };
        let defs = schema.key_column_defs().expect("a key");
        let got: Vec<_> = defs.iter().map(|c| (c.name.as_str(), &c.ty)).collect();
        assert_eq!(got, [("b", &SqlType::BigInt), ("a", &SqlType::Int)]);
        let mut broken = schema.clone();
        broken.primary_key.push(key("gone"));
        assert_eq!(broken.key_column_defs(), None);
    }
}
