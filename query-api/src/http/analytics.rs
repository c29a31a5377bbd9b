//! The admin API's analytics: `GET /api/analytics/overview`, `POST /api/analytics/query`,
//! `POST /api/analytics/export` and the declaration `GET /api/analytics/metrics`, in the admin API's
//! `{success: true, data}` envelope. The engine and the declared metrics, dimensions and filters
//! are in `crm::explore`.
//!
//! A user who is not a super admin reads only their organization and its descendants: `org_code`
//! (overview) and `org_codes` (query, export) narrow that scope further, each code with its
//! descendants, and a code outside it is a 400 on that field. Answers are cached like the CRM analytics API's (the
//! key holds the normalised request and the resulting scope); an export reuses the cached answer of
//! the same query.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::analytics_monitoring::json_body;
use super::extract::{AuthUser, Json, Query};
use super::{AuditPolicy, Routes};
use crate::authz;
use crate::crm::answers::to_json_text;
use crate::crm::explore::{self, AnalyticsQuery, QueryBody};
use crate::crm::{AnalyticsCache, CacheStatus, CrmStore, OrgScope};
use crate::envelope::{AuthAdminError, Failure, Family, Success};
use crate::permissions::{Access, Permission};
use crate::state::AppState;
use crate::validate::Validator;

/// The routes.
pub(crate) fn routes() -> Routes {
    let read = Access::perm(Permission::AnalyticsRead);
    Routes::new(Family::AuthAdmin, "analytics")
        .route(Method::GET, "/api/analytics/overview", read, overview)
        .audited(
            Method::POST,
            "/api/analytics/query",
            read,
            "query",
            AuditPolicy::Mutations,
            query,
        )
        .route(Method::GET, "/api/analytics/metrics", read, metrics)
        .audited(
            Method::POST,
            "/api/analytics/export",
            Access::perm(Permission::AnalyticsExport),
            "export",
            AuditPolicy::Always,
            export,
        )
        .doc(super::openapi::Doc::default().produces(&["text/csv"]))
}

/// The router of these endpoints.
pub fn router() -> Router<AppState> {
    routes().into_router()
}

/// Organization names by code, from Owl's tree.
async fn org_names(state: &AppState) -> Result<BTreeMap<String, String>, Failure> {
    Ok(state
        .db
        .all_organizations()
        .await?
        .into_iter()
        .map(|o| (o.org_code, o.org_name))
        .collect())
}

/// The caller's scope narrowed to `requested` (validated into `v`).
async fn narrowed_scope(
    state: &AppState,
    user: &AuthUser,
    v: &mut Validator,
    field: &str,
    requested: &[String],
) -> Result<OrgScope, Failure> {
    let scope = authz::org_scope(user);
    if requested.is_empty() {
        return Ok(scope);
    }
    let tree = state.db.all_organizations().await?;
    Ok(explore::narrow_scope(v, field, requested, &scope, &tree))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct OverviewParams {
    start_date: Option<String>,
    end_date: Option<String>,
    org_code: Option<String>,
}

/// `GET /api/analytics/overview?start_date=&end_date=&org_code=` (default: the last 30 days).
async fn overview(
    State(state): State<AppState>,
    user: AuthUser,
    Query(params): Query<OverviewParams>,
) -> Result<Response, AuthAdminError> {
    let mut v = Validator::new();
    let today = state.clock.now().date_naive();
    let window = explore::range(
        &mut v,
        params.start_date.as_deref(),
        params.end_date.as_deref(),
        today,
    );
    let org_code = params
        .org_code
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let requested: Vec<String> = org_code.iter().cloned().collect();
    let scope = narrowed_scope(&state, &user, &mut v, "org_code", &requested).await?;
    v.finish()?;
    let window = window.expect("validated above");
    let currency = state.config.query_api.crm_currency_code.clone();
    let key = AnalyticsCache::key(
        "admin:overview",
        &json!({ "start_date": window.first.to_string(), "end_date": window.last.to_string(), "org_code": org_code, "currency": currency }),
        &scope,
    );
    let (data, status) = AnalyticsCache::of(&state)
        .get_or_compute(&key, || async {
            let names = org_names(&state).await?;
            let store = CrmStore::of(&state).await?;
            Ok(to_json_text(
                &store.overview(&window, &scope, &names, &currency).await?,
            ))
        })
        .await?;
    Ok(json_body(format!(r#"{{"success":true,"data":{data}}}"#), status))
}

/// Validates a query body and answers its (cached) data.
async fn run(
    state: &AppState,
    user: &AuthUser,
    body: &QueryBody,
) -> Result<(AnalyticsQuery, String, CacheStatus), Failure> {
    let mut v = Validator::new();
    let parsed = AnalyticsQuery::parse(&mut v, body, state.clock.now().date_naive());
    let requested = parsed.as_ref().map(|q| q.org_codes.clone()).unwrap_or_default();
    let scope = narrowed_scope(state, user, &mut v, "org_codes", &requested).await?;
    v.finish()?;
    let query = parsed.expect("validated above");
    let currency = state.config.query_api.crm_currency_code.clone();
    let mut params = query.canonical();
    params["currency"] = json!(currency);
    let key = AnalyticsCache::key("admin:query", &params, &scope);
    let (data, status) = AnalyticsCache::of(state)
        .get_or_compute(&key, || async {
            let names = if query.columns().contains(&"org_name") {
                org_names(state).await?
            } else {
                BTreeMap::new()
            };
            let store = CrmStore::of(state).await?;
            Ok(to_json_text(
                &store.run_query(&query, &scope, &names, &currency).await?,
            ))
        })
        .await?;
    Ok((query, data, status))
}

/// `POST /api/analytics/query`.
async fn query(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<QueryBody>,
) -> Result<Response, AuthAdminError> {
    let (_, data, status) = run(&state, &user, &body).await?;
    Ok(json_body(format!(r#"{{"success":true,"data":{data}}}"#), status))
}

/// `GET /api/analytics/metrics`: the declared metrics, dimensions and filters.
async fn metrics() -> Success<Value> {
    Success::data(explore::catalogue())
}

/// `POST /api/analytics/export`: the query's results as a CSV (default) or JSON file.
async fn export(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<QueryBody>,
) -> Result<Response, AuthAdminError> {
    let format = body
        .format
        .as_deref()
        .map(|f| f.trim().to_ascii_lowercase())
        .unwrap_or_else(|| "csv".to_string());
    if !matches!(format.as_str(), "csv" | "json") {
        return Err(Failure::invalid_field("format", "enum", "format 只能是 csv 或 json").into());
    }
    let (query, data, status) = run(&state, &user, &body).await?;
    let data: Value = serde_json::from_str(&data)
        .map_err(|e| Failure::internal(anyhow::anyhow!("cached analytics answer unreadable: {e}")))?;
    let results = data["results"].as_array().cloned().unwrap_or_default();
    let max_rows = state.config.query_api.export_max_rows;
    if results.len() > max_rows {
        let message = format!(
            "结果共 {} 行，超过导出上限 {max_rows} 行，请缩小时间范围或减少维度",
            results.len()
        );
        return Err(Failure::invalid_field("dimensions", "limit", message).into());
    }
    let stamp = state.clock.now().format("%Y%m%dT%H%M%SZ");
    let (content_type, file_name, body) = match format.as_str() {
        "json" => (
            "application/json",
            format!("analytics-{stamp}.json"),
            Value::Array(results).to_string(),
        ),
        _ => (
            "text/csv; charset=utf-8",
            format!("analytics-{stamp}.csv"),
            explore::to_csv(&query.columns(), &results),
        ),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let disposition = format!("attachment; filename=\"{file_name}\"");
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).expect("file names are ASCII"),
    );
    headers.insert("x-cache", HeaderValue::from_static(status.header_value()));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_declare_their_permissions() {
        let table = routes();
        let access: Vec<(String, Access)> = table
            .specs()
            .map(|s| (format!("{} {}", s.method, s.path), s.access))
            .collect();
        assert!(access.contains(&(
            "POST /api/analytics/export".into(),
            Access::perm(Permission::AnalyticsExport)
        )));
        assert!(access.contains(&(
            "GET /api/analytics/overview".into(),
            Access::perm(Permission::AnalyticsRead)
        )));
        assert!(table.specs().all(|s| s.family == Family::AuthAdmin));
    }
}
