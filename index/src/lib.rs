//! Owl's log index: what the collector writes with and the query API reads with.
//!
//! # Architecture
//!
//! ```text
//!  collector ── add ──> Index ── routes by (kind, UTC day) ──> <root>/<kind>/<YYYY-MM-DD>/  (tantivy)
//!      │                  │                                      + writer while active
//!      └── commit (~1 s) ─┤                                      + tail: added, not committed
//!                         │
//!  query API ── search / count / get / stats / trace ──> partitions the time range touches
//!                                                        (committed segments + tail, merged)
//!  <root>/metrics/{samples,heartbeats}-<YYYY-MM-DD>.jsonl   host metrics and heartbeats
//! ```
//!
//! - **Partitions.** One tantivy index per kind (`http`, `application`, `error`) and UTC day. A
//!   query opens only the days its time range touches (and skips the time condition inside days it
//!   covers whole); retention deletes whole directories. Writers stay open for recently active
//!   partitions (at most `max_open_writers`, closed when idle) with a modest memory budget each.
//!   Each partition's files are memory-mapped except the document stores, read with `pread`
//!   (`directory` module docs): a lookup fetching a few documents from many segments no longer
//!   takes a major page fault per segment.
//! - **Schema** (`schema` module docs): fast fields for sorting and aggregating,
//!   raw terms for exact ids, positional character grams for substring search, and the record's
//!   JSON as the only stored field.
//! - **Substring search** (`keyword`, `message`, `url`, `file`, `function`): case-folded
//!   positional 3-grams make an ILIKE `%needle%` exact without reading documents, including CJK
//!   text without spaces and needles of one or two characters (see the `gram` module).
//! - **Freshness.** Records are searchable as soon as [`Index::add`] returns: until the next
//!   [`Index::commit`] they live in a bounded in-memory tail beside each partition (like Loki's
//!   ingesters serving their unflushed chunks), evaluated with the same filter semantics. A commit
//!   reloads the partition's reader and drops the committed tail atomically with respect to
//!   searches, so a record is seen exactly once. Re-adding an id replaces it (delete + add within
//!   the partition), so re-sent records are stored once.
//! - **Cross-process reads.** [`Index::open`] takes an exclusive lock on the root: one writer (the
//!   collector). [`Index::open_reader`] takes no lock and sees everything committed, but not the
//!   writer's tail: the writer rewrites `<root>/.owl-generation` after every commit, partition
//!   creation and drop, and a reader re-lists partitions and reloads changed ones only when that
//!   number moved (every request, for an index whose writer predates the file).
//! - **Aggregations** ([`Index::stats`]) read fast fields in one pass over the filtered records:
//!   counts by level, service, region, module, error type, hour and day; error counts and mean
//!   duration per hour; exact nearest-rank p95/p99, mean and max duration; slow requests; top paths.
//! - **Metrics store** ([`MetricsStore`]): append-only JSON lines per day rather than sled, which
//!   allows a single process per database.
//!
//! Every method is synchronous; async callers use `spawn_blocking`. [`Index`] is `Clone` (an `Arc`)
//! and `Send + Sync`.
//!
//! # Choices and their costs
//!
//! - One index with a time field instead of day partitions would need delete-by-query and merges
//!   for retention and would make every query walk every segment; hourly partitions would multiply
//!   open files and writers for little gain at Owl's volumes.
//! - tantivy has no near-real-time reader, and committing more often than about once a second
//!   costs throughput; the tail gives immediate visibility without it. It lives in the writer's
//!   memory, so another process sees records at commit granularity only.
//! - Exact substring search costs indexing work: one positional posting per character of each
//!   searchable text (about half the throughput of a word tokenizer). In exchange counts are exact
//!   and no stored document is read to filter.
//! - Ids are unique per partition. A record re-sent with a different timestamp day or kind lands
//!   in another partition; the collector's own de-duplication covers that case.
//! - Sorting compares string keys by segment-local dictionary ordinals and resolves an id only
//!   when it must break a tie between segments, because each dictionary lookup costs tens of
//!   microseconds.
//!
//! # Performance
//!
//! `target/release/owl-bench --only query --sizes query_records=5000000` (bench/README.md), 5.0
//! million records over a week (24 partitions), 2026-11-22, 2 shared cores, two runs, ms:
//!
//! | query | p50 | p99 | SQLite p50 | SQLite p99 |
//! | --- | --- | --- | --- | --- |
//! | trace lookup | 0.31, 0.28 | 7.9, 4.3 | 0.033, 0.43 | 8.1, 0.94 |
//! | filtered top-50 (service, level, 1 h) | 0.84, 1.01 | 4.5, 7.0 | 30, 116 | 52, 256 |
//! | keyword over the week | 8.8, 14.1 | 16.4, 38.3 | 51, 66 | 93, 397 |
//!
//! What makes them cheap: a trace reads the id's postings in each segment and loads only its
//! records; single filter values are term queries (an intersection skips through them) and the
//! time window is checked on the sort column while collecting, skipping segments outside it; a
//! request lists no directory unless the writer's generation moved. A trace lookup still costs
//! a term lookup in every segment of every partition (about a hundred at this size), so with a
//! cold page cache it stays above SQLite's single B-tree probe.
#![warn(missing_docs)]

mod directory;
mod error;
mod filter;
mod gram;
mod index;
mod metrics_store;
mod partition;
mod retention;
mod schema;
mod search;
mod stats;
mod trace;

pub use error::{IndexError, Result};
pub use filter::LogFilter;
pub use index::{Index, IndexSettings, MAX_TRACE_RECORDS, MergeReport, MergedPartition};
pub use metrics_store::MetricsStore;
pub use partition::PartitionKey;
pub use retention::{DiskUsage, PartitionUsage, RetentionPolicy, RetentionReport, Usage};
pub use search::{MAX_SEARCH_DEPTH, SearchRequest, SearchResponse, SortBy, SortOrder};
pub use stats::{DurationStats, LogStats, PathStats, StatsRequest, TimeBucket};
pub use trace::{Span, SpanStatus, TraceView};
