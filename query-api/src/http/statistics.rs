//! The platform API's log statistics (004's 获取日志统计: `GET /api/statistics?start_date=&end_date=`),
//! in its `{status, data, message}` envelope: the records of the UTC days given, both included
//! (without dates the last 7 days, at most 30), counted in total, by level and by module (the
//! service), within the caller's regions. 004 also names instance and sync statistics at this
//! path; Owl manages neither, and its one example of the path asks for log statistics.

use axum::extract::State;
use axum::http::Method;
use chrono::Days;
use owl_index::LogFilter;
use owl_model::Level;
use owl_model::clock::millis_to_utc;
use serde_json::{Value, json};

use super::Routes;
use super::crm_logs::{by_level, scoped_stats};
use super::extract::AuthUser;
use super::openapi::Doc;
use crate::crm::period::{PeriodError, Window, parse_optional_date};
use crate::envelope::{Family, PlatformError, StatusOk};
use crate::logs::params::{Params, RawQuery};
use crate::permissions::{Access, Permission};
use crate::state::AppState;
use crate::validate::Validator;

/// The parameters.
const PARAMS: &[&str] = &["start_date", "end_date"];
/// Days counted without dates.
const DEFAULT_DAYS: u64 = 7;
/// The widest range, in days.
const MAX_DAYS: i64 = 30;

/// The routes.
pub(crate) fn routes() -> Routes {
    Routes::new(Family::Platform, "statistics")
        .route(
            Method::GET,
            "/api/statistics",
            Access::perm(Permission::LogRead),
            statistics,
        )
        .doc(Doc::query::<StatisticsParams>())
}

/// The parameters, as documented (read by hand from [`PARAMS`], so an unknown one is refused).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct StatisticsParams {
    /// First day, `YYYY-MM-DD` (UTC); without it, as many days as the default before `end_date`.
    #[param(value_type = Option<String>, format = Date)]
    start_date: Option<String>,
    /// Last day, included, `YYYY-MM-DD` (UTC); without it, today.
    #[param(value_type = Option<String>, format = Date)]
    end_date: Option<String>,
}

/// The days of `start_date` and `end_date`, or why they are refused.
fn window(params: &Params, v: &mut Validator, today: chrono::NaiveDate) -> Option<Window> {
    let date = |v: &mut Validator, field: &'static str| match parse_optional_date(
        field,
        params.text(v, field).as_deref(),
    ) {
        Ok(date) => date,
        Err(error) => {
            v.error(field, "date", error.to_string());
            None
        }
    };
    let (start, end) = (date(v, "start_date"), date(v, "end_date"));
    let default = Window {
        first: today - Days::new(DEFAULT_DAYS - 1),
        last: today,
    };
    match Window::from_params(start, end, default) {
        Ok(window) if window.days() > MAX_DAYS => {
            v.error("start_date", "range", format!("时间范围不能超过 {MAX_DAYS} 天"));
            None
        }
        Ok(window) => Some(window),
        Err(error @ PeriodError::Reversed { .. }) => {
            v.error("end_date", "range", error.to_string());
            None
        }
        Err(error) => {
            v.error("start_date", "date", error.to_string());
            None
        }
    }
}

/// `GET /api/statistics`.
async fn statistics(
    State(state): State<AppState>,
    user: AuthUser,
    raw: RawQuery,
) -> Result<StatusOk<Value>, PlatformError> {
    let mut v = Validator::new();
    let params = Params::new(raw, PARAMS, &[], &mut v);
    let window = window(&params, &mut v, state.clock.now().date_naive());
    v.finish_parameters()?;
    let window = window.expect("a window when the parameters are valid");
    let filter = LogFilter {
        start: Some(millis_to_utc(window.start_ms())),
        end: Some(millis_to_utc(window.end_ms())),
        ..LogFilter::default()
    };
    let stats = scoped_stats(&state, &user, filter).await?;
    Ok(StatusOk::new(
        json!({
            "total_logs": stats.total,
            "by_level": by_level(&stats),
            "by_module": stats.by_service,
            "error_count": stats.level_count(Level::Error),
            "warning_count": stats.level_count(Level::Warn),
            "start_date": window.first.to_string(),
            "end_date": window.last.to_string(),
        }),
        "获取日志统计成功",
    ))
}

#[cfg(test)]
mod tests {
    use utoipa::IntoParams;

    #[test]
    fn the_documented_parameters_are_the_ones_read() {
        let documented: Vec<String> = super::StatisticsParams::into_params(|| None)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(documented, super::PARAMS);
    }
}
