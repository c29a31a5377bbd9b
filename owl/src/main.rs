//! `owl`: the Owl server. One binary runs any role: `owl up` runs the collector, the query API and
//! a local agent in one process on the embedded defaults; `owl collector` and `owl query-api` run
//! one role each; `owl admin` manages users and migrations; `owl validate-config` checks a file.

use owl::up;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use owl_config::Config;
use tokio_util::sync::CancellationToken;

/// Owl: log and host-metric pipeline with search, traces, stats and alerts.
#[derive(Debug, Parser)]
#[command(name = "owl", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every role on this node: collector, query API and a local agent (embedded defaults:
    /// SQLite, local tantivy and sled directories, in-process cache).
    Up(UpArgs),
    /// Run the collector: ingest endpoint, durable write-ahead log, indexing, retention.
    Collector(RoleArgs),
    /// Run the query API: login, users, roles, logs, traces, stats, alerts, CRM analytics.
    QueryApi(RoleArgs),
    /// Manage users and the database.
    Admin(AdminArgs),
    /// Check a config file: prints every problem with its key, or the effective config.
    ValidateConfig(ValidateArgs),
}

#[derive(Debug, Args)]
struct CommonArgs {
    /// Config file (TOML); without it the embedded defaults apply.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (overrides `data_dir` and OWL_DATA_DIR).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct UpArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Also generate realistic demo logs (several services and regions, shared trace ids, errors,
    /// slow requests) into files the local agent tails.
    #[arg(long)]
    demo: bool,
    /// Demo requests per second.
    #[arg(long, default_value_t = 20, value_name = "N", requires = "demo")]
    demo_rate: u32,
    /// Query API listen address (overrides `query_api.listen`).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Collector listen address (overrides `collector.listen`).
    #[arg(long, value_name = "ADDR")]
    collector_listen: Option<String>,
}

#[derive(Debug, Args)]
struct RoleArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Listen address (overrides the role's `listen`).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
}

#[derive(Debug, Args)]
struct AdminArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create a user. Prints a generated password when none is given.
    CreateUser {
        /// Login name (the user's `user_code`).
        #[arg(long)]
        username: String,
        /// Display name; defaults to the login name.
        #[arg(long)]
        display_name: Option<String>,
        /// Password; read from OWL_NEW_PASSWORD when unset, else generated.
        #[arg(long, env = "OWL_NEW_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Role code: admin, ops, developer or a custom role.
        #[arg(long, default_value = "ops")]
        role: String,
        /// Organization code.
        #[arg(long, default_value = "")]
        org: String,
        /// Regions the user is limited to (repeatable; none means all).
        #[arg(long = "region")]
        regions: Vec<String>,
    },
    /// Set a new password for a user (and unlock the account).
    ResetPassword {
        /// Login name.
        #[arg(long)]
        username: String,
        /// New password; read from OWL_NEW_PASSWORD when unset, else generated.
        #[arg(long, env = "OWL_NEW_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Apply pending database migrations.
    Migrate,
    /// Per-agent ingest tokens: one per node, optionally bound to a region.
    #[command(subcommand)]
    AgentToken(AgentTokenCommand),
}

#[derive(Debug, Subcommand)]
enum AgentTokenCommand {
    /// Create a token for a node and print it once (only its digest is stored).
    Create {
        /// The node's name (letters, digits, `-`, `_`, `.`).
        #[arg(long)]
        name: String,
        /// The region every record of this node carries, whatever the node says.
        #[arg(long)]
        region: Option<String>,
    },
    /// List the tokens: name, region, created, revoked.
    List,
    /// Revoke a node's token; collectors refuse it within seconds.
    Revoke {
        /// The node's name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// The config file to check.
    file: PathBuf,
    /// Print the effective config (defaults and environment applied, secrets redacted).
    #[arg(long)]
    print: bool,
}

fn env_map() -> BTreeMap<String, String> {
    std::env::vars().filter(|(k, _)| k.starts_with("OWL_")).collect()
}

fn load_config(common: &CommonArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(common.config.as_deref(), &env_map())?;
    if let Some(dir) = &common.data_dir {
        config.data_dir = dir.clone();
    }
    Ok(config)
}

/// Cancels the token on Ctrl-C or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler only fails outside a tokio runtime");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        trigger.cancel();
    });
    token
}

fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let body: String = (0..18)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{body}-7a")
}

async fn admin(args: AdminArgs) -> anyhow::Result<()> {
    let config = load_config(&args.common)?;
    owl_config::files::private_dir(&config.data_dir)
        .with_context(|| format!("while creating {}", config.data_dir.display()))?;
    match args.command {
        AdminCommand::Migrate => {
            owl_query_api::admin::migrate(&config).await?;
            println!("migrations applied");
        }
        AdminCommand::AgentToken(command) => {
            owl_query_api::admin::migrate(&config).await?;
            let store = owl_collector::AgentTokenStore::connect_lazy(&config.database_url())?;
            let now = chrono::Utc::now().timestamp_millis();
            match command {
                AgentTokenCommand::Create { name, region } => {
                    let token = store.create(&name, region.as_deref(), now).await?;
                    println!("created the agent token of {name}; it is shown only now:");
                    println!("{token}");
                }
                AgentTokenCommand::List => {
                    println!("{:<32} {:<8} {:<24} revoked", "name", "region", "created");
                    for token in store.list().await? {
                        let at = |ms: i64| {
                            chrono::DateTime::from_timestamp_millis(ms)
                                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                                .unwrap_or_default()
                        };
                        let region = if token.region.is_empty() {
                            "-"
                        } else {
                            token.region.as_str()
                        };
                        let revoked = token.revoked_at.map_or_else(|| "-".to_string(), at);
                        println!(
                            "{:<32} {:<8} {:<24} {revoked}",
                            token.name,
                            region,
                            at(token.created_at)
                        );
                    }
                }
                AgentTokenCommand::Revoke { name } => {
                    if store.revoke(&name, now).await? {
                        println!("revoked the agent token of {name}");
                    } else {
                        anyhow::bail!("no agent token named {name} is in force");
                    }
                }
            }
            store.close().await;
        }
        AdminCommand::CreateUser {
            username,
            display_name,
            password,
            role,
            org,
            regions,
        } => {
            let generated = password.is_none();
            let password = password.unwrap_or_else(generate_password);
            let request = owl_query_api::CreateUser {
                user_code: username.clone(),
                username: display_name.unwrap_or_else(|| username.clone()),
                password: password.clone(),
                role_code: role,
                org_code: org,
                regions,
            };
            let id = owl_query_api::admin::create_user(&config, &request).await?;
            println!("created user {username} (id {id})");
            if generated {
                println!("password: {password}");
            }
        }
        AdminCommand::ResetPassword { username, password } => {
            let generated = password.is_none();
            let password = password.unwrap_or_else(generate_password);
            owl_query_api::admin::reset_password(&config, &username, &password).await?;
            println!("password of {username} reset");
            if generated {
                println!("password: {password}");
            }
        }
    }
    Ok(())
}

fn validate(args: &ValidateArgs) -> anyhow::Result<()> {
    let config = Config::load(Some(Path::new(&args.file)), &env_map())?;
    if args.print {
        print!("{}", toml_string(&config)?);
    } else {
        println!("{}: ok", args.file.display());
    }
    Ok(())
}

fn toml_string(config: &Config) -> anyhow::Result<String> {
    // Secrets serialise redacted, so the effective config is safe to print.
    let value = serde_json::to_value(config)?;
    Ok(serde_json::to_string_pretty(&value)? + "\n")
}

async fn role(args: RoleArgs, which: up::Role) -> anyhow::Result<()> {
    let mut config = load_config(&args.common)?;
    owl_logging::init(&config.log);
    if let Some(listen) = args.listen {
        match which {
            up::Role::Collector => config.collector.listen = listen,
            up::Role::QueryApi => config.query_api.listen = listen,
        }
    }
    let shutdown = shutdown_on_signal();
    up::run_role(config, which, shutdown).await
}

fn main() -> ExitCode {
    // Before anything is created: the database, WAL, index and secrets are the user's alone.
    owl_config::files::private_umask();
    let cli = Cli::parse();
    // One TLS provider for the whole process (webhooks, SMTP): ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => {
                let mut config = load_config(&args.common)?;
                if let Some(listen) = &args.listen {
                    config.query_api.listen = listen.clone();
                }
                if let Some(listen) = &args.collector_listen {
                    config.collector.listen = listen.clone();
                }
                config.validate()?;
                owl_logging::init(&config.log);
                let shutdown = shutdown_on_signal();
                up::run_all(
                    config,
                    up::UpOptions {
                        demo: args.demo,
                        demo_rate: args.demo_rate,
                    },
                    shutdown,
                )
                .await
            }
            Command::Collector(args) => role(args, up::Role::Collector).await,
            Command::QueryApi(args) => role(args, up::Role::QueryApi).await,
            Command::Admin(args) => admin(args).await,
            Command::ValidateConfig(args) => validate(&args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
