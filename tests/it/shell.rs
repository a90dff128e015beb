//! #24 (part): `roachlab sql` / `roachlab etcdctl` exec the engine's own client at HAProxy or
//! at one node, refusing a target that cannot answer; completions and the man page come from
//! the same CLI definition.

use crate::helpers::*;

/// etcdctl through HAProxy and straight to a member, with etcdctl's exit status; `sql` on an
/// etcd lab, a paused, a stopped and an unknown node refused before anything runs, each
/// saying what to do.
#[test]
fn etcdctl_reaches_the_lab_through_haproxy_or_one_member_and_refuses_what_cannot_answer() {
    let lab = TestLab::new("etcd", 3);
    lab.up();
    assert_eq!(lab.ok(&["etcdctl", "--", "put", "/greeting", "hello"]).trim(), "OK");
    assert_eq!(lab.ok(&["etcdctl", "--node", "2", "--", "get", "--print-value-only", "/greeting"]).trim(), "hello");
    let bad = lab.run(&["etcdctl", "--", "get", "/x", "--no-such-flag"]);
    assert!(!bad.status.success(), "etcdctl's own failure is the command's");

    let refused = |args: &[&str], words: &str| {
        let out = lab.run(args);
        assert!(!out.status.success() && text(&out.stderr).contains(words), "{args:?}: {}", text(&out.stderr));
    };
    refused(&["sql", "-e", "select 1"], "etcd speaks no SQL: `roachlab etcdctl");
    lab.ok(&["node", "pause", "3"]);
    refused(&["etcdctl", "--node", "3", "--", "get", "/greeting"], "node 3 is paused (SIGSTOP)");
    lab.ok(&["node", "resume", "3"]);
    lab.ok(&["node", "stop", "2"]);
    refused(&["etcdctl", "--node", "2", "--", "get", "/greeting"], "`roachlab node start 2` first");
    refused(&["etcdctl", "--node", "9", "--", "get", "/greeting"], "unknown node 9");
    // Two of three still serve through HAProxy.
    assert_eq!(lab.ok(&["etcdctl", "--", "get", "--print-value-only", "/greeting"]).trim(), "hello");
}

/// Completion scripts for bash, zsh and fish name the commands; bash loads its own and
/// registers it; the man page is roff naming the commands.
#[test]
fn completions_and_the_man_page_come_from_the_cli_definition() {
    let lab = TestLab::new("etcd", 3);
    for shell in ["bash", "zsh", "fish"] {
        let script = lab.ok(&["completions", shell]);
        assert!(script.contains("roachlab") && script.contains("etcdctl") && script.contains("drill"), "{shell}: {script:.200}");
    }
    let file = lab.dir.path().join("roachlab.bash");
    std::fs::write(&file, lab.ok(&["completions", "bash"])).unwrap();
    let out =
        std::process::Command::new("bash").arg("-c").arg(format!("source '{}' && complete -p roachlab", file.display())).output().unwrap();
    assert!(out.status.success() && text(&out.stdout).contains("roachlab"), "bash: {}{}", text(&out.stdout), text(&out.stderr));
    let bad = lab.run(&["completions", "tcsh"]);
    assert!(!bad.status.success() && text(&bad.stderr).contains("tcsh"), "{}", text(&bad.stderr));
    // A reader that stops early (`| head`) ends it quietly: the script (~100 KB) is more than a
    // pipe holds, so the write after the reader left fails; clap_complete's own writer panicked.
    let mut child =
        lab.cmd(&["completions", "bash"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(!text(&out.stderr).contains("panicked"), "a closed stdout is not a panic: {}", text(&out.stderr));
    let man = lab.ok(&["man"]);
    assert!(man.starts_with(".ie") || man.contains(".TH roachlab"), "{man:.200}");
    assert!(man.contains("etcdctl") && man.contains("completions"), "the subcommands are listed");
}
