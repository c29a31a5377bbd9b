//! Model-based: a seeded random sequence of what happens to a node (appends, partial lines, rename
//! and copytruncate rotation, the collector going away and coming back, the agent stopped or
//! aborted and restarted) and one property checked at the end: every line written arrives exactly
//! once. The same runs in the container runtime's CRI format, with lines split into `P` chunks.
//!
//! CI runs the seeds below (100 actions each). A failing seed is replayed with
//! `OWL_TEST_SEED=<seed> cargo test -p owl-agent --test random_actions replay` (add
//! `OWL_TEST_FORMAT=cri` for the CRI runs); `OWL_TEST_SEEDS=100-5000` runs a range of seeds.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Collector, Mode, Writer, assert_exactly_once, config, count, input};
use owl_config::Config;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);
const STEPS: usize = 100;

/// The node under test: the files, the writer, the agent and the collector.
struct Node {
    dir: PathBuf,
    log: PathBuf,
    writer: Writer,
    /// The number of the next line.
    next: u64,
    /// A line whose first part is written but not its end.
    partial: Option<u64>,
    rotations: u32,
    collector: Collector,
    cfg: Config,
    agent: Option<(owl_agent::RunningAgent, CancellationToken)>,
    journal: Vec<String>,
    /// Lines are written as containerd writes them.
    cri: bool,
}

fn text(n: u64) -> String {
    format!("line {n} {}", "x".repeat((n % 37) as usize))
}

/// Line `n` as written to the file: plain, or as CRI lines, split into one to three chunks.
fn encoded(n: u64, cri: bool) -> String {
    let text = text(n);
    if !cri {
        return format!("{text}\n");
    }
    let parts = (n % 3) as usize + 1;
    let size = text.len().div_ceil(parts);
    let chunks: Vec<&str> = (0..parts)
        .map(|i| &text[(i * size).min(text.len())..((i + 1) * size).min(text.len())])
        .collect();
    let mut out = String::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let flag = if i + 1 == chunks.len() { "F" } else { "P" };
        out.push_str(&format!("2025-12-07T10:30:00.{n:09}Z stdout {flag} {chunk}\n"));
    }
    out
}

/// Where a partial write of line `n` stops: half of its last physical line, so the earlier
/// chunks of a CRI line are whole and its `F` chunk is cut.
fn partial_cut(encoded: &str) -> usize {
    let last_start = encoded[..encoded.len() - 1].rfind('\n').map_or(0, |i| i + 1);
    last_start + (encoded.len() - last_start) / 2
}

impl Node {
    fn append(&mut self, lines: u64) {
        self.finish_partial();
        for _ in 0..lines {
            self.writer.raw(encoded(self.next, self.cri).as_bytes());
            self.next += 1;
        }
    }

    fn start_partial(&mut self) {
        self.finish_partial();
        let line = encoded(self.next, self.cri);
        self.writer.raw(&line.as_bytes()[..partial_cut(&line)]);
        self.partial = Some(self.next);
        self.next += 1;
    }

    fn finish_partial(&mut self) {
        if let Some(n) = self.partial.take() {
            let line = encoded(n, self.cri);
            self.writer.raw(&line.as_bytes()[partial_cut(&line)..]);
        }
    }

    fn rotated_path(&mut self) -> PathBuf {
        self.rotations += 1;
        self.dir.join(format!("app.log.{}", self.rotations))
    }

    fn rename_rotation(&mut self) {
        // A rotation never cuts a line: loggers write whole lines.
        self.finish_partial();
        let to = self.rotated_path();
        std::fs::rename(&self.log, &to).unwrap();
        self.writer = Writer::open(&self.log);
    }

    fn copytruncate(&mut self) {
        // The writer is held across the copy-to-truncate window, as the docs ask of users.
        self.finish_partial();
        let to = self.rotated_path();
        std::fs::copy(&self.log, &to).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&self.log)
            .unwrap()
            .set_len(0)
            .unwrap();
    }

    async fn start_agent(&mut self) {
        if self.agent.is_none() {
            let shutdown = CancellationToken::new();
            let agent = owl_agent::start(self.cfg.clone(), shutdown.clone())
                .await
                .unwrap();
            self.agent = Some((agent, shutdown));
        }
    }

    /// Stops the agent; its counters as it left them.
    async fn stop_agent(&mut self) -> Option<std::sync::Arc<owl_agent::Metrics>> {
        let (agent, shutdown) = self.agent.take()?;
        let metrics = agent.metrics_handle();
        shutdown.cancel();
        agent.wait().await.unwrap();
        Some(metrics)
    }

    async fn abort_agent(&mut self) {
        if let Some((agent, _)) = self.agent.take() {
            agent.abort().await;
        }
    }
}

async fn run_format(seed: u64, cri: bool) {
    common::init_tracing();
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let log = dir.join("app.log");
    let collector = Collector::start().await;
    // Rotated files match the paths, so that whatever happens while the agent is down, the
    // unread rest of a rotated file can still be found.
    let mut files = input(&dir.join("app.log*"), "orders");
    if cri {
        files.parser = owl_config::ParserKind::Cri;
    }
    let mut cfg = config(&dir, &collector.url(), vec![files]);
    cfg.agent.shutdown_timeout_ms = 300;
    let mut node = Node {
        writer: Writer::open(&log),
        dir,
        log,
        next: 0,
        partial: None,
        rotations: 0,
        collector,
        cfg,
        agent: None,
        journal: Vec::new(),
        cri,
    };
    node.append(5);
    node.start_agent().await;
    for _ in 0..STEPS {
        let roll = rng.random_range(0..100u32);
        let action = match roll {
            0..=39 => {
                let lines = rng.random_range(1..120);
                node.append(lines);
                format!("append {lines}")
            }
            40..=47 => {
                node.start_partial();
                "partial line".to_string()
            }
            48..=57 => {
                node.rename_rotation();
                "rename rotation".to_string()
            }
            58..=65 => {
                node.copytruncate();
                "copytruncate".to_string()
            }
            66..=72 => {
                node.collector.set_mode(Mode::Down);
                "collector down".to_string()
            }
            73..=79 => {
                node.collector.set_mode(Mode::Up);
                "collector up".to_string()
            }
            80..=85 => {
                node.stop_agent().await;
                node.start_agent().await;
                "agent stopped and restarted".to_string()
            }
            86..=91 => {
                node.abort_agent().await;
                node.start_agent().await;
                "agent aborted and restarted".to_string()
            }
            _ => {
                let ms = rng.random_range(10..200);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                format!("pause {ms} ms")
            }
        };
        node.journal.push(action);
        // The agent reads while the node lives on.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..30))).await;
    }
    node.finish_partial();
    node.collector.set_mode(Mode::Up);
    // The last agent ships everything it has before it stops.
    node.stop_agent().await;
    node.cfg.agent.shutdown_timeout_ms = 30_000;
    node.start_agent().await;
    let total = node.next;
    let journal = node.journal.join(", ");
    node.collector
        .settle(WAIT, |r| count(r, "line ") >= total as usize)
        .await;
    // Judged once the agent has stopped with an empty buffer: nothing is left to arrive late.
    let metrics = node.stop_agent().await.expect("the last agent runs");
    assert_eq!(
        metrics.snapshot()["buffer_entries"],
        0,
        "seed {seed}: the buffer was drained"
    );
    let outcome = {
        // The lock is released before the next await.
        let received = node.collector.received();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_exactly_once(&received, "line ", total)
        }))
    };
    if let Err(panic) = outcome {
        eprintln!("seed {seed} (cri: {cri}), {total} lines; actions: {journal}");
        std::panic::resume_unwind(panic);
    }
}

/// Seeds run in CI, a test each so a failure names its seed.
macro_rules! seeds {
    ($($name:ident: $seed:literal, $cri:literal;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                run_format($seed, $cri).await;
            }
        )*
    };
}

seeds! {
    random_actions_seed_1: 1, false;
    random_actions_seed_2: 2, false;
    random_actions_seed_3: 3, false;
    random_actions_seed_5: 5, false;
    random_actions_seed_6: 6, false;
    random_actions_seed_7: 7, false;
    random_actions_seed_8: 8, false;
    random_actions_seed_9: 9, false;
    random_actions_seed_10: 10, false;
    random_actions_seed_11: 11, false;
    random_actions_seed_12: 12, false;
    random_actions_cri_seed_1: 1, true;
    random_actions_cri_seed_2: 2, true;
    random_actions_cri_seed_3: 3, true;
    random_actions_cri_seed_4: 4, true;
}

/// Seed 4, or the seed in `OWL_TEST_SEED` (to replay a failure), or every seed of
/// `OWL_TEST_SEEDS=FIRST-LAST` one after the other (to explore thousands), in the format of
/// `OWL_TEST_FORMAT` (`cri`, else plain lines).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay() {
    let cri = std::env::var("OWL_TEST_FORMAT").is_ok_and(|f| f == "cri");
    let seeds = match std::env::var("OWL_TEST_SEEDS") {
        Ok(range) => {
            let (first, last) = range
                .split_once('-')
                .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)))
                .expect("OWL_TEST_SEEDS is FIRST-LAST, such as 100-5000");
            first..=last
        }
        Err(_) => {
            let seed = std::env::var("OWL_TEST_SEED")
                .ok()
                .map(|s| s.parse().expect("OWL_TEST_SEED is a number"))
                .unwrap_or(4);
            seed..=seed
        }
    };
    for seed in seeds {
        run_format(seed, cri).await;
    }
}
