//! The README is part of the contract: its test command is the one `.ci/run`
//! runs, and its configuration table lists exactly the settings the config
//! code reads.

use std::collections::BTreeSet;

use ctsync::config::SETTINGS;

fn read(path: &str) -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_string() + path)
        .expect(path)
}

#[test]
fn readme_test_command_is_what_ci_runs() {
    let readme = read("README.md");
    let ci = read(".ci/run");
    let section = readme
        .split("## Run the tests")
        .nth(1)
        .expect("a 'Run the tests' section");
    let command = section
        .split("```")
        .nth(1)
        .expect("a code block with the test command")
        .trim();
    assert_eq!(command, "cargo test --workspace --locked");
    assert!(
        ci.lines().any(|l| l.trim() == command),
        ".ci/run must run `{command}`"
    );
}

#[test]
fn readme_configuration_table_matches_the_settings_read_by_the_code() {
    let readme = read("README.md");
    let section = readme
        .split("## Configuration")
        .nth(1)
        .expect("a Configuration section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let documented: BTreeSet<String> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('`').nth(1).map(str::to_string))
        .collect();
    let mut read_by_code: BTreeSet<String> = SETTINGS.iter().map(|s| s.env.to_string()).collect();
    read_by_code.insert("CTSYNC_CONFIG".into()); // read by the CLI (clap `env`)
    assert_eq!(documented, read_by_code);
    for s in SETTINGS {
        let row = section
            .lines()
            .find(|l| l.starts_with(&format!("| `{}`", s.env)))
            .expect("row");
        assert!(row.contains(&format!("`{}`", s.file_key)), "{row}");
        if let Some(default) = s.default {
            assert!(
                row.contains(&format!("`{default}`")),
                "default of {} in {row}",
                s.env
            );
        }
    }
}
