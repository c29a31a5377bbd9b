//! The envelopes container runtimes write around each line of a container's output.
//!
//! - CRI (containerd, CRI-O), in `/var/log/pods/...`: `<RFC 3339 nano time> <stdout|stderr> <P|F>
//!   <content>`. A line longer than the runtime's buffer (16 KiB by default) is written as `P`
//!   (partial) chunks ended by an `F` (full) one.
//! - Docker's `json-file`: `{"log": "...\n", "stream": "stdout", "time": "..."}`, where a line over
//!   16 KiB is split across entries whose `log` does not end in a newline.
//!
//! [`unwrap`] takes the envelope off one physical line; joining the chunks of one logical line is
//! the reader's business (it knows where they lie in the file).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn parse(text: &str) -> Option<Stream> {
        match text {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// The envelope formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// CRI's text lines.
    Cri,
    /// Docker's json-file lines.
    Docker,
    /// Either, recognised line by line; other lines have none.
    Any,
}

/// One physical line with its envelope taken off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeLine<'a> {
    /// When the runtime wrote it.
    pub time: DateTime<Utc>,
    /// Its stream.
    pub stream: Stream,
    /// More chunks of the same logical line follow.
    pub partial: bool,
    /// The content, without the newline that ends a full line.
    pub content: Cow<'a, [u8]>,
}

/// Takes the envelope off `line` (without its newline); `None` when it has none of `envelope`.
pub fn unwrap(envelope: Envelope, line: &[u8]) -> Option<RuntimeLine<'_>> {
    match envelope {
        Envelope::Cri => cri(line),
        Envelope::Docker => docker(line),
        Envelope::Any => cri(line).or_else(|| docker(line)),
    }
}

fn cri(line: &[u8]) -> Option<RuntimeLine<'_>> {
    // Cheap first: a CRI line starts with a date (`2025-12-07T...`).
    if line.len() < 30 || !line[..4].iter().all(u8::is_ascii_digit) || line[4] != b'-' {
        return None;
    }
    let mut fields = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(fields.next()?).ok()?;
    let stream = Stream::parse(std::str::from_utf8(fields.next()?).ok()?)?;
    let partial = match fields.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    let content = fields.next().unwrap_or_default();
    let time = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
    Some(RuntimeLine {
        time,
        stream,
        partial,
        content: Cow::Borrowed(content),
    })
}

#[derive(Deserialize)]
struct DockerLine<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
}

fn docker(line: &[u8]) -> Option<RuntimeLine<'_>> {
    if !line.starts_with(b"{\"log\":") {
        return None;
    }
    let parsed: DockerLine<'_> = serde_json::from_slice(line).ok()?;
    let stream = Stream::parse(&parsed.stream)?;
    let time = DateTime::parse_from_rfc3339(&parsed.time)
        .ok()?
        .with_timezone(&Utc);
    let mut content = parsed.log.into_owned().into_bytes();
    let partial = content.last() != Some(&b'\n');
    if !partial {
        content.pop();
    }
    Some(RuntimeLine {
        time,
        stream,
        partial,
        content: Cow::Owned(content),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_lines() {
        let line = unwrap(
            Envelope::Cri,
            b"2025-12-07T10:30:00.123456789Z stderr P {\"msg\": \"part",
        )
        .unwrap();
        assert_eq!(line.stream, Stream::Stderr);
        assert!(line.partial);
        assert_eq!(&*line.content, b"{\"msg\": \"part");
        assert_eq!(line.time.timestamp_nanos_opt(), Some(1765103400123456789));
        let full = unwrap(Envelope::Any, b"2025-12-07T18:30:00.5+08:00 stdout F done").unwrap();
        assert!(!full.partial);
        assert_eq!(
            (&*full.content, full.time.timestamp_millis()),
            (&b"done"[..], 1765103400500)
        );
        let empty = unwrap(Envelope::Cri, b"2025-12-07T10:30:00.123456789Z stdout F").unwrap();
        assert!(empty.content.is_empty());
        for bad in [
            &b"2025-12-07T10:30:00.123456789Z stdlog F x"[..],
            b"2025-12-07T10:30:00.123456789Z stdout X x",
            b"2025-13-07T10:30:00.123456789Z stdout F x",
            b"plain application line that is long enough",
            b"",
        ] {
            assert_eq!(
                unwrap(Envelope::Cri, bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn docker_lines() {
        let full = unwrap(
            Envelope::Docker,
            br#"{"log":"{\"level\":\"info\",\"msg\":\"hi\"}\n","stream":"stdout","time":"2025-12-07T10:30:00.000000001Z"}"#,
        )
        .unwrap();
        assert!(!full.partial);
        assert_eq!(&*full.content, br#"{"level":"info","msg":"hi"}"#);
        let part = unwrap(
            Envelope::Any,
            br#"{"log":"aaaa","stream":"stderr","time":"2025-12-07T10:30:00Z"}"#,
        )
        .unwrap();
        assert!(part.partial);
        assert_eq!(part.stream, Stream::Stderr);
        assert_eq!(
            unwrap(
                Envelope::Docker,
                br#"{"log":"x","stream":"x","time":"2025-12-07T10:30:00Z"}"#
            ),
            None
        );
        assert_eq!(unwrap(Envelope::Docker, br#"{"message":"x"}"#), None);
        assert_eq!(
            unwrap(
                Envelope::Cri,
                br#"{"log":"x\n","stream":"stdout","time":"2025-12-07T10:30:00Z"}"#
            ),
            None
        );
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = unwrap(Envelope::Any, &bytes);
            let mut cri = b"2025-12-07T10:30:00Z stdout ".to_vec();
            cri.extend_from_slice(&bytes);
            let _ = unwrap(Envelope::Cri, &cri);
        }
    }
}
