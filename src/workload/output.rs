//! How a run prints: `cockroach workload`'s per-second table and summary block, and
//! pgbench's `progress:` lines and summary (contract §6).

use super::record::{Summary, Tick};

/// The text header of the per-second table (contract §6, plus roachlab's three counters).
pub const TICK_HEADER: &str =
    "_elapsed___errors__ops/sec(inst)___ops/sec(cum)__p50(ms)__p95(ms)__p99(ms)_pMax(ms)__retries_reconns___ambig";

/// Formats one per-second row like `cockroach workload`.
pub fn tick_line(t: &Tick, name: &str) -> String {
    format!(
        "{:7.1}s {:8} {:14.1} {:14.1} {:8.1} {:8.1} {:8.1} {:8.1} {:8} {:8} {:7} {name}",
        t.elapsed_s,
        t.errors,
        t.ops_per_sec_inst,
        t.ops_per_sec_cum,
        t.p50_ms,
        t.p95_ms,
        t.p99_ms,
        t.pmax_ms,
        t.retries,
        t.reconnects,
        t.ambiguous
    )
}

/// A pgbench progress line: `progress: 5.0 s, 1479.4 tps, lat 5.404 ms stddev 2.032, 0 failed`,
/// plus roachlab's retried, reconnects and ambiguous counts.
pub fn pgbench_progress_line(t: &Tick) -> String {
    format!(
        "progress: {:.1} s, {:.1} tps, lat {:.3} ms stddev {:.3}, {} failed, {} retried, {} reconnects, {} ambiguous",
        t.elapsed_s,
        t.ops_per_sec_inst,
        t.mean_ms,
        t.stddev_ms,
        t.errors - t.ambiguous,
        t.retries,
        t.reconnects,
        t.ambiguous
    )
}

/// pgbench's summary for a TPC-B run.
pub fn pgbench_summary(s: &Summary, scale: i64, clients: usize) -> String {
    let total = s.counts.ok + s.counts.errors();
    let pct = |n: u64| if total == 0 { 0.0 } else { 100.0 * n as f64 / total as f64 };
    format!(
        "transaction type: <builtin: TPC-B (sort of)>\n\
         scaling factor: {scale}\n\
         query mode: extended (prepared, pipelined)\n\
         number of clients: {clients}\n\
         duration: {:.0} s\n\
         number of transactions actually processed: {}\n\
         number of failed transactions: {} ({:.3}%)\n\
         number of ambiguous transactions: {} ({:.3}%)\n\
         total number of retries: {}\n\
         number of reconnects: {}\n\
         latency average = {:.3} ms\n\
         latency stddev = {:.3} ms\n\
         tps = {:.6}\n\
         operations logged in {}\n",
        s.elapsed_s,
        s.counts.ok,
        s.counts.fail,
        pct(s.counts.fail),
        s.counts.ambiguous,
        pct(s.counts.ambiguous),
        s.counts.retries,
        s.counts.reconnects,
        s.avg_ms,
        s.stddev_ms,
        s.ops_per_sec,
        s.run_dir.join("ops.jsonl").display()
    )
}

/// The final block, like `cockroach workload`'s, plus the outcome counts.
pub fn summary_block(s: &Summary, name: &str) -> String {
    format!(
        "\n_elapsed___errors_____ops(total)___ops/sec(cum)__avg(ms)__p50(ms)__p95(ms)__p99(ms)_pMax(ms)__total\n\
         {:7.1}s {:8} {:14} {:14.1} {:8.1} {:8.1} {:8.1} {:8.1} {:8.1}  {name}\n\n\
         __result: ok {}, fail {}, ambiguous {}, retries {}, reconnects {}\n\
         operations logged in {}\n",
        s.elapsed_s,
        s.counts.errors(),
        s.counts.ok + s.counts.errors(),
        s.ops_per_sec,
        s.avg_ms,
        s.p50_ms,
        s.p95_ms,
        s.p99_ms,
        s.pmax_ms,
        s.counts.ok,
        s.counts.fail,
        s.counts.ambiguous,
        s.counts.retries,
        s.counts.reconnects,
        s.run_dir.join("ops.jsonl").display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_lines_use_cockroach_workload_columns() {
        let t = Tick {
            elapsed_s: 1.0,
            errors: 0,
            ops_per_sec_inst: 312.0,
            ops_per_sec_cum: 312.0,
            p50_ms: 21.0,
            p95_ms: 44.0,
            p99_ms: 60.8,
            pmax_ms: 88.1,
            mean_ms: 22.0,
            stddev_ms: 3.5,
            retries: 2,
            reconnects: 0,
            ambiguous: 0,
            mono_ms: 0,
        };
        let line = tick_line(&t, "transfer");
        assert_eq!(
            line,
            "    1.0s        0          312.0          312.0     21.0     44.0     60.8     88.1        2        0       0 transfer"
        );
        assert_eq!(
            pgbench_progress_line(&t),
            "progress: 1.0 s, 312.0 tps, lat 22.000 ms stddev 3.500, 0 failed, 2 retried, 0 reconnects, 0 ambiguous"
        );
        assert!(TICK_HEADER.starts_with("_elapsed___errors__ops/sec(inst)___ops/sec(cum)__p50(ms)__p95(ms)__p99(ms)_pMax(ms)"));
    }
}
