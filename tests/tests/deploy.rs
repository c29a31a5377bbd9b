//! The Kubernetes manifests of `deploy/kubernetes/` against the API's schemas, offline, with
//! kubernetes-validate from the pinned client environment.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs kubernetes-validate --strict on `files`; its success and output.
fn validate(python: &Path, files: &[PathBuf]) -> (bool, String) {
    let tool = python.with_file_name("kubernetes-validate");
    let output = Command::new(tool)
        .arg("--strict")
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn the_manifests_are_valid_kubernetes_resources() {
    let Some(python) = common::python() else { return };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.iter().any(|f| f.ends_with("agent-daemonset.yaml")),
        "{files:?}"
    );
    let (ok, text) = validate(&python, &files);
    assert!(ok, "{text}");
    assert!(text.contains("daemonset/owl-agent"), "{text}");
    assert!(
        text.contains("clusterrole/owl-agent"),
        "the read-only role of the API option: {text}"
    );

    // The check can fail: a misspelt field of the same DaemonSet is refused.
    let broken = tempfile::tempdir().unwrap();
    let daemonset = std::fs::read_to_string(dir.join("agent-daemonset.yaml")).unwrap();
    let misspelt = broken.path().join("broken.yaml");
    std::fs::write(&misspelt, daemonset.replace("tolerations:", "toleration:")).unwrap();
    let (ok, text) = validate(&python, &[misspelt]);
    assert!(!ok, "a misspelt field passed: {text}");
}
