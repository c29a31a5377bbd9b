//! Building batches: NDJSON lines plus the checkpoint marks of the files they came from, sealed
//! (compressed) into a disk buffer entry when they reach `max_bytes` or `timeout_ms`.

use std::io::Write;
use std::time::{Duration, Instant};

use owl_config::Compression;
use owl_model::LogRecord;

use crate::buffer::{Encoding, EntryHeader, Mark, seal_entry};
use crate::fingerprint::Fingerprint;

/// Most files one batch carries marks for; a batch is sealed early when it would exceed it.
const MAX_MARKS: usize = 4096;

/// The batch being filled.
pub(crate) struct BatchBuilder {
    body: Vec<u8>,
    records: u32,
    marks: Vec<Mark>,
    started: Option<Instant>,
    max_bytes: usize,
    timeout: Duration,
}

impl BatchBuilder {
    pub(crate) fn new(max_bytes: usize, timeout: Duration) -> BatchBuilder {
        BatchBuilder {
            body: Vec::with_capacity(max_bytes.min(4 << 20) + 64 * 1024),
            records: 0,
            marks: Vec::new(),
            started: None,
            max_bytes,
            timeout,
        }
    }

    fn start(&mut self) {
        if self.started.is_none() {
            self.started = Some(Instant::now());
        }
    }

    /// Appends a record read from file `fp`, ending at byte `end_offset` of it.
    pub(crate) fn push_record(&mut self, record: &LogRecord, fp: Fingerprint, end_offset: u64) {
        self.start();
        crate::wire::write_record(&mut self.body, record);
        self.body.push(b'\n');
        self.records += 1;
        self.mark(fp, end_offset);
    }

    /// Records that file `fp` is done up to `end_offset` without adding a record (skipped blank
    /// lines), so its checkpoint can move past them.
    pub(crate) fn mark(&mut self, fp: Fingerprint, end_offset: u64) {
        // Most batches hold one or a few files, the last one most often: search from the back.
        match self.marks.iter_mut().rev().find(|m| m.fp == fp) {
            Some(mark) => mark.offset = mark.offset.max(end_offset),
            None => self.marks.push(Mark {
                fp,
                offset: end_offset,
            }),
        }
    }

    /// Appends `records` ready NDJSON lines, each ended by a newline (records from a socket).
    pub(crate) fn push_lines(&mut self, lines: &[u8], records: u32) {
        self.start();
        self.body.extend_from_slice(lines);
        self.records += records;
    }

    /// Appends a ready NDJSON line (metric sample, heartbeat).
    pub(crate) fn push_line(&mut self, line: &[u8]) {
        self.start();
        self.body.extend_from_slice(line);
        self.body.push(b'\n');
        self.records += 1;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.records == 0 && self.marks.is_empty()
    }

    /// Whether the batch reached its size (or file) limit.
    pub(crate) fn is_full(&self) -> bool {
        self.body.len() >= self.max_bytes || self.marks.len() >= MAX_MARKS
    }

    /// Whether the batch should be sealed now: full, or its first record waited long enough.
    pub(crate) fn is_ready(&self, now: Instant) -> bool {
        self.body.len() >= self.max_bytes
            || self.marks.len() >= MAX_MARKS
            || self
                .started
                .is_some_and(|t| now.duration_since(t) >= self.timeout)
    }

    /// When the batch becomes due by time, if it has anything.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.started.map(|t| t + self.timeout)
    }

    pub(crate) fn records(&self) -> u32 {
        self.records
    }

    /// Takes the batch out as a sealed buffer entry value, leaving the builder empty.
    pub(crate) fn seal(&mut self, compressor: &mut Compressor) -> std::io::Result<Vec<u8>> {
        let header = EntryHeader {
            encoding: compressor.encoding(),
            records: self.records,
            raw_bytes: u32::try_from(self.body.len()).unwrap_or(u32::MAX),
            marks: std::mem::take(&mut self.marks),
        };
        let mut value = header.start(self.body.len() / 4);
        compressor.compress(&self.body, &mut value)?;
        seal_entry(&mut value);
        self.body.clear();
        self.records = 0;
        self.started = None;
        Ok(value)
    }
}

/// A reusable compressor for batch bodies.
pub(crate) enum Compressor {
    None,
    /// The context, and a scratch buffer the frame is written into: zstd needs room for the
    /// worst case, and zero-filling that much in the entry value itself for every batch cost more
    /// than copying the (about ten times smaller) frame out, and kept entries oversized.
    Zstd(Box<zstd::bulk::Compressor<'static>>, Vec<u8>),
    Gzip,
}

/// zstd level: level 1 compresses log lines about 8 to 10 times at a fraction of level 3's CPU.
const ZSTD_LEVEL: i32 = 1;

impl Compressor {
    pub(crate) fn new(compression: Compression) -> std::io::Result<Compressor> {
        Ok(match compression {
            Compression::None => Compressor::None,
            Compression::Zstd => {
                Compressor::Zstd(Box::new(zstd::bulk::Compressor::new(ZSTD_LEVEL)?), Vec::new())
            }
            Compression::Gzip => Compressor::Gzip,
        })
    }

    pub(crate) fn encoding(&self) -> Encoding {
        match self {
            Compressor::None => Encoding::None,
            Compressor::Zstd(..) => Encoding::Zstd,
            Compressor::Gzip => Encoding::Gzip,
        }
    }

    /// Appends the compressed form of `input` to `out`.
    pub(crate) fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        match self {
            Compressor::None => out.extend_from_slice(input),
            Compressor::Zstd(c, scratch) => {
                scratch.clear();
                // Capacity, not length: zstd writes into the spare room without it being zeroed.
                scratch.reserve(zstd::zstd_safe::compress_bound(input.len()));
                c.compress_to_buffer(input, scratch)?;
                out.extend_from_slice(scratch);
            }
            Compressor::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
                encoder.write_all(input)?;
                encoder.finish()?;
            }
        }
        Ok(())
    }
}

/// Decompresses a batch body (for dead letters and tests).
pub(crate) fn decompress(encoding: Encoding, body: &[u8]) -> std::io::Result<Vec<u8>> {
    match encoding {
        Encoding::None => Ok(body.to_vec()),
        Encoding::Zstd => zstd::stream::decode_all(body),
        Encoding::Gzip => {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut out)?;
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::decode_entry;

    fn record(message: &str) -> LogRecord {
        LogRecord {
            message: message.to_string(),
            ..LogRecord::default()
        }
    }

    #[test]
    fn seals_into_a_decodable_entry_with_marks() {
        for compression in [Compression::None, Compression::Zstd, Compression::Gzip] {
            let mut compressor = Compressor::new(compression).unwrap();
            let mut batch = BatchBuilder::new(1 << 20, Duration::from_secs(1));
            assert!(batch.is_empty());
            let a = Fingerprint([1; 16]);
            let b = Fingerprint([2; 16]);
            batch.push_record(&record("one"), a, 10);
            batch.push_record(&record("two"), b, 5);
            batch.push_record(&record("three"), a, 20);
            batch.push_line(br#"{"@type":"heartbeat"}"#);
            let value = batch.seal(&mut compressor).unwrap();
            assert!(batch.is_empty());
            let entry = decode_entry(1, value.into()).unwrap();
            assert_eq!(entry.header.records, 4);
            assert_eq!(
                entry.header.marks,
                vec![Mark { fp: a, offset: 20 }, Mark { fp: b, offset: 5 }]
            );
            let body = decompress(entry.header.encoding, &entry.body).unwrap();
            let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
            assert_eq!(lines.len(), 4);
            let first = LogRecord::from_json_slice(lines[0], chrono::Utc::now()).unwrap();
            assert_eq!(first.message, "one");
            assert_eq!(entry.header.raw_bytes as usize, body.len());
        }
    }

    #[test]
    fn readiness_by_size_and_time() {
        let mut batch = BatchBuilder::new(64, Duration::from_millis(100));
        let now = Instant::now();
        assert!(!batch.is_ready(now));
        assert_eq!(batch.deadline(), None);
        batch.push_line(b"{}");
        assert!(!batch.is_ready(now));
        assert!(batch.is_ready(now + Duration::from_millis(150)));
        batch.push_line(&[b'x'; 64]);
        assert!(batch.is_ready(now));
    }
}
