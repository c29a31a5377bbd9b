//! Owl's shared model: the types that travel between owl-agent, the collector and the query API.
//!
//! - [`LogRecord`]: one log record, in the LogItem shape of the log API with the logger fields
//!   of the CRM log items.
//! - [`MetricSample`] and [`Heartbeat`]: what agents report about their hosts and themselves.
//! - [`IngestItem`]: one line of the collector's NDJSON ingest format.
//! - [`Masker`]: the masking rules both the agent and the collector apply before storing.
#![warn(missing_docs)]

pub mod clock;
mod ingest;
mod mask;
mod metric;
mod record;

pub use clock::Clock;
pub use ingest::{AGENT_ID_HEADER, BATCH_SEQ_HEADER, IngestItem, TYPE_KEY};
pub use mask::{
    MaskError, Masker, MaskingRules, REDACTED, default_sensitive_keys, is_card_number, is_chinese_id,
};
pub use metric::{DiskUsage, Heartbeat, LoadAverage, MetricSample};
pub use record::{
    Client, ErrorInfo, Http, Kind, Level, LogRecord, MAX_ID_LEN, RecordError, Service, SpanEvent, SpanFacts,
    Trace, UnknownName, User, format_timestamp, parse_timestamp, timestamp_from_epoch, url_path,
};
