//! The one transaction protocol of the SQL workloads (bank, tpcb), with roachlab's outcome
//! rules (contract §5):
//!
//! - SQLSTATE 40001 (`restart transaction`), in the body or at COMMIT, is retried with backoff
//!   and counted as a retry: the transaction did not commit.
//! - A transaction that provably never reached COMMIT because its connection went away — the
//!   connect failed, the connection was found closed or broke before COMMIT was sent, or the
//!   server said it is shutting down (SQLSTATE class 08 connection exception, 57P01
//!   admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now: what a draining
//!   CockroachDB node and a stopping PostgreSQL answer) — is retried on a new connection and
//!   counted as a retry, while time is left within the operation's timeout. Safe: without
//!   COMMIT the server rolls the transaction back, so nothing of it was applied.
//! - Any other error before COMMIT is sent is `fail`: the server rolls the transaction back
//!   (on ROLLBACK, or when the connection closes).
//! - At COMMIT, any other error — 40003 `result is ambiguous`, 57P01 from a draining node, a
//!   lost connection, a timeout — is `ambiguous`.
//! - With COMMIT pipelined behind the statements ([`SqlConn::transaction_parts`], tpcb's
//!   `--one-round-trip`): a statement's server error still proves the abort (the COMMIT
//!   behind it only rolls back), but a lost connection or a timeout is `ambiguous`, since
//!   COMMIT may have been applied.
//! - Every statement carries a statement timeout (and a client-side one), so nothing hangs
//!   when quorum is lost.
//!
//! Statements are [`TypedSql`], prepared once per connection. A connection may have a maximum
//! lifetime: it is closed and replaced *between* transactions once older (as connection pools
//! do; CockroachDB's node-shutdown docs ask clients for a pool lifetime shorter than the
//! drain's connection wait), so clients leave a node that HAProxy drains without an error.

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio_postgres::{Client, Statement};

use tokio_postgres::error::SqlState;

use super::{OpResult, Outcome};
use crate::sql::{connect, describe, is_retry, TypedSql};

/// Whether an error before COMMIT says the connection, not the transaction, failed: see the
/// module docs for the list and why a retry is safe.
fn connection_gone(e: &tokio_postgres::Error, client: &Client) -> bool {
    if client.is_closed() || e.is_closed() {
        return true;
    }
    match e.code() {
        Some(c) => {
            c.code().starts_with("08")
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
        }
        // No SQLSTATE: a transport error (reset, broken pipe).
        None => e.as_db_error().is_none(),
    }
}

/// Most retries of one transaction before it counts as failed.
const MAX_RETRIES: u32 = 30;

/// What a pipelined transaction body returns: the result of BEGIN and the statements (the
/// first error among them), and COMMIT's result when COMMIT went out in the same pipeline
/// (`None`: it is sent afterwards, on its own).
pub type PipelinedResult = (std::result::Result<(), tokio_postgres::Error>, Option<std::result::Result<(), tokio_postgres::Error>>);

/// A worker's connection with its prepared statements, re-established (with backoff) when it
/// is lost.
pub struct SqlConn {
    url: String,
    op_timeout: Duration,
    statements: Vec<TypedSql>,
    conn: Option<(Client, Vec<Statement>, Instant)>,
    /// A connection existed and was lost: the next successful connect is a reconnect.
    lost: bool,
    backoff: Duration,
    /// Retire a connection older than this between transactions (`None`: keep it).
    lifetime: Option<Duration>,
}

impl SqlConn {
    /// A connection to `url` that prepares `statements` (with their types) whenever it
    /// connects.
    /// A connection older than `lifetime` is replaced between transactions (not counted as a
    /// reconnect).
    pub fn new(url: &str, op_timeout: Duration, statements: Vec<TypedSql>, lifetime: Option<Duration>) -> Self {
        Self { url: url.to_string(), op_timeout, statements, conn: None, lost: false, backoff: Duration::from_millis(50), lifetime }
    }

    /// Connects if needed, sleeping a backoff (50 ms doubling to 1 s) after a failed attempt.
    /// Returns whether this was a reconnect.
    async fn ensure(&mut self) -> std::result::Result<bool, String> {
        if let Some((c, _, born)) = &self.conn {
            let retire = self.lifetime.is_some_and(|l| born.elapsed() >= l);
            if !c.is_closed() && !retire {
                return Ok(false);
            }
            if c.is_closed() {
                self.lost = true;
            }
            self.conn = None;
        }
        let attempt = async {
            let client = connect(&self.url, self.op_timeout).await.map_err(|e| e.to_string())?;
            let mut prepared = Vec::new();
            for sql in &self.statements {
                prepared.push(sql.prepare_on(&client).await.map_err(|e| describe(&e))?);
            }
            Ok::<_, String>((client, prepared, Instant::now()))
        };
        match attempt.await {
            Ok(c) => {
                self.conn = Some(c);
                self.backoff = Duration::from_millis(50);
                Ok(std::mem::take(&mut self.lost))
            }
            Err(e) => {
                // The server could not be reached: the next connection is a reconnect, also
                // when the old one was retired for its age before the loss showed.
                self.lost = true;
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

    /// Runs one transaction under the outcome rules: `body` sends BEGIN and the statements
    /// (it may pipeline them); COMMIT follows on its own, only once the body succeeded
    /// (PostgreSQL answers COMMIT of an aborted transaction with a silent ROLLBACK).
    pub async fn transaction<F>(&mut self, mut body: F) -> OpResult
    where
        F: for<'c> FnMut(&'c Client, &'c [Statement]) -> BoxFuture<'c, std::result::Result<(), tokio_postgres::Error>>,
    {
        self.run(false, move |c, s| {
            let f = body(c, s);
            Box::pin(async move { (f.await, None) })
        })
        .await
    }

    /// [`Self::transaction`], optionally in one round trip: with `commit_in_body`, `body`
    /// pipelines BEGIN, the statements and COMMIT, and returns the statements' result and
    /// COMMIT's (else `None` for COMMIT, which then follows on its own). A statement's server
    /// error still proves the transaction aborted (the COMMIT behind it only rolls back); but
    /// a connection lost or timed out once COMMIT was sent is `ambiguous`, never retried —
    /// the price of the saved round trip (docs/BENCHMARKS.md, "tpcb against pgbench").
    pub async fn transaction_parts<F>(&mut self, commit_in_body: bool, body: F) -> OpResult
    where
        F: for<'c> FnMut(&'c Client, &'c [Statement]) -> BoxFuture<'c, PipelinedResult>,
    {
        self.run(commit_in_body, body).await
    }

    /// The outcome rules for both: `pipelined` says COMMIT goes out with the body.
    async fn run<F>(&mut self, pipelined: bool, mut body: F) -> OpResult
    where
        F: for<'c> FnMut(&'c Client, &'c [Statement]) -> BoxFuture<'c, PipelinedResult>,
    {
        let mut res = OpResult { outcome: Outcome::Fail, retries: 0, reconnects: 0, error: None };
        let started = Instant::now();
        loop {
            match self.ensure().await {
                Ok(true) => res.reconnects += 1,
                Ok(false) => {}
                Err(e) => {
                    res.error = Some(e);
                    // Nothing was sent: try a new connection while the operation has time.
                    if res.retries < MAX_RETRIES && started.elapsed() < self.op_timeout {
                        res.retries += 1;
                        continue;
                    }
                    return res; // fail: nothing was sent
                }
            }
            let (client, statements, _) = self.conn.as_ref().expect("connected");
            let (statements_result, pipelined_commit) = match tokio::time::timeout(self.op_timeout, body(client, statements)).await {
                Ok(r) => r,
                Err(_) => {
                    // Mid-transaction (or mid-COMMIT, when pipelined): abandon the connection.
                    self.drop_conn();
                    // A pipelined COMMIT may have been applied; a separate one was never sent.
                    if pipelined {
                        res.outcome = Outcome::Ambiguous;
                        res.error = Some(format!("timed out after {} ms, COMMIT pipelined", self.op_timeout.as_millis()));
                    } else {
                        res.error = Some(format!("timed out after {} ms before COMMIT", self.op_timeout.as_millis()));
                    }
                    return res;
                }
            };
            let commit_sent = pipelined_commit.is_some();
            if let Err(e) = statements_result {
                let retry = is_retry(&e);
                let gone = connection_gone(&e, client);
                res.error = Some(describe(&e));
                if gone {
                    self.drop_conn();
                    if commit_sent {
                        res.outcome = Outcome::Ambiguous; // COMMIT went out before the loss showed
                        return res;
                    }
                } else {
                    let _ = tokio::time::timeout(self.op_timeout, client.batch_execute("ROLLBACK")).await;
                }
                let time_left = if retry { started.elapsed() < self.op_timeout * 3 } else { started.elapsed() < self.op_timeout };
                if (retry || gone) && res.retries < MAX_RETRIES && time_left {
                    res.retries += 1;
                    tokio::time::sleep(Duration::from_millis(5 << res.retries.min(6))).await;
                    continue;
                }
                return res; // fail: the transaction did not commit
            }
            let (client, _, _) = self.conn.as_ref().expect("connected");
            let commit = match pipelined_commit {
                Some(r) => Ok(r),
                None => tokio::time::timeout(self.op_timeout, client.batch_execute("COMMIT")).await,
            };
            match commit {
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
    }
}
