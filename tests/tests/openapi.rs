//! Schemathesis (from the pinned virtual environment) against `/openapi.json` of a running
//! `owl up --demo`: every operation of the query API with an admin token, every receiver of the
//! collector with the agent token. No answer may be a 5xx, and each must match its documented
//! status, media type and schema.

mod common;

use std::process::Command;

use common::*;

/// The checks every answer must pass.
const CHECKS: &str =
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

/// Runs `st run` with `args` and fails with its report unless every check passed.
async fn schemathesis(python: &std::path::Path, what: &str, args: Vec<String>) {
    let st = python.with_file_name("st");
    // Its cache of earlier failures goes to a directory of this run, not into the source tree.
    let workdir = tempfile::tempdir().unwrap();
    let cwd = workdir.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || Command::new(st).args(&args).current_dir(cwd).output())
        .await
        .unwrap()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.split("SUMMARY").last().unwrap_or_default();
    println!("schemathesis, {what}:{summary}");
    assert!(
        output.status.success(),
        "schemathesis found failures in {what} ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn common_args(schema: &str, token: &str) -> Vec<String> {
    [
        "run",
        schema,
        "--header",
        &format!("Authorization: Bearer {token}"),
        "--checks",
        CHECKS,
        "--max-examples",
        "8",
        "--request-timeout",
        "30",
        "--workers",
        "1",
        // The same cases every run, so that a failure reproduces.
        "--generation-deterministic",
        "--no-color",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_off_its_schema() {
    let Some(python) = python() else { return };
    // The seed's example of the alert test sends to Slack; unconfigured, its documented answer
    // is a 500 (LOG_ALERT_TEST_FAILED).
    let hook = webhook_sink().await;
    let node = start_demo_with(|config| notify_slack_at(config, &hook)).await;
    let http = reqwest::Client::new();
    let token = admin_token(&http, &node).await;
    let schema = format!("{}/openapi.json", node.query);

    // The query API. Logout would revoke the token the run uses, and the live tail never ends.
    let mut args = common_args(&schema, &token);
    args.extend(
        [
            "--exclude-path",
            "/api/auth/logout",
            "--exclude-path",
            "/api/v1/logs/stream",
            "--exclude-tag-regex",
            "^(ingest|otlp|elasticsearch|loki|collector health)$",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    schemathesis(&python, "the query API", args).await;

    // The collector's receivers, at its own address. Owl's NDJSON batch has no serializer in
    // schemathesis; its parser is fuzzed by `fuzz/fuzz_targets/ingest_line.rs`.
    let mut args = common_args(&schema, &node.agent_token());
    args.extend(
        [
            "--url",
            &node.collector,
            "--include-tag-regex",
            "^(otlp|elasticsearch|loki)$",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    schemathesis(&python, "the collector", args).await;

    node.stop().await;
}
