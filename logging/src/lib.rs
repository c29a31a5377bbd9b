//! Owl's own logs, the same for every binary (`owl`, `owl-agent`, the collector process).
//!
//! `log.level` is a tracing filter (`RUST_LOG` wins over it); `log.format` (`OWL_LOG_FORMAT`) is
//! `text` for people or `json` for machines. A JSON line is one flat object: `timestamp`, `level`,
//! `message`, `target`, then the fields of every span the event is in (outermost first), then the
//! event's own fields. The HTTP servers open a span per request with `request_id`, `trace_id`,
//! `route` and `user`, and the collector one per ingest batch, so every line carries those ids at
//! the top level, where Owl's own JSON parser finds a trace id: Owl's logs can be shipped to Owl and
//! a request found there by the `X-Trace-Id` its client was answered.

use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{SecondsFormat, Utc};
use owl_config::{LogConfig, LogFormat};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber, span};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter of `config`: `RUST_LOG` when set and valid, else `log.level`, else `info`.
pub fn filter(config: &LogConfig) -> EnvFilter {
    EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs Owl's subscriber, writing to stderr, as the process's default. A second call (tests
/// that start several roles in one process) leaves the first in place.
pub fn init(config: &LogConfig) {
    use std::io::IsTerminal;
    let colours = std::io::stderr().is_terminal();
    let _ = build(filter(config), config.format, std::io::stderr, colours).try_init();
}

/// A subscriber writing `format` to `writer` without terminal colours: a file, a pipe, or a test
/// that reads the lines.
pub fn subscriber<W>(filter: EnvFilter, format: LogFormat, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    build(filter, format, writer, false)
}

fn build<W>(
    filter: EnvFilter,
    format: LogFormat,
    writer: W,
    colours: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(colours);
    let filter = OwlSpans(filter);
    match format {
        LogFormat::Text => Box::new(tracing_subscriber::registry().with(layer.with_filter(filter))),
        LogFormat::Json => Box::new(
            tracing_subscriber::registry().with(
                layer
                    .fmt_fields(JsonFields::new())
                    .event_format(FlatJson)
                    .with_filter(filter),
            ),
        ),
    }
}

/// The configured filter for events, with Owl's own spans always on: at `log.level = "warn"` or
/// `owl_collector=debug` a line must still carry the ids of its request and batch, which live on
/// spans of other targets and of level INFO. A span alone writes nothing.
struct OwlSpans(EnvFilter);

impl OwlSpans {
    fn owl_span(meta: &Metadata<'_>) -> bool {
        meta.is_span() && meta.target().starts_with("owl_")
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Filter<S> for OwlSpans {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        OwlSpans::owl_span(meta) || Filter::<S>::enabled(&self.0, meta, cx)
    }
    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if OwlSpans::owl_span(meta) {
            Interest::always()
        } else {
            Filter::<S>::callsite_enabled(&self.0, meta)
        }
    }
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Filter::<S>::max_level_hint(&self.0).map(|hint| hint.max(LevelFilter::INFO))
    }
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, cx: Context<'_, S>) {
        Filter::<S>::on_new_span(&self.0, attrs, id, cx)
    }
    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, cx: Context<'_, S>) {
        Filter::<S>::on_record(&self.0, id, values, cx)
    }
    fn on_enter(&self, id: &span::Id, cx: Context<'_, S>) {
        Filter::<S>::on_enter(&self.0, id, cx)
    }
    fn on_exit(&self, id: &span::Id, cx: Context<'_, S>) {
        Filter::<S>::on_exit(&self.0, id, cx)
    }
    fn on_close(&self, id: span::Id, cx: Context<'_, S>) {
        Filter::<S>::on_close(&self.0, id, cx)
    }
}

/// The JSON line format: one flat object, span fields beside the event's (see the crate docs).
/// Span fields are read from what [`JsonFields`] recorded, so pair the two.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut own = Map::new();
        event.record(&mut JsonVisitor(&mut own));

        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true).into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        if let Some(message) = own.remove("message") {
            line.insert("message".into(), message);
        }
        line.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            let mut names = Vec::new();
            for span in scope.from_root() {
                names.push(span.name());
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    line.extend(fields);
                }
            }
            line.insert("spans".into(), names.join(":").into());
        }
        line.extend(own);
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Records an event's fields as JSON values.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }
}

/// Lines logged into memory, for tests that check what Owl logs: [`Captured::subscriber`] writes
/// to it, [`Captured::json_lines`] reads the lines back.
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// A subscriber with the `directives` filter writing `format` lines here.
    pub fn subscriber(&self, directives: &str, format: LogFormat) -> Box<dyn Subscriber + Send + Sync> {
        let writer = self.clone();
        subscriber(EnvFilter::new(directives), format, move || writer.clone())
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Every line written so far, each parsed as JSON (a line that is not JSON is skipped).
    pub fn json_lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(directives: &str, format: LogFormat, body: impl FnOnce()) -> String {
        let lines = Captured::default();
        tracing::subscriber::with_default(lines.subscriber(directives, format), body);
        lines.text()
    }

    #[test]
    fn a_json_line_is_flat_with_the_fields_of_its_spans() {
        let text = capture("debug", LogFormat::Json, || {
            let request = tracing::info_span!(
                "request",
                request_id = "1733580000123-abc123",
                trace_id = "CN-1733580000000-a1b2c3d4",
                user = tracing::field::Empty
            );
            let _request = request.enter();
            // Recorded after the span opened, as the authentication middleware does.
            request.record("user", "admin");
            let batch = tracing::info_span!("ingest_batch", records = 3_u64);
            let _batch = batch.enter();
            tracing::warn!(status = 503_u64, ok = false, ratio = 0.5, "index is behind");
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "index is behind");
        assert_eq!(line["trace_id"], "CN-1733580000000-a1b2c3d4");
        assert_eq!(line["request_id"], "1733580000123-abc123");
        assert_eq!(line["user"], "admin");
        assert_eq!(line["records"], 3);
        assert_eq!(line["status"], 503);
        assert_eq!(line["ok"], false);
        assert_eq!(line["ratio"], 0.5);
        assert_eq!(line["spans"], "request:ingest_batch");
        assert_eq!(line["target"], module_path!());
        let ts = line["timestamp"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
        // The keys a reader looks for first come first.
        let keys: Vec<&String> = line.as_object().unwrap().keys().take(3).collect();
        assert_eq!(keys, ["timestamp", "level", "message"]);
    }

    #[test]
    fn a_line_outside_any_span_has_only_its_own_fields() {
        let text = capture("debug", LogFormat::Json, || {
            tracing::info!(path = "/x", "started")
        });
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["message"], "started");
        assert_eq!(line["path"], "/x");
        assert!(line.get("spans").is_none(), "{line}");
    }

    #[test]
    fn text_lines_name_the_span_and_its_fields() {
        let text = capture("debug", LogFormat::Text, || {
            let span = tracing::info_span!("request", trace_id = "CN-1-a");
            span.in_scope(|| tracing::info!("hello"));
        });
        assert!(
            text.contains("request{trace_id=\"CN-1-a\"}") && text.contains("hello"),
            "{text}"
        );
    }

    #[test]
    fn a_narrow_filter_keeps_lines_out_but_not_the_ids_of_their_spans() {
        let text = capture("warn", LogFormat::Json, || {
            // As `owl_http` opens it: another target, level INFO, under a `warn` filter.
            let span = tracing::info_span!(target: "owl_http::trace", "request", trace_id = "CN-1-b");
            span.in_scope(|| {
                tracing::info!("quiet");
                tracing::warn!("loud");
            });
        });
        assert!(!text.contains("quiet"), "{text}");
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["message"], "loud");
        assert_eq!(line["trace_id"], "CN-1-b");
    }
}
