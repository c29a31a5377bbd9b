//! The dead-letter directory: what the collector refused for good, kept for an operator.
//!
//! Design note
//! - A batch refused as a whole (400, 413, any 4xx but 408, 429 and the configuration errors
//!   401, 403 and 404) is written decompressed to `batch-<seq>.ndjson`, one record a line, ready
//!   to be sent again by hand (`curl --data-binary @batch-....ndjson`).
//! - Records refused one by one inside an accepted batch are appended to `rejected.ndjson`, one
//!   JSON object a line: `{"seq", "line", "reason", "record"}`.
//! - Every set-aside batch adds a line to `index.ndjson`: `{"time", "seq", "status", "reason",
//!   "records", "file"}`.
//! - Files are written with fsync before the buffer entry is removed, so a crash in between
//!   leaves the batch in the buffer (sent again, refused again, written again), never nowhere.
//!   Nothing here is rotated or deleted by the agent.

use std::io::Write;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::batch::decompress;
use crate::buffer::Entry;

pub(crate) struct DeadLetters {
    dir: PathBuf,
}

impl DeadLetters {
    pub(crate) fn new(dir: PathBuf) -> DeadLetters {
        DeadLetters { dir }
    }

    fn append(&self, name: &str, lines: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(name))?;
        file.write_all(lines)?;
        file.sync_data()
    }

    /// Sets a whole batch aside; returns the file written.
    pub(crate) fn batch(&self, entry: &Entry, status: u16, reason: &str) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!("batch-{:020}.ndjson", entry.seq));
        let body = decompress(entry.header.encoding, &entry.body)?;
        let mut file = std::fs::File::create(&path)?;
        file.write_all(&body)?;
        file.sync_all()?;
        let mut line = serde_json::to_vec(&json!({
            "time": owl_model::format_timestamp(&chrono::Utc::now()),
            "seq": entry.seq,
            "status": status,
            "reason": reason,
            "records": entry.header.records,
            "file": path.file_name().map(|n| n.to_string_lossy().into_owned()),
        }))
        .expect("serialising a JSON value cannot fail");
        line.push(b'\n');
        self.append("index.ndjson", &line)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(path)
    }

    /// Keeps records the collector rejected; `rejected` holds 1-based line numbers and reasons.
    pub(crate) fn records(&self, entry: &Entry, rejected: &[(usize, String)]) -> std::io::Result<PathBuf> {
        let body = decompress(entry.header.encoding, &entry.body)?;
        let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
        let mut out = Vec::new();
        for (line_no, reason) in rejected {
            let raw = line_no
                .checked_sub(1)
                .and_then(|i| lines.get(i))
                .copied()
                .unwrap_or_default();
            let record = serde_json::from_slice::<Value>(raw)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(raw).into_owned()));
            serde_json::to_writer(
                &mut out,
                &json!({ "seq": entry.seq, "line": line_no, "reason": reason, "record": record }),
            )
            .expect("serialising a JSON value cannot fail");
            out.push(b'\n');
        }
        self.append("rejected.ndjson", &out)?;
        Ok(self.dir.join("rejected.ndjson"))
    }

    #[cfg(test)]
    pub(crate) fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::{Encoding, EntryHeader};

    fn entry(body: &[u8]) -> Entry {
        let mut compressed = Vec::new();
        crate::batch::Compressor::new(owl_config::Compression::Zstd)
            .unwrap()
            .compress(body, &mut compressed)
            .unwrap();
        Entry {
            seq: 7,
            header: EntryHeader {
                encoding: Encoding::Zstd,
                records: 2,
                raw_bytes: body.len() as u32,
                marks: vec![],
            },
            body: compressed.into(),
        }
    }

    #[test]
    fn batches_and_rejected_records_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dead = DeadLetters::new(dir.path().join("dead-letter"));
        let e = entry(b"{\"message\":\"a\"}\n{\"message\":\"b\"}\n");
        let path = dead.batch(&e, 400, "bad body").unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"{\"message\":\"a\"}\n{\"message\":\"b\"}\n"
        );
        let index = std::fs::read_to_string(dead.dir().join("index.ndjson")).unwrap();
        let line: Value = serde_json::from_str(index.trim()).unwrap();
        assert_eq!(
            (
                line["seq"].as_u64(),
                line["status"].as_u64(),
                line["records"].as_u64()
            ),
            (Some(7), Some(400), Some(2))
        );

        dead.records(&e, &[(2, "field `level`: unknown".to_string())])
            .unwrap();
        let rejected = std::fs::read_to_string(dead.dir().join("rejected.ndjson")).unwrap();
        let line: Value = serde_json::from_str(rejected.trim()).unwrap();
        assert_eq!(line["record"]["message"], "b");
        assert_eq!(line["line"], 2);
    }
}
