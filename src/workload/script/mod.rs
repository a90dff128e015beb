//! `workload run script --file F`: your own transactions, in pgbench's script language (the
//! subset in [`parse`]), with the bank's outcome classes, retries and reconnects
//! ([`SqlConn::transaction`]), on PostgreSQL or CockroachDB.
//!
//! One operation is one run of the whole script. Its transactions run in order; each is sent
//! as `BEGIN`, its statements, then `COMMIT` on its own — an implicit one (a statement
//! outside `BEGIN … COMMIT`) too, so that its outcome is classified by the same rules (a
//! statement PostgreSQL refuses inside a transaction block, such as `VACUUM`, cannot be in a
//! script). The operation stops at the first transaction that does not commit, and takes its
//! outcome; [`ScriptOp`] records how many committed. A transaction retried after SQLSTATE
//! 40001 or a lost connection before COMMIT runs again with the same variable values
//! (pgbench's `--max-tries` does the same). `\sleep` inside a transaction holds it open and
//! counts toward the operation's timeout.
//!
//! Values are substituted into the statement's text, as pgbench's default (simple) query
//! mode does, and statements go over the simple-query protocol: there is no placeholder to
//! type ([`crate::sql`]). `\set` needs no round trip, so a transaction's variables are
//! computed before it is sent.

mod expr;
mod parse;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::sql::SqlConn;
use super::{OpDetail, OpResult, Outcome, ScriptOp, Worker};
use crate::sql::{self, TypedSql};
use crate::{Error, Result};

pub use expr::{Expr, Value};

/// Variables every script may read without setting them: `client_id`, the worker's number
/// from 0 (pgbench's `:client_id`).
pub const PREDEFINED: &[&str] = &["client_id"];

/// A parsed script: what one operation runs, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    pub units: Vec<Unit>,
    /// The query of a `-- check: SELECT …` comment line, if the script has one: what
    /// `workload run script` checks after the run when no `--check` is given.
    pub check: Option<String>,
}

/// A step of a script: a meta-command between transactions, or a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Unit {
    Meta(Action),
    /// `explicit`: written as `BEGIN … COMMIT`; else one statement of its own.
    Transaction {
        explicit: bool,
        actions: Vec<Action>,
    },
}

/// One command of a script.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `\set name expr`.
    Set { name: String, expr: Expr },
    /// `\sleep amount unit`: `amount` × `unit_us` µs.
    Sleep { amount: Expr, unit_us: u64 },
    /// A SQL command, `at` its byte offset in the file.
    Sql { parts: Vec<SqlPart>, at: usize },
}

/// Text of a SQL command, or a `:name` to replace with the variable's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlPart {
    Text(String),
    Var(String),
}

/// Reads and parses `file`. Errors: the file cannot be read; a parse error as
/// `file:line:col: message` ([`Error::ConfigSyntax`]).
pub fn load(file: &Path) -> Result<Script> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(format!("cannot read the script {}", file.display()), e))?;
    parse_text(&text, &file.display().to_string())
}

/// Parses `text`, naming `origin` in errors.
pub fn parse_text(text: &str, origin: &str) -> Result<Script> {
    let mut script = parse::parse(text).map_err(|(at, message)| {
        let (line, col) = crate::config::line_col(text, at);
        Error::ConfigSyntax { file: origin.to_string(), line, col, message }
    })?;
    script.check = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("--")?.trim_start().strip_prefix("check:"))
        .map(|q| q.trim().to_string())
        .filter(|q| !q.is_empty());
    Ok(script)
}

/// A transaction ready to send: statements' text and sleeps, in order.
#[derive(Debug, Clone, PartialEq)]
enum Ready {
    Sql(String),
    Sleep(Duration),
}

/// Runs a meta-command on `vars`: `Some(d)` for a sleep of `d`.
fn meta(a: &Action, vars: &mut HashMap<String, Value>, rng: &mut fastrand::Rng) -> std::result::Result<Option<Duration>, String> {
    match a {
        Action::Set { name, expr } => {
            let v = expr.eval(vars, rng).map_err(|e| format!("\\set {name}: {e}"))?;
            vars.insert(name.clone(), v);
            Ok(None)
        }
        Action::Sleep { amount, unit_us } => {
            let n = match amount.eval(vars, rng).map_err(|e| format!("\\sleep: {e}"))? {
                Value::Int(n) => n,
                Value::Double(d) => d as i64,
            };
            let us = u64::try_from(n).unwrap_or(0).saturating_mul(*unit_us);
            Ok(Some(Duration::from_micros(us.min(crate::config::MAX_DURATION.as_micros() as u64))))
        }
        Action::Sql { .. } => Ok(None),
    }
}

/// A transaction's statements with `vars` substituted, its `\set`s applied in order.
fn ready(actions: &[Action], vars: &mut HashMap<String, Value>, rng: &mut fastrand::Rng) -> std::result::Result<Vec<Ready>, String> {
    let mut out = Vec::new();
    for a in actions {
        match a {
            Action::Sql { parts, .. } => {
                let mut text = String::new();
                for p in parts {
                    match p {
                        SqlPart::Text(t) => text.push_str(t),
                        SqlPart::Var(v) => text.push_str(&vars.get(v).ok_or_else(|| format!("variable :{v} is not set"))?.sql_text()),
                    }
                }
                out.push(Ready::Sql(text));
            }
            other => {
                if let Some(d) = meta(other, vars, rng)? {
                    out.push(Ready::Sleep(d));
                }
            }
        }
    }
    Ok(out)
}

/// One client running a script.
pub struct ScriptWorker {
    conn: SqlConn,
    script: Arc<Script>,
    /// The script's transactions, counted once.
    transactions: u32,
    /// Variables persist from one run of the script to the next, as in pgbench.
    vars: HashMap<String, Value>,
}

impl ScriptWorker {
    /// Client `client_id` of `url`; connections are retired after [`super::CONN_LIFETIME`],
    /// as the bank's are, so a drain moves clients without an error.
    pub fn new(url: &str, script: Arc<Script>, client_id: usize, op_timeout: Duration) -> Self {
        let vars = HashMap::from([("client_id".to_string(), Value::Int(client_id as i64))]);
        let transactions = script.units.iter().filter(|u| matches!(u, Unit::Transaction { .. })).count() as u32;
        Self { conn: SqlConn::new(url, op_timeout, Vec::new(), Some(super::CONN_LIFETIME)), script, transactions, vars }
    }
}

impl Worker for ScriptWorker {
    fn op<'a>(&'a mut self, rng: &'a mut fastrand::Rng) -> BoxFuture<'a, (OpDetail, OpResult)> {
        Box::pin(async move {
            let mut op = ScriptOp { transactions: self.transactions, committed: 0 };
            let mut total = OpResult { outcome: Outcome::Ok, retries: 0, reconnects: 0, error: None };
            let script = self.script.clone();
            for unit in &script.units {
                let actions = match unit {
                    Unit::Meta(a) => match meta(a, &mut self.vars, rng) {
                        Ok(Some(d)) => {
                            tokio::time::sleep(d).await;
                            continue;
                        }
                        Ok(None) => continue,
                        Err(e) => {
                            total.outcome = Outcome::Fail;
                            total.error = Some(e);
                            break;
                        }
                    },
                    Unit::Transaction { actions, .. } => actions,
                };
                let steps = match ready(actions, &mut self.vars, rng) {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        // Nothing of this transaction was sent.
                        total.outcome = Outcome::Fail;
                        total.error = Some(e);
                        break;
                    }
                };
                let r = self
                    .conn
                    .transaction(move |c, _| {
                        let steps = steps.clone();
                        Box::pin(async move {
                            c.batch_execute("BEGIN").await?;
                            for s in steps.iter() {
                                match s {
                                    Ready::Sql(text) => c.batch_execute(text).await?,
                                    Ready::Sleep(d) => tokio::time::sleep(*d).await,
                                }
                            }
                            Ok(())
                        })
                    })
                    .await;
                total.retries += r.retries;
                total.reconnects += r.reconnects;
                if r.outcome != Outcome::Ok {
                    total.outcome = r.outcome;
                    total.error = r.error;
                    break;
                }
                op.committed += 1;
            }
            (OpDetail::Script(op), total)
        })
    }
}

/// How long a SQL file run as it stands may take (a schema and its seed rows).
const RUN_FILE_WAIT: Duration = Duration::from_secs(600);

/// Runs the SQL file `file` as it stands on `url` (`workload init script`, a drill's
/// `[workload] init`): its statements in one simple query, bounded by 10 minutes.
///
/// Errors: the file cannot be read; the server refuses a statement (named with the file).
pub async fn run_file(url: &str, file: &Path) -> Result<()> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(format!("cannot read {}", file.display()), e))?;
    let c = sql::connect_retrying(url, Duration::from_secs(30), sql::INIT_CONNECT_RETRY_FOR).await?;
    tokio::time::timeout(RUN_FILE_WAIT, c.batch_execute(&text))
        .await
        .map_err(|_| Error::Timeout { what: format!("{} to run", file.display()), after_ms: RUN_FILE_WAIT.as_millis() as u64 })?
        .map_err(|e| Error::engine("sql", format!("{}: {}", file.display(), sql::describe(&e))))
}

/// `--check`: runs `query` (no placeholders) on `url`, which must return one row whose first
/// column is a boolean. Returns `None` when it is `true`, else what came back (`false`, NULL,
/// no row). Errors: the query cannot run, or its first column is not a boolean.
pub async fn check(url: &str, query: &str) -> Result<Option<String>> {
    let stmt = TypedSql::new(query, &[]).map_err(|e| Error::Refused(format!("--check: {e}: the check takes no parameters")))?;
    let c = sql::connect(url, Duration::from_secs(30)).await?;
    let rows = stmt.fetch(&c, &[]).await.map_err(|e| Error::engine("sql", format!("--check `{query}`: {}", sql::describe(&e))))?;
    let Some(row) = rows.first() else {
        return Ok(Some(format!("`{query}` returned no row (it must return one boolean)")));
    };
    match row.try_get::<_, Option<bool>>(0) {
        Ok(Some(true)) => Ok(None),
        Ok(v) => Ok(Some(format!("`{query}` returned {}", v.map_or("NULL".to_string(), |b| b.to_string())))),
        Err(_) => Err(Error::Refused(format!(
            "--check `{query}` must return a boolean in its first column (e.g. `SELECT count(*) > 0 FROM …`), not {}",
            row.columns().first().map_or("no column".to_string(), |c| c.type_().name().to_string())
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_is_made_ready_with_its_values_and_sleeps() {
        let s = parse_text("\\set a 3\nBEGIN;\n\\set b :a * 2\nSELECT :a + :b;\n\\sleep :b ms\nCOMMIT;\n", "t.sql").unwrap();
        let mut vars = HashMap::new();
        let mut rng = fastrand::Rng::with_seed(1);
        let Unit::Meta(set) = &s.units[0] else { panic!("{s:?}") };
        assert_eq!(meta(set, &mut vars, &mut rng), Ok(None));
        let Unit::Transaction { actions, .. } = &s.units[1] else { panic!("{s:?}") };
        assert_eq!(
            ready(actions, &mut vars, &mut rng).unwrap(),
            vec![Ready::Sql("SELECT 3 + 6".into()), Ready::Sleep(Duration::from_millis(6))]
        );
    }

    #[test]
    fn parse_errors_name_the_file_line_and_column() {
        let e = parse_text("SELECT 1;\n\n  \\set x random(1)\n", "workloads/x.sql").unwrap_err();
        assert!(e.to_string().starts_with("workloads/x.sql:3:10: `random` takes 2 argument(s)"), "{e}");
    }

    /// The shipped example parses, and what it reads is set.
    #[test]
    fn the_stations_script_parses() {
        let s = parse_text(include_str!("../../../workloads/stations.sql"), "stations.sql").unwrap();
        assert!(s.units.iter().filter(|u| matches!(u, Unit::Transaction { .. })).count() >= 2, "{s:?}");
        assert!(s.check.as_deref().is_some_and(|c| c.starts_with("SELECT (SELECT COALESCE(sum(readings)")), "{s:?}");
    }
}
