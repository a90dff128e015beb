//! HAProxy in front of the nodes: config rendering, validation, start, reload and the stats
//! socket.
//!
//! The config comes from `haproxy/haproxy.cfg.tmpl` (embedded). HAProxy runs in master-worker
//! mode (`-W`) as a child of the daemon: a reload is SIGUSR2 to the master, which starts a new
//! worker on the new config and hands over the listening sockets, so clients of the frontend
//! see no refused connections. Every config is checked with `haproxy -c -f` before use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::HaproxySpec;
use crate::engine::{find_binary, run_cli, Engine};
use crate::lab::Lab;
use crate::node::{NodeId, NodePorts};
use crate::ports::PortClaim;
use crate::{Error, Result};

/// The template every `haproxy.cfg` is rendered from.
pub const TEMPLATE: &str = include_str!("../haproxy/haproxy.cfg.tmpl");

/// How to install HAProxy when it is missing.
pub const INSTALL_HINT: &str =
    "Install it with `sudo apt-get install haproxy` (Debian/Ubuntu), or point $ROACHLAB_HAPROXY or `[haproxy] binary` at it.";

/// The `haproxy` binary: `$ROACHLAB_HAPROXY`, the config, then PATH.
pub fn binary(spec: &HaproxySpec) -> Result<PathBuf> {
    find_binary("ROACHLAB_HAPROXY", spec.binary.as_deref(), "haproxy", INSTALL_HINT)
}

/// The ports HAProxy binds, for the free-port check.
pub fn port_claims(spec: &HaproxySpec) -> Vec<PortClaim> {
    vec![
        PortClaim::new(spec.frontend_port, "HAProxy client frontend"),
        PortClaim::new(spec.admin_port, "HAProxy admin UI frontend"),
        PortClaim::new(spec.stats_port, "HAProxy stats page"),
    ]
}

/// A backend server to render.
#[derive(Debug, Clone, Serialize)]
pub struct Backend {
    pub id: NodeId,
    /// The node's address (127.0.0.1, or its own in the netns topology).
    pub host: String,
    pub service_port: u16,
    pub http_port: u16,
}

impl Backend {
    pub fn new(id: NodeId, ports: &NodePorts) -> Self {
        Self { id, host: ports.host.to_string(), service_port: ports.service, http_port: ports.http }
    }
}

/// An HAProxy release as `haproxy -v` names it: (major, minor), e.g. (2, 6) for
/// `HAProxy version 2.6.12-1+deb12u4 2025/...` (1.x printed `HA-Proxy version 1.8.3-...`).
pub type HaproxyVersion = (u32, u32);

/// Reads the release from `haproxy -v`'s first line; `None` when it cannot be read (the
/// config then uses nothing newer than what roachlab needed before 2.6).
pub fn parse_version(text: &str) -> Option<HaproxyVersion> {
    let line = text.lines().find(|l| l.contains("version"))?;
    let v = line.split("version").nth(1)?.split_whitespace().next()?;
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// `haproxy -v` (a few ms: it reads no config).
pub async fn version(bin: &Path) -> Option<HaproxyVersion> {
    let (ok, out, _) = run_cli("haproxy", bin, &["-v".to_string()], &[], Duration::from_secs(10)).await.ok()?;
    if ok {
        parse_version(&out)
    } else {
        None
    }
}

/// A word of HAProxy's configuration holding `text` verbatim, spaces and all (HAProxy 2.6
/// configuration.txt, 2.2 "Quoting and escaping"): single quotes, in which nothing is
/// special; where `text` has a single quote itself, double quotes, with `\`, `"` and `$`
/// (environment variables are expanded there) escaped by a backslash.
pub fn quote(text: &str) -> String {
    if !text.contains('\'') {
        return format!("'{text}'");
    }
    let mut out = String::from("\"");
    for c in text.chars() {
        if matches!(c, '\\' | '"' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Renders `haproxy.cfg` for these backends, for HAProxy `version` (what a newer release
/// needs said, e.g. not to load the system's CA store, is written only for it).
pub fn render(
    lab: &Lab,
    spec: &HaproxySpec,
    security: &crate::config::security::SecuritySpec,
    engine: &dyn Engine,
    backends: &[Backend],
    version: Option<HaproxyVersion>,
) -> Result<String> {
    let certs = crate::certs::CertPaths::of(lab);
    let mut env = minijinja::Environment::new();
    env.set_keep_trailing_newline(true);
    env.add_template("haproxy.cfg", TEMPLATE).map_err(|e| Error::Haproxy { message: format!("bad template: {e}") })?;
    let ctx = minijinja::context! {
        engine => engine.kind().to_string(),
        // In a comment: one line, whatever the directory's name.
        dir => lab.dir().display().to_string().replace(['\n', '\r'], " "),
        stats_socket => quote(&lab.haproxy_socket().display().to_string()),
        state_file => quote(&lab.haproxy_state().display().to_string()),
        frontend_name => engine.frontend_name(),
        client_role => match engine.frontend_name() { "psql" => "SQL", _ => "client API" },
        frontend_port => spec.frontend_port,
        admin_port => spec.admin_port,
        stats_port => spec.stats_port,
        // The frontends' address (`up --bind`); the nodes stay on their own.
        bind_frontend => security.frontend_addr(spec.frontend_port),
        bind_admin => security.frontend_addr(spec.admin_port),
        bind_stats => security.frontend_addr(spec.stats_port),
        // A secure lab: clients' TLS passes through to the nodes; the health checks speak
        // TLS, verify the node against the lab's CA and present the lab's client certificate.
        secure => security.secure,
        ca_file => quote(&certs.ca_crt().display().to_string()),
        client_pem => quote(&certs.client_pem().display().to_string()),
        health_path => engine.readiness_path(),
        inter_ms => spec.inter.as_millis() as u64,
        fall => spec.fall,
        rise => spec.rise,
        nodes => backends,
        // `httpclient.ssl.verify` exists from 2.6 (HAProxy commit f1344b3, "httpclient:
        // re-enable the verify by default", 2.6-dev; configuration.txt of 2.6).
        httpclient_ssl_verify => version.is_some_and(|v| v >= (2, 6)),
    };
    env.get_template("haproxy.cfg")
        .and_then(|t| t.render(ctx))
        .map_err(|e| Error::Haproxy { message: format!("cannot render config: {e}") })
}

/// Checks a config file with `haproxy -c -f FILE`; the error carries HAProxy's own words.
pub async fn validate(bin: &Path, cfg: &Path) -> Result<()> {
    // Not `-q`: it silences the alerts that say what is wrong.
    let args = vec!["-c".to_string(), "-f".into(), cfg.display().to_string()];
    let (ok, out, err) = run_cli("haproxy", bin, &args, &[], Duration::from_secs(20)).await?;
    if ok {
        return Ok(());
    }
    // HAProxy's alerts say what is wrong and where (`parsing [file:line] : ...`).
    let text = format!("{err}\n{out}");
    let alerts: Vec<&str> = text.lines().filter(|l| l.contains("[ALERT]")).map(str::trim).collect();
    let detail = if alerts.is_empty() { text.trim().to_string() } else { alerts.join(" / ") };
    Err(Error::Haproxy { message: format!("{} is invalid: {detail}", cfg.display()) })
}

/// Writes `text` to `path` atomically (`.partial` + rename) after validating the partial file,
/// so `haproxy.cfg` always holds a config HAProxy accepted.
pub async fn write_validated(bin: &Path, path: &Path, text: &str) -> Result<()> {
    let partial = path.with_extension("cfg.partial");
    tokio::fs::write(&partial, text).await.map_err(|e| Error::io(format!("cannot write {}", partial.display()), e))?;
    if let Err(e) = validate(bin, &partial).await {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(e);
    }
    tokio::fs::rename(&partial, path).await.map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

/// The arguments that start HAProxy in master-worker mode in the foreground.
pub fn start_args(cfg: &Path) -> Vec<String> {
    vec!["-W".into(), "-f".into(), cfg.display().to_string()]
}

/// One server line of `show stat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStat {
    /// Proxy name (`psql`, `etcd`, `admin-ui`).
    pub proxy: String,
    /// Server name (`node3`).
    pub server: String,
    /// `UP`, `DOWN`, `MAINT`, `DRAIN`, `NOLB`, or a transition like `UP 1/2`.
    pub status: String,
    /// Last check result (`L7OK`, `L4CON`, `L7STS`...).
    pub check_status: String,
    /// Current sessions.
    pub sessions: u64,
}

impl ServerStat {
    /// The node id of a `nodeN` server.
    pub fn node(&self) -> Option<NodeId> {
        self.server.strip_prefix("node")?.parse().ok()
    }
}

#[derive(Debug, Deserialize)]
struct StatRow {
    #[serde(rename = "# pxname")]
    pxname: String,
    svname: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    check_status: String,
    #[serde(default)]
    scur: Option<u64>,
}

/// Parses the CSV of `show stat`, keeping server rows (not FRONTEND/BACKEND).
pub fn parse_stat(csv_text: &str) -> Result<Vec<ServerStat>> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(csv_text.as_bytes());
    let mut out = Vec::new();
    for row in rdr.deserialize::<StatRow>() {
        let row = row.map_err(|e| Error::Haproxy { message: format!("cannot parse `show stat`: {e}") })?;
        if row.svname == "FRONTEND" || row.svname == "BACKEND" {
            continue;
        }
        out.push(ServerStat {
            proxy: row.pxname,
            server: row.svname,
            status: row.status,
            check_status: row.check_status,
            sessions: row.scur.unwrap_or(0),
        });
    }
    Ok(out)
}

/// Sends one command to HAProxy's runtime socket and returns its reply.
pub async fn runtime_command(socket: &Path, command: &str, deadline: Duration) -> Result<String> {
    let run = async {
        let mut s = tokio::net::UnixStream::connect(socket).await?;
        s.write_all(format!("{command}\n").as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    match tokio::time::timeout(deadline, run).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(Error::io(format!("haproxy socket {}", socket.display()), e)),
        Err(_) => Err(Error::Timeout { what: format!("haproxy socket {}", socket.display()), after_ms: deadline.as_millis() as u64 }),
    }
}

/// A server's administrative state, as the runtime API sets it (HAProxy 2.6 management guide,
/// `set server <backend>/<server> state [ ready | drain | maint ]`): `drain` takes no new
/// connections but keeps its sessions and health checks; `ready` is normal service (traffic
/// flows once the health checks pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    Ready,
    Drain,
}

/// Sets `proxy/server` to `state` through the runtime API. HAProxy answers an empty line on
/// success; any text is its error (e.g. `No such server.`).
pub async fn set_server_state(socket: &Path, proxy: &str, server: &str, state: AdminState) -> Result<()> {
    let word = match state {
        AdminState::Ready => "ready",
        AdminState::Drain => "drain",
    };
    let reply = runtime_command(socket, &format!("set server {proxy}/{server} state {word}"), Duration::from_secs(2)).await?;
    if reply.trim().is_empty() {
        Ok(())
    } else {
        Err(Error::Haproxy { message: format!("`set server {proxy}/{server} state {word}`: {}", reply.trim()) })
    }
}

/// Saves `show servers state` to `file` (atomically) for the next worker to load
/// (`server-state-file`, `load-server-state-from-file global` in the config).
pub async fn save_server_state(socket: &Path, file: &Path) -> Result<()> {
    let text = runtime_command(socket, "show servers state", Duration::from_secs(2)).await?;
    if !text.starts_with('1') {
        return Err(Error::Haproxy { message: format!("unexpected `show servers state` reply: {}", text.lines().next().unwrap_or("")) });
    }
    crate::state::write_atomic(file, text.as_bytes())
}

/// An empty server-state file (format version 1, no servers), for a fresh HAProxy start:
/// states of an earlier HAProxy (a server drained before `down`) must not come back.
pub fn reset_server_state(file: &Path) -> Result<()> {
    crate::state::write_atomic(file, b"1\n")
}

/// The server rows of `show stat` from the stats socket.
pub async fn server_stats(socket: &Path) -> Result<Vec<ServerStat>> {
    parse_stat(&runtime_command(socket, "show stat", Duration::from_secs(2)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EngineKind, LabSpec, Overrides};

    #[test]
    fn paths_are_quoted_as_one_word() {
        assert_eq!(quote("/tmp/a space/ü/haproxy.sock"), "'/tmp/a space/ü/haproxy.sock'");
        assert_eq!(quote("/tmp/it's $HOME \\ \"x\""), "\"/tmp/it's \\$HOME \\\\ \\\"x\\\"\"");
    }

    fn rendered(engine: EngineKind) -> String {
        rendered_for(engine, Some((2, 6)))
    }

    fn rendered_for(engine: EngineKind, version: Option<HaproxyVersion>) -> String {
        let spec = LabSpec::load(None, &Overrides { engine: Some(engine), ..Default::default() }).unwrap();
        let e = crate::engine::for_spec(&spec);
        let lab = Lab::new("/lab").unwrap();
        let backends: Vec<Backend> = (1..=3).map(|id| Backend::new(id, &e.node_ports(id))).collect();
        render(&lab, &spec.haproxy, &spec.security, e.as_ref(), &backends, version).unwrap()
    }

    #[test]
    fn versions_are_read_from_haproxy_v() {
        assert_eq!(parse_version("HAProxy version 2.6.12-1+deb12u4 2025/04/10 - https://haproxy.org/\nStatus: long-term"), Some((2, 6)));
        assert_eq!(parse_version("HA-Proxy version 1.8.3-205f675 2017/12/30\nCopyright"), Some((1, 8)));
        assert_eq!(parse_version("HAProxy version 3.2-dev4 2025/01/22"), Some((3, 2)));
        assert_eq!(parse_version("something else"), None);
    }

    #[test]
    fn only_haproxy_2_6_and_later_are_told_not_to_load_the_ca_store() {
        let line = "httpclient.ssl.verify none";
        assert!(rendered_for(EngineKind::Etcd, Some((2, 6))).contains(line));
        assert!(rendered_for(EngineKind::Etcd, Some((3, 0))).contains(line));
        // 2.4 and 2.5 predate the keyword; an unreadable version gets the older config.
        for v in [Some((2, 4)), Some((2, 5)), None] {
            let text = rendered_for(EngineKind::Etcd, v);
            assert!(!text.contains("httpclient"), "{v:?}");
            assert!(text.contains("    max-spread-checks 1\n    # Saved by roachlab"), "{v:?}");
        }
    }

    #[test]
    fn cockroach_config() {
        insta::assert_snapshot!(rendered(EngineKind::Cockroach));
    }

    #[test]
    fn etcd_config() {
        insta::assert_snapshot!(rendered(EngineKind::Etcd));
    }

    #[test]
    fn show_stat_rows_are_parsed() {
        let text = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status\n\
psql,FRONTEND,,,0,1,4096,1,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,1,\n\
psql,node1,0,0,2,2,,5,0,0,,0,,0,0,0,0,UP,1,1,0,0,0,10,0,,1,2,1,,5,,2,0,,1,L7OK\n\
psql,node2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,1,1,3,3,,1,2,2,,0,,2,0,,0,L4CON\n\
psql,BACKEND,0,0,2,2,410,5,0,0,0,0,,0,0,0,0,UP,1,1,0,,0,10,0,,1,2,0,,5,,1,0,,1,\n";
        let rows = parse_stat(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].node(), rows[0].status.as_str(), rows[0].sessions), (Some(1), "UP", 2));
        assert_eq!((rows[1].node(), rows[1].check_status.as_str()), (Some(2), "L4CON"));
    }
}
