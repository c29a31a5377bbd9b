//! The node every end-to-end test starts: `owl up` on free ports with a temporary data dir.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use owl::up::{UpOptions, run_all_on};
use owl_config::{Config, InputConfig, ParserKind, ReadFrom, Secret};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const ADMIN_PASSWORD: &str = "Owl-e2e-password-1";

pub struct Node {
    pub query: String,
    pub collector: String,
    pub data_dir: tempfile::TempDir,
    pub logs: tempfile::TempDir,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub async fn start() -> Node {
    start_tweaked(|_| {}).await
}

/// [`start`] with changes to the configuration.
pub async fn start_tweaked(tweak: impl FnOnce(&mut Config)) -> Node {
    start_with(
        UpOptions {
            demo: false,
            demo_rate: 0,
        },
        tweak,
    )
    .await
}

/// `owl up --demo` on free ports: the demo's generated logs, CRM rows and directory.
pub async fn start_demo() -> Node {
    start_demo_with(|_| {}).await
}

/// [`start_demo`] with changes to the configuration.
pub async fn start_demo_with(tweak: impl FnOnce(&mut Config)) -> Node {
    start_with(
        UpOptions {
            demo: true,
            demo_rate: 5,
        },
        tweak,
    )
    .await
}

async fn start_with(options: UpOptions, tweak: impl FnOnce(&mut Config)) -> Node {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data_dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: data_dir.path().to_path_buf(),
        ..Config::default()
    };
    config.auth.admin_password = Secret::new(ADMIN_PASSWORD);
    config.collector.commit_interval_ms = 200;
    config.agent.metrics_listen = String::new();
    config.agent.batch.timeout_ms = 100;
    config.agent.host_metrics_interval_s = 1;
    config.agent.inputs = vec![InputConfig {
        paths: vec![logs.path().join("*.log").display().to_string()],
        service: "Form".into(),
        region: "CN".into(),
        environment: "production".into(),
        parser: ParserKind::Json,
        read_from: ReadFrom::Beginning,
        poll_interval_ms: 50,
        ..InputConfig::default()
    }];
    tweak(&mut config);
    config.validate().unwrap();
    let query_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let query = format!("http://{}", query_listener.local_addr().unwrap());
    let collector = format!("http://{}", collector_listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_all_on(
        config,
        options,
        query_listener,
        collector_listener,
        shutdown.clone(),
    ));
    Node {
        query,
        collector,
        data_dir,
        logs,
        shutdown,
        task,
    }
}

impl Node {
    /// Stops every role and waits for a clean exit.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn append(path: &Path, line: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(file, "{line}").unwrap();
}

/// The first hits of `filter` within an hour of now, once there are any.
pub fn search_recent(
    index: &owl_index::Index,
    filter: owl_index::LogFilter,
) -> Option<owl_index::SearchResponse> {
    let now = chrono::Utc::now();
    let request = owl_index::SearchRequest {
        filter: owl_index::LogFilter {
            start: Some(now - chrono::Duration::hours(1)),
            end: Some(now + chrono::Duration::hours(1)),
            ..filter
        },
        limit: 10,
        ..owl_index::SearchRequest::default()
    };
    let response = index.search(&request).ok()?;
    (response.total > 0).then_some(response)
}

/// Logs in as the first admin.
pub async fn admin_token(http: &reqwest::Client, node: &Node) -> String {
    admin_token_with(http, node, ADMIN_PASSWORD).await
}

/// A Slack webhook on 127.0.0.1 that accepts everything: the URL.
pub async fn webhook_sink() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Sends Slack notifications to `url` (on 127.0.0.1, allowed for the purpose).
pub fn notify_slack_at(config: &mut Config, url: &str) {
    config.notifications.slack.webhook_url = Secret::new(url);
    config.notifications.slack.enabled = true;
    config.notifications.allowed_networks = owl_config::Networks::parse(&["127.0.0.1/32"]).unwrap();
}

/// Logs in as the first admin, created with `password`.
pub async fn admin_token_with(http: &reqwest::Client, node: &Node, password: &str) -> String {
    login(http, node, "admin", password).await.0
}

/// Logs in as `user`, once the query API answers: its access and refresh tokens.
pub async fn login(http: &reqwest::Client, node: &Node, user: &str, password: &str) -> (String, String) {
    let login: Value = wait_for("the query API to sign in", Duration::from_secs(60), || async {
        let response = http
            .post(format!("{}/api/auth/login", node.query))
            .json(&serde_json::json!({"username": user, "password": password}))
            .send()
            .await
            .ok()?;
        response.status().is_success().then_some(())?;
        response.json().await.ok()
    })
    .await;
    let token = |name: &str| {
        login["data"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {login}"))
            .to_string()
    };
    (token("access_token"), token("refresh_token"))
}

/// A GET with `token`: its status and JSON body (null when it has none).
pub async fn get_json(http: &reqwest::Client, url: String, token: &str) -> (u16, Value) {
    let response = http.get(url).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls a GET with `token` until its JSON body is `done`; the body.
pub async fn wait_for_json(
    what: &str,
    timeout: Duration,
    http: &reqwest::Client,
    url: String,
    token: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(what, timeout, || async {
        let response = http.get(&url).bearer_auth(token).send().await.ok()?;
        let body: Value = response.json().await.ok()?;
        done(&body).then_some(body)
    })
    .await
}

impl Node {
    /// The collector's agent token, as `owl up` generated it.
    pub fn agent_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("agent-token"))
            .unwrap()
            .trim()
            .to_string()
    }
}

/// The virtual environment's interpreter; `None` (with the reason printed) when it is missing
/// outside CI. In CI a missing environment fails the test: it is an install step that broke.
pub fn python() -> Option<std::path::PathBuf> {
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = std::env::var_os("OWL_PYTHON_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target/python-clients"));
    let python = venv.join("bin/python");
    // The environment is made (or checked against its pins) once per test binary, as CI does.
    let installed = INSTALLED.get_or_init(|| {
        let output = std::process::Command::new("bash")
            .arg(root.join("scripts/install-python-clients.sh"))
            .env("OWL_PYTHON_VENV", &venv)
            .output()
            .map_err(|e| format!("cannot run scripts/install-python-clients.sh: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "scripts/install-python-clients.sh failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    match installed {
        Ok(()) if python.exists() => Some(python),
        outcome => {
            let reason = match outcome {
                Err(reason) => reason.clone(),
                Ok(()) => format!("no interpreter at {}", python.display()),
            };
            let message = format!("no Python client environment at {}: {reason}", venv.display());
            // In CI a missing environment is a broken install step, not a reason to pass.
            assert!(std::env::var_os("CI").is_none(), "{message}");
            eprintln!("SKIPPED: {message}");
            None
        }
    }
}
