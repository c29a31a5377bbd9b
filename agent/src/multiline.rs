//! Joining continuation lines into one record: stack traces, tracebacks, panics.
//!
//! Two rules:
//! - a configured `start_pattern`: a line matching it starts a record, any other line continues
//!   the pending one;
//! - the built-in rule, which knows what continuations look like: lines starting with whitespace,
//!   `Traceback (most recent call last):` and everything up to the exception line that ends it
//!   (with the blank lines and `During handling of the above exception` of chained exceptions),
//!   Java's `Caused by:`, `at `, `... N more` and exception header lines, Rust's
//!   `panicked at ...:` message line, `note: ` and `stack backtrace:`, and closing braces of
//!   pretty-printed JSON. A line that is a complete JSON object is always a record of its own and
//!   is emitted at once.
//!
//! A pending record is emitted when the next record starts, when it reaches `max_lines`, or when
//! no line arrived for `timeout_ms` (so the last record of a burst is not held forever). A record
//! longer than `max_bytes` keeps its first `max_bytes` and is flagged as truncated.
//!
//! Exactly-once caveat: a record flushed by the timeout ends where the file ended at that moment.
//! If the agent crashes before that record is acknowledged and the file grew meanwhile, the
//! re-read may join differently; the record keeps its id (its first line's offset) and the
//! collector keeps the first version it stored. Only a continuation that arrived more than
//! `timeout_ms` after its record is affected.

use std::time::{Duration, Instant};

use owl_config::MultilineConfig;
use regex::bytes::Regex;

/// A record's text and where it lies in the file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Out<'a> {
    /// A record: its bytes, first byte offset, offset after its last newline, and the length it
    /// had before truncation (if truncated).
    Record {
        text: &'a [u8],
        start: u64,
        end: u64,
        truncated_from: Option<u64>,
        /// Set by the file reader: the runtime envelope and pod of the record.
        origin: Option<Origin>,
    },
    /// Bytes up to `end` hold no record (blank lines): the file is done up to there.
    Skip { end: u64 },
}

/// Where a record came from beyond its place in the file: the container runtime's time and
/// stream of its first line, and the pod the file belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Origin {
    pub time: Option<chrono::DateTime<chrono::Utc>>,
    pub stream: Option<owl_parse::runtime::Stream>,
    pub pod: Option<std::sync::Arc<crate::kubernetes::PodInfo>>,
}

#[derive(Debug, Clone)]
enum Rule {
    Disabled,
    Builtin,
    Start(Regex),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stack {
    Normal,
    /// Inside a Python traceback, waiting for its exception line.
    Traceback,
    /// Just after a traceback's exception line: blank lines and a chained traceback continue.
    AfterException,
}

#[derive(Debug)]
struct Pending {
    text: Vec<u8>,
    start: u64,
    end: u64,
    lines: usize,
    truncated_from: Option<u64>,
    total_len: u64,
    last_line_at: Instant,
    stack: Stack,
    /// The last line announced a message on the next line (Rust's `panicked at src/x.rs:1:2:`).
    expects_more: bool,
}

/// The per-file joiner.
#[derive(Debug)]
pub(crate) struct Joiner {
    rule: Rule,
    max_lines: usize,
    max_bytes: usize,
    timeout: Duration,
    pending: Option<Pending>,
}

const CONTINUATION_PREFIXES: &[&[u8]] = &[
    b"Traceback (most recent call last)",
    b"Caused by",
    b"at ",
    b"... ",
    b"}",
    b"During handling of the above exception",
    b"The above exception was the direct cause",
    b"note: ",
    b"stack backtrace:",
];

fn is_complete_json(line: &[u8]) -> bool {
    line.first() == Some(&b'{') && line.iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'}')
}

/// A Java/Python exception header (`java.lang.IllegalStateException: boom`).
fn is_exception_header(line: &[u8]) -> bool {
    let name_end = line.iter().position(|b| *b == b':').unwrap_or(line.len());
    let name = &line[..name_end];
    !name.is_empty()
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'$'))
        && (name.ends_with(b"Exception") || name.ends_with(b"Error") || name.ends_with(b"Throwable"))
        && (name_end == line.len() || line[name_end..].starts_with(b": "))
}

/// Whether a line looks like the start of a new log record (a date or a bracketed time).
fn looks_like_record_start(line: &[u8]) -> bool {
    let date = line.len() >= 5 && line[..4].iter().all(u8::is_ascii_digit) && matches!(line[4], b'-' | b'/');
    let bracketed = line.len() >= 2 && line[0] == b'[' && line[1].is_ascii_digit();
    date || bracketed || line.first() == Some(&b'{')
}

impl Joiner {
    pub(crate) fn new(config: &MultilineConfig, max_bytes: usize) -> Result<Joiner, regex::Error> {
        let rule = if !config.enabled {
            Rule::Disabled
        } else if config.start_pattern.is_empty() {
            Rule::Builtin
        } else {
            Rule::Start(Regex::new(&config.start_pattern)?)
        };
        Ok(Joiner {
            rule,
            max_lines: config.max_lines.max(1),
            max_bytes,
            timeout: Duration::from_millis(config.timeout_ms),
            pending: None,
        })
    }

    /// Whether `line` continues the pending record.
    fn continues(&self, line: &[u8]) -> bool {
        let Some(pending) = &self.pending else {
            return false;
        };
        match &self.rule {
            Rule::Disabled => false,
            Rule::Start(re) => !re.is_match(line),
            Rule::Builtin => {
                if line.is_empty() {
                    return pending.stack != Stack::Normal;
                }
                if is_complete_json(line) {
                    return false;
                }
                if pending.expects_more || matches!(line[0], b' ' | b'\t') {
                    return true;
                }
                if CONTINUATION_PREFIXES.iter().any(|p| line.starts_with(p)) {
                    return true;
                }
                match pending.stack {
                    Stack::Traceback => !looks_like_record_start(line),
                    Stack::AfterException => false,
                    Stack::Normal => is_exception_header(line),
                }
            }
        }
    }

    /// Feeds one line (without its newline) that spans `start..end` of the file.
    pub(crate) fn push(
        &mut self,
        line: &[u8],
        start: u64,
        end: u64,
        truncated_from: Option<u64>,
        now: Instant,
        sink: &mut dyn FnMut(Out<'_>),
    ) {
        if matches!(self.rule, Rule::Disabled)
            || (matches!(self.rule, Rule::Builtin) && is_complete_json(line))
        {
            self.flush(sink);
            if line.iter().all(u8::is_ascii_whitespace) {
                sink(Out::Skip { end });
            } else {
                sink(Out::Record {
                    text: line,
                    start,
                    end,
                    truncated_from,
                    origin: None,
                });
            }
            return;
        }
        if self.continues(line) {
            let full = self.pending.as_ref().is_some_and(|p| p.lines >= self.max_lines);
            if !full {
                self.append(line, end, truncated_from, now);
                return;
            }
        }
        self.flush(sink);
        if line.iter().all(u8::is_ascii_whitespace) && !matches!(self.rule, Rule::Start(_)) {
            sink(Out::Skip { end });
            return;
        }
        let mut text = Vec::with_capacity(line.len().min(self.max_bytes));
        text.extend_from_slice(&line[..line.len().min(self.max_bytes)]);
        let truncated_from = truncated_from.or((line.len() > self.max_bytes).then_some(line.len() as u64));
        let mut pending = Pending {
            text,
            start,
            end,
            lines: 1,
            truncated_from,
            total_len: truncated_from.unwrap_or(line.len() as u64),
            last_line_at: now,
            stack: Stack::Normal,
            expects_more: false,
        };
        Self::update_state(&mut pending, line);
        self.pending = Some(pending);
    }

    fn update_state(pending: &mut Pending, line: &[u8]) {
        pending.expects_more = memchr::memmem::find(line, b"panicked at ").is_some() && line.ends_with(b":");
        pending.stack = if line.starts_with(b"Traceback (most recent call last)") {
            Stack::Traceback
        } else {
            match pending.stack {
                Stack::Traceback if line.is_empty() || matches!(line[0], b' ' | b'\t') => Stack::Traceback,
                Stack::Traceback => Stack::AfterException,
                Stack::AfterException if line.is_empty() => Stack::AfterException,
                Stack::AfterException
                    if line.starts_with(b"During handling") || line.starts_with(b"The above exception") =>
                {
                    Stack::Traceback
                }
                _ => Stack::Normal,
            }
        };
    }

    fn append(&mut self, line: &[u8], end: u64, truncated_from: Option<u64>, now: Instant) {
        let max_bytes = self.max_bytes;
        let pending = self
            .pending
            .as_mut()
            .expect("append is only called with a pending record");
        let line_len = truncated_from.unwrap_or(line.len() as u64);
        pending.total_len += 1 + line_len;
        let room = max_bytes.saturating_sub(pending.text.len());
        if room > 1 {
            pending.text.push(b'\n');
            let take = line.len().min(room - 1);
            pending.text.extend_from_slice(&line[..take]);
        }
        if truncated_from.is_some() || pending.total_len > max_bytes as u64 {
            pending.truncated_from = Some(pending.total_len);
        }
        pending.end = end;
        pending.lines += 1;
        pending.last_line_at = now;
        Self::update_state(pending, line);
    }

    /// Emits the pending record, if any.
    pub(crate) fn flush(&mut self, sink: &mut dyn FnMut(Out<'_>)) {
        if let Some(pending) = self.pending.take() {
            sink(Out::Record {
                text: &pending.text,
                start: pending.start,
                end: pending.end,
                truncated_from: pending.truncated_from,
                origin: None,
            });
        }
    }

    /// Emits the pending record if no line arrived for the timeout.
    pub(crate) fn flush_if_due(&mut self, now: Instant, sink: &mut dyn FnMut(Out<'_>)) {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| now.duration_since(p.last_line_at) >= self.timeout)
        {
            self.flush(sink);
        }
    }

    /// When the pending record becomes due.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.last_line_at + self.timeout)
    }

    /// Forgets the pending record (its bytes will be read again).
    pub(crate) fn clear(&mut self) {
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` line by line; returns the records (as strings) and skips.
    fn run(config: &MultilineConfig, text: &str) -> Vec<String> {
        let mut joiner = Joiner::new(config, 1 << 20).unwrap();
        let mut out = Vec::new();
        let mut offset = 0u64;
        let now = Instant::now();
        let mut sink = |o: Out<'_>| match o {
            Out::Record { text, .. } => out.push(String::from_utf8(text.to_vec()).unwrap()),
            Out::Skip { .. } => out.push("<skip>".to_string()),
        };
        for line in text.split_inclusive('\n') {
            let end = offset + line.len() as u64;
            joiner.push(
                line.trim_end_matches('\n').as_bytes(),
                offset,
                end,
                None,
                now,
                &mut sink,
            );
            offset = end;
        }
        joiner.flush(&mut sink);
        out
    }

    fn builtin() -> MultilineConfig {
        MultilineConfig::default()
    }

    #[test]
    fn python_tracebacks_with_chained_exceptions() {
        let text = "2025-01-01 12:00:00,000 - app - ERROR - failed\n\
                    Traceback (most recent call last):\n  File \"a.py\", line 1, in <module>\n    x()\n\
                    KeyError: 'x'\n\nDuring handling of the above exception, another exception occurred:\n\n\
                    Traceback (most recent call last):\n  File \"a.py\", line 3, in <module>\n\
                    ValueError: y\n2025-01-01 12:00:01,000 - app - INFO - next\n";
        let records = run(&builtin(), text);
        assert_eq!(records.len(), 2, "{records:#?}");
        assert!(records[0].ends_with("ValueError: y"), "{}", records[0]);
        assert!(records[0].contains("KeyError: 'x'\n\nDuring handling"));
        assert_eq!(records[1], "2025-01-01 12:00:01,000 - app - INFO - next");
    }

    #[test]
    fn java_stack_traces() {
        let text = "2025-01-01 12:00:00 ERROR Request failed\njava.lang.IllegalStateException: boom\n\
                    \tat com.example.A.b(A.java:10)\n\tat com.example.C.d(C.java:20)\n\
                    Caused by: java.io.IOException: disk\n\tat x.Y.z(Y.java:1)\n\t... 5 more\n\
                    2025-01-01 12:00:01 INFO ok\n";
        let records = run(&builtin(), text);
        assert_eq!(records.len(), 2, "{records:#?}");
        assert!(records[0].ends_with("\t... 5 more"));
    }

    #[test]
    fn rust_panics() {
        let text = "thread 'main' panicked at src/main.rs:2:5:\nindex out of bounds\n\
                    note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\
                    stack backtrace:\n   0: rust_begin_unwind\nnext line\n";
        let records = run(&builtin(), text);
        assert_eq!(records.len(), 2, "{records:#?}");
        assert!(records[0].contains("index out of bounds"));
        assert!(records[0].ends_with("rust_begin_unwind"));
    }

    #[test]
    fn json_lines_and_blank_lines_stand_alone() {
        let records = run(&builtin(), "{\"a\":1}\n\n{\"b\":2}\nplain\n\nplain2\n");
        assert_eq!(
            records,
            ["{\"a\":1}", "<skip>", "{\"b\":2}", "plain", "<skip>", "plain2"]
        );
    }

    #[test]
    fn start_pattern_and_limits() {
        let config = MultilineConfig {
            start_pattern: r"^\[".into(),
            max_lines: 3,
            ..MultilineConfig::default()
        };
        let records = run(&config, "[1] a\nb\nc\nd\n[2] e\n");
        assert_eq!(records, ["[1] a\nb\nc", "d", "[2] e"]);
        let disabled = MultilineConfig {
            enabled: false,
            ..MultilineConfig::default()
        };
        assert_eq!(run(&disabled, "a\n  b\n"), ["a", "  b"]);
    }

    #[test]
    fn offsets_timeout_and_truncation() {
        let mut joiner = Joiner::new(&builtin(), 12).unwrap();
        let t0 = Instant::now();
        let mut outs = Vec::new();
        let mut record = |o: Out<'_>| {
            if let Out::Record {
                text,
                start,
                end,
                truncated_from,
                ..
            } = o
            {
                outs.push((text.to_vec(), start, end, truncated_from));
            }
        };
        joiner.push(b"first line", 0, 11, None, t0, &mut record);
        joiner.push(b"  continued", 11, 23, None, t0, &mut record);
        assert_eq!(joiner.deadline(), Some(t0 + Duration::from_secs(1)));
        joiner.flush_if_due(t0 + Duration::from_millis(999), &mut record);
        joiner.flush_if_due(t0 + Duration::from_secs(1), &mut record);
        assert_eq!(joiner.deadline(), None);
        assert_eq!(outs, [(b"first line\n ".to_vec(), 0, 23, Some(22))]);
    }
}
