//! Views, procedures and functions: their definitions, and the plan that
//! brings the replica's set in line with the primary's (create missing,
//! recreate changed, drop removed; triggers never; encrypted skipped).

mod header;

use std::collections::BTreeMap;

pub use header::qualified_statement;

/// `sys.objects.type` of the module kinds ctsync knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ModuleKind {
    View,
    Procedure,
    ScalarFunction,
    InlineFunction,
    TableFunction,
    Trigger,
}

impl ModuleKind {
    pub fn from_type_code(code: &str) -> Option<Self> {
        Some(match code.trim() {
            "V" => ModuleKind::View,
            "P" => ModuleKind::Procedure,
            "FN" => ModuleKind::ScalarFunction,
            "IF" => ModuleKind::InlineFunction,
            "TF" => ModuleKind::TableFunction,
            "TR" => ModuleKind::Trigger,
            _ => return None,
        })
    }

    pub fn type_code(self) -> &'static str {
        match self {
            ModuleKind::View => "V",
            ModuleKind::Procedure => "P",
            ModuleKind::ScalarFunction => "FN",
            ModuleKind::InlineFunction => "IF",
            ModuleKind::TableFunction => "TF",
            ModuleKind::Trigger => "TR",
        }
    }

    /// The keyword of `DROP <keyword>`.
    pub fn drop_keyword(self) -> &'static str {
        match self {
            ModuleKind::View => "VIEW",
            ModuleKind::Procedure => "PROCEDURE",
            ModuleKind::Trigger => "TRIGGER",
            _ => "FUNCTION",
        }
    }
}

/// A module from `sys.sql_modules` + `sys.objects`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleDef {
    pub schema: String,
    pub name: String,
    pub kind: ModuleKind,
    /// `None` when the module is encrypted (WITH ENCRYPTION).
    pub definition: Option<String>,
    pub ansi_nulls: bool,
    pub quoted_identifier: bool,
}

impl ModuleDef {
    /// A module created with the default SET options (ANSI_NULLS and
    /// QUOTED_IDENTIFIER on); `None` is an encrypted definition.
    pub fn new(schema: &str, name: &str, kind: ModuleKind, definition: Option<&str>) -> Self {
        Self {
            schema: schema.to_string(),
            name: name.to_string(),
            kind,
            definition: definition.map(str::to_string),
            ansi_nulls: true,
            quoted_identifier: true,
        }
    }

    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// Same text and SET options. Definitions are compared in the form ctsync
    /// runs them (`CREATE OR ALTER <kind> [schema].[name]`): SQL Server
    /// stores `ALTER …` as `CREATE …` and drops the `OR ALTER` of
    /// `CREATE OR ALTER`, and the replica's copy names the object in full,
    /// so this form makes every way of writing the same module compare equal.
    fn same_text(&self, other: &ModuleDef) -> bool {
        normal_text(self) == normal_text(other)
            && self.ansi_nulls == other.ansi_nulls
            && self.quoted_identifier == other.quoted_identifier
    }
}

/// The definition as ctsync would run it: `CREATE OR ALTER` header naming
/// `[schema].[name]` (what the replica then stores, minus `OR ALTER`).
fn normal_text(m: &ModuleDef) -> Option<String> {
    let d = m.definition.as_deref()?;
    Some(
        qualified_statement(d, &m.schema, &m.name, true)
            .or_else(|| create_or_alter(d))
            .unwrap_or_else(|| d.to_string()),
    )
}

/// One write to the replica's modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleOp {
    /// Run the definition as is (the module is missing).
    Create(ModuleDef),
    /// Same kind, other text: `CREATE OR ALTER` keeps permissions and
    /// dependents.
    Alter(ModuleDef),
    Drop {
        schema: String,
        name: String,
        kind: ModuleKind,
    },
}

impl ModuleOp {
    pub fn label(&self) -> (&'static str, String) {
        match self {
            ModuleOp::Create(m) => ("create", m.qualified()),
            ModuleOp::Alter(m) => ("alter", m.qualified()),
            ModuleOp::Drop { schema, name, .. } => ("drop", format!("{schema}.{name}")),
        }
    }
}

/// What to do, in order: `drops` first, then `writes` (retried in passes
/// so that dependencies sort themselves out).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ModulePlan {
    pub drops: Vec<ModuleOp>,
    pub writes: Vec<ModuleOp>,
    /// Encrypted modules on the primary: cannot be copied.
    pub encrypted: Vec<String>,
}

/// Modules in ctsync's own schema on the replica are never touched.
pub const OWN_SCHEMA: &str = "ctsync";

pub fn plan(primary: &[ModuleDef], replica: &[ModuleDef]) -> ModulePlan {
    let key = |m: &ModuleDef| (m.schema.to_lowercase(), m.name.to_lowercase());
    let wanted = |m: &&ModuleDef| {
        m.kind != ModuleKind::Trigger && !m.schema.eq_ignore_ascii_case(OWN_SCHEMA)
    };
    let on_replica: BTreeMap<_, &ModuleDef> =
        replica.iter().filter(wanted).map(|m| (key(m), m)).collect();
    let on_primary: BTreeMap<_, &ModuleDef> =
        primary.iter().filter(wanted).map(|m| (key(m), m)).collect();
    let mut plan = ModulePlan::default();
    for (k, m) in &on_primary {
        if m.definition.is_none() {
            plan.encrypted.push(m.qualified());
            continue;
        }
        match on_replica.get(k) {
            None => plan.writes.push(ModuleOp::Create((*m).clone())),
            Some(r) if r.kind != m.kind => {
                plan.drops.push(ModuleOp::Drop {
                    schema: r.schema.clone(),
                    name: r.name.clone(),
                    kind: r.kind,
                });
                plan.writes.push(ModuleOp::Create((*m).clone()));
            }
            Some(r) if !m.same_text(r) => plan.writes.push(ModuleOp::Alter((*m).clone())),
            Some(_) => {}
        }
    }
    for (k, r) in &on_replica {
        if !on_primary.contains_key(k) {
            plan.drops.push(ModuleOp::Drop {
                schema: r.schema.clone(),
                name: r.name.clone(),
                kind: r.kind,
            });
        }
    }
    plan
}

/// Turns `CREATE VIEW …` into `CREATE OR ALTER VIEW …`, skipping leading
/// blanks and comments; `None` if the text does not start with CREATE.
pub fn create_or_alter(definition: &str) -> Option<String> {
    let bytes = definition.as_bytes();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        // Byte-wise: every position we stop at is an ASCII delimiter, so
        // slicing the string there is always on a character boundary.
        if bytes[i..].starts_with(b"--") {
            i += bytes[i..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len() - i, |n| n + 1);
        } else if bytes[i..].starts_with(b"/*") {
            // Block comments nest in T-SQL.
            let mut depth = 0usize;
            while i < bytes.len() {
                if bytes[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if bytes[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else {
            break;
        }
    }
    let rest = &definition[i..];
    let word_end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    if !rest[..word_end].eq_ignore_ascii_case("CREATE") || word_end == rest.len() {
        return None;
    }
    let after = &rest[word_end..];
    let next: String = after.trim_start().chars().take(2).collect();
    if next.eq_ignore_ascii_case("OR") {
        return Some(definition.to_string()); // already CREATE OR ALTER
    }
    Some(format!("{}CREATE OR ALTER{}", &definition[..i], after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str, kind: ModuleKind, def: Option<&str>) -> ModuleDef {
        ModuleDef::new("dbo", name, kind, def)
    }

    #[test]
    fn plan_creates_alters_drops_and_leaves_triggers_and_encrypted_alone() {
        let primary = vec![
            module("New", ModuleKind::View, Some("CREATE VIEW New AS SELECT 1")),
            module(
                "Changed",
                ModuleKind::Procedure,
                Some("CREATE PROCEDURE Changed AS SELECT 2"),
            ),
            module(
                "Kind",
                ModuleKind::InlineFunction,
                Some("CREATE FUNCTION Kind() RETURNS TABLE AS RETURN SELECT 1 a"),
            ),
            module(
                "Same",
                ModuleKind::View,
                Some("CREATE VIEW Same AS SELECT 1"),
            ),
            module("Trg", ModuleKind::Trigger, Some("CREATE TRIGGER Trg ...")),
            module("Hidden", ModuleKind::ScalarFunction, None),
        ];
        let replica = vec![
            module(
                "Changed",
                ModuleKind::Procedure,
                Some("CREATE PROCEDURE Changed AS SELECT 1"),
            ),
            module(
                "Kind",
                ModuleKind::ScalarFunction,
                Some("CREATE FUNCTION Kind() RETURNS int AS BEGIN RETURN 1 END"),
            ),
            // Stored as ctsync ran it last time: still the same module.
            module(
                "Same",
                ModuleKind::View,
                Some("CREATE OR ALTER VIEW Same AS SELECT 1"),
            ),
            module(
                "Gone",
                ModuleKind::View,
                Some("CREATE VIEW Gone AS SELECT 1"),
            ),
            module("Own", ModuleKind::View, Some("CREATE VIEW Own AS SELECT 1")),
        ];
        let mut replica = replica;
        replica[4].schema = OWN_SCHEMA.into();
        let p = plan(&primary, &replica);
        let labels = |ops: &[ModuleOp]| {
            ops.iter()
                .map(|o| o.label())
                .map(|(a, n)| format!("{a} {n}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(labels(&p.drops), ["drop dbo.Kind", "drop dbo.Gone"]);
        assert_eq!(
            labels(&p.writes),
            ["alter dbo.Changed", "create dbo.Kind", "create dbo.New"]
        );
        assert_eq!(p.encrypted, ["dbo.Hidden"]);
    }

    #[test]
    fn create_or_alter_skips_comments_and_keeps_the_rest() {
        assert_eq!(
            create_or_alter("-- note\n/* a /* nested */ b */\n  create view [v] as select 1")
                .as_deref(),
            Some("-- note\n/* a /* nested */ b */\n  CREATE OR ALTER view [v] as select 1")
        );
        assert_eq!(
            create_or_alter("CREATE OR ALTER PROCEDURE p AS SELECT 1").as_deref(),
            Some("CREATE OR ALTER PROCEDURE p AS SELECT 1")
        );
        assert_eq!(create_or_alter("ALTER VIEW v AS SELECT 1"), None);
        assert_eq!(create_or_alter("/* unterminated"), None);
        assert_eq!(
            create_or_alter(
                "/* ünïcødé ✓ */ CREATE FUNCTION f() RETURNS int AS BEGIN RETURN 1 END"
            )
            .as_deref(),
            Some("/* ünïcødé ✓ */ CREATE OR ALTER FUNCTION f() RETURNS int AS BEGIN RETURN 1 END")
        );
    }
}
