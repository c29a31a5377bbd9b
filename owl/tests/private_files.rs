//! The real `owl` binary keeps what it writes private: `owl up` on a fresh data directory leaves it
//! 0700 and every file in it (database, WAL, index, generated secrets) without group or other
//! access, whatever the caller's umask.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        out.push(path.clone());
        if path.is_dir() {
            out.extend(files_under(&path));
        }
    }
    out
}

/// Ends the child when the test ends, passed or failed.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn owl_up_creates_its_data_directory_and_files_private() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let child = Command::new(env!("CARGO_BIN_EXE_owl"))
        .args(["up", "--data-dir"])
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--collector-listen", &format!("127.0.0.1:{}", free_port())])
        .env("OWL_ADMIN_PASSWORD", "Owl-private-files-1")
        .env("OWL_AGENT__METRICS_LISTEN", "")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    // Every secret Owl generates, and the SQLite database, exist once it has started.
    let wanted = ["owl.db", "secret-key", "jwt-secret", "agent-token"];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !wanted.iter().all(|f| data.join(f).exists()) {
        assert!(
            Instant::now() < deadline,
            "owl up did not create {wanted:?} within 60 s"
        );
        assert!(child.0.try_wait().unwrap().is_none(), "owl up exited early");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.0.id().to_string())
        .status();
    let _ = child.0.wait();

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory");
    let all = files_under(&data);
    assert!(all.len() > wanted.len(), "{all:?}");
    for path in all {
        assert_eq!(mode(&path) & 0o077, 0, "{} is {:o}", path.display(), mode(&path));
    }
}
