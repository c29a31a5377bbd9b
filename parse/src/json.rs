//! JSON lines: one object a line, its keys mapped by the common-name table of `fields.rs`.
//!
//! The object is walked once with a serde visitor: known keys are read straight into the
//! record's fields, unknown ones into `extra`, with no intermediate `Value` tree for the whole
//! line. The objects of namespace keys (`http`, `trace`, ...) are read as ordered members
//! ([`Node`]) and routed one by one, without a `Value` map either.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::fields::{Builder, Members, Node, Scalar, Target, target_of};

/// Fills `builder` from a JSON object; an error if the text is not one object.
pub(crate) fn parse_into(text: &str, builder: &mut Builder) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    ObjectSeed { builder }.deserialize(&mut de)?;
    de.end()
}

struct ObjectSeed<'a> {
    builder: &'a mut Builder,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let target = target_of(&key);
            if matches!(target, Target::Namespace(..)) {
                let node = map.next_value::<NodeSeed<'de>>()?.0;
                self.builder.set_node(target, &key, node);
            } else {
                let value = map.next_value::<ScalarSeed>()?.0;
                self.builder.set_target(target, &key, value);
            }
        }
        Ok(())
    }
}

/// A key, borrowed from the line when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A value: scalars directly, objects and arrays as `Value`.
struct ScalarSeed(Scalar);

impl<'de> de::Deserialize<'de> for ScalarSeed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = ScalarSeed;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarSeed, E> {
        Ok(ScalarSeed(Scalar::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarSeed, E> {
        Ok(ScalarSeed(Scalar::Num(v.into())))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarSeed, E> {
        Ok(ScalarSeed(Scalar::Num(v.into())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<ScalarSeed, E> {
        Ok(ScalarSeed(
            serde_json::Number::from_f64(v).map_or(Scalar::Null, Scalar::Num),
        ))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarSeed, E> {
        Ok(ScalarSeed(Scalar::Str(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<ScalarSeed, E> {
        Ok(ScalarSeed(Scalar::Str(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<ScalarSeed, E> {
        Ok(ScalarSeed(Scalar::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<ScalarSeed, E> {
        Ok(ScalarSeed(Scalar::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<ScalarSeed, D::Error> {
        de::Deserialize::deserialize(deserializer)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ScalarSeed, A::Error> {
        let value = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(ScalarSeed(Scalar::Json(value)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ScalarSeed, A::Error> {
        let value = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(ScalarSeed(Scalar::Json(value)))
    }
}

/// A value with its objects kept as ordered members, arrays as `Value`.
struct NodeSeed<'de>(Node<'de>);

impl<'de> de::Deserialize<'de> for NodeSeed<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl NodeVisitor {
    fn scalar<'de, E>(value: Result<ScalarSeed, E>) -> Result<NodeSeed<'de>, E> {
        value.map(|s| NodeSeed(Node::Scalar(s.0)))
    }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeSeed<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<NodeSeed<'de>, E> {
        Self::scalar(ScalarVisitor.visit_bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<NodeSeed<'de>, E> {
        Self::scalar(ScalarVisitor.visit_i64(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeSeed<'de>, E> {
        Self::scalar(ScalarVisitor.visit_u64(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NodeSeed<'de>, E> {
        Self::scalar(ScalarVisitor.visit_f64(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeSeed<'de>, E> {
        Self::scalar(ScalarVisitor.visit_str(v))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<NodeSeed<'de>, E> {
        Self::scalar(ScalarVisitor.visit_string(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<NodeSeed<'de>, E> {
        Self::scalar(ScalarVisitor.visit_unit())
    }
    fn visit_none<E: de::Error>(self) -> Result<NodeSeed<'de>, E> {
        Self::scalar(ScalarVisitor.visit_none())
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<NodeSeed<'de>, D::Error> {
        de::Deserialize::deserialize(deserializer)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeSeed<'de>, A::Error> {
        let mut members = Members::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let value = map.next_value::<NodeSeed<'de>>()?.0;
            members.insert(key, value);
        }
        Ok(NodeSeed(Node::Object(members)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<NodeSeed<'de>, A::Error> {
        Self::scalar(ScalarVisitor.visit_seq(seq))
    }
}

use serde::Deserialize as _;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use owl_model::{Kind, Level, format_timestamp};

    fn parse(text: &str) -> owl_model::LogRecord {
        parse_at(text, Utc::now())
    }

    fn parse_at(text: &str, now: chrono::DateTime<Utc>) -> owl_model::LogRecord {
        let mut builder = Builder::new();
        parse_into(text, &mut builder).unwrap();
        builder.finish(now)
    }

    #[test]
    fn flat_application_line() {
        let record = parse(
            r#"{"ts":"2025-12-07T10:30:00.123Z","level":"warning","msg":"cache miss","traceId":"CN-1733580000000-a1b2c3d4","span_id":"s1","request_id":"r-1","user_id":42,"tenant":"acme","n":[1,2]}"#,
        );
        assert_eq!(format_timestamp(&record.timestamp), "2025-12-07T10:30:00.123Z");
        assert_eq!(record.level, Level::Warn);
        assert_eq!(record.message, "cache miss");
        assert_eq!(record.trace_id(), Some("CN-1733580000000-a1b2c3d4"));
        assert_eq!(record.trace.as_ref().unwrap().span_id.as_deref(), Some("s1"));
        assert_eq!(record.http.as_ref().unwrap().request_id.as_deref(), Some("r-1"));
        assert_eq!(record.user.as_ref().unwrap().id.as_deref(), Some("42"));
        let extra = record.extra.unwrap();
        assert_eq!(extra["tenant"], "acme");
        assert_eq!(extra["n"], serde_json::json!([1, 2]));
        assert_eq!(record.kind, Kind::Application);
    }

    #[test]
    fn the_log_api_shape_round_trips() {
        let text = r#"{"@timestamp":"2025-12-07T10:30:00.123Z","level":"ERROR","message":"POST /api/v1/forms | 500 | 1234ms","trace":{"id":"CN-1733580000000-a1b2c3d4","span_id":"FORM-1"},"http":{"request_id":"1733580000123-abc","method":"POST","url":"/api/v1/forms","status_code":500,"duration_ms":1234},"user":{"id":"user-001","name":"zhangsan"},"client":{"ip":"192.168.1.100","user_agent":"Mozilla/5.0"},"service":{"name":"Form","region":"CN","instance":"form-pod-1"},"error":{"type":"InternalServerError","message":"Database connection failed"}}"#;
        let record = parse(text);
        let model = owl_model::LogRecord::from_json_slice(text.as_bytes(), Utc::now()).unwrap();
        assert_eq!(record, model);
    }

    #[test]
    fn python_json_logger_fields() {
        let record = parse(
            r#"{"asctime":"2025-01-01 12:00:00,123","levelname":"ERROR","name":"foundation_service.api.v1.auth","funcName":"login","lineno":45,"pathname":"/app/foundation_service/api/v1/auth.py","module":"auth","thread":12345,"threadName":"MainThread","process":1,"message":"用户登录失败","exc_info":"Traceback (most recent call last):\n  File \"x.py\"\nValueError: bad"}"#,
        );
        assert_eq!(format_timestamp(&record.timestamp), "2025-01-01T12:00:00.123Z");
        assert_eq!(record.level, Level::Error);
        assert_eq!(record.logger.as_deref(), Some("foundation_service.api.v1.auth"));
        assert_eq!(record.function.as_deref(), Some("login"));
        assert_eq!(record.line, Some(45));
        assert_eq!(
            record.file.as_deref(),
            Some("/app/foundation_service/api/v1/auth.py")
        );
        assert_eq!(record.module.as_deref(), Some("auth"));
        assert_eq!(record.thread, Some(12345));
        assert_eq!(record.process, Some(1));
        assert!(record.exception.as_deref().unwrap().starts_with("Traceback"));
        assert_eq!(record.extra.unwrap()["threadName"], "MainThread");
    }

    #[test]
    fn ecs_nested_and_dotted_names() {
        let record = parse(
            r#"{"@timestamp":"2025-01-01T00:00:00Z","log.level":"info","message":"done","trace.id":"t1","http":{"request":{"method":"GET"},"response":{"status_code":404}},"url":{"path":"/x"},"event":{"duration":2500000},"host":{"name":"node-1"},"service.name":"api","log":{"logger":"main"}}"#,
        );
        let http = record.http.as_ref().unwrap();
        assert_eq!(http.method.as_deref(), Some("GET"));
        assert_eq!(http.status_code, Some(404));
        assert_eq!(http.url.as_deref(), Some("/x"));
        assert_eq!(http.duration_ms, Some(2.5));
        assert_eq!(record.trace_id(), Some("t1"));
        assert_eq!(record.host.as_deref(), Some("node-1"));
        assert_eq!(record.service.name, "api");
        assert_eq!(record.logger.as_deref(), Some("main"));
        assert_eq!(record.level, Level::Info);
    }

    #[test]
    fn docker_structlog_and_pino_shapes() {
        let docker = parse(r#"{"log":"hello\n","stream":"stdout","time":"2025-01-01T00:00:00.5Z"}"#);
        assert_eq!(docker.message, "hello\n");
        assert_eq!(docker.extra.unwrap()["stream"], "stdout");
        let structlog =
            parse(r#"{"event":"user logged in","level":"info","timestamp":"2025-01-01T00:00:00Z"}"#);
        assert_eq!(structlog.message, "user logged in");
        let pino = parse(
            r#"{"level":50,"time":1735689600000,"msg":"boom","err":{"type":"Error","message":"x","stack":"Error: x\n at y"}}"#,
        );
        assert_eq!(pino.level, Level::Error);
        assert_eq!(
            pino.error.as_ref().unwrap().stack.as_deref(),
            Some("Error: x\n at y")
        );
        assert_eq!(pino.kind, Kind::Error);
    }

    /// The old way: every value as a `Value`, namespace objects routed through their map.
    fn parse_through_values(text: &str, now: chrono::DateTime<Utc>) -> owl_model::LogRecord {
        let object: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
        let mut builder = Builder::new();
        for (key, value) in object {
            let scalar = match value {
                Value::String(s) => Scalar::Str(s),
                Value::Number(n) => Scalar::Num(n),
                Value::Bool(b) => Scalar::Bool(b),
                Value::Null => Scalar::Null,
                other => Scalar::Json(other),
            };
            builder.set(&key, scalar);
        }
        builder.finish(now)
    }

    #[test]
    fn repeated_members_of_a_namespace_keep_the_last_value() {
        let text = r#"{"msg":"m","http":{"method":"GET","status":404,"method":"POST","x":{"a":1,"a":2}},"trace":{"id":"t","id":"u"}}"#;
        let record = parse(text);
        assert_eq!(record.http.as_ref().unwrap().method.as_deref(), Some("POST"));
        assert_eq!(record.trace_id(), Some("u"));
        assert_eq!(
            record.extra.as_ref().unwrap()["http.x"],
            serde_json::json!({"a": 2})
        );
        let mut wide = String::from(r#"{"http":{"#);
        for i in 0..40 {
            wide.push_str(&format!(r#""k{i}":{i},"#));
        }
        wide.push_str(r#""k3":"last","method":"PUT"}}"#);
        let now = Utc::now();
        let record = parse_at(&wide, now);
        assert_eq!(record.http.as_ref().unwrap().method.as_deref(), Some("PUT"));
        let extra = record.extra.as_ref().unwrap();
        assert_eq!(extra["http.k3"], "last");
        let names: Vec<&String> = extra.keys().collect();
        assert_eq!(names[3], "http.k3", "a repeated member keeps its first position");
        assert_eq!(record, parse_through_values(&wide, now));
    }

    #[test]
    fn not_an_object_is_an_error() {
        let mut builder = Builder::new();
        assert!(parse_into("[1,2]", &mut builder).is_err());
        assert!(parse_into("{\"a\":1} trailing", &mut Builder::new()).is_err());
        assert!(parse_into("{\"a\":", &mut Builder::new()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn streamed_namespaces_match_value_maps(text in json_object()) {
            let now = Utc::now();
            proptest::prop_assert_eq!(parse_at(&text, now), parse_through_values(&text, now));
        }
    }

    /// JSON objects with distinct top-level keys, heavy on namespace keys and nesting (repeated
    /// names inside nested objects included).
    fn json_object() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            (0u32..2000).prop_map(|n| format!("{n}.5")),
            "[a-zA-Z0-9 /:.-]{0,12}".prop_map(|s| format!("\"{s}\"")),
            "(2025-01-01T00:00:00Z|ERROR|warn|GET|/api/x|[0-9]{3})".prop_map(|s| format!("\"{s}\"")),
            Just("[1,{\"a\":null}]".to_string()),
        ];
        let key = "(id|message|msg|level|trace|span_id|parent_span_id|http|request|response|method|status_code|url|path|duration_ms|user|name|client|ip|service|region|instance|error|err|type|stack|log|logger|origin|file|line|event|duration|host|hostname|process|pid|deployment|environment|source|x)";
        let object = |members: Vec<(String, String)>| {
            let body: Vec<String> = members.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", body.join(","))
        };
        let value = leaf.prop_recursive(4, 32, 6, move |inner| {
            proptest::collection::vec((key, inner), 0..6).prop_map(object)
        });
        proptest::collection::btree_map(key, value, 1..8)
            .prop_map(move |top| object(top.into_iter().collect()))
    }
}
