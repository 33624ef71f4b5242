//! ADO.NET connection strings, read by the rules SqlClient documents:
//! `key=value` pairs separated by `;`, keys case-insensitive, values
//! trimmed and optionally quoted with `"…"` or `'…'` (the quote doubled
//! inside) or `{…}` (ODBC style, `}}` inside), so a password may hold `;`,
//! `=` or quotes. Errors say where the string is malformed, never what it
//! holds.

use std::collections::BTreeMap;

/// Why a connection string could not be read (no part of the string).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdoError {
    #[error("a value opened with {0} at position {1} is never closed")]
    Unterminated(char, usize),
    #[error("something follows a quoted value at position {0} before the next ';'")]
    AfterQuote(usize),
    #[error("a part without '=' at position {0}")]
    NoEquals(usize),
    #[error("an empty key at position {0}")]
    EmptyKey(usize),
}

/// The pairs of `s`, keys lower-cased with inner spaces kept (`user id`);
/// a key given twice keeps its last value, as SqlClient does.
pub fn parse(s: &str) -> Result<BTreeMap<String, String>, AdoError> {
    let chars: Vec<char> = s.chars().collect();
    let mut pairs = BTreeMap::new();
    let mut i = 0;
    while i < chars.len() {
        // Key: up to '='.
        let start = i;
        while i < chars.len() && chars[i] != '=' && chars[i] != ';' {
            i += 1;
        }
        let key: String = chars[start..i]
            .iter()
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if i >= chars.len() || chars[i] == ';' {
            if !key.is_empty() {
                return Err(AdoError::NoEquals(start));
            }
            i += 1; // an empty part (";;" or a trailing ';')
            continue;
        }
        if key.is_empty() {
            return Err(AdoError::EmptyKey(start));
        }
        i += 1; // '='
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let (value, next) = value_at(&chars, i)?;
        pairs.insert(key, value);
        i = next + 1; // past the ';'
    }
    Ok(pairs)
}

/// The value starting at `i` and the index of the `;` (or end) after it.
fn value_at(chars: &[char], i: usize) -> Result<(String, usize), AdoError> {
    let close = match chars.get(i) {
        Some('"') => Some('"'),
        Some('\'') => Some('\''),
        Some('{') => Some('}'),
        _ => None,
    };
    let Some(close) = close else {
        let mut end = i;
        while end < chars.len() && chars[end] != ';' {
            end += 1;
        }
        return Ok((
            chars[i..end].iter().collect::<String>().trim().to_string(),
            end,
        ));
    };
    let mut value = String::new();
    let mut j = i + 1;
    loop {
        match chars.get(j) {
            None => return Err(AdoError::Unterminated(chars[i], i)),
            Some(&c) if c == close => {
                if chars.get(j + 1) == Some(&close) {
                    value.push(c);
                    j += 2;
                } else {
                    j += 1;
                    break;
                }
            }
            Some(&c) => {
                value.push(c);
                j += 1;
            }
        }
    }
    while j < chars.len() && chars[j].is_whitespace() {
        j += 1;
    }
    match chars.get(j) {
        None | Some(';') => Ok((value, j)),
        Some(_) => Err(AdoError::AfterQuote(j)),
    }
}

/// The first of `keys` present (SqlClient's synonyms).
pub fn get<'a>(pairs: &'a BTreeMap<String, String>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| pairs.get(*k)).map(String::as_str)
}

/// Where to connect: `server=[tcp:]host[\instance][,port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub host: String,
    pub instance: Option<String>,
    pub port: Option<u16>,
}

/// Reads a `server` value; `None` if it is not of that form.
pub fn server(value: &str) -> Option<Server> {
    let value = value.trim();
    let value = value
        .strip_prefix("tcp:")
        .or_else(|| value.strip_prefix("TCP:"))
        .unwrap_or(value);
    let (name, port) = match value.rsplit_once(',') {
        Some((name, port)) => (name, Some(port.trim().parse::<u16>().ok()?)),
        None => (value, None),
    };
    let (host, instance) = match name.split_once('\\') {
        Some((host, instance)) => (host, Some(instance.trim().to_string())),
        None => (name, None),
    };
    let host = host.trim();
    if host.is_empty() || instance.as_deref() == Some("") {
        return None;
    }
    let host = match host {
        "." | "(local)" => "localhost",
        h => h,
    };
    Some(Server {
        host: host.to_string(),
        instance,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_keep_separators_and_doubled_quotes() {
        let p = parse(
            "Server=tcp:h,1433; User ID = sa ;Password={x;database=S3cr}}et};Database=\"d\"\"b\";App='it''s'",
        )
        .expect("parses");
        assert_eq!(p["password"], "x;database=S3cr}et");
        assert_eq!(p["database"], "d\"b");
        assert_eq!(p["user id"], "sa");
        assert_eq!(p["app"], "it's");
        assert_eq!(p["server"], "tcp:h,1433");
    }

    #[test]
    fn malformed_strings_say_where_not_what() {
        assert_eq!(
            parse("password={abc;x=1"),
            Err(AdoError::Unterminated('{', 9))
        );
        assert_eq!(parse("password='ab'cd;"), Err(AdoError::AfterQuote(13)));
        assert_eq!(parse("server=h;hunter2"), Err(AdoError::NoEquals(9)));
        assert_eq!(parse("=x"), Err(AdoError::EmptyKey(0)));
        assert!(parse("server=h;;database=d;").is_ok());
    }

    #[test]
    fn server_values_with_instance_and_port() {
        let s = |v| server(v).expect(v);
        assert_eq!(s("tcp:db.example,1435").port, Some(1435));
        assert_eq!(s("db\\SQLEXPRESS").instance.as_deref(), Some("SQLEXPRESS"));
        assert_eq!(s("db\\SQLEXPRESS").port, None);
        assert_eq!(s("db\\SQLEXPRESS,1500").port, Some(1500));
        assert_eq!(s("(local)").host, "localhost");
        assert_eq!(server("h,notaport"), None);
        assert_eq!(server(""), None);
    }
}
