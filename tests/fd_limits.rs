//! The binary under a low open-file limit (issue 9, item 13): `max_connections` is sized to
//! the limit, connections over it get a prompt 503, existing ones keep working, and the log
//! is not flooded.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_swarmgate");
const FD_LIMIT: u64 = 128;
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x.example.com\r\n\r\n";

/// One keep-alive request on `s`; the response head's first line.
async fn request(s: &mut TcpStream) -> String {
    s.write_all(REQUEST).await.unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("answer in time").unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_owned()
}

/// Kills the child when the test ends, passed or not.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn over_the_fd_limit_clients_get_503_and_existing_ones_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let path = dir.path().join("sg.toml");
    std::fs::write(
        &path,
        format!(
            "storage = \"{}\"\n[listen]\nhttp = \"127.0.0.1:{port}\"\nworkers = 2\n[log]\naccess = false\nlevel = \"warn\"\n[docker]\nenabled = false\n\
             [[routes]]\nhosts = [\"x.example.com\"]\nrespond = {{ body = \"x\" }}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config"]).arg(&path).stdout(Stdio::null()).stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: FD_LIMIT as libc::rlim_t, rlim_max: FD_LIMIT as libc::rlim_t };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = Child(cmd.spawn().unwrap());
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut first = None;
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(addr).await {
            first = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut kept = vec![first.expect("swarmgate listening")];
    assert!(request(&mut kept[0]).await.starts_with("HTTP/1.1 200"));
    // (128 − 32 reserved) / 3 = 32 connections allowed: open them and as many again.
    let (mut ok, mut refused) = (1, 0);
    for _ in 0..70 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let line = request(&mut s).await;
        if line.starts_with("HTTP/1.1 200") {
            ok += 1;
            kept.push(s);
        } else {
            assert!(line.is_empty() || line.starts_with("HTTP/1.1 503"), "{line:?}");
            refused += 1;
        }
    }
    assert!(refused >= 30, "{ok} served, {refused} refused");
    assert!(ok >= 20, "{ok} served, {refused} refused");
    // Every connection that was served still is.
    for s in &mut kept {
        assert!(request(s).await.starts_with("HTTP/1.1 200"), "an existing connection broke");
    }
    let mut stderr = child.0.stderr.take().unwrap();
    drop(child);
    let mut log = String::new();
    stderr.read_to_string(&mut log).unwrap();
    assert_eq!(log.matches("max_connections lowered").count(), 1, "{log}");
    let refusals = log.matches("refusing connections").count();
    assert!((1..=2).contains(&refusals), "one line per interval per listener thread, got {refusals}: {log}");
    assert!(!log.contains("accept failed"), "ran out of descriptors: {log}");
}
