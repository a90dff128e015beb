//! The console's per-lab token: 32 random bytes as hex in `DIR/console.token` (mode 0600),
//! made at the first `up` and kept with the lab (`down --wipe` removes it with the
//! directory). Requests that change the lab must carry it; reading needs none — as Jupyter
//! guards its server with the token its URL carries.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::lab::Lab;
use crate::{Error, Result};

/// The request header that carries the token (a custom header: a cross-site page cannot
/// send it without a CORS preflight, which the console never answers).
pub const HEADER: &str = "x-roachlab-token";

/// The lab's token, made (0600, written whole) if the lab has none yet.
///
/// Errors: the file cannot be read or created (`Error::Io`, naming the path); the system's
/// random source fails.
pub fn load_or_create(lab: &Lab) -> Result<String> {
    let path = lab.console_token();
    if let Some(t) = read(&path)? {
        return Ok(t);
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Refused(format!("cannot make the console's token: no random bytes ({e})")))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // Written under another name and renamed, so a reader never sees half a token; created
    // 0600 from the start, never widened.
    let tmp = path.with_extension("token.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(format!("cannot create {}", tmp.display()), e))?;
    f.write_all(token.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| Error::io(format!("cannot write {}", tmp.display()), e))?;
    // Two `up`s racing: the first token that lands wins and both read it back.
    match std::fs::hard_link(&tmp, &path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(format!("cannot create {}", path.display()), e)),
    }
    let _ = std::fs::remove_file(&tmp);
    read(&path)?.ok_or_else(|| Error::Refused(format!("{} is empty", path.display())))
}

/// The token in `path`, if the file exists and holds one.
pub fn read(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_string())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("cannot read {}", path.display()), e)),
    }
}

/// Whether `given` is `token`, compared in time that does not depend on where they differ.
pub fn matches(given: &str, token: &str) -> bool {
    let (a, b) = (given.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_token_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let lab = Lab::new(dir.path()).unwrap();
        let t = load_or_create(&lab).unwrap();
        assert_eq!(t.len(), 64);
        assert!(t.chars().all(|c| c.is_ascii_hexdigit()));
        let mode = std::fs::metadata(lab.console_token()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create(&lab).unwrap(), t, "kept across calls");
        assert!(matches(&t, &t));
        assert!(!matches(&t[..63], &t));
        assert!(!matches(&format!("{}0", &t[..63]), &format!("{}1", &t[..63])));
    }
}
