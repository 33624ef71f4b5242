//! Conversions between SQL Server's world and the model: catalog rows →
//! `SqlType`, tiberius `ColumnData` → `Value` (checked against the column's
//! type), and `Value` → `ColumnData` parameters (typed NULLs included).

use std::borrow::Cow;

use ctsync_actors::model::{ColumnDef, Len, Row, SqlType, Value};
use tiberius::numeric::Numeric;
use tiberius::time::{Date, DateTime, DateTime2, DateTimeOffset, SmallDateTime, Time};
use tiberius::xml::XmlData;
use tiberius::{ColumnData, Uuid};

use super::MssqlError;

/// Maps a `sys.columns` row to a type. `max_length` is in bytes (-1 = MAX).
pub fn sql_type(type_name: &str, max_length: i32, precision: u8, scale: u8) -> SqlType {
    let len = if max_length == -1 {
        Len::Max
    } else {
        Len::N(max_length.max(0) as u32)
    };
    match type_name.to_ascii_lowercase().as_str() {
        "bit" => SqlType::Bit,
        "tinyint" => SqlType::TinyInt,
        "smallint" => SqlType::SmallInt,
        "int" => SqlType::Int,
        "bigint" => SqlType::BigInt,
        "decimal" => SqlType::Decimal { precision, scale },
        "numeric" => SqlType::Numeric { precision, scale },
        "money" => SqlType::Money,
        "smallmoney" => SqlType::SmallMoney,
        "real" => SqlType::Real,
        "float" => SqlType::Float { precision },
        "char" => SqlType::Char(len),
        "varchar" => SqlType::VarChar(len),
        "nchar" => SqlType::NChar(len),
        // sysname is nvarchar(128) (not flagged as a user type in sys.types).
        "nvarchar" | "sysname" => SqlType::NVarChar(len),
        "text" => SqlType::Text,
        "ntext" => SqlType::NText,
        "binary" => SqlType::Binary(len),
        "varbinary" => SqlType::VarBinary(len),
        "image" => SqlType::Image,
        "uniqueidentifier" => SqlType::UniqueIdentifier,
        "date" => SqlType::Date,
        "time" => SqlType::Time { scale },
        "datetime" => SqlType::DateTime,
        "smalldatetime" => SqlType::SmallDateTime,
        "datetime2" => SqlType::DateTime2 { scale },
        "datetimeoffset" => SqlType::DateTimeOffset { scale },
        "timestamp" | "rowversion" => SqlType::RowVersion,
        "xml" => SqlType::Xml,
        other => SqlType::Unsupported(other.to_string()),
    }
}

fn mismatch(column: &str, ty: &SqlType, got: &ColumnData<'_>) -> MssqlError {
    MssqlError::Conversion(format!(
        "column [{column}] of type {ty:?} returned an unexpected value {}",
        variant_name(got)
    ))
}

fn variant_name(d: &ColumnData<'_>) -> &'static str {
    match d {
        ColumnData::U8(_) => "U8",
        ColumnData::I16(_) => "I16",
        ColumnData::I32(_) => "I32",
        ColumnData::I64(_) => "I64",
        ColumnData::F32(_) => "F32",
        ColumnData::F64(_) => "F64",
        ColumnData::Bit(_) => "Bit",
        ColumnData::String(_) => "String",
        ColumnData::Guid(_) => "Guid",
        ColumnData::Binary(_) => "Binary",
        ColumnData::Numeric(_) => "Numeric",
        ColumnData::Xml(_) => "Xml",
        ColumnData::DateTime(_) => "DateTime",
        ColumnData::SmallDateTime(_) => "SmallDateTime",
        ColumnData::Time(_) => "Time",
        ColumnData::Date(_) => "Date",
        ColumnData::DateTime2(_) => "DateTime2",
        ColumnData::DateTimeOffset(_) => "DateTimeOffset",
    }
}

/// money/smallmoney arrive as `f64` from tiberius; they are kept as exact
/// 4-decimal values from here on (`round(x * 10^4)`).
fn money(v: f64) -> Value {
    Value::Decimal {
        value: (v * 10_000.0).round() as i128,
        scale: 4,
    }
}

/// Converts one returned cell of a column of type `ty`.
pub fn value_from_sql(
    data: ColumnData<'static>,
    ty: &SqlType,
    column: &str,
) -> Result<Value, MssqlError> {
    use ColumnData as C;
    let value = match (&data, ty) {
        (
            C::U8(None) | C::I16(None) | C::I32(None) | C::I64(None) | C::F32(None) | C::F64(None),
            _,
        )
        | (
            C::Bit(None) | C::String(None) | C::Guid(None) | C::Binary(None) | C::Numeric(None),
            _,
        )
        | (C::Xml(None) | C::DateTime(None) | C::SmallDateTime(None) | C::Time(None), _)
        | (C::Date(None) | C::DateTime2(None) | C::DateTimeOffset(None), _) => Value::Null,
        (C::Bit(Some(v)), SqlType::Bit) => Value::Bool(*v),
        (C::U8(Some(v)), SqlType::TinyInt) => Value::U8(*v),
        (C::I16(Some(v)), SqlType::SmallInt) => Value::I16(*v),
        (C::I32(Some(v)), SqlType::Int) => Value::I32(*v),
        (C::I64(Some(v)), SqlType::BigInt) => Value::I64(*v),
        (C::F32(Some(v)), SqlType::Real) => Value::F32(*v),
        (C::F64(Some(v)), SqlType::Float { .. }) => Value::F64(*v),
        (C::F64(Some(v)), SqlType::Money | SqlType::SmallMoney) => money(*v),
        (C::F32(Some(v)), SqlType::SmallMoney) => money(f64::from(*v)),
        (
            C::Numeric(Some(n)),
            SqlType::Decimal { .. }
            | SqlType::Numeric { .. }
            | SqlType::Money
            | SqlType::SmallMoney,
        ) => Value::Decimal {
            value: n.value(),
            scale: n.scale(),
        },
        (
            C::String(Some(s)),
            SqlType::Char(_)
            | SqlType::VarChar(_)
            | SqlType::NChar(_)
            | SqlType::NVarChar(_)
            | SqlType::Text
            | SqlType::NText,
        ) => Value::String(s.to_string()),
        (
            C::Binary(Some(b)),
            SqlType::Binary(_) | SqlType::VarBinary(_) | SqlType::Image | SqlType::RowVersion,
        ) => Value::Binary(b.to_vec()),
        (C::Guid(Some(g)), SqlType::UniqueIdentifier) => Value::Guid(*g.as_bytes()),
        (C::Xml(Some(x)), SqlType::Xml) => Value::Xml(x.as_ref().as_ref().to_string()),
        (C::Date(Some(d)), SqlType::Date) => Value::Date(d.days()),
        (C::Time(Some(t)), SqlType::Time { .. }) => Value::Time {
            increments: t.increments(),
            scale: t.scale(),
        },
        (C::DateTime2(Some(dt)), SqlType::DateTime2 { .. }) => Value::DateTime2 {
            days: dt.date().days(),
            increments: dt.time().increments(),
            scale: dt.time().scale(),
        },
        (C::DateTimeOffset(Some(o)), SqlType::DateTimeOffset { .. }) => Value::DateTimeOffset {
            days: o.datetime2().date().days(),
            increments: o.datetime2().time().increments(),
            scale: o.datetime2().time().scale(),
            offset_minutes: o.offset(),
        },
        (C::DateTime(Some(d)), SqlType::DateTime) => Value::DateTime {
            days: d.days(),
            ticks: d.seconds_fragments(),
        },
        (C::SmallDateTime(Some(d)), SqlType::SmallDateTime) => Value::SmallDateTime {
            days: d.days(),
            minutes: d.seconds_fragments(),
        },
        _ => return Err(mismatch(column, ty, &data)),
    };
    Ok(value)
}

/// A typed NULL for a parameter bound to a column of type `ty`.
fn null_for(ty: &SqlType) -> ColumnData<'static> {
    use ColumnData as C;
    match ty {
        SqlType::Bit => C::Bit(None),
        SqlType::TinyInt => C::U8(None),
        SqlType::SmallInt => C::I16(None),
        SqlType::Int => C::I32(None),
        SqlType::BigInt => C::I64(None),
        SqlType::Decimal { .. }
        | SqlType::Numeric { .. }
        | SqlType::Money
        | SqlType::SmallMoney => C::Numeric(None),
        SqlType::Real => C::F32(None),
        SqlType::Float { .. } => C::F64(None),
        SqlType::Binary(_) | SqlType::VarBinary(_) | SqlType::Image | SqlType::RowVersion => {
            C::Binary(None)
        }
        SqlType::UniqueIdentifier => C::Guid(None),
        SqlType::Date => C::Date(None),
        SqlType::Time { .. } => C::Time(None),
        SqlType::DateTime => C::DateTime(None),
        SqlType::SmallDateTime => C::SmallDateTime(None),
        SqlType::DateTime2 { .. } => C::DateTime2(None),
        SqlType::DateTimeOffset { .. } => C::DateTimeOffset(None),
        SqlType::Xml => C::Xml(None),
        _ => C::String(None),
    }
}

/// Converts a value into a parameter for a column of type `ty`.
/// Decodes `cells` as the values of `cols`, in order.
pub fn decode_row(
    cells: impl Iterator<Item = ColumnData<'static>>,
    cols: &[&ColumnDef],
) -> Result<Row, MssqlError> {
    cells
        .zip(cols)
        .map(|(cell, col)| value_from_sql(cell, &col.ty, &col.name))
        .collect()
}

/// `value · 10^-scale` as SQL Server reads a decimal literal.
pub fn decimal_text(value: i128, scale: u8) -> String {
    let digits = value.unsigned_abs().to_string();
    let scale = usize::from(scale);
    let sign = if value < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// A value for a column whose parameters are sent as text (see
/// `sql::typed_param`): the text the statement casts to the column's type.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::Decimal { value, scale } => Some(decimal_text(*value, *scale)),
        Value::Xml(x) | Value::String(x) => Some(x.clone()),
        _ => None,
    }
}

pub fn value_to_sql(value: &Value, ty: &SqlType) -> ColumnData<'static> {
    use ColumnData as C;
    if super::sql::sent_as_text(ty) {
        if let Value::Null = value {
            return C::String(None);
        }
        if let Some(text) = as_text(value) {
            return C::String(Some(Cow::Owned(text)));
        }
    }
    match value {
        Value::Null => null_for(ty),
        Value::Bool(v) => C::Bit(Some(*v)),
        Value::U8(v) => C::U8(Some(*v)),
        Value::I16(v) => C::I16(Some(*v)),
        Value::I32(v) => C::I32(Some(*v)),
        Value::I64(v) => C::I64(Some(*v)),
        Value::F32(v) => C::F32(Some(*v)),
        Value::F64(v) => C::F64(Some(*v)),
        Value::Decimal { value, scale } => {
            C::Numeric(Some(Numeric::new_with_scale(*value, *scale)))
        }
        Value::String(s) => C::String(Some(Cow::Owned(s.clone()))),
        Value::Binary(b) => C::Binary(Some(Cow::Owned(b.clone()))),
        Value::Guid(g) => C::Guid(Some(Uuid::from_bytes(*g))),
        Value::Xml(x) => C::Xml(Some(Cow::Owned(XmlData::new(x)))),
        Value::Date(d) => C::Date(Some(Date::new(*d))),
        Value::Time { increments, scale } => C::Time(Some(Time::new(*increments, *scale))),
        Value::DateTime2 {
            days,
            increments,
            scale,
        } => C::DateTime2(Some(DateTime2::new(
            Date::new(*days),
            Time::new(*increments, *scale),
        ))),
        Value::DateTimeOffset {
            days,
            increments,
            scale,
            offset_minutes,
        } => C::DateTimeOffset(Some(DateTimeOffset::new(
            DateTime2::new(Date::new(*days), Time::new(*increments, *scale)),
            *offset_minutes,
        ))),
        Value::DateTime { days, ticks } => C::DateTime(Some(DateTime::new(*days, *ticks))),
        Value::SmallDateTime { days, minutes } => {
            C::SmallDateTime(Some(SmallDateTime::new(*days, *minutes)))
        }
    }
}

/// Key values as parameters, each declared by its key column's type.
pub fn key_params(
    key: &ctsync_actors::model::RowKey,
    key_defs: &[&ColumnDef],
) -> Vec<ColumnData<'static>> {
    key.0
        .iter()
        .zip(key_defs)
        .map(|(v, col)| value_to_sql(v, &col.ty))
        .collect()
}
