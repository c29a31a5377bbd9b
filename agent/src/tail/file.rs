//! One open file being tailed: reading at an offset, splitting lines, cleaning them, and feeding
//! the multiline joiner.
//!
//! Offsets: `offset` is the next byte to read; `emitted` is the position up to which every byte
//! has been turned into records (or skipped). Bytes between them sit in the unfinished line or
//! the pending multiline record. Whenever the file must be read again from a known place
//! (restart, copytruncate), reading resumes at `emitted`, which is always a line boundary.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::time::Instant;

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use owl_parse::runtime::{self, Envelope, Stream};

use crate::fingerprint::Fingerprint;
use crate::kubernetes::PodInfo;
use crate::multiline::{Joiner, Origin, Out};

/// What one read pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ReadPass {
    pub bytes: u64,
    pub lines: u64,
    pub nul_bytes: u64,
    pub truncated_lines: u64,
    /// The budget ran out before the end of the file, or the file was found replaced: read
    /// again without waiting.
    pub more: bool,
}

pub(crate) struct TrackedFile {
    /// `None` after a truncation until the new content has a complete first line.
    pub fp: Option<Fingerprint>,
    pub path: PathBuf,
    pub file: File,
    pub dev: u64,
    pub ino: u64,
    pub input: usize,
    pub offset: u64,
    pub emitted: u64,
    /// Size seen at the last stat.
    pub size: u64,
    /// Unfinished line: its first `max_line_bytes` bytes, where it starts, and its real length.
    partial: Vec<u8>,
    partial_start: u64,
    partial_len: u64,
    joiner: Joiner,
    max_line_bytes: usize,
    /// Since when the path no longer leads to this file (renamed away or deleted).
    pub detached_since: Option<Instant>,
    /// The last time a read returned data.
    pub last_data: Instant,
    /// The last read reached the end of the file.
    pub at_eof: bool,
    /// A read found that the file no longer starts with the line it was opened for (truncated
    /// and written again since the last identity check); what it read was dropped.
    pub replaced: bool,
    /// The container runtime envelope the lines may have.
    envelope: Option<Envelope>,
    /// The chunks read so far of a line the runtime split (`P` lines, or Docker entries without a
    /// newline); `emitted` stays at their start until the line is whole.
    split: Option<SplitLine>,
    /// The runtime time and stream of each logical line handed to the joiner and not yet emitted,
    /// by its start offset.
    runtime_lines: VecDeque<(u64, DateTime<Utc>, Stream)>,
    /// The pod the file's path names.
    pod: Option<Arc<PodInfo>>,
}

/// A runtime-split line being joined.
struct SplitLine {
    start: u64,
    time: DateTime<Utc>,
    stream: Stream,
    /// Its first `max_line_bytes` bytes.
    content: Vec<u8>,
    /// Its real length.
    len: u64,
    /// A chunk of it was cut by `max_line_bytes` on its own.
    cut: bool,
}

impl TrackedFile {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        fp: Fingerprint,
        path: PathBuf,
        file: File,
        meta: &std::fs::Metadata,
        input: usize,
        offset: u64,
        joiner: Joiner,
        max_line_bytes: usize,
        envelope: Option<Envelope>,
    ) -> TrackedFile {
        let pod = PodInfo::of(&path).map(Arc::new);
        TrackedFile {
            envelope,
            split: None,
            runtime_lines: VecDeque::new(),
            pod,
            fp: Some(fp),
            path,
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            input,
            offset,
            emitted: offset,
            size: meta.len(),
            partial: Vec::new(),
            partial_start: offset,
            partial_len: 0,
            joiner,
            max_line_bytes,
            detached_since: None,
            last_data: Instant::now(),
            at_eof: false,
            replaced: false,
        }
    }

    /// Starts over at byte 0 after the file was truncated; the old content's fingerprint is
    /// returned with the position from which a copy of it should be read.
    pub(crate) fn restart_after_truncation(&mut self) -> Option<(Fingerprint, u64)> {
        let old = self.fp.take().map(|fp| (fp, self.emitted));
        self.offset = 0;
        self.emitted = 0;
        self.partial.clear();
        self.partial_start = 0;
        self.partial_len = 0;
        self.joiner.clear();
        self.split = None;
        self.runtime_lines.clear();
        self.at_eof = false;
        self.replaced = false;
        old
    }

    /// Moves to a line boundary `at` of content that has no identity yet.
    pub(crate) fn resume_at(&mut self, at: u64) {
        self.offset = at;
        self.emitted = at;
        self.partial.clear();
        self.partial_start = at;
        self.partial_len = 0;
        self.joiner.clear();
        self.split = None;
        self.runtime_lines.clear();
    }

    /// Reads up to `budget` bytes into `buf`'s capacity and feeds complete lines to `sink`.
    pub(crate) fn read(
        &mut self,
        buf: &mut [u8],
        budget: u64,
        now: Instant,
        sink: &mut dyn FnMut(Out<'_>),
    ) -> std::io::Result<ReadPass> {
        let mut pass = ReadPass::default();
        while pass.bytes < budget {
            let want = buf.len().min((budget - pass.bytes) as usize);
            let n = self.file.read_at(&mut buf[..want], self.offset)?;
            if n == 0 {
                self.at_eof = true;
                return Ok(pass);
            }
            // Checked after the read: if the head is still the one this file was opened for, the
            // bytes just read belong to that content (a truncation replaces the first line).
            if Fingerprint::of_file(&self.file)? != self.fp {
                self.replaced = true;
                pass.more = true;
                return Ok(pass);
            }
            self.at_eof = false;
            self.last_data = now;
            pass.bytes += n as u64;
            self.feed(&buf[..n], now, &mut pass, sink);
        }
        pass.more = true;
        Ok(pass)
    }

    fn feed(&mut self, chunk: &[u8], now: Instant, pass: &mut ReadPass, sink: &mut dyn FnMut(Out<'_>)) {
        let base = self.offset;
        let mut pos = 0;
        for newline in memchr::memchr_iter(b'\n', chunk) {
            let end = base + newline as u64 + 1;
            if self.partial_len > 0 {
                self.extend_partial(&chunk[pos..newline]);
                let line = std::mem::take(&mut self.partial);
                let (start, len) = (self.partial_start, self.partial_len);
                self.partial_len = 0;
                self.line(&line, start, end, len, now, pass, sink);
                self.partial = line;
                self.partial.clear();
            } else {
                let line = &chunk[pos..newline];
                self.line(line, base + pos as u64, end, line.len() as u64, now, pass, sink);
            }
            pos = newline + 1;
            self.partial_start = end;
        }
        if pos < chunk.len() {
            if self.partial_len == 0 {
                self.partial_start = base + pos as u64;
            }
            self.extend_partial(&chunk[pos..]);
        }
        self.offset = base + chunk.len() as u64;
    }

    fn extend_partial(&mut self, bytes: &[u8]) {
        let room = self.max_line_bytes.saturating_sub(self.partial.len());
        self.partial.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.partial_len += bytes.len() as u64;
    }

    #[allow(clippy::too_many_arguments)]
    fn line(
        &mut self,
        raw: &[u8],
        start: u64,
        end: u64,
        real_len: u64,
        now: Instant,
        pass: &mut ReadPass,
        sink: &mut dyn FnMut(Out<'_>),
    ) {
        pass.lines += 1;
        let mut line = &raw[..raw.len().min(self.max_line_bytes)];
        let truncated = real_len > self.max_line_bytes as u64;
        if !truncated && line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if truncated {
            pass.truncated_lines += 1;
        }
        let truncated_from = truncated.then_some(real_len);
        if let Some(envelope) = self.envelope
            && let Some(unwrapped) = runtime::unwrap(envelope, line)
        {
            // The envelope is whole even when the content was cut: the cut is kept as a flag.
            self.runtime_line(
                unwrapped.time,
                unwrapped.stream,
                unwrapped.partial,
                &unwrapped.content,
                (start, end),
                truncated_from,
                now,
                pass,
                sink,
            );
            return;
        }
        if let Some(split) = self.split.take() {
            // A plain line after an unfinished split one: the split one ends here.
            self.emit_split(split, start, now, pass, sink);
        }
        self.push_joiner(line, start, end, truncated_from, now, pass, sink);
    }

    /// One physical line of a runtime envelope: a chunk of a split line, or a whole line.
    #[allow(clippy::too_many_arguments)]
    fn runtime_line(
        &mut self,
        time: DateTime<Utc>,
        stream: Stream,
        partial: bool,
        content: &[u8],
        (start, end): (u64, u64),
        truncated_from: Option<u64>,
        now: Instant,
        pass: &mut ReadPass,
        sink: &mut dyn FnMut(Out<'_>),
    ) {
        if self.split.as_ref().is_some_and(|s| s.stream != stream) {
            // The other stream's line: the pending split line of this one is cut where it is.
            let split = self.split.take().expect("checked");
            self.emit_split(split, start, now, pass, sink);
        }
        if !partial && self.split.is_none() {
            // The usual line, whole in one physical line: no joining, no copy.
            self.runtime_lines.push_back((start, time, stream));
            self.push_joiner(content, start, end, truncated_from, now, pass, sink);
            return;
        }
        let split = self.split.get_or_insert_with(|| SplitLine {
            start,
            time,
            stream,
            content: Vec::new(),
            len: 0,
            cut: false,
        });
        // A chunk cut by `max_line_bytes` was counted as a truncated line already.
        split.cut |= truncated_from.is_some();
        let room = self.max_line_bytes.saturating_sub(split.content.len());
        split
            .content
            .extend_from_slice(&content[..content.len().min(room)]);
        // A chunk cut by `max_line_bytes` counts with its real length.
        split.len += truncated_from.map_or(content.len() as u64, |real| real.max(content.len() as u64));
        if partial {
            return;
        }
        let split = self.split.take().expect("just set");
        self.emit_split(split, end, now, pass, sink);
    }

    /// Hands a joined runtime line ending at `end` to the joiner.
    fn emit_split(
        &mut self,
        split: SplitLine,
        end: u64,
        now: Instant,
        pass: &mut ReadPass,
        sink: &mut dyn FnMut(Out<'_>),
    ) {
        let truncated_from = (split.len > self.max_line_bytes as u64).then_some(split.len);
        if truncated_from.is_some() && !split.cut {
            pass.truncated_lines += 1;
        }
        self.runtime_lines
            .push_back((split.start, split.time, split.stream));
        self.push_joiner(&split.content, split.start, end, truncated_from, now, pass, sink);
    }

    /// Feeds the joiner, tracking `emitted` and giving records their origin.
    #[allow(clippy::too_many_arguments)]
    fn push_joiner(
        &mut self,
        line: &[u8],
        start: u64,
        end: u64,
        truncated_from: Option<u64>,
        now: Instant,
        pass: &mut ReadPass,
        sink: &mut dyn FnMut(Out<'_>),
    ) {
        let TrackedFile {
            emitted,
            runtime_lines,
            pod,
            joiner,
            ..
        } = self;
        let mut track = |out: Out<'_>| {
            let out = with_origin(out, runtime_lines, pod);
            *emitted = match out {
                Out::Record { end, .. } | Out::Skip { end } => end,
            };
            sink(out);
        };
        if memchr::memchr(0, line).is_some() {
            let cleaned: Vec<u8> = line.iter().copied().filter(|b| *b != 0).collect();
            pass.nul_bytes += (line.len() - cleaned.len()) as u64;
            joiner.push(&cleaned, start, end, truncated_from, now, &mut track);
        } else {
            joiner.push(line, start, end, truncated_from, now, &mut track);
        }
    }

    /// Emits a pending multiline record whose timeout passed.
    pub(crate) fn flush_if_due(&mut self, now: Instant, sink: &mut dyn FnMut(Out<'_>)) {
        let TrackedFile {
            emitted,
            runtime_lines,
            pod,
            joiner,
            ..
        } = self;
        joiner.flush_if_due(now, &mut |out| {
            let out = with_origin(out, runtime_lines, pod);
            let (Out::Record { end, .. } | Out::Skip { end }) = out;
            *emitted = end;
            sink(out)
        });
    }

    /// When the pending multiline record becomes due.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.joiner.deadline()
    }

    /// The file is finished (rotated away and drained): emits the pending record and an
    /// unfinished last line.
    pub(crate) fn finish(&mut self, now: Instant, sink: &mut dyn FnMut(Out<'_>)) {
        if self.partial_len > 0 {
            let line = std::mem::take(&mut self.partial);
            let (start, len) = (self.partial_start, self.partial_len);
            self.partial_len = 0;
            let mut pass = ReadPass::default();
            self.line(&line, start, self.offset, len, now, &mut pass, sink);
        }
        if let Some(split) = self.split.take() {
            // The runtime never finished the line: what was written of it is the record.
            let mut pass = ReadPass::default();
            self.emit_split(split, self.offset, now, &mut pass, sink);
        }
        let TrackedFile {
            emitted,
            runtime_lines,
            pod,
            joiner,
            ..
        } = self;
        joiner.flush(&mut |out| {
            let out = with_origin(out, runtime_lines, pod);
            let (Out::Record { end, .. } | Out::Skip { end }) = out;
            *emitted = end;
            sink(out)
        });
    }
}

/// Gives a record the runtime time and stream of its first line and the file's pod; forgets the
/// runtime facts of every line up to the record's end.
fn with_origin<'a>(
    out: Out<'a>,
    runtime_lines: &mut VecDeque<(u64, DateTime<Utc>, Stream)>,
    pod: &Option<Arc<PodInfo>>,
) -> Out<'a> {
    let end = match &out {
        Out::Record { end, .. } | Out::Skip { end } => *end,
    };
    let mut first = None;
    while let Some(&(start, time, stream)) = runtime_lines.front() {
        if start >= end {
            break;
        }
        runtime_lines.pop_front();
        first.get_or_insert((start, time, stream));
    }
    match out {
        Out::Record {
            text,
            start,
            end,
            truncated_from,
            ..
        } => {
            let runtime = first.filter(|(s, _, _)| *s == start);
            let origin = (runtime.is_some() || pod.is_some()).then(|| Origin {
                time: runtime.map(|(_, time, _)| time),
                stream: runtime.map(|(_, _, stream)| stream),
                pod: pod.clone(),
            });
            Out::Record {
                text,
                start,
                end,
                truncated_from,
                origin,
            }
        }
        skip => skip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use owl_config::MultilineConfig;
    use std::collections::HashMap;
    use std::io::Write;

    fn tracked(path: &std::path::Path, max_line_bytes: usize) -> TrackedFile {
        tracked_with(path, max_line_bytes, None)
    }

    fn tracked_with(
        path: &std::path::Path,
        max_line_bytes: usize,
        envelope: Option<Envelope>,
    ) -> TrackedFile {
        let file = File::open(path).unwrap();
        let meta = file.metadata().unwrap();
        let fp = Fingerprint::of_file(&file)
            .unwrap()
            .unwrap_or(Fingerprint([0; 16]));
        let multiline = MultilineConfig {
            enabled: false,
            ..MultilineConfig::default()
        };
        let joiner = Joiner::new(&multiline, max_line_bytes).unwrap();
        TrackedFile::new(
            fp,
            path.to_path_buf(),
            file,
            &meta,
            0,
            0,
            joiner,
            max_line_bytes,
            envelope,
        )
    }

    /// Every record of a read to the end: text, start, end, truncated length and origin.
    type SeenWithOrigin = Vec<(Vec<u8>, u64, u64, Option<u64>, Option<Origin>)>;

    fn read_origins(f: &mut TrackedFile) -> SeenWithOrigin {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let pass = f
                .read(&mut buf, 1 << 24, Instant::now(), &mut |o| {
                    if let Out::Record {
                        text,
                        start,
                        end,
                        truncated_from,
                        origin,
                    } = o
                    {
                        seen.push((text.to_vec(), start, end, truncated_from, origin));
                    }
                })
                .unwrap();
            if !pass.more || f.replaced {
                return seen;
            }
        }
    }

    #[test]
    fn cri_split_lines_are_joined_with_the_runtime_time_and_stream() {
        let dir = tempfile::tempdir().unwrap();
        let pod_dir = dir.path().join("pods/shop_web-1_uid-9/nginx");
        std::fs::create_dir_all(&pod_dir).unwrap();
        let path = pod_dir.join("0.log");
        let big = "x".repeat(100 * 1024);
        let mut content = String::new();
        content.push_str("2025-12-07T10:30:00.000000001Z stdout F {\"msg\":\"first\"}\n");
        // A 100 KiB line the runtime wrote in 16 KiB chunks, an stderr line between two chunks of
        // another line, and a split line that never gets its `F`.
        for (i, chunk) in big.as_bytes().chunks(16 * 1024).enumerate() {
            let flag = if (i + 1) * 16 * 1024 >= big.len() {
                "F"
            } else {
                "P"
            };
            content.push_str(&format!(
                "2025-12-07T10:30:01.{i:09}Z stdout {flag} {}\n",
                std::str::from_utf8(chunk).unwrap()
            ));
        }
        content.push_str("2025-12-07T10:30:02Z stderr F oops\n");
        let first_unfinished = content.len() as u64;
        content.push_str("2025-12-07T10:30:03Z stdout P half-");
        content.push('\n');
        std::fs::write(&path, &content).unwrap();

        let mut f = tracked_with(&path, 256 * 1024, Some(Envelope::Cri));
        let seen = read_origins(&mut f);
        assert_eq!(
            seen.len(),
            3,
            "{:?}",
            seen.iter().map(|s| s.1).collect::<Vec<_>>()
        );
        assert_eq!(seen[0].0, b"{\"msg\":\"first\"}");
        let joined = &seen[1];
        assert_eq!(joined.0, big.as_bytes());
        assert_eq!(joined.3, None);
        let origin = joined.4.as_ref().unwrap();
        assert_eq!(
            origin.time.unwrap().timestamp_nanos_opt(),
            Some(1765103401000000000)
        );
        assert_eq!(origin.stream, Some(Stream::Stdout));
        assert_eq!(origin.pod.as_ref().unwrap().pod, "web-1");
        assert_eq!(
            (seen[2].0.as_slice(), seen[2].4.as_ref().unwrap().stream),
            (&b"oops"[..], Some(Stream::Stderr))
        );
        // The unfinished line is not emitted, and the checkpoint stays at its start.
        assert_eq!(f.emitted, first_unfinished);
        let mut last = Vec::new();
        f.finish(Instant::now(), &mut |o| {
            if let Out::Record { text, .. } = o {
                last.push(text.to_vec());
            }
        });
        assert_eq!(last, [b"half-".to_vec()]);
    }

    #[test]
    fn runtime_lines_over_the_limit_are_cut_and_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut content = String::new();
        for _ in 0..4 {
            content.push_str(&format!(
                r#"{{"log":"{}","stream":"stdout","time":"2025-12-07T10:30:00Z"}}"#,
                "y".repeat(1000)
            ));
            content.push('\n');
        }
        content.push_str(r#"{"log":"end\n","stream":"stdout","time":"2025-12-07T10:30:00Z"}"#);
        content.push('\n');
        std::fs::write(&path, &content).unwrap();
        let mut f = tracked_with(&path, 2500, Some(Envelope::Any));
        let seen = read_origins(&mut f);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0.len(), 2500);
        assert_eq!(seen[0].3, Some(4003));
        assert_eq!(seen[0].2, content.len() as u64);
    }

    type Seen = Vec<(Vec<u8>, u64, u64, Option<u64>)>;

    fn read_all(f: &mut TrackedFile, buf_len: usize) -> (Seen, ReadPass) {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; buf_len];
        let mut total = ReadPass::default();
        loop {
            let pass = f
                .read(&mut buf, 1 << 20, Instant::now(), &mut |o| {
                    if let Out::Record {
                        text,
                        start,
                        end,
                        truncated_from,
                        ..
                    } = o
                    {
                        seen.push((text.to_vec(), start, end, truncated_from));
                    }
                })
                .unwrap();
            total.bytes += pass.bytes;
            total.lines += pass.lines;
            total.nul_bytes += pass.nul_bytes;
            total.truncated_lines += pass.truncated_lines;
            if !pass.more || f.replaced {
                return (seen, total);
            }
        }
    }

    #[test]
    fn lines_offsets_across_small_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"alpha\r\nbeta\n\ngamma-partial").unwrap();
        let mut f = tracked(&path, 1024);
        let (seen, pass) = read_all(&mut f, 3);
        assert_eq!(
            seen,
            [(b"alpha".to_vec(), 0, 7, None), (b"beta".to_vec(), 7, 12, None)]
        );
        assert_eq!(pass.lines, 3);
        assert_eq!(f.emitted, 13);
        assert_eq!(f.offset, 26);
        // The writer finishes the line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"!\n")
            .unwrap();
        let (seen, _) = read_all(&mut f, 3);
        assert_eq!(seen, [(b"gamma-partial!".to_vec(), 13, 28, None)]);
        assert_eq!(f.emitted, 28);
    }

    #[test]
    fn content_replaced_after_the_identity_check_is_not_read_at_the_old_offset() {
        // copytruncate, then writes past the old read position, all between the tailer's
        // identity check and its read: the bytes at the old offset belong to other content.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"first-1\nline-2\n").unwrap();
        let mut f = tracked(&path, 1024);
        let (seen, _) = read_all(&mut f, 64);
        assert_eq!(seen.len(), 2);
        let old_fp = f.fp;
        let writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        writer.set_len(0).unwrap();
        std::fs::write(&path, b"first-3\nline-4\nline-5\n").unwrap();
        let (seen, pass) = read_all(&mut f, 64);
        assert_eq!(seen, Seen::new(), "read the new content from the old offset");
        assert!(f.replaced);
        assert_eq!((f.fp, f.offset, f.emitted, pass.lines), (old_fp, 15, 15, 0));
        // The next identity check takes it for the truncation it is: the new content is read
        // from 0 and the old one's rest is wanted from a copy.
        let (mut known, mut copies) = (HashMap::new(), Vec::new());
        let metrics = crate::Metrics::default();
        assert!(super::super::check_identity(
            &mut f,
            &[],
            &mut known,
            &mut copies,
            &metrics
        ));
        assert_eq!(known.get(&old_fp.unwrap()), Some(&15));
        assert_ne!(f.fp, old_fp);
        let (seen, _) = read_all(&mut f, 64);
        let lines: Vec<_> = seen.iter().map(|s| s.0.as_slice()).collect();
        assert_eq!(lines, [&b"first-3"[..], b"line-4", b"line-5"]);
    }

    #[test]
    fn long_lines_are_truncated_and_nul_bytes_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut content = vec![b'x'; 5000];
        content.extend_from_slice(b"\nok\0\0yes\n\0\0\n");
        std::fs::write(&path, &content).unwrap();
        let mut f = tracked(&path, 1024);
        let (seen, pass) = read_all(&mut f, 700);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].0.len(), 1024);
        assert_eq!((seen[0].1, seen[0].2, seen[0].3), (0, 5001, Some(5000)));
        assert_eq!(seen[1], (b"okyes".to_vec(), 5001, 5009, None));
        assert_eq!(pass.nul_bytes, 4);
        assert_eq!(pass.truncated_lines, 1);
        assert_eq!(f.emitted, 5012);
    }

    #[test]
    fn finish_emits_the_unfinished_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"one\ntwo").unwrap();
        let mut f = tracked(&path, 1024);
        let (seen, _) = read_all(&mut f, 64);
        assert_eq!(seen.len(), 1);
        let mut last = Vec::new();
        f.finish(Instant::now(), &mut |o| {
            if let Out::Record { text, start, end, .. } = o {
                last.push((text.to_vec(), start, end));
            }
        });
        assert_eq!(last, [(b"two".to_vec(), 4, 7)]);
        assert_eq!(f.emitted, 7);
        assert_eq!(f.restart_after_truncation().map(|(_, at)| at), Some(7));
        assert_eq!((f.offset, f.emitted, f.fp), (0, 0, None));
    }
}
