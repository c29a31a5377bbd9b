//! `[agent]`: the node agent (owl-agent, and the local agent of `owl up`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Problems, Secret};

/// The agent's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Collector base URL the agent ships to.
    pub collector_url: String,
    /// Bearer token for the collector; `owl up` fills it with the collector's token.
    pub token: Secret,
    /// Stable agent id; empty means generated on first start and kept in the agent's data dir.
    pub agent_id: String,
    /// Directory for checkpoints and the disk buffer; empty means `<data_dir>/agent`.
    pub data_dir: Option<PathBuf>,
    /// Host name reported in records; empty means the system host name.
    pub host: String,
    /// Address of the agent's own `/metrics` endpoint; empty disables it.
    pub metrics_listen: String,
    /// Seconds between host metric samples; 0 disables sampling.
    pub host_metrics_interval_s: u64,
    /// Seconds between heartbeats.
    pub heartbeat_interval_s: u64,
    /// Region reported with host metrics and heartbeats.
    pub region: String,
    /// Batching of shipped records.
    pub batch: BatchConfig,
    /// The disk buffer between reading and shipping.
    pub buffer: BufferConfig,
    /// Retries of failed shipments.
    pub retry: RetryConfig,
    /// The files to tail.
    pub inputs: Vec<InputConfig>,
    /// Syslog listeners (`[[agent.syslog]]`).
    pub syslog: Vec<SyslogConfig>,
    /// Kubernetes metadata (`[agent.kubernetes]`).
    pub kubernetes: KubernetesConfig,
    /// On shutdown, milliseconds spent shipping what is buffered before stopping anyway (what is
    /// left stays in the disk buffer for the next start).
    pub shutdown_timeout_ms: u64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            collector_url: "http://127.0.0.1:4318".to_string(),
            token: Secret::default(),
            agent_id: String::new(),
            data_dir: None,
            host: String::new(),
            metrics_listen: "127.0.0.1:9464".to_string(),
            host_metrics_interval_s: 10,
            heartbeat_interval_s: 30,
            region: String::new(),
            batch: BatchConfig::default(),
            buffer: BufferConfig::default(),
            retry: RetryConfig::default(),
            inputs: Vec::new(),
            syslog: Vec::new(),
            kubernetes: KubernetesConfig::default(),
            shutdown_timeout_ms: 5000,
        }
    }
}

/// Compression of shipped batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd (default): fast and small.
    Zstd,
    /// gzip, for collectors behind proxies that only know it.
    Gzip,
    /// No compression.
    None,
}

/// `[agent.batch]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// A batch is sent once it holds this many uncompressed bytes.
    pub max_bytes: usize,
    /// A batch is sent at the latest this many milliseconds after its first record.
    pub timeout_ms: u64,
    /// Compression of the request body.
    pub compression: Compression,
    /// Batches sent concurrently.
    pub max_in_flight: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_bytes: 1024 * 1024,
            timeout_ms: 1000,
            compression: Compression::Zstd,
            max_in_flight: 4,
        }
    }
}

/// What the agent does when its disk buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Stop reading files until there is room (nothing is lost: the files are still there).
    Block,
    /// Drop new records and count them.
    DropNewest,
}

/// `[agent.buffer]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    /// Upper bound of the disk buffer in bytes.
    pub max_bytes: u64,
    /// Behaviour when the buffer is full.
    pub when_full: WhenFull,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            max_bytes: 256 * 1024 * 1024,
            when_full: WhenFull::Block,
        }
    }
}

/// `[agent.retry]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// First backoff in milliseconds.
    pub initial_backoff_ms: u64,
    /// Longest backoff in milliseconds.
    pub max_backoff_ms: u64,
    /// Request timeout in milliseconds.
    pub request_timeout_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff_ms: 200,
            max_backoff_ms: 30_000,
            request_timeout_ms: 30_000,
        }
    }
}

/// Where a file seen for the first time is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// From the first byte.
    Beginning,
    /// From the current end (only new lines).
    End,
}

/// Parser of an input's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParserKind {
    /// Try JSON, then Python logging, then access logs; plain text otherwise.
    Auto,
    /// JSON lines.
    Json,
    /// Python `logging` default format and the CRM services' format.
    Python,
    /// nginx / Apache combined access log.
    Combined,
    /// The input's `regex` with named captures.
    Regex,
    /// Each line is the message.
    Plain,
    /// Container runtime (CRI: containerd, CRI-O) lines, `<time> <stream> <P|F> <content>`:
    /// split lines are joined, the content parsed by `inner_parser`.
    Cri,
    /// Docker `json-file` lines, `{"log", "stream", "time"}`: split lines are joined, the content
    /// parsed by `inner_parser`.
    Docker,
}

impl ParserKind {
    /// Whether this is a container runtime's envelope rather than a content format.
    pub fn is_runtime(self) -> bool {
        matches!(self, ParserKind::Cri | ParserKind::Docker)
    }
}

/// `[agent.inputs.multiline]`: joining continuation lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultilineConfig {
    /// Whether lines are joined.
    pub enabled: bool,
    /// A line matching this starts a new record; others continue the previous one. Empty means
    /// the built-in rule (a line starting with whitespace, `Traceback`, `Caused by`, `at ` or a
    /// closing brace continues).
    pub start_pattern: String,
    /// A pending record is flushed after this many milliseconds without a new line.
    pub timeout_ms: u64,
    /// Longest record in lines.
    pub max_lines: usize,
}

impl Default for MultilineConfig {
    fn default() -> Self {
        MultilineConfig {
            enabled: true,
            start_pattern: String::new(),
            timeout_ms: 1000,
            max_lines: 500,
        }
    }
}

/// `[[agent.inputs]]`: one group of files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// Glob patterns of files to tail.
    pub paths: Vec<String>,
    /// Glob patterns of files to skip.
    pub exclude: Vec<String>,
    /// Service name given to the records.
    pub service: String,
    /// Region given to the records.
    pub region: String,
    /// Instance given to the records; empty means the host name.
    pub instance: String,
    /// Environment given to the records (`production`, `development`, ...).
    pub environment: String,
    /// Line parser.
    pub parser: ParserKind,
    /// Parser of the content inside a runtime envelope (`parser = "cri"` or `"docker"`); not itself
    /// a runtime format.
    pub inner_parser: ParserKind,
    /// Regular expression with named captures, for `parser = "regex"` (or `inner_parser`).
    pub regex: String,
    /// Where files seen for the first time are read from.
    pub read_from: ReadFrom,
    /// Longest line in bytes; longer lines are truncated and flagged.
    pub max_line_bytes: usize,
    /// Milliseconds between rescans of the globs (the truth when watch events are missed).
    pub poll_interval_ms: u64,
    /// Multiline joining.
    pub multiline: MultilineConfig,
    /// Milliseconds a rotated or deleted file is kept open after it was read to its end without
    /// growing, in case its writer still appends to it.
    pub rotate_wait_ms: u64,
}

impl InputConfig {
    /// The parser of each record's text: `inner_parser` inside a runtime envelope, else `parser`.
    pub fn content_parser(&self) -> ParserKind {
        if self.parser.is_runtime() {
            self.inner_parser
        } else {
            self.parser
        }
    }
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            paths: Vec::new(),
            exclude: Vec::new(),
            service: String::new(),
            region: String::new(),
            instance: String::new(),
            environment: "production".to_string(),
            parser: ParserKind::Auto,
            inner_parser: ParserKind::Auto,
            regex: String::new(),
            read_from: ReadFrom::Beginning,
            max_line_bytes: 256 * 1024,
            poll_interval_ms: 1000,
            multiline: MultilineConfig::default(),
            rotate_wait_ms: 5000,
        }
    }
}

/// How a syslog listener reads messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    /// RFC 5424 when the message says version 1 after its priority, else RFC 3164.
    Auto,
    /// RFC 5424 (`<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG`).
    Rfc5424,
    /// RFC 3164, the BSD format (`<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG`), also without the
    /// host as written to `/dev/log`.
    Rfc3164,
}

/// `[[agent.syslog]]`: one syslog listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogConfig {
    /// `tcp://HOST:PORT`, `udp://HOST:PORT`, `unix:///path` (a datagram socket, as `/dev/log`) or
    /// `unix-stream:///path`.
    pub listen: String,
    /// Message format.
    pub format: SyslogFormat,
    /// Service of messages without an app name.
    pub service: String,
    /// Region given to the records.
    pub region: String,
    /// Environment given to the records.
    pub environment: String,
    /// Parser of the message text (a JSON message stays structured); not a runtime format.
    pub inner_parser: ParserKind,
    /// Regular expression with named captures, for `inner_parser = "regex"`.
    pub regex: String,
    /// Longest message in bytes; longer ones are truncated and flagged.
    pub max_message_bytes: usize,
    /// Stream connections served at once; more are refused (closed at once) and counted.
    pub max_connections: usize,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            listen: String::new(),
            format: SyslogFormat::Auto,
            service: "syslog".to_string(),
            region: String::new(),
            environment: "production".to_string(),
            inner_parser: ParserKind::Auto,
            regex: String::new(),
            max_message_bytes: 64 * 1024,
            max_connections: 1024,
        }
    }
}

/// Where a syslog listener listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogListen {
    /// TCP, octet-counted or newline-framed (RFC 6587).
    Tcp(String),
    /// UDP, a message per datagram.
    Udp(String),
    /// A Unix datagram socket.
    Unix(PathBuf),
    /// A Unix stream socket, framed as TCP.
    UnixStream(PathBuf),
}

impl SyslogConfig {
    /// The parsed `listen` address.
    pub fn address(&self) -> Result<SyslogListen, String> {
        let listen = self.listen.trim();
        let (scheme, rest) = listen.split_once("://").ok_or_else(|| {
            "must be tcp://HOST:PORT, udp://HOST:PORT, unix:///path or unix-stream:///path".to_string()
        })?;
        let socket = |rest: &str| {
            rest.parse::<std::net::SocketAddr>()
                .map(|_| rest.to_string())
                .map_err(|_| format!("`{rest}` is not an IP:port address such as 127.0.0.1:5514"))
        };
        let path = |rest: &str| {
            if rest.starts_with('/') {
                Ok(PathBuf::from(rest))
            } else {
                Err(format!("`{rest}` is not an absolute path"))
            }
        };
        match scheme {
            "tcp" => socket(rest).map(SyslogListen::Tcp),
            "udp" => socket(rest).map(SyslogListen::Udp),
            "unix" => path(rest).map(SyslogListen::Unix),
            "unix-stream" => path(rest).map(SyslogListen::UnixStream),
            other => Err(format!(
                "unknown scheme `{other}`: use tcp, udp, unix or unix-stream"
            )),
        }
    }
}

/// `[agent.kubernetes]`: pod labels and the node's from the API server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// Ask the API server for the labels of this node's pods and of the node (in-cluster).
    pub api: bool,
    /// API server URL; empty means in-cluster (`KUBERNETES_SERVICE_HOST` and `_PORT`).
    pub api_url: String,
    /// The node whose pods are watched; empty means the `NODE_NAME` environment variable (set it
    /// from `spec.nodeName` with the downward API).
    pub node_name: String,
    /// Service account token file.
    pub token_file: PathBuf,
    /// CA bundle of the API server; empty means the system roots.
    pub ca_file: PathBuf,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            api: false,
            api_url: String::new(),
            node_name: String::new(),
            token_file: PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token"),
            ca_file: PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"),
        }
    }
}

impl AgentConfig {
    pub(crate) fn validate(&self, p: &mut Problems) {
        p.url("agent.collector_url", &self.collector_url);
        p.not_placeholder("agent.token", &self.token);
        if !self.metrics_listen.is_empty() {
            p.socket_addr("agent.metrics_listen", &self.metrics_listen);
        }
        p.positive("agent.heartbeat_interval_s", self.heartbeat_interval_s);
        p.positive("agent.batch.max_bytes", self.batch.max_bytes as u64);
        p.positive("agent.batch.timeout_ms", self.batch.timeout_ms);
        p.range(
            "agent.batch.max_in_flight",
            self.batch.max_in_flight as u64,
            1,
            64,
        );
        p.range(
            "agent.buffer.max_bytes",
            self.buffer.max_bytes,
            1024 * 1024,
            u64::MAX,
        );
        p.positive("agent.retry.initial_backoff_ms", self.retry.initial_backoff_ms);
        p.positive("agent.retry.request_timeout_ms", self.retry.request_timeout_ms);
        if self.retry.max_backoff_ms < self.retry.initial_backoff_ms {
            p.push(
                "agent.retry.max_backoff_ms",
                self.retry.max_backoff_ms,
                "must be at least agent.retry.initial_backoff_ms",
            );
        }
        for (i, input) in self.inputs.iter().enumerate() {
            let key = |k: &str| format!("agent.inputs[{i}].{k}");
            if input.paths.is_empty() {
                p.push(
                    &key("paths"),
                    "[]",
                    "list at least one glob, e.g. [\"/var/log/app/*.log\"]",
                );
            }
            for (j, pattern) in input.paths.iter().chain(&input.exclude).enumerate() {
                if let Err(e) = globset::Glob::new(pattern) {
                    p.push(
                        &format!("{}[{j}]", key("paths")),
                        pattern,
                        &format!("is not a valid glob: {e}"),
                    );
                }
            }
            if input.service.is_empty() {
                p.push(&key("service"), "\"\"", "name the service whose logs these are");
            }
            if input.inner_parser.is_runtime() {
                p.push(
                    &key("inner_parser"),
                    format!("{:?}", input.inner_parser).to_lowercase(),
                    "parses the content inside the envelope: auto, json, python, combined, regex or plain",
                );
            }
            if input.content_parser() == ParserKind::Regex {
                check_capture_regex(p, &key("regex"), &input.regex);
            }
            if !input.multiline.start_pattern.is_empty()
                && let Err(e) = regex::Regex::new(&input.multiline.start_pattern)
            {
                p.push(
                    &key("multiline.start_pattern"),
                    &input.multiline.start_pattern,
                    &format!("is not a valid regex: {e}"),
                );
            }
            p.range(
                &key("max_line_bytes"),
                input.max_line_bytes as u64,
                1024,
                64 * 1024 * 1024,
            );
            p.range(&key("poll_interval_ms"), input.poll_interval_ms, 10, 3_600_000);
            p.range(&key("rotate_wait_ms"), input.rotate_wait_ms, 10, 86_400_000);
            p.range(
                &key("multiline.max_lines"),
                input.multiline.max_lines as u64,
                1,
                100_000,
            );
            p.positive(&key("multiline.timeout_ms"), input.multiline.timeout_ms);
        }
        for (i, listener) in self.syslog.iter().enumerate() {
            let key = |k: &str| format!("agent.syslog[{i}].{k}");
            if let Err(message) = listener.address() {
                p.push(&key("listen"), format!("{:?}", listener.listen), &message);
            }
            if listener.inner_parser.is_runtime() {
                p.push(
                    &key("inner_parser"),
                    format!("{:?}", listener.inner_parser).to_lowercase(),
                    "parses the message text: auto, json, python, combined, regex or plain",
                );
            }
            if listener.inner_parser == ParserKind::Regex {
                check_capture_regex(p, &key("regex"), &listener.regex);
            }
            p.range(
                &key("max_message_bytes"),
                listener.max_message_bytes as u64,
                480,
                16 * 1024 * 1024,
            );
            p.range(
                &key("max_connections"),
                listener.max_connections as u64,
                1,
                100_000,
            );
        }
        let mut listens: Vec<&str> = self.syslog.iter().map(|l| l.listen.trim()).collect();
        listens.sort_unstable();
        if let Some(pair) = listens.windows(2).find(|w| w[0] == w[1]) {
            p.push("agent.syslog", pair[0], "two listeners on the same address");
        }
        if self.kubernetes.api && !self.kubernetes.api_url.is_empty() {
            p.url("agent.kubernetes.api_url", &self.kubernetes.api_url);
        }
    }
}

/// A parser regex must compile and name at least one capture.
fn check_capture_regex(p: &mut Problems, key: &str, pattern: &str) {
    match regex::Regex::new(pattern) {
        Ok(re) if re.capture_names().flatten().next().is_none() => {
            p.push(key, pattern, "needs named captures such as (?P<message>.*)")
        }
        Ok(_) => {}
        Err(e) => p.push(key, pattern, &format!("is not a valid regex: {e}")),
    }
}
