//! Sorted, paged search with an exact total.
//!
//! Order: the requested key (asc or desc), then timestamp descending, then id ascending, so pages
//! are stable. Records without the key (no duration, no service) come last in both directions.
//!
//! A segment's best `offset + limit` hits are chosen on fast fields only, comparing string keys by
//! their dictionary ordinals (a segment's dictionary is sorted, so ordinal order is string order
//! within it). Only those few are turned into strings; partitions, segments and the in-memory tail
//! are then merged on the full key, and only the page itself is loaded from the doc store.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::str::FromStr;

use owl_model::{LogRecord, UnknownName};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::query::Weight;
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

use crate::filter::LogFilter;
use crate::schema::{F_DURATION, F_ID, F_LEVEL, F_SERVICE, F_TS, RecordView};

/// Sort key of a search (the log API's `sortBy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    /// `@timestamp`.
    #[default]
    Timestamp,
    /// Level rank (`DEBUG` < `INFO` < `WARN` < `ERROR`).
    Level,
    /// HTTP duration.
    Duration,
    /// Service name.
    Service,
}

impl SortBy {
    /// The log API name (`@timestamp`, `level`, `duration`, `service`).
    pub fn as_str(self) -> &'static str {
        match self {
            SortBy::Timestamp => "@timestamp",
            SortBy::Level => "level",
            SortBy::Duration => "duration",
            SortBy::Service => "service",
        }
    }
}

impl FromStr for SortBy {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "@timestamp" | "timestamp" => Ok(SortBy::Timestamp),
            "level" => Ok(SortBy::Level),
            "duration" => Ok(SortBy::Duration),
            "service" => Ok(SortBy::Service),
            _ => Err(UnknownName {
                what: "sortBy",
                value: s.to_string(),
                allowed: "@timestamp, level, duration, service",
            }),
        }
    }
}

/// Sort direction (the log API's `sortOrder`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// Smallest first.
    Asc,
    /// Largest first.
    #[default]
    Desc,
}

impl FromStr for SortOrder {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "asc" => Ok(SortOrder::Asc),
            "desc" => Ok(SortOrder::Desc),
            _ => Err(UnknownName {
                what: "sortOrder",
                value: s.to_string(),
                allowed: "asc, desc",
            }),
        }
    }
}

/// A search: filter, order and page.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    /// Which records.
    pub filter: LogFilter,
    /// Sort key.
    pub sort_by: SortBy,
    /// Sort direction.
    pub order: SortOrder,
    /// Hits to skip.
    pub offset: usize,
    /// Hits to return; 0 only counts.
    pub limit: usize,
}

impl Default for SearchRequest {
    fn default() -> Self {
        SearchRequest {
            filter: LogFilter::default(),
            sort_by: SortBy::Timestamp,
            order: SortOrder::Desc,
            offset: 0,
            limit: 50,
        }
    }
}

/// Deepest hit a search serves (`offset + limit`): each segment keeps that many candidates.
pub const MAX_SEARCH_DEPTH: usize = 100_000;

/// The answer to a [`SearchRequest`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchResponse {
    /// Exact number of matching records.
    pub total: u64,
    /// The requested page, in order.
    pub hits: Vec<LogRecord>,
}

/// Where a hit lives.
#[derive(Debug, Clone)]
pub(crate) enum HitSource {
    /// A document of partition number `.0` of the request.
    Doc(usize, DocAddress),
    /// Entry `.1` of the tail snapshot of partition number `.0`.
    Tail(usize, usize),
}

/// The sort key of a hit without its final tie-break, the id; smaller sorts first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct HitKey {
    missing: bool,
    primary: Primary,
    ts: u64,
}

/// The requested key, transformed so ascending order is the requested order. Within one request all
/// hits carry the same variant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Primary {
    Num(u64),
    Asc(String),
    Desc(Reverse<String>),
}

/// A candidate hit. Its id is only looked up (a dictionary read, tens of microseconds) when its
/// key ties with another candidate's: see [`order_hits`].
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub key: HitKey,
    pub id: Option<String>,
    pub source: HitSource,
}

/// Sorts `hits` into the documented order for their first `depth` positions and drops the rest;
/// `resolve_id` supplies the id of a hit that has none when the id has to break a tie. The result is
/// exact as long as `hits` holds every hit that sorts within `depth`.
pub(crate) fn order_hits<E>(
    mut hits: Vec<Hit>,
    depth: usize,
    mut resolve_id: impl FnMut(&HitSource) -> Result<String, E>,
) -> Result<Vec<Hit>, E> {
    hits.sort_by(|a, b| a.key.cmp(&b.key));
    let mut start = 0;
    while start < hits.len() && start < depth {
        let end = start
            + hits[start..]
                .iter()
                .take_while(|h| h.key == hits[start].key)
                .count();
        if end - start > 1 {
            for hit in &mut hits[start..end] {
                if hit.id.is_none() {
                    hit.id = Some(resolve_id(&hit.source)?);
                }
            }
            hits[start..end].sort_by(|a, b| a.id.cmp(&b.id));
        }
        start = end;
    }
    hits.truncate(depth);
    Ok(hits)
}

/// Keeps the best `k` hits by key and every hit tying with the k-th: the ids that order those are
/// not known yet.
fn keep_best(mut hits: Vec<Hit>, k: usize) -> Vec<Hit> {
    if hits.len() <= k {
        return hits;
    }
    hits.sort_by(|a, b| a.key.cmp(&b.key));
    if k == 0 {
        hits.clear();
        return hits;
    }
    let boundary = hits[k - 1].key.clone();
    let keep = k + hits[k..].iter().take_while(|h| h.key == boundary).count();
    hits.truncate(keep);
    hits
}

/// Order-preserving map of an i64 onto u64.
fn i64_key(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

/// Order-preserving map of a finite f64 onto u64.
fn f64_key(v: f64) -> u64 {
    let bits = v.to_bits();
    if bits >> 63 == 0 { bits | (1 << 63) } else { !bits }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct SortSpec {
    pub by: SortBy,
    pub order: SortOrder,
}

impl SortSpec {
    fn directed(&self, v: u64) -> u64 {
        match self.order {
            SortOrder::Asc => v,
            SortOrder::Desc => !v,
        }
    }

    fn text(&self, s: String) -> Primary {
        match self.order {
            SortOrder::Asc => Primary::Asc(s),
            SortOrder::Desc => Primary::Desc(Reverse(s)),
        }
    }

    /// The key of a tail record.
    pub(crate) fn key_of(&self, view: &RecordView<'_>) -> HitKey {
        let ts = i64_key(view.ts);
        let (missing, primary) = match self.by {
            SortBy::Timestamp => (false, Primary::Num(self.directed(ts))),
            SortBy::Level => (false, Primary::Num(self.directed(view.level.rank()))),
            SortBy::Duration => match view.duration {
                Some(d) => (false, Primary::Num(self.directed(f64_key(d)))),
                None => (true, Primary::Num(0)),
            },
            SortBy::Service => match view.service {
                Some(s) => (false, self.text(s.to_string())),
                None => (true, self.text(String::new())),
            },
        };
        HitKey {
            missing,
            primary,
            ts: !ts,
        }
    }
}

/// Segment-local key: string keys are dictionary ordinals of the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct LocalKey {
    missing: bool,
    primary: u64,
    ts: u64,
    id_ord: u64,
}

/// Collects the count and the best `k` hits of each segment.
pub(crate) struct TopCollector {
    pub k: usize,
    pub sort: SortSpec,
    pub partition: usize,
    /// The time condition, applied here rather than in the query (see
    /// [`crate::filter::CompiledFilter::to_search_query`]).
    pub time: Option<TimeRange>,
}

/// `[start, end)` in microseconds of the `ts` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeRange {
    pub start: i64,
    pub end: i64,
}

impl TimeRange {
    fn contains(&self, ts: i64) -> bool {
        self.start <= ts && ts < self.end
    }
}

enum PrimaryColumn {
    Timestamp,
    Num(Option<Column<u64>>),
    Duration(Option<Column<f64>>),
    Service(Option<StrColumn>),
}

pub(crate) struct TopSegment {
    k: usize,
    sort: SortSpec,
    partition: usize,
    segment: SegmentOrdinal,
    time: Option<TimeRange>,
    /// The segment's timestamps all lie outside `time`: nothing in it can match.
    outside: bool,
    ts: Option<Column<i64>>,
    id: Option<StrColumn>,
    primary: PrimaryColumn,
    heap: BinaryHeap<(LocalKey, DocId)>,
    count: u64,
    /// Per-block buffers of column values, reused across blocks.
    ts_buf: Vec<Option<i64>>,
    num_buf: Vec<Option<u64>>,
    float_buf: Vec<Option<f64>>,
    /// The documents of a block inside the time range.
    docs_buf: Vec<DocId>,
}

impl Collector for TopCollector {
    type Fruit = (u64, Vec<Hit>);
    type Child = TopSegment;

    fn for_segment(&self, segment: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<TopSegment> {
        let fast = reader.fast_fields();
        let ts = fast.column_opt::<i64>(F_TS)?;
        let outside = self.time.is_some_and(|time| {
            ts.as_ref()
                .is_none_or(|c| c.max_value() < time.start || c.min_value() >= time.end)
        });
        // No other column is opened for a segment that is skipped.
        let (ts, id, primary, heap) = if outside {
            (None, None, PrimaryColumn::Timestamp, BinaryHeap::new())
        } else {
            let primary = match self.sort.by {
                SortBy::Timestamp => PrimaryColumn::Timestamp,
                SortBy::Level => PrimaryColumn::Num(fast.column_opt::<u64>(F_LEVEL)?),
                SortBy::Duration => PrimaryColumn::Duration(fast.column_opt::<f64>(F_DURATION)?),
                SortBy::Service => PrimaryColumn::Service(fast.str(F_SERVICE)?),
            };
            let heap = BinaryHeap::with_capacity(self.k.min(4096) + 1);
            (ts, fast.str(F_ID)?, primary, heap)
        };
        Ok(TopSegment {
            k: self.k,
            sort: self.sort,
            partition: self.partition,
            segment,
            time: self.time,
            outside,
            ts,
            id,
            primary,
            heap,
            count: 0,
            ts_buf: Vec::new(),
            num_buf: Vec::new(),
            float_buf: Vec::new(),
            docs_buf: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    /// tantivy's own loop, except that a segment outside the time range is not searched at all.
    fn collect_segment(
        &self,
        weight: &dyn Weight,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<(u64, Vec<Hit>)> {
        let mut child = self.for_segment(segment, reader)?;
        if child.outside {
            return Ok(child.harvest());
        }
        match reader.alive_bitset() {
            Some(alive) => weight.for_each_no_score(reader, &mut |docs| {
                for &doc in docs {
                    if alive.is_alive(doc) {
                        child.collect(doc, 0.0);
                    }
                }
            })?,
            None => weight.for_each_no_score(reader, &mut |docs| child.collect_block(docs))?,
        }
        Ok(child.harvest())
    }

    fn merge_fruits(&self, fruits: Vec<(u64, Vec<Hit>)>) -> tantivy::Result<(u64, Vec<Hit>)> {
        let total = fruits.iter().map(|(count, _)| count).sum();
        let hits: Vec<Hit> = fruits.into_iter().flat_map(|(_, hits)| hits).collect();
        Ok((total, keep_best(hits, self.k)))
    }
}

impl TopSegment {
    /// Offers a document to the heap of the best `k`.
    fn consider(&mut self, doc: DocId, ts: u64, (missing, primary): (bool, u64)) {
        let full = self.heap.len() >= self.k;
        if full
            && let Some(worst) = self.heap.peek()
            && (missing, primary, !ts) > (worst.0.missing, worst.0.primary, worst.0.ts)
        {
            // Most documents of a large match set lose here, before the id column is read.
            return;
        }
        let id_ord = self.id.as_ref().and_then(|c| c.ords().first(doc)).unwrap_or(0);
        let key = LocalKey {
            missing,
            primary,
            ts: !ts,
            id_ord,
        };
        if !full {
            self.heap.push((key, doc));
        } else if let Some(worst) = self.heap.peek()
            && key < worst.0
        {
            self.heap.pop();
            self.heap.push((key, doc));
        }
    }

    /// The key's leading part: whether the sort value is missing, and the directed value.
    fn primary_of(&self, doc: DocId, ts: u64) -> (bool, u64) {
        match &self.primary {
            PrimaryColumn::Timestamp => (false, self.sort.directed(ts)),
            PrimaryColumn::Num(column) => match column.as_ref().and_then(|c| c.first(doc)) {
                Some(v) => (false, self.sort.directed(v)),
                None => (true, 0),
            },
            PrimaryColumn::Duration(column) => match column.as_ref().and_then(|c| c.first(doc)) {
                Some(v) => (false, self.sort.directed(f64_key(v))),
                None => (true, 0),
            },
            PrimaryColumn::Service(column) => match column.as_ref().and_then(|c| c.ords().first(doc)) {
                Some(ord) => (false, self.sort.directed(ord)),
                None => (true, 0),
            },
        }
    }

    fn global_key(&self, local: LocalKey, doc: DocId, services: &mut HashMap<u64, String>) -> HitKey {
        let primary = match &self.primary {
            PrimaryColumn::Service(Some(column)) if !local.missing => {
                let ord = column.ords().first(doc).unwrap_or(0);
                let text = services.entry(ord).or_insert_with(|| {
                    let mut text = String::new();
                    // The ordinal came from this column's own dictionary.
                    let _ = column.ord_to_str(ord, &mut text);
                    text
                });
                self.sort.text(text.clone())
            }
            PrimaryColumn::Service(_) => self.sort.text(String::new()),
            _ => Primary::Num(local.primary),
        };
        HitKey {
            missing: local.missing,
            primary,
            ts: local.ts,
        }
    }
}

impl SegmentCollector for TopSegment {
    type Fruit = (u64, Vec<Hit>);

    fn collect(&mut self, doc: DocId, _score: Score) {
        if self.k == 0 && self.time.is_none() {
            self.count += 1;
            return;
        }
        let value = self.ts.as_ref().and_then(|c| c.first(doc));
        if let Some(time) = self.time
            && !value.is_some_and(|v| time.contains(v))
        {
            return;
        }
        self.count += 1;
        if self.k == 0 {
            return;
        }
        let ts = i64_key(value.unwrap_or(0));
        let primary = self.primary_of(doc, ts);
        self.consider(doc, ts, primary);
    }

    /// Reads each column once per block (`first_vals`), which is several times faster than a
    /// lookup per document on optional columns.
    fn collect_block(&mut self, docs: &[DocId]) {
        if self.k == 0 && self.time.is_none() {
            self.count += docs.len() as u64;
            return;
        }
        self.ts_buf.clear();
        self.ts_buf.resize(docs.len(), None);
        if let Some(column) = &self.ts {
            column.first_vals(docs, &mut self.ts_buf);
        }
        let mut kept = std::mem::take(&mut self.docs_buf);
        kept.clear();
        let docs = match self.time {
            None => docs,
            Some(time) => {
                // Keep the documents in range, and their timestamps in the same positions.
                let mut at = 0;
                for (i, &doc) in docs.iter().enumerate() {
                    if let Some(ts) = self.ts_buf[i].filter(|&v| time.contains(v)) {
                        kept.push(doc);
                        self.ts_buf[at] = Some(ts);
                        at += 1;
                    }
                }
                self.ts_buf.truncate(at);
                &kept[..]
            }
        };
        self.count += docs.len() as u64;
        if self.k > 0 {
            self.consider_block(docs);
        }
        self.docs_buf = kept;
    }

    fn harvest(self) -> (u64, Vec<Hit>) {
        self.harvest_hits()
    }
}

impl TopSegment {
    /// Offers a block of matching documents, whose timestamps are in `ts_buf`.
    fn consider_block(&mut self, docs: &[DocId]) {
        let n = docs.len();
        self.num_buf.clear();
        self.num_buf.resize(n, None);
        self.float_buf.clear();
        self.float_buf.resize(n, None);
        match &self.primary {
            PrimaryColumn::Timestamp => {}
            PrimaryColumn::Num(column) => {
                if let Some(column) = column {
                    column.first_vals(docs, &mut self.num_buf);
                }
            }
            PrimaryColumn::Service(column) => {
                if let Some(column) = column {
                    column.ords().first_vals(docs, &mut self.num_buf);
                }
            }
            PrimaryColumn::Duration(column) => {
                if let Some(column) = column {
                    column.first_vals(docs, &mut self.float_buf);
                }
            }
        }
        for (i, &doc) in docs.iter().enumerate() {
            let ts = i64_key(self.ts_buf[i].unwrap_or(0));
            let primary = match &self.primary {
                PrimaryColumn::Timestamp => (false, self.sort.directed(ts)),
                PrimaryColumn::Num(_) | PrimaryColumn::Service(_) => match self.num_buf[i] {
                    Some(v) => (false, self.sort.directed(v)),
                    None => (true, 0),
                },
                PrimaryColumn::Duration(_) => match self.float_buf[i] {
                    Some(v) => (false, self.sort.directed(f64_key(v))),
                    None => (true, 0),
                },
            };
            self.consider(doc, ts, primary);
        }
    }

    fn harvest_hits(self) -> (u64, Vec<Hit>) {
        // A segment has few services, and each name is looked up once.
        let mut services = HashMap::new();
        let hits = self
            .heap
            .iter()
            .map(|&(local, doc)| Hit {
                key: self.global_key(local, doc, &mut services),
                id: None,
                source: HitSource::Doc(self.partition, DocAddress::new(self.segment, doc)),
            })
            .collect();
        (self.count, hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_keys_preserve_order() {
        let ints = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        assert!(ints.windows(2).all(|w| i64_key(w[0]) < i64_key(w[1])));
        let floats = [f64::NEG_INFINITY, -3.5, -0.0001, 0.0, 0.5, 12.0, 1e300];
        assert!(floats.windows(2).all(|w| f64_key(w[0]) < f64_key(w[1])));
    }

    fn hit(ts: u64, id: &str) -> Hit {
        Hit {
            key: HitKey {
                missing: false,
                primary: Primary::Num(0),
                ts,
            },
            id: Some(id.to_string()),
            source: HitSource::Tail(0, 0),
        }
    }

    #[test]
    fn candidates_tying_with_the_last_kept_one_stay() {
        let kept = keep_best(
            vec![hit(3, "c"), hit(1, "a"), hit(2, "b"), hit(2, "a"), hit(4, "d")],
            2,
        );
        let keys: Vec<u64> = kept.iter().map(|h| h.key.ts).collect();
        assert_eq!(
            keys,
            vec![1, 2, 2],
            "both hits at ts 2 may be second once ids are known"
        );
        let ordered = order_hits::<()>(kept, 2, |_| unreachable!("tail hits carry their ids")).unwrap();
        let ids: Vec<&str> = ordered.iter().map(|h| h.id.as_deref().unwrap()).collect();
        assert_eq!(ids, vec!["a", "a"]);
        assert_eq!(ordered[1].key.ts, 2);
    }

    #[test]
    fn sort_names_parse() {
        assert_eq!("@timestamp".parse::<SortBy>().unwrap(), SortBy::Timestamp);
        assert_eq!("duration".parse::<SortBy>().unwrap(), SortBy::Duration);
        assert!("size".parse::<SortBy>().is_err());
        assert_eq!("ASC".parse::<SortOrder>().unwrap(), SortOrder::Asc);
        assert_eq!(SortBy::Service.as_str(), "service");
    }
}
