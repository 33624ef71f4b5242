//! Table identity and its key name: the one string that names a table in
//! Redis keys, the replica's `[ctsync]` records, the API, the CLI, the page
//! and metric labels. The encoding is injective, so no two tables share keys.

use std::fmt;

/// A table on the primary, identified by schema and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct TableId {
    pub schema: String,
    pub name: String,
}

/// A part needs brackets when it could be misread: it holds the separator
/// (`.`) or a bracket.
fn needs_quoting(part: &str) -> bool {
    part.is_empty() || part.contains(['.', '[', ']'])
}

fn push_part(out: &mut String, part: &str) {
    if needs_quoting(part) {
        out.push('[');
        out.push_str(&part.replace(']', "]]"));
        out.push(']');
    } else {
        out.push_str(part);
    }
}

/// Reads one part from the start of `s`: a bracket-quoted part (`]]` is a
/// literal `]`) or a bare one up to the next `.`. Returns the part and the
/// rest of the input.
fn take_part(s: &str) -> Option<(String, &str)> {
    if let Some(quoted) = s.strip_prefix('[') {
        let mut part = String::new();
        let mut chars = quoted.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == ']' {
                if chars.peek().map(|&(_, n)| n) == Some(']') {
                    chars.next();
                    part.push(']');
                } else {
                    return Some((part, &quoted[i + 1..]));
                }
            } else {
                part.push(c);
            }
        }
        None // unterminated
    } else {
        let end = s.find('.').unwrap_or(s.len());
        let part = &s[..end];
        if part.is_empty() || part.contains(['[', ']']) {
            return None;
        }
        Some((part.to_string(), &s[end..]))
    }
}

impl TableId {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// The name used in Redis keys and everywhere a table is named: the bare
    /// name for tables in `dbo` (`User`), `schema.Table` otherwise
    /// (`sales.Order`). A part holding `.`, `[` or `]` is bracket-quoted
    /// (`]` doubled): dbo table `x.y` is `[x.y]`, table `y` of schema `x` is
    /// `x.y`. Only the exact schema name `dbo` is left out, so schemas that
    /// differ by case (case-sensitive collations) keep their own keys.
    pub fn key_name(&self) -> String {
        let mut out = String::with_capacity(self.schema.len() + self.name.len() + 4);
        if self.schema != "dbo" {
            push_part(&mut out, &self.schema);
            out.push('.');
        }
        push_part(&mut out, &self.name);
        out
    }

    /// Inverse of [`TableId::key_name`]: `User` → `dbo.User`, `sales.Order`
    /// → `sales.Order`, `[x.y]` → `dbo.x.y`. `None` for a string no table
    /// has as its key name (unterminated bracket, three parts, …).
    pub fn from_key_name(key: &str) -> Option<Self> {
        let (first, rest) = take_part(key)?;
        if rest.is_empty() {
            return Some(Self::new("dbo", first));
        }
        let (second, rest) = take_part(rest.strip_prefix('.')?)?;
        if !rest.is_empty() || first == "dbo" {
            // `dbo.User` is spelled `User`; accepting both would give one
            // table two names.
            return None;
        }
        Some(Self::new(first, second))
    }
}

impl TableId {
    /// The shadow table a full load of this table writes into:
    /// `[ctsync].[shadow_<hash of the key name>]` (a fixed-length name, since
    /// schema + name can exceed 128 characters; FNV-1a, 64 bits).
    pub fn shadow(&self) -> TableId {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.key_name().bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        TableId::new("ctsync", format!("shadow_{hash:016x}"))
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_name_is_bare_for_dbo_and_qualified_otherwise() {
        assert_eq!(TableId::new("dbo", "User").key_name(), "User");
        assert_eq!(TableId::new("sales", "Order").key_name(), "sales.Order");
        assert_eq!(
            TableId::from_key_name("User"),
            Some(TableId::new("dbo", "User"))
        );
        assert_eq!(
            TableId::from_key_name("sales.Order"),
            Some(TableId::new("sales", "Order"))
        );
    }

    #[test]
    fn tables_with_dots_and_brackets_get_their_own_key_names() {
        let pairs = [
            (TableId::new("dbo", "x.y"), TableId::new("x", "y")),
            (TableId::new("a.b", "c"), TableId::new("a", "b.c")),
            (TableId::new("Sales", "T"), TableId::new("sales", "T")),
            (TableId::new("DBO", "T"), TableId::new("dbo", "T")),
            (TableId::new("dbo", "[x]"), TableId::new("dbo", "x")),
            (TableId::new("a]", "b"), TableId::new("a", "]b")),
        ];
        for (a, b) in pairs {
            assert_ne!(a.key_name(), b.key_name(), "{a:?} vs {b:?}");
        }
        assert_eq!(TableId::new("dbo", "x.y").key_name(), "[x.y]");
        assert_eq!(TableId::new("a.b", "c").key_name(), "[a.b].c");
        assert_eq!(TableId::new("a", "b.c").key_name(), "a.[b.c]");
        assert_eq!(TableId::new("s", "a]b").key_name(), "s.[a]]b]");
    }

    #[test]
    fn every_table_can_be_addressed_by_its_key_name() {
        let names = [
            "User", "x.y", "a.b", "[x]", "a]b", "]", "[", "..", "é.ü", "sp ace", "dbo", "a]].b",
        ];
        for schema in ["dbo", "sales", "a.b", "x]y", "DBO", "[s]"] {
            for name in names {
                let id = TableId::new(schema, name);
                assert_eq!(
                    TableId::from_key_name(&id.key_name()),
                    Some(id.clone()),
                    "{id:?} as {}",
                    id.key_name()
                );
            }
        }
    }

    #[test]
    fn shadow_tables_are_fixed_length_and_distinct() {
        let a = TableId::new("dbo", "x.y").shadow();
        let b = TableId::new("x", "y").shadow();
        assert_ne!(a, b);
        assert_eq!(a.schema, "ctsync");
        assert_eq!(a.name.len(), "shadow_".len() + 16);
        assert_eq!(a, TableId::new("dbo", "x.y").shadow(), "stable");
    }

    #[test]
    fn strings_that_name_no_table_are_refused() {
        for bad in ["", "[x", "a.b.c", "dbo.User", "a.", ".a", "x[y", "[a]b"] {
            assert_eq!(TableId::from_key_name(bad), None, "{bad:?}");
        }
    }
}
