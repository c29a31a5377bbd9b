//! The audit log API of the CRM backend, in the CRM analytics API's `{code, message, data}` envelope:
//! `GET /api/foundation/audit-logs` (+ `/{id}`, `/users/{user_id}`,
//! `/resources/{resource_type}/{resource_id}`) and `POST /api/foundation/audit-logs/export`.
//!
//! Exports stream: rows are read in pages of [`EXPORT_PAGE_ROWS`] by ascending id and written as they
//! come, so memory stays flat; at most `query_api.export_max_rows` rows (or the request's smaller
//! `limit`) are written. CSV cells that a spreadsheet would run as a formula are prefixed with `'`.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{Json, Path, Query};
use super::openapi::Doc;
use super::{AuditPolicy, Routes};
use crate::csv_out::CsvLine;
use crate::db::{AuditEntry, AuditFilter, Database};
use crate::envelope::{AnalyticsMonitoringError, AnalyticsMonitoringOk, Failure, Family};
use crate::logs::params::RawQuery;
use crate::permissions::{Access, Permission};
use crate::state::AppState;
use crate::validate::{Page, Validator};
use owl_model::clock::format_millis;

/// Rows read per page while exporting.
pub const EXPORT_PAGE_ROWS: i64 = 500;

/// The routes.
pub(crate) fn routes() -> Routes {
    let read = Access::perm(Permission::AuditRead);
    Routes::new(Family::AnalyticsMonitoring, "audit_log")
        .route(Method::GET, "/api/foundation/audit-logs", read, list)
        .doc(Doc::query::<ListParams>())
        .route(Method::GET, "/api/foundation/audit-logs/{id}", read, get)
        .route(
            Method::GET,
            "/api/foundation/audit-logs/users/{user_id}",
            read,
            by_user,
        )
        .route(
            Method::GET,
            "/api/foundation/audit-logs/resources/{resource_type}/{resource_id}",
            read,
            by_resource,
        )
        .audited(
            Method::POST,
            "/api/foundation/audit-logs/export",
            Access::perm(Permission::AuditExport),
            "export",
            AuditPolicy::Always,
            export,
        )
        .doc(Doc::default().body::<ExportBody>(false).produces(&["text/csv"]))
}

/// The audit log router.
pub fn router() -> Router<AppState> {
    routes().into_router()
}

/// Filters shared by the list and the export.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
struct FilterParams {
    user_id: Option<i64>,
    username: Option<String>,
    action: Option<String>,
    resource_type: Option<String>,
    resource_id: Option<String>,
    start_time: Option<String>,
    end_time: Option<String>,
    /// A status code, or `success` (< 400) / `failure` (>= 400).
    status: Option<String>,
}

impl FilterParams {
    fn compile(self, v: &mut Validator) -> AuditFilter {
        let mut time = |field: &str, value: Option<String>| {
            let value = value.filter(|t| !t.is_empty())?;
            let parsed = owl_model::parse_timestamp(&value).map(|t| t.timestamp_millis());
            v.check(
                parsed.is_some(),
                field,
                "format",
                format!("{field} 需为 ISO 8601 时间，例如 2025-12-07T00:00:00Z"),
            );
            parsed
        };
        let start_ms = time("start_time", self.start_time);
        let end_ms = time("end_time", self.end_time);
        if let (Some(start), Some(end)) = (start_ms, end_ms) {
            v.check(start <= end, "end_time", "range", "end_time 不能早于 start_time");
        }
        let (status_min, status_max) = match self.status.as_deref().filter(|s| !s.is_empty()) {
            None => (None, None),
            Some("success") => (Some(0), Some(399)),
            Some("failure") => (Some(400), Some(999)),
            Some(code) => match code.parse::<i64>() {
                Ok(code) if (100..=599).contains(&code) => (Some(code), Some(code)),
                _ => {
                    v.error("status", "enum", "status 需为 HTTP 状态码、success 或 failure");
                    (None, None)
                }
            },
        };
        let text = |value: Option<String>| value.filter(|s| !s.is_empty());
        AuditFilter {
            user_id: self.user_id,
            user_code: text(self.username),
            action: text(self.action),
            resource_type: text(self.resource_type),
            resource_id: text(self.resource_id),
            start_ms,
            end_ms,
            status_min,
            status_max,
        }
    }
}

fn entry_json(entry: &AuditEntry) -> Value {
    let params = entry
        .params
        .as_deref()
        .map(|p| serde_json::from_str::<Value>(p).unwrap_or_else(|_| Value::String(p.to_string())));
    json!({
        "id": entry.id,
        "user_id": entry.user_id,
        "username": entry.user_code,
        "action": entry.action,
        "resource_type": entry.resource_type,
        "resource_id": entry.resource_id,
        "method": entry.method,
        "path": entry.path,
        "params": params,
        "ip_address": entry.ip_address,
        "user_agent": entry.user_agent,
        "status_code": entry.status_code,
        "duration_ms": entry.duration_ms,
        "request_id": entry.request_id,
        "created_at": format_millis(entry.created_at),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct ListParams {
    page: Option<i64>,
    page_size: Option<i64>,
    #[serde(flatten)]
    filter: FilterParams,
}

async fn page_of(
    state: &AppState,
    page: Page,
    filter: AuditFilter,
) -> Result<AnalyticsMonitoringOk<Value>, Failure> {
    let (entries, total) = state.db.list_audit(&filter, page.page, page.page_size).await?;
    let items: Vec<Value> = entries.iter().map(entry_json).collect();
    let pagination = page.describe(total);
    Ok(AnalyticsMonitoringOk::new(
        "获取审计日志成功",
        json!({
            "items": items,
            "total": total,
            "page": page.page,
            "page_size": page.page_size,
            "total_pages": pagination["total_pages"],
        }),
    ))
}

/// `GET /api/foundation/audit-logs`.
async fn list(
    State(state): State<AppState>,
    raw: RawQuery,
) -> Result<AnalyticsMonitoringOk<Value>, AnalyticsMonitoringError> {
    let params = Value::Object(raw.0.into_iter().map(|(k, v)| (k, Value::String(v))).collect());
    // Query strings carry every value as text; read them through the typed shape once, with
    // numbers parsed, so `user_id=abc` is a field error.
    let params: ListParams = typed_params(params)?;
    let mut v = Validator::new();
    let page = Page::new(&mut v, params.page, params.page_size);
    let filter = params.filter.compile(&mut v);
    v.finish()?;
    Ok(page_of(&state, page, filter).await?)
}

/// Re-reads string query values into a typed shape, turning numeric strings into numbers for the
/// numeric fields (`#[serde(flatten)]` defeats the query deserializer's own number parsing).
fn typed_params<T: serde::de::DeserializeOwned>(params: Value) -> Result<T, Failure> {
    const NUMERIC: &[&str] = &["page", "page_size", "user_id"];
    let mut map = params.as_object().cloned().unwrap_or_default();
    for key in NUMERIC {
        if let Some(Value::String(text)) = map.get(*key) {
            let number = text
                .parse::<i64>()
                .map_err(|_| Failure::invalid_field(key, "type", format!("{key} 需为整数")))?;
            map.insert((*key).to_string(), json!(number));
        }
    }
    super::extract::parse_json(&serde_json::to_vec(&Value::Object(map)).map_err(Failure::internal)?)
}

/// `GET /api/foundation/audit-logs/{id}`.
async fn get(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<AnalyticsMonitoringOk<Value>, AnalyticsMonitoringError> {
    let entry = state
        .db
        .find_audit(id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("审计日志 {id} 不存在")))?;
    Ok(AnalyticsMonitoringOk::new(
        "获取审计日志详情成功",
        entry_json(&entry),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct PageParams {
    page: Option<i64>,
    page_size: Option<i64>,
}

/// `GET /api/foundation/audit-logs/users/{user_id}`.
async fn by_user(
    State(state): State<AppState>,
    Path(user_id): Path<i64>,
    Query(params): Query<PageParams>,
) -> Result<AnalyticsMonitoringOk<Value>, AnalyticsMonitoringError> {
    let mut v = Validator::new();
    let page = Page::new(&mut v, params.page, params.page_size);
    v.finish()?;
    Ok(page_of(
        &state,
        page,
        AuditFilter {
            user_id: Some(user_id),
            ..AuditFilter::default()
        },
    )
    .await?)
}

/// `GET /api/foundation/audit-logs/resources/{resource_type}/{resource_id}`.
async fn by_resource(
    State(state): State<AppState>,
    Path((resource_type, resource_id)): Path<(String, String)>,
    Query(params): Query<PageParams>,
) -> Result<AnalyticsMonitoringOk<Value>, AnalyticsMonitoringError> {
    let mut v = Validator::new();
    let page = Page::new(&mut v, params.page, params.page_size);
    v.finish()?;
    let filter = AuditFilter {
        resource_type: Some(resource_type),
        resource_id: Some(resource_id),
        ..AuditFilter::default()
    };
    Ok(page_of(&state, page, filter).await?)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct ExportBody {
    format: Option<String>,
    limit: Option<i64>,
    #[serde(flatten)]
    filter: FilterParams,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

const CSV_COLUMNS: &[&str] = &[
    "id",
    "created_at",
    "user_id",
    "username",
    "action",
    "resource_type",
    "resource_id",
    "method",
    "path",
    "status_code",
    "duration_ms",
    "ip_address",
    "user_agent",
    "request_id",
    "params",
];

fn csv_row(entry: &AuditEntry) -> String {
    let mut line = CsvLine::new();
    line.number(entry.id).text(&format_millis(entry.created_at));
    match entry.user_id {
        Some(id) => line.number(id),
        None => line.text(""),
    };
    line.text(entry.user_code.as_deref().unwrap_or_default())
        .text(&entry.action)
        .text(&entry.resource_type)
        .text(entry.resource_id.as_deref().unwrap_or_default())
        .text(&entry.method)
        .text(&entry.path)
        .number(entry.status_code)
        .number(entry.duration_ms)
        .text(&entry.ip_address)
        .text(&entry.user_agent)
        .text(entry.request_id.as_deref().unwrap_or_default())
        .text(entry.params.as_deref().unwrap_or_default());
    line.finish()
}

/// Where the export stream stands.
struct Cursor {
    db: Database,
    filter: AuditFilter,
    format: Format,
    after_id: i64,
    remaining: i64,
    written: u64,
    started: bool,
    finished: bool,
}

async fn next_chunk(mut cursor: Cursor) -> Option<(Result<Bytes, std::io::Error>, Cursor)> {
    if cursor.finished {
        return None;
    }
    let mut out = String::new();
    if !cursor.started {
        cursor.started = true;
        out.push_str(match cursor.format {
            Format::Json => "[",
            Format::Csv => "",
        });
        if cursor.format == Format::Csv {
            out.push_str(&crate::csv_out::header_line(CSV_COLUMNS));
        }
    }
    let rows = if cursor.remaining > 0 {
        match cursor
            .db
            .audit_after(
                &cursor.filter,
                cursor.after_id,
                cursor.remaining.min(EXPORT_PAGE_ROWS),
            )
            .await
        {
            Ok(rows) => rows,
            Err(error) => {
                tracing::error!(%error, written = cursor.written, "audit export failed mid-stream");
                cursor.finished = true;
                return Some((Err(std::io::Error::other(error.to_string())), cursor));
            }
        }
    } else {
        Vec::new()
    };
    for entry in &rows {
        match cursor.format {
            Format::Json => {
                if cursor.written > 0 {
                    out.push(',');
                }
                out.push_str(&entry_json(entry).to_string());
            }
            Format::Csv => out.push_str(&csv_row(entry)),
        }
        cursor.written += 1;
    }
    cursor.remaining -= rows.len() as i64;
    if let Some(last) = rows.last() {
        cursor.after_id = last.id;
    }
    if (rows.len() as i64) < EXPORT_PAGE_ROWS || cursor.remaining <= 0 {
        cursor.finished = true;
        if cursor.format == Format::Json {
            out.push(']');
        }
    }
    Some((Ok(Bytes::from(out)), cursor))
}

/// `POST /api/foundation/audit-logs/export`: `{"format": "json"|"csv", "limit"?, filters...}`.
async fn export(
    State(state): State<AppState>,
    Json(body): Json<Value>,
) -> Result<Response, AnalyticsMonitoringError> {
    let body: ExportBody = typed_params(body)?;
    let mut v = Validator::new();
    let format = match body.format.as_deref().unwrap_or("json") {
        "json" => Format::Json,
        "csv" => Format::Csv,
        _ => {
            v.error("format", "enum", "format 只能是 json 或 csv");
            Format::Json
        }
    };
    let max_rows = i64::try_from(state.config.query_api.export_max_rows).unwrap_or(i64::MAX);
    let limit = body.limit.unwrap_or(max_rows);
    v.range("limit", limit, 1, max_rows);
    let filter = body.filter.compile(&mut v);
    v.finish()?;

    let cursor = Cursor {
        db: state.db.clone(),
        filter,
        format,
        after_id: 0,
        remaining: limit.min(max_rows),
        written: 0,
        started: false,
        finished: false,
    };
    let stream = futures::stream::unfold(cursor, next_chunk);
    let (content_type, extension) = match format {
        Format::Json => ("application/json; charset=utf-8", "json"),
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    let file_name = format!(
        "audit-logs-{}.{extension}",
        state.clock.now().format("%Y%m%dT%H%M%SZ")
    );
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_are_quoted_and_defused() {
        let entry = AuditEntry {
            id: 7,
            user_id: None,
            user_code: Some("=cmd".into()),
            action: "login_failed".into(),
            resource_type: "auth".into(),
            resource_id: None,
            method: "POST".into(),
            path: "/api/auth/login".into(),
            params: Some("{\"username\":\"a,b\"}".into()),
            ip_address: "192.0.2.1".into(),
            user_agent: "\rcurl".into(),
            status_code: 401,
            duration_ms: 3,
            request_id: None,
            created_at: 0,
        };
        let line = csv_row(&entry);
        let cells = crate::csv_out::read_line(&line);
        assert_eq!(cells.len(), CSV_COLUMNS.len());
        assert_eq!((cells[0].as_str(), cells[3].as_str()), ("7", "'=cmd"));
        assert_eq!(cells[12], "'\rcurl");
        assert_eq!(cells[14], "{\"username\":\"a,b\"}");
    }
}
