//! PostgreSQL-wire plumbing (CockroachDB or PostgreSQL): connecting with timeouts,
//! describing errors, and typed statements.
//!
//! Every statement roachlab sends over the wire protocol is a [`TypedSql`]: the type of each
//! placeholder is given by roachlab and sent in the Parse message (tokio-postgres
//! `prepare_typed`), never inferred by the server. PostgreSQL and CockroachDB infer
//! placeholder types differently: CockroachDB v20.1 types `$1` in `$1::INT8` from the cast's
//! *input*, as STRING, so the server describes the parameter as `text` and an `i64` cannot be
//! bound (contract §5, seen on a real v20.1.5 through HAProxy). With the types given, both
//! servers take the statement as written. This module is the only place that prepares or runs
//! a statement on a [`Client`]; a unit test fails if another module does. (Statements without
//! parameters and transaction control — `BEGIN`, `COMMIT`, `ROLLBACK`, DDL scripts — may use
//! the simple-query protocol, `batch_execute`, which has no placeholders to type.)

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Row, Statement};

use crate::{Error, Result};

/// Which server speaks on the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    CockroachDb,
    PostgreSql,
}

/// A statement with the type of every placeholder fixed by roachlab (see the module docs):
/// `$1 … $n` take `types[0] … types[n-1]`, sent to the server with the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedSql {
    sql: String,
    types: Vec<Type>,
}

impl TypedSql {
    /// `sql` with one type per placeholder. Errors (naming the statement) when the highest
    /// `$n` outside string literals is not `types.len()`: a placeholder without a type would
    /// be left to the server's inference.
    pub fn new(sql: impl Into<String>, types: &[Type]) -> std::result::Result<Self, String> {
        let sql = sql.into();
        let highest = highest_placeholder(&sql);
        if highest != types.len() {
            return Err(format!("statement `{sql}` has placeholders up to ${highest} but {} type(s) were given", types.len()));
        }
        Ok(Self { sql, types: types.to_vec() })
    }

    /// A statement roachlab writes itself, with its types; panics on a mismatch, which the
    /// unit tests of every such statement catch (they are constants, not input).
    pub(crate) fn fixed(sql: &str, types: &[Type]) -> Self {
        Self::new(sql, types).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn sql(&self) -> &str {
        &self.sql
    }

    pub fn types(&self) -> &[Type] {
        &self.types
    }

    /// Prepares the statement with its types (`prepare_typed`).
    pub async fn prepare_on(&self, client: &Client) -> std::result::Result<Statement, tokio_postgres::Error> {
        client.prepare_typed(&self.sql, &self.types).await
    }

    /// Prepares and runs the statement once; returns its rows.
    pub async fn fetch(&self, client: &Client, params: &[&(dyn ToSql + Sync)]) -> std::result::Result<Vec<Row>, tokio_postgres::Error> {
        let stmt = self.prepare_on(client).await?;
        client.query(&stmt, params).await
    }

    /// Prepares and runs the statement once; returns the rows it changed.
    pub async fn run(&self, client: &Client, params: &[&(dyn ToSql + Sync)]) -> std::result::Result<u64, tokio_postgres::Error> {
        let stmt = self.prepare_on(client).await?;
        client.execute(&stmt, params).await
    }
}

/// Runs a statement prepared by [`TypedSql::prepare_on`] (the workers' hot path: prepared once
/// per connection).
pub async fn run_prepared(
    client: &Client,
    stmt: &Statement,
    params: &[&(dyn ToSql + Sync)],
) -> std::result::Result<Vec<Row>, tokio_postgres::Error> {
    client.query(stmt, params).await
}

/// The highest `$n` in `sql`, skipping string literals (`'…'`, with `''` escapes) and quoted
/// identifiers (`"…"`); 0 when there is none.
fn highest_placeholder(sql: &str) -> usize {
    let b = sql.as_bytes();
    let (mut i, mut highest) = (0, 0);
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                i += 1;
            }
            b'$' => {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && b[end].is_ascii_digit() {
                    end += 1;
                }
                if let Ok(n) = sql[start..end].parse::<usize>() {
                    highest = highest.max(n);
                }
                i = end.max(i + 1);
            }
            _ => i += 1,
        }
    }
    highest
}

pub(crate) fn sql_err(url: &str, e: &tokio_postgres::Error) -> Error {
    let detail = match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => describe_pg_error(e),
    };
    Error::Engine { engine: "sql".into(), message: format!("{}: {detail}", redact(url)) }
}

/// The URL without its password.
pub(crate) fn redact(url: &str) -> String {
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
///
/// The statement timeout is set with `SET statement_timeout` once connected, not with the
/// `options` startup parameter: CockroachDB v20.1.5 ignores `options` (seen: `SHOW
/// statement_timeout` is `0` after `options=-c statement_timeout=2000`), while both servers
/// honour the SET (PostgreSQL: "Client Connection Defaults"; CockroachDB: `statement_timeout`
/// session variable, v19.1+).
pub async fn connect(url: &str, op_timeout: Duration) -> Result<Client> {
    try_connect(url, op_timeout).await.map_err(|(e, _)| e)
}

/// How long `workload init` retries its connection ([`connect_retrying`]).
pub const INIT_CONNECT_RETRY_FOR: Duration = Duration::from_secs(10);

/// [`connect`], retried for `retry_for` (a new connection every 200 ms) while the connection
/// failed, not the server: right after a node is killed, HAProxy still routes new connections
/// to it until its checks mark it DOWN (`inter × fall`, 2 s in the lab's config) and closes
/// them when the node refuses (`retries 2`, no redispatch). The server's own answer (a bad
/// password, an unknown database) and a bad URL are returned at once. Errors: as [`connect`],
/// the last one.
pub async fn connect_retrying(url: &str, op_timeout: Duration, retry_for: Duration) -> Result<Client> {
    let start = std::time::Instant::now();
    loop {
        match try_connect(url, op_timeout).await {
            Ok(c) => return Ok(c),
            Err((_, true)) if start.elapsed() < retry_for => tokio::time::sleep(Duration::from_millis(200)).await,
            Err((e, _)) => return Err(e),
        }
    }
}

/// [`connect`]'s work; an error says whether the transport failed (`true`: worth another
/// connection) or the server or the URL said no.
async fn try_connect(url: &str, op_timeout: Duration) -> std::result::Result<Client, (Error, bool)> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
        (Error::ConfigInvalid { origin: "--url".into(), message: format!("{} is not a PostgreSQL URL: {e}", redact(url)) }, false)
    })?;
    config.connect_timeout(op_timeout);
    let timed_out = || (Error::Timeout { what: format!("connecting to {}", redact(url)), after_ms: op_timeout.as_millis() as u64 }, true);
    let failed = |e: tokio_postgres::Error| (sql_err(url, &e), e.as_db_error().is_none());
    // `sslmode=require`: a secure lab's TLS (its CA only, its `root` client certificate);
    // rustls verifies the node's certificate and name whatever the mode says.
    let client = if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        let tls = crate::tls::postgres().map_err(|e| (e, false))?;
        let (client, conn) = match tokio::time::timeout(op_timeout, config.connect(tls)).await {
            Ok(r) => r.map_err(failed)?,
            Err(_) => return Err(timed_out()),
        };
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    } else {
        let (client, conn) = match tokio::time::timeout(op_timeout, config.connect(NoTls)).await {
            Ok(r) => r.map_err(failed)?,
            Err(_) => return Err(timed_out()),
        };
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    };
    // A whole number of ms, formatted by roachlab: no placeholder to type.
    let set = format!("SET statement_timeout = {}", op_timeout.as_millis().max(1));
    match tokio::time::timeout(op_timeout, client.batch_execute(&set)).await {
        Ok(r) => r.map_err(failed)?,
        Err(_) => return Err(timed_out()),
    }
    Ok(client)
}

/// Asks the server what it is.
pub async fn dialect(client: &Client) -> Result<Dialect> {
    let rows =
        TypedSql::fixed("SELECT version()", &[]).fetch(client, &[]).await.map_err(|e| Error::engine("sql", describe_pg_error(&e)))?;
    let v: String = rows.first().map(|r| r.get(0)).unwrap_or_default();
    Ok(if v.contains("CockroachDB") { Dialect::CockroachDb } else { Dialect::PostgreSql })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_counted_outside_literals() {
        assert_eq!(highest_placeholder("SELECT 1"), 0);
        assert_eq!(highest_placeholder("UPDATE t SET a = $3 WHERE id IN ($1, $2)"), 3);
        assert_eq!(highest_placeholder("SELECT '$9', \"$8\", $1::INT8, 'it''s $7'"), 1);
        assert_eq!(highest_placeholder("SELECT $12"), 12);
        assert_eq!(highest_placeholder("SELECT $ || '"), 0, "a lone $ and an open literal do not panic");
    }

    #[test]
    fn a_statement_without_a_type_for_each_placeholder_is_refused() {
        assert!(TypedSql::new("SELECT $1, $2", &[Type::INT8]).unwrap_err().contains("up to $2 but 1 type(s)"));
        assert!(TypedSql::new("SELECT $1", &[Type::INT8, Type::INT8]).is_err());
        let t = TypedSql::new("SELECT $1", &[Type::INT8]).unwrap();
        assert_eq!((t.sql(), t.types()), ("SELECT $1", &[Type::INT8][..]));
    }

    /// Every statement goes through [`TypedSql`]: no other module may prepare or run SQL on a
    /// client itself (where the server would infer the placeholder types). Scans the sources.
    #[test]
    fn no_module_but_this_one_prepares_or_runs_sql() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let this = root.join("sql.rs");
        let forbidden = [
            ".prepare(",
            ".prepare_typed(",
            ".query(",
            ".query_one(",
            ".query_opt(",
            ".query_raw(",
            ".execute(",
            ".execute_raw(",
            ".query_typed(",
        ];
        let mut offenders = Vec::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") && path != this {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (n, line) in text.lines().enumerate() {
                        if forbidden.iter().any(|f| line.contains(f)) && !line.trim_start().starts_with("//") {
                            offenders.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                        }
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "SQL sent outside crate::sql (use TypedSql):\n{}", offenders.join("\n"));
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(redact("postgres://bob:secret@127.0.0.1:5432/db"), "postgres://bob:***@127.0.0.1:5432/db");
        assert_eq!(redact("postgresql://root@127.0.0.1:26257/defaultdb"), "postgresql://root@127.0.0.1:26257/defaultdb");
    }
}
