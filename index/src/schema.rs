//! The tantivy schema of a partition and the mapping from a [`LogRecord`] to its document.
//!
//! One schema for every partition. Field roles:
//!
//! - fast fields, for sorting and aggregations without loading documents: `ts` (i64 microseconds
//!   since the epoch), `level` (rank), `status`, `duration` (f64 ms), `has_error` (0/1), and the
//!   dictionary-encoded strings `id`, `service`, `region`, `environment`, `module`, `error_type`,
//!   `path` (url without query string);
//! - exact-match terms (raw, untokenized): the string fields above plus `kind`, `host`, `trace_id`,
//!   `span_id`, `request_id`, `user_id`, `client_ip`, `error_code`;
//! - substring search ([`crate::gram`]): `message`, `error_message`, `user_name`, `url`, `file`,
//!   `function`;
//! - `source`: the record's canonical JSON, the only stored field, so a hit decodes to the full
//!   [`LogRecord`] (including `extra`) with one doc-store read.
//!
//! [`RecordView`] extracts every indexed value once; the document builder and the in-memory tail's
//! filter both read it, so the two paths cannot disagree about what a record's values are.

use std::path::Path;

use owl_model::{Kind, Level, LogRecord};
use tantivy::TantivyDocument;
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};

use crate::error::{IndexError, Result};
use crate::gram;

pub(crate) const F_ID: &str = "id";
pub(crate) const F_TS: &str = "ts";
pub(crate) const F_LEVEL: &str = "level";
pub(crate) const F_KIND: &str = "kind";
pub(crate) const F_SERVICE: &str = "service";
pub(crate) const F_REGION: &str = "region";
pub(crate) const F_ENVIRONMENT: &str = "environment";
pub(crate) const F_HOST: &str = "host";
pub(crate) const F_MODULE: &str = "module";
pub(crate) const F_TRACE_ID: &str = "trace_id";
pub(crate) const F_SPAN_ID: &str = "span_id";
pub(crate) const F_REQUEST_ID: &str = "request_id";
pub(crate) const F_USER_ID: &str = "user_id";
pub(crate) const F_CLIENT_IP: &str = "client_ip";
pub(crate) const F_STATUS: &str = "status";
pub(crate) const F_DURATION: &str = "duration";
pub(crate) const F_HAS_ERROR: &str = "has_error";
pub(crate) const F_ERROR_TYPE: &str = "error_type";
pub(crate) const F_ERROR_CODE: &str = "error_code";
pub(crate) const F_PATH: &str = "path";
pub(crate) const F_MESSAGE: &str = "message";
pub(crate) const F_ERROR_MESSAGE: &str = "error_message";
pub(crate) const F_USER_NAME: &str = "user_name";
pub(crate) const F_URL: &str = "url";
pub(crate) const F_FILE: &str = "file";
pub(crate) const F_FUNCTION: &str = "function";
pub(crate) const F_SOURCE: &str = "source";

/// Builds the partition schema.
pub(crate) fn build_schema() -> Schema {
    let mut builder = Schema::builder();
    let exact_fast = STRING | FAST;
    let gram = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(gram::TOKENIZER_NAME)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions)
            // Nothing is scored, so norms would only cost space.
            .set_fieldnorms(false),
    );
    builder.add_text_field(F_ID, exact_fast.clone());
    // Only fast: range filters on a fast field scan the column, which beats a term range over one
    // term per distinct microsecond.
    builder.add_i64_field(F_TS, FAST);
    builder.add_u64_field(F_LEVEL, INDEXED | FAST);
    builder.add_text_field(F_KIND, STRING);
    builder.add_text_field(F_SERVICE, exact_fast.clone());
    builder.add_text_field(F_REGION, exact_fast.clone());
    builder.add_text_field(F_ENVIRONMENT, exact_fast.clone());
    builder.add_text_field(F_HOST, STRING);
    builder.add_text_field(F_MODULE, exact_fast.clone());
    builder.add_text_field(F_TRACE_ID, STRING);
    builder.add_text_field(F_SPAN_ID, STRING);
    builder.add_text_field(F_REQUEST_ID, STRING);
    builder.add_text_field(F_USER_ID, STRING);
    builder.add_text_field(F_CLIENT_IP, STRING);
    builder.add_u64_field(F_STATUS, INDEXED | FAST);
    builder.add_f64_field(F_DURATION, FAST);
    builder.add_u64_field(F_HAS_ERROR, INDEXED | FAST);
    builder.add_text_field(F_ERROR_TYPE, exact_fast.clone());
    builder.add_text_field(F_ERROR_CODE, STRING);
    builder.add_text_field(F_PATH, exact_fast);
    for name in [F_MESSAGE, F_ERROR_MESSAGE, F_USER_NAME, F_URL, F_FILE, F_FUNCTION] {
        builder.add_text_field(name, gram.clone());
    }
    builder.add_bytes_field(F_SOURCE, STORED);
    builder.build()
}

/// Field handles of one partition, resolved by name so an existing partition is read with its own
/// schema.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields {
    pub id: Field,
    pub ts: Field,
    pub level: Field,
    pub kind: Field,
    pub service: Field,
    pub region: Field,
    pub environment: Field,
    pub host: Field,
    pub module: Field,
    pub trace_id: Field,
    pub span_id: Field,
    pub request_id: Field,
    pub user_id: Field,
    pub client_ip: Field,
    pub status: Field,
    pub duration: Field,
    pub has_error: Field,
    pub error_type: Field,
    pub error_code: Field,
    pub path: Field,
    pub message: Field,
    pub error_message: Field,
    pub user_name: Field,
    pub url: Field,
    pub file: Field,
    pub function: Field,
    pub source: Field,
}

impl Fields {
    pub(crate) fn resolve(schema: &Schema, partition: &Path) -> Result<Fields> {
        let get = |name: &'static str| {
            schema.get_field(name).map_err(|_| IndexError::SchemaMismatch {
                partition: partition.to_path_buf(),
                field: name,
            })
        };
        Ok(Fields {
            id: get(F_ID)?,
            ts: get(F_TS)?,
            level: get(F_LEVEL)?,
            kind: get(F_KIND)?,
            service: get(F_SERVICE)?,
            region: get(F_REGION)?,
            environment: get(F_ENVIRONMENT)?,
            host: get(F_HOST)?,
            module: get(F_MODULE)?,
            trace_id: get(F_TRACE_ID)?,
            span_id: get(F_SPAN_ID)?,
            request_id: get(F_REQUEST_ID)?,
            user_id: get(F_USER_ID)?,
            client_ip: get(F_CLIENT_IP)?,
            status: get(F_STATUS)?,
            duration: get(F_DURATION)?,
            has_error: get(F_HAS_ERROR)?,
            error_type: get(F_ERROR_TYPE)?,
            error_code: get(F_ERROR_CODE)?,
            path: get(F_PATH)?,
            message: get(F_MESSAGE)?,
            error_message: get(F_ERROR_MESSAGE)?,
            user_name: get(F_USER_NAME)?,
            url: get(F_URL)?,
            file: get(F_FILE)?,
            function: get(F_FUNCTION)?,
            source: get(F_SOURCE)?,
        })
    }
}

/// Microseconds since the epoch, the unit of the `ts` field.
pub(crate) fn micros(ts: &chrono::DateTime<chrono::Utc>) -> i64 {
    ts.timestamp_micros()
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

/// Every value a record contributes to the index. Empty strings count as absent everywhere, so a
/// filter value never has to match an empty term.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordView<'a> {
    pub id: &'a str,
    pub ts: i64,
    pub level: Level,
    pub kind: Kind,
    pub service: Option<&'a str>,
    pub region: Option<&'a str>,
    pub environment: Option<&'a str>,
    pub host: Option<&'a str>,
    pub module: Option<&'a str>,
    pub trace_id: Option<&'a str>,
    pub span_id: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub client_ip: Option<&'a str>,
    pub status: Option<u16>,
    /// Only finite durations are indexed: a NaN has no place in an order.
    pub duration: Option<f64>,
    pub has_error: bool,
    pub error_type: Option<&'a str>,
    pub error_code: Option<&'a str>,
    pub url: Option<&'a str>,
    pub path: Option<&'a str>,
    pub message: Option<&'a str>,
    pub error_message: Option<&'a str>,
    pub user_name: Option<&'a str>,
    pub file: Option<&'a str>,
    pub function: Option<&'a str>,
}

impl<'a> RecordView<'a> {
    pub(crate) fn of(record: &'a LogRecord) -> RecordView<'a> {
        let trace = record.trace.as_ref();
        let http = record.http.as_ref();
        let error = record.error.as_ref();
        let url = non_empty(http.and_then(|h| h.url.as_deref()));
        RecordView {
            id: &record.id,
            ts: micros(&record.timestamp),
            level: record.level,
            kind: record.kind,
            service: non_empty(Some(record.service.name.as_str())),
            region: non_empty(record.service.region.as_deref()),
            environment: non_empty(record.environment.as_deref()),
            host: non_empty(record.host.as_deref()),
            module: non_empty(record.module.as_deref()),
            trace_id: non_empty(trace.map(|t| t.id.as_str())),
            span_id: non_empty(trace.and_then(|t| t.span_id.as_deref())),
            request_id: non_empty(http.and_then(|h| h.request_id.as_deref())),
            user_id: non_empty(record.user.as_ref().and_then(|u| u.id.as_deref())),
            client_ip: non_empty(record.client.as_ref().and_then(|c| c.ip.as_deref())),
            status: record.status_code(),
            duration: record.duration_ms().filter(|d| d.is_finite()),
            has_error: record.has_error(),
            error_type: non_empty(error.and_then(|e| e.error_type.as_deref())),
            error_code: non_empty(error.and_then(|e| e.code.as_deref())),
            url,
            path: non_empty(url.map(owl_model::url_path)),
            message: non_empty(Some(record.message.as_str())),
            error_message: non_empty(error.and_then(|e| e.message.as_deref())),
            user_name: non_empty(record.user.as_ref().and_then(|u| u.name.as_deref())),
            file: non_empty(record.file.as_deref()),
            function: non_empty(record.function.as_deref()),
        }
    }

    /// The tantivy document of the record; `source` is the record's canonical JSON.
    pub(crate) fn document(&self, fields: &Fields, source: &[u8]) -> TantivyDocument {
        let mut doc = TantivyDocument::new();
        doc.add_text(fields.id, self.id);
        doc.add_i64(fields.ts, self.ts);
        doc.add_u64(fields.level, self.level.rank());
        doc.add_text(fields.kind, self.kind.as_str());
        let texts = [
            (fields.service, self.service),
            (fields.region, self.region),
            (fields.environment, self.environment),
            (fields.host, self.host),
            (fields.module, self.module),
            (fields.trace_id, self.trace_id),
            (fields.span_id, self.span_id),
            (fields.request_id, self.request_id),
            (fields.user_id, self.user_id),
            (fields.client_ip, self.client_ip),
            (fields.error_type, self.error_type),
            (fields.error_code, self.error_code),
            (fields.path, self.path),
            (fields.message, self.message),
            (fields.error_message, self.error_message),
            (fields.user_name, self.user_name),
            (fields.url, self.url),
            (fields.file, self.file),
            (fields.function, self.function),
        ];
        for (field, value) in texts {
            if let Some(value) = value {
                doc.add_text(field, value);
            }
        }
        if let Some(status) = self.status {
            doc.add_u64(fields.status, u64::from(status));
        }
        if let Some(duration) = self.duration {
            doc.add_f64(fields.duration, duration);
        }
        doc.add_u64(fields.has_error, u64::from(self.has_error));
        doc.add_bytes(fields.source, source);
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_strings_are_absent() {
        let mut record = LogRecord {
            message: String::new(),
            ..LogRecord::default()
        };
        record.service.region = Some(String::new());
        let view = RecordView::of(&record);
        assert_eq!(view.message, None);
        assert_eq!(view.service, None);
        assert_eq!(view.region, None);
    }
}
