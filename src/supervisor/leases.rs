//! Leaseholders of rows (CockroachDB): what a drill asks (`leader`, `leaseholder-of bank.bank
//! 0`), remembered per row so a change lands in the timeline and on the charts as a
//! [`EventKind::LeaseholderChanged`], and re-asked by the poller for a while after the last
//! question, so a lease that moves after a fault (a SIGKILLed leaseholder's liveness expiring,
//! a partitioned one's lease taken on the majority side) is seen when it moves, not only when
//! a drill asks next.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Supervisor;
use crate::engine::Member;
use crate::events::EventKind;
use crate::node::NodeId;
use crate::{Error, Result};

/// How long after the last question a row's leaseholder is still watched: a drill phase asks
/// at its start, and its fault and recovery play out within a few minutes.
pub(super) const WATCH_FOR: Duration = Duration::from_secs(300);
/// How often the poller re-asks a watched row (each question is a SQL connection and two or
/// three statements on a node; v20.1.5 wants `SHOW COLUMNS` before `SHOW RANGE … FOR ROW`).
pub(super) const REASK_EVERY: Duration = Duration::from_secs(2);

/// Per row (`table`, key): the last leaseholder seen, when a drill or the API last asked, and
/// when the poller last asked.
#[derive(Debug, Default)]
pub(super) struct LeaseBook {
    rows: BTreeMap<(String, i64), Watched>,
}

#[derive(Debug)]
struct Watched {
    holder: NodeId,
    asked: Instant,
    reasked: Instant,
}

impl LeaseBook {
    /// Records `holder` for the row; the event to publish when it differs from the last one
    /// seen. `asked` is true for a question from outside (it extends the watch).
    pub(super) fn note(&mut self, table: &str, key: i64, holder: NodeId, asked: bool, now: Instant) -> Option<EventKind> {
        let row = (table.to_string(), key);
        match self.rows.get_mut(&row) {
            Some(w) => {
                let from = w.holder;
                w.holder = holder;
                w.reasked = now;
                if asked {
                    w.asked = now;
                }
                (from != holder).then(|| EventKind::LeaseholderChanged { table: table.into(), key, from: Some(from), to: holder })
            }
            None => {
                self.rows.insert(row, Watched { holder, asked: now, reasked: now });
                Some(EventKind::LeaseholderChanged { table: table.into(), key, from: None, to: holder })
            }
        }
    }

    /// The rows due for the poller's question at `now`: asked within [`WATCH_FOR`], last asked
    /// [`REASK_EVERY`] ago or more. Rows no longer watched are forgotten.
    pub(super) fn due(&mut self, now: Instant) -> Vec<(String, i64)> {
        self.rows.retain(|_, w| now.duration_since(w.asked) < WATCH_FOR);
        self.rows.iter().filter(|(_, w)| now.duration_since(w.reasked) >= REASK_EVERY).map(|(row, _)| row.clone()).collect()
    }
}

impl Supervisor {
    /// Our id of the node holding the lease for `key` of `table` (CockroachDB). Asked of
    /// ready members, those whose last quorum probe committed first: a node cut off by a
    /// partition is still ready until its liveness record expires, but cannot answer. The
    /// answer is remembered, and the row watched for [`WATCH_FOR`].
    pub async fn leaseholder_of(&self, table: &str, key: i64) -> Result<NodeId> {
        let node = self.ask_leaseholder(table, key).await?;
        self.note_leaseholder(table, key, node, true);
        Ok(node)
    }

    async fn ask_leaseholder(&self, table: &str, key: i64) -> Result<NodeId> {
        let mut members: Vec<Member> = self.members().into_iter().filter(|m| self.is_ready(m.id)).collect();
        if members.is_empty() {
            return Err(Error::Refused("no member is ready to ask".into()));
        }
        {
            let w = self.inner.watch.lock().unwrap_or_else(|p| p.into_inner());
            members.sort_by_key(|m| w.last.nodes.get(&m.id).and_then(|f| f.sees_quorum) != Some(true));
        }
        let engine_id = self.inner.engine.leaseholder_of(&members, table, key).await?;
        self.members()
            .into_iter()
            .find(|m| m.engine_id.unwrap_or(m.id as u64) == engine_id)
            .map(|m| m.id)
            .ok_or_else(|| Error::Refused(format!("the leaseholder is node ID {engine_id}, which this lab does not know")))
    }

    fn note_leaseholder(&self, table: &str, key: i64, node: NodeId, asked: bool) {
        let event = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner()).note(table, key, node, asked, Instant::now());
        if let Some(e) = event {
            self.emit(e);
        }
    }

    /// The poller's part: re-asks the watched rows that are due, in a task of its own (a
    /// question may take a SQL connection's timeout; the poll round does not wait), one such
    /// task at a time. An unanswered question changes nothing.
    pub(super) fn reask_leaseholders(&self) {
        let due = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner()).due(Instant::now());
        if due.is_empty() || self.inner.lease_asking.swap(true, Ordering::AcqRel) {
            return;
        }
        let sup = self.clone();
        tokio::spawn(async move {
            for (table, key) in due {
                let answer = tokio::select! {
                    a = sup.ask_leaseholder(&table, key) => a,
                    _ = sup.inner.cancel.cancelled() => break,
                };
                if let Ok(node) = answer {
                    sup.note_leaseholder(&table, key, node, false);
                }
            }
            sup.inner.lease_asking.store(false, Ordering::Release);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_told_at_its_first_answer_and_at_each_change_then_forgotten() {
        let t0 = Instant::now();
        let mut book = LeaseBook::default();
        let first = book.note("bank.bank", 0, 3, true, t0);
        assert!(matches!(first, Some(EventKind::LeaseholderChanged { from: None, to: 3, .. })), "{first:?}");
        assert_eq!(book.note("bank.bank", 0, 3, false, t0 + Duration::from_secs(2)), None);
        let moved = book.note("bank.bank", 0, 1, false, t0 + Duration::from_secs(4));
        assert!(matches!(moved, Some(EventKind::LeaseholderChanged { from: Some(3), to: 1, .. })), "{moved:?}");
        // Due again only REASK_EVERY after the last question; the poller's own questions do
        // not extend the watch, so the row goes WATCH_FOR after the drill last asked.
        assert!(book.due(t0 + Duration::from_secs(5)).is_empty());
        assert_eq!(book.due(t0 + Duration::from_secs(6)), vec![("bank.bank".to_string(), 0)]);
        book.note("bank.bank", 0, 1, false, t0 + WATCH_FOR - Duration::from_secs(1));
        assert!(book.due(t0 + WATCH_FOR).is_empty());
        assert!(book.rows.is_empty());
    }
}
