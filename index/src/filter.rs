//! Filters shared by search, counting and aggregations, and their two evaluations: a tantivy query
//! per partition and a predicate over the in-memory tail.
//!
//! The two must agree; the tests run the same expectations against committed and uncommitted
//! records to hold them to it.

use std::ops::Bound;

use chrono::{DateTime, Utc};
use owl_model::{Kind, Level};
use tantivy::Term;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, RangeQuery, TermQuery, TermSetQuery};
use tantivy::schema::{Field, IndexRecordOption};

use crate::error::{IndexError, Result};
use crate::gram::{self, Needle};
use crate::schema::{Fields, RecordView, micros};
use crate::search::TimeRange;

/// Which records a search, count or aggregation looks at. Every condition set must hold; an empty
/// set or `None` does not filter, and neither does an empty string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogFilter {
    /// Inclusive start of the time range.
    pub start: Option<DateTime<Utc>>,
    /// Exclusive end of the time range.
    pub end: Option<DateTime<Utc>>,
    /// Any of these levels.
    pub levels: Vec<Level>,
    /// Any of these service names (exact).
    pub services: Vec<String>,
    /// Any of these regions (exact).
    pub regions: Vec<String>,
    /// Any of these environments (exact).
    pub environments: Vec<String>,
    /// Any of these kinds; also decides which partitions are opened.
    pub kinds: Vec<Kind>,
    /// Any of these modules (exact).
    pub modules: Vec<String>,
    /// Any of these hosts (exact).
    pub hosts: Vec<String>,
    /// Trace id (exact).
    pub trace_id: Option<String>,
    /// Request id (exact).
    pub request_id: Option<String>,
    /// User id (exact).
    pub user_id: Option<String>,
    /// Case-insensitive substring of the url.
    pub url: Option<String>,
    /// Case-insensitive substring of the message, the error message or the user name (the log API's
    /// `keyword`).
    pub keyword: Option<String>,
    /// Case-insensitive substring of the message or the error message (the `keyword` of the log API's
    /// error list, which does not search user names).
    pub error_keyword: Option<String>,
    /// Case-insensitive substring of the message only (the CRM analytics API's `keyword`).
    pub message: Option<String>,
    /// Case-insensitive substring of the source file.
    pub file: Option<String>,
    /// Case-insensitive substring of the function name.
    pub function: Option<String>,
    /// Error type (exact).
    pub error_type: Option<String>,
    /// Error code (exact).
    pub error_code: Option<String>,
    /// Smallest duration in milliseconds, inclusive; records without a duration do not match.
    pub min_duration_ms: Option<f64>,
    /// Largest duration in milliseconds, inclusive; records without a duration do not match.
    pub max_duration_ms: Option<f64>,
    /// HTTP status code.
    pub status_code: Option<u16>,
    /// Whether the record is an error: ERROR level, an `error` object, or a status of 500 or more.
    pub has_error: Option<bool>,
}

impl LogFilter {
    /// A filter on the time range `[start, end)` only.
    pub fn between(start: DateTime<Utc>, end: DateTime<Utc>) -> LogFilter {
        LogFilter {
            start: Some(start),
            end: Some(end),
            ..LogFilter::default()
        }
    }

    /// Whether `kind` may match.
    pub(crate) fn wants_kind(&self, kind: Kind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&kind)
    }

    pub(crate) fn compile(&self) -> Result<CompiledFilter> {
        for (field, value) in [
            ("min_duration_ms", self.min_duration_ms),
            ("max_duration_ms", self.max_duration_ms),
        ] {
            if value.is_some_and(|v| v.is_nan()) {
                return Err(IndexError::InvalidRequest {
                    field,
                    reason: "is not a number".to_string(),
                });
            }
        }
        let exact = |v: &Option<String>| v.as_ref().filter(|s| !s.is_empty()).cloned();
        let set = |v: &[String]| v.iter().filter(|s| !s.is_empty()).cloned().collect::<Vec<_>>();
        let needle = |v: &Option<String>| v.as_deref().and_then(Needle::new);
        Ok(CompiledFilter {
            start: self.start.as_ref().map(micros),
            end: self.end.as_ref().map(micros),
            levels: self.levels.clone(),
            services: set(&self.services),
            regions: set(&self.regions),
            environments: set(&self.environments),
            kinds: self.kinds.clone(),
            modules: set(&self.modules),
            hosts: set(&self.hosts),
            trace_id: exact(&self.trace_id),
            request_id: exact(&self.request_id),
            user_id: exact(&self.user_id),
            url: needle(&self.url),
            keyword: needle(&self.keyword),
            error_keyword: needle(&self.error_keyword),
            message: needle(&self.message),
            file: needle(&self.file),
            function: needle(&self.function),
            error_type: exact(&self.error_type),
            error_code: exact(&self.error_code),
            min_duration: self.min_duration_ms,
            max_duration: self.max_duration_ms,
            status: self.status_code,
            has_error: self.has_error,
        })
    }
}

/// A [`LogFilter`] prepared once per request.
#[derive(Debug, Clone)]
pub(crate) struct CompiledFilter {
    pub start: Option<i64>,
    pub end: Option<i64>,
    levels: Vec<Level>,
    services: Vec<String>,
    regions: Vec<String>,
    environments: Vec<String>,
    kinds: Vec<Kind>,
    modules: Vec<String>,
    hosts: Vec<String>,
    trace_id: Option<String>,
    request_id: Option<String>,
    user_id: Option<String>,
    url: Option<Needle>,
    keyword: Option<Needle>,
    error_keyword: Option<Needle>,
    message: Option<Needle>,
    file: Option<Needle>,
    function: Option<Needle>,
    error_type: Option<String>,
    error_code: Option<String>,
    min_duration: Option<f64>,
    max_duration: Option<f64>,
    status: Option<u16>,
    has_error: Option<bool>,
}

fn in_set(set: &[String], value: Option<&str>) -> bool {
    set.is_empty() || value.is_some_and(|v| set.iter().any(|s| s == v))
}

fn equals(wanted: &Option<String>, value: Option<&str>) -> bool {
    wanted.as_deref().is_none_or(|w| value == Some(w))
}

fn contains(needle: &Option<Needle>, value: Option<&str>) -> bool {
    needle.as_ref().is_none_or(|n| value.is_some_and(|v| n.is_in(v)))
}

impl CompiledFilter {
    /// Evaluates the filter on a record, the way the tantivy query does.
    pub(crate) fn matches(&self, view: &RecordView<'_>) -> bool {
        self.start.is_none_or(|start| view.ts >= start)
            && self.end.is_none_or(|end| view.ts < end)
            && (self.levels.is_empty() || self.levels.contains(&view.level))
            && (self.kinds.is_empty() || self.kinds.contains(&view.kind))
            && in_set(&self.services, view.service)
            && in_set(&self.regions, view.region)
            && in_set(&self.environments, view.environment)
            && in_set(&self.modules, view.module)
            && in_set(&self.hosts, view.host)
            && equals(&self.trace_id, view.trace_id)
            && equals(&self.request_id, view.request_id)
            && equals(&self.user_id, view.user_id)
            && equals(&self.error_type, view.error_type)
            && equals(&self.error_code, view.error_code)
            && contains(&self.url, view.url)
            && contains(&self.message, view.message)
            && contains(&self.file, view.file)
            && contains(&self.function, view.function)
            && self.keyword.as_ref().is_none_or(|n| {
                [view.message, view.error_message, view.user_name]
                    .into_iter()
                    .flatten()
                    .any(|v| n.is_in(v))
            })
            && self.error_keyword.as_ref().is_none_or(|n| {
                [view.message, view.error_message]
                    .into_iter()
                    .flatten()
                    .any(|v| n.is_in(v))
            })
            && self
                .min_duration
                .is_none_or(|min| view.duration.is_some_and(|d| d >= min))
            && self
                .max_duration
                .is_none_or(|max| view.duration.is_some_and(|d| d <= max))
            && self.status.is_none_or(|s| view.status == Some(s))
            && self.has_error.is_none_or(|e| view.has_error == e)
    }

    /// The tantivy query of the filter for a partition covering `[day_start, day_end)` (micros):
    /// the time condition is left out when the partition lies inside the range.
    pub(crate) fn to_query(&self, fields: &Fields, day_start: i64, day_end: i64) -> Box<dyn Query> {
        self.build_query(fields, day_start, day_end, true)
    }

    /// The query of a sorted search, and the time condition for the collector to apply when the
    /// query leaves it out: when other conditions select the documents, checking the timestamp of
    /// each of them (which the collector reads anyway to sort) beats a range over the column,
    /// which scans it from the segment's first document up to the first match.
    pub(crate) fn to_search_query(
        &self,
        fields: &Fields,
        day_start: i64,
        day_end: i64,
    ) -> (Box<dyn Query>, Option<TimeRange>) {
        let lower = self.start.filter(|&start| start > day_start);
        let upper = self.end.filter(|&end| end < day_end);
        if lower.is_none() && upper.is_none() {
            return (self.build_query(fields, day_start, day_end, false), None);
        }
        let rest = self.build_query(fields, day_start, day_end, false);
        if rest.is::<AllQuery>() {
            // Time is the only condition: the range over the column drives.
            return (self.build_query(fields, day_start, day_end, true), None);
        }
        let time = TimeRange {
            start: lower.unwrap_or(i64::MIN),
            end: upper.unwrap_or(i64::MAX),
        };
        (rest, Some(time))
    }

    fn build_query(&self, fields: &Fields, day_start: i64, day_end: i64, with_time: bool) -> Box<dyn Query> {
        let mut clauses: Vec<Box<dyn Query>> = Vec::new();
        let lower = self.start.filter(|&start| with_time && start > day_start);
        let upper = self.end.filter(|&end| with_time && end < day_end);
        if lower.is_some() || upper.is_some() {
            let bound = |v: Option<i64>, inclusive: bool| match v {
                None => Bound::Unbounded,
                Some(v) if inclusive => Bound::Included(Term::from_field_i64(fields.ts, v)),
                Some(v) => Bound::Excluded(Term::from_field_i64(fields.ts, v)),
            };
            clauses.push(Box::new(RangeQuery::new(bound(lower, true), bound(upper, false))));
        }
        if !self.levels.is_empty() {
            let terms = self
                .levels
                .iter()
                .map(|l| Term::from_field_u64(fields.level, l.rank()));
            clauses.push(any_term(terms.collect()));
        }
        // No kind clause: a partition holds one kind, and only wanted kinds are opened.
        for (field, set) in [
            (fields.service, &self.services),
            (fields.region, &self.regions),
            (fields.environment, &self.environments),
            (fields.module, &self.modules),
            (fields.host, &self.hosts),
        ] {
            if !set.is_empty() {
                clauses.push(any_term(
                    set.iter().map(|v| Term::from_field_text(field, v)).collect(),
                ));
            }
        }
        for (field, value) in [
            (fields.trace_id, &self.trace_id),
            (fields.request_id, &self.request_id),
            (fields.user_id, &self.user_id),
            (fields.error_type, &self.error_type),
            (fields.error_code, &self.error_code),
        ] {
            if let Some(value) = value {
                clauses.push(term_query(Term::from_field_text(field, value)));
            }
        }
        for (fields, needle) in [
            (&[fields.url][..], &self.url),
            (&[fields.message][..], &self.message),
            (&[fields.file][..], &self.file),
            (&[fields.function][..], &self.function),
            (
                &[fields.message, fields.error_message, fields.user_name][..],
                &self.keyword,
            ),
            (&[fields.message, fields.error_message][..], &self.error_keyword),
        ] {
            if let Some(needle) = needle {
                clauses.push(gram::any_field_query(needle, fields));
            }
        }
        if self.min_duration.is_some() || self.max_duration.is_some() {
            let bound = |v: Option<f64>| match v {
                None => Bound::Unbounded,
                Some(v) => Bound::Included(Term::from_field_f64(fields.duration, v)),
            };
            // A range on an f64 column that is unbounded on both ends would not require a value.
            let lower = match self.min_duration {
                None => Bound::Included(Term::from_field_f64(fields.duration, f64::NEG_INFINITY)),
                some => bound(some),
            };
            clauses.push(Box::new(RangeQuery::new(lower, bound(self.max_duration))));
        }
        if let Some(status) = self.status {
            clauses.push(term_query(Term::from_field_u64(fields.status, u64::from(status))));
        }
        if let Some(has_error) = self.has_error {
            clauses.push(term_query(Term::from_field_u64(
                fields.has_error,
                u64::from(has_error),
            )));
        }
        match clauses.len() {
            0 => Box::new(AllQuery),
            1 => clauses.pop().expect("one clause, checked by the match"),
            _ => Box::new(BooleanQuery::new(
                clauses.into_iter().map(|q| (Occur::Must, q)).collect(),
            )),
        }
    }
}

fn term_query(term: Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(term, IndexRecordOption::Basic))
}

/// Values of one field above which a set becomes a [`TermSetQuery`] rather than a union of term
/// queries.
const MAX_UNION_TERMS: usize = 16;

/// Records holding any of `terms` (all of one field).
///
/// A term query reads its postings lazily, so an intersection led by a rarer clause skips through
/// it by blocks. `TermSetQuery` instead builds an FST and fills a bitset of every matching document
/// of the segment up front: for `service = Form` that is a large share of a day, however narrow the
/// rest of the filter. It only pays off for sets too large for a union.
fn any_term(mut terms: Vec<Term>) -> Box<dyn Query> {
    terms.sort();
    terms.dedup();
    match terms.len() {
        1 => term_query(terms.pop().expect("one term, checked by the match")),
        n if n <= MAX_UNION_TERMS => Box::new(BooleanQuery::new(
            terms
                .into_iter()
                .map(|t| (Occur::Should, term_query(t)))
                .collect(),
        )),
        _ => Box::new(TermSetQuery::new(terms)),
    }
}

/// A query for one exact value of a raw string field.
pub(crate) fn exact_query(field: Field, value: &str) -> Box<dyn Query> {
    term_query(Term::from_field_text(field, value))
}
