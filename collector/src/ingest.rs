//! Ingest: from a request body to durable, deduplicated WAL entries.
//!
//! A request goes through: back-pressure check, body read with the size limit, the batch-key fast
//! path (a re-sent agent batch is answered without decoding it), then on a blocking thread
//! decompression (with the limit applied to the decoded size), NDJSON split, per-line parse,
//! id assignment, masking, the ingest filter and serialisation of the WAL entry; then, under one
//! lock, the dedup check and the WAL append; finally the wait for the group commit.
//!
//! An answer never claims a record stored before it is durable: a line recognised as a duplicate
//! of a record still in flight waits for that record's group commit too (it waits for everything
//! appended before it, which covers the original).

use std::collections::HashSet;
use std::hash::BuildHasherDefault;
use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard};

use ::metrics::gauge;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use owl_model::{IngestItem, Masker};
use serde::Serialize;

use crate::agent_tokens::AgentIdentity;
use crate::dedup::{DedupSet, IdHasher, id_hash};
use crate::filter::IngestFilter;
use crate::indexer::Backlog;
use crate::metrics::DEDUP_IDS;
use crate::wal::{BatchKey, EncodedEntry, Wal, WalError};

/// Largest zstd window a body may use: 2^24 bytes (16 MiB, the default body limit).
pub(crate) const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// Rejections listed in an answer at most; `rejected_total` counts them all.
pub(crate) const MAX_LISTED_REJECTIONS: usize = 1000;

/// Why an ingest request was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// No `Authorization: Bearer` header with a known agent token.
    #[error("missing or invalid agent token: send `Authorization: Bearer <token>`")]
    Unauthorized,
    /// A batch header is malformed.
    #[error("header `{header}`: {reason}")]
    BadHeader {
        /// The header name.
        header: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The body, as sent or decompressed, exceeds `collector.max_body_bytes`.
    #[error("request body is larger than {limit} bytes{}", if *.decoded { " after decompression" } else { "" })]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
        /// Whether the decompressed size exceeded it.
        decoded: bool,
    },
    /// `Content-Encoding` is not one the collector decodes.
    #[error("unsupported Content-Encoding `{0}`: send gzip, zstd, snappy or an uncompressed body")]
    UnsupportedEncoding(String),
    /// The body does not decompress.
    #[error("body is not valid {encoding}: {reason}")]
    BadCompression {
        /// `gzip` or `zstd`.
        encoding: &'static str,
        /// The decoder's error.
        reason: String,
    },
    /// The body could not be read from the connection.
    #[error("could not read the request body: {0}")]
    BadBody(String),
    /// The body is not NDJSON at all.
    #[error("{0}")]
    Malformed(&'static str),
    /// The body is not a message of the receiver's protocol.
    #[error("{0}")]
    BadMessage(String),
    /// `Content-Type` is not one the receiver reads.
    #[error("unsupported Content-Type: {0}")]
    UnsupportedMediaType(&'static str),
    /// More ingest requests are in progress than `collector.max_concurrent_requests`.
    #[error("too many ingest requests in progress; retry in {retry_after_s} s")]
    Busy {
        /// Seconds the client should wait.
        retry_after_s: u64,
    },
    /// Indexing is behind by more than `collector.max_pending_records`.
    #[error("indexing is behind by {pending} items; retry in {retry_after_s} s")]
    Overloaded {
        /// Items durable but not yet indexed.
        pending: u64,
        /// Seconds the client should wait.
        retry_after_s: u64,
    },
    /// The WAL cannot accept writes (shutting down, or failed).
    #[error("ingest is unavailable: {0}")]
    Unavailable(#[from] WalError),
    /// A bug: a blocking task panicked.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A body encoding the collector decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Identity,
    Gzip,
    Zstd,
    /// Raw (block) snappy, as Loki's protobuf push is sent.
    Snappy,
}

impl Encoding {
    /// The encoding named by a `Content-Encoding` value.
    pub(crate) fn from_header(value: Option<&str>) -> Result<Encoding, IngestError> {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(Encoding::Identity);
        };
        if value.eq_ignore_ascii_case("gzip") || value.eq_ignore_ascii_case("x-gzip") {
            Ok(Encoding::Gzip)
        } else if value.eq_ignore_ascii_case("zstd") {
            Ok(Encoding::Zstd)
        } else if value.eq_ignore_ascii_case("snappy") {
            Ok(Encoding::Snappy)
        } else if value.eq_ignore_ascii_case("identity") {
            Ok(Encoding::Identity)
        } else {
            Err(IngestError::UnsupportedEncoding(value.chars().take(64).collect()))
        }
    }
}

/// Decompresses `body`, refusing more than `limit` decoded bytes without producing them.
pub(crate) fn decode(body: Bytes, encoding: Encoding, limit: usize) -> Result<Bytes, IngestError> {
    fn read_limited(reader: impl Read, limit: usize, encoding: &'static str) -> Result<Bytes, IngestError> {
        let mut out = Vec::new();
        reader
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| IngestError::BadCompression {
                encoding,
                reason: e.to_string(),
            })?;
        if out.len() > limit {
            return Err(IngestError::TooLarge { limit, decoded: true });
        }
        Ok(Bytes::from(out))
    }
    match encoding {
        Encoding::Identity => Ok(body),
        Encoding::Gzip => read_limited(flate2::read::MultiGzDecoder::new(&body[..]), limit, "gzip"),
        Encoding::Zstd => {
            let bad = |e: std::io::Error| IngestError::BadCompression {
                encoding: "zstd",
                reason: e.to_string(),
            };
            let mut decoder = zstd::stream::read::Decoder::new(&body[..]).map_err(bad)?;
            // A frame may ask for a window of up to 2 GiB of decoder memory; no agent batch needs
            // more than [`ZSTD_WINDOW_LOG_MAX`].
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(bad)?;
            read_limited(decoder, limit, "zstd")
        }
        Encoding::Snappy => {
            let bad = |e: snap::Error| IngestError::BadCompression {
                encoding: "snappy",
                reason: e.to_string(),
            };
            // The block declares its length: a bomb is refused before anything is inflated.
            if snap::raw::decompress_len(&body).map_err(bad)? > limit {
                return Err(IngestError::TooLarge { limit, decoded: true });
            }
            snap::raw::Decoder::new()
                .decompress_vec(&body)
                .map(Bytes::from)
                .map_err(bad)
        }
    }
}

/// A line refused, by its 1-based position in the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Line number, counting from 1 (blank lines count).
    pub line: usize,
    /// Why.
    pub reason: String,
}

/// The serialised lines of the items of a batch, back to back.
#[derive(Default)]
pub(crate) struct Lines {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Lines {
    fn push(&mut self, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.ends.push(self.bytes.len());
    }

    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        (0..self.ends.len()).map(|i| self.get(i))
    }
}

/// A decoded and validated batch, ready for the dedup check and the WAL.
pub(crate) struct ParsedBatch {
    items: Vec<IngestItem>,
    /// The dedup hash of each item's record id; `None` for samples and heartbeats.
    ids: Vec<Option<u128>>,
    lines: Lines,
    /// The position of each item in its request (1-based), for answers per item.
    positions: Vec<usize>,
    /// The WAL entry of all items, for the usual case of no duplicates.
    encoded: EncodedEntry,
    rejected: Vec<Rejection>,
    rejected_total: usize,
    filtered: usize,
}

/// Whether a line holds a JSON object (good record or not).
fn is_json_object(line: &[u8]) -> bool {
    line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok()
}

impl ParsedBatch {
    /// How many items (records, samples, heartbeats) the parser kept.
    pub(crate) fn item_count(&self) -> usize {
        self.items.len()
    }
}

/// Builds a [`ParsedBatch`] item by item: whatever the wire format, every record gets the same
/// completion (region of a per-agent token, id, masking, the ingest filter) before the WAL sees it.
pub(crate) struct BatchBuilder<'a> {
    masker: &'a Masker,
    filter: &'a dyn IngestFilter,
    identity: &'a AgentIdentity,
    items: Vec<IngestItem>,
    ids: Vec<Option<u128>>,
    lines: Lines,
    positions: Vec<usize>,
    rejected: Vec<Rejection>,
    rejected_total: usize,
    filtered: usize,
}

impl<'a> BatchBuilder<'a> {
    pub(crate) fn new(masker: &'a Masker, filter: &'a dyn IngestFilter, identity: &'a AgentIdentity) -> Self {
        BatchBuilder {
            masker,
            filter,
            identity,
            items: Vec::new(),
            ids: Vec::new(),
            lines: Lines::default(),
            positions: Vec::new(),
            rejected: Vec::new(),
            rejected_total: 0,
            filtered: 0,
        }
    }

    /// Completes, masks and filters item `position` (1-based, in the request's own order), and
    /// keeps it unless the filter drops it.
    pub(crate) fn push(&mut self, position: usize, mut item: IngestItem) {
        let id = match &mut item {
            IngestItem::Log(record) => {
                // A per-agent token with a region writes records of that region only.
                if let Some(region) = &self.identity.region {
                    record.service.region = Some(region.clone());
                }
                record.ensure_id();
                self.masker.mask_record(record);
                if !self.filter.admit(record) {
                    self.filtered += 1;
                    return;
                }
                Some(id_hash(&record.id))
            }
            IngestItem::Heartbeat(heartbeat) => {
                // A node speaks for itself only.
                if let Some(name) = &self.identity.name {
                    heartbeat.agent_id = format!("{name}/{}", heartbeat.agent_id);
                }
                None
            }
            IngestItem::Metric(_) => None,
        };
        self.lines.push(&item.to_line());
        self.items.push(item);
        self.ids.push(id);
        self.positions.push(position);
    }

    /// Pushes the records a receiver mapped, or refuses the ones it could not, numbering them
    /// from 1 in the request's order.
    pub(crate) fn extend(&mut self, mapped: Vec<Result<owl_model::LogRecord, String>>) {
        for (index, item) in mapped.into_iter().enumerate() {
            match item {
                Ok(record) => self.push(index + 1, IngestItem::Log(Box::new(record))),
                Err(reason) => self.reject(index + 1, reason),
            }
        }
    }

    /// Records that item `position` (1-based, in the request's own order) was refused.
    pub(crate) fn reject(&mut self, position: usize, reason: String) {
        self.rejected_total += 1;
        if self.rejected.len() < MAX_LISTED_REJECTIONS {
            self.rejected.push(Rejection {
                line: position,
                reason,
            });
        }
    }

    /// The batch, with the WAL entry of all its items.
    pub(crate) fn finish(self, batch: Option<&BatchKey>) -> ParsedBatch {
        let encoded = EncodedEntry::new(batch, self.lines.iter());
        ParsedBatch {
            items: self.items,
            ids: self.ids,
            lines: self.lines,
            positions: self.positions,
            encoded,
            rejected: self.rejected,
            rejected_total: self.rejected_total,
            filtered: self.filtered,
        }
    }
}

/// Splits and parses the lines of a decoded NDJSON body into `builder`.
pub(crate) fn parse_ndjson(
    body: &[u8],
    now: DateTime<Utc>,
    builder: &mut BatchBuilder<'_>,
) -> Result<(), IngestError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut objects = 0;
    let mut non_blank = 0;
    for (index, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        non_blank += 1;
        match IngestItem::parse(line, now) {
            Ok(item) => {
                objects += 1;
                builder.push(index + 1, item);
            }
            Err(reason) => {
                let reason = if is_json_object(line) {
                    objects += 1;
                    reason
                } else if line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
                    format!("invalid JSON: {reason}")
                } else {
                    "not a JSON object".to_string()
                };
                builder.reject(index + 1, reason);
            }
        }
    }
    if non_blank == 0 {
        return Err(IngestError::Malformed(
            "the body is empty: send one JSON object per line (NDJSON)",
        ));
    }
    if objects == 0 {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        return Err(IngestError::Malformed(if first == Some(&b'[') {
            "the body is a JSON array: send one JSON object per line (NDJSON) instead"
        } else {
            "no line of the body is a JSON object: send one JSON object per line (NDJSON)"
        }));
    }
    Ok(())
}

/// The answer to an accepted request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    /// Items stored by this request (records, samples and heartbeats).
    pub accepted: usize,
    /// Records (or, for a re-sent batch, items) already stored by an earlier request.
    pub duplicates: usize,
    /// Lines refused, by position and reason (the first 1000).
    pub rejected: Vec<Rejection>,
    /// Every refused line, when more than are listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected_total: Option<usize>,
    /// Records the ingest filter dropped by configuration.
    #[serde(skip_serializing_if = "is_zero")]
    pub filtered: usize,
    /// The request positions of the items found already stored (when some were).
    #[serde(skip)]
    pub duplicate_positions: Vec<usize>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl IngestOutcome {
    /// Lines refused in all.
    pub(crate) fn rejected_count(&self) -> usize {
        self.rejected_total.unwrap_or(self.rejected.len())
    }
}

/// The durable, deduplicating ingest path shared by every request.
pub(crate) struct Ingestor {
    wal: Wal,
    dedup: Mutex<DedupSet>,
    backlog: Arc<Backlog>,
    pub(crate) limits: IngestLimits,
    pub(crate) masker: Masker,
    pub(crate) filter: Arc<dyn IngestFilter>,
}

/// What the dedup step decided, under the lock: wait for `lsn` to be durable (0: nothing to
/// wait for), then answer `outcome`.
struct Decision {
    lsn: u64,
    outcome: IngestOutcome,
}

/// The limits of the ingest path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IngestLimits {
    /// `collector.max_pending_records`.
    pub max_pending: u64,
    /// Seconds a client is told to wait when refused for back-pressure.
    pub retry_after_s: u64,
    /// `collector.max_body_bytes`.
    pub max_body_bytes: usize,
}

impl Ingestor {
    pub(crate) fn new(
        wal: Wal,
        dedup: DedupSet,
        backlog: Arc<Backlog>,
        limits: IngestLimits,
        masker: Masker,
        filter: Arc<dyn IngestFilter>,
    ) -> Ingestor {
        Ingestor {
            wal,
            dedup: Mutex::new(dedup),
            backlog,
            limits,
            masker,
            filter,
        }
    }

    fn dedup(&self) -> MutexGuard<'_, DedupSet> {
        // The set is only read or extended under the lock; a panic cannot leave it inconsistent.
        self.dedup.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Refuses work while indexing is behind.
    pub(crate) fn check_backlog(&self) -> Result<(), IngestError> {
        let pending = self.backlog.pending();
        if pending >= self.limits.max_pending {
            return Err(IngestError::Overloaded {
                pending,
                retry_after_s: self.limits.retry_after_s,
            });
        }
        Ok(())
    }

    /// The answer to a batch stored before, once what it stored is durable; `None` if unknown.
    pub(crate) async fn known_batch(&self, key: &BatchKey) -> Result<Option<IngestOutcome>, IngestError> {
        let Some(stored) = self.dedup().batch(key) else {
            return Ok(None);
        };
        // Whatever stored the batch was appended before now.
        self.wal.wait_durable(self.wal.last_appended()).await?;
        Ok(Some(duplicate_batch(stored)))
    }

    /// Stores the new items of `batch` and answers once they are durable.
    pub(crate) async fn store(
        &self,
        key: Option<BatchKey>,
        batch: ParsedBatch,
    ) -> Result<IngestOutcome, IngestError> {
        let Decision { lsn, outcome } = self.append(key, batch)?;
        if lsn > 0 {
            self.wal.wait_durable(lsn).await?;
        }
        Ok(outcome)
    }

    /// The dedup check and the WAL append, atomically with respect to other requests.
    fn append(&self, key: Option<BatchKey>, batch: ParsedBatch) -> Result<Decision, IngestError> {
        let ParsedBatch {
            items,
            ids,
            lines,
            positions,
            encoded,
            rejected,
            rejected_total,
            filtered,
        } = batch;
        let mut outcome = IngestOutcome {
            accepted: 0,
            duplicates: 0,
            rejected_total: (rejected_total > rejected.len()).then_some(rejected_total),
            rejected,
            filtered,
            duplicate_positions: Vec::new(),
        };
        let mut dedup = self.dedup();
        if let Some(stored) = key.as_ref().and_then(|k| dedup.batch(k)) {
            // A concurrent request stored the same batch after this one's fast-path check.
            return Ok(Decision {
                lsn: self.wal.last_appended(),
                outcome: duplicate_batch(stored),
            });
        }
        let mut fresh: HashSet<u128, BuildHasherDefault<IdHasher>> = HashSet::default();
        let keep: Vec<bool> = ids
            .iter()
            .map(|id| match id {
                Some(id) => !dedup.contains(*id) && fresh.insert(*id),
                None => true,
            })
            .collect();
        let kept = keep.iter().filter(|&&k| k).count();
        outcome.duplicates = keep.len() - kept;
        if outcome.duplicates > 0 {
            outcome.duplicate_positions = keep
                .iter()
                .zip(&positions)
                .filter(|(k, _)| !**k)
                .map(|(_, p)| *p)
                .collect();
        }
        if kept == 0 {
            let lsn = if outcome.duplicates > 0 {
                self.wal.last_appended()
            } else {
                0
            };
            return Ok(Decision { lsn, outcome });
        }
        let (encoded, items) = if kept == keep.len() {
            (encoded, items)
        } else {
            let kept_lines = keep
                .iter()
                .enumerate()
                .filter(|(_, k)| **k)
                .map(|(i, _)| lines.get(i));
            let encoded = EncodedEntry::new(key.as_ref(), ExactLen(kept_lines, kept));
            let items = items
                .into_iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(item, _)| item)
                .collect();
            (encoded, items)
        };
        let lsn = self.wal.append(&encoded, key.clone(), items)?;
        for id in fresh {
            dedup.insert(id);
        }
        if let Some(key) = key {
            dedup.insert_batch(key, kept as u32);
        }
        gauge!(DEDUP_IDS).set(dedup.len() as f64);
        drop(dedup);
        self.backlog.appended(kept);
        outcome.accepted = kept;
        Ok(Decision { lsn, outcome })
    }

    /// The WAL, for shutdown.
    pub(crate) fn wal(&self) -> &Wal {
        &self.wal
    }
}

fn duplicate_batch(stored: u32) -> IngestOutcome {
    IngestOutcome {
        accepted: 0,
        duplicates: stored as usize,
        rejected: Vec::new(),
        rejected_total: None,
        filtered: 0,
        duplicate_positions: Vec::new(),
    }
}

/// An iterator with a known length (a filter over lines whose kept count was counted before).
struct ExactLen<I>(I, usize);

impl<I: Iterator> Iterator for ExactLen<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let item = self.0.next()?;
        self.1 -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.1, Some(self.1))
    }
}

impl<I: Iterator> ExactSizeIterator for ExactLen<I> {}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use owl_model::{MaskingRules, REDACTED};

    use super::*;
    use crate::filter::AdmitAll;

    fn masker() -> Masker {
        Masker::new(&MaskingRules::default()).unwrap()
    }

    fn parse(
        body: &[u8],
        now: DateTime<Utc>,
        masker: &Masker,
        filter: &dyn IngestFilter,
        batch: Option<&BatchKey>,
        identity: &AgentIdentity,
    ) -> Result<ParsedBatch, IngestError> {
        let mut builder = BatchBuilder::new(masker, filter, identity);
        parse_ndjson(body, now, &mut builder)?;
        Ok(builder.finish(batch))
    }

    fn parse_str(body: &str) -> Result<ParsedBatch, IngestError> {
        parse(
            body.as_bytes(),
            Utc::now(),
            &masker(),
            &AdmitAll,
            None,
            &AgentIdentity::shared(),
        )
    }

    #[test]
    fn content_encodings() {
        assert_eq!(Encoding::from_header(None).unwrap(), Encoding::Identity);
        assert_eq!(Encoding::from_header(Some("GZIP")).unwrap(), Encoding::Gzip);
        assert_eq!(Encoding::from_header(Some("x-gzip")).unwrap(), Encoding::Gzip);
        assert_eq!(Encoding::from_header(Some(" zstd ")).unwrap(), Encoding::Zstd);
        assert_eq!(
            Encoding::from_header(Some("identity")).unwrap(),
            Encoding::Identity
        );
        assert!(
            matches!(Encoding::from_header(Some("br")), Err(IngestError::UnsupportedEncoding(e)) if e == "br")
        );
    }

    #[test]
    fn gzip_and_zstd_bodies_decode_and_the_limit_applies_to_the_decoded_size() {
        let plain = b"{\"message\":\"hello\"}\n".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        let gz = Bytes::from(gz.finish().unwrap());
        let zs = Bytes::from(zstd::encode_all(&plain[..], 3).unwrap());
        assert_eq!(decode(gz.clone(), Encoding::Gzip, 1 << 20).unwrap(), plain);
        assert_eq!(decode(zs.clone(), Encoding::Zstd, 1 << 20).unwrap(), plain);
        let limit = plain.len() - 1;
        assert!(matches!(
            decode(gz, Encoding::Gzip, limit),
            Err(IngestError::TooLarge { decoded: true, .. })
        ));
        assert!(matches!(
            decode(zs, Encoding::Zstd, limit),
            Err(IngestError::TooLarge { decoded: true, .. })
        ));
        assert!(matches!(
            decode(Bytes::from_static(b"not gzip"), Encoding::Gzip, 1 << 20),
            Err(IngestError::BadCompression { encoding: "gzip", .. })
        ));
        assert!(matches!(
            decode(Bytes::from_static(b"not zstd"), Encoding::Zstd, 1 << 20),
            Err(IngestError::BadCompression { encoding: "zstd", .. })
        ));
    }

    #[test]
    fn bad_lines_are_reported_by_line_number_and_the_rest_is_kept() {
        let body = "{\"message\":\"one\"}\n\n{\"message\":\"two\",\"level\":\"LOUD\"}\r\nnot json\n{\"message\":\n{\"@type\":\"metric\",\"host\":\"h\",\"@timestamp\":\"2025-12-07T10:30:00Z\",\"cpu_percent\":1,\"memory_percent\":2}\n";
        let batch = parse_str(body).unwrap();
        assert_eq!(batch.items.len(), 2);
        assert_eq!(batch.ids.iter().filter(|id| id.is_some()).count(), 1);
        let lines: Vec<usize> = batch.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, [3, 4, 5]);
        assert!(
            batch.rejected[0].reason.contains("level"),
            "{:?}",
            batch.rejected[0]
        );
        assert_eq!(batch.rejected[1].reason, "not a JSON object");
        assert!(
            batch.rejected[2].reason.starts_with("invalid JSON"),
            "{:?}",
            batch.rejected[2]
        );
    }

    #[test]
    fn a_body_without_any_json_object_is_malformed() {
        for body in [
            "hello\nworld\n",
            "[{\"message\":\"x\"}]",
            "42\n\"text\"\n",
            "{\"message\":\n{broken\n",
        ] {
            assert!(
                matches!(parse_str(body), Err(IngestError::Malformed(_))),
                "{body:?}"
            );
        }
        assert!(matches!(parse_str(" \n\r\n"), Err(IngestError::Malformed(m)) if m.contains("empty")));
        assert!(matches!(parse_str("[1]"), Err(IngestError::Malformed(m)) if m.contains("array")));
    }

    #[test]
    fn records_get_ids_given_ids_are_kept_and_secrets_are_masked() {
        let body = "{\"message\":\"login password=hunter2\"}\n{\"id\":\"given-1\",\"message\":\"x\"}\n";
        let batch = parse_str(body).unwrap();
        let records: Vec<&owl_model::LogRecord> = batch
            .items
            .iter()
            .map(|i| match i {
                IngestItem::Log(r) => &**r,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(!records[0].id.is_empty());
        assert!(records[0].message.contains(REDACTED), "{}", records[0].message);
        assert!(!records[0].message.contains("hunter2"));
        assert_eq!(records[1].id, "given-1");
        assert_eq!(batch.ids[1], Some(id_hash("given-1")));
        // The WAL line is the masked record with its id.
        let line = String::from_utf8(batch.lines.get(0).to_vec()).unwrap();
        assert!(
            line.contains(&records[0].id) && !line.contains("hunter2"),
            "{line}"
        );
    }

    #[test]
    fn the_filter_drops_records_and_counts_them() {
        struct OnlyErrors;
        impl IngestFilter for OnlyErrors {
            fn admit(&self, record: &owl_model::LogRecord) -> bool {
                record.level == owl_model::Level::Error
            }
        }
        let body = "{\"message\":\"a\"}\n{\"message\":\"b\",\"level\":\"error\"}\n";
        let batch = parse(
            body.as_bytes(),
            Utc::now(),
            &masker(),
            &OnlyErrors,
            None,
            &AgentIdentity::shared(),
        )
        .unwrap();
        assert_eq!(batch.items.len(), 1);
        assert_eq!(batch.filtered, 1);
        // A body whose records are all filtered is still a good batch.
        let batch = parse(
            b"{\"message\":\"a\"}",
            Utc::now(),
            &masker(),
            &OnlyErrors,
            None,
            &AgentIdentity::shared(),
        )
        .unwrap();
        assert_eq!((batch.items.len(), batch.filtered), (0, 1));
    }

    #[test]
    fn rejections_listed_are_capped_but_counted() {
        let mut body = String::from("{\"message\":\"ok\"}\n");
        for _ in 0..MAX_LISTED_REJECTIONS + 5 {
            body.push_str("{\"level\":\"nope\"}\n");
        }
        let batch = parse_str(&body).unwrap();
        assert_eq!(batch.rejected.len(), MAX_LISTED_REJECTIONS);
        assert_eq!(batch.rejected_total, MAX_LISTED_REJECTIONS + 5);
    }
}
