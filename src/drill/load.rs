//! A drill's load, by kind ([`WorkloadKind`]): set up before the baseline, one worker per
//! client for the workload driver, and checked after the restore — the bank's check (no
//! acknowledged transfer lost), or a script's query that must return true.

use std::sync::Arc;

use super::model::QueryCheck;
use super::workload::{WorkloadKind, WorkloadSpec};
use crate::workload::script::{self, Script};
use crate::workload::{self, bank_etcd, bank_sql, CheckReport, OpRecord, Worker};
use crate::{Error, Result};

/// What a drill's workload talks to: SQL through HAProxy, or etcd's KV API through it.
#[derive(Debug, Clone)]
enum Target {
    Sql(String),
    Etcd(String),
}

/// The load of one drill. Cheap to clone.
#[derive(Clone)]
pub(super) struct Load {
    target: Target,
    spec: WorkloadSpec,
    script: Option<Arc<Script>>,
}

/// What the checks after the drill found.
pub(super) struct Checked {
    pub bank: Option<CheckReport>,
    pub query: Option<QueryCheck>,
}

impl Load {
    /// The load `spec` asks for at `url` (the engine's workload URL). A script is read and
    /// parsed here, before anything runs: its errors come back as `file:line:col`.
    ///
    /// Errors: a script on an engine without SQL; a script that cannot be read or parsed.
    pub fn new(url: String, spec: &WorkloadSpec) -> Result<Self> {
        let target = if url.starts_with("http://") || url.starts_with("https://") { Target::Etcd(url) } else { Target::Sql(url) };
        let script = match (spec.kind, &target) {
            (WorkloadKind::Bank, _) => None,
            (WorkloadKind::Script, Target::Etcd(_)) => {
                return Err(Error::Refused(
                    "[workload] kind = \"script\" runs SQL and needs a SQL engine (CockroachDB); this lab runs etcd: use the bank".into(),
                ))
            }
            (WorkloadKind::Script, Target::Sql(_)) => {
                let file = spec.file.as_deref().ok_or_else(|| Error::Refused("kind = \"script\" needs `file`".into()))?;
                Some(Arc::new(script::load(file)?))
            }
        };
        Ok(Self { target, spec: spec.clone(), script })
    }

    /// What the per-second lines call an operation: `transfer` or `script`.
    pub fn op_name(&self) -> &'static str {
        if self.script.is_some() {
            "script"
        } else {
            "transfer"
        }
    }

    /// Before the baseline: the bank's accounts (re)made, or the script's `init` file run.
    pub async fn init(&self) -> Result<()> {
        match (&self.target, &self.script) {
            (Target::Sql(url), None) => {
                bank_sql::init(url, &bank_sql::InitOptions { rows: self.spec.rows, payload_bytes: 100, ranges: 10 }).await?;
            }
            (Target::Etcd(url), _) => bank_etcd::init(url, self.spec.rows).await?,
            (Target::Sql(url), Some(_)) => {
                if let Some(init) = &self.spec.init {
                    script::run_file(url, init).await?;
                }
            }
        }
        Ok(())
    }

    /// Client `i`'s worker.
    pub fn worker(&self, i: usize) -> Box<dyn Worker> {
        let timeout = self.spec.op_timeout;
        match (&self.target, &self.script) {
            (Target::Sql(url), Some(s)) => Box::new(script::ScriptWorker::new(url, s.clone(), i, timeout)),
            (Target::Sql(url), None) => {
                Box::new(workload::BankWorker { rows: self.spec.rows, transferer: Box::new(bank_sql::SqlTransferer::new(url, timeout)) })
            }
            (Target::Etcd(url), _) => {
                Box::new(workload::BankWorker { rows: self.spec.rows, transferer: Box::new(bank_etcd::EtcdTransferer::new(url, timeout)) })
            }
        }
    }

    /// After the restore: the load's check, retried while the cluster does not answer
    /// (bounded: [`workload::check::CHECK_PATIENCE`]). `None` where a check could not run
    /// (said through `say`), or a script with no check query.
    pub async fn check(&self, ops: &[OpRecord], say: &mut (dyn FnMut(String) + Send)) -> Checked {
        let what = if self.script.is_some() { "check" } else { "bank check" };
        let patience = workload::check::CHECK_PATIENCE;
        let on_retry = |e: &Error| format!("{what}: the cluster did not answer ({e}); retrying");
        match (&self.target, &self.script) {
            (Target::Sql(url), Some(s)) => {
                let Some(query) = self.spec.check.clone().or_else(|| s.check.clone()) else {
                    say("no check: the script has no `-- check:` line and the scenario's [workload] no `check`".into());
                    return Checked { bank: None, query: None };
                };
                let r = workload::check::until_answered(patience, || script::check(url, &query), |e| say(on_retry(e))).await;
                let query = match r {
                    Ok(None) => QueryCheck { query, holds: true, detail: None },
                    Ok(Some(what)) => QueryCheck { query, holds: false, detail: Some(what) },
                    Err(e) => QueryCheck { query, holds: false, detail: Some(format!("could not run: {e}")) },
                };
                Checked { bank: None, query: Some(query) }
            }
            (target, _) => {
                let r = workload::check::until_answered(
                    patience,
                    || async {
                        match target {
                            Target::Sql(u) => bank_sql::check(u, ops).await,
                            Target::Etcd(u) => bank_etcd::check(u, ops).await,
                        }
                    },
                    |e| say(on_retry(e)),
                )
                .await;
                match r {
                    Ok(c) => Checked { bank: Some(c), query: None },
                    Err(e) => {
                        say(format!("bank check could not run: {e}"));
                        Checked { bank: None, query: None }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_is_refused_on_etcd_and_parsed_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.sql");
        std::fs::write(&file, "SELECT 1;\n\\set x random(1)\n").unwrap();
        let spec = WorkloadSpec { kind: WorkloadKind::Script, file: Some(file.clone()), ..WorkloadSpec::default() };
        let e = Load::new("http://127.0.0.1:1".into(), &spec).err().unwrap().to_string();
        assert!(e.contains("needs a SQL engine"), "{e}");
        let e = Load::new("postgresql://root@127.0.0.1:1/x".into(), &spec).err().unwrap().to_string();
        assert!(e.starts_with(&format!("{}:2:", file.display())), "parse errors at file:line:col: {e}");
        let bank = Load::new("http://127.0.0.1:1".into(), &WorkloadSpec::default()).ok().unwrap();
        assert_eq!(bank.op_name(), "transfer");
    }
}
