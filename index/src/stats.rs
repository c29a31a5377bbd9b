//! Aggregations over the filtered records, computed from fast fields in one pass.
//!
//! tantivy's aggregation framework would give approximate percentiles (DDSketch) and one request
//! per breakdown; one collector reading the handful of columns per matching document gives every
//! breakdown of the log API's stats, errors and slow-request summaries at once, and exact percentiles by
//! keeping the durations of the filtered set (8 bytes per request). String breakdowns count by
//! dictionary ordinal per segment and resolve each ordinal to its string once, at harvest.
//!
//! Percentiles use the nearest-rank definition: the `p`-th percentile of `n` sorted values is the
//! value at 1-based rank `ceil(p / 100 * n)`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use owl_model::Level;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

use crate::filter::LogFilter;
use crate::schema::{
    F_DURATION, F_ERROR_TYPE, F_HAS_ERROR, F_LEVEL, F_MODULE, F_PATH, F_REGION, F_SERVICE, F_TS, RecordView,
};

const MICROS_PER_HOUR: i64 = 3_600_000_000;
const HOURS_PER_DAY: i64 = 24;

/// An aggregation request.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsRequest {
    /// Which records.
    pub filter: LogFilter,
    /// A request is slow when its duration is at least this many milliseconds.
    pub slow_threshold_ms: f64,
    /// How many top paths to return.
    pub top_paths: usize,
}

impl Default for StatsRequest {
    fn default() -> Self {
        StatsRequest {
            filter: LogFilter::default(),
            slow_threshold_ms: 2000.0,
            top_paths: 10,
        }
    }
}

/// Counts of one time bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeBucket {
    /// Start of the bucket (UTC).
    pub start: DateTime<Utc>,
    /// Records in the bucket.
    pub count: u64,
    /// Error records in the bucket (ERROR level, an error, or status >= 500).
    pub error_count: u64,
    /// Records with a duration in the bucket.
    pub duration_count: u64,
    /// Mean duration of those, in milliseconds.
    pub avg_duration_ms: Option<f64>,
}

impl TimeBucket {
    /// Share of error records, 0 to 1.
    pub fn error_rate(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.error_count as f64 / self.count as f64
        }
    }
}

/// Duration figures of the records that have one (requests).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DurationStats {
    /// Records with a duration.
    pub count: u64,
    /// Mean, in milliseconds.
    pub avg_ms: Option<f64>,
    /// Largest, in milliseconds.
    pub max_ms: Option<f64>,
    /// 95th percentile (nearest rank), in milliseconds.
    pub p95_ms: Option<f64>,
    /// 99th percentile (nearest rank), in milliseconds.
    pub p99_ms: Option<f64>,
}

/// Requests to one path.
#[derive(Debug, Clone, PartialEq)]
pub struct PathStats {
    /// Url without query string.
    pub path: String,
    /// Records with this path.
    pub count: u64,
    /// Mean duration of those with a duration, in milliseconds.
    pub avg_duration_ms: Option<f64>,
}

/// Aggregations of the records matching a filter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogStats {
    /// Matching records.
    pub total: u64,
    /// Error records (ERROR level, an error, or status >= 500).
    pub error_count: u64,
    /// Records per level; every level is present.
    pub by_level: BTreeMap<Level, u64>,
    /// Records per service name.
    pub by_service: BTreeMap<String, u64>,
    /// Records per region.
    pub by_region: BTreeMap<String, u64>,
    /// Records per module.
    pub by_module: BTreeMap<String, u64>,
    /// Records per error type.
    pub by_error_type: BTreeMap<String, u64>,
    /// Non-empty hour buckets, oldest first.
    pub by_hour: Vec<TimeBucket>,
    /// Non-empty UTC day buckets, oldest first.
    pub by_day: Vec<TimeBucket>,
    /// Durations of the records that have one.
    pub durations: DurationStats,
    /// Records with a duration of at least the request's threshold.
    pub slow_count: u64,
    /// Paths by count (descending, then path), at most the requested number.
    pub top_paths: Vec<PathStats>,
}

impl LogStats {
    /// Distinct service names, sorted.
    pub fn services(&self) -> Vec<String> {
        self.by_service.keys().cloned().collect()
    }

    /// Distinct modules, sorted.
    pub fn modules(&self) -> Vec<String> {
        self.by_module.keys().cloned().collect()
    }

    /// Records of one level.
    pub fn level_count(&self, level: Level) -> u64 {
        self.by_level.get(&level).copied().unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct BucketSums {
    count: u64,
    errors: u64,
    duration_count: u64,
    duration_sum: f64,
}

#[derive(Debug, Clone, Copy, Default)]
struct PathSums {
    count: u64,
    duration_count: u64,
    duration_sum: f64,
}

/// Partial aggregation of one segment, partition or tail; merged with [`Partial::merge`].
#[derive(Debug, Default)]
pub(crate) struct Partial {
    total: u64,
    errors: u64,
    levels: [u64; 4],
    services: BTreeMap<String, u64>,
    regions: BTreeMap<String, u64>,
    modules: BTreeMap<String, u64>,
    error_types: BTreeMap<String, u64>,
    paths: BTreeMap<String, PathSums>,
    hours: BTreeMap<i64, BucketSums>,
    durations: Vec<f64>,
    slow: u64,
}

impl Partial {
    pub(crate) fn merge(&mut self, other: Partial) {
        self.total += other.total;
        self.errors += other.errors;
        for (mine, theirs) in self.levels.iter_mut().zip(other.levels) {
            *mine += theirs;
        }
        for (mine, theirs) in [
            (&mut self.services, other.services),
            (&mut self.regions, other.regions),
            (&mut self.modules, other.modules),
            (&mut self.error_types, other.error_types),
        ] {
            for (key, count) in theirs {
                *mine.entry(key).or_default() += count;
            }
        }
        for (path, sums) in other.paths {
            let mine = self.paths.entry(path).or_default();
            mine.count += sums.count;
            mine.duration_count += sums.duration_count;
            mine.duration_sum += sums.duration_sum;
        }
        for (hour, sums) in other.hours {
            add_bucket(self.hours.entry(hour).or_default(), sums);
        }
        self.durations.extend(other.durations);
        self.slow += other.slow;
    }

    /// Adds one tail record.
    pub(crate) fn add_view(&mut self, view: &RecordView<'_>, slow_threshold_ms: f64) {
        self.total += 1;
        self.errors += u64::from(view.has_error);
        self.levels[view.level.rank() as usize] += 1;
        for (map, value) in [
            (&mut self.services, view.service),
            (&mut self.regions, view.region),
            (&mut self.modules, view.module),
            (&mut self.error_types, view.error_type),
        ] {
            if let Some(value) = value {
                *map.entry(value.to_string()).or_default() += 1;
            }
        }
        let bucket = self.hours.entry(view.ts.div_euclid(MICROS_PER_HOUR)).or_default();
        bucket.count += 1;
        bucket.errors += u64::from(view.has_error);
        if let Some(d) = view.duration {
            bucket.duration_count += 1;
            bucket.duration_sum += d;
            self.durations.push(d);
            self.slow += u64::from(d >= slow_threshold_ms);
        }
        if let Some(path) = view.path {
            let sums = self.paths.entry(path.to_string()).or_default();
            sums.count += 1;
            if let Some(d) = view.duration {
                sums.duration_count += 1;
                sums.duration_sum += d;
            }
        }
    }

    pub(crate) fn finish(mut self, top_paths: usize) -> LogStats {
        let by_hour: Vec<TimeBucket> = self
            .hours
            .iter()
            .map(|(&hour, sums)| bucket(hour, sums))
            .collect();
        let mut days: BTreeMap<i64, BucketSums> = BTreeMap::new();
        for (hour, sums) in &self.hours {
            add_bucket(
                days.entry(hour.div_euclid(HOURS_PER_DAY) * HOURS_PER_DAY)
                    .or_default(),
                *sums,
            );
        }
        let by_day = days.iter().map(|(&hour, sums)| bucket(hour, sums)).collect();
        self.durations.sort_by(f64::total_cmp);
        let count = self.durations.len() as u64;
        let durations = DurationStats {
            count,
            avg_ms: (count > 0).then(|| self.durations.iter().sum::<f64>() / count as f64),
            max_ms: self.durations.last().copied(),
            p95_ms: percentile(&self.durations, 95.0),
            p99_ms: percentile(&self.durations, 99.0),
        };
        let mut paths: Vec<PathStats> = self
            .paths
            .into_iter()
            .map(|(path, sums)| PathStats {
                path,
                count: sums.count,
                avg_duration_ms: mean(sums.duration_sum, sums.duration_count),
            })
            .collect();
        // Stable sort over the path-ordered map: equal counts stay in path order.
        paths.sort_by_key(|p| std::cmp::Reverse(p.count));
        paths.truncate(top_paths);
        LogStats {
            total: self.total,
            error_count: self.errors,
            by_level: Level::ALL
                .iter()
                .map(|&l| (l, self.levels[l.rank() as usize]))
                .collect(),
            by_service: self.services,
            by_region: self.regions,
            by_module: self.modules,
            by_error_type: self.error_types,
            by_hour,
            by_day,
            durations,
            slow_count: self.slow,
            top_paths: paths,
        }
    }
}

fn add_bucket(into: &mut BucketSums, sums: BucketSums) {
    into.count += sums.count;
    into.errors += sums.errors;
    into.duration_count += sums.duration_count;
    into.duration_sum += sums.duration_sum;
}

fn mean(sum: f64, count: u64) -> Option<f64> {
    (count > 0).then(|| sum / count as f64)
}

fn bucket(hour: i64, sums: &BucketSums) -> TimeBucket {
    TimeBucket {
        start: DateTime::from_timestamp_micros(hour * MICROS_PER_HOUR).unwrap_or_default(),
        count: sums.count,
        error_count: sums.errors,
        duration_count: sums.duration_count,
        avg_duration_ms: mean(sums.duration_sum, sums.duration_count),
    }
}

/// Nearest-rank percentile of sorted values.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Computes a [`Partial`] over the matching documents of each segment.
pub(crate) struct StatsCollector {
    pub slow_threshold_ms: f64,
}

/// Counts per dictionary ordinal of one string column.
struct OrdCounts {
    column: Option<StrColumn>,
    counts: Vec<u64>,
}

impl OrdCounts {
    fn new(column: Option<StrColumn>) -> OrdCounts {
        let terms = column.as_ref().map_or(0, |c| c.num_terms());
        OrdCounts {
            column,
            counts: vec![0; terms],
        }
    }

    fn ord(&self, doc: DocId) -> Option<u64> {
        self.column.as_ref().and_then(|c| c.ords().first(doc))
    }

    fn fill(&self, docs: &[DocId], out: &mut Vec<Option<u64>>) {
        out.clear();
        out.resize(docs.len(), None);
        if let Some(column) = &self.column {
            column.ords().first_vals(docs, out);
        }
    }

    fn resolve(&self, ord: usize) -> String {
        let mut text = String::new();
        if let Some(column) = &self.column {
            // The ordinal came from this column's own dictionary.
            let _ = column.ord_to_str(ord as u64, &mut text);
        }
        text
    }

    fn into_map(self) -> BTreeMap<String, u64> {
        let mut map = BTreeMap::new();
        for (ord, &count) in self.counts.iter().enumerate() {
            if count > 0 {
                map.insert(self.resolve(ord), count);
            }
        }
        map
    }
}

pub(crate) struct StatsSegment {
    slow_threshold_ms: f64,
    ts: Option<Column<i64>>,
    level: Option<Column<u64>>,
    has_error: Option<Column<u64>>,
    duration: Option<Column<f64>>,
    services: OrdCounts,
    regions: OrdCounts,
    modules: OrdCounts,
    error_types: OrdCounts,
    paths: OrdCounts,
    path_durations: Vec<(u64, f64)>,
    partial: Partial,
    /// The last hour seen and its sums: documents of a segment mostly arrive in time order, so
    /// this saves a map lookup per document.
    current_hour: Option<(i64, BucketSums)>,
    block: Block,
}

/// Column values of one document.
#[derive(Debug, Clone, Copy)]
struct Row {
    ts: Option<i64>,
    level: Option<u64>,
    has_error: Option<u64>,
    duration: Option<f64>,
    /// Ordinals of service, region, module, error type and path.
    ords: [Option<u64>; 5],
}

/// Column values of a block of documents, buffers reused across blocks.
#[derive(Debug, Default)]
struct Block {
    ts: Vec<Option<i64>>,
    level: Vec<Option<u64>>,
    has_error: Vec<Option<u64>>,
    duration: Vec<Option<f64>>,
    ords: [Vec<Option<u64>>; 5],
}

fn fill<T: PartialOrd + Copy + std::fmt::Debug + Send + Sync + 'static>(
    column: &Option<Column<T>>,
    docs: &[DocId],
    out: &mut Vec<Option<T>>,
) {
    out.clear();
    out.resize(docs.len(), None);
    if let Some(column) = column {
        column.first_vals(docs, out);
    }
}

impl Collector for StatsCollector {
    type Fruit = Partial;
    type Child = StatsSegment;

    fn for_segment(&self, _segment: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<StatsSegment> {
        let fast = reader.fast_fields();
        let paths = OrdCounts::new(fast.str(F_PATH)?);
        let path_terms = paths.counts.len();
        Ok(StatsSegment {
            slow_threshold_ms: self.slow_threshold_ms,
            ts: fast.column_opt(F_TS)?,
            level: fast.column_opt(F_LEVEL)?,
            has_error: fast.column_opt(F_HAS_ERROR)?,
            duration: fast.column_opt(F_DURATION)?,
            services: OrdCounts::new(fast.str(F_SERVICE)?),
            regions: OrdCounts::new(fast.str(F_REGION)?),
            modules: OrdCounts::new(fast.str(F_MODULE)?),
            error_types: OrdCounts::new(fast.str(F_ERROR_TYPE)?),
            paths,
            path_durations: vec![(0, 0.0); path_terms],
            partial: Partial::default(),
            current_hour: None,
            block: Block::default(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Partial>) -> tantivy::Result<Partial> {
        let mut merged = Partial::default();
        for fruit in fruits {
            merged.merge(fruit);
        }
        Ok(merged)
    }
}

impl StatsSegment {
    fn add_row(&mut self, row: Row) {
        let partial = &mut self.partial;
        partial.total += 1;
        let is_error = row.has_error == Some(1);
        partial.errors += u64::from(is_error);
        if let Some(level) = row.level {
            partial.levels[(level as usize).min(3)] += 1;
        }
        let [service, region, module, error_type, path] = row.ords;
        for (counts, ord) in [
            (&mut self.services, service),
            (&mut self.regions, region),
            (&mut self.modules, module),
            (&mut self.error_types, error_type),
        ] {
            if let Some(ord) = ord {
                counts.counts[ord as usize] += 1;
            }
        }
        if let Some(ord) = path {
            self.paths.counts[ord as usize] += 1;
            if let Some(d) = row.duration {
                let sums = &mut self.path_durations[ord as usize];
                sums.0 += 1;
                sums.1 += d;
            }
        }
        if let Some(d) = row.duration {
            partial.durations.push(d);
            partial.slow += u64::from(d >= self.slow_threshold_ms);
        }
        let hour = row.ts.unwrap_or(0).div_euclid(MICROS_PER_HOUR);
        let sums = match &mut self.current_hour {
            Some((current, sums)) if *current == hour => sums,
            slot => {
                if let Some((previous, sums)) = slot.take() {
                    add_bucket(partial.hours.entry(previous).or_default(), sums);
                }
                &mut slot.insert((hour, BucketSums::default())).1
            }
        };
        sums.count += 1;
        sums.errors += u64::from(is_error);
        if let Some(d) = row.duration {
            sums.duration_count += 1;
            sums.duration_sum += d;
        }
    }
}

impl SegmentCollector for StatsSegment {
    type Fruit = Partial;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let row = Row {
            ts: self.ts.as_ref().and_then(|c| c.first(doc)),
            level: self.level.as_ref().and_then(|c| c.first(doc)),
            has_error: self.has_error.as_ref().and_then(|c| c.first(doc)),
            duration: self.duration.as_ref().and_then(|c| c.first(doc)),
            ords: [
                self.services.ord(doc),
                self.regions.ord(doc),
                self.modules.ord(doc),
                self.error_types.ord(doc),
                self.paths.ord(doc),
            ],
        };
        self.add_row(row);
    }

    /// Reads each column once per block (`first_vals`), several times faster than a lookup per
    /// document on optional columns.
    fn collect_block(&mut self, docs: &[DocId]) {
        let mut block = std::mem::take(&mut self.block);
        fill(&self.ts, docs, &mut block.ts);
        fill(&self.level, docs, &mut block.level);
        fill(&self.has_error, docs, &mut block.has_error);
        fill(&self.duration, docs, &mut block.duration);
        let [services, regions, modules, error_types, paths] = &mut block.ords;
        self.services.fill(docs, services);
        self.regions.fill(docs, regions);
        self.modules.fill(docs, modules);
        self.error_types.fill(docs, error_types);
        self.paths.fill(docs, paths);
        for i in 0..docs.len() {
            self.add_row(Row {
                ts: block.ts[i],
                level: block.level[i],
                has_error: block.has_error[i],
                duration: block.duration[i],
                ords: [
                    block.ords[0][i],
                    block.ords[1][i],
                    block.ords[2][i],
                    block.ords[3][i],
                    block.ords[4][i],
                ],
            });
        }
        self.block = block;
    }

    fn harvest(mut self) -> Partial {
        if let Some((hour, sums)) = self.current_hour.take() {
            add_bucket(self.partial.hours.entry(hour).or_default(), sums);
        }
        let mut partial = self.partial;
        for (ord, &count) in self.paths.counts.iter().enumerate() {
            if count > 0 {
                let (duration_count, duration_sum) = self.path_durations[ord];
                partial.paths.insert(
                    self.paths.resolve(ord),
                    PathSums {
                        count,
                        duration_count,
                        duration_sum,
                    },
                );
            }
        }
        partial.services = self.services.into_map();
        partial.regions = self.regions.into_map();
        partial.modules = self.modules.into_map();
        partial.error_types = self.error_types.into_map();
        partial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 95.0), Some(95.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[], 95.0), None);
    }
}
