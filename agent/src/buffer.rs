//! The disk buffer between reading and shipping: sealed, compressed batches in sled.
//!
//! Design note
//! - Each entry is one batch, ready to send: the request body exactly as it goes on the wire
//!   (compressed), plus the checkpoint marks of the files whose records it holds. Storing sealed
//!   batches keeps disk writes small (compressed) and gives every batch one sequence number for
//!   life, so a batch re-sent after a crash carries the same `x-owl-batch-seq`.
//! - Tree `buffer`: key = `u64` batch sequence number, big endian (so iteration is in batch
//!   order); value = [`EntryHeader`] + body (format below). Tree `meta`: `seq_reserved` = the
//!   first sequence number not yet handed out, reserved in blocks of [`SEQ_BLOCK`] and flushed
//!   before use, so a number is never reused after a crash, even if the entries that used it were
//!   lost. A fresh start begins at the clock in microseconds, so numbers keep increasing even
//!   when the state directory is lost but the agent id is configured.
//! - Entry format, version 1 (little endian): `b"OWB1"`, `u32 crc32` of every byte after it,
//!   `u8 encoding` (0 none, 1 zstd, 2 gzip), `u32 records`, `u32 raw_bytes`, `u16 marks`, then
//!   per mark 16 bytes of file fingerprint and `u64 offset`, then the body.
//! - Bounded: the byte total of all values is kept in memory (computed at open by visiting the
//!   entries one at a time) and a push waits (`block`) or drops the batch (`drop_newest`) when it
//!   would exceed `max_bytes`. A batch always fits into an empty buffer, so one large batch can
//!   never wedge the pipeline.
//! - Never loaded whole: the shipper reads one entry at a time by key range; sled's cache is
//!   capped.
//! - Recovery: an entry whose magic, checksum or header is wrong is skipped, counted and removed
//!   (never a crash loop). Its records are not lost: their checkpoint did not advance, so they are
//!   read from the file again if it is still there.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use owl_config::WhenFull;

use crate::fingerprint::Fingerprint;
use crate::metrics::Metrics;

const MAGIC: &[u8; 4] = b"OWB1";
const HEADER_FIXED: usize = 19;
const MARK_LEN: usize = 24;
/// Sequence numbers reserved (and flushed) at a time.
pub(crate) const SEQ_BLOCK: u64 = 1024;
const SEQ_KEY: &[u8] = b"seq_reserved";

/// Body encoding of an entry (and the request's `Content-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    None,
    Zstd,
    Gzip,
}

impl Encoding {
    fn code(self) -> u8 {
        match self {
            Encoding::None => 0,
            Encoding::Zstd => 1,
            Encoding::Gzip => 2,
        }
    }

    fn from_code(code: u8) -> Option<Encoding> {
        match code {
            0 => Some(Encoding::None),
            1 => Some(Encoding::Zstd),
            2 => Some(Encoding::Gzip),
            _ => None,
        }
    }

    /// The `Content-Encoding` header value, if any.
    pub(crate) fn header(self) -> Option<&'static str> {
        match self {
            Encoding::None => None,
            Encoding::Zstd => Some("zstd"),
            Encoding::Gzip => Some("gzip"),
        }
    }
}

/// Up to here the records of file `fp` are in the batch: once the batch is acknowledged (and all
/// before it), the file's checkpoint may move to `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    pub fp: Fingerprint,
    pub offset: u64,
}

/// The fixed part of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryHeader {
    pub encoding: Encoding,
    pub records: u32,
    pub raw_bytes: u32,
    pub marks: Vec<Mark>,
}

impl EntryHeader {
    /// Starts an entry value: the header, to which the caller appends the body before calling
    /// [`seal_entry`].
    pub(crate) fn start(&self, body_capacity: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_FIXED + self.marks.len() * MARK_LEN + body_capacity);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[0; 4]);
        out.push(self.encoding.code());
        out.extend_from_slice(&self.records.to_le_bytes());
        out.extend_from_slice(&self.raw_bytes.to_le_bytes());
        let count = u16::try_from(self.marks.len())
            .expect("a batch holds marks of at most u16::MAX files: see batch.rs");
        out.extend_from_slice(&count.to_le_bytes());
        for mark in &self.marks {
            out.extend_from_slice(&mark.fp.0);
            out.extend_from_slice(&mark.offset.to_le_bytes());
        }
        out
    }
}

/// Writes the checksum into a value built by [`EntryHeader::start`] plus its body.
pub(crate) fn seal_entry(value: &mut [u8]) {
    let crc = crc32fast::hash(&value[8..]);
    value[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// A decoded entry.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub seq: u64,
    pub header: EntryHeader,
    pub body: Bytes,
}

/// Why an entry could not be decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CorruptEntry {
    /// The value does not start with the entry magic.
    #[error("bad magic")]
    Magic,
    /// The checksum does not match.
    #[error("checksum mismatch")]
    Checksum,
    /// The header is truncated or has an unknown encoding.
    #[error("bad header")]
    Header,
}

/// Decodes one stored value.
pub(crate) fn decode_entry(seq: u64, value: sled::IVec) -> Result<Entry, CorruptEntry> {
    let bytes: &[u8] = &value;
    if bytes.len() < HEADER_FIXED || &bytes[..4] != MAGIC {
        return Err(CorruptEntry::Magic);
    }
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("length checked above"));
    if crc32fast::hash(&bytes[8..]) != crc {
        return Err(CorruptEntry::Checksum);
    }
    let encoding = Encoding::from_code(bytes[8]).ok_or(CorruptEntry::Header)?;
    let records = u32::from_le_bytes(bytes[9..13].try_into().expect("length checked above"));
    let raw_bytes = u32::from_le_bytes(bytes[13..17].try_into().expect("length checked above"));
    let count = u16::from_le_bytes(bytes[17..19].try_into().expect("length checked above")) as usize;
    let body_start = HEADER_FIXED + count * MARK_LEN;
    if bytes.len() < body_start {
        return Err(CorruptEntry::Header);
    }
    let marks = bytes[HEADER_FIXED..body_start]
        .chunks_exact(MARK_LEN)
        .map(|m| Mark {
            fp: Fingerprint(m[..16].try_into().expect("chunk is MARK_LEN long")),
            offset: u64::from_le_bytes(m[16..].try_into().expect("chunk is MARK_LEN long")),
        })
        .collect();
    let body = Bytes::from_owner(value).slice(body_start..);
    Ok(Entry {
        seq,
        header: EntryHeader {
            encoding,
            records,
            raw_bytes,
            marks,
        },
        body,
    })
}

/// What became of a pushed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Stored under this sequence number.
    Stored(u64),
    /// Dropped: the buffer was full and `when_full = "drop_newest"`.
    Dropped,
    /// Not stored: the agent is stopping while the buffer was full.
    Stopped,
}

struct State {
    bytes: u64,
    entries: u64,
    next_seq: u64,
    reserved: u64,
}

/// The bounded disk buffer.
pub(crate) struct Buffer {
    db: sled::Db,
    tree: sled::Tree,
    meta: sled::Tree,
    max_bytes: u64,
    when_full: WhenFull,
    state: Mutex<State>,
    space: Condvar,
    added: tokio::sync::Notify,
    metrics: Arc<Metrics>,
}

impl Buffer {
    /// Opens the buffer trees of the state database.
    pub(crate) fn open(
        db: &sled::Db,
        max_bytes: u64,
        when_full: WhenFull,
        metrics: Arc<Metrics>,
    ) -> Result<Buffer, sled::Error> {
        let tree = db.open_tree("buffer")?;
        let meta = db.open_tree("meta")?;
        let mut bytes = 0;
        let mut entries = 0;
        let mut last_seq = None;
        for item in tree.iter() {
            let (key, value) = item?;
            bytes += value.len() as u64;
            entries += 1;
            last_seq = key_to_seq(&key).or(last_seq);
        }
        let reserved = meta
            .get(SEQ_KEY)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        // Starting at the clock (in microseconds) keeps numbers increasing even when the state
        // directory was wiped while the agent id is configured: the collector must never see a
        // number again for a different batch.
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let next_seq = reserved.max(last_seq.map_or(0, |s| s + 1)).max(clock).max(1);
        Metrics::set(&metrics.buffer_bytes, bytes);
        Metrics::set(&metrics.buffer_entries, entries);
        Ok(Buffer {
            db: db.clone(),
            tree,
            meta,
            max_bytes,
            when_full,
            state: Mutex::new(State {
                bytes,
                entries,
                next_seq,
                reserved: next_seq,
            }),
            space: Condvar::new(),
            added: tokio::sync::Notify::new(),
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("buffer lock is never poisoned: nothing under it panics")
    }

    /// Stores a sealed entry value, waiting for room (`block`) while `stop` is false.
    pub(crate) fn push(&self, value: &[u8], stop: &AtomicBool) -> Result<Pushed, sled::Error> {
        let len = value.len() as u64;
        let mut state = self.lock();
        let mut waited = false;
        while state.bytes > 0 && state.bytes + len > self.max_bytes {
            if self.when_full == WhenFull::DropNewest {
                return Ok(Pushed::Dropped);
            }
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(Pushed::Stopped);
            }
            if !waited {
                waited = true;
                Metrics::add(&self.metrics.buffer_full_waits, 1);
                tracing::debug!(
                    buffer_bytes = state.bytes,
                    max_bytes = self.max_bytes,
                    "disk buffer full, reading paused"
                );
            }
            state = self
                .space
                .wait_timeout(state, Duration::from_millis(50))
                .expect("buffer lock is never poisoned: nothing under it panics")
                .0;
        }
        if state.next_seq >= state.reserved {
            let reserved = state.next_seq + SEQ_BLOCK;
            self.meta.insert(SEQ_KEY, &reserved.to_be_bytes())?;
            self.db.flush()?;
            state.reserved = reserved;
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        self.tree.insert(seq.to_be_bytes(), value)?;
        state.bytes += len;
        state.entries += 1;
        Metrics::set(&self.metrics.buffer_bytes, state.bytes);
        Metrics::set(&self.metrics.buffer_entries, state.entries);
        drop(state);
        self.added.notify_one();
        Ok(Pushed::Stored(seq))
    }

    /// Makes what was pushed so far durable.
    pub(crate) fn flush(&self) -> Result<(), sled::Error> {
        self.db.flush().map(drop)
    }

    /// The first entry with a sequence number of at least `from`, raw.
    pub(crate) fn first_from(&self, from: u64) -> Result<Option<(u64, sled::IVec)>, sled::Error> {
        match self.tree.range(from.to_be_bytes()..).next() {
            None => Ok(None),
            Some(item) => {
                let (key, value) = item?;
                Ok(Some((key_to_seq(&key).unwrap_or(from), value)))
            }
        }
    }

    /// Removes an entry (acknowledged, dead-lettered or corrupt) and frees its room.
    pub(crate) fn remove(&self, seq: u64) -> Result<(), sled::Error> {
        let removed = self.tree.remove(seq.to_be_bytes())?;
        if let Some(value) = removed {
            let mut state = self.lock();
            state.bytes = state.bytes.saturating_sub(value.len() as u64);
            state.entries = state.entries.saturating_sub(1);
            Metrics::set(&self.metrics.buffer_bytes, state.bytes);
            Metrics::set(&self.metrics.buffer_entries, state.entries);
            drop(state);
            self.space.notify_all();
        }
        Ok(())
    }

    /// Waits until something is pushed (a push before the call is not missed: one permit is
    /// kept).
    pub(crate) async fn wait_for_entries(&self) {
        self.added.notified().await;
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Whether no entry is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().entries == 0
    }

    /// Wakes a producer waiting for room (used on shutdown).
    pub(crate) fn wake_producers(&self) {
        self.space.notify_all();
    }
}

fn key_to_seq(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn header() -> EntryHeader {
        EntryHeader {
            encoding: Encoding::Zstd,
            records: 2,
            raw_bytes: 10,
            marks: vec![Mark {
                fp: Fingerprint([0xab; 16]),
                offset: 258,
            }],
        }
    }

    fn value(body: &[u8]) -> Vec<u8> {
        let mut v = header().start(body.len());
        v.extend_from_slice(body);
        seal_entry(&mut v);
        v
    }

    #[test]
    fn entry_format_is_stable() {
        // Golden bytes of format version 1: entries written by an older agent must still decode.
        let v = value(b"body");
        assert_eq!(
            hex::encode(&v),
            "4f57423128e3a0e10102000000\
             0a0000000100abababababababababababababababab0201000000000000626f6479"
        );
        let entry = decode_entry(5, sled::IVec::from(v)).unwrap();
        assert_eq!(entry.header, header());
        assert_eq!(&entry.body[..], b"body");
    }

    #[test]
    fn corrupt_entries_are_recognised() {
        let mut v = value(b"body");
        let last = v.len() - 1;
        v[last] ^= 1;
        assert!(matches!(decode_entry(1, v.into()), Err(CorruptEntry::Checksum)));
        assert!(matches!(
            decode_entry(1, b"nope".to_vec().into()),
            Err(CorruptEntry::Magic)
        ));
        let mut short = value(b"");
        short.truncate(HEADER_FIXED + 3);
        seal_entry(&mut short);
        assert!(matches!(decode_entry(1, short.into()), Err(CorruptEntry::Header)));
    }

    #[test]
    fn sequence_numbers_survive_reopen_and_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let stop = AtomicBool::new(false);
        let metrics = Arc::new(Metrics::default());
        // As the agent opens its state: a reopen waits for the previous handle's flusher to let
        // go of the lock.
        let open = || crate::state::open_db(dir.path(), 1 << 20, std::time::Duration::from_secs(10)).unwrap();
        let first = {
            let db = open();
            let buffer = Buffer::open(&db, 1 << 20, WhenFull::Block, metrics.clone()).unwrap();
            let Pushed::Stored(a) = buffer.push(&value(b"a"), &stop).unwrap() else {
                panic!()
            };
            let Pushed::Stored(b) = buffer.push(&value(b"b"), &stop).unwrap() else {
                panic!()
            };
            assert_eq!(b, a + 1);
            buffer.remove(a).unwrap();
            buffer.remove(b).unwrap();
            assert!(buffer.is_empty());
            b
        };
        let db = open();
        let buffer = Buffer::open(&db, 1 << 20, WhenFull::Block, metrics).unwrap();
        let Pushed::Stored(c) = buffer.push(&value(b"c"), &stop).unwrap() else {
            panic!()
        };
        assert!(c > first, "{c} must be above {first}");
    }

    #[test]
    fn full_buffer_blocks_or_drops() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let metrics = Arc::new(Metrics::default());
        let big = value(&[b'x'; 600]);
        let drop_buffer = Buffer::open(&db, 1000, WhenFull::DropNewest, metrics.clone()).unwrap();
        let stop = AtomicBool::new(false);
        assert!(matches!(
            drop_buffer.push(&big, &stop).unwrap(),
            Pushed::Stored(_)
        ));
        assert_eq!(drop_buffer.push(&big, &stop).unwrap(), Pushed::Dropped);

        let db = sled::Config::new().temporary(true).open().unwrap();
        let buffer = Arc::new(Buffer::open(&db, 1000, WhenFull::Block, metrics.clone()).unwrap());
        let Pushed::Stored(first) = buffer.push(&big, &stop).unwrap() else {
            panic!()
        };
        let stop = Arc::new(AtomicBool::new(false));
        let pusher = {
            let (buffer, stop, big) = (buffer.clone(), stop.clone(), big.clone());
            std::thread::spawn(move || buffer.push(&big, &stop).unwrap())
        };
        // The second push waits until the first entry is removed.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while Metrics::get(&metrics.buffer_full_waits) == 0 {
            assert!(std::time::Instant::now() < deadline, "push never waited");
            std::thread::yield_now();
        }
        assert!(!pusher.is_finished());
        buffer.remove(first).unwrap();
        assert!(matches!(pusher.join().unwrap(), Pushed::Stored(_)));

        // A stopping agent gives up waiting.
        let pusher = {
            let (buffer, stop) = (buffer.clone(), stop.clone());
            std::thread::spawn(move || buffer.push(&big, &stop).unwrap())
        };
        stop.store(true, Ordering::Relaxed);
        buffer.wake_producers();
        assert_eq!(pusher.join().unwrap(), Pushed::Stopped);
    }
}
