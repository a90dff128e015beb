//! `action = "sql"`: a statement sent straight to one node's SQL port, bypassing HAProxy —
//! the seed's demonstration that a row written through one node is read through another,
//! also while a node is down. The answer (the first column of the first row, or how many
//! rows a statement touched) is logged as a step, and checked against `expect` as an
//! expectation of the drill.

use std::time::Duration;

use tokio_postgres::SimpleQueryMessage;

use super::Ctx;
use crate::drill::model::{ExpectationResult, StepKind};
use crate::drill::scenario::NodeRef;
use crate::{Error, Result};

/// How long a statement may take: a read through a live node waits for the leases of a node
/// that just died to expire (9 s on v20.1.5), and then some.
const STATEMENT_WAIT: Duration = Duration::from_secs(30);

/// What a statement answered: the first column of the first row, else `N row(s)`.
fn answer(messages: &[SimpleQueryMessage]) -> String {
    let first = messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").to_string()),
        _ => None,
    });
    first.unwrap_or_else(|| {
        let n: u64 = messages.iter().map(|m| if let SimpleQueryMessage::CommandComplete(n) = m { *n } else { 0 }).sum();
        format!("{n} row(s)")
    })
}

impl Ctx<'_> {
    /// Runs `statement` on the node `node` names, directly; with `expect`, records whether
    /// its answer is that text. Errors (the step fails) when the engine has no SQL, or when
    /// the statement fails and no answer was expected of it.
    pub(super) async fn sql(&mut self, node: &NodeRef, statement: &str, expect: Option<&str>) -> Result<()> {
        let id = self.resolve(node).await?;
        let s = self.status().await?;
        let n = s.nodes.iter().find(|n| n.id == id).ok_or_else(|| Error::Refused(format!("node {id} is not in the lab")))?;
        let url = (self.client_url)(&n.host, n.sql_port)
            .ok_or_else(|| Error::Refused(format!("action = \"sql\" needs a SQL engine (CockroachDB); this lab runs {}", s.engine)))?;
        let shown = crate::text::printable(statement);
        let answered = tokio::time::timeout(STATEMENT_WAIT, async {
            let c = crate::sql::connect(&url, Duration::from_secs(10)).await?;
            c.simple_query(statement).await.map_err(|e| Error::engine("sql", crate::sql::describe(&e)))
        })
        .await
        .unwrap_or_else(|_| Err(Error::Timeout { what: format!("`{shown}` on node {id}"), after_ms: STATEMENT_WAIT.as_millis() as u64 }));
        let observed = match &answered {
            Ok(m) => crate::text::printable(&answer(m)),
            Err(e) => format!("error: {e}"),
        };
        self.record(StepKind::Sql, format!("SQL through node {id}: `{shown}` → {observed}"));
        match expect {
            Some(want) => {
                let met = answered.is_ok() && observed == want;
                self.sql_results.push(ExpectationResult {
                    text: format!("sql at line {}: `{shown}` through node {id} returns `{}`", self.line, crate::text::printable(want)),
                    met,
                    observed,
                });
                Ok(())
            }
            None => answered.map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_the_first_value_or_the_rows_touched() {
        assert_eq!(answer(&[SimpleQueryMessage::CommandComplete(3)]), "3 row(s)");
        assert_eq!(answer(&[]), "0 row(s)");
    }
}
