//! Runs the collector alone in a process: `collector-proc --config owl.toml [--listen ADDR]`.
//!
//! The harness of the crash test (which kills it with SIGKILL mid-ingest) and of the load example;
//! the `owl` binary is how operators run the collector. Prints `listening <addr>` on stdout once it
//! serves, and shuts down gracefully on SIGTERM or ctrl-c.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use owl_config::Config;
use owl_index::{Index, IndexSettings};
use tokio_util::sync::CancellationToken;

fn main() {
    if let Err(error) = try_main() {
        eprintln!("collector-proc: {error:#}");
        std::process::exit(1);
    }
}

fn try_main() -> anyhow::Result<()> {
    let mut config_path: Option<PathBuf> = None;
    let mut listen: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => config_path = Some(args.next().context("--config needs a path")?.into()),
            "--listen" => listen = Some(args.next().context("--listen needs an address")?),
            other => {
                bail!("unknown argument `{other}`; usage: collector-proc --config owl.toml [--listen ADDR]")
            }
        }
    }
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let config = Config::load(config_path.as_deref(), &env).context("while loading the config")?;
    owl_logging::init(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("while starting tokio")?;
    runtime.block_on(async move {
        let settings = IndexSettings {
            writer_memory_bytes: config.collector.writer_memory_bytes,
            ..IndexSettings::default()
        };
        let index = Index::open(&config.index_dir(), settings).context("while opening the index")?;
        let addr = listen.unwrap_or_else(|| config.collector.listen.clone());
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("while binding {addr}"))?;
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        // Recovery happens inside `run`, before the listener serves; clients connecting earlier
        // wait in the accept queue.
        println!("listening {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        owl_collector::run(config, index, listener, shutdown).await
    })
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only ctrl-c stops the collector");
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    shutdown.cancel();
}
