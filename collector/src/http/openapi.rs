//! The collector's part of Owl's OpenAPI document: every route of [`super::router`], with the
//! media types each receiver takes. A test reads the route registrations of this folder's source
//! and checks that each is here, and each entry here is served.

use serde_json::{Map, Value, json};

/// One documented route.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// `GET`, `POST`, `PUT`.
    pub method: &'static str,
    /// Path template.
    pub path: &'static str,
    /// What it is for.
    pub summary: &'static str,
    /// Tag: the protocol it speaks.
    pub tag: &'static str,
    /// Media types of its body (empty: no body).
    pub takes: &'static [&'static str],
    /// Whether it needs an agent token (when `collector.tokens` or per-agent tokens are set).
    pub token: bool,
}

const NDJSON: &[&str] = &["application/x-ndjson"];
const OTLP: &[&str] = &["application/x-protobuf", "application/json"];
const BULK: &[&str] = &["application/x-ndjson", "application/json"];
const LOKI: &[&str] = &["application/x-protobuf", "application/json"];
const JSON: &[&str] = &["application/json"];

const fn ep(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    tag: &'static str,
    takes: &'static [&'static str],
    token: bool,
) -> Endpoint {
    Endpoint {
        method,
        path,
        summary,
        tag,
        takes,
        token,
    }
}

/// Every route of the collector.
pub const ENDPOINTS: &[Endpoint] = &[
    ep(
        "POST",
        "/api/v1/ingest",
        "Owl's NDJSON batch (the agent's protocol; gzip or zstd allowed)",
        "ingest",
        NDJSON,
        true,
    ),
    ep(
        "POST",
        "/v1/logs",
        "OpenTelemetry logs over HTTP",
        "otlp",
        OTLP,
        true,
    ),
    ep(
        "POST",
        "/v1/traces",
        "OpenTelemetry traces over HTTP",
        "otlp",
        OTLP,
        true,
    ),
    ep(
        "GET",
        "/",
        "Elasticsearch cluster info (for bulk clients' product check)",
        "elasticsearch",
        &[],
        true,
    ),
    ep(
        "POST",
        "/_bulk",
        "Elasticsearch bulk",
        "elasticsearch",
        BULK,
        true,
    ),
    ep("PUT", "/_bulk", "Elasticsearch bulk", "elasticsearch", BULK, true),
    ep(
        "POST",
        "/{index}/_bulk",
        "Elasticsearch bulk into an index",
        "elasticsearch",
        BULK,
        true,
    ),
    ep(
        "PUT",
        "/{index}/_bulk",
        "Elasticsearch bulk into an index",
        "elasticsearch",
        BULK,
        true,
    ),
    ep(
        "GET",
        "/_cluster/health",
        "Elasticsearch cluster health",
        "elasticsearch",
        &[],
        true,
    ),
    ep(
        "GET",
        "/_license",
        "Elasticsearch license",
        "elasticsearch",
        &[],
        true,
    ),
    ep(
        "GET",
        "/_xpack",
        "Elasticsearch features",
        "elasticsearch",
        &[],
        true,
    ),
    ep(
        "GET",
        "/_ilm/policy/{name}",
        "Elasticsearch ILM policy (accepted, not applied)",
        "elasticsearch",
        &[],
        true,
    ),
    ep(
        "PUT",
        "/_ilm/policy/{name}",
        "Elasticsearch ILM policy (accepted, not applied)",
        "elasticsearch",
        JSON,
        true,
    ),
    ep(
        "GET",
        "/_index_template/{name}",
        "Elasticsearch index template",
        "elasticsearch",
        &[],
        true,
    ),
    ep(
        "PUT",
        "/_index_template/{name}",
        "Elasticsearch index template (accepted)",
        "elasticsearch",
        JSON,
        true,
    ),
    ep(
        "GET",
        "/_template/{name}",
        "Elasticsearch legacy template",
        "elasticsearch",
        &[],
        true,
    ),
    ep(
        "PUT",
        "/_template/{name}",
        "Elasticsearch legacy template (accepted)",
        "elasticsearch",
        JSON,
        true,
    ),
    ep(
        "GET",
        "/_ingest/pipeline/{name}",
        "Elasticsearch ingest pipeline",
        "elasticsearch",
        &[],
        true,
    ),
    ep(
        "PUT",
        "/_ingest/pipeline/{name}",
        "Elasticsearch ingest pipeline (accepted)",
        "elasticsearch",
        JSON,
        true,
    ),
    ep(
        "GET",
        "/_data_stream/{name}",
        "Elasticsearch data stream",
        "elasticsearch",
        &[],
        true,
    ),
    ep(
        "PUT",
        "/_data_stream/{name}",
        "Elasticsearch data stream (accepted)",
        "elasticsearch",
        JSON,
        true,
    ),
    ep(
        "POST",
        "/loki/api/v1/push",
        "Loki push (snappy protobuf or JSON)",
        "loki",
        LOKI,
        true,
    ),
    ep("GET", "/ready", "Loki readiness", "loki", &[], false),
    ep(
        "GET",
        "/health",
        "Collector health",
        "collector health",
        &[],
        false,
    ),
    ep(
        "GET",
        "/api/health",
        "Collector health",
        "collector health",
        &[],
        false,
    ),
    ep(
        "GET",
        "/health/detailed",
        "Collector health with components (token when tokens are set)",
        "collector health",
        &[],
        true,
    ),
    ep(
        "GET",
        "/metrics",
        "Prometheus metrics (token when tokens are set)",
        "collector health",
        &[],
        true,
    ),
];

/// The `paths` object of the collector's routes, each served at `server` (the collector's URL,
/// which differs from the query API's).
pub fn paths(server: &str) -> Value {
    let mut paths = Map::new();
    for endpoint in ENDPOINTS {
        // Loki's clients expect its plain-text errors; the other receivers answer JSON.
        let error_media = if endpoint.tag == "loki" {
            "text/plain"
        } else {
            "application/json"
        };
        let mut op = json!({
            "tags": [endpoint.tag],
            "summary": endpoint.summary,
            "operationId": format!(
                "collector_{}_{}",
                endpoint.method.to_ascii_lowercase(),
                endpoint.path.trim_start_matches('/').replace(['/', '-', '.'], "_").replace(['{', '}'], "")
            ),
            "responses": {
                "2XX": {"description": "Accepted (ingest: every record durable before the answer)."},
                "4XX": {
                    "description": "Refused; ingest errors carry a LOG_INGEST_* code in the log API's error shape.",
                    "content": {error_media: {"schema": {}}},
                },
                "5XX": {
                    "description": "Overloaded or failing; retry with backoff (Retry-After).",
                    "content": {error_media: {"schema": {}}},
                },
            },
        });
        if endpoint.token {
            op["security"] = json!([{"agentToken": []}]);
        }
        if !endpoint.takes.is_empty() {
            let content: Map<String, Value> = endpoint
                .takes
                .iter()
                .map(|media| ((*media).to_string(), json!({"schema": {}})))
                .collect();
            op["requestBody"] = json!({"required": true, "content": content});
        }
        let names: Vec<&str> = endpoint
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        if !names.is_empty() {
            op["parameters"] = names
                .iter()
                .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
                .collect();
        }
        let item = paths
            .entry(endpoint.path.to_string())
            .or_insert_with(|| json!({"servers": [{"url": server, "description": "the collector"}]}));
        item[endpoint.method.to_ascii_lowercase()] = op;
    }
    Value::Object(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// `(METHOD, path)` of every `.route(...)` in this folder's routers, read from their source.
    fn registered() -> BTreeSet<(String, String)> {
        let sources = [
            include_str!("ingest.rs"),
            include_str!("otlp.rs"),
            include_str!("elastic.rs"),
            include_str!("loki.rs"),
            include_str!("health.rs"),
        ];
        let mut found = BTreeSet::new();
        for source in sources {
            for line in source.lines().filter(|l| l.contains(".route(\"")) {
                let rest = line.split(".route(\"").nth(1).unwrap();
                let (path, handlers) = rest.split_once('"').unwrap();
                for method in ["get", "post", "put", "delete"] {
                    if handlers.contains(&format!("{method}(")) {
                        found.insert((method.to_ascii_uppercase(), path.to_string()));
                    }
                }
            }
        }
        found
    }

    #[test]
    fn every_registered_route_is_documented_and_nothing_else() {
        let documented: BTreeSet<(String, String)> = ENDPOINTS
            .iter()
            .map(|e| (e.method.to_string(), e.path.to_string()))
            .collect();
        let registered = registered();
        assert!(registered.len() > 20, "{registered:?}");
        assert_eq!(documented, registered);
    }

    #[test]
    fn paths_carry_the_collector_server_and_path_parameters() {
        let paths = paths("http://127.0.0.1:3000");
        assert_eq!(paths["/v1/logs"]["servers"][0]["url"], "http://127.0.0.1:3000");
        assert_eq!(paths["/{index}/_bulk"]["post"]["parameters"][0]["name"], "index");
        assert!(
            paths["/api/v1/ingest"]["post"]["requestBody"]["content"]["application/x-ndjson"].is_object()
        );
        assert!(paths["/health"]["get"]["security"].is_null());
    }
}
