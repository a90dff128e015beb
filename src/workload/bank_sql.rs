//! The bank workload over the PostgreSQL wire protocol (CockroachDB or PostgreSQL), with the
//! outcome rules of [`super::sql`].

use std::collections::HashSet;
use std::time::Duration;

use futures_util::future::BoxFuture;
use uuid::Uuid;

pub use crate::sql::{connect, dialect, Dialect};
use tokio_postgres::types::Type;

use super::sql::SqlConn;
use super::{CheckReport, OpRecord, OpResult, Transfer, Transferer};
use crate::sql::{run_prepared, sql_err, TypedSql};
use crate::Result;

/// The schema (`workloads/bank.sql`).
pub const SCHEMA: &str = include_str!("../../workloads/bank.sql");
/// One transfer (`workloads/bank-transfer.sql`): the UPDATE, then the history INSERT.
pub const TRANSFER: &str = include_str!("../../workloads/bank-transfer.sql");

/// `bank init` options (those of `cockroach workload init bank`).
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub rows: i64,
    pub payload_bytes: usize,
    /// Ranges to split `bank.bank` into (CockroachDB only).
    pub ranges: i64,
}

/// `workload init bank`: (re)creates the schema and `rows` accounts at balance 0; on
/// CockroachDB, splits `bank.bank` into `ranges` ranges at `(i+1)*rows/ranges`.
pub async fn init(url: &str, opts: &InitOptions) -> Result<Dialect> {
    let client = crate::sql::connect_retrying(url, Duration::from_secs(60), crate::sql::INIT_CONNECT_RETRY_FOR).await?;
    let d = dialect(&client).await?;
    let container = match d {
        Dialect::CockroachDb => "CREATE DATABASE IF NOT EXISTS bank",
        Dialect::PostgreSql => "CREATE SCHEMA IF NOT EXISTS bank",
    };
    client.batch_execute(container).await.map_err(|e| sql_err(url, &e))?;
    client.batch_execute(SCHEMA).await.map_err(|e| sql_err(url, &e))?;
    // The payload is built here and sent as TEXT: `repeat('x', $3)` would need an INT4 on
    // PostgreSQL (no implicit INT8 → INT4 cast for function arguments) and an INT on
    // CockroachDB; a TEXT parameter into a TEXT column means the same on both.
    let insert = init_insert();
    let payload = "x".repeat(opts.payload_bytes);
    let batch = 10_000i64;
    let mut lo = 0;
    while lo < opts.rows {
        let hi = (lo + batch).min(opts.rows) - 1;
        insert.run(&client, &[&lo, &hi, &payload]).await.map_err(|e| sql_err(url, &e))?;
        lo = hi + 1;
    }
    if d == Dialect::CockroachDb && opts.ranges > 1 {
        let points: Vec<String> = (0..opts.ranges - 1).map(|i| format!("({})", (i + 1) * opts.rows / opts.ranges)).collect();
        let split = format!("ALTER TABLE bank.bank SPLIT AT VALUES {}", points.join(", "));
        client.batch_execute(&split).await.map_err(|e| sql_err(url, &e))?;
    }
    Ok(d)
}

/// The number of accounts in `bank.bank`.
pub async fn rows(url: &str) -> Result<i64> {
    let client = connect(url, Duration::from_secs(30)).await?;
    let rows = TypedSql::fixed("SELECT count(*) FROM bank.bank", &[]).fetch(&client, &[]).await.map_err(|e| sql_err(url, &e))?;
    Ok(rows.first().map(|r| r.get(0)).unwrap_or(0))
}

fn strip_comments(s: &str) -> String {
    s.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n").trim().to_string()
}

/// `bank init`'s row generator: `$1` first id, `$2` last id (INT8), `$3` payload (TEXT).
fn init_insert() -> TypedSql {
    TypedSql::fixed(
        "INSERT INTO bank.bank (id, balance, payload) SELECT i, 0, $3 FROM generate_series($1, $2) AS g(i)",
        &[Type::INT8, Type::INT8, Type::TEXT],
    )
}

/// The two statements of `workloads/bank-transfer.sql`, typed: the UPDATE (`$1` from, `$2`
/// to, `$3` amount: INT8) and the history INSERT (the same, and `$4` transfer id: UUID).
fn transfer_statements() -> (TypedSql, TypedSql) {
    let mut parts = TRANSFER.split(';').map(strip_comments).filter(|s| !s.is_empty());
    let update = parts.next().unwrap_or_default();
    let insert = parts.next().unwrap_or_default();
    (
        TypedSql::fixed(&update, &[Type::INT8, Type::INT8, Type::INT8]),
        TypedSql::fixed(&insert, &[Type::INT8, Type::INT8, Type::INT8, Type::UUID]),
    )
}

/// One worker's connection: a transfer is the UPDATE and the history INSERT in one
/// transaction, under [`SqlConn::transaction`]'s outcome rules.
pub struct SqlTransferer {
    conn: SqlConn,
}

impl SqlTransferer {
    pub fn new(url: &str, op_timeout: Duration) -> Self {
        let (update, insert) = transfer_statements();
        Self { conn: SqlConn::new(url, op_timeout, vec![update, insert], Some(super::CONN_LIFETIME)) }
    }
}

impl Transferer for SqlTransferer {
    fn transfer<'a>(&'a mut self, t: &'a Transfer) -> BoxFuture<'a, OpResult> {
        let t = *t;
        Box::pin(self.conn.transaction(move |c, s| {
            Box::pin(async move {
                c.batch_execute("BEGIN").await?;
                run_prepared(c, &s[0], &[&t.from, &t.to, &t.amount]).await?;
                run_prepared(c, &s[1], &[&t.from, &t.to, &t.amount, &t.id]).await?;
                Ok(())
            })
        }))
    }
}

/// `workload check bank`: the total is 0, every balance equals its history, and the last
/// run's log agrees with the history (`ops` empty when there is no log).
pub async fn check(url: &str, ops: &[OpRecord]) -> Result<CheckReport> {
    let client = connect(url, Duration::from_secs(60)).await?;
    let q = |sql: &'static str| {
        let client = &client;
        async move { TypedSql::fixed(sql, &[]).fetch(client, &[]).await.map_err(|e| sql_err(url, &e)) }
    };
    let mut r = CheckReport::default();
    let totals = q("SELECT count(*), COALESCE(sum(balance), 0)::INT8 FROM bank.bank").await?;
    r.accounts = totals[0].get::<_, i64>(0) as u64;
    r.total_balance = totals[0].get(1);
    if r.total_balance != 0 {
        r.violations.push(format!("the total balance is {}, not 0: money was created or destroyed", r.total_balance));
    }
    let wrong = q("SELECT b.id, b.balance, (COALESCE(i.s, 0) - COALESCE(o.s, 0))::INT8 AS expected \
                   FROM bank.bank AS b \
                   LEFT JOIN (SELECT to_id, sum(amount) AS s FROM bank.transfers GROUP BY to_id) AS i ON i.to_id = b.id \
                   LEFT JOIN (SELECT from_id, sum(amount) AS s FROM bank.transfers GROUP BY from_id) AS o ON o.from_id = b.id \
                   WHERE b.balance != COALESCE(i.s, 0) - COALESCE(o.s, 0) ORDER BY b.id LIMIT 20")
    .await?;
    for row in &wrong {
        let (id, balance, expected): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        r.violations.push(format!("account {id}: balance {balance}, but its history (incoming − outgoing) says {expected}"));
    }
    let ids = q("SELECT id FROM bank.transfers").await?;
    let history: HashSet<Uuid> = ids.iter().map(|row| row.get(0)).collect();
    r.transfers_in_history = history.len() as u64;
    r.compare_log(ops, &history);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_script_yields_the_update_and_the_insert_typed() {
        let (update, insert) = transfer_statements();
        assert!(update.sql().starts_with("UPDATE bank.bank SET balance = CASE id WHEN $1"), "{update:?}");
        assert_eq!(update.types(), &[Type::INT8, Type::INT8, Type::INT8]);
        assert!(insert.sql().starts_with("INSERT INTO bank.transfers"), "{insert:?}");
        assert_eq!(insert.types(), &[Type::INT8, Type::INT8, Type::INT8, Type::UUID]);
        // No cast on a placeholder: CockroachDB v20.1 typed `$1::INT8` as STRING (contract §5).
        assert!(!init_insert().sql().contains("$1::") && !update.sql().contains("::"));
    }
}
