//! `cockroach node drain` for a graceful stop's hand-off ([`Engine::hand_off`]), with this
//! release's workaround where its drain can wait forever (`Facts::drain_stalls_on_invalid_leases`).

use std::time::Duration;

use super::parse::{self, last_lines};
use super::{lease, offline_env, run_cli, Cockroach};
use crate::engine::{Engine, Member};
use crate::{Error, Result};

/// Drains `node` with `cockroach node drain` within `deadline`; `others`: the ready nodes
/// still serving (asked for the ranges' leases on releases whose drain can stall). Returns
/// the lines that say what happened (the drain's own summary last). Errors: the binary is
/// missing, or the drain failed (its last lines quoted).
pub(super) async fn drain(engine: &Cockroach, node: Member, others: &[Member], deadline: Duration) -> Result<Vec<String>> {
    let facts = engine.facts().await;
    let host = node.ports.service_addr();
    let bin = engine.binary()?;
    let start = std::time::Instant::now();
    let mut lines = Vec::new();
    let renew = facts.drain_stalls_on_invalid_leases;
    if renew {
        let ask: Vec<Member> = others.iter().copied().chain([node]).collect();
        lines.push(match lease::renew_invalid_leases(&ask).await {
            Ok(n) => format!(
                "asked the {n} ranges for their leases first (this release's drain waits forever on a lease left \
                 from a restarted node's previous epoch: cockroachdb/cockroach#58613)"
            ),
            Err(e) => format!("could not ask the ranges for their leases first ({e}); draining anyway"),
        });
    }
    let mut args = facts.drain_args(&host, &engine.security_flag());
    let renewals = std::sync::atomic::AtomicU32::new(0);
    let env = offline_env();
    let drain = run_cli("cockroach", &bin, &args, &env, deadline.saturating_sub(start.elapsed()));
    let (mut ok, mut out, mut err) = if renew {
        // A lease can be left invalid again while the drain runs (a range that went
        // idle): ask again while it waits, through the other nodes.
        let renewing = lease::renew_while_draining(others, &renewals);
        tokio::select! {
            r = drain => r?,
            never = renewing => match never {},
        }
    } else {
        drain.await?
    };
    if !ok && facts.drain_self_flag && format!("{err}{out}").contains("unknown flag") {
        // A build without `--self`: the node behind --host is drained without it.
        args.retain(|a| a != "--self");
        (ok, out, err) = run_cli("cockroach", &bin, &args, &env, deadline.saturating_sub(start.elapsed())).await?;
    }
    if !ok {
        return Err(Error::engine("cockroach", format!("`cockroach {}` failed: {}", args.join(" "), last_lines(&err, &out))));
    }
    let again = renewals.into_inner();
    if again > 0 {
        lines.push(format!("asked the ranges for their leases again {again} time(s) while the drain waited"));
    }
    lines.push(format!("drained in {} ms: {}", start.elapsed().as_millis(), parse::drain_summary(&format!("{err}\n{out}"))));
    Ok(lines)
}
