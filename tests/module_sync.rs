//! Module sync through the ports: dependency order, recreate on change,
//! drop + create on a kind change, drops, triggers and encrypted modules
//! never copied, and one failing module not blocking the others.

mod support;

use std::time::Duration;

use ctsync_actors::modules::{ModuleDef, ModuleKind};
use support::fixtures::*;
use support::{eventually, fast_config, Harness};

const WAIT: Duration = Duration::from_secs(10);

fn module(name: &str, kind: ModuleKind, definition: Option<&str>) -> ModuleDef {
    ModuleDef::new("dbo", name, kind, definition)
}

fn names(h: &Harness) -> Vec<String> {
    h.replica.module_names()
}

#[actix_rt::test]
async fn modules_follow_the_primary_in_dependency_order() {
    let h = Harness::new();
    let users = user_table();
    h.primary.create_table(users.clone(), true);
    h.set("mssql_sync:enabled:User", "true").await;
    // "AView" sorts first but reads "ZBase", which reads the table.
    h.primary.set_module(module(
        "AView",
        ModuleKind::View,
        Some("CREATE VIEW [dbo].[AView] AS SELECT * FROM [dbo].[ZBase]"),
    ));
    h.primary.set_module(module(
        "ZBase",
        ModuleKind::View,
        Some("CREATE VIEW [dbo].[ZBase] AS SELECT Id FROM [dbo].[User]"),
    ));
    h.primary.set_module(module(
        "Count",
        ModuleKind::Procedure,
        Some("CREATE PROCEDURE [dbo].[Count] AS SELECT COUNT(*) FROM [dbo].[User]"),
    ));
    h.primary.set_module(module(
        "Twice",
        ModuleKind::ScalarFunction,
        Some("CREATE FUNCTION [dbo].[Twice](@x int) RETURNS int AS BEGIN RETURN @x * 2 END"),
    ));
    h.primary.set_module(module(
        "Audit",
        ModuleKind::Trigger,
        Some("CREATE TRIGGER [dbo].[Audit] ON [dbo].[User] AFTER INSERT AS SELECT 1"),
    ));
    h.primary
        .set_module(module("Secret", ModuleKind::ScalarFunction, None));
    let run = h.start(fast_config());

    eventually(WAIT, "modules created", || async { names(&h).len() == 4 }).await;
    assert_eq!(
        names(&h),
        ["dbo.AView", "dbo.Count", "dbo.Twice", "dbo.ZBase"]
    );
    assert!(
        run.board.module_errors().is_empty(),
        "{:?}",
        run.board.module_errors()
    );
    eventually(WAIT, "encrypted module reported as skipped", || async {
        run.board.modules_skipped() == ["dbo.Secret"]
    })
    .await;

    // A changed procedure is recreated with CREATE OR ALTER.
    let changed = "CREATE PROCEDURE [dbo].[Count] AS SELECT COUNT_BIG(*) FROM [dbo].[User]";
    h.primary
        .set_module(module("Count", ModuleKind::Procedure, Some(changed)));
    eventually(WAIT, "procedure recreated", || async {
        // SQL Server stores a CREATE OR ALTER without the OR ALTER.
        h.replica
            .module("dbo", "Count")
            .and_then(|m| m.definition)
            .as_deref()
            == Some(changed)
    })
    .await;

    // FN → IF: a kind change drops and creates.
    let inline = "CREATE FUNCTION [dbo].[Twice](@x int) RETURNS TABLE AS RETURN SELECT @x * 2 AS v";
    h.primary
        .set_module(module("Twice", ModuleKind::InlineFunction, Some(inline)));
    eventually(WAIT, "function kind changed", || async {
        h.replica.module("dbo", "Twice").is_some_and(|m| {
            m.kind == ModuleKind::InlineFunction && m.definition.as_deref() == Some(inline)
        })
    })
    .await;

    // A view dropped on the primary is dropped on the replica.
    h.primary.drop_module("dbo", "AView");
    eventually(WAIT, "view dropped", || async {
        !names(&h).contains(&"dbo.AView".to_string())
    })
    .await;
    assert!(
        !names(&h).contains(&"dbo.Audit".to_string()),
        "triggers are never synced"
    );
    assert!(!names(&h).contains(&"dbo.Secret".to_string()));
}

#[actix_rt::test]
async fn a_failing_module_does_not_block_the_others() {
    let h = Harness::new();
    h.primary.set_module(module(
        "Broken",
        ModuleKind::View,
        Some("CREATE VIEW [dbo].[Broken] AS SELECT 1 AS a"),
    ));
    h.primary.set_module(module(
        "Dangling",
        ModuleKind::View,
        Some("CREATE VIEW [dbo].[Dangling] AS SELECT * FROM [dbo].[Missing]"),
    ));
    h.primary.set_module(module(
        "Fine",
        ModuleKind::View,
        Some("CREATE VIEW [dbo].[Fine] AS SELECT 1 AS a"),
    ));
    h.faults.inject(
        ctsync_actors::memory::faults::Rule::reject()
            .method("apply_module")
            .object(&ctsync_actors::model::TableId::new("dbo", "Broken"))
            .always(),
    );
    let run = h.start(fast_config());
    eventually(WAIT, "the healthy module exists", || async {
        names(&h) == ["dbo.Fine"]
    })
    .await;
    eventually(WAIT, "failures reported", || async {
        run.board.module_errors().len() == 2
    })
    .await;
    let errors = run.board.module_errors();
    assert!(errors["dbo.Broken"].contains("injected failure"));
    assert!(errors["dbo.Dangling"].contains("Invalid object name"));
}

#[actix_rt::test]
async fn modules_are_created_under_their_schema_and_current_name() {
    let h = Harness::new();
    // No schema in the header, in a non-dbo schema; and a procedure renamed
    // with sp_rename, whose stored text still has the old name.
    let mut view = module(
        "Totals",
        ModuleKind::View,
        Some("CREATE VIEW Totals AS SELECT 1 AS n"),
    );
    view.schema = "sales".into();
    h.primary.set_module(view);
    h.primary.set_module(module(
        "NewName",
        ModuleKind::Procedure,
        Some("CREATE PROCEDURE [dbo].[OldName] AS SELECT 1"),
    ));
    let _run = h.start(fast_config());
    eventually(WAIT, "both created", || async {
        names(&h) == ["dbo.NewName", "sales.Totals"]
    })
    .await;
    assert_eq!(
        h.replica
            .module("sales", "Totals")
            .and_then(|m| m.definition)
            .as_deref(),
        Some("CREATE VIEW [sales].[Totals] AS SELECT 1 AS n")
    );
    assert_eq!(
        h.replica
            .module("dbo", "NewName")
            .and_then(|m| m.definition)
            .as_deref(),
        Some("CREATE PROCEDURE [dbo].[NewName] AS SELECT 1")
    );
    // Stable: nothing is recreated on later rounds.
    let before = h.replica.module_writes();
    actix_rt::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        h.replica.module_writes(),
        before,
        "modules were rewritten although nothing changed"
    );
}
