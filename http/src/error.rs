//! The error body of the log API (`/api/v1/logs/*` of the query API, and the collector's ingest
//! endpoints): `{success: false, error: {code, message, ...}, timestamp, path, method, statusCode}`.
//! Both servers render it here, so a client of either reads one shape.

use http::StatusCode;
use serde_json::{Map, Value, json};

/// The body: `detail` holds what `error` carries beside `code` and `message` (`details`, `field`,
/// `errors`), in that order.
pub fn logs_v1_error_body(
    status: StatusCode,
    code: &str,
    message: &str,
    detail: Map<String, Value>,
    path: &str,
    method: &str,
) -> Value {
    let mut error = Map::new();
    error.insert("code".into(), json!(code));
    error.insert("message".into(), json!(message));
    error.extend(detail);
    json!({
        "success": false,
        "error": error,
        "timestamp": owl_model::format_timestamp(&chrono::Utc::now()),
        "path": path,
        "method": method,
        "statusCode": status.as_u16(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_names_the_request_and_keeps_the_detail_in_order() {
        let mut detail = Map::new();
        detail.insert("field".into(), json!("level"));
        detail.insert("errors".into(), json!([]));
        let body = logs_v1_error_body(
            StatusCode::BAD_REQUEST,
            "LOG_QUERY_INVALID_PARAMS",
            "bad",
            detail,
            "/api/v1/logs/query",
            "GET",
        );
        assert_eq!(body["success"], false);
        assert_eq!(body["statusCode"], 400);
        assert_eq!(body["method"], "GET");
        assert_eq!(body["path"], "/api/v1/logs/query");
        let keys: Vec<&str> = body["error"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["code", "message", "field", "errors"]);
        assert!(owl_model::parse_timestamp(body["timestamp"].as_str().unwrap()).is_some());
    }
}
