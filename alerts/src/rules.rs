//! The rules: what in a request record or a metric sample is a problem.
//!
//! Each rule turns an observation into zero or one [`Signal`]: "this is wrong now, about this key".
//! Signals are occurrences; [`crate::incidents`] folds them into alerts. Rules are evaluated in
//! the order records arrive, with the engine's clock as "now":
//!
//! | rule | input | key | signal when |
//! | --- | --- | --- | --- |
//! | SLOW_REQUEST | request | service, method, path | duration > `thresholdMs`, path not excluded |
//! | HIGH_ERROR_RATE | request | service | a failed request while failed/all over the sliding window ≥ `thresholdPercent` and all ≥ `minRequests` |
//! | IP_ANOMALY | request | client IP | requests from the IP over the last 60 s > `maxRequestsPerMinute` |
//! | DISK_SPACE | sample | host, mount | usage ≥ `warningPercent` (WARNING) or ≥ `criticalPercent` (CRITICAL) |
//! | CPU_HIGH, MEMORY_HIGH | sample | host | usage > `thresholdPercent` |
//!
//! # Windows and memory
//!
//! Rates are counted in ring buffers of fixed-width buckets keyed by arrival time: 60 buckets per
//! error-rate window (5 s each for a 5-minute window) and 12 buckets of 5 s for the per-minute IP
//! count, so a window costs the same memory whatever its length. At most [`MAX_SERVICES`] services
//! and [`MAX_IPS`] client IPs are tracked; idle ones are swept every tick, and while the table is
//! full a new key is not tracked (counted in `owl_alerts_untracked_keys_total`) rather than
//! evicting a key that may be mid-incident. Windows start empty after a restart: they refill within
//! one window, which is why they are not persisted.
//!
//! Arrival time rather than the record's own timestamp drives the windows, so a clock-skewed agent
//! cannot place requests outside them; records older than [`MAX_RECORD_AGE_MS`] (a backlog shipped
//! after an outage) are not evaluated at all: ops learn of a problem when it happens, not an hour
//! later in a burst.

use std::collections::HashMap;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use owl_model::{LogRecord, MetricSample};
use serde_json::{Map, Value, json};

use crate::alert::{AlertSeverity, AlertType};
use crate::settings::{AlertSettings, number};

/// Records older than this (by their own timestamp, against the engine's clock) are not evaluated.
pub const MAX_RECORD_AGE_MS: i64 = 15 * 60 * 1000;
/// Most services whose error rate is tracked at once.
pub const MAX_SERVICES: usize = 10_000;
/// Most client IPs whose request rate is tracked at once.
pub const MAX_IPS: usize = 100_000;
/// Buckets of an error-rate window.
const ERROR_BUCKETS: usize = 60;
/// Buckets of the per-minute IP count, and their width.
const IP_BUCKETS: usize = 12;
const IP_BUCKET_MS: i64 = 5_000;

/// The facts of one HTTP request record that the rules read; extracted on the ingest side so only
/// these cross into the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestFacts {
    /// The record's own time, epoch ms.
    pub timestamp_ms: i64,
    /// Writing service.
    pub service: String,
    /// Its region.
    pub region: Option<String>,
    /// Host the record was read on.
    pub host: Option<String>,
    /// HTTP method.
    pub method: Option<String>,
    /// URL (path and query).
    pub url: Option<String>,
    /// Duration, ms.
    pub duration_ms: Option<f64>,
    /// Status code.
    pub status_code: Option<u16>,
    /// Whether the request failed (ERROR level, an error object, or a 5xx).
    pub failed: bool,
    /// Client IP.
    pub client_ip: Option<String>,
    /// Trace id.
    pub trace_id: Option<String>,
}

impl RequestFacts {
    /// The facts of a request record; `None` for records without HTTP facts.
    pub fn of(record: &LogRecord) -> Option<RequestFacts> {
        let http = record.http.as_ref()?;
        if http.url.is_none() && http.status_code.is_none() && http.duration_ms.is_none() {
            return None;
        }
        Some(RequestFacts {
            timestamp_ms: record.timestamp.timestamp_millis(),
            service: record.service.name.clone(),
            region: record.service.region.clone(),
            host: record.host.clone(),
            method: http.method.clone(),
            url: http.url.clone(),
            duration_ms: http.duration_ms,
            status_code: http.status_code,
            failed: record.has_error(),
            client_ip: record
                .client
                .as_ref()
                .and_then(|c| c.ip.clone())
                .filter(|ip| !ip.is_empty()),
            trace_id: record.trace_id().map(str::to_string),
        })
    }

    /// The path of the URL, without query or fragment.
    pub fn path(&self) -> &str {
        owl_model::url_path(self.url.as_deref().unwrap_or(""))
    }
}

/// A request IP to block, carried by an IP_ANOMALY signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The client IP.
    pub ip: String,
    /// Blocked until, epoch ms.
    pub until_ms: i64,
}

/// One occurrence of a problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// Its type.
    pub alert_type: AlertType,
    /// What it is about within the type.
    pub key: String,
    /// How urgent.
    pub severity: AlertSeverity,
    /// The readable message.
    pub message: String,
    /// Facts (the log API's `context`).
    pub context: Map<String, Value>,
    /// Service concerned.
    pub service: Option<String>,
    /// Host concerned.
    pub host: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// The IP to block (IP_ANOMALY).
    pub block: Option<Block>,
}

/// A ring buffer of `N` buckets of counts, keyed by bucket number.
#[derive(Debug, Clone)]
struct Window<const N: usize> {
    /// Bucket number and counts (requests, failures) per slot.
    slots: [(i64, u32, u32); N],
}

impl<const N: usize> Window<N> {
    fn new() -> Window<N> {
        Window {
            slots: [(i64::MIN, 0, 0); N],
        }
    }

    fn add(&mut self, bucket: i64, requests: u32, failures: u32) {
        let slot = &mut self.slots[bucket.rem_euclid(N as i64) as usize];
        if slot.0 != bucket {
            *slot = (bucket, 0, 0);
        }
        slot.1 = slot.1.saturating_add(requests);
        slot.2 = slot.2.saturating_add(failures);
    }

    /// Sums the buckets of the last `N` bucket numbers up to `bucket`.
    fn sum(&self, bucket: i64) -> (u64, u64) {
        let oldest = bucket - (N as i64 - 1);
        self.slots
            .iter()
            .filter(|(b, _, _)| *b >= oldest && *b <= bucket)
            .fold((0, 0), |(r, f), (_, sr, sf)| {
                (r + u64::from(*sr), f + u64::from(*sf))
            })
    }

    /// Whether every bucket is older than the window ending at `bucket`.
    fn is_idle(&self, bucket: i64) -> bool {
        let oldest = bucket - (N as i64 - 1);
        self.slots.iter().all(|(b, _, _)| *b < oldest)
    }
}

/// The compiled rules with their windows.
pub(crate) struct Rules {
    settings: AlertSettings,
    exclude: GlobSet,
    error_bucket_ms: i64,
    services: HashMap<String, Window<ERROR_BUCKETS>>,
    ips: HashMap<String, Window<IP_BUCKETS>>,
    /// Keys not tracked because a table was full, since the last read.
    pub(crate) untracked: u64,
    /// Addresses IP_ANOMALY alerts on but never blocks (besides loopback, always exempt).
    never_block: owl_config::Networks,
}

impl Rules {
    /// Compiles validated settings (invalid globs, which validation refuses, are skipped).
    pub(crate) fn new(settings: &AlertSettings) -> Rules {
        let mut builder = GlobSetBuilder::new();
        for glob in &settings.slow_request.exclude_paths {
            // `*` crosses `/` so `/api/v1/reports/*` excludes everything below reports.
            match GlobBuilder::new(glob).literal_separator(false).build() {
                Ok(glob) => {
                    builder.add(glob);
                }
                Err(error) => tracing::warn!(%glob, %error, "skipping an invalid excludePaths glob"),
            }
        }
        let exclude = builder.build().unwrap_or_else(|_| GlobSet::empty());
        let window_ms = i64::try_from(settings.error_rate.window_minutes.max(1)).unwrap_or(1440) * 60_000;
        Rules {
            settings: settings.clone(),
            exclude,
            error_bucket_ms: (window_ms / ERROR_BUCKETS as i64).max(1),
            services: HashMap::new(),
            ips: HashMap::new(),
            untracked: 0,
            never_block: owl_config::Networks::default(),
        }
    }

    /// The same rules, never blocking `networks`.
    pub(crate) fn with_never_block(mut self, networks: owl_config::Networks) -> Rules {
        self.never_block = networks;
        self
    }

    /// Whether `ip` may be put on the blocked list. A client IP comes from ingested records, which
    /// any application's log lines can set, so loopback (this node's own users) and the configured
    /// networks (the proxies in front of the query API, the office) are never blocked.
    fn may_block(&self, ip: &str) -> bool {
        match ip.parse::<std::net::IpAddr>() {
            Ok(addr) => !owl_config::net::is_loopback(addr) && !self.never_block.contains(addr),
            Err(_) => !ip.eq_ignore_ascii_case("localhost"),
        }
    }

    /// Takes new settings; windows are kept unless their shape changed.
    pub(crate) fn update(&mut self, settings: &AlertSettings) {
        let mut next = Rules::new(settings);
        if next.error_bucket_ms == self.error_bucket_ms {
            next.services = std::mem::take(&mut self.services);
        }
        next.ips = std::mem::take(&mut self.ips);
        next.untracked = self.untracked;
        next.never_block = std::mem::take(&mut self.never_block);
        *self = next;
    }

    /// Evaluates one request; pushes its signals.
    pub(crate) fn on_request(&mut self, request: &RequestFacts, now_ms: i64, out: &mut Vec<Signal>) {
        if request.timestamp_ms < now_ms - MAX_RECORD_AGE_MS {
            return;
        }
        if let Some(signal) = self.slow_request(request) {
            out.push(signal);
        }
        if let Some(signal) = self.error_rate(request, now_ms) {
            out.push(signal);
        }
        if let Some(signal) = self.ip_anomaly(request, now_ms) {
            out.push(signal);
        }
    }

    /// Evaluates one metric sample; pushes its signals.
    pub(crate) fn on_sample(&self, sample: &MetricSample, now_ms: i64, out: &mut Vec<Signal>) {
        if sample.timestamp.timestamp_millis() < now_ms - MAX_RECORD_AGE_MS {
            return;
        }
        let s = &self.settings;
        let base = |alert_type, key: String, severity, message: String, context: Map<String, Value>| Signal {
            alert_type,
            key,
            severity,
            message,
            context,
            service: None,
            host: Some(sample.host.clone()),
            region: sample.region.clone(),
            block: None,
        };
        if s.disk_space.enabled {
            for disk in &sample.disks {
                let severity = if disk.percent >= s.disk_space.critical_percent {
                    AlertSeverity::Critical
                } else if disk.percent >= s.disk_space.warning_percent {
                    AlertSeverity::Warning
                } else {
                    continue;
                };
                let threshold = if severity == AlertSeverity::Critical {
                    s.disk_space.critical_percent
                } else {
                    s.disk_space.warning_percent
                };
                let message = format!(
                    "磁盘空间告警: {} 挂载点 {} 使用率 {}%，超过 {}%",
                    sample.host,
                    disk.mount,
                    percent(disk.percent),
                    percent(threshold)
                );
                let mut context = Map::new();
                context.insert("host".into(), json!(sample.host));
                context.insert("mount".into(), json!(disk.mount));
                context.insert("usedPercent".into(), rounded(disk.percent));
                context.insert("threshold".into(), number(threshold));
                context.insert("usedBytes".into(), json!(disk.used_bytes));
                context.insert("totalBytes".into(), json!(disk.total_bytes));
                out.push(base(
                    AlertType::DiskSpace,
                    format!("{} {}", sample.host, disk.mount),
                    severity,
                    message,
                    context,
                ));
            }
        }
        for (alert_type, rule, value, name, field) in [
            (
                AlertType::CpuHigh,
                &s.cpu,
                sample.cpu_percent,
                "CPU",
                "cpuPercent",
            ),
            (
                AlertType::MemoryHigh,
                &s.memory,
                sample.memory_percent,
                "内存",
                "memoryPercent",
            ),
        ] {
            if !rule.enabled || value <= rule.threshold_percent {
                continue;
            }
            // The CRM analytics API's wording ("CPU使用率超过70%"), then the host and the value.
            let message = format!(
                "{name}使用率超过{}% ({}: {}%)",
                percent(rule.threshold_percent),
                sample.host,
                percent(value)
            );
            let mut context = Map::new();
            context.insert("host".into(), json!(sample.host));
            context.insert(field.into(), rounded(value));
            context.insert("threshold".into(), number(rule.threshold_percent));
            out.push(base(
                alert_type,
                sample.host.clone(),
                AlertSeverity::Warning,
                message,
                context,
            ));
        }
    }

    fn slow_request(&self, request: &RequestFacts) -> Option<Signal> {
        let rule = &self.settings.slow_request;
        let duration = request.duration_ms?;
        if !rule.enabled || duration <= rule.threshold_ms as f64 {
            return None;
        }
        let path = request.path();
        if self.exclude.is_match(path) {
            return None;
        }
        let method = request.method.as_deref().unwrap_or("-").to_ascii_uppercase();
        let duration_ms = duration.round() as i64;
        let message = format!("慢请求告警: {method} {path} 耗时 {duration_ms}ms");
        let mut context = Map::new();
        if let Some(trace_id) = &request.trace_id {
            context.insert("traceId".into(), json!(trace_id));
        }
        context.insert("url".into(), json!(request.url.as_deref().unwrap_or(path)));
        context.insert("method".into(), json!(method));
        context.insert("duration".into(), json!(duration_ms));
        context.insert("threshold".into(), json!(rule.threshold_ms));
        context.insert("service".into(), json!(request.service));
        if let Some(host) = &request.host {
            context.insert("host".into(), json!(host));
        }
        if let Some(status) = request.status_code {
            context.insert("statusCode".into(), json!(status));
        }
        Some(Signal {
            alert_type: AlertType::SlowRequest,
            key: format!("{} {method} {path}", request.service),
            severity: AlertSeverity::Warning,
            message,
            context,
            service: Some(request.service.clone()),
            host: request.host.clone(),
            region: request.region.clone(),
            block: None,
        })
    }

    fn error_rate(&mut self, request: &RequestFacts, now_ms: i64) -> Option<Signal> {
        let rule = &self.settings.error_rate;
        if !rule.enabled {
            return None;
        }
        let bucket = now_ms.div_euclid(self.error_bucket_ms);
        if !self.services.contains_key(&request.service) {
            if self.services.len() >= MAX_SERVICES {
                self.untracked += 1;
                return None;
            }
            self.services.insert(request.service.clone(), Window::new());
        }
        let window = self.services.get_mut(&request.service).expect("inserted above");
        window.add(bucket, 1, u32::from(request.failed));
        if !request.failed {
            return None;
        }
        let (requests, failures) = window.sum(bucket);
        let rate = failures as f64 * 100.0 / requests as f64;
        if requests < rule.min_requests || rate < rule.threshold_percent {
            return None;
        }
        let severity = if rate >= (rule.threshold_percent * 2.0).min(100.0) {
            AlertSeverity::Critical
        } else {
            AlertSeverity::Warning
        };
        let message = format!(
            "高错误率告警: {} 最近 {} 分钟错误率 {}% ({failures}/{requests})，超过 {}%",
            request.service,
            rule.window_minutes,
            percent(rate),
            percent(rule.threshold_percent)
        );
        let mut context = Map::new();
        context.insert("service".into(), json!(request.service));
        context.insert("errorRate".into(), rounded(rate));
        context.insert("errors".into(), json!(failures));
        context.insert("requests".into(), json!(requests));
        context.insert("windowMinutes".into(), json!(rule.window_minutes));
        context.insert("threshold".into(), number(rule.threshold_percent));
        if let Some(trace_id) = &request.trace_id {
            context.insert("traceId".into(), json!(trace_id));
        }
        if let Some(url) = &request.url {
            context.insert("url".into(), json!(url));
        }
        if let Some(host) = &request.host {
            context.insert("host".into(), json!(host));
        }
        Some(Signal {
            alert_type: AlertType::HighErrorRate,
            key: request.service.clone(),
            severity,
            message,
            context,
            service: Some(request.service.clone()),
            host: None,
            region: request.region.clone(),
            block: None,
        })
    }

    fn ip_anomaly(&mut self, request: &RequestFacts, now_ms: i64) -> Option<Signal> {
        let rule = &self.settings.ip_anomaly;
        let ip = request.client_ip.as_ref()?;
        if !rule.enabled {
            return None;
        }
        let bucket = now_ms.div_euclid(IP_BUCKET_MS);
        if !self.ips.contains_key(ip) {
            if self.ips.len() >= MAX_IPS {
                self.untracked += 1;
                return None;
            }
            self.ips.insert(ip.clone(), Window::new());
        }
        let window = self.ips.get_mut(ip).expect("inserted above");
        window.add(bucket, 1, 0);
        let (requests, _) = window.sum(bucket);
        if requests <= rule.max_requests_per_minute {
            return None;
        }
        let block_ms = i64::try_from(rule.block_duration_minutes).unwrap_or(10_080) * 60_000;
        let until_ms = now_ms + block_ms;
        let blocks = self.may_block(ip);
        let message = if blocks {
            format!(
                "IP 异常告警: {ip} 每分钟请求 {requests} 次，超过 {} 次，封禁 {} 分钟",
                rule.max_requests_per_minute, rule.block_duration_minutes
            )
        } else {
            format!(
                "IP 异常告警: {ip} 每分钟请求 {requests} 次，超过 {} 次（本机或免封禁地址，不封禁）",
                rule.max_requests_per_minute
            )
        };
        let mut context = Map::new();
        context.insert("ip".into(), json!(ip));
        context.insert("requestsPerMinute".into(), json!(requests));
        context.insert("threshold".into(), json!(rule.max_requests_per_minute));
        context.insert("blocked".into(), json!(blocks));
        if blocks {
            context.insert("blockDurationMinutes".into(), json!(rule.block_duration_minutes));
            context.insert(
                "blockedUntil".into(),
                json!(owl_model::clock::format_millis(until_ms)),
            );
        }
        context.insert("service".into(), json!(request.service));
        if let Some(url) = &request.url {
            context.insert("url".into(), json!(url));
        }
        Some(Signal {
            alert_type: AlertType::IpAnomaly,
            key: ip.clone(),
            severity: AlertSeverity::Warning,
            message,
            context,
            service: Some(request.service.clone()),
            host: request.host.clone(),
            region: request.region.clone(),
            block: blocks.then(|| Block {
                ip: ip.clone(),
                until_ms,
            }),
        })
    }

    /// Forgets windows that saw nothing for a whole window.
    pub(crate) fn sweep(&mut self, now_ms: i64) {
        let error_bucket = now_ms.div_euclid(self.error_bucket_ms);
        self.services.retain(|_, window| !window.is_idle(error_bucket));
        let ip_bucket = now_ms.div_euclid(IP_BUCKET_MS);
        self.ips.retain(|_, window| !window.is_idle(ip_bucket));
    }

    /// Tracked services and IPs.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> (usize, usize) {
        (self.services.len(), self.ips.len())
    }
}

/// A percentage as people read it: `70`, `85.2`.
pub(crate) fn percent(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{}", rounded as i64)
    } else {
        format!("{rounded:.1}")
    }
}

fn rounded(value: f64) -> Value {
    number((value * 10.0).round() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use owl_model::{DiskUsage, LoadAverage};

    const NOW: i64 = 1_733_567_400_000;

    fn settings() -> AlertSettings {
        let mut s = AlertSettings::default();
        s.slow_request.exclude_paths = vec!["/api/v1/files/upload".into(), "/api/v1/reports/*".into()];
        s.error_rate.min_requests = 10;
        s.ip_anomaly.max_requests_per_minute = 5;
        s
    }

    fn request(url: &str, duration: f64, failed: bool) -> RequestFacts {
        RequestFacts {
            timestamp_ms: NOW,
            service: "Form".into(),
            region: Some("CN".into()),
            host: Some("web-1".into()),
            method: Some("post".into()),
            url: Some(url.into()),
            duration_ms: Some(duration),
            status_code: Some(if failed { 500 } else { 200 }),
            failed,
            client_ip: Some("203.0.113.7".into()),
            trace_id: Some("CN-1733580000000-a1b2c3d4".into()),
        }
    }

    #[test]
    fn ip_anomaly_never_blocks_loopback_or_listed_networks() {
        let nets = owl_config::Networks::parse(&["10.0.0.0/8"]).unwrap();
        let mut rules = Rules::new(&settings()).with_never_block(nets);
        for (ip, blocked) in [
            ("203.0.113.7", true),
            ("127.0.0.1", false),
            ("::1", false),
            ("::ffff:127.0.0.1", false),
            ("10.1.2.3", false),
        ] {
            let mut request = request("/api/v1/forms", 10.0, false);
            request.client_ip = Some(ip.into());
            let signals: Vec<Signal> = (0..6).flat_map(|_| run(&mut rules, &request, NOW)).collect();
            let signal = signals
                .iter()
                .find(|s| s.alert_type == AlertType::IpAnomaly)
                .unwrap_or_else(|| panic!("{ip} still alerts"));
            assert_eq!(signal.block.is_some(), blocked, "{ip}");
            assert_eq!(signal.context["blocked"], blocked, "{ip}");
        }
        // Updated settings keep the list.
        rules.update(&settings());
        let mut request = request("/api/v1/forms", 10.0, false);
        request.client_ip = Some("10.9.9.9".into());
        let signals: Vec<Signal> = (0..6).flat_map(|_| run(&mut rules, &request, NOW)).collect();
        assert!(signals.iter().all(|s| s.block.is_none()));
    }

    fn run(rules: &mut Rules, request: &RequestFacts, now: i64) -> Vec<Signal> {
        let mut out = Vec::new();
        rules.on_request(request, now, &mut out);
        out
    }

    #[test]
    fn slow_request_has_003s_message_and_context() {
        let mut rules = Rules::new(&settings());
        let signals = run(
            &mut rules,
            &request("/api/v1/forms/submit?draft=1", 5234.0, false),
            NOW,
        );
        assert_eq!(signals.len(), 1);
        let signal = &signals[0];
        assert_eq!(
            signal.message,
            "慢请求告警: POST /api/v1/forms/submit 耗时 5234ms"
        );
        assert_eq!(signal.key, "Form POST /api/v1/forms/submit");
        assert_eq!(signal.context["traceId"], "CN-1733580000000-a1b2c3d4");
        assert_eq!(signal.context["duration"], 5234);
        assert_eq!(signal.context["threshold"], 2000);
        assert_eq!(signal.context["url"], "/api/v1/forms/submit?draft=1");
        // At the threshold is not slower than it.
        assert!(run(&mut rules, &request("/a", 2000.0, false), NOW).is_empty());
    }

    #[test]
    fn excluded_paths_never_alert() {
        let mut rules = Rules::new(&settings());
        assert!(run(&mut rules, &request("/api/v1/files/upload", 9000.0, false), NOW).is_empty());
        assert!(
            run(
                &mut rules,
                &request("/api/v1/reports/2025/big?x=1", 9000.0, false),
                NOW
            )
            .is_empty()
        );
        assert!(
            run(
                &mut rules,
                &request("http://gw:8080/api/v1/reports/x", 9000.0, false),
                NOW
            )
            .is_empty()
        );
        assert_eq!(
            run(&mut rules, &request("/api/v1/report", 9000.0, false), NOW).len(),
            1
        );
    }

    #[test]
    fn error_rate_needs_min_requests_and_threshold() {
        let mut s = settings();
        s.ip_anomaly.enabled = false;
        let mut rules = Rules::new(&s);
        // 8 good, then failures: the 2nd failure makes 10 requests at 20 %.
        for _ in 0..8 {
            assert!(run(&mut rules, &request("/a", 10.0, false), NOW).is_empty());
        }
        assert!(
            run(&mut rules, &request("/a", 10.0, true), NOW).is_empty(),
            "9 requests < minRequests"
        );
        let signals = run(&mut rules, &request("/a", 10.0, true), NOW);
        assert_eq!(signals.len(), 1);
        assert_eq!(signals[0].alert_type, AlertType::HighErrorRate);
        assert_eq!(signals[0].key, "Form");
        assert_eq!(
            signals[0].severity,
            AlertSeverity::Critical,
            "20 % is over twice 5 %"
        );
        assert_eq!(signals[0].context["errors"], 2);
        assert_eq!(signals[0].context["requests"], 10);
        // Once the window has slid past them, the failures no longer count.
        let later = NOW + 6 * 60_000;
        for _ in 0..20 {
            assert!(run(&mut rules, &request("/a", 10.0, false), later).is_empty());
        }
        assert!(
            run(&mut rules, &request("/a", 10.0, true), later).is_empty(),
            "1/21 < 5 %"
        );
    }

    #[test]
    fn ip_over_the_per_minute_limit_is_blocked() {
        let mut s = settings();
        s.error_rate.enabled = false;
        let mut rules = Rules::new(&s);
        for i in 0..5 {
            assert!(run(&mut rules, &request("/a", 1.0, false), NOW + i * 1000).is_empty());
        }
        let signals = run(&mut rules, &request("/a", 1.0, false), NOW + 5_000);
        assert_eq!(signals.len(), 1);
        assert_eq!(signals[0].key, "203.0.113.7");
        assert_eq!(
            signals[0].block,
            Some(Block {
                ip: "203.0.113.7".into(),
                until_ms: NOW + 5_000 + 10 * 60_000
            })
        );
        // A minute later the count starts over.
        assert!(run(&mut rules, &request("/a", 1.0, false), NOW + 66_000).is_empty());
    }

    #[test]
    fn stale_records_are_not_evaluated() {
        let mut rules = Rules::new(&settings());
        let mut old = request("/slow", 9000.0, false);
        old.timestamp_ms = NOW - MAX_RECORD_AGE_MS - 1;
        assert!(run(&mut rules, &old, NOW).is_empty());
    }

    fn sample(cpu: f64, memory: f64, disk: f64) -> MetricSample {
        MetricSample {
            host: "web-1".into(),
            timestamp: owl_model::clock::millis_to_utc(NOW),
            cpu_percent: cpu,
            memory_percent: memory,
            disks: vec![DiskUsage {
                mount: "/data".into(),
                total_bytes: 100,
                used_bytes: disk as u64,
                percent: disk,
            }],
            load: LoadAverage::default(),
            region: None,
        }
    }

    #[test]
    fn host_rules_follow_their_thresholds() {
        let rules = Rules::new(&settings());
        let mut out = Vec::new();
        rules.on_sample(&sample(85.24, 50.0, 85.0), NOW, &mut out);
        let found: Vec<(AlertType, AlertSeverity)> = out.iter().map(|s| (s.alert_type, s.severity)).collect();
        assert_eq!(
            found,
            [
                (AlertType::DiskSpace, AlertSeverity::Warning),
                (AlertType::CpuHigh, AlertSeverity::Warning)
            ]
        );
        assert_eq!(out[1].message, "CPU使用率超过70% (web-1: 85.2%)");
        assert_eq!(out[0].key, "web-1 /data");
        out.clear();
        rules.on_sample(&sample(70.0, 95.0, 90.0), NOW, &mut out);
        let found: Vec<(AlertType, AlertSeverity)> = out.iter().map(|s| (s.alert_type, s.severity)).collect();
        assert_eq!(
            found,
            [
                (AlertType::DiskSpace, AlertSeverity::Critical),
                (AlertType::MemoryHigh, AlertSeverity::Warning)
            ]
        );
    }

    #[test]
    fn idle_windows_are_swept_and_tables_are_bounded() {
        let mut rules = Rules::new(&settings());
        run(&mut rules, &request("/a", 1.0, false), NOW);
        assert_eq!(rules.tracked(), (1, 1));
        rules.sweep(NOW + 30_000);
        assert_eq!(rules.tracked(), (1, 1), "still inside both windows");
        rules.sweep(NOW + 6 * 60_000);
        assert_eq!(rules.tracked(), (0, 0));
        for i in 0..MAX_IPS {
            rules.ips.insert(format!("10.0.{i}"), Window::new());
        }
        run(&mut rules, &request("/a", 1.0, false), NOW);
        assert_eq!(rules.ips.len(), MAX_IPS);
        assert_eq!(rules.untracked, 1);
    }

    #[test]
    fn paths_are_cut_from_urls() {
        let mut r = request("/a/b?c=1#d", 1.0, false);
        assert_eq!(r.path(), "/a/b");
        r.url = Some("https://x.example:8443/p?q".into());
        assert_eq!(r.path(), "/p");
        r.url = None;
        assert_eq!(r.path(), "");
    }
}
