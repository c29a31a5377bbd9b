//! Recognising re-sent records and batches, across restarts, in bounded memory.
//!
//! # What is remembered
//!
//! - Record ids, as the 128-bit xxh3 hash of the id (a false match needs a 2^-128 accident per
//!   pair, so none in the lifetime of any deployment).
//! - Batch keys `(x-owl-agent-id, x-owl-batch-seq)` with the number of items the batch stored, so a
//!   re-sent batch is answered without decoding it.
//!
//! Both are kept for at least the most recent 7/8 of `collector.dedup_max_ids` stored records
//! (and at most all of them), in a ring of [`GENERATIONS`] generations: inserts go to the newest;
//! when it is full the oldest is dropped whole. A lookup probes every generation (eight hash
//! probes). A full generation of `n` ids is a `HashSet<u128>` (identity hasher: the xxh3 value is
//! already uniform) of the next power of two above `8n/7` buckets of 17 bytes, about 36 bytes per
//! id: the default 2,000,000 ids take about 71 MiB at most. At the default of 2,000,000 a re-send
//! is recognised for at least 1,750,000 records: about 30 minutes of 1,000 records a second, or
//! the last 50 seconds at the collector's peak rate on this machine (~35,000 a second).
//!
//! # Measured (release build, 2-core machine)
//!
//! - This set: ~1.1 million check-and-insert a second on one core (the `insert_rate` unit test,
//!   `cargo test --release -p owl-collector --lib insert_rate -- --nocapture`), that is under
//!   1 µs per record, about 1% of the pipeline's time per record.
//! - `owl_index::Index::get` by id over 200,000 records in three partitions: 140 to 690 µs per
//!   lookup (the `ingest_load` example prints it), which at 30,000 records a second would need
//!   4 to 20 cores just to check ids.
//!
//! # Considered
//!
//! - Looking ids up in the index: the cost above, and a lookup must also cover every partition an
//!   id could be in (a re-sent record without a timestamp gets a new one).
//! - sled: a second storage engine with its own page cache, durability and space amplification for
//!   what is an append-only log of 16-byte values read back once at start.
//!
//! # Persistence: the journal
//!
//! `<data_dir>/collector/dedup/{n:010}.ids` files of frames ([`crate::frame`]); a frame records the
//! ids and batch key of one WAL entry:
//!
//! ```text
//! lsn        u64 LE
//! flags      u8          bit 0: a batch key follows
//! agent_len  u16 LE, agent, seq u64 LE, stored u32 LE     (only with bit 0)
//! count      u32 LE
//! ids        count x 16 bytes (u128 LE)
//! ```
//!
//! The indexer appends an entry's frame when it adds the entry to the index and syncs the journal
//! before each index commit, so ids of every committed record are durable in the journal before
//! the checkpoint can move past them; ids of entries above the checkpoint are in the WAL and get
//! back into the set when the WAL is replayed. At start the newest files (up to the id bound) are
//! read back oldest first, a torn last frame is cut off, and a new file is started; older files are
//! deleted as newer ones fill.
//!
//! Recovery needs no more than that: replaying a WAL entry whose records already reached the
//! index (a crash between the index commit and the checkpoint write) is harmless, because
//! `owl_index::Index::add` replaces a record whose id its partition already holds.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::frame::{self, ReadFrame};
use crate::wal::{BatchKey, WalError, sync_dir};

/// Generations in the ring.
pub(crate) const GENERATIONS: usize = 8;
const JOURNAL_SUFFIX: &str = ".ids";
const FLAG_BATCH_KEY: u8 = 1;

/// The dedup hash of a record id.
pub(crate) fn id_hash(id: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(id.as_bytes())
}

/// A hasher that passes a u128 xxh3 value through: it is uniform already.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for keys other than u128; fold them in FNV style.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64 ^ (value >> 64) as u64;
    }
}

type IdSet = HashSet<u128, BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct Generation {
    ids: IdSet,
    batches: HashMap<BatchKey, u32>,
}

/// The in-memory ring of recent ids and batch keys.
pub(crate) struct DedupSet {
    generations: VecDeque<Generation>,
    generation_capacity: usize,
}

impl DedupSet {
    /// A set remembering at least the last `max_ids` ids.
    pub(crate) fn new(max_ids: usize) -> DedupSet {
        let generation_capacity = max_ids.div_ceil(GENERATIONS).max(1);
        let mut generations = VecDeque::with_capacity(GENERATIONS + 1);
        generations.push_back(Generation::default());
        DedupSet {
            generations,
            generation_capacity,
        }
    }

    /// Whether `id` was seen.
    pub(crate) fn contains(&self, id: u128) -> bool {
        self.generations.iter().rev().any(|g| g.ids.contains(&id))
    }

    /// Remembers `id`; false if it was already known.
    pub(crate) fn insert(&mut self, id: u128) -> bool {
        if self.contains(id) {
            return false;
        }
        self.current().ids.insert(id);
        true
    }

    /// The items a batch stored, if it was seen.
    pub(crate) fn batch(&self, key: &BatchKey) -> Option<u32> {
        self.generations
            .iter()
            .rev()
            .find_map(|g| g.batches.get(key).copied())
    }

    /// Remembers a batch and how many items it stored.
    pub(crate) fn insert_batch(&mut self, key: BatchKey, stored: u32) {
        self.current().batches.insert(key, stored);
    }

    /// Ids remembered.
    pub(crate) fn len(&self) -> usize {
        self.generations.iter().map(|g| g.ids.len()).sum()
    }

    /// The generation to insert into, rotating when it is full.
    fn current(&mut self) -> &mut Generation {
        let full = self
            .generations
            .back()
            .is_none_or(|g| g.ids.len() >= self.generation_capacity);
        if full {
            if self.generations.len() >= GENERATIONS {
                self.generations.pop_front();
            }
            self.generations.push_back(Generation::default());
        }
        self.generations.back_mut().expect("pushed above when empty")
    }
}

/// The journal files of `dir`, oldest first, as `(number, path)`.
fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let io = |source| WalError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_suffix(JOURNAL_SUFFIX))
            .and_then(|n| n.parse().ok())
        {
            files.push((n, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// The appending side of the journal.
pub(crate) struct Journal {
    dir: PathBuf,
    file: BufWriter<File>,
    path: PathBuf,
    number: u64,
    /// Ids per file still kept, oldest first, the current file last.
    files: VecDeque<(PathBuf, usize)>,
    max_ids: usize,
    file_capacity: usize,
}

fn encode(lsn: u64, batch: Option<(&BatchKey, u32)>, ids: &[u128]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(8 + 1 + 4 + ids.len() * 16);
    payload.extend_from_slice(&lsn.to_le_bytes());
    match batch {
        Some((key, stored)) => {
            let agent = &key.agent.as_bytes()[..key.agent.len().min(u16::MAX as usize)];
            payload.push(FLAG_BATCH_KEY);
            payload.extend_from_slice(&(agent.len() as u16).to_le_bytes());
            payload.extend_from_slice(agent);
            payload.extend_from_slice(&key.seq.to_le_bytes());
            payload.extend_from_slice(&stored.to_le_bytes());
        }
        None => payload.push(0),
    }
    payload.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    for id in ids {
        payload.extend_from_slice(&id.to_le_bytes());
    }
    payload
}

type Decoded = (u64, Option<(BatchKey, u32)>, Vec<u128>);

fn decode(payload: &[u8]) -> Option<Decoded> {
    let mut rest = payload;
    let mut take = |n: usize| -> Option<&[u8]> {
        if rest.len() < n {
            return None;
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    };
    let lsn = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let flags = take(1)?[0];
    let batch = if flags & FLAG_BATCH_KEY != 0 {
        let len = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
        let agent = String::from_utf8(take(len)?.to_vec()).ok()?;
        let seq = u64::from_le_bytes(take(8)?.try_into().ok()?);
        let stored = u32::from_le_bytes(take(4)?.try_into().ok()?);
        Some((BatchKey { agent, seq }, stored))
    } else {
        None
    };
    let count = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
    let bytes = take(count.checked_mul(16)?)?;
    let ids = bytes
        .chunks_exact(16)
        .map(|c| u128::from_le_bytes(c.try_into().expect("16 bytes")))
        .collect();
    Some((lsn, batch, ids))
}

impl Journal {
    /// Opens the journal in `dir`, reading it back into a [`DedupSet`] of `max_ids`.
    pub(crate) fn open(dir: &Path, max_ids: usize) -> Result<(Journal, DedupSet), WalError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| WalError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut set = DedupSet::new(max_ids);
        let mut files = VecDeque::new();
        let existing = list(dir)?;
        let count = existing.len();
        for (i, (_, path)) in existing.iter().enumerate() {
            let mut reader = BufReader::with_capacity(1 << 20, File::open(path).map_err(io(path))?);
            let mut valid_end = 0u64;
            let mut ids_in_file = 0;
            loop {
                let payload = match frame::read(&mut reader).map_err(io(path))? {
                    ReadFrame::Frame(payload) => payload,
                    ReadFrame::End => break,
                    ReadFrame::Invalid(_) => {
                        // Torn by a crash (journal writes are not acknowledged to anyone); cut it
                        // off so the file reads cleanly next time. Older files are never written
                        // again, so a bad frame there only ends what is read of them.
                        if i + 1 == count {
                            let file = OpenOptions::new().write(true).open(path).map_err(io(path))?;
                            file.set_len(valid_end)
                                .and_then(|()| file.sync_all())
                                .map_err(io(path))?;
                        }
                        break;
                    }
                };
                valid_end += (frame::HEADER_LEN + payload.len()) as u64;
                let Some((_lsn, batch, ids)) = decode(&payload) else {
                    break;
                };
                ids_in_file += ids.len();
                for &id in &ids {
                    set.insert(id);
                }
                if let Some((key, stored)) = batch {
                    set.insert_batch(key, stored);
                }
            }
            files.push_back((path.clone(), ids_in_file));
        }
        let number = existing.last().map_or(0, |(n, _)| n + 1);
        let path = dir.join(format!("{number:010}{JOURNAL_SUFFIX}"));
        let file = File::create(&path).map_err(io(&path))?;
        sync_dir(dir)?;
        files.push_back((path.clone(), 0));
        let file_capacity = max_ids.div_ceil(GENERATIONS).max(1);
        let mut journal = Journal {
            dir: dir.to_path_buf(),
            file: BufWriter::new(file),
            path,
            number,
            files,
            max_ids,
            file_capacity,
        };
        journal.prune()?;
        Ok((journal, set))
    }

    /// Records the ids and batch key of the WAL entry `lsn` (buffered until [`Journal::sync`]).
    pub(crate) fn append(
        &mut self,
        lsn: u64,
        batch: Option<(&BatchKey, u32)>,
        ids: &[u128],
    ) -> Result<(), WalError> {
        let payload = encode(lsn, batch, ids);
        let mut framed = Vec::with_capacity(frame::HEADER_LEN + payload.len());
        frame::encode(&mut framed, &payload);
        self.file.write_all(&framed).map_err(|source| WalError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.files
            .back_mut()
            .expect("the current file is always listed")
            .1 += ids.len();
        Ok(())
    }

    /// Makes everything appended durable, then starts a new file if this one is full and deletes
    /// files older than the id bound.
    pub(crate) fn sync(&mut self) -> Result<(), WalError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| WalError::Io { path, source }
        };
        self.file.flush().map_err(io(&self.path))?;
        self.file.get_ref().sync_data().map_err(io(&self.path))?;
        let current = self.files.back().expect("the current file is always listed").1;
        if current >= self.file_capacity {
            self.number += 1;
            self.path = self.dir.join(format!("{:010}{JOURNAL_SUFFIX}", self.number));
            self.file = BufWriter::new(File::create(&self.path).map_err(io(&self.path))?);
            sync_dir(&self.dir)?;
            self.files.push_back((self.path.clone(), 0));
            self.prune()?;
        }
        Ok(())
    }

    /// Deletes the oldest files while the newer ones alone hold at least `max_ids` ids.
    fn prune(&mut self) -> Result<(), WalError> {
        loop {
            let newer: usize = self.files.iter().skip(1).map(|(_, n)| n).sum();
            if self.files.len() <= 1 || newer < self.max_ids {
                return Ok(());
            }
            let (path, _) = self.files.pop_front().expect("more than one file");
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(WalError::Io { path, source }),
            }
        }
    }

    /// Journal files kept.
    #[cfg(test)]
    fn file_count(&self) -> usize {
        self.files.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seq: u64) -> BatchKey {
        BatchKey {
            agent: "agent-7".into(),
            seq,
        }
    }

    #[test]
    fn the_set_remembers_at_least_max_ids_and_forgets_the_oldest_generation() {
        let mut set = DedupSet::new(800);
        for id in 0..800u128 {
            assert!(set.insert(id));
        }
        for id in 0..800u128 {
            assert!(!set.insert(id), "id {id} forgotten too early");
        }
        // One more generation's worth pushes out the oldest (ids 0..100).
        for id in 800..900u128 {
            assert!(set.insert(id));
        }
        assert!(!set.contains(0));
        assert!(set.contains(100));
        assert!(set.len() <= 900);
    }

    #[test]
    fn batches_are_remembered_with_their_count() {
        let mut set = DedupSet::new(100);
        assert_eq!(set.batch(&key(1)), None);
        set.insert_batch(key(1), 12);
        assert_eq!(set.batch(&key(1)), Some(12));
        assert_eq!(set.batch(&key(2)), None);
        assert_eq!(
            set.batch(&BatchKey {
                agent: "other".into(),
                seq: 1
            }),
            None
        );
    }

    // Golden bytes of a journal frame payload.
    #[test]
    fn journal_payload_bytes_are_stable() {
        let payload = encode(
            5,
            Some((
                &BatchKey {
                    agent: "a".into(),
                    seq: 2,
                },
                3,
            )),
            &[1],
        );
        let mut expected = vec![
            5, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, b'a', 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0,
        ];
        expected.extend_from_slice(&1u128.to_le_bytes());
        assert_eq!(payload, expected);
        assert_eq!(
            decode(&payload),
            Some((
                5,
                Some((
                    BatchKey {
                        agent: "a".into(),
                        seq: 2
                    },
                    3
                )),
                vec![1]
            ))
        );
    }

    #[test]
    fn the_journal_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut journal, set) = Journal::open(dir.path(), 1000).unwrap();
            assert_eq!(set.len(), 0);
            journal
                .append(1, Some((&key(1), 2)), &[id_hash("a"), id_hash("b")])
                .unwrap();
            journal.append(2, None, &[id_hash("c")]).unwrap();
            journal.sync().unwrap();
        }
        let (_journal, set) = Journal::open(dir.path(), 1000).unwrap();
        for id in ["a", "b", "c"] {
            assert!(set.contains(id_hash(id)), "{id}");
        }
        assert!(!set.contains(id_hash("d")));
        assert_eq!(set.batch(&key(1)), Some(2));
        assert_eq!(set.batch(&key(2)), None);
    }

    #[test]
    fn a_torn_journal_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut journal, _) = Journal::open(dir.path(), 1000).unwrap();
            journal.append(1, None, &[id_hash("kept")]).unwrap();
            journal.append(2, None, &[id_hash("torn")]).unwrap();
            journal.sync().unwrap();
        }
        let (_, path) = list(dir.path()).unwrap().pop().unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let (_journal, set) = Journal::open(dir.path(), 1000).unwrap();
        assert!(set.contains(id_hash("kept")));
        assert!(!set.contains(id_hash("torn")));
    }

    #[test]
    fn old_journal_files_are_deleted_once_newer_ones_hold_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path(), 80).unwrap();
        // 10 ids per file; 40 syncs of 5 ids fill 20 files' worth.
        for lsn in 0..40u64 {
            let ids: Vec<u128> = (0..5).map(|i| u128::from(lsn * 5 + i)).collect();
            journal.append(lsn + 1, None, &ids).unwrap();
            journal.sync().unwrap();
        }
        assert!(journal.file_count() <= 10, "{} files", journal.file_count());
        assert_eq!(list(dir.path()).unwrap().len(), journal.file_count());
        drop(journal);
        let (_, set) = Journal::open(dir.path(), 80).unwrap();
        // The newest 80 ids are all still known after the restart.
        for id in 120..200u128 {
            assert!(set.contains(id), "{id}");
        }
    }

    #[test]
    fn insert_rate() {
        let mut set = DedupSet::new(2_000_000);
        let started = std::time::Instant::now();
        let n = 200_000u64;
        for i in 0..n {
            set.insert(id_hash(&i.to_string()));
        }
        let rate = n as f64 / started.elapsed().as_secs_f64();
        println!("dedup: {rate:.0} hashed inserts/s");
        assert_eq!(set.len(), n as usize);
    }
}
