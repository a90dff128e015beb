//! pgbench's TPC-B-like workload over the PostgreSQL wire protocol (PostgreSQL or
//! CockroachDB), with the bank's outcome classes, retries and reconnects.
//!
//! Each transaction sends BEGIN and its five statements pipelined (one round trip; the
//! server runs them in order), then COMMIT on its own once they all succeeded (see
//! [`SqlConn::transaction`]).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use tokio_postgres::types::Type;

use super::sql::SqlConn;
use super::{OpDetail, OpResult, TpcbOp, Worker};
use crate::sql::{self, run_prepared, Dialect, TypedSql};
use crate::{Error, Result};

/// The schema (`workloads/tpcb.sql`).
pub const SCHEMA: &str = include_str!("../../workloads/tpcb.sql");
/// The transaction (`workloads/tpcb-transaction.sql`).
pub const TRANSACTION: &str = include_str!("../../workloads/tpcb-transaction.sql");

/// A script variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Aid,
    Bid,
    Tid,
    Delta,
}

/// The transaction's statements with pgbench's `:name` variables turned into positional
/// parameters (`$1`, numbered per statement, each typed INT8), and the variable behind each
/// parameter. No cast is written on a placeholder: the type travels with the statement
/// ([`TypedSql`]); PostgreSQL compares and assigns INT8 to its INT4 columns, CockroachDB's INT
/// is INT8.
fn statements() -> Vec<(TypedSql, Vec<Var>)> {
    TRANSACTION
        .split(';')
        .map(|s| s.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n").trim().to_string())
        .filter(|s| !s.is_empty())
        .map(|stmt| {
            let mut sql = String::new();
            let mut vars: Vec<Var> = Vec::new();
            let mut rest = stmt.as_str();
            while let Some(i) = rest.find(':') {
                sql.push_str(&rest[..i]);
                let after = &rest[i + 1..];
                let name_len = after.find(|c: char| !c.is_ascii_lowercase()).unwrap_or(after.len());
                let var = match &after[..name_len] {
                    "aid" => Some(Var::Aid),
                    "bid" => Some(Var::Bid),
                    "tid" => Some(Var::Tid),
                    "delta" => Some(Var::Delta),
                    _ => None,
                };
                match var {
                    Some(v) => {
                        let n = vars.iter().position(|x| *x == v).unwrap_or_else(|| {
                            vars.push(v);
                            vars.len() - 1
                        });
                        sql.push_str(&format!("${}", n + 1));
                        rest = &after[name_len..];
                    }
                    None => {
                        sql.push(':');
                        rest = after;
                    }
                }
            }
            sql.push_str(rest);
            (TypedSql::fixed(&sql, &vec![Type::INT8; vars.len()]), vars)
        })
        .collect()
}

fn err(e: tokio_postgres::Error) -> Error {
    Error::engine("sql", sql::describe(&e))
}

/// `workload init tpcb`: pgbench's tables at `scale`, loaded server-side.
pub async fn init(url: &str, scale: i64) -> Result<Dialect> {
    let c = sql::connect_retrying(url, Duration::from_secs(600), sql::INIT_CONNECT_RETRY_FOR).await?;
    let d = sql::dialect(&c).await?;
    c.batch_execute(SCHEMA).await.map_err(err)?;
    let [branches, tellers, accounts] = init_statements();
    branches.run(&c, &[&scale]).await.map_err(err)?;
    tellers.run(&c, &[&scale]).await.map_err(err)?;
    // Accounts in batches of 100000 (one branch each), so CockroachDB's transactions stay small.
    for b in 0..scale {
        accounts.run(&c, &[&(b * 100_000 + 1), &((b + 1) * 100_000), &(b + 1)]).await.map_err(err)?;
    }
    if d == Dialect::PostgreSql {
        c.batch_execute("VACUUM ANALYZE pgbench_branches, pgbench_tellers, pgbench_accounts, pgbench_history").await.map_err(err)?;
    }
    Ok(d)
}

/// `tpcb init`'s loaders, every parameter INT8: branches 1..=`$1`, ten tellers for each of
/// branches 1..=`$1` (teller `(b − 1) × 10 + t` of branch `b`, pgbench's layout: teller `i`
/// belongs to branch `(i − 1) / 10 + 1`), accounts `$1..=$2` of branch `$3`.
///
/// No division: `INT / INT` is DECIMAL on CockroachDB (v20.1.5: `unsupported binary operator:
/// <decimal> + <int> (desired <int>)`, SQLSTATE 22023; docs "Operators": `/` on two INTs yields
/// DECIMAL, `//` is floor division) but integer division on PostgreSQL; a cross join of two
/// series computes the same rows with `+` and `*` only, which type as INT on both.
fn init_statements() -> [TypedSql; 3] {
    [
        TypedSql::fixed("INSERT INTO pgbench_branches (bid, bbalance) SELECT i, 0 FROM generate_series(1, $1) AS g(i)", &[Type::INT8]),
        TypedSql::fixed(
            "INSERT INTO pgbench_tellers (tid, bid, tbalance) \
             SELECT (b - 1) * 10 + t, b, 0 FROM generate_series(1, $1) AS g(b), generate_series(1, 10) AS h(t)",
            &[Type::INT8],
        ),
        TypedSql::fixed(
            "INSERT INTO pgbench_accounts (aid, bid, abalance, filler) SELECT i, $3, 0, '' FROM generate_series($1, $2) AS g(i)",
            &[Type::INT8, Type::INT8, Type::INT8],
        ),
    ]
}

/// The scale of an initialised database: the number of branches.
pub async fn scale(url: &str) -> Result<i64> {
    let c = sql::connect(url, Duration::from_secs(30)).await?;
    let rows = TypedSql::fixed("SELECT count(*) FROM pgbench_branches", &[]).fetch(&c, &[]).await.map_err(err)?;
    Ok(rows.first().map(|r| r.get(0)).unwrap_or(0))
}

/// Sums that must agree after any number of committed TPC-B transactions: every delta is
/// added to one account, one teller and one branch, and logged once in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub history_rows: i64,
    pub sum_delta: i64,
    pub sum_abalance: i64,
    pub sum_tbalance: i64,
    pub sum_bbalance: i64,
}

impl Totals {
    /// The sums disagree (money appeared or vanished).
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        for (name, sum) in [("accounts", self.sum_abalance), ("tellers", self.sum_tbalance), ("branches", self.sum_bbalance)] {
            if sum != self.sum_delta {
                v.push(format!("sum of {name} balances is {sum}, but the history's deltas sum to {}", self.sum_delta));
            }
        }
        v
    }
}

/// Reads the [`Totals`].
pub async fn totals(url: &str) -> Result<Totals> {
    let c = sql::connect(url, Duration::from_secs(120)).await?;
    let q = |sql: &'static str| {
        let c = &c;
        async move {
            let rows = TypedSql::fixed(sql, &[]).fetch(c, &[]).await.map_err(err)?;
            rows.first().map(|r| r.get::<_, i64>(0)).ok_or_else(|| Error::engine("sql", format!("`{sql}` returned no row")))
        }
    };
    Ok(Totals {
        history_rows: q("SELECT count(*) FROM pgbench_history").await?,
        sum_delta: q("SELECT COALESCE(sum(delta), 0)::INT8 FROM pgbench_history").await?,
        sum_abalance: q("SELECT COALESCE(sum(abalance), 0)::INT8 FROM pgbench_accounts").await?,
        sum_tbalance: q("SELECT COALESCE(sum(tbalance), 0)::INT8 FROM pgbench_tellers").await?,
        sum_bbalance: q("SELECT COALESCE(sum(bbalance), 0)::INT8 FROM pgbench_branches").await?,
    })
}

/// One TPC-B client: pgbench's transaction under [`SqlConn::transaction`]'s outcome rules,
/// BEGIN and the five statements pipelined in one round trip.
pub struct TpcbWorker {
    conn: SqlConn,
    /// COMMIT pipelined behind the statements: one round trip, but a lost connection is
    /// `ambiguous` ([`SqlConn::transaction_parts`]).
    one_round_trip: bool,
    /// The script variable behind each parameter of each statement.
    vars: Arc<Vec<Vec<Var>>>,
    scale: i64,
}

impl TpcbWorker {
    pub fn new(url: &str, scale: i64, op_timeout: Duration, one_round_trip: bool) -> Self {
        let (sqls, vars): (Vec<TypedSql>, Vec<Vec<Var>>) = statements().into_iter().unzip();
        // pgbench keeps its connections for the whole run; so does tpcb (it is compared with
        // pgbench), so no lifetime.
        Self { conn: SqlConn::new(url, op_timeout, sqls, None), one_round_trip, vars: Arc::new(vars), scale }
    }
}

impl Worker for TpcbWorker {
    fn op<'a>(&'a mut self, rng: &'a mut fastrand::Rng) -> BoxFuture<'a, (OpDetail, OpResult)> {
        Box::pin(async move {
            let op = TpcbOp {
                aid: rng.i64(1..=100_000 * self.scale),
                bid: rng.i64(1..=self.scale),
                tid: rng.i64(1..=10 * self.scale),
                delta: rng.i64(-5000..=5000),
            };
            let vars = self.vars.clone();
            let one_round_trip = self.one_round_trip;
            let res = self
                .conn
                .transaction_parts(one_round_trip, move |c, s| {
                    let vars = vars.clone();
                    Box::pin(async move {
                        let value = |v: &Var| -> &(dyn tokio_postgres::types::ToSql + Sync) {
                            match v {
                                Var::Aid => &op.aid,
                                Var::Bid => &op.bid,
                                Var::Tid => &op.tid,
                                Var::Delta => &op.delta,
                            }
                        };
                        let params: Vec<Vec<&(dyn tokio_postgres::types::ToSql + Sync)>> =
                            vars.iter().map(|vs| vs.iter().map(value).collect()).collect();
                        // Sent in this order on one connection: one round trip for all of them
                        // (with COMMIT last when `one_round_trip`).
                        let statements = params.iter().zip(s).map(|(p, stmt)| run_prepared(c, stmt, p));
                        let commit = async {
                            if one_round_trip {
                                Some(c.batch_execute("COMMIT").await)
                            } else {
                                None
                            }
                        };
                        let (begin, results, commit) =
                            futures_util::join!(c.batch_execute("BEGIN"), futures_util::future::join_all(statements), commit);
                        let statements = begin.and_then(|()| results.into_iter().collect::<std::result::Result<Vec<_>, _>>().map(drop));
                        (statements, commit)
                    })
                })
                .await;
            (OpDetail::Tpcb(op), res)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transaction_has_pgbench_statements_with_per_statement_parameters() {
        let s = statements();
        assert_eq!(s.len(), 5);
        assert_eq!(s[0].0.sql(), "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2");
        assert_eq!(s[0].1, vec![Var::Delta, Var::Aid]);
        assert_eq!(s[1].0.sql(), "SELECT abalance FROM pgbench_accounts WHERE aid = $1");
        assert!(s[2].0.sql().starts_with("UPDATE pgbench_tellers") && s[3].0.sql().starts_with("UPDATE pgbench_branches"));
        assert_eq!(s[4].0.sql(), "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)");
        assert_eq!(s[4].1, vec![Var::Tid, Var::Bid, Var::Aid, Var::Delta]);
        for (stmt, vars) in &s {
            assert_eq!(stmt.types(), vec![Type::INT8; vars.len()].as_slice(), "{stmt:?}");
        }
        assert_eq!(init_statements().map(|s| s.types().len()), [1, 1, 3]);
    }

    #[test]
    fn totals_that_disagree_are_named() {
        let t = Totals { history_rows: 3, sum_delta: 10, sum_abalance: 10, sum_tbalance: 9, sum_bbalance: 10 };
        assert_eq!(t.violations(), vec!["sum of tellers balances is 9, but the history's deltas sum to 10".to_string()]);
    }
}
