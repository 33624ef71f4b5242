//! The JSON documents that carry a page's rows or keys in one parameter
//! (`sql::insert_json`, `sql::delete_json`): each value as the exact text
//! the statement converts back to the column's type, so nothing is lost
//! and the parameter's declaration never changes with the values.

use std::borrow::Cow;
use std::fmt::Write;

use ctsync_actors::model::{ColumnDef, Value};
use tiberius::{ColumnData, Uuid};

use crate::mssql::convert::decimal_text;
use crate::mssql::sql::json_rows::MEMBER_PREFIX;

/// tiberius declares a string parameter `nvarchar(4000)` up to 4,000 bytes
/// and `nvarchar(max)` above: documents are padded past that with
/// whitespace (insignificant in JSON) so every page has one declaration.
pub const STABLE_TEXT_BYTES: usize = 4_001;

/// `text` as a parameter whose declaration does not depend on its length.
pub fn stable_json(mut text: String) -> ColumnData<'static> {
    if text.len() < STABLE_TEXT_BYTES {
        let pad = STABLE_TEXT_BYTES - text.len();
        text.extend(std::iter::repeat_n(' ', pad));
    }
    ColumnData::String(Some(Cow::Owned(text)))
}

/// Days since 0001-01-01 → (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 306; // 0001-01-01 is day 306 of the era that starts 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn date_text(out: &mut String, days: i64) {
    let (y, m, d) = civil(days);
    let _ = write!(out, "{y:04}-{m:02}-{d:02}");
}

/// `hh:mm:ss[.f…]` for `increments` of 10^-scale s since midnight.
fn time_text(out: &mut String, increments: u64, scale: u8) {
    let unit = 10u64.pow(u32::from(scale.min(7)));
    let secs = increments / unit;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    );
    if scale > 0 {
        let _ = write!(
            out,
            ".{:0width$}",
            increments % unit,
            width = usize::from(scale)
        );
    }
}

/// Days from 0001-01-01 to 1900-01-01 (the epoch of datetime).
const DAYS_TO_1900: i64 = 693_595;

/// The text of a non-null value as the statement reads it back (see
/// `sql::json_rows`); `None` for NULL.
pub fn value_text(value: &Value) -> Option<String> {
    let mut out = String::new();
    match value {
        Value::Null => return None,
        Value::Bool(v) => out.push(if *v { '1' } else { '0' }),
        Value::U8(v) => out = v.to_string(),
        Value::I16(v) => out = v.to_string(),
        Value::I32(v) => out = v.to_string(),
        Value::I64(v) => out = v.to_string(),
        // Rust prints the shortest text that reads back as the same float.
        Value::F32(v) => out = format!("{v:e}"),
        Value::F64(v) => out = format!("{v:e}"),
        Value::Decimal { value, scale } => out = decimal_text(*value, *scale),
        Value::String(s) | Value::Xml(s) => out = s.clone(),
        Value::Binary(b) => {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.reserve(2 + 2 * b.len());
            out.push_str("0x");
            for byte in b {
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0xf)]));
            }
        }
        Value::Guid(g) => out = Uuid::from_bytes(*g).to_string(),
        Value::Date(d) => date_text(&mut out, i64::from(*d)),
        Value::Time { increments, scale } => time_text(&mut out, *increments, *scale),
        Value::DateTime2 {
            days,
            increments,
            scale,
        } => {
            date_text(&mut out, i64::from(*days));
            out.push('T');
            time_text(&mut out, *increments, *scale);
        }
        Value::DateTimeOffset {
            days,
            increments,
            scale,
            offset_minutes,
        } => {
            // SQL Server keeps the UTC instant and the offset; the text is
            // local time with its offset, which converts back to both.
            let unit = 10i128.pow(u32::from((*scale).min(7)));
            let day = 86_400 * unit;
            let local = i128::from(*days) * day
                + i128::from(*increments)
                + i128::from(*offset_minutes) * 60 * unit;
            date_text(&mut out, local.div_euclid(day) as i64);
            out.push('T');
            time_text(&mut out, local.rem_euclid(day) as u64, *scale);
            let sign = if *offset_minutes < 0 { '-' } else { '+' };
            let off = offset_minutes.unsigned_abs();
            let _ = write!(out, "{sign}{:02}:{:02}", off / 60, off % 60);
        }
        Value::DateTime { days, ticks } => {
            date_text(&mut out, i64::from(*days) + DAYS_TO_1900);
            out.push('T');
            // 1/300 s ticks → the millisecond text datetime reads back to
            // the same tick (…0, …3, …7).
            let ms = (u64::from(*ticks) * 10 + 1) / 3;
            time_text(&mut out, ms, 3);
        }
        Value::SmallDateTime { days, minutes } => {
            date_text(&mut out, i64::from(*days) + DAYS_TO_1900);
            out.push('T');
            time_text(&mut out, u64::from(*minutes) * 60, 0);
        }
    }
    Some(out)
}

/// Appends `{"c0":…,"c1":…}` for `values` of `columns`.
fn push_object<'v>(
    out: &mut String,
    values: impl Iterator<Item = &'v Value>,
    columns: &[&ColumnDef],
) {
    out.push('{');
    for (i, v) in values.take(columns.len()).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(MEMBER_PREFIX);
        let _ = write!(out, "{i}\":");
        match v {
            Value::String(text) | Value::Xml(text) => push_json_string(out, text),
            v => match value_text(v) {
                None => out.push_str("null"),
                Some(text) => push_json_string(out, &text),
            },
        }
    }
    out.push('}');
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        if b == b'"' || b == b'\\' || b < 0x20 {
            out.push_str(&s[plain..i]);
            match b {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                _ => {
                    let _ = write!(out, "\\u{b:04x}");
                }
            }
            plain = i + 1;
        }
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

/// The JSON array of a page's rows (values in `columns` order).
pub fn rows_document<'r>(
    rows: impl Iterator<Item = &'r [Value]>,
    columns: &[&ColumnDef],
) -> String {
    let mut out = String::from("[");
    for (i, row) in rows.enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_object(&mut out, row.iter(), columns);
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctsync_actors::model::{ColumnDef, SqlType};

    fn text(v: Value) -> String {
        value_text(&v).expect("not null")
    }

    #[test]
    fn dates_are_iso_8601_on_the_proleptic_gregorian_calendar() {
        assert_eq!(text(Value::Date(0)), "0001-01-01");
        assert_eq!(text(Value::Date(738_944)), "2024-02-29");
        assert_eq!(text(Value::Date(3_652_058)), "9999-12-31");
        assert_eq!(
            text(Value::DateTime2 {
                days: 738_885,
                increments: 452_961_234_567,
                scale: 7
            }),
            "2024-01-01T12:34:56.1234567"
        );
        assert_eq!(
            text(Value::Time {
                increments: 3_723,
                scale: 0
            }),
            "01:02:03"
        );
        assert_eq!(
            text(Value::Time {
                increments: 3_723_050,
                scale: 3
            }),
            "01:02:03.050"
        );
    }

    #[test]
    fn legacy_datetimes_read_back_to_the_same_tick() {
        let dt = |days, ticks| text(Value::DateTime { days, ticks });
        assert_eq!(dt(0, 0), "1900-01-01T00:00:00.000");
        assert_eq!(dt(0, 1), "1900-01-01T00:00:00.003");
        assert_eq!(dt(0, 2), "1900-01-01T00:00:00.007");
        assert_eq!(dt(0, 3), "1900-01-01T00:00:00.010");
        assert_eq!(dt(0, 300 * 86_399 + 299), "1900-01-01T23:59:59.997");
        assert_eq!(dt(-53_690, 0), "1753-01-01T00:00:00.000");
        assert_eq!(
            text(Value::SmallDateTime {
                days: 45_290,
                minutes: 61
            }),
            "2024-01-01T01:01:00"
        );
    }

    #[test]
    fn a_datetimeoffset_is_its_local_time_and_offset() {
        // SQL Server keeps 2024-01-01T23:30 UTC; at +02:00 that is the 2nd.
        let dto = |increments, offset_minutes| {
            text(Value::DateTimeOffset {
                days: 738_885,
                increments,
                scale: 3,
                offset_minutes,
            })
        };
        assert_eq!(dto(84_600_000, 120), "2024-01-02T01:30:00.000+02:00");
        assert_eq!(dto(3_600_000, -300), "2023-12-31T20:00:00.000-05:00");
        assert_eq!(dto(0, 0), "2024-01-01T00:00:00.000+00:00");
        assert_eq!(dto(0, 345), "2024-01-01T05:45:00.000+05:45");
    }

    #[test]
    fn numbers_binaries_and_guids_are_exact_text() {
        assert_eq!(text(Value::Bool(true)), "1");
        assert_eq!(text(Value::I64(i64::MIN)), "-9223372036854775808");
        assert_eq!(
            text(Value::Decimal {
                value: -5,
                scale: 4
            }),
            "-0.0005"
        );
        for f in [0.1f64, 1e-300, f64::MAX, -2.5, 1.0 / 3.0] {
            assert_eq!(text(Value::F64(f)).parse::<f64>().expect("float"), f);
        }
        for f in [0.1f32, f32::MIN_POSITIVE, 3.4e38] {
            assert_eq!(text(Value::F32(f)).parse::<f32>().expect("float"), f);
        }
        assert_eq!(text(Value::Binary(vec![0, 0xab, 0xff])), "0x00ABFF");
        assert_eq!(text(Value::Binary(vec![])), "0x");
        assert_eq!(
            text(Value::Guid([
                0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0, 1, 2, 3, 4, 5, 6, 7
            ])),
            "12345678-9abc-def0-0001-020304050607"
        );
        assert_eq!(value_text(&Value::Null), None);
    }

    #[test]
    fn documents_escape_text_and_keep_nulls() {
        let cols = [
            ColumnDef::new("a", SqlType::NVarChar(ctsync_actors::model::Len::Max), true),
            ColumnDef::new("b", SqlType::Int, true),
        ];
        let cols: Vec<&ColumnDef> = cols.iter().collect();
        let rows = [
            vec![Value::String("q\"b\\\n\u{1}ü".into()), Value::Null],
            vec![Value::Null, Value::I32(7)],
        ];
        let doc = rows_document(rows.iter().map(Vec::as_slice), &cols);
        assert_eq!(
            doc,
            "[{\"c0\":\"q\\\"b\\\\\\u000a\\u0001ü\",\"c1\":null},{\"c0\":null,\"c1\":\"7\"}]"
        );
        let parsed: serde_json::Value = serde_json::from_str(&doc).expect("valid JSON");
        assert_eq!(parsed[0]["c0"], "q\"b\\\n\u{1}ü");
    }

    #[test]
    fn documents_are_declared_nvarchar_max_whatever_their_size() {
        for doc in ["[]".to_string(), "[{}]".repeat(3_000)] {
            match stable_json(doc.clone()) {
                ColumnData::String(Some(s)) => {
                    assert!(s.len() > 4_000);
                    assert_eq!(s.trim_end(), doc);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
