//! `owl-bench`: runs Owl's benchmark and prints the table; the report is also written as JSON.
//!
//! ```text
//! cargo build --release -p owl-agent && cargo run --release -p owl-bench -- [--smoke] [--only agent,query] [--sizes agent_mib=100,...]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use owl_bench::{Options, Section};

/// Measures every Owl performance figure beside a baseline measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "owl-bench", version)]
struct Args {
    /// Tiny sizes: the whole run in well under a minute (what the test suite runs).
    #[arg(long)]
    smoke: bool,
    /// Size overrides, `key=value` separated by commas: agent_mib, collector_records,
    /// freshness_rate, freshness_s, query_records, query_iterations, grep_iterations,
    /// alert_rounds, api_s, api_connections, api_log_batches, receiver_records.
    #[arg(long, value_name = "K=V,...")]
    sizes: Option<String>,
    /// Run only these sections: agent, collector, freshness, query, alerts, api, receivers.
    #[arg(long, value_name = "SECTION,...", value_delimiter = ',')]
    only: Vec<Section>,
    /// Output directory (report.json and the cached query data set); default target/owl-bench.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print only the table.
    #[arg(long, short)]
    quiet: bool,
    /// Internal: run the agent from a config file (used when no owl-agent binary is built).
    #[arg(long, hide = true)]
    config: Option<PathBuf>,
    #[arg(hide = true)]
    mode: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.mode.as_deref() == Some("__agent") {
        let Some(config) = &args.config else {
            eprintln!("owl-bench: __agent needs --config FILE");
            return ExitCode::FAILURE;
        };
        return match owl_bench::agent_main(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("owl-bench agent: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();

    let mut options = Options::new(
        args.smoke,
        args.out.clone().unwrap_or_else(owl_bench::default_out_dir),
    );
    options.verbose = !args.quiet;
    if let Some(sizes) = &args.sizes
        && let Err(error) = options.sizes.apply(sizes)
    {
        eprintln!("owl-bench: --sizes: {error}");
        return ExitCode::FAILURE;
    }
    if !args.only.is_empty() {
        options.sections = args.only.iter().copied().collect();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("owl-bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(owl_bench::run(&options)) {
        Ok(report) => {
            println!("{}\n", report.header());
            print!("{}", report.table());
            println!("\nreport: {}", options.out_dir.join("report.json").display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("owl-bench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
