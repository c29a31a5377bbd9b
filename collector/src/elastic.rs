//! Elasticsearch's bulk API as the log shippers use it (Filebeat, Fluent Bit's `es` output,
//! Vector's `elasticsearch` sink, Logstash, elasticsearch-py): the NDJSON action/source pairs of a
//! `_bulk` body, and ECS documents as Owl records.
//!
//! `index` and `create` are stored; `update` and `delete` are answered per item with an error
//! (Owl's records are append-only), never dropped in silence. A document with an `_id` gets a
//! record id derived from its index and `_id`, so a re-sent document is a duplicate: `index`
//! answers it `200 updated` as Elasticsearch does, `create` a `409` version conflict.
//!
//! ECS fields, nested (`{"log": {"level": ...}}`) or dotted (`"log.level"`), map to the record:
//!
//! | ECS | Owl record |
//! | --- | --- |
//! | `@timestamp` (or `timestamp`; ISO 8601 or epoch milliseconds) | `@timestamp` |
//! | `message` (or Fluent Bit's `log`, or `msg`) | `message` |
//! | `log.level` (or `level`) | `level` |
//! | `service.name`, else the index (`logs-<dataset>-<namespace>`: the dataset) | `service.name` |
//! | `service.environment`, `cloud.region`, `host.name` (or `host.hostname`) | `environment`, `service.region`, `host` |
//! | `trace.id`, `span.id` | `trace.id`, `trace.span_id` |
//! | `http.request.method`, `url.path` (else `url.original`, `url.full`), `http.response.status_code`, `event.duration` (ns) | `http.method`, `http.url`, `http.status_code`, `http.duration_ms` |
//! | `error.type`, `error.message`, `error.stack_trace`, `error.code` | `error.type`, `error.message`, `error.stack`, `error.code` |
//! | `client.ip` (or `source.ip`), `user_agent.original` | `client.ip`, `client.user_agent` |
//! | `user.id`, `user.name` | `user.id`, `user.name` |
//! | `log.logger`, `log.origin.function`, `log.origin.file.name`, `log.origin.file.line`, `process.pid`, `process.thread.id` | `name`, `function`, `file`, `line`, `process`, `thread` |
//! | any other field | `extra`, under its dotted name |

use chrono::{DateTime, Utc};
use owl_model::{Client, ErrorInfo, Http, IngestItem, Level, LogRecord, Service, Trace, User};
use serde_json::{Map, Value};

use crate::ingest::{BatchBuilder, IngestError};

/// A bulk operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Index,
    Create,
    Update,
    Delete,
}

impl Op {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Op::Index => "index",
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// Why one item was refused: its status, Elasticsearch's error type and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ItemError {
    pub status: u16,
    pub kind: &'static str,
    pub reason: String,
}

/// One action of a bulk request, as it will be answered.
#[derive(Debug, Clone)]
pub(crate) struct BulkItem {
    pub op: Op,
    pub index: String,
    /// The `_id` given, or the id the record got.
    pub id: String,
    /// 1-based, in the request's order.
    pub position: usize,
    pub error: Option<ItemError>,
}

/// Parses a bulk body into `builder` (documents to store) and the items to answer.
/// `default_index` is the index of `/{index}/_bulk`.
pub(crate) fn parse_bulk(
    body: &[u8],
    default_index: Option<&str>,
    now: DateTime<Utc>,
    builder: &mut BatchBuilder<'_>,
) -> Result<Vec<BulkItem>, IngestError> {
    let mut lines = body
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(n, line)| (n + 1, line.strip_suffix(b"\r").unwrap_or(line)))
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace));
    let mut items = Vec::new();
    while let Some((line_no, action)) = lines.next() {
        let position = items.len() + 1;
        let (op, meta) = action_of(action, line_no)?;
        let index = meta
            .get("_index")
            .and_then(Value::as_str)
            .or(default_index)
            .unwrap_or("")
            .to_string();
        let given_id = match meta.get("_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                return Err(IngestError::BadMessage(format!(
                    "action line {line_no}: `_id` must be a string, not {other}"
                )));
            }
        };
        let source = if op == Op::Delete {
            None
        } else {
            let Some((_, source)) = lines.next() else {
                return Err(IngestError::BadMessage(format!(
                    "action line {line_no}: the `{}` action has no source line after it",
                    op.as_str()
                )));
            };
            Some(source)
        };
        let mut item = BulkItem {
            op,
            index: index.clone(),
            id: given_id.clone().unwrap_or_default(),
            position,
            error: None,
        };
        if matches!(op, Op::Update | Op::Delete) {
            item.error = Some(ItemError {
                status: 400,
                kind: "illegal_argument_exception",
                reason: format!(
                    "Owl stores log records append-only: `{}` is not supported; send `index` or `create`",
                    op.as_str()
                ),
            });
        } else if index.is_empty() {
            item.error = Some(ItemError {
                status: 400,
                kind: "action_request_validation_exception",
                reason: "Validation Failed: 1: index is missing;".into(),
            });
        } else if given_id
            .as_ref()
            .is_some_and(|id| id.is_empty() || id.len() > 512)
        {
            item.error = Some(ItemError {
                status: 400,
                kind: "illegal_argument_exception",
                reason: "`_id` must be 1 to 512 bytes long".into(),
            });
        } else {
            match document(source.unwrap_or_default(), &index, now) {
                Ok(mut record) => {
                    record.id = match &given_id {
                        Some(id) => LogRecord::derive_id(format!("es\0{index}\0{id}").as_bytes(), 0),
                        None => LogRecord::new_id(),
                    };
                    if given_id.is_none() {
                        item.id = record.id.clone();
                    }
                    builder.push(position, IngestItem::Log(Box::new(record)));
                }
                Err(reason) => {
                    item.error = Some(ItemError {
                        status: 400,
                        kind: "document_parsing_exception",
                        reason,
                    });
                }
            }
        }
        if let Some(error) = &item.error {
            builder.reject(position, error.reason.clone());
        }
        items.push(item);
    }
    if items.is_empty() {
        return Err(IngestError::BadMessage(
            "Validation Failed: 1: no requests added;".into(),
        ));
    }
    Ok(items)
}

/// The operation and metadata of an action line.
fn action_of(line: &[u8], line_no: usize) -> Result<(Op, Map<String, Value>), IngestError> {
    let malformed =
        |what: String| IngestError::BadMessage(format!("Malformed action/metadata line [{line_no}], {what}"));
    let value: Value =
        serde_json::from_slice(line).map_err(|e| malformed(format!("expected a JSON object: {e}")))?;
    let Value::Object(object) = value else {
        return Err(malformed("expected a JSON object".into()));
    };
    let mut entries = object.into_iter();
    let (Some((name, meta)), None) = (entries.next(), entries.next()) else {
        return Err(malformed(
            "expected exactly one of [create, delete, index, update]".into(),
        ));
    };
    let op = match name.as_str() {
        "index" => Op::Index,
        "create" => Op::Create,
        "update" => Op::Update,
        "delete" => Op::Delete,
        other => {
            return Err(malformed(format!(
                "expected field [create, delete, index, update] but found [{}]",
                other.chars().take(64).collect::<String>()
            )));
        }
    };
    match meta {
        Value::Object(meta) => Ok((op, meta)),
        _ => Err(malformed(format!("the `{name}` metadata must be an object"))),
    }
}

/// The service of a document that names none: the index, or a data stream's dataset.
fn service_of_index(index: &str) -> String {
    let parts: Vec<&str> = index.split('-').collect();
    if parts.len() >= 3 && matches!(parts[0], "logs" | "traces" | "metrics") {
        return parts[1..parts.len() - 1].join("-");
    }
    index.to_string()
}

/// An ECS document as a record.
pub(crate) fn document(source: &[u8], index: &str, now: DateTime<Utc>) -> Result<LogRecord, String> {
    let value: Value =
        serde_json::from_slice(source).map_err(|e| format!("failed to parse the document: {e}"))?;
    let Value::Object(object) = value else {
        return Err("the document is not a JSON object".into());
    };
    let mut fields = Map::new();
    flatten("", object, &mut fields);
    let mut take = |key: &str| fields.remove(key);
    let mut text = |keys: &[&str]| -> Option<String> {
        let mut found = None;
        for key in keys {
            if let Some(value) = take(key) {
                let value = match value {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                found.get_or_insert(value);
            }
        }
        found
    };
    let timestamp = match text(&["@timestamp", "timestamp"]) {
        None => now,
        Some(at) => owl_model::parse_timestamp(&at)
            .or_else(|| at.parse::<f64>().ok().and_then(owl_model::timestamp_from_epoch))
            .ok_or_else(|| format!("failed to parse field [@timestamp] of type [date]: `{at}`"))?,
    };
    let message = text(&["message", "log", "msg"]).unwrap_or_default();
    let level = text(&["log.level", "level"])
        .and_then(|l| Level::parse(&l))
        .unwrap_or(Level::Info);
    let service = Service {
        name: text(&["service.name"]).unwrap_or_else(|| service_of_index(index)),
        region: text(&["cloud.region"]),
        instance: text(&["service.node.name"]),
    };
    let environment = text(&["service.environment"]);
    let host = text(&["host.name", "host.hostname"]);
    let trace_id = text(&["trace.id"]);
    let span_id = text(&["span.id"]);
    let number = |value: Option<String>| value.and_then(|v| v.trim().parse::<f64>().ok());
    let mut http = Http {
        method: text(&["http.request.method"]),
        url: text(&["url.path", "url.original", "url.full"]),
        status_code: number(text(&["http.response.status_code"]))
            .filter(|c| (0.0..=999.0).contains(c))
            .map(|c| c as u16),
        ..Http::default()
    };
    let has_http = http != Http::default();
    if has_http {
        http.duration_ms = number(text(&["event.duration"])).map(|ns| ns / 1e6);
    }
    let error = ErrorInfo {
        error_type: text(&["error.type"]),
        message: text(&["error.message"]),
        code: text(&["error.code"]),
        stack: text(&["error.stack_trace"]),
    };
    let user = User {
        id: text(&["user.id"]),
        name: text(&["user.name"]),
    };
    let client = Client {
        ip: text(&["client.ip", "source.ip"]),
        user_agent: text(&["user_agent.original"]),
    };
    let logger = text(&["log.logger"]);
    let function = text(&["log.origin.function"]);
    let file = text(&["log.origin.file.name"]);
    let line = number(text(&["log.origin.file.line"]))
        .filter(|n| *n >= 0.0)
        .map(|n| n as u64);
    let process = number(text(&["process.pid"]))
        .filter(|n| *n >= 0.0)
        .map(|n| n as u64);
    let thread = number(text(&["process.thread.id"]))
        .filter(|n| *n >= 0.0)
        .map(|n| n as u64);
    let mut record = LogRecord {
        timestamp,
        level,
        message,
        host,
        environment,
        trace: trace_id.map(|id| Trace {
            id,
            span_id,
            ..Trace::default()
        }),
        http: has_http.then_some(http),
        user: (user != User::default()).then_some(user),
        client: (client != Client::default()).then_some(client),
        service,
        error: (error != ErrorInfo::default()).then_some(error),
        logger,
        function,
        file,
        line,
        process,
        thread,
        extra: (!fields.is_empty()).then_some(fields),
        ..LogRecord::default()
    };
    record.kind = record.classify();
    Ok(record)
}

/// `{"a": {"b": 1}}` as `{"a.b": 1}`; arrays and scalars are leaves, nulls are dropped.
fn flatten(prefix: &str, object: Map<String, Value>, into: &mut Map<String, Value>) {
    for (key, value) in object {
        let key = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) if !inner.is_empty() => flatten(&key, inner, into),
            Value::Null => {}
            other => {
                into.insert(key, other);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_documents_map_nested_or_dotted() {
        let now = Utc::now();
        let nested = br#"{"@timestamp":"2025-12-07T10:30:00.123Z","message":"GET /api 500","log":{"level":"error","logger":"web"},
            "service":{"name":"crm-api","environment":"prod"},"trace":{"id":"abc"},"span":{"id":"s1"},
            "http":{"request":{"method":"GET"},"response":{"status_code":500}},"url":{"path":"/api"},
            "event":{"duration":1500000},"error":{"type":"DbError","message":"down","stack_trace":"at x"},
            "client":{"ip":"203.0.113.4"},"user":{"name":"zhang"},"host":{"name":"n1"},"kubernetes":{"pod":{"name":"p-1"}}}"#;
        let record = document(nested, "filebeat-8.17.0", now).unwrap();
        assert_eq!(record.timestamp.timestamp_millis(), 1765103400123);
        assert_eq!(
            (record.level, record.message.as_str()),
            (Level::Error, "GET /api 500")
        );
        assert_eq!(record.service.name, "crm-api");
        assert_eq!(record.environment.as_deref(), Some("prod"));
        assert_eq!(record.trace_id(), Some("abc"));
        let http = record.http.as_ref().unwrap();
        assert_eq!(
            (http.method.as_deref(), http.url.as_deref(), http.status_code),
            (Some("GET"), Some("/api"), Some(500))
        );
        assert_eq!(http.duration_ms, Some(1.5));
        assert_eq!(record.error.as_ref().unwrap().stack.as_deref(), Some("at x"));
        assert_eq!(record.logger.as_deref(), Some("web"));
        assert_eq!(record.extra.as_ref().unwrap()["kubernetes.pod.name"], "p-1");

        let dotted =
            br#"{"log.level":"warn","message":"slow","service.name":"orders","timestamp":1765103400000}"#;
        let record = document(dotted, "x", now).unwrap();
        assert_eq!(
            (record.level, record.service.name.as_str()),
            (Level::Warn, "orders")
        );
        assert_eq!(record.timestamp.timestamp_millis(), 1765103400000);
        // Fluent Bit's tail input names the line `log`; the index names the service.
        let fluent = br#"{"log":"plain line","stream":"stdout"}"#;
        let record = document(fluent, "logs-payments-default", now).unwrap();
        assert_eq!(
            (record.message.as_str(), record.service.name.as_str()),
            ("plain line", "payments")
        );
        assert_eq!(record.timestamp, now);

        assert!(document(b"[1]", "x", now).is_err());
        assert!(
            document(br#"{"@timestamp":"yesterday"}"#, "x", now)
                .unwrap_err()
                .contains("@timestamp")
        );
    }

    #[test]
    fn malformed_action_lines_refuse_the_request() {
        for (body, needle) in [
            (&b"{\"frobnicate\":{}}\n{}\n"[..], "found [frobnicate]"),
            (b"not json\n", "line [1]"),
            (b"{\"index\":{}, \"create\":{}}\n{}\n", "exactly one"),
            (b"{\"index\":{\"_index\":\"a\"}}\n", "no source line"),
            (b"\n\n", "no requests added"),
        ] {
            let masker = owl_model::Masker::new(&owl_model::MaskingRules::default()).unwrap();
            let identity = crate::agent_tokens::AgentIdentity::shared();
            let mut builder = BatchBuilder::new(&masker, &crate::filter::AdmitAll, &identity);
            match parse_bulk(body, None, Utc::now(), &mut builder) {
                Err(IngestError::BadMessage(message)) => assert!(message.contains(needle), "{message}"),
                other => panic!("{other:?}"),
            }
        }
    }

    proptest::proptest! {
        /// Whatever arrives, a bulk body is items or an error, never a panic.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let masker = owl_model::Masker::new(&owl_model::MaskingRules::default()).unwrap();
            let identity = crate::agent_tokens::AgentIdentity::shared();
            let mut builder = BatchBuilder::new(&masker, &crate::filter::AdmitAll, &identity);
            let _ = parse_bulk(&bytes, Some("x"), Utc::now(), &mut builder);
            let _ = document(&bytes, "x", Utc::now());
        }

        /// Action lines followed by arbitrary JSON documents.
        #[test]
        fn arbitrary_documents_never_panic(docs in proptest::collection::vec("\\{(\"[a-z@._]{1,12}\":(\"[^\"\\\\]{0,8}\"|-?[0-9]{1,20}|\\[\\]|\\{\\}|null|true),?){0,6}\\}", 1..8)) {
            let masker = owl_model::Masker::new(&owl_model::MaskingRules::default()).unwrap();
            let identity = crate::agent_tokens::AgentIdentity::shared();
            let mut builder = BatchBuilder::new(&masker, &crate::filter::AdmitAll, &identity);
            let mut body = String::new();
            for doc in docs {
                body.push_str("{\"index\":{}}\n");
                body.push_str(&doc);
                body.push('\n');
            }
            let _ = parse_bulk(body.as_bytes(), Some("x"), Utc::now(), &mut builder);
        }
    }
}
