//! Sizes and declarations the session rules compare: the bytes an index
//! key column can take, a `CREATE TABLE`'s columns and primary key, and an
//! `INSERT BULK` column's declared type against its target's.

use std::collections::HashMap;

use super::lex::Tok;

/// Bytes a key column of this declared type can take; `None` for max and
/// LOB types (which cannot be keys).
pub(super) fn key_bytes(ty: &str, args: &[u32], is_max: bool) -> Option<u32> {
    let n = args.first().copied();
    Some(match ty.to_lowercase().as_str() {
        "bit" | "tinyint" => 1,
        "smallint" => 2,
        "int" | "real" | "smalldatetime" | "smallmoney" | "date" => 4,
        "bigint" | "money" | "datetime" => 8,
        "float" => {
            if n.unwrap_or(53) <= 24 {
                4
            } else {
                8
            }
        }
        "uniqueidentifier" => 16,
        "decimal" | "numeric" => match n.unwrap_or(18) {
            0..=9 => 5,
            10..=19 => 9,
            20..=28 => 13,
            _ => 17,
        },
        "time" | "datetime2" | "datetimeoffset" => {
            let scale = n.unwrap_or(7);
            let base = match scale {
                0..=2 => 3,
                3..=4 => 4,
                _ => 5,
            };
            match ty.to_lowercase().as_str() {
                "time" => base,
                "datetime2" => base + 3,
                _ => base + 5,
            }
        }
        "char" | "varchar" | "binary" | "varbinary" if !is_max => n.unwrap_or(1),
        "nchar" | "nvarchar" if !is_max => 2 * n.unwrap_or(1),
        _ => return None,
    })
}

/// `type ( args )` starting at `i`: the type word, its numeric arguments,
/// whether it is `max`, and the index after it.
pub(super) fn type_at(toks: &[Tok], i: usize) -> Option<(String, Vec<u32>, bool)> {
    let ty = toks.get(i)?.name()?.to_string();
    let mut args = Vec::new();
    let mut is_max = false;
    if toks.get(i + 1) == Some(&Tok::Sym('(')) {
        let mut j = i + 2;
        let mut k = 0;
        while let Some(t) = toks.get(j) {
            match t {
                Tok::Sym(')') => break,
                Tok::Num(n) => args.push(*n),
                t if t.is("max") => is_max = true,
                _ => {}
            }
            j += 1;
            k += 1;
            if k > 8 {
                break;
            }
        }
    }
    Some((ty, args, is_max))
}

/// Column name → key bytes (`None`: max, LOB or computed).
pub(super) type ColumnSizes = HashMap<String, Option<u32>>;

/// The columns of the `CREATE TABLE` whose column list opens at `open`
/// (`(`), and its primary key's columns and whether it is clustered.
pub(super) fn table_definition(
    toks: &[Tok],
    open: usize,
) -> (ColumnSizes, Option<(Vec<String>, bool)>) {
    let mut columns = HashMap::new();
    let mut pk = None;
    let mut depth = 0;
    let mut item_start = open + 1;
    for i in open..toks.len() {
        match &toks[i] {
            Tok::Sym('(') => depth += 1,
            Tok::Sym(')') | Tok::Sym(',') if depth == 1 => {
                let item = &toks[item_start..i];
                if let Some(p) = item.iter().position(|t| t.is("PRIMARY")) {
                    let clustered = !item.iter().any(|t| t.is("NONCLUSTERED"));
                    let keys = item[p..]
                        .windows(2)
                        .filter(|w| matches!(w[0], Tok::Sym('(') | Tok::Sym(',')))
                        .filter_map(|w| w[1].name().map(str::to_lowercase))
                        .collect();
                    pk = Some((keys, clustered));
                } else if let Some(name) = item.first().and_then(Tok::name) {
                    let computed = item.get(1).is_some_and(|t| t.is("AS"));
                    let size = if computed {
                        None
                    } else {
                        type_at(toks, item_start + 1)
                            .and_then(|(ty, args, max)| key_bytes(&ty, &args, max))
                    };
                    columns.insert(name.to_lowercase(), size);
                }
                if toks[i] == Tok::Sym(')') {
                    break;
                }
                item_start = i + 1;
            }
            Tok::Sym(')') => depth -= 1,
            _ => {}
        }
    }
    (columns, pk)
}

pub(super) fn normalized(ty: &str) -> String {
    let t: String = ty
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    match t.as_str() {
        "float" => "float(53)".into(),
        "real" => "float(24)".into(),
        "time" | "datetime2" | "datetimeoffset" => format!("{t}(7)"),
        _ => t,
    }
}

pub(super) fn bulk_type_ok(rendered: &str, declared: &str) -> bool {
    let (r, d) = (normalized(rendered), normalized(declared));
    if r == d {
        return true;
    }
    let len = |t: &str, family: &str| -> Option<u32> {
        t.strip_prefix(family)?
            .strip_prefix('(')?
            .strip_suffix(')')?
            .parse()
            .ok()
    };
    matches!(
        (len(&r, "nvarchar"), len(&d, "nvarchar")),
        (Some(w), Some(n)) if n <= 2_000 && w == 2 * n
    )
}
