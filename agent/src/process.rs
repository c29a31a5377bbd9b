//! From a record's text to a record ready to ship: parse, id, enrich, flag, mask.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use owl_config::{InputConfig, MaskingRules};
use owl_model::{LogRecord, Masker};
use serde_json::{Map, Value};

use crate::fingerprint::Fingerprint;
use crate::metrics::Metrics;
use crate::multiline::Origin;
use owl_parse::Parser;

/// What was wrong with the bytes of a record before parsing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LineFlags {
    /// The record was longer than `max_line_bytes`; this was its length in bytes.
    pub truncated_from: Option<u64>,
    /// Invalid UTF-8 was replaced with U+FFFD.
    pub invalid_utf8: bool,
}

/// The fields an input adds to every record that lacks them.
#[derive(Debug, Clone)]
pub(crate) struct Enrichment {
    pub host: String,
    pub service: String,
    pub region: Option<String>,
    pub instance: String,
    /// The input named `instance` (else it is the host, and a pod's name is better).
    pub instance_named: bool,
    pub environment: Option<String>,
}

impl Enrichment {
    pub(crate) fn for_input(input: &InputConfig, host: &str, agent_region: &str) -> Enrichment {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Enrichment {
            host: host.to_string(),
            service: input.service.clone(),
            region: non_empty(&input.region).or_else(|| non_empty(agent_region)),
            instance: if input.instance.is_empty() {
                host.to_string()
            } else {
                input.instance.clone()
            },
            instance_named: !input.instance.is_empty(),
            environment: non_empty(&input.environment),
        }
    }

    /// What a syslog listener adds: its service for messages without an app name, region and
    /// environment; the agent's host for messages without a host.
    pub(crate) fn for_syslog(
        listener: &owl_config::SyslogConfig,
        host: &str,
        agent_region: &str,
    ) -> Enrichment {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Enrichment {
            host: host.to_string(),
            service: listener.service.clone(),
            region: non_empty(&listener.region).or_else(|| non_empty(agent_region)),
            instance: host.to_string(),
            instance_named: false,
            environment: non_empty(&listener.environment),
        }
    }

    /// Whether the input named the instance of its records.
    fn names_instance(&self) -> bool {
        self.instance_named
    }

    /// Fills what the record itself did not say (a record's own values win).
    fn apply(&self, record: &mut LogRecord) {
        if record.host.is_none() {
            record.host = Some(self.host.clone());
        }
        if record.service.name.is_empty() {
            record.service.name.clone_from(&self.service);
        }
        if record.service.region.is_none() {
            record.service.region.clone_from(&self.region);
        }
        if record.service.instance.is_none() {
            record.service.instance = Some(self.instance.clone());
        }
        if record.environment.is_none() {
            record.environment.clone_from(&self.environment);
        }
    }
}

/// Masking with a cheap pre-check: most records contain nothing a rule could match, and one
/// case-insensitive multi-literal scan (plus a digit-run count) per field tells so much faster
/// than running every rule.
pub(crate) struct Masking {
    masker: Masker,
    /// Every literal a rule needs (a word of every key, `bearer`, `eyJ`).
    literals: Option<aho_corasick::AhoCorasick>,
    /// Whether long digit runs (ID and card numbers) matter.
    digits: bool,
    /// Custom patterns can match anything: no pre-check then.
    always: bool,
    enabled: bool,
}

/// Shortest digit run (separators allowed) an ID or card number rule can match.
const MIN_DIGITS: usize = 13;

/// Whether `text` has a run of at least [`MIN_DIGITS`] digits, single spaces or dashes between
/// them allowed (the shape the ID and card rules look for).
fn has_digit_run(text: &[u8]) -> bool {
    let mut digits = 0;
    let mut last_sep = false;
    for &b in text {
        if b.is_ascii_digit() {
            digits += 1;
            last_sep = false;
            if digits >= MIN_DIGITS {
                return true;
            }
        } else if (b == b' ' || b == b'-') && digits > 0 && !last_sep {
            last_sep = true;
        } else {
            digits = 0;
            last_sep = false;
        }
    }
    false
}

impl Masking {
    pub(crate) fn new(rules: &MaskingRules) -> Result<Masking, owl_model::MaskError> {
        let masker = Masker::new(rules)?;
        // The masker names a word of every key it would mask (keys match by word, so
        // `privateKey=` and `x.api.key=` need no spelling of their own).
        let mut literals: Vec<String> = masker.key_literals().to_vec();
        if rules.bearer_tokens {
            literals.push("bearer".to_string());
        }
        if rules.jwt {
            literals.push("eyj".to_string());
        }
        literals.sort();
        literals.dedup();
        let literals = (!literals.is_empty()).then(|| {
            // A DFA: a few KiB for these few literals, and the fastest search per byte.
            aho_corasick::AhoCorasick::builder()
                .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                .ascii_case_insensitive(true)
                .build(&literals)
                .expect("a few short literals always build")
        });
        Ok(Masking {
            masker,
            literals,
            digits: rules.chinese_id || rules.card_numbers,
            always: !rules.patterns.is_empty(),
            enabled: rules.enabled,
        })
    }

    fn text_may_match(&self, text: &str) -> bool {
        self.always
            || self.literals.as_ref().is_some_and(|ac| ac.is_match(text))
            || (self.digits && has_digit_run(text.as_bytes()))
    }

    fn opt_may_match(&self, text: &Option<String>) -> bool {
        text.as_deref().is_some_and(|t| self.text_may_match(t))
    }

    fn value_may_match(&self, value: &Value) -> bool {
        match value {
            Value::String(s) => self.text_may_match(s),
            Value::Array(items) => items.iter().any(|v| self.value_may_match(v)),
            Value::Object(map) => self.map_may_match(map),
            _ => false,
        }
    }

    fn map_may_match(&self, map: &Map<String, Value>) -> bool {
        map.iter()
            .any(|(k, v)| self.masker.is_sensitive_key(k) || self.value_may_match(v))
    }

    /// Whether a rule could change the record (never `false` when one would).
    fn may_match(&self, record: &LogRecord) -> bool {
        if self.always {
            return true;
        }
        self.text_may_match(&record.message)
            || record
                .error
                .as_ref()
                .is_some_and(|e| self.opt_may_match(&e.message) || self.opt_may_match(&e.stack))
            || record.http.as_ref().is_some_and(|h| self.opt_may_match(&h.url))
            || record
                .client
                .as_ref()
                .is_some_and(|c| self.opt_may_match(&c.user_agent))
            || self.opt_may_match(&record.exception)
            || record
                .extra
                .as_ref()
                .is_some_and(|extra| self.map_may_match(extra))
    }

    /// Masks the record; returns whether anything changed.
    pub(crate) fn apply(&self, record: &mut LogRecord) -> bool {
        self.enabled && self.may_match(record) && self.masker.mask_record(record)
    }
}

/// Turns one input's texts into records.
pub(crate) struct Processor {
    parser: Parser,
    enrichment: Enrichment,
    masking: Arc<Masking>,
    metrics: Arc<Metrics>,
    /// Pod labels from the API server (`agent.kubernetes.api`).
    pods: Option<Arc<crate::kubernetes::api::PodCache>>,
}

impl Processor {
    pub(crate) fn new(
        parser: Parser,
        enrichment: Enrichment,
        masking: Arc<Masking>,
        metrics: Arc<Metrics>,
    ) -> Processor {
        Processor {
            parser,
            enrichment,
            masking,
            metrics,
            pods: None,
        }
    }

    /// Enriches records of pod files from the API server's labels too.
    pub(crate) fn with_pods(mut self, pods: Option<Arc<crate::kubernetes::api::PodCache>>) -> Processor {
        self.pods = pods;
        self
    }

    /// A record from the text that starts at byte `start` of file `fp`. A record in a runtime
    /// envelope has the runtime's time unless its text carries its own, and its stream and pod
    /// in `extra`.
    pub(crate) fn record(
        &self,
        text: &str,
        flags: LineFlags,
        fp: &Fingerprint,
        start: u64,
        now: DateTime<Utc>,
        origin: Option<&Origin>,
    ) -> LogRecord {
        let time = origin.and_then(|o| o.time).unwrap_or(now);
        let mut record = self.parse(text, time, None);
        // The id is derived from the record's position, so a re-read is recognised; an `id` the
        // application wrote stays in `extra`.
        record.id = LogRecord::derive_id(&fp.0, start);
        if let Some(origin) = origin {
            let extra = record.extra.get_or_insert_with(Map::new);
            if let Some(stream) = origin.stream {
                extra.insert("stream".to_string(), Value::from(stream.as_str()));
            }
            if let Some(pod) = &origin.pod {
                for (key, value) in &pod.fields {
                    extra.insert(key.clone(), value.clone());
                }
                if record.service.instance.is_none() && !self.enrichment.names_instance() {
                    record.service.instance = Some(pod.pod.clone());
                }
                if let Some(labels) = self.pods.as_ref().and_then(|cache| cache.lookup(pod)) {
                    for (key, value) in &labels.fields {
                        extra.entry(key.clone()).or_insert_with(|| value.clone());
                    }
                    if record.service.name.is_empty()
                        && let Some(service) = &labels.service
                    {
                        record.service.name.clone_from(service);
                    }
                    if record.environment.is_none() {
                        record.environment.clone_from(&labels.environment);
                    }
                    if record.service.region.is_none() {
                        record.service.region.clone_from(&labels.region);
                    }
                }
            }
        }
        self.complete(record, flags)
    }

    /// Parses a text with a default time and level (a syslog header's), counting fallbacks.
    pub(crate) fn parse(
        &self,
        text: &str,
        time: DateTime<Utc>,
        level: Option<owl_model::Level>,
    ) -> LogRecord {
        let parsed = self.parser.parse_with(text, time, level);
        if !parsed.matched {
            Metrics::add(&self.metrics.parse_fallbacks, 1);
        }
        parsed.record
    }

    /// The last steps of every record: the input's enrichment, the flags, masking.
    pub(crate) fn complete(&self, mut record: LogRecord, flags: LineFlags) -> LogRecord {
        self.enrichment.apply(&mut record);
        if let Some(bytes) = flags.truncated_from {
            let extra = record.extra.get_or_insert_with(Map::new);
            extra.insert("owl_truncated".to_string(), Value::Bool(true));
            extra.insert("owl_line_bytes".to_string(), Value::from(bytes));
        }
        if flags.invalid_utf8 {
            record
                .extra
                .get_or_insert_with(Map::new)
                .insert("owl_invalid_utf8".to_string(), Value::Bool(true));
        }
        if self.masking.apply(&mut record) {
            Metrics::add(&self.metrics.records_masked, 1);
        }
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use owl_config::ParserKind;

    fn processor(rules: &MaskingRules) -> Processor {
        let input = InputConfig {
            service: "Form".into(),
            region: "CN".into(),
            ..InputConfig::default()
        };
        Processor::new(
            Parser::new(ParserKind::Auto, "").unwrap(),
            Enrichment::for_input(&input, "node-1", "US"),
            Arc::new(Masking::new(rules).unwrap()),
            Arc::new(Metrics::default()),
        )
    }

    #[test]
    fn ids_enrichment_and_flags() {
        let p = processor(&MaskingRules::default());
        let fp = Fingerprint([1; 16]);
        let flags = LineFlags {
            truncated_from: Some(300_000),
            invalid_utf8: true,
        };
        let r = p.record(
            r#"{"msg":"hi","id":"app-1","service":"billing"}"#,
            flags,
            &fp,
            10,
            Utc::now(),
            None,
        );
        assert_eq!(r.id, LogRecord::derive_id(&fp.0, 10));
        assert_eq!(r.service.name, "billing");
        assert_eq!(r.service.region.as_deref(), Some("CN"));
        assert_eq!(r.service.instance.as_deref(), Some("node-1"));
        assert_eq!(r.host.as_deref(), Some("node-1"));
        assert_eq!(r.environment.as_deref(), Some("production"));
        let extra = r.extra.unwrap();
        assert_eq!(extra["id"], "app-1");
        assert_eq!(extra["owl_truncated"], true);
        assert_eq!(extra["owl_line_bytes"], 300_000);
        assert_eq!(extra["owl_invalid_utf8"], true);
        let plain = p.record("hello", LineFlags::default(), &fp, 0, Utc::now(), None);
        assert_eq!(plain.service.name, "Form");
    }

    #[test]
    fn masks_every_rule_and_the_precheck_never_hides_a_match() {
        let p = processor(&MaskingRules::default());
        let fp = Fingerprint([1; 16]);
        let jwt =
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        let cases = [
            "login password=hunter2".to_string(),
            "Authorization: Bearer abcdefghijklmnop".to_string(),
            format!("token {jwt}"),
            "id 110101199003074514".to_string(),
            "card 4111 1111 1111 1111".to_string(),
            r#"{"msg":"x","api_key":"k-1"}"#.to_string(),
            r#"{"msg":"x","nested":{"Cookie":"sid=1"}}"#.to_string(),
            r#"{"msg":"p\u0061ssword=abc"}"#.to_string(),
            r#"{"msg":"ok","error":{"message":"secret=s3"}}"#.to_string(),
            // Keys match by word: camelCase and dotted spellings pass the pre-check too.
            "config privateKey=k-1 loaded".to_string(),
            "x.api.key=k-1".to_string(),
            r#"{"msg":"reset","newPassword":"hunter2"}"#.to_string(),
            "db_password=hunter2".to_string(),
        ];
        for case in cases {
            let r = p.record(&case, LineFlags::default(), &fp, 0, Utc::now(), None);
            let json = serde_json::to_string(&r).unwrap();
            assert!(json.contains(owl_model::REDACTED), "{case} -> {json}");
            for secret in [
                "hunter2",
                "abcdefghijklmnop",
                jwt,
                "110101199003074514",
                "4111 1111",
                "k-1",
                "sid=1",
                "=abc",
                "s3\"",
            ] {
                assert!(!json.contains(secret), "{secret} leaked in {json}");
            }
        }
        let clean = p.record(
            "order 42 shipped in 1733580000123 ms",
            LineFlags::default(),
            &fp,
            0,
            Utc::now(),
            None,
        );
        assert!(
            !serde_json::to_string(&clean)
                .unwrap()
                .contains(owl_model::REDACTED)
        );
    }

    #[test]
    fn custom_patterns_and_disabled_masking() {
        let rules = MaskingRules {
            patterns: vec![r"EMP-\d{4}".into()],
            ..MaskingRules::default()
        };
        let r = processor(&rules).record(
            "by EMP-0042",
            LineFlags::default(),
            &Fingerprint([0; 16]),
            0,
            Utc::now(),
            None,
        );
        assert_eq!(r.message, "by ***REDACTED***");
        let rules = MaskingRules {
            enabled: false,
            ..MaskingRules::default()
        };
        let r = processor(&rules).record(
            "password=x",
            LineFlags::default(),
            &Fingerprint([0; 16]),
            0,
            Utc::now(),
            None,
        );
        assert_eq!(r.message, "password=x");
    }

    #[test]
    fn digit_runs_like_the_rules_see_them() {
        assert!(has_digit_run(b"id 110101199003074514"));
        assert!(has_digit_run(b"card 4111 1111 1111 1111"));
        assert!(has_digit_run(b"card 4111-1111-1111-1111"));
        assert!(!has_digit_run(b"order 123456789012 ok"));
        assert!(!has_digit_run(b"4111  1111 1111 1111"));
        assert!(!has_digit_run(b"1-2-3"));
    }

    proptest::proptest! {
        #[test]
        fn the_precheck_never_hides_a_match(text in "(?i)([a-z0-9 =:_-]|password|api-key|x-api_key|bearer|eyJ|4111 1111|11010519491231002X){0,12}") {
            let masking = Masking::new(&MaskingRules::default()).unwrap();
            let masked = masking.masker.mask_text(&text);
            if masked != text {
                proptest::prop_assert!(masking.text_may_match(&text), "{}", text);
            }
        }
    }

    #[test]
    fn runtime_time_stream_and_pod_complete_the_record() {
        let p = processor(&MaskingRules::default());
        let fp = Fingerprint([1; 16]);
        let pod =
            crate::kubernetes::PodInfo::of(std::path::Path::new("/var/log/pods/shop_web-1_u1/nginx/3.log"))
                .unwrap();
        let origin = Origin {
            time: chrono::DateTime::from_timestamp(1_765_103_400, 0),
            stream: Some(owl_parse::runtime::Stream::Stderr),
            pod: Some(Arc::new(pod)),
        };
        let r = p.record(
            "upstream timed out",
            LineFlags::default(),
            &fp,
            0,
            Utc::now(),
            Some(&origin),
        );
        assert_eq!(r.timestamp, origin.time.unwrap());
        let extra = r.extra.as_ref().unwrap();
        assert_eq!(extra["stream"], "stderr");
        assert_eq!(extra["kubernetes.namespace"], "shop");
        assert_eq!(extra["kubernetes.restart_count"], 3);
        assert_eq!(r.service.instance.as_deref(), Some("web-1"));
        // Content with its own time keeps it.
        let own = p.record(
            r#"{"@timestamp":"2025-01-01T00:00:00Z","message":"x"}"#,
            LineFlags::default(),
            &fp,
            10,
            Utc::now(),
            Some(&origin),
        );
        assert_eq!(own.timestamp.timestamp(), 1_735_689_600);
    }
}
