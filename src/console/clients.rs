//! What the lab's clients get, read from the files a run writes as it goes: the newest run
//! of a drill (`DIR/runs/<run>/`) or of a workload (`DIR/workloads/<name>/<run>/`), its
//! per-second `ticks.ndjson` (flushed every second) and, for a drill, its `live.json`
//! ([`crate::drill::live`]). The runs are the CLI's processes; nothing here talks to them.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::drill::live::{self, LiveDrill};
use crate::lab::Lab;
use crate::workload::Tick;

/// A run counts as running while its ticks file changed this recently.
const ACTIVE: Duration = Duration::from_secs(3);
/// A run that ended is still shown for this long (its verdict stays on the page).
const SHOWN_AFTER_END: Duration = Duration::from_secs(300);
/// How far back the charts look: three minutes, a drill's length, readable on a projector.
pub const WINDOW: Duration = Duration::from_secs(180);

/// The run the page shows.
#[derive(Debug, Clone, Serialize)]
pub struct ClientsView {
    /// `drill quorum-loss`, `workload bank`.
    pub source: String,
    pub run_dir: PathBuf,
    /// Its ticks file changed within the last 3 s.
    pub running: bool,
    /// The last second's figures.
    pub latest: Option<Tick>,
    /// Operations in the ticks read (the charts' window): succeeded, failed, ambiguous.
    pub ok: u64,
    pub fail: u64,
    pub ambiguous: u64,
    /// The ticks of the charts' window, oldest first.
    #[serde(skip)]
    pub ticks: Vec<Tick>,
    /// The drill's live state, for a drill's run.
    pub drill: Option<LiveDrill>,
}

/// Candidate run directories: every drill run, and every workload run.
fn runs(lab: &Lab) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let list = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect()).unwrap_or_default()
    };
    for run in list(&lab.runs_dir()) {
        let name = run.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        // `20261207T032323Z-zone-failure`: the drill's name after the stamp.
        let drill = name.split_once('-').map(|(_, d)| d.to_string()).unwrap_or(name);
        out.push((format!("drill {drill}"), run));
    }
    for workload in list(&lab.dir().join("workloads")) {
        let name = workload.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        for run in list(&workload) {
            out.push((format!("workload {name}"), run));
        }
    }
    out
}

/// The run to show at `now`: the one whose ticks changed last, if that was within the last
/// 5 minutes.
pub fn find(lab: &Lab, now: SystemTime) -> Option<ClientsView> {
    let (source, run_dir, changed) = runs(lab)
        .into_iter()
        .filter_map(|(source, dir)| {
            let changed = std::fs::metadata(dir.join("ticks.ndjson")).and_then(|m| m.modified()).ok()?;
            Some((source, dir, changed))
        })
        .max_by_key(|(_, _, changed)| *changed)?;
    let age = now.duration_since(changed).unwrap_or_default();
    if age > SHOWN_AFTER_END {
        return None;
    }
    let ticks = read_ticks(&run_dir.join("ticks.ndjson"));
    let (ok, fail, ambiguous) = ticks.iter().fold((0, 0, 0), |(o, f, a), t| {
        (o + (t.ops_per_sec_inst.max(0.0).round() as u64), f + t.errors.saturating_sub(t.ambiguous), a + t.ambiguous)
    });
    Some(ClientsView {
        source,
        running: age <= ACTIVE,
        latest: ticks.last().cloned(),
        ok,
        fail,
        ambiguous,
        drill: live::read(&run_dir),
        run_dir,
        ticks,
    })
}

/// The last [`WINDOW`] of a ticks file (one tick a second: its last 180 lines), read from
/// its end whatever its length.
fn read_ticks(path: &Path) -> Vec<Tick> {
    const TAIL: u64 = 256 * 1024;
    let Ok(mut f) = std::fs::File::open(path) else { return Vec::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(TAIL);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut text = String::new();
    if f.take(TAIL).read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    // From the middle of the file, the first line may be cut: it does not parse and is left.
    let ticks: Vec<Tick> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let keep = WINDOW.as_secs() as usize;
    ticks[ticks.len().saturating_sub(keep)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(s: f64, ok: f64, errors: u64, ambiguous: u64) -> Tick {
        Tick {
            elapsed_s: s,
            errors,
            ops_per_sec_inst: ok,
            ops_per_sec_cum: ok,
            p50_ms: 1.0,
            p95_ms: 2.0,
            p99_ms: 3.0,
            pmax_ms: 4.0,
            mean_ms: 1.0,
            stddev_ms: 0.1,
            retries: 0,
            reconnects: 0,
            ambiguous,
            mono_ms: 1000 * s as u64,
        }
    }

    fn write_ticks(dir: &Path, ticks: &[Tick]) {
        std::fs::create_dir_all(dir).unwrap();
        let text: String = ticks.iter().map(|t| serde_json::to_string(t).unwrap() + "\n").collect();
        std::fs::write(dir.join("ticks.ndjson"), text).unwrap();
    }

    #[test]
    fn the_newest_run_is_shown_with_its_counts_and_a_drill_with_its_live_state() {
        let tmp = tempfile::tempdir().unwrap();
        let lab = Lab::new(tmp.path()).unwrap();
        assert!(find(&lab, SystemTime::now()).is_none(), "no run yet");
        let old = lab.dir().join("workloads/bank/20260101T000000Z");
        write_ticks(&old, &[tick(1.0, 10.0, 0, 0)]);
        let f = std::fs::File::options().write(true).open(old.join("ticks.ndjson")).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(60)).unwrap();
        let drill = lab.runs_dir().join("20260101T000100Z-quorum-loss");
        write_ticks(&drill, &[tick(1.0, 100.0, 0, 0), tick(2.0, 0.0, 5, 2)]);
        let live =
            LiveDrill { drill: "quorum-loss".into(), pid: 1, t0_mono_ms: 0, phases: Vec::new(), expectations: Vec::new(), finished: None };
        live::write(&drill, &live).unwrap();
        let v = find(&lab, SystemTime::now()).unwrap();
        assert_eq!(v.source, "drill quorum-loss");
        assert!(v.running);
        assert_eq!((v.ok, v.fail, v.ambiguous), (100, 3, 2), "errors count failed and ambiguous");
        assert_eq!(v.drill.unwrap().drill, "quorum-loss");
        assert_eq!(v.latest.unwrap().elapsed_s, 2.0);
        // Ten minutes on, nothing is running and nothing recent is shown.
        assert!(find(&lab, SystemTime::now() + Duration::from_secs(600)).is_none());
        let later = find(&lab, SystemTime::now() + Duration::from_secs(10)).unwrap();
        assert!(!later.running, "ticks 10 s old: the run has ended");
    }

    #[test]
    fn a_long_ticks_file_is_read_from_its_end() {
        let tmp = tempfile::tempdir().unwrap();
        let ticks: Vec<Tick> = (0..5000).map(|i| tick(i as f64, i as f64, 0, 0)).collect();
        write_ticks(tmp.path(), &ticks);
        let got = read_ticks(&tmp.path().join("ticks.ndjson"));
        assert_eq!(got.len(), 180);
        assert_eq!(got.last().unwrap().elapsed_s, 4999.0);
        assert_eq!(got.first().unwrap().elapsed_s, 4820.0);
        assert!(read_ticks(&tmp.path().join("missing")).is_empty());
    }
}
