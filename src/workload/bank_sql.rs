//! The bank workload over the PostgreSQL wire protocol (CockroachDB or PostgreSQL).
//!
//! Outcome rules (contract §5): SQLSTATE 40001 (`restart transaction`) anywhere is retried
//! with backoff and counted as a retry. An error before COMMIT is sent is `fail`: the server
//! rolls the transaction back (explicitly, or when the connection closes). At COMMIT, any
//! error other than 40001 — 40003 `result is ambiguous`, 57P01 from a draining node, a lost
//! connection, a timeout — is `ambiguous`. Every operation carries a statement timeout so
//! nothing hangs when quorum is lost.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Statement};
use uuid::Uuid;

use super::{CheckReport, OpRecord, OpResult, Outcome, Transfer, Transferer};
use crate::{Error, Result};

/// The schema (`workloads/bank.sql`).
pub const SCHEMA: &str = include_str!("../../workloads/bank.sql");
/// One transfer (`workloads/bank-transfer.sql`): the UPDATE, then the history INSERT.
pub const TRANSFER: &str = include_str!("../../workloads/bank-transfer.sql");

/// Which server speaks on the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    CockroachDb,
    PostgreSql,
}

/// `bank init` options (those of `cockroach workload init bank`).
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub rows: i64,
    pub payload_bytes: usize,
    /// Ranges to split `bank.bank` into (CockroachDB only).
    pub ranges: i64,
}

fn sql_err(url: &str, e: &tokio_postgres::Error) -> Error {
    let detail = match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => describe_pg_error(e),
    };
    Error::Engine { engine: "sql".into(), message: format!("{}: {detail}", redact(url)) }
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if url[s + 3..at].contains(':') => {
            let user_end = url[s + 3..at].find(':').map(|i| s + 3 + i).unwrap_or(at);
            format!("{}:***{}", &url[..user_end], &url[at..])
        }
        _ => url.to_string(),
    }
}

fn describe_pg_error(e: &tokio_postgres::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}

/// Connects with a statement timeout of `op_timeout` (so a server without quorum answers with
/// an error instead of hanging) and a connect timeout of the same.
pub async fn connect(url: &str, op_timeout: Duration) -> Result<Client> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| Error::ConfigInvalid { origin: "--url".into(), message: format!("{} is not a PostgreSQL URL: {e}", redact(url)) })?;
    config.connect_timeout(op_timeout);
    config.options(format!("-c statement_timeout={}", op_timeout.as_millis()));
    let (client, conn) = match tokio::time::timeout(op_timeout, config.connect(NoTls)).await {
        Ok(r) => r.map_err(|e| sql_err(url, &e))?,
        Err(_) => return Err(Error::Timeout { what: format!("connecting to {}", redact(url)), after_ms: op_timeout.as_millis() as u64 }),
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Asks the server what it is.
pub async fn dialect(client: &Client) -> Result<Dialect> {
    let row = client.query_one("SELECT version()", &[]).await.map_err(|e| Error::engine("sql", describe_pg_error(&e)))?;
    let v: String = row.get(0);
    Ok(if v.contains("CockroachDB") { Dialect::CockroachDb } else { Dialect::PostgreSql })
}

/// `workload init bank`: (re)creates the schema and `rows` accounts at balance 0; on
/// CockroachDB, splits `bank.bank` into `ranges` ranges at `(i+1)*rows/ranges`.
pub async fn init(url: &str, opts: &InitOptions) -> Result<Dialect> {
    let client = connect(url, Duration::from_secs(60)).await?;
    let d = dialect(&client).await?;
    let container = match d {
        Dialect::CockroachDb => "CREATE DATABASE IF NOT EXISTS bank",
        Dialect::PostgreSql => "CREATE SCHEMA IF NOT EXISTS bank",
    };
    client.batch_execute(container).await.map_err(|e| sql_err(url, &e))?;
    client.batch_execute(SCHEMA).await.map_err(|e| sql_err(url, &e))?;
    let insert = "INSERT INTO bank.bank (id, balance, payload) SELECT i, 0, repeat('x', $3::INT8::INT4) FROM generate_series($1::INT8, $2::INT8) AS g(i)";
    let batch = 10_000i64;
    let mut lo = 0;
    while lo < opts.rows {
        let hi = (lo + batch).min(opts.rows) - 1;
        client.execute(insert, &[&lo, &hi, &(opts.payload_bytes as i64)]).await.map_err(|e| sql_err(url, &e))?;
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
    let row = client.query_one("SELECT count(*) FROM bank.bank", &[]).await.map_err(|e| sql_err(url, &e))?;
    Ok(row.get(0))
}

/// One worker's connection.
pub struct SqlTransferer {
    url: String,
    op_timeout: Duration,
    conn: Option<(Client, Statement, Statement)>,
    /// A connection existed and was lost: the next successful connect is a reconnect.
    lost: bool,
    backoff: Duration,
}

impl SqlTransferer {
    pub fn new(url: &str, op_timeout: Duration) -> Self {
        Self { url: url.to_string(), op_timeout, conn: None, lost: false, backoff: Duration::from_millis(50) }
    }

    /// Connects if needed, with backoff between failed attempts. Returns whether this was a
    /// reconnect.
    async fn ensure(&mut self) -> std::result::Result<bool, String> {
        if let Some((c, _, _)) = &self.conn {
            if !c.is_closed() {
                return Ok(false);
            }
            self.conn = None;
            self.lost = true;
        }
        let attempt = async {
            let client = connect(&self.url, self.op_timeout).await.map_err(|e| e.to_string())?;
            let (update_sql, insert_sql) = transfer_statements();
            let update = client.prepare(&update_sql).await.map_err(|e| describe_pg_error(&e))?;
            let insert = client.prepare(&insert_sql).await.map_err(|e| describe_pg_error(&e))?;
            Ok::<_, String>((client, update, insert))
        };
        match attempt.await {
            Ok(c) => {
                self.conn = Some(c);
                self.backoff = Duration::from_millis(50);
                let reconnect = self.lost;
                self.lost = false;
                Ok(reconnect)
            }
            Err(e) => {
                tokio::time::sleep(self.backoff).await;
                self.backoff = (self.backoff * 2).min(Duration::from_secs(1));
                Err(format!("cannot connect: {e}"))
            }
        }
    }

    fn drop_conn(&mut self) {
        if self.conn.take().is_some() {
            self.lost = true;
        }
    }
}

fn strip_comments(s: &str) -> String {
    s.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n").trim().to_string()
}

/// The two statements of `workloads/bank-transfer.sql`: (UPDATE, INSERT).
fn transfer_statements() -> (String, String) {
    let mut parts = TRANSFER.split(';').map(strip_comments).filter(|s| !s.is_empty());
    let update = parts.next().unwrap_or_default();
    let insert = parts.next().unwrap_or_default();
    (update, insert)
}

/// SQLSTATE 40001: the transaction must be retried.
pub(crate) fn is_retry(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
}

/// A one-line description: the server's message and SQLSTATE, or the transport error.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => describe_pg_error(e),
    }
}

/// Most retries of one transfer before it counts as failed.
const MAX_RETRIES: u32 = 30;

impl Transferer for SqlTransferer {
    fn transfer<'a>(&'a mut self, t: &'a Transfer) -> BoxFuture<'a, OpResult> {
        Box::pin(async move {
            let mut res = OpResult { outcome: Outcome::Fail, retries: 0, reconnects: 0, error: None };
            let started = Instant::now();
            loop {
                match self.ensure().await {
                    Ok(true) => res.reconnects += 1,
                    Ok(false) => {}
                    Err(e) => {
                        res.error = Some(e);
                        return res; // fail: nothing was sent
                    }
                }
                let (client, update, insert) = self.conn.as_ref().expect("connected");
                let body = async {
                    client.batch_execute("BEGIN").await?;
                    client.execute(update, &[&t.from, &t.to, &t.amount]).await?;
                    client.execute(insert, &[&t.from, &t.to, &t.amount, &t.id]).await?;
                    Ok::<_, tokio_postgres::Error>(())
                };
                match tokio::time::timeout(self.op_timeout, body).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        let retry = is_retry(&e);
                        res.error = Some(describe(&e));
                        if client.is_closed() {
                            self.drop_conn();
                        } else {
                            let _ = tokio::time::timeout(self.op_timeout, client.batch_execute("ROLLBACK")).await;
                        }
                        if retry && res.retries < MAX_RETRIES && started.elapsed() < self.op_timeout * 3 {
                            res.retries += 1;
                            tokio::time::sleep(Duration::from_millis(5 << res.retries.min(6))).await;
                            continue;
                        }
                        return res; // fail: COMMIT was never sent
                    }
                    Err(_) => {
                        res.error = Some(format!("timed out after {} ms before COMMIT", self.op_timeout.as_millis()));
                        self.drop_conn(); // the connection is mid-transaction: abandon it
                        return res;
                    }
                }
                let (client, _, _) = self.conn.as_ref().expect("connected");
                match tokio::time::timeout(self.op_timeout, client.batch_execute("COMMIT")).await {
                    Ok(Ok(())) => {
                        res.outcome = Outcome::Ok;
                        res.error = None;
                        return res;
                    }
                    Ok(Err(e)) if is_retry(&e) && res.retries < MAX_RETRIES => {
                        // A retry error at COMMIT: the transaction did not commit.
                        res.retries += 1;
                        res.error = Some(describe(&e));
                        if client.is_closed() {
                            self.drop_conn();
                        }
                        tokio::time::sleep(Duration::from_millis(5 << res.retries.min(6))).await;
                        continue;
                    }
                    Ok(Err(e)) => {
                        res.outcome = Outcome::Ambiguous;
                        res.error = Some(format!("at COMMIT: {}", describe(&e)));
                        if client.is_closed() {
                            self.drop_conn();
                        }
                        return res;
                    }
                    Err(_) => {
                        res.outcome = Outcome::Ambiguous;
                        res.error = Some(format!("COMMIT timed out after {} ms", self.op_timeout.as_millis()));
                        self.drop_conn();
                        return res;
                    }
                }
            }
        })
    }
}

/// `workload check bank`: the total is 0, every balance equals its history, and the last
/// run's log agrees with the history (`ops` empty when there is no log).
pub async fn check(url: &str, ops: &[OpRecord]) -> Result<CheckReport> {
    let client = connect(url, Duration::from_secs(60)).await?;
    let q = |sql: &'static str| {
        let client = &client;
        async move { client.query(sql, &[]).await.map_err(|e| sql_err(url, &e)) }
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
    fn transfer_script_yields_the_update_and_the_insert() {
        let (update, insert) = transfer_statements();
        assert!(update.starts_with("UPDATE bank.bank SET balance = CASE id WHEN $1"), "{update}");
        assert!(insert.starts_with("INSERT INTO bank.transfers"), "{insert}");
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(redact("postgres://bob:secret@127.0.0.1:5432/db"), "postgres://bob:***@127.0.0.1:5432/db");
        assert_eq!(redact("postgresql://root@127.0.0.1:26257/defaultdb"), "postgresql://root@127.0.0.1:26257/defaultdb");
    }
}
