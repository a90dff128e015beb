//! `roachlab sql` on a CockroachDB lab: `cockroach sql --insecure --url …` (the v20.1 client
//! flags: `cockroach sql --help`; `-e` runs a statement and exits with its status, and may be
//! repeated), else PostgreSQL's `psql` with the same URL (`-c`, psql(1)), for a shell where
//! the cockroach binary is not found (it is found through `$ROACHLAB_COCKROACH` or the
//! config, as for the nodes).

use std::path::PathBuf;
use std::process::Command;

use crate::{Error, Result};

/// The SQL shell for `addr` (`host:port`): `cockroach` (when `cockroach` is `Ok`) or `psql`
/// from `PATH`; `execute` statements run in order, none for an interactive shell. Errors:
/// the binary's own not-found error when neither is there.
pub(super) fn sql(cockroach: Result<PathBuf>, addr: &str, execute: &[String], certs: Option<&crate::certs::CertPaths>) -> Result<Command> {
    // A secure lab: the server verified against the lab's CA and by name, the `root` client
    // certificate presented — in the URL, as both clients read it (libpq's sslrootcert,
    // sslcert, sslkey; CockroachDB's connection parameters).
    let url = match certs {
        Some(c) => format!(
            "postgresql://root@{addr}/defaultdb?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
            c.ca_crt().display(),
            c.client_crt().display(),
            c.client_key().display()
        ),
        None => format!("postgresql://root@{addr}/defaultdb?sslmode=disable"),
    };
    // The client, its arguments before the URL, and the flag that runs one statement.
    let cockroach_args: &[&str] = if certs.is_some() { &["sql", "--url"] } else { &["sql", "--insecure", "--url"] };
    let (bin, leading, statement) = match cockroach {
        Ok(bin) => (bin, cockroach_args, "-e"),
        Err(not_found) => match which::which("psql") {
            // ON_ERROR_STOP: stop at the first failing statement, so the exit status says so.
            Ok(psql) => (psql, ["--no-psqlrc", "-v", "ON_ERROR_STOP=1"].as_slice(), "-c"),
            Err(_) => {
                return Err(match not_found {
                    Error::BinaryNotFound { name, env_var, install } => Error::BinaryNotFound {
                        name,
                        env_var,
                        install: format!("{install} (or install PostgreSQL's psql: `sudo apt-get install postgresql-client`)"),
                    },
                    other => other,
                })
            }
        },
    };
    let mut c = Command::new(bin);
    c.args(leading).arg(&url);
    for e in execute {
        c.args([statement, e.as_str()]);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_become_repeated_flags_of_either_client() {
        let c = sql(Ok("/opt/cockroach".into()), "127.0.0.1:26257", &["select 1".into(), "select 2".into()], None).unwrap();
        let args: Vec<String> = c.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args,
            [
                "sql",
                "--insecure",
                "--url",
                "postgresql://root@127.0.0.1:26257/defaultdb?sslmode=disable",
                "-e",
                "select 1",
                "-e",
                "select 2"
            ]
        );
        // Without the cockroach binary, psql (installed with PostgreSQL, as in CI).
        if which::which("psql").is_ok() {
            let c = sql(Err(Error::Refused("no cockroach".into())), "127.0.0.1:26257", &["select 1".into()], None).unwrap();
            let args: Vec<String> = c.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
            assert_eq!(
                args,
                ["--no-psqlrc", "-v", "ON_ERROR_STOP=1", "postgresql://root@127.0.0.1:26257/defaultdb?sslmode=disable", "-c", "select 1"]
            );
        }
    }
}
