//! The last good Swarm snapshot on disk, so a restart while Docker is away still routes.
//! Written atomically (temp file, fsync, rename, fsync of the folder): a crash mid-write leaves
//! the previous file, never half of one.

use std::io::Write;
use std::path::Path;

use crate::discovery::ProviderSnapshot;

/// File name inside the storage folder.
pub const SNAPSHOT_FILE: &str = "swarm-snapshot.json";
const FORMAT: u32 = 1;

#[derive(serde::Serialize)]
struct OnDiskRef<'a> {
    format: u32,
    saved_at_unix: u64,
    snapshot: &'a ProviderSnapshot,
}

#[derive(serde::Deserialize)]
struct OnDisk {
    format: u32,
    snapshot: ProviderSnapshot,
}

/// Save `snapshot` as `<storage>/swarm-snapshot.json`, creating the folder if needed.
pub fn persist(storage: &Path, snapshot: &ProviderSnapshot) -> std::io::Result<()> {
    std::fs::create_dir_all(storage)?;
    let saved_at_unix =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let json =
        serde_json::to_vec(&OnDiskRef { format: FORMAT, saved_at_unix, snapshot }).map_err(std::io::Error::other)?;
    let tmp = storage.join(format!(".{SNAPSHOT_FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, storage.join(SNAPSHOT_FILE))?;
    // Make the rename itself durable.
    if let Ok(dir) = std::fs::File::open(storage) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The snapshot a previous run saved, or `None` (missing, unreadable or from another format,
/// each logged).
pub fn load_persisted(storage: &Path) -> Option<ProviderSnapshot> {
    let path = storage.join(SNAPSHOT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read the saved Swarm snapshot");
            return None;
        }
    };
    match serde_json::from_slice::<OnDisk>(&bytes) {
        Ok(d) if d.format == FORMAT => Some(d.snapshot),
        Ok(d) => {
            tracing::warn!(file = %path.display(), format = d.format, "ignoring a saved Swarm snapshot of another format");
            None
        }
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "ignoring an unreadable saved Swarm snapshot");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Endpoint, Middleware, Problem, Provenance, RouteSpec, TaskTarget, UpstreamSpec, UpstreamTarget,
    };

    #[test]
    fn round_trip_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_persisted(dir.path()), None);
        let mut r = RouteSpec::proxy(
            "svc/web/0",
            Provenance::Service { service: "web".into(), key: "swarmgate.host".into() },
            vec!["web.example.com".into()],
            UpstreamSpec::new(UpstreamTarget::Static(vec![Endpoint {
                addr: "10.0.1.3:80".parse().unwrap(),
                task: "t1".into(),
                node: "n1".into(),
            }])),
        );
        r.middlewares.push(Middleware::RateLimit {
            average: 5,
            period: std::time::Duration::from_millis(1500),
            burst: 2,
        });
        let mut other = r.clone();
        other.id = "svc/web/1".into();
        other.upstream_mut().unwrap().target =
            UpstreamTarget::Tasks(vec![TaskTarget { service: "web".into(), network: None, port: 80 }]);
        let snap = ProviderSnapshot {
            routes: vec![r, other],
            problems: vec![Problem::new("web", "swarmgate.lb", "bad")],
            ..Default::default()
        };
        persist(dir.path(), &snap).unwrap();
        assert_eq!(load_persisted(dir.path()), Some(snap.clone()));
        // Overwrite is atomic and leaves no temp file behind.
        persist(dir.path(), &ProviderSnapshot::default()).unwrap();
        assert_eq!(load_persisted(dir.path()), Some(ProviderSnapshot::default()));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::write(dir.path().join(SNAPSHOT_FILE), b"{not json").unwrap();
        assert_eq!(load_persisted(dir.path()), None);
    }
}
