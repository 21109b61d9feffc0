//! A swarmgate with an HTTPS listener and static certificates from a test CA, and a TLS client.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::gateway::Gateway;
use super::pki::Ca;

pub struct TlsGateway {
    pub ca: Ca,
    pub gw: Gateway,
    _dir: tempfile::TempDir,
}

impl TlsGateway {
    /// One certificate per entry of `certs` (its names), plus `toml` (routes, limits).
    pub async fn start(certs: &[&[&str]], toml: &str) -> TlsGateway {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new();
        let mut cfg =
            String::from("[listen]\nhttp = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n");
        for (i, names) in certs.iter().enumerate() {
            let (cert, key) = ca.leaf(dir.path(), &format!("c{i}"), names, false);
            cfg += &format!("[[tls.certificates]]\ncert = \"{}\"\nkey = \"{}\"\n", cert.display(), key.display());
        }
        cfg += toml;
        let gw = Gateway::start(&cfg).await;
        TlsGateway { ca, gw, _dir: dir }
    }

    pub fn https(&self) -> SocketAddr {
        self.gw.https.unwrap()
    }

    /// A TLS connection with `sni` and the given ALPN protocols.
    pub async fn connect(&self, sni: &str, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.https()).await.unwrap();
        tls_over(tcp, &self.ca.client_config(alpn), sni).await
    }
}

/// The client side of a TLS handshake over `tcp`.
pub async fn tls_over(tcp: TcpStream, cfg: &Arc<rustls::ClientConfig>, sni: &str) -> TlsStream<TcpStream> {
    TlsConnector::from(cfg.clone()).connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp).await.unwrap()
}
