//! Which networks does the proxy itself sit on? When it runs in a container, task addresses
//! must come from a network it shares, or every dial goes nowhere. Best effort: find our own
//! container id (mountinfo, cgroup, hostname), inspect it, keep its non-ingress networks.

use super::client::DockerClient;
use super::SwarmError;

/// 64-hex container ids visible in a `/proc` file (cgroup v1 paths, `docker-<id>.scope`, or the
/// `/docker/containers/<id>/hostname` bind mount that cgroup v2 leaves in mountinfo).
/// Only ids right after `containers/`, `docker/` or `docker-` count: overlay layer ids in the
/// root mount line are 64 hex characters too.
pub fn container_ids_in(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for marker in ["containers/", "docker/", "docker-"] {
        for (i, _) in text.match_indices(marker) {
            let rest = &text[i + marker.len()..];
            let Some(id) = rest.get(..64) else { continue };
            let ends = rest[64..].chars().next().is_none_or(|c| !c.is_ascii_hexdigit());
            if ends && id.bytes().all(|b| b.is_ascii_hexdigit()) && !out.iter().any(|o| o == id) {
                out.push(id.to_owned());
            }
        }
    }
    out
}

/// Candidate ids for our own container, most reliable first; the hostname last (Swarm sets it
/// to the short container id unless the service sets `hostname`).
fn candidates() -> Vec<String> {
    let mut out = Vec::new();
    for file in ["/proc/self/mountinfo", "/proc/self/cgroup"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            for id in container_ids_in(&text) {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
    }
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() && !out.iter().any(|o| o == h) {
            out.push(h.to_owned());
        }
    }
    out
}

/// `Some(networks)` (IDs and names) when our own container was found, `None` when we do not
/// seem to run in a container this engine knows.
pub async fn own_networks(client: &DockerClient) -> Result<Option<Vec<String>>, SwarmError> {
    for id in candidates() {
        // Best effort: only an unreachable engine is an error; an odd answer for one candidate
        // (say, a hostname the engine rejects) just moves on to the next.
        let c = match client.container(&id).await {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e @ SwarmError::Unreachable { .. }) => return Err(e),
            Err(e) => {
                tracing::debug!(candidate = %id, error = %e, "not our container");
                continue;
            }
        };
        let mut nets = Vec::new();
        for (name, n) in &c.network_settings.networks {
            // The routing mesh and per-node bridges never carry proxy → task traffic.
            if matches!(name.as_str(), "ingress" | "host" | "none" | "bridge" | "docker_gwbridge") {
                continue;
            }
            nets.push(n.network_id.clone());
            nets.push(name.clone());
        }
        nets.retain(|n| !n.is_empty());
        tracing::info!(container = %c.id.get(..12).unwrap_or(&c.id), networks = ?nets, "found the proxy's own container");
        return Ok(Some(nets));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_cgroup_and_mountinfo() {
        let id = "e5d62702a1b48d3e1f0a8b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f70";
        let v1 = format!("12:pids:/docker/{id}\n11:memory:/docker/{id}\n");
        assert_eq!(container_ids_in(&v1), vec![id.to_owned()]);
        let scope = format!("0::/system.slice/docker-{id}.scope\n");
        assert_eq!(container_ids_in(&scope), vec![id.to_owned()]);
        let mi = format!(
            "611 592 254:1 /var/lib/docker/containers/{id}/hostname /etc/hostname rw,relatime - ext4 /dev/vda1 rw\n"
        );
        assert_eq!(container_ids_in(&mi), vec![id.to_owned()]);
        assert!(container_ids_in("0::/\n").is_empty());
        let layer = format!("1 0 0:1 / / rw - overlay overlay rw,upperdir=/var/lib/docker/overlay2/{id}/diff\n");
        assert!(container_ids_in(&layer).is_empty());
    }
}
