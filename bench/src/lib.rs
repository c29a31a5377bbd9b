//! Owl's benchmark: every performance figure of Owl beside a baseline measured in the same run,
//! reported as a ratio, as a table and as JSON (`<out>/report.json`).
//!
//! # Figures
//!
//! | section | what | baseline |
//! | --- | --- | --- |
//! | `agent` | owl-agent shipping a large NDJSON file to an acknowledge-and-discard sink: MB/s, lines/s, CPU s per GB, MB per CPU s, peak RSS; the same records in CRI envelopes (`agent_cri_*`) | syslog-ng, rsyslog (whichever is installed); syslog-ng for CRI |
//! | `collector` | HTTP ingest to durable and searchable: records/s, MB/s, index bytes per raw byte | the index alone (tantivy with Owl's schema) |
//! | `freshness` | p50/p99 from ingest acknowledgement to visible through the query API, under steady load | target only |
//! | `query` | p50/p99 of trace lookup, filtered top-50, keyword (Latin, Chinese), stats | ripgrep (or grep) over the NDJSON, SQLite FTS5 |
//! | `alerts` | p50/p99 from a slow request to the Slack webhook at a local sink | target only |
//! | `api` | requests/s of a cached CRM analytics endpoint and of a log query | a minimal axum handler |
//!
//! Each section runs in its own temp directory; the query data set is cached under
//! `<out>/query-v<version>-<records>/` so reruns skip building it. A section that fails is reported with
//! `failed: true` and the error as its skip reason, and the others still run.
//!
//! [`run`] is the entry point of the `owl-bench` binary and of the smoke test.

mod agent;
mod alerts;
mod api;
mod client;
mod collector;
mod data;
mod freshness;
mod query;
mod receivers;
mod report;
mod sink;
mod stack;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use serde::Serialize;

pub use agent::AgentRunner;
pub use report::{Better, Figure, Machine, Report, Target};

/// A part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    /// Figure 1.
    Agent,
    /// Figure 2.
    Collector,
    /// Figure 3.
    Freshness,
    /// Figure 4.
    Query,
    /// Figure 5.
    Alerts,
    /// Figure 6.
    Api,
    /// Figure 7.
    Receivers,
}

impl Section {
    /// Every section, in running order.
    pub const ALL: [Section; 7] = [
        Section::Agent,
        Section::Collector,
        Section::Freshness,
        Section::Query,
        Section::Alerts,
        Section::Api,
        Section::Receivers,
    ];

    /// The stable figure names a section reports (every one appears in the report, measured or
    /// with a skip reason).
    pub fn figure_names(self) -> &'static [&'static str] {
        match self {
            Section::Agent => &[
                "agent_mb_per_s",
                "agent_lines_per_s",
                "agent_cpu_s_per_gb",
                "agent_mb_per_cpu_s",
                "agent_peak_rss_mib",
                "agent_cri_mb_per_s",
                "agent_cri_lines_per_s",
                "agent_cri_cpu_s_per_gb",
                "agent_cri_mb_per_cpu_s",
                "agent_cri_peak_rss_mib",
            ],
            Section::Collector => &[
                "collector_records_per_s",
                "collector_mb_per_s",
                "collector_index_bytes_per_raw_byte",
            ],
            Section::Freshness => &[
                "freshness_p50_ms",
                "freshness_p99_ms",
                "freshness_load_records_per_s",
            ],
            Section::Query => &[
                "query_trace_lookup_p50_ms",
                "query_trace_lookup_p99_ms",
                "query_filtered_top50_p50_ms",
                "query_filtered_top50_p99_ms",
                "query_keyword_p50_ms",
                "query_keyword_p99_ms",
                "query_keyword_cjk_p50_ms",
                "query_keyword_cjk_p99_ms",
                "query_stats_p50_ms",
                "query_stats_p99_ms",
            ],
            Section::Alerts => &[
                "alert_latency_p50_ms",
                "alert_latency_p99_ms",
                "alert_engine_latency_p50_ms",
                "alert_engine_latency_p99_ms",
            ],
            Section::Api => &["api_cached_analytics_rps", "api_log_query_rps"],
            Section::Receivers => &[
                "receiver_otlp_records_per_s",
                "receiver_otlp_ack_to_searchable_ms",
                "receiver_elasticsearch_records_per_s",
                "receiver_elasticsearch_ack_to_searchable_ms",
                "receiver_loki_records_per_s",
                "receiver_loki_ack_to_searchable_ms",
            ],
        }
    }
}

impl FromStr for Section {
    type Err = String;
    fn from_str(s: &str) -> Result<Section, String> {
        Section::ALL
            .into_iter()
            .find(|section| {
                serde_json::to_value(section)
                    .ok()
                    .and_then(|v| v.as_str().map(|n| n == s))
                    .unwrap_or(false)
            })
            .ok_or_else(|| {
                format!(
                    "unknown section `{s}`: use agent, collector, freshness, query, alerts, api or receivers"
                )
            })
    }
}

/// How big each part is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sizes {
    /// NDJSON the agent ships, in MiB.
    pub agent_mib: u64,
    /// Records posted to the collector.
    pub collector_records: u64,
    /// Records per second of the freshness load.
    pub freshness_rate: u64,
    /// Seconds the freshness load runs.
    pub freshness_s: f64,
    /// Records of the query data set.
    pub query_records: u64,
    /// Runs of each query for Owl and SQLite.
    pub query_iterations: usize,
    /// Runs of each query for ripgrep/grep (each reads the whole file).
    pub grep_iterations: usize,
    /// Alerts measured.
    pub alert_rounds: usize,
    /// Seconds of load per API endpoint.
    pub api_s: f64,
    /// Concurrent connections of the API load client.
    pub api_connections: usize,
    /// Batches of 1000 records ingested before the API's log query runs.
    pub api_log_batches: usize,
    /// Records each receiver protocol posts (and native ingest beside them).
    pub receiver_records: u64,
}

impl Sizes {
    /// The defaults of a full run: about ten minutes on two cores once the query data set is cached
    /// (building 10 million records takes several more minutes, once).
    pub fn full() -> Sizes {
        Sizes {
            agent_mib: 500,
            collector_records: 1_000_000,
            freshness_rate: 10_000,
            freshness_s: 30.0,
            query_records: 10_000_000,
            query_iterations: 30,
            grep_iterations: 3,
            alert_rounds: 30,
            api_s: 8.0,
            api_connections: 16,
            api_log_batches: 50,
            receiver_records: 200_000,
        }
    }

    /// Tiny sizes: the whole run in well under a minute.
    pub fn smoke() -> Sizes {
        Sizes {
            agent_mib: 2,
            collector_records: 5_000,
            freshness_rate: 500,
            freshness_s: 1.5,
            query_records: 20_000,
            query_iterations: 5,
            grep_iterations: 2,
            alert_rounds: 3,
            api_s: 0.5,
            api_connections: 4,
            api_log_batches: 2,
            receiver_records: 2_000,
        }
    }

    /// Applies `key=value` overrides (`agent_mib=100,query_records=5000000`).
    pub fn apply(&mut self, overrides: &str) -> Result<(), String> {
        let mut value = serde_json::to_value(&*self).map_err(|e| e.to_string())?;
        for pair in overrides.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, raw) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` is not key=value"))?;
            let keys: Vec<String> = value
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            let slot = value
                .get_mut(key)
                .ok_or_else(|| format!("unknown size `{key}`: one of {}", keys.join(", ")))?;
            let number: f64 = raw
                .parse()
                .map_err(|_| format!("{key}: `{raw}` is not a number"))?;
            if !(number.is_finite() && number > 0.0) {
                return Err(format!("{key}: must be positive"));
            }
            *slot = if slot.is_f64() {
                serde_json::json!(number)
            } else {
                serde_json::json!(number as u64)
            };
        }
        *self = Sizes {
            agent_mib: value["agent_mib"].as_u64().unwrap_or(self.agent_mib),
            collector_records: value["collector_records"]
                .as_u64()
                .unwrap_or(self.collector_records),
            freshness_rate: value["freshness_rate"].as_u64().unwrap_or(self.freshness_rate),
            freshness_s: value["freshness_s"].as_f64().unwrap_or(self.freshness_s),
            query_records: value["query_records"].as_u64().unwrap_or(self.query_records),
            query_iterations: value["query_iterations"]
                .as_u64()
                .map_or(self.query_iterations, |v| v as usize),
            grep_iterations: value["grep_iterations"]
                .as_u64()
                .map_or(self.grep_iterations, |v| v as usize),
            alert_rounds: value["alert_rounds"]
                .as_u64()
                .map_or(self.alert_rounds, |v| v as usize),
            api_s: value["api_s"].as_f64().unwrap_or(self.api_s),
            api_connections: value["api_connections"]
                .as_u64()
                .map_or(self.api_connections, |v| v as usize),
            api_log_batches: value["api_log_batches"]
                .as_u64()
                .map_or(self.api_log_batches, |v| v as usize),
            receiver_records: value["receiver_records"]
                .as_u64()
                .unwrap_or(self.receiver_records),
        };
        Ok(())
    }
}

/// What to run and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// Smoke mode (tiny sizes).
    pub smoke: bool,
    /// The sizes.
    pub sizes: Sizes,
    /// Sections to run.
    pub sections: BTreeSet<Section>,
    /// Where `report.json` and the query data set cache go (`target/owl-bench`).
    pub out_dir: PathBuf,
    /// How the agent runs.
    pub agent: AgentRunner,
    /// Print progress lines to stderr.
    pub verbose: bool,
}

impl Options {
    /// Every section at `sizes`, output in `out_dir`.
    pub fn new(smoke: bool, out_dir: PathBuf) -> Options {
        Options {
            smoke,
            sizes: if smoke { Sizes::smoke() } else { Sizes::full() },
            sections: Section::ALL.into_iter().collect(),
            out_dir,
            agent: AgentRunner::detect(),
            verbose: true,
        }
    }
}

/// What every section gets.
pub(crate) struct Ctx {
    pub smoke: bool,
    pub sizes: Sizes,
    /// A temp directory of this run.
    pub work: PathBuf,
    /// The cache directory of data sets.
    pub cache: PathBuf,
    pub agent: AgentRunner,
    verbose: bool,
    started: Instant,
}

impl Ctx {
    pub fn progress(&self, message: &str) {
        if self.verbose {
            eprintln!("[{:>6.1} s] {message}", self.started.elapsed().as_secs_f64());
        }
    }
}

/// The default output directory: `target/owl-bench` of the workspace the binary was built in
/// (`CARGO_TARGET_DIR` when set), else `./target/owl-bench`.
pub fn default_out_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("owl-bench");
    }
    // target/<profile>/owl-bench -> target
    if let Ok(exe) = std::env::current_exe()
        && let Some(target) = exe.parent().and_then(|p| p.parent())
        && target.join("CACHEDIR.TAG").is_file()
    {
        return target.join("owl-bench");
    }
    PathBuf::from("target").join("owl-bench")
}

/// Free bytes on the file system holding `dir` (via `df`), if known.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let output = std::process::Command::new("df")
        .arg("-Pk")
        .arg(dir)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let kib: u64 = text.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs the selected sections and writes `<out_dir>/report.json`.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let started = Instant::now();
    let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let machine = report::machine();
    std::fs::create_dir_all(&options.out_dir)?;
    let work = tempfile::Builder::new().prefix("owl-bench-").tempdir()?;
    let mut sizes = options.sizes.clone();
    if options.sections.contains(&Section::Query) {
        let cached = options
            .out_dir
            .join(query::dataset_dir_name(sizes.query_records))
            .join("manifest.json")
            .is_file();
        let needed = query::disk_needed(sizes.query_records);
        if !cached
            && free_bytes(&options.out_dir).is_some_and(|free| free < needed + (2 << 30))
            && sizes.query_records > 5_000_000
        {
            eprintln!(
                "owl-bench: not enough free disk for {} query records; using 5000000",
                sizes.query_records
            );
            sizes.query_records = 5_000_000;
        }
    }
    let ctx = Ctx {
        smoke: options.smoke,
        sizes: sizes.clone(),
        work: work.path().to_path_buf(),
        cache: options.out_dir.clone(),
        agent: options.agent.clone(),
        verbose: options.verbose,
        started,
    };
    let mut figures = Vec::new();
    for section in &options.sections {
        ctx.progress(&format!("{section:?}"));
        let result = match section {
            Section::Agent => agent::figures(&ctx).await,
            Section::Collector => collector::figures(&ctx).await,
            Section::Freshness => freshness::figures(&ctx).await,
            Section::Query => query::figures(&ctx).await,
            Section::Alerts => alerts::figures(&ctx).await,
            Section::Api => api::figures(&ctx).await,
            Section::Receivers => receivers::figures(&ctx).await,
        };
        match result {
            Ok(section_figures) => figures.extend(section_figures),
            Err(error) => {
                let reason = format!("failed: {error:#}");
                ctx.progress(&format!("{section:?} {reason}"));
                for name in section.figure_names() {
                    let mut figure = Figure::skipped(name, "", Better::Lower, None, reason.clone());
                    figure.failed = true;
                    figures.push(figure);
                }
            }
        }
    }
    let report = Report {
        machine,
        date,
        smoke: options.smoke,
        sizes: serde_json::to_value(&sizes)?,
        figures,
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    report.write_json(&options.out_dir.join("report.json"))?;
    Ok(report)
}

/// The hidden `__agent --config FILE` mode of the `owl-bench` binary: the `owl-agent` binary's
/// code path (config file, ring TLS provider, two runtime workers), for machines where only the
/// benchmark was built.
pub fn agent_main(config: &std::path::Path) -> anyhow::Result<()> {
    let config =
        owl_config::Config::load(Some(config), &Default::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let token = tokio_util::sync::CancellationToken::new();
        owl_agent::run(config, token)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_overrides() {
        let mut sizes = Sizes::smoke();
        sizes.apply("agent_mib=7, freshness_s=2.5").unwrap();
        assert_eq!(sizes.agent_mib, 7);
        assert_eq!(sizes.freshness_s, 2.5);
        assert!(sizes.apply("nope=1").unwrap_err().contains("unknown size"));
        assert!(sizes.apply("agent_mib=x").is_err());
        assert!(sizes.apply("agent_mib=0").is_err());
    }

    #[test]
    fn sections_parse_by_name() {
        assert_eq!("query".parse::<Section>(), Ok(Section::Query));
        assert!("nope".parse::<Section>().is_err());
    }
}
