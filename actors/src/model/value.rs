//! Row values: a SQL value in a form that round-trips exactly between the
//! primary and the replica, and row keys with a total order (for keyset
//! pagination and the in-memory doubles).

use std::cmp::Ordering;

/// A SQL value, kept in a form that round-trips exactly between the primary
/// and the replica (temporal values keep SQL Server's own encoding). Its
/// JSON form (serde) stores a full load's cursor on the replica.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Value {
    Null,
    Bool(bool),
    U8(u8),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    /// decimal/numeric/money: `value / 10^scale`.
    Decimal {
        value: i128,
        scale: u8,
    },
    String(String),
    Binary(Vec<u8>),
    Guid([u8; 16]),
    Xml(String),
    /// Days since 0001-01-01.
    Date(u32),
    /// Time of day in units of 10^-scale seconds.
    Time {
        increments: u64,
        scale: u8,
    },
    DateTime2 {
        days: u32,
        increments: u64,
        scale: u8,
    },
    DateTimeOffset {
        days: u32,
        increments: u64,
        scale: u8,
        offset_minutes: i16,
    },
    /// Legacy `datetime`: days since 1900-01-01 and 1/300 s ticks.
    DateTime {
        days: i32,
        ticks: u32,
    },
    /// Legacy `smalldatetime`: days since 1900-01-01 and minutes.
    SmallDateTime {
        days: u16,
        minutes: u16,
    },
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::U8(_) | Value::I16(_) | Value::I32(_) | Value::I64(_) => 2,
            Value::F32(_) | Value::F64(_) => 3,
            Value::Decimal { .. } => 4,
            Value::String(_) | Value::Xml(_) => 5,
            Value::Binary(_) => 6,
            Value::Guid(_) => 7,
            Value::Date(_) => 8,
            Value::Time { .. } => 9,
            Value::DateTime2 { .. } => 10,
            Value::DateTimeOffset { .. } => 11,
            Value::DateTime { .. } => 12,
            Value::SmallDateTime { .. } => 13,
        }
    }

    fn as_i128(&self) -> Option<i128> {
        match self {
            Value::U8(v) => Some(i128::from(*v)),
            Value::I16(v) => Some(i128::from(*v)),
            Value::I32(v) => Some(i128::from(*v)),
            Value::I64(v) => Some(i128::from(*v)),
            _ => None,
        }
    }

    /// A total order used for keys by the in-memory doubles and the keyset
    /// pagination cursor (NULL first, like SQL Server's ascending order).
    pub fn total_cmp(&self, other: &Value) -> Ordering {
        use Value::*;
        match (self, other) {
            (I32(a), I32(b)) => return a.cmp(b),
            (I64(a), I64(b)) => return a.cmp(b),
            _ => {}
        }
        if let (Some(a), Some(b)) = (self.as_i128(), other.as_i128()) {
            return a.cmp(&b);
        }
        match (self, other) {
            (Bool(a), Bool(b)) => a.cmp(b),
            (F32(a), F32(b)) => a.total_cmp(b),
            (F64(a), F64(b)) => a.total_cmp(b),
            (
                Decimal {
                    value: a,
                    scale: sa,
                },
                Decimal {
                    value: b,
                    scale: sb,
                },
            ) => (a * 10i128.pow(u32::from(*sb))).cmp(&(b * 10i128.pow(u32::from(*sa)))),
            (String(a), String(b)) | (Xml(a), Xml(b)) => a.cmp(b),
            (Binary(a), Binary(b)) => a.cmp(b),
            (Guid(a), Guid(b)) => a.cmp(b),
            (Date(a), Date(b)) => a.cmp(b),
            (Time { increments: a, .. }, Time { increments: b, .. }) => a.cmp(b),
            (
                DateTime2 {
                    days: da,
                    increments: ia,
                    ..
                },
                DateTime2 {
                    days: db,
                    increments: ib,
                    ..
                },
            ) => (da, ia).cmp(&(db, ib)),
            (
                DateTimeOffset {
                    days: da,
                    increments: ia,
                    offset_minutes: oa,
                    ..
                },
                DateTimeOffset {
                    days: db,
                    increments: ib,
                    offset_minutes: ob,
                    ..
                },
            ) => (da, ia, oa).cmp(&(db, ib, ob)),
            (
                DateTime {
                    days: da,
                    ticks: ta,
                },
                DateTime {
                    days: db,
                    ticks: tb,
                },
            ) => (da, ta).cmp(&(db, tb)),
            (
                SmallDateTime {
                    days: da,
                    minutes: ma,
                },
                SmallDateTime {
                    days: db,
                    minutes: mb,
                },
            ) => (da, ma).cmp(&(db, mb)),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// The values of a row's key columns, in key order. Ordered with
/// [`Value::total_cmp`] so it can key a `BTreeMap`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RowKey(pub Vec<Value>);

impl Eq for RowKey {}

impl PartialOrd for RowKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RowKey {
    fn cmp(&self, other: &Self) -> Ordering {
        for (a, b) in self.0.iter().zip(other.0.iter()) {
            match a.total_cmp(b) {
                Ordering::Equal => continue,
                o => return o,
            }
        }
        self.0.len().cmp(&other.0.len())
    }
}

/// One row: the values of [`TableSchema::written_columns`], in that order.
pub type Row = Vec<Value>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_json_exactly() {
        let key = RowKey(vec![
            Value::I32(-7),
            Value::Decimal {
                value: -99_999_999_999_999_999_999_999_999_999_999_999_999,
                scale: 38,
            },
            Value::String("a\u{0}é]".into()),
            Value::Guid([9; 16]),
            Value::DateTimeOffset {
                days: 1,
                increments: u64::MAX,
                scale: 7,
                offset_minutes: -840,
            },
            Value::Binary(vec![0, 255]),
            Value::Null,
        ]);
        let json = serde_json::to_string(&key).expect("json");
        let back: RowKey = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, key);
    }

    #[test]
    fn row_keys_order_numerically_across_integer_widths() {
        let a = RowKey(vec![Value::I32(2)]);
        let b = RowKey(vec![Value::I64(10)]);
        assert!(a < b);
        let c = RowKey(vec![Value::Decimal {
            value: 150,
            scale: 2,
        }]);
        let d = RowKey(vec![Value::Decimal { value: 2, scale: 0 }]);
        assert!(c < d);
    }
}
