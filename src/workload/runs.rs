//! A run's directory: `DIR/workloads/<name>/<timestamp>/` holding `ops.jsonl`, `ticks.ndjson`
//! and `summary.json`, and `DIR/workloads/<name>/last` naming the newest.

use std::path::{Path, PathBuf};

use super::record::OpRecord;
use crate::{Error, Result};

/// The current UTC time as `YYYYMMDDTHHMMSSZ`, for naming run directories.
pub fn utc_stamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{:04}{:02}{:02}T{:02}{:02}{:02}Z", now.year(), now.month() as u8, now.day(), now.hour(), now.minute(), now.second())
}

/// A fresh run directory `DIR/workloads/<name>/<timestamp>/`, recorded as the workload's last
/// run (`DIR/workloads/<name>/last`) for `workload check`.
pub fn new_run_dir(lab_dir: &Path, name: &str) -> Result<PathBuf> {
    let stamp = utc_stamp();
    let base = lab_dir.join("workloads").join(name);
    let mut dir = base.join(&stamp);
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = base.join(format!("{stamp}-{n}"));
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    std::fs::write(base.join("last"), dir.display().to_string()).map_err(|e| Error::io("cannot record the last run", e))?;
    Ok(dir)
}

/// The last run directory of a workload, from `DIR/workloads/<name>/last`.
pub fn last_run_dir(lab_dir: &Path, name: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(lab_dir.join("workloads").join(name).join("last")).ok()?;
    Some(PathBuf::from(text.trim()))
}

/// Reads a run's operation log.
pub fn read_ops(run_dir: &Path) -> Result<Vec<OpRecord>> {
    let path = run_dir.join("ops.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::ConfigSyntax {
                file: path.display().to_string(),
                line: i + 1,
                col: e.column(),
                message: e.to_string(),
            })
        })
        .collect()
}
