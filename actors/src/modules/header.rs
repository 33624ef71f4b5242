//! The header of a module's definition (`CREATE [OR ALTER] VIEW name …`):
//! finding it past comments, and rewriting it so the statement run on the
//! replica creates exactly `[schema].[name]` — definitions may name the
//! object without a schema, or by an old name after `sp_rename`.

/// A position in the definition; only ever moved over whole characters.
struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }

    /// Skips blanks and comments (`-- …` and nestable `/* … */`).
    fn skip_trivia(&mut self) -> Option<()> {
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start();
            self.i += rest.len() - trimmed.len();
            if trimmed.starts_with("--") {
                self.i += trimmed.find('\n').map_or(trimmed.len(), |n| n + 1);
            } else if trimmed.starts_with("/*") {
                let mut depth = 0usize;
                loop {
                    let r = self.rest();
                    if r.starts_with("/*") {
                        depth += 1;
                        self.i += 2;
                    } else if r.starts_with("*/") {
                        depth -= 1;
                        self.i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        self.i += r.chars().next()?.len_utf8();
                    }
                }
            } else {
                return Some(());
            }
        }
    }

    /// An ASCII keyword.
    fn word(&mut self) -> Option<&'a str> {
        let rest = self.rest();
        let end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        self.i += end;
        Some(&rest[..end])
    }

    /// One part of a name: `[a]]b]`, `"a""b"` or a regular identifier.
    fn name_part(&mut self) -> Option<()> {
        let rest = self.rest();
        let mut chars = rest.char_indices();
        let (_, first) = chars.next()?;
        let closing = match first {
            '[' => Some(']'),
            '"' => Some('"'),
            _ => None,
        };
        match closing {
            Some(close) => {
                let mut prev_close = false;
                let mut end = None;
                let mut it = rest.char_indices().skip(1).peekable();
                while let Some((idx, c)) = it.next() {
                    if c == close {
                        if it.peek().map(|(_, n)| *n) == Some(close) && !prev_close {
                            it.next(); // doubled delimiter inside the name
                            continue;
                        }
                        end = Some(idx + c.len_utf8());
                        break;
                    }
                    prev_close = false;
                }
                self.i += end?;
            }
            None => {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '@' | '#' | '$')))
                    .unwrap_or(rest.len());
                if end == 0 {
                    return None;
                }
                self.i += end;
            }
        }
        Some(())
    }
}

fn quote(ident: &str) -> String {
    format!("[{}]", ident.replace(']', "]]"))
}

/// The definition with its header rewritten to
/// `CREATE [OR ALTER] <kind> [schema].[name]`; `None` if no header is found.
pub fn qualified_statement(
    definition: &str,
    schema: &str,
    name: &str,
    or_alter: bool,
) -> Option<String> {
    let mut c = Cursor {
        s: definition,
        i: 0,
    };
    c.skip_trivia()?;
    let create_at = c.i;
    if !c.word()?.eq_ignore_ascii_case("CREATE") {
        return None;
    }
    c.skip_trivia()?;
    let mut kind_at = c.i;
    let mut kind = c.word()?;
    if kind.eq_ignore_ascii_case("OR") {
        c.skip_trivia()?;
        if !c.word()?.eq_ignore_ascii_case("ALTER") {
            return None;
        }
        c.skip_trivia()?;
        kind_at = c.i;
        kind = c.word()?;
    }
    if !["VIEW", "PROC", "PROCEDURE", "FUNCTION", "TRIGGER"]
        .iter()
        .any(|k| kind.eq_ignore_ascii_case(k))
    {
        return None;
    }
    let kind_text = &definition[kind_at..c.i];
    c.skip_trivia()?;
    c.name_part()?;
    let mut name_end = c.i;
    // Up to three more parts: schema.name, db.schema.name, server.db.schema.name.
    for _ in 0..3 {
        c.skip_trivia()?;
        if !c.rest().starts_with('.') {
            break;
        }
        c.i += 1;
        c.skip_trivia()?;
        c.name_part()?;
        name_end = c.i;
    }
    let create = if or_alter {
        "CREATE OR ALTER"
    } else {
        "CREATE"
    };
    Some(format!(
        "{}{create} {kind_text} {}.{}{}",
        &definition[..create_at],
        quote(schema),
        quote(name),
        &definition[name_end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_gets_the_schema_qualified_current_name() {
        assert_eq!(
            qualified_statement("CREATE VIEW v AS SELECT 1", "sales", "v", false).as_deref(),
            Some("CREATE VIEW [sales].[v] AS SELECT 1")
        );
        // Renamed with sp_rename: the stored text still has the old name.
        assert_eq!(
            qualified_statement(
                "/* c */ create procedure [dbo].[OldName] @x int AS SELECT @x",
                "dbo",
                "NewName",
                true
            )
            .as_deref(),
            Some("/* c */ CREATE OR ALTER procedure [dbo].[NewName] @x int AS SELECT @x")
        );
        assert_eq!(
            qualified_statement(
                "CrEaTe /*Y*/ FUNCTION \"we\"\"ird\" . [x]]y] () RETURNS int AS BEGIN RETURN 1 END",
                "s]1",
                "f",
                false
            )
            .as_deref(),
            Some("CREATE FUNCTION [s]]1].[f] () RETURNS int AS BEGIN RETURN 1 END")
        );
        assert_eq!(
            qualified_statement(
                "CREATE OR ALTER VIEW dbo.Übersicht AS SELECT 1",
                "dbo",
                "Übersicht",
                false
            )
            .as_deref(),
            Some("CREATE VIEW [dbo].[Übersicht] AS SELECT 1")
        );
    }

    #[test]
    fn no_header_means_none() {
        assert_eq!(
            qualified_statement("ALTER VIEW v AS SELECT 1", "dbo", "v", false),
            None
        );
        assert_eq!(
            qualified_statement("CREATE TABLE t (a int)", "dbo", "t", false),
            None
        );
        assert_eq!(
            qualified_statement("CREATE VIEW [unterminated AS SELECT 1", "dbo", "v", false),
            None
        );
        assert_eq!(qualified_statement("/* open", "dbo", "v", false), None);
    }
}
