//! The response envelopes of the API families the query API serves, and their error type.
//!
//! Each family has its own body shape, and a client of one family reads every answer of its
//! endpoints, errors included, in that shape. `docs/API.md` lists each family's routes and the
//! contract document it follows.
//!
//! | family | serves | success | error |
//! | --- | --- | --- | --- |
//! | [`Family::LogsV1`] | `/api/v1/logs/*`: logs, traces, stats, log config, alerts | `{success, data, message?, timestamp, path}` | `{success:false, error{code,message,details?,field?,errors?}, timestamp, path, method, statusCode}` |
//! | [`Family::AuthAdmin`] | sign-in, users, organizations, roles, the analytics overview | `{code:200, message, data}` or `{success:true, message?, data}` as each endpoint shows | `{success:false, code, message, error, errors?, data:null}`: readable both by clients that test `code` and by those that test `success` |
//! | [`Family::Platform`] | health, the login alias, `me`, user toggle and stats, scheduled jobs | `{status:"success", data, message}` | `{status:"error", error, message, code, details}` |
//! | [`Family::AnalyticsMonitoring`] | `/api/analytics-monitoring/*` (CRM analytics, monitoring, the CRM's log API) and the audit log | `{code:200, message, data}` | `{code, message, data}` with field errors in `data.errors` |
//!
//! Handlers return `Result<_, ApiError<F>>` through the aliases [`LogsV1Error`], [`AuthAdminError`],
//! [`PlatformError`] and [`AnalyticsMonitoringError`]: the family is part of the type, so a handler
//! cannot answer in the wrong shape. Every failure is a [`Failure`]; one `match`
//! ([`Failure::status`]) decides the HTTP status of every kind for every family. Extractor
//! rejections and the route guard answer in the family of the matched route, which the guard
//! publishes as the task-local [`RequestContext`] (the log API's error body also needs the
//! request's path and method).

mod domain;

pub(crate) use domain::settings_failure;

use std::marker::PhantomData;

use axum::Json;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

/// The API families, named for what they serve; each has its own envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `/api/v1/logs/*`.
    LogsV1,
    /// `/api/auth/*`, `/api/users`, `/api/organizations`, `/api/roles`, `/api/analytics/*`.
    AuthAdmin,
    /// Health, `/auth/login`, `/api/refresh`, `/api/me`, user toggle and stats, jobs.
    Platform,
    /// `/api/analytics-monitoring/*`, `/api/foundation/*`.
    AnalyticsMonitoring,
}

impl Family {
    /// The family that owns a request path, for answers given before a route matched (unknown
    /// paths, bodies over the limit). Matched routes declare their family in the route table.
    pub fn for_path(path: &str) -> Family {
        const PLATFORM_PATHS: &[&str] = &["/health", "/api/health", "/auth", "/api/refresh", "/api/me"];
        let under = |prefix: &str| {
            path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        if path.starts_with("/api/v1/logs") {
            Family::LogsV1
        } else if path.starts_with("/api/analytics-monitoring") || path.starts_with("/api/foundation") {
            Family::AnalyticsMonitoring
        } else if PLATFORM_PATHS.iter().any(|p| under(p)) {
            Family::Platform
        } else {
            Family::AuthAdmin
        }
    }
}

/// Type-level marker of a family, for [`ApiError`].
pub trait FamilyKind: Send + Sync + 'static {
    /// The family.
    const FAMILY: Family;
}

/// Marker of [`Family::LogsV1`].
#[derive(Debug)]
pub enum LogsV1Family {}
/// Marker of [`Family::AuthAdmin`].
#[derive(Debug)]
pub enum AuthAdminFamily {}
/// Marker of [`Family::Platform`].
#[derive(Debug)]
pub enum PlatformFamily {}
/// Marker of [`Family::AnalyticsMonitoring`].
#[derive(Debug)]
pub enum AnalyticsMonitoringFamily {}

impl FamilyKind for LogsV1Family {
    const FAMILY: Family = Family::LogsV1;
}
impl FamilyKind for AuthAdminFamily {
    const FAMILY: Family = Family::AuthAdmin;
}
impl FamilyKind for PlatformFamily {
    const FAMILY: Family = Family::Platform;
}
impl FamilyKind for AnalyticsMonitoringFamily {
    const FAMILY: Family = Family::AnalyticsMonitoring;
}

/// What went wrong, independent of the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No valid credentials (401).
    Unauthorized,
    /// Authenticated, but the route's permission is missing (403, the log API's `LOG_PERMISSION_DENIED`).
    PermissionDenied,
    /// Authenticated and permitted, but this particular action is refused (403).
    Forbidden,
    /// The resource does not exist or is outside the caller's scope (404).
    NotFound,
    /// Input failed validation (400; 422 in the platform API family, which documents it).
    Invalid,
    /// A request parameter is wrong (400 in every family, the platform API's 请求参数错误).
    BadRequest,
    /// The request conflicts with the current state (409).
    Conflict,
    /// The request body is over the limit (413).
    PayloadTooLarge,
    /// Too many attempts; comes with a `Retry-After` (429).
    TooManyRequests,
    /// A dependency is down (503).
    Unavailable,
    /// The work took longer than it may (504, `query_api.query_timeout_ms`).
    Timeout,
    /// A bug or an infrastructure failure; the client sees a generic message (500).
    Internal,
}

impl FailureKind {
    /// Every kind, for the API document.
    pub const ALL: [FailureKind; 12] = [
        FailureKind::Unauthorized,
        FailureKind::PermissionDenied,
        FailureKind::Forbidden,
        FailureKind::NotFound,
        FailureKind::Invalid,
        FailureKind::BadRequest,
        FailureKind::Conflict,
        FailureKind::PayloadTooLarge,
        FailureKind::TooManyRequests,
        FailureKind::Unavailable,
        FailureKind::Timeout,
        FailureKind::Internal,
    ];
}

/// A field-level validation error (the log API's `FieldError`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    /// The field, as a JSON path (`regions[2]`).
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
    /// The offending value, when it is safe to echo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// The rule that failed (`required`, `length`, `format`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
}

impl FieldError {
    /// A field error with a constraint name.
    pub fn new(field: impl Into<String>, constraint: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
            value: None,
            constraint: Some(constraint.to_string()),
        }
    }
}

/// One failed request, rendered by the family's envelope.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub kind: FailureKind,
    /// Machine-readable code (the log API's `error.code`); `None` uses the kind's default.
    pub code: Option<&'static str>,
    /// Human-readable message, safe to show.
    pub message: String,
    /// Extra detail, safe to show.
    pub details: Option<Value>,
    /// The single field at fault, if one.
    pub field: Option<String>,
    /// Every field at fault.
    pub errors: Vec<FieldError>,
    /// Seconds to wait before retrying (429).
    pub retry_after_s: Option<u64>,
    /// The underlying error of a 5xx, logged once and never shown.
    pub source: Option<anyhow::Error>,
}

impl Failure {
    /// A failure of a kind with a message.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            code: None,
            message: message.into(),
            details: None,
            field: None,
            errors: Vec::new(),
            retry_after_s: None,
            source: None,
        }
    }

    /// 401: missing, malformed, expired or revoked credentials.
    pub fn unauthorized(message: impl Into<String>) -> Failure {
        Failure::new(FailureKind::Unauthorized, message)
    }

    /// 403: the route's permission is missing.
    pub fn permission_denied() -> Failure {
        Failure::new(FailureKind::PermissionDenied, PERMISSION_DENIED_MESSAGE)
    }

    /// 403: this action is refused for a reason the message gives.
    pub fn forbidden(message: impl Into<String>) -> Failure {
        Failure::new(FailureKind::Forbidden, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Failure {
        Failure::new(FailureKind::NotFound, message)
    }

    /// 400/422 with field errors; the message names the first.
    pub fn invalid(errors: Vec<FieldError>) -> Failure {
        let message = match errors.first() {
            Some(first) if errors.len() == 1 => format!("参数校验失败：{}", first.message),
            Some(first) => format!("参数校验失败：{}（共 {} 处错误）", first.message, errors.len()),
            None => "参数校验失败".to_string(),
        };
        let field = errors.first().map(|e| e.field.clone());
        Failure {
            field,
            errors,
            ..Failure::new(FailureKind::Invalid, message)
        }
    }

    /// 400/422 about one field.
    pub fn invalid_field(field: &str, constraint: &str, message: impl Into<String>) -> Failure {
        Failure::invalid(vec![FieldError::new(field, constraint, message)])
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Failure {
        Failure::new(FailureKind::Conflict, message)
    }

    /// 429 with `Retry-After`.
    pub fn too_many_requests(message: impl Into<String>, retry_after_s: u64) -> Failure {
        Failure {
            retry_after_s: Some(retry_after_s.max(1)),
            ..Failure::new(FailureKind::TooManyRequests, message)
        }
    }

    /// 500; the error is logged, the client sees a generic message.
    pub fn internal(source: impl Into<anyhow::Error>) -> Failure {
        Failure {
            source: Some(source.into()),
            ..Failure::new(FailureKind::Internal, INTERNAL_MESSAGE)
        }
    }

    /// 503; the error is logged, the client sees the message.
    pub fn unavailable(message: impl Into<String>, source: impl Into<anyhow::Error>) -> Failure {
        Failure {
            source: Some(source.into()),
            ..Failure::new(FailureKind::Unavailable, message)
        }
    }

    /// Sets the machine-readable code (`LOG_QUERY_TIME_RANGE_TOO_LARGE`, ...).
    pub fn with_code(mut self, code: &'static str) -> Failure {
        self.code = Some(code);
        self
    }

    /// Sets the detail.
    pub fn with_details(mut self, details: Value) -> Failure {
        self.details = Some(details);
        self
    }

    /// The HTTP status of this failure in a family: the one place that decides it.
    pub fn status(&self, family: Family) -> StatusCode {
        match (self.kind, family) {
            (FailureKind::Unauthorized, _) => StatusCode::UNAUTHORIZED,
            (FailureKind::PermissionDenied | FailureKind::Forbidden, _) => StatusCode::FORBIDDEN,
            (FailureKind::NotFound, _) => StatusCode::NOT_FOUND,
            (FailureKind::Invalid, Family::Platform) => StatusCode::UNPROCESSABLE_ENTITY,
            (FailureKind::Invalid, _) | (FailureKind::BadRequest, _) => StatusCode::BAD_REQUEST,
            (FailureKind::Conflict, _) => StatusCode::CONFLICT,
            (FailureKind::PayloadTooLarge, _) => StatusCode::PAYLOAD_TOO_LARGE,
            (FailureKind::TooManyRequests, _) => StatusCode::TOO_MANY_REQUESTS,
            (FailureKind::Unavailable, _) => StatusCode::SERVICE_UNAVAILABLE,
            (FailureKind::Timeout, _) => StatusCode::GATEWAY_TIMEOUT,
            (FailureKind::Internal, _) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code (the log API's vocabulary).
    pub fn code(&self) -> &'static str {
        if let Some(code) = self.code {
            return code;
        }
        match self.kind {
            FailureKind::Unauthorized => "UNAUTHORIZED",
            FailureKind::PermissionDenied => PERMISSION_DENIED_CODE,
            FailureKind::Forbidden => "FORBIDDEN",
            FailureKind::NotFound => "NOT_FOUND",
            FailureKind::Invalid | FailureKind::BadRequest => "LOG_QUERY_INVALID_PARAMS",
            FailureKind::Conflict => "CONFLICT",
            FailureKind::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            FailureKind::TooManyRequests => "TOO_MANY_REQUESTS",
            FailureKind::Unavailable => "SERVICE_UNAVAILABLE",
            FailureKind::Timeout => "LOG_QUERY_TIMEOUT",
            FailureKind::Internal => "INTERNAL_SERVER_ERROR",
        }
    }

    /// The platform API's error type names.
    pub fn platform_error(&self) -> &'static str {
        match self.kind {
            FailureKind::Unauthorized => "AuthenticationError",
            FailureKind::PermissionDenied | FailureKind::Forbidden => "AuthorizationError",
            FailureKind::NotFound => "ResourceNotFoundError",
            FailureKind::Invalid | FailureKind::BadRequest | FailureKind::PayloadTooLarge => {
                "ValidationError"
            }
            FailureKind::Conflict => "ConflictError",
            FailureKind::TooManyRequests => "RateLimitError",
            FailureKind::Unavailable | FailureKind::Timeout => "ExternalServiceError",
            FailureKind::Internal => "InternalServerError",
        }
    }

    /// Renders the failure in a family's envelope.
    pub fn render(self, family: Family) -> Response {
        let status = self.status(family);
        if status.is_server_error() {
            match &self.source {
                Some(source) => tracing::error!(
                    error = format!("{source:#}"),
                    code = self.code(),
                    "request failed"
                ),
                None => tracing::error!(reason = %self.message, code = self.code(), "request failed"),
            }
        } else {
            tracing::debug!(status = status.as_u16(), code = self.code(), reason = %self.message, "request refused");
        }
        let errors =
            (!self.errors.is_empty()).then(|| serde_json::to_value(&self.errors).unwrap_or(Value::Null));
        let body = match family {
            Family::LogsV1 => {
                let mut detail = serde_json::Map::new();
                if let Some(details) = &self.details {
                    detail.insert("details".into(), details.clone());
                }
                if let Some(field) = &self.field {
                    detail.insert("field".into(), json!(field));
                }
                if let Some(errors) = &errors {
                    detail.insert("errors".into(), errors.clone());
                }
                let (path, method) = RequestContext::path_and_method();
                owl_http::logs_v1_error_body(status, self.code(), &self.message, detail, &path, &method)
            }
            Family::AuthAdmin => {
                let mut body = json!({
                    "success": false,
                    "code": status.as_u16(),
                    "message": self.message,
                    "error": self.code(),
                    "data": null,
                });
                if let Some(errors) = errors {
                    body["errors"] = errors;
                }
                if let Some(details) = &self.details {
                    body["details"] = details.clone();
                }
                body
            }
            Family::Platform => {
                let mut details = match &self.details {
                    Some(Value::Object(map)) => Value::Object(map.clone()),
                    Some(other) => json!({ "detail": other }),
                    None => json!({}),
                };
                if let Some(errors) = errors {
                    details["errors"] = errors;
                }
                json!({
                    "status": "error",
                    "error": self.platform_error(),
                    "message": self.message,
                    "code": status.as_u16(),
                    "details": details,
                })
            }
            Family::AnalyticsMonitoring => {
                let data = match (errors, &self.details) {
                    (Some(errors), _) => json!({ "errors": errors }),
                    (None, Some(details)) => details.clone(),
                    (None, None) => Value::Null,
                };
                json!({ "code": status.as_u16(), "message": self.message, "data": data })
            }
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The message of a missing permission, the same in every family.
pub const PERMISSION_DENIED_MESSAGE: &str = "权限不足";
/// The log API's code of a missing permission.
pub const PERMISSION_DENIED_CODE: &str = "LOG_PERMISSION_DENIED";
const INTERNAL_MESSAGE: &str = "服务器内部错误";

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message)
    }
}

/// A failure answered in the family of the matched route (extractor rejections, the route guard).
impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let family = RequestContext::family();
        self.render(family)
    }
}

/// The error type of one API family: a [`Failure`] rendered in that family's envelope.
pub struct ApiError<F> {
    failure: Failure,
    family: PhantomData<F>,
}

impl<F> ApiError<F> {
    /// The failure inside.
    pub fn failure(&self) -> &Failure {
        &self.failure
    }
}

impl<F> std::fmt::Debug for ApiError<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.failure.fmt(f)
    }
}

impl<F, T: Into<Failure>> From<T> for ApiError<F> {
    fn from(value: T) -> Self {
        ApiError {
            failure: value.into(),
            family: PhantomData,
        }
    }
}

impl<F: FamilyKind> IntoResponse for ApiError<F> {
    fn into_response(self) -> Response {
        self.failure.render(F::FAMILY)
    }
}

/// Errors of the log API's `/api/v1/logs/*`.
pub type LogsV1Error = ApiError<LogsV1Family>;
/// Errors of the admin API's auth, users, organizations, roles and analytics.
pub type AuthAdminError = ApiError<AuthAdminFamily>;
/// Errors of the platform API's endpoints.
pub type PlatformError = ApiError<PlatformFamily>;
/// Errors of the CRM analytics API's analytics-monitoring and the CRM backend's audit log.
pub type AnalyticsMonitoringError = ApiError<AnalyticsMonitoringFamily>;

/// Who is being answered: published by the route guard for the duration of the handler.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The matched route's family.
    pub family: Family,
    /// The request method.
    pub method: Method,
    /// The request path (without the query).
    pub path: String,
}

tokio::task_local! {
    static CONTEXT: RequestContext;
}

impl RequestContext {
    /// Runs `future` with this context published.
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        CONTEXT.scope(self, future).await
    }

    /// The published context, if any.
    pub fn current() -> Option<RequestContext> {
        CONTEXT.try_with(Clone::clone).ok()
    }

    fn family() -> Family {
        CONTEXT.try_with(|c| c.family).unwrap_or(Family::AuthAdmin)
    }

    fn path_and_method() -> (String, String) {
        CONTEXT
            .try_with(|c| (c.path.clone(), c.method.to_string()))
            .unwrap_or_default()
    }
}

/// An optional epoch-milliseconds time as the APIs write it, or `null`.
pub(crate) fn time_or_null(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| json!(owl_model::clock::format_millis(ms)))
}

/// Now as the log API writes times.
pub(crate) fn now_rfc3339() -> String {
    owl_model::format_timestamp(&chrono::Utc::now())
}

/// The log API's success envelope: `{success:true, data, message?, timestamp, path}`.
#[derive(Debug, Serialize)]
pub struct LogsV1Ok<T> {
    success: bool,
    data: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    timestamp: String,
    path: String,
}

impl<T: Serialize> LogsV1Ok<T> {
    /// Data without a message.
    pub fn new(data: T) -> LogsV1Ok<T> {
        let (path, _) = RequestContext::path_and_method();
        LogsV1Ok {
            success: true,
            data,
            message: None,
            timestamp: now_rfc3339(),
            path,
        }
    }

    /// Data with a message.
    pub fn with_message(data: T, message: impl Into<String>) -> LogsV1Ok<T> {
        LogsV1Ok {
            message: Some(message.into()),
            ..LogsV1Ok::new(data)
        }
    }
}

impl<T: Serialize> IntoResponse for LogsV1Ok<T> {
    fn into_response(self) -> Response {
        Json(self).into_response()
    }
}

/// The admin API's coded envelope (login, refresh, logout): `{code:200, message, data?}`.
#[derive(Debug, Serialize)]
pub struct Coded<T> {
    code: u16,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<T>,
}

impl<T: Serialize> Coded<T> {
    /// `{code:200, message, data}`.
    pub fn ok(message: impl Into<String>, data: T) -> Coded<T> {
        Coded {
            code: 200,
            message: message.into(),
            data: Some(data),
        }
    }
}

impl Coded<()> {
    /// `{code:200, message}`.
    pub fn message(message: impl Into<String>) -> Coded<()> {
        Coded {
            code: 200,
            message: message.into(),
            data: None,
        }
    }
}

impl<T: Serialize> IntoResponse for Coded<T> {
    fn into_response(self) -> Response {
        Json(self).into_response()
    }
}

/// The admin API's success envelope (profile, users, orgs, roles): `{success:true, message?, data?}`.
#[derive(Debug, Serialize)]
pub struct Success<T> {
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<T>,
    #[serde(skip)]
    status: StatusCode,
}

impl<T: Serialize> Success<T> {
    /// `{success:true, data}`.
    pub fn data(data: T) -> Success<T> {
        Success {
            success: true,
            message: None,
            data: Some(data),
            status: StatusCode::OK,
        }
    }

    /// `{success:true, message, data}`.
    pub fn with_message(message: impl Into<String>, data: T) -> Success<T> {
        Success {
            success: true,
            message: Some(message.into()),
            data: Some(data),
            status: StatusCode::OK,
        }
    }

    /// Answers `201 Created` instead of 200.
    pub fn created(mut self) -> Success<T> {
        self.status = StatusCode::CREATED;
        self
    }
}

impl Success<()> {
    /// `{success:true, message}`.
    pub fn message(message: impl Into<String>) -> Success<()> {
        Success {
            success: true,
            message: Some(message.into()),
            data: None,
            status: StatusCode::OK,
        }
    }
}

impl<T: Serialize> IntoResponse for Success<T> {
    fn into_response(self) -> Response {
        (self.status, Json(self)).into_response()
    }
}

/// The platform API's success envelope: `{status:"success", data, message}`.
#[derive(Debug, Serialize)]
pub struct StatusOk<T> {
    status: &'static str,
    data: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    pagination: Option<Value>,
    message: String,
    #[serde(skip)]
    http_status: StatusCode,
}

impl<T: Serialize> StatusOk<T> {
    /// `{status:"success", data, message}`.
    pub fn new(data: T, message: impl Into<String>) -> StatusOk<T> {
        StatusOk {
            status: "success",
            data,
            pagination: None,
            message: message.into(),
            http_status: StatusCode::OK,
        }
    }

    /// A page of a list: `{status:"success", data:[...], pagination:{page, per_page, total,
    /// pages}, message}`.
    pub fn page(data: T, page: i64, per_page: i64, total: i64, message: impl Into<String>) -> StatusOk<T> {
        let pages = crate::validate::page_count(total, per_page);
        StatusOk {
            pagination: Some(json!({ "page": page, "per_page": per_page, "total": total, "pages": pages })),
            ..StatusOk::new(data, message)
        }
    }

    /// Answers `201 Created`.
    pub fn created(mut self) -> StatusOk<T> {
        self.http_status = StatusCode::CREATED;
        self
    }

    /// The same body under another HTTP status and top-level `status` (detailed health: 503 and
    /// `"error"` when unhealthy).
    pub fn with_status(mut self, http_status: StatusCode) -> StatusOk<T> {
        if !http_status.is_success() {
            self.status = "error";
        }
        self.http_status = http_status;
        self
    }
}

impl<T: Serialize> IntoResponse for StatusOk<T> {
    fn into_response(self) -> Response {
        (self.http_status, Json(self)).into_response()
    }
}

/// The CRM analytics API's envelope: `{code:200, message, data}`.
#[derive(Debug, Serialize)]
pub struct AnalyticsMonitoringOk<T> {
    code: u16,
    message: String,
    data: T,
}

impl<T: Serialize> AnalyticsMonitoringOk<T> {
    /// `{code:200, message, data}`.
    pub fn new(message: impl Into<String>, data: T) -> AnalyticsMonitoringOk<T> {
        AnalyticsMonitoringOk {
            code: 200,
            message: message.into(),
            data,
        }
    }
}

impl<T: Serialize> IntoResponse for AnalyticsMonitoringOk<T> {
    fn into_response(self) -> Response {
        Json(self).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(response: Response) -> Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_server_error_is_logged_once_with_its_cause_inside_the_request_span() {
        use tower::ServiceExt;
        let lines = owl_logging::Captured::default();
        let _guard = tracing::subscriber::set_default(lines.subscriber("info", owl_config::LogFormat::Json));
        let app = axum::Router::new()
            .route(
                "/api/v1/logs/query",
                axum::routing::get(|| async {
                    Failure::internal(anyhow::anyhow!("disk /var/lib/owl on fire")).into_response()
                }),
            )
            .layer(owl_http::TraceLayer::new("CN", "owl"));
        let request = axum::http::Request::builder()
            .uri("/api/v1/logs/query")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let trace_id = response.headers()["x-trace-id"].to_str().unwrap().to_string();
        let answer = body(response).await.to_string();
        assert!(
            !answer.contains("on fire"),
            "the cause stays in the log: {answer}"
        );

        let text = lines.text();
        let errors: Vec<Value> = lines
            .json_lines()
            .into_iter()
            .filter(|l| l["level"] == "ERROR")
            .collect();
        assert_eq!(errors.len(), 1, "{text}");
        assert_eq!(errors[0]["trace_id"], trace_id.as_str());
        assert_eq!(errors[0]["route"], "/api/v1/logs/query");
        assert!(errors[0]["error"].as_str().unwrap().contains("on fire"), "{text}");
    }

    #[tokio::test]
    async fn logs_v1_error_names_path_and_method() {
        let context = RequestContext {
            family: Family::LogsV1,
            method: Method::GET,
            path: "/api/v1/logs/query".into(),
        };
        let response = context
            .scope(async { Failure::invalid_field("limit", "max", "limit 最大为 200").into_response() })
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = body(response).await;
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], "LOG_QUERY_INVALID_PARAMS");
        assert_eq!(body["error"]["field"], "limit");
        assert_eq!(body["error"]["errors"][0]["field"], "limit");
        assert_eq!(body["path"], "/api/v1/logs/query");
        assert_eq!(body["method"], "GET");
        assert_eq!(body["statusCode"], 400);
        assert!(owl_model::parse_timestamp(body["timestamp"].as_str().unwrap()).is_some());
    }

    #[tokio::test]
    async fn each_family_renders_its_envelope() {
        let denied = |family| Failure::permission_denied().render(family);
        let log = body(denied(Family::LogsV1)).await;
        assert_eq!(log["error"]["code"], "LOG_PERMISSION_DENIED");
        let data_ask = body(denied(Family::AuthAdmin)).await;
        assert_eq!(
            (data_ask["success"].clone(), data_ask["code"].clone()),
            (json!(false), json!(403))
        );
        let platform = body(denied(Family::Platform)).await;
        assert_eq!(platform["status"], "error");
        assert_eq!(platform["error"], "AuthorizationError");
        assert_eq!(platform["code"], 403);
        let crm = body(denied(Family::AnalyticsMonitoring)).await;
        assert_eq!(crm, json!({"code": 403, "message": "权限不足", "data": null}));
    }

    #[tokio::test]
    async fn validation_is_422_only_in_the_platform_family() {
        let invalid = || Failure::invalid_field("password", "length", "too short");
        assert_eq!(
            invalid().render(Family::Platform).status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            invalid().render(Family::AuthAdmin).status(),
            StatusCode::BAD_REQUEST
        );
        let crm = body(invalid().render(Family::AnalyticsMonitoring)).await;
        assert_eq!(crm["data"]["errors"][0]["field"], "password");
    }

    #[tokio::test]
    async fn too_many_requests_carries_retry_after() {
        let response = Failure::too_many_requests("locked", 42).render(Family::AuthAdmin);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "42");
    }

    #[tokio::test]
    async fn internal_errors_hide_their_cause() {
        let response = Failure::internal(anyhow::anyhow!("password=hunter2 at db")).render(Family::AuthAdmin);
        let body = body(response).await;
        assert!(!body.to_string().contains("hunter2"));
        assert_eq!(body["message"], "服务器内部错误");
    }

    #[test]
    fn families_by_path() {
        assert_eq!(Family::for_path("/api/v1/logs/query"), Family::LogsV1);
        assert_eq!(
            Family::for_path("/api/foundation/audit-logs"),
            Family::AnalyticsMonitoring
        );
        assert_eq!(
            Family::for_path("/api/analytics-monitoring/x"),
            Family::AnalyticsMonitoring
        );
        assert_eq!(Family::for_path("/health/detailed"), Family::Platform);
        assert_eq!(Family::for_path("/auth/login"), Family::Platform);
        assert_eq!(Family::for_path("/api/me"), Family::Platform);
        assert_eq!(Family::for_path("/api/metrics"), Family::AuthAdmin);
        assert_eq!(Family::for_path("/api/auth/login"), Family::AuthAdmin);
        assert_eq!(Family::for_path("/api/users"), Family::AuthAdmin);
    }
}
