//! Saved schedules: failing schedules the simulation found, kept as text
//! in `tests/schedules/*.sched` (one operation per line, `#` comments) and
//! replayed through the same runner and invariants, without the generator,
//! so they stay reproducible whatever the generator draws for a seed.

use std::path::{Path, PathBuf};

use crate::ops::Op;

/// A saved schedule: its file, its comment header and its operations.
pub(crate) struct Saved {
    pub(crate) path: PathBuf,
    pub(crate) header: Vec<String>,
    pub(crate) ops: Vec<Op>,
}

/// Reads a schedule file: `#` lines are its header, blank lines are
/// skipped, every other line is one operation.
pub(crate) fn read(path: &Path) -> Result<Saved, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut header = Vec::new();
    let mut ops = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(comment) = line.strip_prefix('#') {
            header.push(comment.trim().to_string());
        } else if !line.is_empty() {
            let op = line
                .parse()
                .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
            ops.push(op);
        }
    }
    Ok(Saved {
        path: path.to_path_buf(),
        header,
        ops,
    })
}

/// Every saved schedule, in file-name order.
pub(crate) fn all() -> Vec<Saved> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schedules");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sched"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| read(p).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// The text a schedule is saved as (what `read` reads back).
pub(crate) fn render(header: &[String], ops: &[Op]) -> String {
    let mut out = String::new();
    for line in header {
        out.push_str(&format!("# {line}\n"));
    }
    for op in ops {
        out.push_str(&format!("{op}\n"));
    }
    out
}
