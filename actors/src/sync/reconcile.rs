//! Schema reconcile: compares the primary's table with the replica's and
//! decides which column changes bring the replica in line. Renames cannot be
//! told from a drop plus an add, so that case blocks the table (dropping
//! would lose data) until the RENAME event or an operator settles it.

use crate::model::{ColumnDef, ColumnOp, SqlType, TableSchema};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    InSync,
    Apply {
        ops: Vec<ColumnOp>,
        /// Existing rows got values CT never reports (an added NOT NULL or
        /// defaulted column): the table must be reloaded.
        reload: bool,
    },
    /// The replica cannot be brought in line safely; the message says why
    /// and what to do.
    Blocked(String),
}

fn same_type(a: &SqlType, b: &SqlType) -> bool {
    use crate::model::Len;
    match (a, b) {
        // The replica stores the primary's rowversion in binary(8).
        (SqlType::RowVersion, SqlType::Binary(Len::N(8)))
        | (SqlType::Binary(Len::N(8)), SqlType::RowVersion) => true,
        _ => a == b,
    }
}

fn find<'a>(schema: &'a TableSchema, name: &str) -> Option<&'a ColumnDef> {
    schema
        .columns
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(name))
}

pub fn plan(primary: &TableSchema, replica: &TableSchema) -> Plan {
    let table = &primary.id;
    let key = table.key_name();
    let force = format!("force a full load (mssql_sync:force_full_load:{key} = \"true\"), which rebuilds the replica table");
    let pk = |s: &TableSchema| {
        s.primary_key
            .iter()
            .map(|k| k.name.to_lowercase())
            .collect::<Vec<_>>()
    };
    if pk(primary) != pk(replica) {
        return Plan::Blocked(format!(
            "the primary key of {table} changed on the primary ({:?} → {:?}); {force}",
            pk(replica),
            pk(primary)
        ));
    }
    let added: Vec<&ColumnDef> = primary
        .columns
        .iter()
        .filter(|c| find(replica, &c.name).is_none())
        .collect();
    let dropped: Vec<&ColumnDef> = replica
        .columns
        .iter()
        .filter(|c| find(primary, &c.name).is_none())
        .collect();
    let data_cols = |cols: &[&ColumnDef]| {
        cols.iter()
            .filter(|c| c.is_written())
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
    };
    let (gone, new) = (data_cols(&dropped), data_cols(&added));
    if !gone.is_empty() && !new.is_empty() {
        return Plan::Blocked(format!(
            "columns {gone:?} disappeared from {table} and {new:?} appeared: a rename whose RENAME event was missed, or a drop \
             plus an add. ctsync does not guess (dropping would lose the replica's data). If it was a rename, run the same \
             sp_rename on the replica; otherwise {force}"
        ));
    }
    let mut ops = Vec::new();
    for c in &dropped {
        ops.push(ColumnOp::Drop(c.name.clone()));
    }
    let mut reload = false;
    for c in &added {
        reload |= c.is_written() && (!c.nullable || c.has_default);
        ops.push(ColumnOp::Add((*c).clone()));
    }
    for p in &primary.columns {
        let Some(r) = find(replica, &p.name) else {
            continue;
        };
        if p.identity.is_some() != r.identity.is_some() {
            return Plan::Blocked(format!(
                "the IDENTITY property of {table}.{} changed; {force}",
                p.name
            ));
        }
        let computed_changed = p.computed.as_ref().map(|c| &c.definition)
            != r.computed.as_ref().map(|c| &c.definition);
        if computed_changed {
            if p.is_written() != r.is_written() {
                return Plan::Blocked(format!(
                    "{table}.{} changed between computed and stored; {force}",
                    p.name
                ));
            }
            // A computed column holds no data: drop and add it again.
            ops.push(ColumnOp::Drop(r.name.clone()));
            ops.push(ColumnOp::Add(p.clone()));
        } else if p.is_written() && (!same_type(&p.ty, &r.ty) || p.nullable != r.nullable) {
            ops.push(ColumnOp::Alter(p.clone()));
        }
    }
    if ops.is_empty() {
        Plan::InSync
    } else {
        Plan::Apply { ops, reload }
    }
}

/// Why a table whose column changes did not take is held: each differing
/// column as the primary has it and as the replica reports it, and what to
/// do.
pub fn not_converging(primary: &TableSchema, replica: &TableSchema, ops: &[ColumnOp]) -> String {
    let shown = |c: Option<&ColumnDef>| match c {
        Some(c) => format!(
            "{:?}{}",
            c.ty,
            if c.nullable { " NULL" } else { " NOT NULL" }
        ),
        None => "(missing)".into(),
    };
    let columns = ops
        .iter()
        .map(|op| {
            let name = match op {
                ColumnOp::Add(c) | ColumnOp::Alter(c) => c.name.as_str(),
                ColumnOp::Drop(n) => n.as_str(),
            };
            format!(
                "{name}: primary {}, replica {}",
                shown(find(primary, name)),
                shown(find(replica, name))
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    format!(
        "the replica table {} still differs from the primary after ctsync changed it to match \
         ({columns}): the replica cannot hold these columns as the primary has them, so changing \
         it again would loop. Fix the replica's columns by hand, or force a full load \
         (mssql_sync:force_full_load:{} = \"true\") to try once more",
        primary.id,
        primary.id.key_name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{KeyColumn, Len, TableId};

    fn table(cols: Vec<ColumnDef>) -> TableSchema {
        TableSchema {
            id: TableId::new("dbo", "T"),
            columns: cols,
            primary_key: vec![KeyColumn {
                name: "Id".into(),
                descending: false,
            }],
        }
    }

    fn id() -> ColumnDef {
        ColumnDef::new("Id", SqlType::Int, false)
    }

    #[test]
    fn added_nullable_column_is_added_without_reload() {
        let p = table(vec![
            id(),
            ColumnDef::new("Note", SqlType::NVarChar(Len::N(20)), true),
        ]);
        let r = table(vec![id()]);
        assert_eq!(
            plan(&p, &r),
            Plan::Apply {
                ops: vec![ColumnOp::Add(p.columns[1].clone())],
                reload: false
            }
        );
    }

    #[test]
    fn added_not_null_or_defaulted_column_needs_a_reload() {
        let mut with_default = ColumnDef::new("Flag", SqlType::Bit, true);
        with_default.has_default = true;
        for c in [ColumnDef::new("Qty", SqlType::Int, false), with_default] {
            let p = table(vec![id(), c]);
            assert!(matches!(
                plan(&p, &table(vec![id()])),
                Plan::Apply { reload: true, .. }
            ));
        }
    }

    #[test]
    fn drop_plus_add_is_blocked_and_rowversion_matches_binary8() {
        let p = table(vec![id(), ColumnDef::new("New", SqlType::Int, true)]);
        let r = table(vec![id(), ColumnDef::new("Old", SqlType::Int, true)]);
        assert!(matches!(plan(&p, &r), Plan::Blocked(m) if m.contains("does not guess")));
        let p = table(vec![id(), ColumnDef::new("V", SqlType::RowVersion, false)]);
        let r = table(vec![
            id(),
            ColumnDef::new("V", SqlType::Binary(Len::N(8)), false),
        ]);
        assert_eq!(plan(&p, &r), Plan::InSync);
    }

    #[test]
    fn type_and_nullability_changes_alter_the_column() {
        let p = table(vec![
            id(),
            ColumnDef::new("Name", SqlType::NVarChar(Len::N(200)), false),
        ]);
        let r = table(vec![
            id(),
            ColumnDef::new("Name", SqlType::NVarChar(Len::N(100)), true),
        ]);
        assert_eq!(
            plan(&p, &r),
            Plan::Apply {
                ops: vec![ColumnOp::Alter(p.columns[1].clone())],
                reload: false
            }
        );
    }
}
