//! Figure 1: the agent shipping a large NDJSON file to a sink that acknowledges and discards,
//! beside syslog-ng and rsyslog on the same file and sink; then the same records as a container
//! runtime writes them (CRI: `<time> <stream> <P|F> <content>`, some lines split into a `P` and an
//! `F` chunk) beside syslog-ng taking the envelope off with its csv-parser.
//!
//! Each shipper runs as a child process; its CPU time (user + system, every thread) and peak RSS
//! (`VmHWM`) are read from `/proc/<pid>` the moment the sink has received the last line, before
//! the process is stopped. Wall time runs from the spawn to that moment, so start-up counts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::Ctx;
use crate::data::Generator;
use crate::report::{Better, Figure, Target};
use crate::sink::Sink;

/// How the agent is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentRunner {
    /// This `owl-agent` binary as a child process.
    Binary(PathBuf),
    /// This executable re-run with the hidden `__agent --config FILE` arguments, which runs the
    /// same code as `owl-agent` (used when no `owl-agent` binary is beside the benchmark).
    SelfExec(PathBuf),
    /// `owl_agent::run` inside this process (tests): CPU and memory then include the benchmark's.
    InProcess,
}

impl AgentRunner {
    /// `owl-agent` beside the running executable, else this executable re-run.
    pub fn detect() -> AgentRunner {
        let Ok(exe) = std::env::current_exe() else {
            return AgentRunner::InProcess;
        };
        let beside = exe.with_file_name("owl-agent");
        if beside.is_file() {
            return AgentRunner::Binary(beside);
        }
        if exe.file_stem().is_some_and(|s| s == "owl-bench") {
            return AgentRunner::SelfExec(exe);
        }
        AgentRunner::InProcess
    }

    fn describe(&self) -> String {
        match self {
            AgentRunner::Binary(path) => format!("owl-agent binary {}", path.display()),
            AgentRunner::SelfExec(_) => {
                "owl-agent code re-run from the owl-bench binary (no owl-agent beside it; `cargo build --release -p owl-agent` for the real one)".into()
            }
            AgentRunner::InProcess => "owl-agent run inside the benchmark process: CPU and peak RSS include the benchmark's own".into(),
        }
    }
}

/// What one shipper run measured.
#[derive(Debug, Clone, Copy)]
struct Run {
    wall_s: f64,
    cpu_s: f64,
    peak_rss_mib: f64,
}

/// CPU seconds (user + system, all threads) of a live process.
pub fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_seconds(&stat)
}

fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    // Fields after the command name (which may hold spaces, inside parentheses): state is field 3,
    // utime 14 and stime 15, in clock ticks of USER_HZ (100 on Linux).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Peak resident set size of a live process in MiB (`VmHWM`).
pub fn proc_peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Finds an executable on PATH or in the sbin directories (where Debian puts daemons).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a child until the sink has `lines` records; measures it.
async fn measure_child(
    mut command: Command,
    log: &Path,
    sink: &Sink,
    lines: u64,
    timeout: Duration,
) -> anyhow::Result<Run> {
    let log_file = std::fs::File::create(log)?;
    command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    let started = Instant::now();
    let child = command
        .spawn()
        .with_context(|| format!("while starting {:?}", command.get_program()))?;
    let mut guard = Guard(child);
    let pid = guard.0.id();
    let deadline = started + timeout;
    let mut peak_rss = 0.0f64;
    loop {
        if sink.records() >= lines {
            break;
        }
        if let Some(status) = guard.0.try_wait()? {
            let output = std::fs::read_to_string(log).unwrap_or_default();
            anyhow::bail!(
                "exited with {status} after {} of {lines} lines: {}",
                sink.records(),
                tail(&output)
            );
        }
        if Instant::now() >= deadline {
            let output = std::fs::read_to_string(log).unwrap_or_default();
            anyhow::bail!(
                "delivered {} of {lines} lines in {:.0} s: {}",
                sink.records(),
                timeout.as_secs_f64(),
                tail(&output)
            );
        }
        peak_rss = peak_rss.max(proc_peak_rss_mib(pid).unwrap_or(0.0));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let wall_s = started.elapsed().as_secs_f64();
    let cpu_s = proc_cpu_seconds(pid).context("cannot read the shipper's CPU time from /proc")?;
    let peak_rss_mib = proc_peak_rss_mib(pid).unwrap_or(0.0).max(peak_rss);
    drop(guard);
    Ok(Run {
        wall_s,
        cpu_s,
        peak_rss_mib,
    })
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// The file format a shipper reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// One JSON record per line.
    Ndjson,
    /// The same records in CRI envelopes.
    Cri,
}

impl Input {
    /// The figure names' prefix.
    fn prefix(self) -> &'static str {
        match self {
            Input::Ndjson => "agent",
            Input::Cri => "agent_cri",
        }
    }

    fn parser_lines(self) -> &'static str {
        match self {
            Input::Ndjson => "parser = \"json\"",
            Input::Cri => "parser = \"cri\"\ninner_parser = \"json\"",
        }
    }
}

/// Writes `ndjson`'s records as a container runtime does: a CRI line each, every tenth on
/// stderr, and every hundredth split into a `P` chunk and an `F` chunk (as the runtime does with
/// lines over its limit). Returns the bytes and lines written.
fn write_cri(ndjson: &Path, cri: &Path) -> std::io::Result<(u64, u64)> {
    use std::io::{BufRead, Write};
    let reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(ndjson)?);
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(cri)?);
    let start = chrono::Utc::now() - chrono::Duration::minutes(30);
    let (mut bytes, mut lines) = (0u64, 0u64);
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        let n = n as i64;
        let time = (start + chrono::Duration::microseconds(n * 200)).format("%Y-%m-%dT%H:%M:%S%.9fZ");
        let stream = if n % 10 == 9 { "stderr" } else { "stdout" };
        let text = if n % 100 == 99 && line.len() > 2 {
            let cut = line.len() / 2;
            let cut = (cut..line.len())
                .find(|i| line.is_char_boundary(*i))
                .unwrap_or(line.len());
            lines += 2;
            format!(
                "{time} {stream} P {}\n{time} {stream} F {}\n",
                &line[..cut],
                &line[cut..]
            )
        } else {
            lines += 1;
            format!("{time} {stream} F {line}\n")
        };
        out.write_all(text.as_bytes())?;
        bytes += text.len() as u64;
    }
    out.flush()?;
    Ok((bytes, lines))
}

fn agent_toml(sink: &Sink, file: &Path, data_dir: &Path, input: Input) -> String {
    format!(
        r#"[log]
level = "warn"

[agent]
collector_url = "http://{addr}"
token = "owl-bench-token-0123456789"
agent_id = "owl-bench"
data_dir = "{data}"
metrics_listen = ""
host_metrics_interval_s = 0
heartbeat_interval_s = 3600

[[agent.inputs]]
paths = ["{file}"]
service = "bench"
region = "CN"
{parser}
read_from = "beginning"

[agent.inputs.multiline]
enabled = false
"#,
        addr = sink.addr,
        data = data_dir.display(),
        file = file.display(),
        parser = input.parser_lines(),
    )
}

/// The agent config the benchmark uses, as [`owl_config::Config`] (in-process runs).
fn agent_config(
    sink: &Sink,
    file: &Path,
    data_dir: &Path,
    input: Input,
) -> anyhow::Result<owl_config::Config> {
    let path = data_dir.with_extension("toml");
    std::fs::write(&path, agent_toml(sink, file, data_dir, input))?;
    owl_config::Config::load(Some(&path), &Default::default()).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn run_owl(ctx: &Ctx, file: &Path, input: Input, lines: u64, timeout: Duration) -> anyhow::Result<Run> {
    let sink = Sink::start().await?;
    let data_dir = ctx.work.join(format!("{}-state", input.prefix()));
    let config_path = ctx.work.join(format!("{}.toml", input.prefix()));
    std::fs::write(&config_path, agent_toml(&sink, file, &data_dir, input))?;
    let log = ctx.work.join("owl-agent.log");
    match &ctx.agent {
        AgentRunner::Binary(path) => {
            let mut command = Command::new(path);
            command.arg("--config").arg(&config_path);
            measure_child(command, &log, &sink, lines, timeout).await
        }
        AgentRunner::SelfExec(exe) => {
            let mut command = Command::new(exe);
            command.arg("__agent").arg("--config").arg(&config_path);
            measure_child(command, &log, &sink, lines, timeout).await
        }
        AgentRunner::InProcess => {
            let state = ctx.work.join(format!("{}-state-inproc", input.prefix()));
            let config = agent_config(&sink, file, &state, input)?;
            let pid = std::process::id();
            let cpu_before = proc_cpu_seconds(pid).unwrap_or(0.0);
            let started = Instant::now();
            let shutdown = CancellationToken::new();
            let agent = owl_agent::start(config, shutdown.clone()).await?;
            let arrived = sink.wait_for(lines, timeout).await;
            let wall_s = started.elapsed().as_secs_f64();
            let cpu_s = proc_cpu_seconds(pid).unwrap_or(0.0) - cpu_before;
            shutdown.cancel();
            agent.wait().await?;
            anyhow::ensure!(
                arrived,
                "delivered {} of {lines} lines in {:.0} s",
                sink.records(),
                timeout.as_secs_f64()
            );
            Ok(Run {
                wall_s,
                cpu_s,
                peak_rss_mib: proc_peak_rss_mib(pid).unwrap_or(0.0),
            })
        }
    }
}

fn syslog_ng_conf(sink: &Sink, file: &Path, input: Input) -> String {
    // CRI: the envelope's four fields split off by the csv-parser, the content shipped (the P
    // chunks go out as they are: syslog-ng has no joining of its own for them).
    let (parser, body) = match input {
        Input::Ndjson => ("", "${MESSAGE}"),
        Input::Cri => (
            r#"parser { csv-parser(columns("CRI.TIME", "CRI.STREAM", "CRI.FLAG", "CRI.MSG") delimiters(" ") flags(greedy)); };"#,
            "${CRI.MSG}",
        ),
    };
    format!(
        r#"@version: 3.38
options {{ stats-freq(0); log-fifo-size(100000); keep-hostname(yes); }};
source s_bench {{
  file("{file}" flags(no-parse) follow-freq(1) log-iw-size(100000) log-fetch-limit(1000));
}};
destination d_sink {{
  http(
    url("http://{addr}/syslog-ng")
    method("POST")
    headers("Content-Type: application/x-ndjson")
    body("{body}")
    batch-lines(2000)
    batch-bytes(1048576)
    batch-timeout(200)
    workers(2)
  );
}};
log {{ source(s_bench); {parser} destination(d_sink); flags(flow-control); }};
"#,
        file = file.display(),
        addr = sink.addr,
    )
}

fn rsyslog_conf(sink: &Sink, file: &Path, work: &Path) -> String {
    format!(
        r#"global(workDirectory="{work}" maxMessageSize="64k")
module(load="imfile" mode="inotify")
module(load="omelasticsearch")
template(name="raw" type="string" string="%msg%")
input(type="imfile" File="{file}" Tag="bench" Ruleset="ship" freshStartTail="off" reopenOnTruncate="on")
ruleset(name="ship" queue.type="LinkedList" queue.size="200000" queue.dequeueBatchSize="2000") {{
  action(type="omelasticsearch" server="127.0.0.1" serverport="{port}" template="raw"
         searchIndex="bench" bulkmode="on" maxbytes="1m"
         queue.type="LinkedList" queue.size="200000" queue.dequeueBatchSize="2000"
         action.resumeRetryCount="-1")
}}
"#,
        work = work.display(),
        file = file.display(),
        port = sink.addr.port(),
    )
}

async fn run_baseline(
    ctx: &Ctx,
    name: &str,
    program: &Path,
    file: &Path,
    input: Input,
    lines: u64,
    timeout: Duration,
) -> anyhow::Result<Run> {
    let sink = Sink::start().await?;
    let dir = ctx.work.join(format!("{}-{name}", input.prefix()));
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join(format!("{name}.conf"));
    let mut command = Command::new(program);
    match name {
        "syslog-ng" => {
            std::fs::write(&conf, syslog_ng_conf(&sink, file, input))?;
            command
                .arg("-F")
                .arg("--no-caps")
                .arg("-f")
                .arg(&conf)
                .arg("-R")
                .arg(dir.join("persist"))
                .arg("-p")
                .arg(dir.join("pid"))
                .arg("-c")
                .arg(dir.join("ctl"));
        }
        _ => {
            std::fs::write(&conf, rsyslog_conf(&sink, file, &dir))?;
            command
                .arg("-n")
                .arg("-f")
                .arg(&conf)
                .arg("-i")
                .arg(dir.join("pid"));
        }
    }
    measure_child(command, &dir.join("output.log"), &sink, lines, timeout).await
}

const BASELINES: [(&str, &str, &str); 2] = [
    ("syslog-ng", "syslog-ng", "syslog-ng"),
    ("rsyslog", "rsyslogd", "rsyslog"),
];

/// Runs figure 1: NDJSON beside syslog-ng and rsyslog, then CRI beside syslog-ng.
pub async fn figures(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let file = ctx.work.join("agent.ndjson");
    let bytes = ctx.sizes.agent_mib * 1024 * 1024;
    let start = chrono::Utc::now() - chrono::Duration::minutes(30);
    let written = {
        let file = file.clone();
        tokio::task::spawn_blocking(move || Generator::new(11, start, 200).write_file(&file, bytes, u64::MAX))
            .await??
    };
    ctx.progress(&format!(
        "agent: {} records, {:.0} MB of NDJSON; running {}",
        written.records,
        written.bytes as f64 / 1e6,
        ctx.agent.describe()
    ));
    let records = written.records;
    let mut figures = shipper_figures(
        ctx,
        &file,
        Input::Ndjson,
        (records, records),
        written.bytes,
        &BASELINES,
    )
    .await?;
    let cri = ctx.work.join("agent.cri.log");
    let (cri_bytes, cri_lines) = {
        let (file, cri) = (file.clone(), cri.clone());
        tokio::task::spawn_blocking(move || write_cri(&file, &cri)).await??
    };
    let _ = std::fs::remove_file(&file);
    ctx.progress(&format!(
        "agent: the same records in CRI envelopes, {:.0} MB",
        cri_bytes as f64 / 1e6
    ));
    // syslog-ng ships the P chunks as lines of their own: it is done at the file's line count.
    figures.extend(
        shipper_figures(
            ctx,
            &cri,
            Input::Cri,
            (records, cri_lines),
            cri_bytes,
            &BASELINES[..1],
        )
        .await?,
    );
    let _ = std::fs::remove_file(&cri);
    Ok(figures)
}

/// Owl and each baseline shipping `file` (`bytes` bytes of `records` records): Owl is done when
/// the sink has `records`, a baseline when it has `baseline_lines`.
async fn shipper_figures(
    ctx: &Ctx,
    file: &Path,
    input: Input,
    (records, baseline_lines): (u64, u64),
    bytes: u64,
    baselines: &[(&str, &str, &str)],
) -> anyhow::Result<Vec<Figure>> {
    let timeout = Duration::from_secs(if ctx.smoke { 60 } else { 900 });
    let owl = run_owl(ctx, file, input, records, timeout)
        .await
        .with_context(|| format!("owl-agent on {input:?}"))?;
    let mb = bytes as f64 / 1e6;
    let values = |run: &Run| {
        [
            mb / run.wall_s,
            records as f64 / run.wall_s,
            run.cpu_s / (bytes as f64 / 1e9),
            mb / run.cpu_s.max(0.01),
            run.peak_rss_mib,
        ]
    };
    let owl_values = values(&owl);
    let mut figures = Vec::new();
    for &(label, program, package) in baselines {
        let baseline = match find_program(program) {
            None => Err(format!(
                "{label} is not installed: `scripts/install-baselines.sh {package}` installs it"
            )),
            Some(path) => {
                ctx.progress(&format!(
                    "{}: baseline {label} ({})",
                    input.prefix(),
                    path.display()
                ));
                run_baseline(ctx, label, &path, file, input, baseline_lines, timeout)
                    .await
                    .map(|run| values(&run))
                    .map_err(|e| format!("{label} failed: {e:#}"))
            }
        };
        let names = [
            ("mb_per_s", "MB/s", Better::Higher),
            ("lines_per_s", "lines/s", Better::Higher),
            ("cpu_s_per_gb", "CPU s/GB", Better::Lower),
            ("mb_per_cpu_s", "MB/CPU s", Better::Higher),
            ("peak_rss_mib", "MiB", Better::Lower),
        ];
        for (i, (name, unit, better)) in names.into_iter().enumerate() {
            let name = format!("{}_{name}", input.prefix());
            let base = baseline.as_ref().ok().map(|v| v[i]);
            let mut figure = Figure::compared(&name, unit, better, Some(owl_values[i]), label, base);
            if let Err(reason) = &baseline {
                figure = figure.baseline_skipped(reason.clone());
                figure.failed = reason.contains("failed");
            }
            // The targets of the agent's performance work are set on the NDJSON file.
            figure = match (input, name.trim_start_matches(input.prefix())) {
                (Input::Ndjson, "_mb_per_cpu_s") => figure.target(Target::RatioAtLeast(1.5)),
                (_, "_peak_rss_mib") => figure.target(Target::OwlAtMost(32.0)),
                _ => figure,
            };
            if ctx.agent == AgentRunner::InProcess || matches!(ctx.agent, AgentRunner::SelfExec(_)) {
                figure = figure.note(ctx.agent.describe());
            }
            figures.push(figure);
        }
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_time_after_a_command_name_with_spaces() {
        let stat = "1234 (my prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_cpu_seconds(stat), Some(3.0));
        let own = proc_cpu_seconds(std::process::id()).unwrap();
        assert!(own >= 0.0);
        assert!(proc_peak_rss_mib(std::process::id()).unwrap() > 1.0);
    }

    #[test]
    fn cri_envelopes_hold_the_same_records() {
        let dir = tempfile::tempdir().unwrap();
        let ndjson = dir.path().join("f.ndjson");
        let lines: Vec<String> = (0..200)
            .map(|n| format!("{{\"msg\":\"record {n} é\"}}"))
            .collect();
        std::fs::write(&ndjson, lines.join("\n") + "\n").unwrap();
        let cri = dir.path().join("f.log");
        let (bytes, written) = write_cri(&ndjson, &cri).unwrap();
        let text = std::fs::read_to_string(&cri).unwrap();
        assert_eq!((bytes, written), (text.len() as u64, 202));
        let mut joined = Vec::new();
        let mut partial = String::new();
        for line in text.lines() {
            let parsed =
                owl_parse::runtime::unwrap(owl_parse::runtime::Envelope::Cri, line.as_bytes()).unwrap();
            partial.push_str(std::str::from_utf8(&parsed.content).unwrap());
            if !parsed.partial {
                joined.push(std::mem::take(&mut partial));
            }
        }
        assert_eq!(joined, lines);
        assert_eq!(text.lines().count(), 202, "two records were split in two chunks");
        assert!(text.contains(" stderr F "));
    }

    #[tokio::test]
    async fn the_agent_config_loads() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::start().await.unwrap();
        let config = agent_config(
            &sink,
            &dir.path().join("f.ndjson"),
            &dir.path().join("state"),
            Input::Ndjson,
        )
        .unwrap();
        assert_eq!(config.agent.inputs.len(), 1);
        let cri = agent_config(
            &sink,
            &dir.path().join("f.log"),
            &dir.path().join("cri"),
            Input::Cri,
        )
        .unwrap();
        assert_eq!(cri.agent.inputs[0].parser, owl_config::ParserKind::Cri);
        assert_eq!(cri.agent.inputs[0].inner_parser, owl_config::ParserKind::Json);
        assert!(!config.agent.inputs[0].multiline.enabled);
        assert_eq!(config.agent.host_metrics_interval_s, 0);
    }
}
