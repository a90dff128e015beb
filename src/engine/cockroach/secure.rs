//! A secure CockroachDB lab (`up --secure`): its certificates made by `cockroach cert`, the
//! DB Console's admin user, and roachlab's own session on the admin HTTP endpoints.
//!
//! On a secure cluster every admin endpoint but `/health` and `/_status/vars` needs a session
//! cookie (v20.1.5, observed: `/_admin/v1/liveness` and `/_status/nodes` answer 401 "a valid
//! authentication cookie is required"). A session is made by `POST /login` with a SQL user's
//! password (`UserLogin`, server/serverpb/authentication.proto: `post: "/login"`; the reply's
//! `Set-Cookie: session=…` is valid on every node, sessions being kept in
//! `system.web_sessions`). So a secure lab gets a user, [`ADMIN_USER`], member of `admin`,
//! with a random password kept 0600 in `DIR/certs-ca/admin.password`: people log in to the DB
//! Console with it, and roachlab's observer logs in with it.

use std::sync::Mutex;
use std::time::Duration;

use super::{offline_env, run_cli, Cockroach};
use crate::certs::CertPaths;
use crate::{Error, Result};

/// The DB Console's (and roachlab's own HTTP) user on a secure lab. (`admin` itself is the
/// role: "admin cannot be a member of itself".)
pub const ADMIN_USER: &str = "roachlab";

/// Where the admin user's password is kept: beside the CA's key, in the 0700 directory.
pub fn password_file(paths: &CertPaths) -> std::path::PathBuf {
    paths.ca_key_dir.join("admin.password")
}

/// CockroachDB's own way ("cockroach cert", v20.1): `create-ca`, `create-node` naming every
/// host, `create-client root`, into `--certs-dir` with the CA key apart (`--ca-key`). A
/// partial set is made again from scratch, never mixed with a new CA.
pub(super) async fn make_certs(bin: &std::path::Path, paths: &CertPaths, hosts: &[String]) -> Result<()> {
    let _ = std::fs::remove_dir_all(&paths.dir);
    let _ = std::fs::remove_dir_all(&paths.ca_key_dir);
    crate::certs::make_dirs(paths)?;
    let dirs = [format!("--certs-dir={}", paths.dir.display()), format!("--ca-key={}", paths.ca_key().display())];
    let node: Vec<String> = ["cert", "create-node"].iter().map(|s| s.to_string()).chain(hosts.iter().cloned()).collect();
    for head in [vec!["cert".to_string(), "create-ca".into()], node, vec!["cert".into(), "create-client".into(), "root".into()]] {
        let args: Vec<String> = head.into_iter().chain(dirs.iter().cloned()).collect();
        let (ok, out, err) = run_cli("cockroach", bin, &args, &offline_env(), Duration::from_secs(60)).await?;
        if !ok {
            return Err(Error::engine("cockroach", format!("`cockroach {}` failed: {}", args.join(" "), super::last_lines(&err, &out))));
        }
    }
    crate::certs::write_client_pem(paths)
}

/// A new password: 24 letters and digits from the system's random source.
fn new_password() -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| Error::Refused(format!("no random bytes for the admin password: {e}")))?;
    Ok(bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect())
}

/// Creates [`ADMIN_USER`] with a new password (kept 0600 in [`password_file`]) and makes it a
/// member of `admin`, through `url` (a node, over the lab's TLS as `root`). The password goes
/// over that connection, never on a command line. Returns the password file.
pub(super) async fn create_admin(url: &str, paths: &CertPaths) -> Result<std::path::PathBuf> {
    let file = password_file(paths);
    let password = match std::fs::read_to_string(&file) {
        Ok(p) if !p.trim().is_empty() => p.trim().to_string(),
        _ => {
            let p = new_password()?;
            crate::certs::write_file(&file, p.as_bytes(), 0o600)?;
            p
        }
    };
    let c = crate::sql::connect(url, Duration::from_secs(30)).await?;
    // Letters and digits only: a literal needs no escaping (CREATE USER takes no placeholder).
    let sql = format!("CREATE USER IF NOT EXISTS {ADMIN_USER} WITH PASSWORD '{password}'; GRANT admin TO {ADMIN_USER}");
    c.batch_execute(&sql)
        .await
        .map_err(|e| Error::engine("cockroach", format!("creating the admin user: {}", crate::sql::describe(&e))))?;
    Ok(file)
}

/// roachlab's session on a secure cluster's admin endpoints: its cookie, made on demand.
#[derive(Debug, Default)]
pub(super) struct Session {
    cookie: Mutex<Option<String>>,
}

impl Cockroach {
    /// GET `path` on a node's admin HTTP (`addr` is `host:port`): the body on 2xx, else a short
    /// reason. A secure lab's request carries roachlab's session, made (or made again after a
    /// 401) by logging in as [`ADMIN_USER`].
    pub(super) async fn fetch_admin(&self, client: &reqwest::Client, addr: String, path: &str) -> std::result::Result<String, String> {
        let Some(certs) = self.certs.as_ref().filter(|_| self.secure) else {
            return super::super::fetch_text(client, addr, path).await;
        };
        let url = crate::tls::url(&addr, path);
        for attempt in 0..2 {
            let cookie = self.session.cookie.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let cookie = match cookie {
                Some(c) if attempt == 0 => c,
                _ => self.login(client, &addr, certs).await?,
            };
            match client.get(&url).header(reqwest::header::COOKIE, &cookie).send().await {
                Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => {
                    *self.session.cookie.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                Ok(r) if r.status().is_success() => return r.text().await.map_err(|e| super::super::describe_http_error(&e)),
                Ok(r) => return Err(format!("HTTP {}", r.status().as_u16())),
                Err(e) => return Err(super::super::describe_http_error(&e)),
            }
        }
        Err("HTTP 401: the admin session was refused twice".into())
    }

    /// `POST /login` as [`ADMIN_USER`] on `addr`; the session cookie (`session=…`), kept.
    async fn login(&self, client: &reqwest::Client, addr: &str, certs: &CertPaths) -> std::result::Result<String, String> {
        let file = password_file(certs);
        let password = std::fs::read_to_string(&file).map_err(|e| format!("no admin password ({}: {e})", file.display()))?;
        let body = serde_json::json!({ "username": ADMIN_USER, "password": password.trim() });
        let r = client.post(crate::tls::url(addr, "/login")).json(&body).send().await.map_err(|e| super::super::describe_http_error(&e))?;
        if !r.status().is_success() {
            return Err(format!("login as {ADMIN_USER}: HTTP {}", r.status().as_u16()));
        }
        let cookie = r
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.split(';').next().filter(|c| c.starts_with("session=")).map(str::to_string))
            .ok_or_else(|| format!("login as {ADMIN_USER}: no session cookie in the reply"))?;
        *self.session.cookie.lock().unwrap_or_else(|e| e.into_inner()) = Some(cookie.clone());
        Ok(cookie)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_unambiguous_and_differ() {
        let (a, b) = (new_password().unwrap(), new_password().unwrap());
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() && !"0O1lI".contains(c)), "{a}");
        assert_ne!(a, b);
    }
}
