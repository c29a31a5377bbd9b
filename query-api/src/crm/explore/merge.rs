//! Merging the groups of each metric's statements into the admin API's rows and totals.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::catalogue::{Dimension, Metric};
use super::query::AnalyticsQuery;
use crate::crm::figures::round2;
use crate::crm::period::Buckets;

/// A group of the result: `(org_code or "", time bucket label or "")`.
type GroupKey = (String, String);

/// The rows of one query as its statements answer, merged by group.
pub(super) struct Merged<'a> {
    query: &'a AnalyticsQuery,
    buckets: Option<Buckets>,
    groups: BTreeMap<GroupKey, Vec<f64>>,
}

impl<'a> Merged<'a> {
    pub(super) fn new(query: &'a AnalyticsQuery) -> Merged<'a> {
        let buckets = query.time_period().map(|period| {
            query
                .window
                .buckets(period)
                .expect("bucket count validated in AnalyticsQuery::parse")
        });
        Merged {
            query,
            buckets,
            groups: BTreeMap::new(),
        }
    }

    /// Whether the statements group by organization.
    pub(super) fn by_org(&self) -> bool {
        self.query.by_org()
    }

    /// Whether the statements group by UTC day.
    pub(super) fn by_day(&self) -> bool {
        self.buckets.is_some()
    }

    /// Adds the `(org_code, UTC day, value)` groups of one statement of metric number `metric`.
    pub(super) fn add(&mut self, metric: usize, rows: Vec<(String, i64, f64)>) {
        for (org, day, value) in rows {
            let time = match &self.buckets {
                Some(buckets) => match buckets.label_of_day(day) {
                    Some(label) => label,
                    None => continue,
                },
                None => String::new(),
            };
            let values = self
                .groups
                .entry((org, time))
                .or_insert_with(|| vec![0.0; self.query.metrics.len()]);
            values[metric] += value;
        }
    }

    /// The rows and the summary, organization names taken from `org_names`.
    pub(super) fn finish(mut self, org_names: &BTreeMap<String, String>) -> Value {
        let query = self.query;
        if query.dimensions.is_empty() && self.groups.is_empty() {
            self.groups
                .insert((String::new(), String::new()), vec![0.0; query.metrics.len()]);
        }
        let mut results = Vec::with_capacity(self.groups.len());
        let mut sums = vec![0.0; query.metrics.len()];
        for ((org, time), values) in self.groups {
            if !query.dimensions.is_empty() && values.iter().all(|v| *v == 0.0) {
                continue;
            }
            let mut row = Map::new();
            for dimension in &query.dimensions {
                match dimension {
                    Dimension::Org => {
                        row.insert("org_code".into(), json!(org));
                        row.insert(
                            "org_name".into(),
                            json!(org_names.get(&org).cloned().unwrap_or_else(|| org.clone())),
                        );
                    }
                    time_dimension => {
                        row.insert(time_dimension.name().into(), json!(time));
                    }
                }
            }
            for (i, metric) in query.metrics.iter().enumerate() {
                sums[i] += values[i];
                row.insert(metric.name().into(), metric_value(*metric, values[i]));
            }
            results.push(Value::Object(row));
        }
        let aggregations: Map<String, Value> = query
            .metrics
            .iter()
            .zip(sums)
            .map(|(metric, sum)| (metric.name().to_string(), metric_value(*metric, sum)))
            .collect();
        json!({
            "results": results,
            "summary": { "total": results.len(), "aggregations": aggregations },
        })
    }
}

pub(super) fn metric_value(metric: Metric, value: f64) -> Value {
    if metric.is_amount() {
        json!(round2(value))
    } else {
        json!(value.round() as i64)
    }
}
