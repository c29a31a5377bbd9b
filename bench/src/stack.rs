//! The `owl up` wiring in this process: a collector and a query API sharing one index, on
//! 127.0.0.1:0, over a temp data directory, with an admin signed in.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use owl_config::{Config, Secret};
use owl_index::Index;
use tokio_util::sync::CancellationToken;

use crate::client::{Conn, find_key};
use crate::collector::{self, RunningCollector};

const ADMIN_PASSWORD: &str = "Owl-bench-admin-9x7!";

/// A running collector and query API.
pub struct Stack {
    /// The config both run with.
    pub config: Config,
    /// The collector.
    pub collector: RunningCollector,
    /// The query API's address.
    pub query_addr: SocketAddr,
    /// `Bearer <access token>` of the admin.
    pub authorization: String,
    shutdown: CancellationToken,
    query_task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Stack {
    /// Starts both over `data_dir` and signs in as the admin.
    pub async fn start(data_dir: &Path) -> anyhow::Result<Stack> {
        std::fs::create_dir_all(data_dir)?;
        let mut config = collector::config(data_dir);
        config.auth.admin_password = Secret::new(ADMIN_PASSWORD);
        let index = {
            let root = config.index_dir();
            let settings = collector::index_settings(&config);
            tokio::task::spawn_blocking(move || Index::open(&root, settings)).await??
        };
        let collector = RunningCollector::start(config.clone(), index.clone()).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let query_addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let query_task = tokio::spawn(owl_query_api::run(
            config.clone(),
            index,
            listener,
            shutdown.clone(),
        ));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut conn) = Conn::connect(query_addr).await
                && conn.get("/health", &[]).await.is_ok_and(|a| a.status == 200)
            {
                break;
            }
            if query_task.is_finished() {
                return Err(query_task
                    .await
                    .context("query API panicked")?
                    .err()
                    .unwrap_or_else(|| anyhow::anyhow!("the query API stopped")));
            }
            anyhow::ensure!(Instant::now() < deadline, "the query API did not come up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut conn = Conn::connect(query_addr).await?;
        let body = serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string();
        let answer = conn
            .send(
                "POST",
                "/api/auth/login",
                &[("content-type", "application/json")],
                Bytes::from(body),
            )
            .await?;
        let value: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        let token = find_key(&value, "access_token")
            .and_then(|v| v.as_str())
            .with_context(|| {
                format!(
                    "login answered {}: {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                )
            })?;
        let authorization = format!("Bearer {token}");
        Ok(Stack {
            config,
            collector,
            query_addr,
            authorization,
            shutdown,
            query_task,
        })
    }

    /// Stops the query API, then the collector.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.query_task.await.context("query API panicked")??;
        self.collector.stop().await
    }
}
