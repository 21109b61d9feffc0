//! Authentication on the admin listener: a bearer token and/or htpasswd users, each read from
//! a file named in `[admin]` (so a Docker secret can hold it). `/healthz` and `/readyz` stay
//! open: Docker's and the orchestrator's health checks carry no credentials and learn nothing
//! from them but "up" and "ready".

use std::path::Path;

use http::{header, HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AdminConfig, ConfigError};
use crate::model::table::BasicAuth;

/// Paths answered without credentials.
pub const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// The admin listener's credentials.
#[derive(Debug)]
pub struct AdminAuth {
    /// SHA-256 of the token: comparing digests in constant time hides the token's length too.
    token: Option<[u8; 32]>,
    basic: Option<BasicAuth>,
    challenge: HeaderValue,
}

impl AdminAuth {
    /// Reads the files `[admin]` names; `None` when it names none. Errors name the key and the
    /// file, never a line's content.
    pub fn load(cfg: &AdminConfig) -> Result<Option<AdminAuth>, ConfigError> {
        let token = match &cfg.token_file {
            Some(path) => Some(read_token(path).map_err(|e| ConfigError::new("admin.token_file", e))?),
            None => None,
        };
        let basic = match &cfg.basic_auth_file {
            Some(path) => {
                let users = read_htpasswd(path).map_err(|e| ConfigError::new("admin.basic_auth_file", e))?;
                Some(BasicAuth::new("swarmgate admin", users))
            }
            None => None,
        };
        if token.is_none() && basic.is_none() {
            return Ok(None);
        }
        let challenge = match (&token, &basic) {
            (_, Some(b)) => b.challenge.clone(),
            _ => HeaderValue::from_static("Bearer realm=\"swarmgate admin\""),
        };
        Ok(Some(AdminAuth { token, basic, challenge }))
    }

    /// The `WWW-Authenticate` value of a 401.
    pub fn challenge(&self) -> &HeaderValue {
        &self.challenge
    }

    /// True when the request carries a valid bearer token or basic credentials.
    pub async fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return false;
        };
        if let (Some(want), Some(given)) = (&self.token, value.as_bytes().strip_prefix(b"Bearer ")) {
            let given: [u8; 32] = Sha256::digest(given.trim_ascii()).into();
            return bool::from(want.ct_eq(&given));
        }
        match &self.basic {
            Some(b) => b.check(Some(value)).await,
            None => false,
        }
    }
}

fn read_token(path: &Path) -> Result<[u8; 32], String> {
    let text = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let token = text.trim_ascii();
    if token.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    if token.iter().any(|b| !b.is_ascii_graphic()) {
        return Err(format!("{}: the token must be one line of visible ASCII", path.display()));
    }
    Ok(Sha256::digest(token).into())
}

fn read_htpasswd(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut users = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((user, hash)) if !user.is_empty() => match crate::password::scheme(hash) {
                Ok(_) => users.push((user.to_owned(), hash.to_owned())),
                Err(e) => return Err(format!("{} line {}: user {user}: {e}", path.display(), i + 1)),
            },
            _ => return Err(format!("{} line {}: expected user:hash", path.display(), i + 1)),
        }
    }
    if users.is_empty() {
        return Err(format!("{} has no user:hash line", path.display()));
    }
    Ok(users)
}
