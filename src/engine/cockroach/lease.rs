//! Which node holds the lease for a row: `SHOW RANGE FROM TABLE t FOR ROW (…)`'s
//! `lease_holder`, asked over SQL of the first member that answers.
//!
//! The row's tuple differs by release ([`Facts::for_row_takes_every_column`]): from v20.2 it is
//! the values of the indexed (primary key) columns; v20.1 wants a value for *every* column of
//! the table (docs v20.2 "SHOW RANGE FOR ROW": "In previous releases, this statement required
//! the values of all columns of a row"; v20.1.5 answers `(0)` for `bank.bank` with `number of
//! values in row must equal number of columns in the requested table`, and `(0, NULL, NULL)`
//! with `NULL provided as a value for a non-nullable column`). Only the key columns decide the
//! range, so on v20.1 every other column gets a placeholder value of its type: `NULL` where
//! the column is nullable, else a zero of the type ([`filler`]).

use std::time::Duration;

use super::quorum::node_url;
use super::version::Facts;
use crate::engine::Member;
use crate::sql::{self, TypedSql};
use crate::{Error, Result};

/// One column as `SHOW COLUMNS` lists it: name, `data_type` (e.g. `INT8`, `STRING`,
/// `TIMESTAMPTZ`), nullable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub data_type: String,
    pub nullable: bool,
}

/// A value of `data_type` for a column whose value does not matter (it is not part of the
/// key): a typed zero. `None` for a type roachlab has no zero for.
pub fn filler(data_type: &str) -> Option<String> {
    let t = data_type.trim().to_ascii_uppercase();
    // The type text is the server's; keep only what a type name is made of before casting.
    if t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || " (),".contains(c)) {
        return None;
    }
    let family = t.split(['(', ' ']).next().unwrap_or("");
    let zero = match family {
        "INT" | "INT2" | "INT4" | "INT8" | "INTEGER" | "BIGINT" | "SMALLINT" | "SERIAL" | "FLOAT" | "FLOAT4" | "FLOAT8" | "REAL"
        | "DOUBLE" | "DECIMAL" | "NUMERIC" => "0",
        "STRING" | "TEXT" | "VARCHAR" | "CHAR" | "CHARACTER" | "NAME" => "''",
        "BOOL" | "BOOLEAN" => "false",
        "UUID" => "'00000000-0000-0000-0000-000000000000'",
        "DATE" | "TIMESTAMP" | "TIMESTAMPTZ" => "'1970-01-01'",
        "BYTES" | "BYTEA" => "b''",
        "JSONB" | "JSON" => "'null'",
        _ => return None,
    };
    Some(format!("{zero}::{t}"))
}

/// The `FOR ROW` tuple for `key` in the first primary-key column `key_column`: just the key
/// where the release takes the indexed columns, else one value per column of `columns` (in
/// table order).
pub fn for_row_tuple(facts: &Facts, columns: &[Column], key_column: &str, key: i64) -> Result<String> {
    if !facts.for_row_takes_every_column {
        return Ok(format!("({key})"));
    }
    let mut values = Vec::with_capacity(columns.len());
    for c in columns {
        values.push(if c.name == key_column {
            key.to_string()
        } else if c.nullable {
            "NULL".to_string()
        } else {
            filler(&c.data_type).ok_or_else(|| {
                Error::Refused(format!(
                    "cannot name a row of this table to CockroachDB {}: column `{}` is NOT NULL of type {}, which roachlab has no \
                     placeholder value for (this release wants every column's value in SHOW RANGE … FOR ROW)",
                    facts.since, c.name, c.data_type
                ))
            })?
        });
    }
    Ok(format!("({})", values.join(", ")))
}

/// Checks a table name (`db.table` or `table`): letters, digits, `_` and `.` only, as it is
/// written into the statement.
fn check_table(table: &str) -> Result<()> {
    if table.is_empty() || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        return Err(Error::Refused(format!("`{table}` is not a table name (letters, digits, `_`, `.`)")));
    }
    Ok(())
}

/// Why one node gave no leaseholder.
enum AskError {
    /// The node answered with an error (a bad table or key): every node would say the same.
    Answered(Error),
    /// The node could not be asked (down, cut off, timed out): another one may answer.
    Unreachable(Error),
}

impl From<Error> for AskError {
    fn from(e: Error) -> Self {
        AskError::Answered(e)
    }
}

fn engine_err(e: &tokio_postgres::Error) -> AskError {
    let err = Error::engine("cockroach", sql::describe(e));
    if e.as_db_error().is_some() {
        AskError::Answered(err)
    } else {
        AskError::Unreachable(err)
    }
}

/// The leaseholder's CockroachDB node ID for `key` of `table`, asked through `m`.
async fn ask(facts: &Facts, m: &Member, table: &str, key: i64) -> std::result::Result<u64, AskError> {
    let client = sql::connect(&node_url(m), Duration::from_secs(10)).await.map_err(AskError::Unreachable)?;
    let tuple = if facts.for_row_takes_every_column {
        let rows = TypedSql::fixed(&format!("SELECT column_name, data_type, is_nullable FROM [SHOW COLUMNS FROM {table}]"), &[])
            .fetch(&client, &[])
            .await
            .map_err(|e| engine_err(&e))?;
        let columns: Vec<Column> = rows.iter().map(|r| Column { name: r.get(0), data_type: r.get(1), nullable: r.get(2) }).collect();
        let keys = TypedSql::fixed(
            &format!("SELECT column_name FROM [SHOW INDEX FROM {table}] WHERE index_name = 'primary' AND seq_in_index = 1"),
            &[],
        )
        .fetch(&client, &[])
        .await
        .map_err(|e| engine_err(&e))?;
        let key_column: String =
            keys.first().map(|r| r.get(0)).ok_or_else(|| Error::engine("cockroach", format!("{table} has no primary key column")))?;
        for_row_tuple(facts, &columns, &key_column, key)?
    } else {
        for_row_tuple(facts, &[], "", key)?
    };
    let rows = TypedSql::fixed(&format!("SELECT lease_holder FROM [SHOW RANGE FROM TABLE {table} FOR ROW {tuple}]"), &[])
        .fetch(&client, &[])
        .await
        .map_err(|e| engine_err(&e))?;
    let holder: Option<i64> = rows.first().and_then(|r| r.get(0));
    holder
        .map(|h| h as u64)
        .ok_or_else(|| AskError::Unreachable(Error::engine("cockroach", format!("{table} row {key} has no leaseholder right now"))))
}

/// The node ID holding the lease for `key` of `table`, asked of each of `ask` in turn (each
/// bounded by 15 s: the lease of a range whose holder died is taken over only once the
/// holder's liveness record expires, and the question waits for that) until one answers.
/// The caller orders `ask` (nodes that see quorum first: a node cut off by a partition cannot
/// answer).
pub async fn leaseholder(facts: &Facts, ask_of: &[Member], table: &str, key: i64) -> Result<u64> {
    check_table(table)?;
    first_answer(ask_of, &format!("cannot find the leaseholder of {table} row {key}"), |m| ask(facts, m, table, key)).await
}

/// How long one member may take to answer a question of this module.
const ASK_WAIT: Duration = Duration::from_secs(15);

/// `question` put to each of `ask_of` in turn, each bounded by [`ASK_WAIT`], until one
/// answers. A member that answered with an error ends it (every member would say the same);
/// one that could not be asked hands the question to the next. Errors start with `failure`
/// and name what each member said.
async fn first_answer<'m, T, F, Fut>(ask_of: &'m [Member], failure: &str, question: F) -> Result<T>
where
    F: Fn(&'m Member) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, AskError>>,
{
    let mut errors = Vec::new();
    for m in ask_of {
        match tokio::time::timeout(ASK_WAIT, question(m)).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(AskError::Answered(e))) => return Err(Error::engine("cockroach", format!("{failure}: {e}"))),
            Ok(Err(AskError::Unreachable(e))) => errors.push(format!("node {}: {e}", m.id)),
            Err(_) => errors.push(format!("node {}: no answer within {} s", m.id, ASK_WAIT.as_secs())),
        }
    }
    Err(Error::engine("cockroach", format!("{failure}: {}", errors.join("; "))))
}

/// How often a drain that has not ended asks the ranges for their leases again
/// ([`renew_invalid_leases`]): on v20.1.5 a stalled drain moved on 1–3 s after the question.
pub const RENEW_WHILE_DRAINING: Duration = Duration::from_secs(10);

/// Every range's lease, asked for once (`crdb_internal.ranges`' `lease_holder` sends each range
/// a lease-info request, v20.1.5): a range idle since its leaseholder restarted still names
/// the holder's previous liveness epoch, and the request makes a live replica acquire a valid
/// lease — one a drain can move ([`Facts::drain_stalls_on_invalid_leases`],
/// cockroachdb/cockroach#58613). Asked through the first of `ask_of` that answers (each
/// bounded by 15 s); returns how many ranges answered with a leaseholder. Errors: no member
/// answered (each one's error named).
pub async fn renew_invalid_leases(ask_of: &[Member]) -> Result<u64> {
    // Any failure hands the question to the next member.
    first_answer(ask_of, "cannot ask the ranges for their leases", |m| async move {
        let client = sql::connect(&node_url(m), Duration::from_secs(10)).await.map_err(AskError::Unreachable)?;
        let rows = TypedSql::fixed("SELECT count(lease_holder) FROM crdb_internal.ranges", &[])
            .fetch(&client, &[])
            .await
            .map_err(|e| AskError::Unreachable(Error::engine("cockroach", sql::describe(&e))))?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0).max(0) as u64)
    })
    .await
}

/// Asks the ranges for their leases through `others` every [`RENEW_WHILE_DRAINING`] until
/// dropped (the caller races it against the drain), counting the questions answered in
/// `renewals`.
pub async fn renew_while_draining(others: &[Member], renewals: &std::sync::atomic::AtomicU32) -> std::convert::Infallible {
    loop {
        tokio::time::sleep(RENEW_WHILE_DRAINING).await;
        if renew_invalid_leases(others).await.is_ok() {
            renewals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::version::{facts_for, Version};
    use super::*;

    fn facts(v: &str) -> &'static Facts {
        facts_for(Version::parse(v).unwrap()).facts().unwrap()
    }

    fn bank_columns() -> Vec<Column> {
        // `SHOW COLUMNS FROM bank.bank` on v20.1.5.
        vec![
            Column { name: "id".into(), data_type: "INT8".into(), nullable: false },
            Column { name: "balance".into(), data_type: "INT8".into(), nullable: false },
            Column { name: "payload".into(), data_type: "STRING".into(), nullable: true },
        ]
    }

    #[test]
    fn v20_1_names_every_column_and_newer_releases_the_key() {
        assert_eq!(for_row_tuple(facts("v20.1.5"), &bank_columns(), "id", 30).unwrap(), "(30, 0::INT8, NULL)");
        assert_eq!(for_row_tuple(facts("v20.2.0"), &[], "", 30).unwrap(), "(30)");
        assert_eq!(for_row_tuple(facts("v24.1.0"), &bank_columns(), "id", 7).unwrap(), "(7)");
        let mut odd = bank_columns();
        odd.push(Column { name: "shape".into(), data_type: "GEOMETRY".into(), nullable: false });
        let err = for_row_tuple(facts("v20.1.5"), &odd, "id", 1).unwrap_err().to_string();
        assert!(err.contains("column `shape` is NOT NULL of type GEOMETRY"), "{err}");
    }

    #[test]
    fn fillers_are_typed_zeros_and_refuse_what_is_not_a_type_name() {
        assert_eq!(filler("STRING").as_deref(), Some("''::STRING"));
        assert_eq!(filler("VARCHAR(20)").as_deref(), Some("''::VARCHAR(20)"));
        assert_eq!(filler("timestamptz").as_deref(), Some("'1970-01-01'::TIMESTAMPTZ"));
        assert_eq!(filler("DECIMAL(10, 2)").as_deref(), Some("0::DECIMAL(10, 2)"));
        assert_eq!(filler("INT8'); DROP TABLE x; --"), None);
        assert_eq!(filler(""), None);
        assert!(check_table("bank.bank").is_ok() && check_table("bank; drop").is_err());
    }
}
