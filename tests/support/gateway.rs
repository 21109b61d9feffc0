//! An in-process swarmgate on ephemeral loopback ports.

use std::net::SocketAddr;
use std::path::PathBuf;

use swarmgate::app::Running;
use swarmgate::config::Config;

pub struct Gateway {
    pub running: Option<Running>,
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// State directory of a config without `storage`: never the checkout.
    _storage: Option<tempfile::TempDir>,
}

impl Gateway {
    /// Starts from TOML text (no `[listen]` needed: http and admin on ephemeral ports).
    pub async fn start(toml: &str) -> Gateway {
        Self::start_with_path(toml, None).await
    }

    pub async fn start_with_path(toml: &str, path: Option<PathBuf>) -> Gateway {
        let text = if toml.contains("[listen]") {
            toml.to_owned()
        } else {
            format!("[listen]\nhttp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n{toml}")
        };
        // Never the machine's own engine unless the test asks for Docker: a real Swarm (or the
        // services another suite left behind) must not leak routes into this one.
        let text = if text.contains("[docker]") { text } else { format!("{text}\n[docker]\nenabled = false\n") };
        let mut cfg = match &path {
            Some(p) => {
                std::fs::write(p, &text).unwrap();
                Config::load(p).unwrap()
            }
            None => Config::parse(&text, std::path::Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}")),
        };
        let storage = cfg.storage.is_none().then(|| tempfile::tempdir().unwrap());
        if let Some(dir) = &storage {
            cfg.storage = Some(dir.path().to_owned());
        }
        let running = swarmgate::app::start(cfg, path).await.unwrap();
        Gateway {
            http: running.http_addr.unwrap(),
            https: running.https_addr,
            admin: running.admin_addr,
            running: Some(running),
            _storage: storage,
        }
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(r) = &self.running {
            r.shutdown_token().cancel();
        }
    }
}
