//! The ingest policy: the settings compiled into the per-record decision the collector applies.
//!
//! A record goes through these steps, first match wins:
//!
//! 1. below `level`: dropped ([`Verdict::BelowLevel`]);
//! 2. sampling off: kept;
//! 3. its level is in `alwaysLog.levels`, or its request path matches `alwaysLog.paths`: kept;
//! 4. its request path matches `neverLog.paths`: dropped ([`Verdict::NeverLog`]);
//! 5. dynamic sampling: kept with probability `rate(qps)` ([`Verdict::Sampled`] otherwise), where
//!    `qps` is the rate of records reaching this step and `rate(qps)` is `maxSampleRate` up to
//!    `qpsThreshold` and `maxSampleRate * qpsThreshold / qps` above it, never below
//!    `minSampleRate`.
//!
//! The sampling draw is a hash of the trace id (or of the record id when there is none), not a
//! random number: every record of one trace gets the same draw, so at a given rate a trace is kept
//! or dropped whole and the trace view never shows half a request. Path rules look at the path of
//! `http.url` (query string and scheme/host removed); records without a URL match no path rule.

use globset::{Glob, GlobSet, GlobSetBuilder};
use owl_model::{Level, LogRecord};

use crate::model::LogConfig;

/// What the policy decided for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Stored.
    Keep,
    /// Dropped: below the minimum level.
    BelowLevel,
    /// Dropped: the path is in `neverLog`.
    NeverLog,
    /// Dropped by dynamic sampling.
    Sampled,
}

impl Verdict {
    /// Whether the record is stored.
    pub fn keeps(self) -> bool {
        self == Verdict::Keep
    }
}

#[derive(Debug, Clone)]
struct SamplingPolicy {
    always_levels: Vec<Level>,
    always_paths: GlobSet,
    never_paths: GlobSet,
    qps_threshold: f64,
    min_rate: f64,
    max_rate: f64,
}

/// [`LogConfig`] compiled for fast per-record decisions.
#[derive(Debug, Clone)]
pub struct IngestPolicy {
    min_level: Level,
    sampling: Option<SamplingPolicy>,
}

fn glob_set(patterns: &[String]) -> GlobSet {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        // Patterns are validated before they are stored (`LogConfig::validate`); one that still
        // fails (written by hand into the database) is skipped rather than stopping ingest.
        match Glob::new(pattern) {
            Ok(glob) => {
                builder.add(glob);
            }
            Err(error) => tracing::warn!(%pattern, %error, "invalid path pattern in the log config skipped"),
        }
    }
    builder.build().unwrap_or_else(|error| {
        tracing::warn!(%error, "path patterns of the log config could not be compiled; none apply");
        GlobSet::empty()
    })
}

impl IngestPolicy {
    /// Compiles the settings.
    pub fn compile(config: &LogConfig) -> IngestPolicy {
        let sampling = config.sampling.enabled.then(|| {
            let rules = &config.sampling.rules;
            SamplingPolicy {
                always_levels: rules.always_log.levels.clone(),
                always_paths: glob_set(&rules.always_log.paths),
                never_paths: glob_set(&rules.never_log.paths),
                qps_threshold: rules.dynamic.qps_threshold.max(1) as f64,
                min_rate: rules.dynamic.min_sample_rate.clamp(0.0, 1.0),
                max_rate: rules.dynamic.max_sample_rate.clamp(0.0, 1.0),
            }
        });
        IngestPolicy {
            min_level: config.level,
            sampling,
        }
    }

    /// The minimum level stored.
    pub fn min_level(&self) -> Level {
        self.min_level
    }

    /// Decides for `record`; `qps` is asked only when the record reaches dynamic sampling, and is
    /// expected to count it.
    pub fn decide(&self, record: &LogRecord, qps: impl FnOnce() -> f64) -> Verdict {
        if record.level < self.min_level {
            return Verdict::BelowLevel;
        }
        let Some(sampling) = &self.sampling else {
            return Verdict::Keep;
        };
        let path = request_path(record);
        if sampling.always_levels.contains(&record.level)
            || path.is_some_and(|p| sampling.always_paths.is_match(p))
        {
            return Verdict::Keep;
        }
        if path.is_some_and(|p| sampling.never_paths.is_match(p)) {
            return Verdict::NeverLog;
        }
        let rate = sampling.rate(qps());
        if rate >= 1.0 || draw(record) < rate {
            Verdict::Keep
        } else {
            Verdict::Sampled
        }
    }

    /// The share dynamic sampling keeps at `qps` records per second (1 without sampling).
    pub fn sample_rate(&self, qps: f64) -> f64 {
        self.sampling.as_ref().map_or(1.0, |s| s.rate(qps))
    }
}

impl SamplingPolicy {
    fn rate(&self, qps: f64) -> f64 {
        if qps <= self.qps_threshold {
            return self.max_rate;
        }
        (self.max_rate * self.qps_threshold / qps).clamp(self.min_rate.min(self.max_rate), self.max_rate)
    }
}

/// The path of a record's request URL, without scheme, host, query or fragment.
pub fn request_path(record: &LogRecord) -> Option<&str> {
    Some(owl_model::url_path(record.http.as_ref()?.url.as_deref()?))
}

/// A uniform draw in `[0, 1)` fixed by the record's trace id, or its id.
fn draw(record: &LogRecord) -> f64 {
    let key = record.trace_id().unwrap_or(if record.id.is_empty() {
        &record.message
    } else {
        &record.id
    });
    let hash = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LogConfigUpdate;
    use serde_json::json;

    fn record(level: &str, url: Option<&str>, id: &str) -> LogRecord {
        let mut value =
            json!({"@timestamp": "2025-12-07T10:30:00Z", "level": level, "message": "m", "id": id});
        if let Some(url) = url {
            value["http"] = json!({"url": url, "method": "GET", "status_code": 200});
        }
        LogRecord::from_json_value(value, chrono::Utc::now()).unwrap()
    }

    fn policy(update: serde_json::Value) -> IngestPolicy {
        let update: LogConfigUpdate = serde_json::from_value(update).unwrap();
        IngestPolicy::compile(&LogConfig::default().apply(&update).unwrap())
    }

    #[test]
    fn level_is_a_floor() {
        let policy = policy(json!({"level": "WARN"}));
        assert_eq!(
            policy.decide(&record("INFO", None, "a"), || 0.0),
            Verdict::BelowLevel
        );
        assert_eq!(policy.decide(&record("WARN", None, "a"), || 0.0), Verdict::Keep);
        assert_eq!(
            policy.decide(&record("ERROR", Some("/health"), "a"), || 0.0),
            Verdict::Keep,
            "sampling is off"
        );
    }

    #[test]
    fn sampling_rules_apply_in_order() {
        let policy = policy(json!({"level": "INFO", "sampling": {"enabled": true}}));
        assert_eq!(
            policy.decide(&record("INFO", Some("/health"), "a"), || 0.0),
            Verdict::NeverLog
        );
        assert_eq!(
            policy.decide(&record("INFO", Some("/health?probe=1"), "a"), || 0.0),
            Verdict::NeverLog
        );
        assert_eq!(
            policy.decide(&record("INFO", Some("http://h:8080/metrics"), "a"), || 0.0),
            Verdict::NeverLog
        );
        assert_eq!(
            policy.decide(&record("ERROR", Some("/health"), "a"), || 0.0),
            Verdict::Keep,
            "alwaysLog level"
        );
        assert_eq!(
            policy.decide(&record("INFO", Some("/healthz"), "a"), || 0.0),
            Verdict::Keep
        );
        assert_eq!(
            policy.decide(&record("DEBUG", Some("/api/v1/auth/login"), "a"), || 0.0),
            Verdict::BelowLevel
        );
    }

    #[test]
    fn dynamic_sampling_keeps_the_configured_share_and_whole_traces() {
        let policy = policy(json!({"sampling": {"enabled": true, "rules": {
            "alwaysLog": {"levels": [], "paths": ["/api/v1/auth/*"]},
            "dynamic": {"qpsThreshold": 100, "minSampleRate": 0.1, "maxSampleRate": 1.0}
        }}}));
        assert_eq!(policy.sample_rate(50.0), 1.0);
        assert_eq!(policy.sample_rate(400.0), 0.25);
        assert_eq!(policy.sample_rate(1_000_000.0), 0.1);
        let kept = (0..10_000)
            .filter(|i| {
                policy
                    .decide(&record("INFO", Some("/api/v1/forms"), &format!("id-{i}")), || {
                        400.0
                    })
                    .keeps()
            })
            .count();
        assert!(
            (2_200..2_800).contains(&kept),
            "kept {kept} of 10000 at a 25% rate"
        );
        let always = (0..100)
            .filter(|i| {
                policy
                    .decide(&record("INFO", Some("/api/v1/auth/x"), &i.to_string()), || 1e9)
                    .keeps()
            })
            .count();
        assert_eq!(always, 100);
        let traced = |id: &str| {
            let mut r = record("INFO", Some("/api/v1/forms"), id);
            r.trace = Some(owl_model::Trace {
                id: "CN-1-abc".into(),
                ..Default::default()
            });
            policy.decide(&r, || 400.0)
        };
        assert!(
            (0..50).all(|i| traced(&i.to_string()) == traced("first")),
            "one draw per trace"
        );
    }

    #[test]
    fn request_paths_drop_host_and_query() {
        let path = |url: &str| request_path(&record("INFO", Some(url), "a")).map(str::to_string);
        assert_eq!(path("/a/b?c=d").as_deref(), Some("/a/b"));
        assert_eq!(path("https://x.y/a#frag").as_deref(), Some("/a"));
        assert_eq!(path("https://x.y").as_deref(), Some("/"));
        assert_eq!(request_path(&record("INFO", None, "a")), None);
    }
}
