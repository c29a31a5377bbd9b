//! The error answer of the collector's HTTP API: the envelope of the log API (`/api/v1/logs/*`),
//! `{success: false, error: {code, message}, timestamp, path, method, statusCode}`.

use axum::Json;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::ingest::IngestError;

/// An [`IngestError`] with the request it answers.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub error: IngestError,
    pub path: String,
    pub method: Method,
}

impl ApiError {
    /// The status, machine-readable code and `Retry-After` seconds of each error.
    pub(crate) fn status(error: &IngestError) -> (StatusCode, &'static str, Option<u64>) {
        match error {
            IngestError::Unauthorized => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None),
            IngestError::BadHeader { .. } => (StatusCode::BAD_REQUEST, "LOG_INGEST_INVALID_HEADER", None),
            IngestError::BadCompression { .. }
            | IngestError::BadBody(_)
            | IngestError::Malformed(_)
            | IngestError::BadMessage(_) => (StatusCode::BAD_REQUEST, "LOG_INGEST_INVALID_BODY", None),
            IngestError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "LOG_INGEST_UNSUPPORTED_MEDIA_TYPE",
                None,
            ),
            IngestError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "LOG_INGEST_TOO_LARGE", None),
            IngestError::UnsupportedEncoding(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "LOG_INGEST_UNSUPPORTED_ENCODING",
                None,
            ),
            IngestError::Busy { retry_after_s } => (
                StatusCode::TOO_MANY_REQUESTS,
                "LOG_INGEST_BACKPRESSURE",
                Some(*retry_after_s),
            ),
            IngestError::Overloaded { retry_after_s, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "LOG_INGEST_BACKPRESSURE",
                Some(*retry_after_s),
            ),
            IngestError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "LOG_INGEST_UNAVAILABLE", Some(1))
            }
            IngestError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_SERVER_ERROR", None),
        }
    }
}

impl ApiError {
    /// What a client is told of an error answered with `status`. A server error is logged once
    /// here in full; the client learns only what it can act on.
    pub(crate) fn client_message(error: &IngestError, status: StatusCode) -> String {
        if status.is_server_error()
            && !matches!(error, IngestError::Busy { .. } | IngestError::Overloaded { .. })
        {
            tracing::error!(error = %error, "ingest failed");
            match error {
                IngestError::Unavailable(_) => "ingest is unavailable; retry shortly".to_string(),
                _ => "internal server error".to_string(),
            }
        } else {
            tracing::debug!(error = %error, status = status.as_u16(), "ingest refused");
            error.to_string()
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, retry_after) = ApiError::status(&self.error);
        let message = ApiError::client_message(&self.error, status);
        let response = envelope(status, code, &message, &self.path, &self.method);
        with_refusal_headers(response, retry_after, "Bearer")
    }
}

/// The headers of a refusal, whatever the receiver's body: `Retry-After` when the client should
/// come back, and the auth `challenge` on a 401.
pub(crate) fn with_refusal_headers(
    mut response: Response,
    retry_after: Option<u64>,
    challenge: &'static str,
) -> Response {
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if response.status() == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    response
}

/// The log API's error envelope.
fn envelope(status: StatusCode, code: &str, message: &str, path: &str, method: &Method) -> Response {
    let body = owl_http::logs_v1_error_body(status, code, message, Default::default(), path, method.as_str());
    (status, Json(body)).into_response()
}

/// The answer to a path the collector does not serve.
pub(crate) async fn not_found(method: Method, uri: Uri) -> Response {
    let message = format!(
        "no route for {method} {}; the collector serves POST /api/v1/ingest, POST /v1/logs, POST /v1/traces and GET /health",
        uri.path()
    );
    envelope(StatusCode::NOT_FOUND, "NOT_FOUND", &message, uri.path(), &method)
}
