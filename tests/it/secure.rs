//! Secure labs (#25) on etcd: certificates made for the lab, every hop over TLS (clients,
//! peers, HAProxy's checks, the probes, the bank workload, the drain's leadership transfer),
//! HAProxy's frontends on an address beyond loopback (the lab's own bridge address: nothing
//! listens outside this machine), and what an insecure lab is refused. The CockroachDB side
//! is a scenario of [`crate::cockroach`]'s end-to-end test.

use crate::drill::{drill_ok, results_of};
use crate::helpers::*;

#[test]
fn a_secure_etcd_lab_speaks_tls_on_every_hop_and_listens_where_it_is_told() {
    let lab = TestLab::netns("etcd", 3);
    let subnet = lab.subnet.as_ref().unwrap().0.clone();
    // The host's own address on the lab's bridge (.1): beyond loopback, yet on this machine.
    let bridge = subnet.trim_end_matches(".0/24").to_string() + ".1";
    let cfg = lab.config.display().to_string();
    let out = lab.ok(&["up", "--config", &cfg, "--secure", "--bind", &bridge]);
    assert!(out.contains(&format!("clients {bridge}:{} (TLS through to the nodes)", lab.ports.frontend)), "{out}");
    assert!(out.contains("certificates: ") && out.contains("days) (`roachlab certs`)"), "{out}");

    // The lab's certificates: private keys 0600, the CA's key apart.
    let dir = lab.lab_dir();
    let mode = |p: &str| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.join(p)).unwrap().permissions()) & 0o777;
    for key in ["certs/node.key", "certs/client.root.key", "certs/client.root.pem", "certs-ca/ca.key"] {
        assert_eq!(mode(key), 0o600, "{key}");
    }
    assert!(!dir.join("certs/ca.key").exists(), "the CA key is kept out of the certs dir");
    let s = lab.status();
    assert!(s["certificates"]["days_left"].as_i64().unwrap() > 1800, "{}", s["certificates"]);
    assert!(s["nodes"].as_array().unwrap().iter().all(|n| n["ready"] == true && n["backend"] == "UP"), "TLS probes and checks: {s}");
    let certs = lab.ok(&["certs"]);
    assert!(certs.contains(&format!("connect: https://{bridge}:{}", lab.ports.frontend)) && certs.contains("client root"), "{certs}");

    // The bank through HAProxy's frontend on the bridge address, over TLS end to end.
    lab.ok(&["workload", "init", "bank", "--rows", "200"]);
    let run = lab.ok(&["workload", "run", "bank", "--concurrency", "4", "--duration", "3s"]);
    assert!(run.contains("fail 0"), "{run}");
    assert!(lab.ok(&["workload", "check", "bank"]).ends_with("check passed\n"));
    // etcdctl as roachlab runs it presents the lab's certificates; without them it is refused.
    assert_eq!(lab.ok(&["etcdctl", "--", "put", "/secure", "yes"]).trim(), "OK");
    let endpoint = format!("--endpoints=https://{bridge}:{}", lab.ports.frontend);
    let etcdctl = |extra: &[&str]| {
        std::process::Command::new(binary_available("ROACHLAB_ETCDCTL", "etcdctl").expect("etcdctl"))
            .env("ETCDCTL_API", "3")
            .args([endpoint.as_str(), "--dial-timeout=2s", "--command-timeout=3s"])
            .args(extra)
            .args(["get", "/secure", "--print-value-only"])
            .output()
            .unwrap()
    };
    let certs_dir = dir.join("certs");
    let (ca, crt, key) = (certs_dir.join("ca.crt"), certs_dir.join("client.root.crt"), certs_dir.join("client.root.key"));
    let with = etcdctl(&[&format!("--cacert={}", ca.display()), &format!("--cert={}", crt.display()), &format!("--key={}", key.display())]);
    assert_eq!(text(&with.stdout).trim(), "yes", "{}", text(&with.stderr));
    let no_ca = etcdctl(&[]);
    assert!(!no_ca.status.success(), "a client that does not know the lab's CA is refused");
    let no_cert = etcdctl(&[&format!("--cacert={}", ca.display())]);
    assert!(!no_cert.status.success(), "a client without a certificate is refused: {}", text(&no_cert.stdout));

    // Drills and partitions unchanged: the drain's leadership transfer over TLS, a minority cut.
    let out = drill_ok(&lab, &["drill", "graceful-vs-kill", "--seed", "1", "--baseline", "2s"]);
    assert!(out.contains("met:     graceful: fail == 0") && out.contains("bank check passed"), "{out}");
    let out = drill_ok(&lab, &["drill", "partition-minority", "--seed", "2", "--baseline", "2s"]);
    let (_, r) = results_of(&out);
    assert!(r["check"]["violations"].as_array().unwrap().is_empty(), "{out}");

    lab.ok(&["down", "--wipe"]);
    assert!(!dir.join("certs").exists() && !dir.join("certs-ca").exists(), "--wipe removes the certificates");
    assert!(lab.net_leftovers().is_empty(), "{:?}", lab.net_leftovers());
}

#[test]
fn an_insecure_lab_beyond_loopback_is_refused_before_anything_starts() {
    let lab = TestLab::new("etcd", 3);
    let cfg = lab.config.display().to_string();
    let out = lab.run(&["up", "--config", &cfg, "--bind", "0.0.0.0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("--bind") && err.contains("add --secure") && err.contains("--insecure-public"), "{err}");
    assert!(!lab.lab_dir().join("state.json").exists(), "nothing was created");
    // Asked in the config file, the file is blamed.
    lab.append_config("[security]\nbind = \"0.0.0.0\"");
    let err = text(&lab.run(&["up", "--config", &cfg]).stderr);
    assert!(err.contains(&cfg) && err.contains("bind = 0.0.0.0"), "{err}");
    // An insecure lab has no certificates to show.
    let lab = TestLab::new("etcd", 3);
    lab.up();
    let err = text(&lab.run(&["certs"]).stderr);
    assert!(err.contains("is insecure") && err.contains("up --secure"), "{err}");
    lab.ok(&["down"]);
}
