//! On-disk state of the ACME manager.
//!
//! Layout under the storage directory:
//!
//! ```text
//! account.json          ACME account credentials + the directory URL they belong to (0600)
//! certs/<name>.pem      private key followed by the certificate chain (0600)
//! state/<name>.json     per-name order state: consecutive failures, backoff, last error
//! ```
//!
//! Key and chain live in one file on purpose: a single atomic rename replaces both, so a crash can
//! never leave a new certificate next to an old key. Every write goes to a temp file in the same
//! directory, is fsynced, renamed over the target, and the directory is fsynced.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::AcmeError;

/// Per-name state that must survive restarts so a crash loop cannot hammer the CA.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NameState {
    /// Failed orders in a row (reset on success).
    pub failures: u32,
    /// Human-readable cause of the last failure.
    pub last_error: Option<String>,
    /// No order before this time (unix seconds).
    pub backoff_until: Option<u64>,
    /// Set (unix seconds) when an order starts and cleared when it ends; found set at startup it
    /// means the process died mid-order, which counts as a failure.
    pub attempt_started: Option<u64>,
    /// Last successful issuance (unix seconds).
    pub last_success: Option<u64>,
}

/// Stored ACME account.
#[derive(Serialize, Deserialize)]
pub struct StoredAccount {
    pub directory: String,
    pub credentials: instant_acme::AccountCredentials,
}

/// Filesystem store rooted at one directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// True for names safe to use as file names and sensible to order: lower-case DNS labels only.
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && !name.contains("..")
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

impl Store {
    /// Opens (creating if needed) the store; fails when the directory cannot be made or written.
    pub fn open(root: PathBuf) -> Result<Self, AcmeError> {
        for d in [root.clone(), root.join("certs"), root.join("state")] {
            fs::create_dir_all(&d).map_err(|source| AcmeError::Storage { path: d.clone(), source })?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The directory holds private keys: keep it to the owner.
            let _ = fs::set_permissions(&root, fs::Permissions::from_mode(0o700));
        }
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn cert_path(&self, name: &str) -> PathBuf {
        self.root.join("certs").join(format!("{name}.pem"))
    }

    fn state_path(&self, name: &str) -> PathBuf {
        self.root.join("state").join(format!("{name}.json"))
    }

    /// Names that have a stored certificate.
    pub fn cert_names(&self) -> Vec<String> {
        list_stems(&self.root.join("certs"), "pem")
    }

    /// Names that have stored state.
    pub fn state_names(&self) -> Vec<String> {
        list_stems(&self.root.join("state"), "json")
    }

    /// The stored PEM bundle (key + chain) for `name`.
    pub fn read_cert(&self, name: &str) -> Result<Option<Vec<u8>>, AcmeError> {
        read_opt(&self.cert_path(name))
    }

    /// Stores key and chain for `name` in one atomic write, mode 0600.
    pub fn write_cert(&self, name: &str, key_pem: &str, chain_pem: &str) -> Result<(), AcmeError> {
        let mut bundle = String::with_capacity(key_pem.len() + chain_pem.len() + 1);
        bundle.push_str(key_pem.trim_end());
        bundle.push('\n');
        bundle.push_str(chain_pem);
        atomic_write(&self.cert_path(name), bundle.as_bytes(), true)
    }

    /// Stored state for `name`; unreadable state is treated as absent (and logged).
    pub fn read_state(&self, name: &str) -> NameState {
        let path = self.state_path(name);
        match read_opt(&path) {
            Ok(Some(b)) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable ACME state file");
                NameState::default()
            }),
            Ok(None) => NameState::default(),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring unreadable ACME state file");
                NameState::default()
            }
        }
    }

    pub fn write_state(&self, name: &str, state: &NameState) -> Result<(), AcmeError> {
        let json = serde_json::to_vec_pretty(state).map_err(|e| AcmeError::Encode(e.to_string()))?;
        atomic_write(&self.state_path(name), &json, false)
    }

    pub fn read_account(&self) -> Result<Option<StoredAccount>, AcmeError> {
        let path = self.root.join("account.json");
        match read_opt(&path)? {
            None => Ok(None),
            Some(b) => {
                serde_json::from_slice(&b).map(Some).map_err(|e| AcmeError::Corrupt { path, detail: e.to_string() })
            }
        }
    }

    pub fn write_account(&self, account: &StoredAccount) -> Result<(), AcmeError> {
        let json = serde_json::to_vec_pretty(account).map_err(|e| AcmeError::Encode(e.to_string()))?;
        atomic_write(&self.root.join("account.json"), &json, true)
    }
}

fn list_stems(dir: &Path, ext: &str) -> Vec<String> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some(ext) {
                return None;
            }
            let stem = p.file_stem()?.to_str()?.to_owned();
            valid_file_name(&stem).then_some(stem)
        })
        .collect();
    out.sort();
    out
}

fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, AcmeError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AcmeError::Storage { path: path.into(), source }),
    }
}

/// Temp file in the same directory, fsync, rename over `path`, fsync the directory.
pub fn atomic_write(path: &Path, data: &[u8], private: bool) -> Result<(), AcmeError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let err = |source| AcmeError::Storage { path: path.into(), source };
    let file_name = path.file_name().and_then(|f| f.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{file_name}.tmp-{}-{}", std::process::id(), fastrand::u64(..)));
    let result = (|| {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(if private { 0o600 } else { 0o644 });
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_atomic_and_keys_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("acme")).unwrap();
        store.write_cert("a.example.com", "KEY", "CHAIN\n").unwrap();
        store.write_cert("a.example.com", "KEY2", "CHAIN2\n").unwrap();
        assert_eq!(store.read_cert("a.example.com").unwrap().unwrap(), b"KEY2\nCHAIN2\n");
        assert_eq!(store.cert_names(), vec!["a.example.com".to_string()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(store.cert_path("a.example.com")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temp files left behind.
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("acme/certs"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn state_round_trips_and_garbage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_path_buf()).unwrap();
        let st = NameState {
            failures: 3,
            last_error: Some("boom".into()),
            backoff_until: Some(42),
            attempt_started: None,
            last_success: None,
        };
        store.write_state("b.example.com", &st).unwrap();
        assert_eq!(store.read_state("b.example.com"), st);
        fs::write(dir.path().join("state/c.example.com.json"), b"{not json").unwrap();
        assert_eq!(store.read_state("c.example.com"), NameState::default());
    }

    #[test]
    fn file_names_are_restricted() {
        assert!(valid_file_name("a-b.example.com"));
        assert!(!valid_file_name("../etc/passwd"));
        assert!(!valid_file_name("*.example.com"));
        assert!(!valid_file_name("A.example.com"));
        assert!(!valid_file_name(""));
    }
}
