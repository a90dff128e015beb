//! The load a drill runs throughout, `[workload]` of a scenario: the bank (default), whose
//! check proves no acknowledged transfer was lost, or your own transactions in pgbench's
//! script language (`kind = "script"`, [`crate::workload::script`]), whose check is a query
//! that must return true after the drill.
//!
//! ```toml
//! [workload]
//! kind = "script"
//! file = "../../workloads/stations.sql"         # relative to the scenario file
//! init = "../../workloads/stations-schema.sql"  # run once before the drill (optional)
//! check = "SELECT …"                            # default: the script's `-- check:` line
//! concurrency = 4
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which workload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    /// Bank transfers (`roachlab workload run bank`), checked by the bank check.
    #[default]
    Bank,
    /// A script in pgbench's language (`roachlab workload run script`), checked by a query.
    Script,
}

/// `[workload]` as written: every field optional, unknown fields rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkload {
    #[serde(default)]
    kind: WorkloadKind,
    concurrency: Option<usize>,
    rows: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    op_timeout: Option<Duration>,
    file: Option<PathBuf>,
    init: Option<PathBuf>,
    check: Option<String>,
}

/// The validated `[workload]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    #[serde(default)]
    pub kind: WorkloadKind,
    /// Clients (workers), each with its own connection.
    pub concurrency: usize,
    /// The bank's accounts.
    pub rows: i64,
    /// Statement and COMMIT timeout.
    #[serde(with = "humantime_serde")]
    pub op_timeout: Duration,
    /// `script`: the script each client runs, as a path the runner can open.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// `script`: a SQL file run once, as it stands, before the drill (the schema).
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// `script`: the query that must return true after the drill (else the script's
    /// `-- check:` line).
    #[serde(default)]
    pub check: Option<String>,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        Self {
            kind: WorkloadKind::Bank,
            concurrency: 4,
            rows: 1000,
            op_timeout: Duration::from_secs(5),
            file: None,
            init: None,
            check: None,
        }
    }
}

impl RawWorkload {
    /// Checks and defaults; relative paths are resolved against `base` (the scenario file's
    /// directory). The message names what to write instead.
    pub(super) fn resolve(self, base: Option<&Path>) -> Result<WorkloadSpec, String> {
        let d = WorkloadSpec::default();
        let concurrency = self.concurrency.unwrap_or(d.concurrency);
        if concurrency == 0 || concurrency > 256 {
            return Err(format!("concurrency = {concurrency}: from 1 to 256 clients"));
        }
        let rows = self.rows.unwrap_or(d.rows);
        if rows < 2 {
            return Err(format!("rows = {rows}: the bank needs at least 2 accounts"));
        }
        let op_timeout = crate::config::check_duration(self.op_timeout.unwrap_or(d.op_timeout)).map_err(|e| format!("op_timeout: {e}"))?;
        let at = |p: PathBuf| match base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p,
        };
        let (file, init) = (self.file.map(at), self.init.map(at));
        match self.kind {
            WorkloadKind::Script if file.is_none() => {
                return Err("kind = \"script\" needs `file = \"…\"`, the script each client runs (e.g. workloads/stations.sql)".into())
            }
            WorkloadKind::Bank if file.is_some() || init.is_some() || self.check.is_some() => {
                return Err("file, init and check belong to kind = \"script\"; the bank has its own check".into())
            }
            _ => {}
        }
        Ok(WorkloadSpec { kind: self.kind, concurrency, rows, op_timeout, file, init, check: self.check })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(toml_text: &str) -> RawWorkload {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn a_script_workload_needs_its_file_and_paths_are_the_scenario_files() {
        let s = raw("kind = \"script\"\nfile = \"w.sql\"\ninit = \"/abs/schema.sql\"\ncheck = \"SELECT true\"")
            .resolve(Some(Path::new("/d/drills")))
            .unwrap();
        assert_eq!(s.file.as_deref(), Some(Path::new("/d/drills/w.sql")));
        assert_eq!(s.init.as_deref(), Some(Path::new("/abs/schema.sql")));
        assert_eq!(s.check.as_deref(), Some("SELECT true"));
        assert!(raw("kind = \"script\"").resolve(None).unwrap_err().contains("needs `file"));
        assert!(raw("file = \"w.sql\"").resolve(None).unwrap_err().contains("belong to kind = \"script\""));
        assert!(raw("concurrency = 0").resolve(None).unwrap_err().contains("from 1 to 256"));
        assert_eq!(raw("").resolve(None).unwrap(), WorkloadSpec::default());
        assert!(toml::from_str::<RawWorkload>("kind = \"tpcc\"").is_err());
    }

    #[test]
    fn the_stations_drill_runs_a_script_that_exists_and_sends_sql_to_single_nodes() {
        use crate::drill::scenario::{Action, Scenario};
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/drills/stations-replication.toml");
        let s = Scenario::parse(&std::fs::read_to_string(&path).unwrap(), &path.display().to_string(), &[1, 2, 3]).unwrap();
        assert_eq!(s.workload.kind, WorkloadKind::Script);
        assert!(s.workload.file.as_deref().is_some_and(Path::exists), "{:?}", s.workload.file);
        assert!(s.workload.init.as_deref().is_some_and(Path::exists), "{:?}", s.workload.init);
        let sql: Vec<_> =
            s.steps.iter().filter_map(|st| if let Action::Sql { expect, .. } = &st.action { Some(expect) } else { None }).collect();
        assert_eq!(sql.len(), 3);
        assert_eq!(sql.iter().filter(|e| e.as_deref() == Some("written through node 1")).count(), 2);
        let bad = "name = \"x\"\n[[step]]\naction = \"sql\"\nnode = 2\nstatement = \"  \"\n";
        assert!(Scenario::parse(bad, "x.toml", &[1, 2]).unwrap_err().to_string().starts_with("x.toml:2:1: statement = \"\""));
        let bad = "name = \"x\"\n[workload]\nkind = \"script\"\n[[step]]\naction = \"heal\"\n";
        let e = Scenario::parse(bad, "x.toml", &[1, 2]).unwrap_err().to_string();
        assert!(e.starts_with("x.toml:2:1: kind = \"script\" needs"), "the [workload] table's line: {e}");
    }
}
