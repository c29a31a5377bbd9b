//! `owl-agent`: the node agent binary. Parses flags, loads the config, installs tracing and the
//! TLS provider, and runs the agent until Ctrl-C or SIGTERM.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use owl_config::{Config, InputConfig, ParserKind, Secret};
use tokio_util::sync::CancellationToken;

/// Tails log files, samples the host, and ships both to an Owl collector.
///
/// The common case works from flags alone:
/// `owl-agent --collector http://127.0.0.1:4318 --token T --service app --path '/var/log/app/*.log'`.
/// Flags override the config file.
#[derive(Debug, clap::Parser)]
#[command(name = "owl-agent", version)]
struct Args {
    /// Config file (TOML); without it, defaults plus flags and OWL_* environment variables.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Collector base URL.
    #[arg(long, value_name = "URL")]
    collector: Option<String>,
    /// Collector token.
    #[arg(long, value_name = "T")]
    token: Option<String>,
    /// Service name of the records (for --path inputs, or every input of the file).
    #[arg(long, value_name = "NAME")]
    service: Option<String>,
    /// Region of the node and its records.
    #[arg(long, value_name = "R")]
    region: Option<String>,
    /// Glob of files to tail (repeatable); replaces the inputs of the config file.
    #[arg(long = "path", value_name = "GLOB")]
    paths: Vec<String>,
    /// Glob of files to skip (repeatable), for every input: the kubelet's compressed rotations.
    #[arg(long = "exclude", value_name = "GLOB")]
    exclude: Vec<String>,
    /// Directory for checkpoints, the disk buffer and dead letters.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Environment of the records (production, staging, ...).
    #[arg(long, value_name = "ENV")]
    environment: Option<String>,
    /// Line parser: auto, json, python, combined, regex, plain, or a container runtime's
    /// format, cri or docker (its content parsed as auto).
    #[arg(long, value_name = "PARSER", value_parser = parse_parser)]
    parser: Option<ParserKind>,
    /// Address of the agent's /metrics endpoint ("" disables it).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Listen for syslog messages (repeatable): tcp://HOST:PORT, udp://HOST:PORT, unix:///path
    /// or unix-stream:///path; adds a listener with the defaults of `[[agent.syslog]]`.
    #[arg(long = "syslog", value_name = "LISTEN")]
    syslog: Vec<String>,
    /// Add pod labels and the node's region from the Kubernetes API server (in-cluster; needs
    /// NODE_NAME or agent.kubernetes.node_name).
    #[arg(long)]
    kubernetes_api: bool,
}

fn parse_parser(text: &str) -> Result<ParserKind, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|_| {
        format!("`{text}` is not a parser: use auto, json, python, combined, regex, plain, cri or docker")
    })
}

fn load(args: &Args) -> anyhow::Result<Config> {
    let env: BTreeMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("OWL_")).collect();
    let mut config = Config::load(args.config.as_deref(), &env).map_err(|e| anyhow::anyhow!("{e}"))?;
    let agent = &mut config.agent;
    if let Some(url) = &args.collector {
        agent.collector_url = url.clone();
    }
    if let Some(token) = &args.token {
        agent.token = Secret::new(token.clone());
    }
    if let Some(dir) = &args.data_dir {
        agent.data_dir = Some(dir.clone());
    }
    if let Some(listen) = &args.metrics_listen {
        agent.metrics_listen = listen.clone();
    }
    if let Some(region) = &args.region {
        agent.region = region.clone();
    }
    if !args.paths.is_empty() {
        agent.inputs = vec![InputConfig {
            paths: args.paths.clone(),
            service: args.service.clone().unwrap_or_default(),
            ..InputConfig::default()
        }];
    }
    for listen in &args.syslog {
        agent.syslog.push(owl_config::SyslogConfig {
            listen: listen.clone(),
            region: args.region.clone().unwrap_or_default(),
            environment: args
                .environment
                .clone()
                .unwrap_or_else(|| "production".to_string()),
            service: args.service.clone().unwrap_or_else(|| "syslog".to_string()),
            ..owl_config::SyslogConfig::default()
        });
    }
    if args.kubernetes_api {
        agent.kubernetes.api = true;
    }
    for input in &mut agent.inputs {
        if let Some(service) = &args.service {
            input.service = service.clone();
        }
        if let Some(region) = &args.region {
            input.region = region.clone();
        }
        if let Some(environment) = &args.environment {
            input.environment = environment.clone();
        }
        if let Some(parser) = args.parser {
            input.parser = parser;
        }
        input.exclude.extend(args.exclude.iter().cloned());
    }
    config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(config)
}

async fn shutdown_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler only fails outside a runtime");
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received; shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
    }
    token.cancel();
}

fn main() -> ExitCode {
    // Before anything is created: checkpoints and the buffer hold log lines.
    owl_config::files::private_umask();
    let args = Args::parse();
    let result = (|| -> anyhow::Result<()> {
        let config = load(&args).context("while loading the configuration")?;
        owl_logging::init(&config.log);
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Two workers: one core for the reader thread's neighbours, one for the shipper.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(8)
            .enable_all()
            .build()
            .context("while starting the async runtime")?;
        runtime.block_on(async move {
            let token = CancellationToken::new();
            tokio::spawn(shutdown_signal(token.clone()));
            owl_agent::run(config, token)
                .await
                .context("while running the agent")
        })
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("owl-agent: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
