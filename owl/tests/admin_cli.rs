//! `owl admin agent-token create | list | revoke` as an operator runs them.

use std::path::Path;
use std::process::Command;

fn owl(data: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_owl"))
        .args(["admin", "--data-dir"])
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn agent_tokens_are_created_once_listed_and_revoked() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let (ok, out) = owl(
        &data,
        &["agent-token", "create", "--name", "web-01", "--region", "cn"],
    );
    assert!(ok, "{out}");
    let token = out.lines().last().unwrap().trim().to_string();
    assert!(token.starts_with("owl_") && token.len() > 30, "{out}");
    // Only its digest is stored.
    let db = std::fs::read(data.join("owl.db")).unwrap();
    assert!(
        !db.windows(token.len()).any(|w| w == token.as_bytes()),
        "the token is stored in clear"
    );

    let (ok, out) = owl(&data, &["agent-token", "create", "--name", "web-01"]);
    assert!(!ok && out.contains("exists already"), "{out}");
    let (ok, out) = owl(&data, &["agent-token", "create", "--name", "no spaces"]);
    assert!(!ok && out.contains("--name"), "{out}");

    let (ok, out) = owl(&data, &["agent-token", "list"]);
    assert!(ok, "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("web-01"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains(" CN ") && row.trim_end().ends_with('-'), "{row}");
    assert!(!out.contains(&token), "list never shows a token");

    let (ok, out) = owl(&data, &["agent-token", "revoke", "--name", "web-01"]);
    assert!(ok, "{out}");
    let (ok, out) = owl(&data, &["agent-token", "revoke", "--name", "web-01"]);
    assert!(!ok, "{out}");
    let (_, out) = owl(&data, &["agent-token", "list"]);
    let row = out.lines().find(|l| l.starts_with("web-01")).unwrap();
    assert!(!row.trim_end().ends_with(" -"), "revoked shows when: {row}");
}
