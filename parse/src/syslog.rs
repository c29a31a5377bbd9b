//! Syslog messages: RFC 5424 and RFC 3164 (the BSD format), as network devices, rsyslog,
//! syslog-ng and `logger` send them, and as `syslog(3)` writes them to `/dev/log` (RFC 3164
//! without the host name).
//!
//! Parsing never fails: what does not follow the format is kept whole as the message, so a
//! line is never dropped for its shape. Framing (octet counting, newlines) is the listener's.

use std::borrow::Cow;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use owl_config::SyslogFormat;
use owl_model::Level;

/// Which format a message turned out to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// RFC 5424.
    Rfc5424,
    /// RFC 3164.
    Rfc3164,
    /// Neither: the text is the message.
    Unknown,
}

/// One structured data element of RFC 5424: `[id name="value" ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement<'a> {
    /// The SD-ID (`timeQuality`, `exampleSDID@32473`).
    pub id: &'a str,
    /// Its parameters, unescaped.
    pub params: Vec<(&'a str, Cow<'a, str>)>,
}

/// A parsed message; fields the message did not carry are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// The format it had.
    pub dialect: Dialect,
    /// Facility (0 to 23).
    pub facility: Option<u8>,
    /// Severity (0 emergency to 7 debug).
    pub severity: Option<u8>,
    /// When it happened.
    pub timestamp: Option<DateTime<Utc>>,
    /// Sending host.
    pub hostname: Option<&'a str>,
    /// Application (RFC 5424 APP-NAME, RFC 3164 tag).
    pub app_name: Option<&'a str>,
    /// Process id.
    pub proc_id: Option<&'a str>,
    /// RFC 5424 MSGID.
    pub msg_id: Option<&'a str>,
    /// RFC 5424 structured data.
    pub structured_data: Vec<SdElement<'a>>,
    /// The free-form text.
    pub message: &'a str,
}

impl Message<'_> {
    /// The record level of the severity: 0 to 3 are errors, 4 a warning, 5 and 6 information,
    /// 7 debugging.
    pub fn level(&self) -> Option<Level> {
        self.severity.map(|s| match s {
            0..=3 => Level::Error,
            4 => Level::Warn,
            5 | 6 => Level::Info,
            _ => Level::Debug,
        })
    }

    /// The facility's keyword (`auth`, `local0`).
    pub fn facility_name(&self) -> Option<&'static str> {
        const NAMES: [&str; 24] = [
            "kern",
            "user",
            "mail",
            "daemon",
            "auth",
            "syslog",
            "lpr",
            "news",
            "uucp",
            "cron",
            "authpriv",
            "ftp",
            "ntp",
            "security",
            "console",
            "solaris-cron",
            "local0",
            "local1",
            "local2",
            "local3",
            "local4",
            "local5",
            "local6",
            "local7",
        ];
        self.facility.and_then(|f| NAMES.get(usize::from(f)).copied())
    }

    /// The severity's keyword (`err`, `warning`).
    pub fn severity_name(&self) -> Option<&'static str> {
        const NAMES: [&str; 8] = [
            "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
        ];
        self.severity.and_then(|s| NAMES.get(usize::from(s)).copied())
    }
}

/// Parses one message (its frame, without the trailing newline). `now` places RFC 3164
/// timestamps, which carry no year, and `local` is the offset they are read in.
pub fn parse<'a>(text: &'a str, format: SyslogFormat, now: DateTime<Utc>, local: FixedOffset) -> Message<'a> {
    let text = text.trim_end_matches(['\n', '\r', '\0']);
    let plain = Message {
        dialect: Dialect::Unknown,
        facility: None,
        severity: None,
        timestamp: None,
        hostname: None,
        app_name: None,
        proc_id: None,
        msg_id: None,
        structured_data: Vec::new(),
        message: text,
    };
    let Some((pri, rest)) = priority(text) else {
        // Without a priority: a 3164 body, as some senders write (or garbage, kept whole).
        return match format {
            SyslogFormat::Rfc5424 => plain,
            _ => rfc3164(text, None, now, local).unwrap_or(plain),
        };
    };
    let parsed = match format {
        SyslogFormat::Rfc5424 => rfc5424(rest, pri),
        SyslogFormat::Rfc3164 => rfc3164(rest, Some(pri), now, local),
        SyslogFormat::Auto if is_5424(rest) => {
            rfc5424(rest, pri).or_else(|| rfc3164(rest, Some(pri), now, local))
        }
        SyslogFormat::Auto => rfc3164(rest, Some(pri), now, local),
    };
    parsed.unwrap_or(Message {
        facility: Some(pri / 8),
        severity: Some(pri % 8),
        message: rest,
        ..plain
    })
}

/// `<PRI>`: one to three digits, 0 to 191.
fn priority(text: &str) -> Option<(u8, &str)> {
    let rest = text.strip_prefix('<')?;
    let end = rest.find('>')?;
    let digits = &rest[..end];
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u8 = digits.parse().ok().filter(|v| *v <= 191)?;
    Some((value, &rest[end + 1..]))
}

/// Whether the text after the priority starts with a version (`1 `).
fn is_5424(rest: &str) -> bool {
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    (1..=2).contains(&digits) && rest.as_bytes().get(digits) == Some(&b' ')
}

fn nil(s: &str) -> Option<&str> {
    (s != "-").then_some(s)
}

/// `VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]`.
fn rfc5424(rest: &str, pri: u8) -> Option<Message<'_>> {
    let mut cursor = Cursor(rest);
    let version = cursor.word()?;
    if version != "1" {
        return None;
    }
    let timestamp = match cursor.word()? {
        "-" => None,
        ts => Some(DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&Utc)),
    };
    let hostname = nil(cursor.word()?);
    let app_name = nil(cursor.word()?);
    let proc_id = nil(cursor.word()?);
    let msg_id = nil(cursor.word()?);
    let (structured_data, rest) = structured_data(cursor.0)?;
    let message = match rest.strip_prefix(' ') {
        Some(message) => message.strip_prefix('\u{feff}').unwrap_or(message),
        None if rest.is_empty() => "",
        None => return None,
    };
    Some(Message {
        dialect: Dialect::Rfc5424,
        facility: Some(pri / 8),
        severity: Some(pri % 8),
        timestamp,
        hostname,
        app_name,
        proc_id,
        msg_id,
        structured_data,
        message,
    })
}

/// The structured data part: `-` or `[...]...`; returns the elements and what follows.
fn structured_data(text: &str) -> Option<(Vec<SdElement<'_>>, &str)> {
    if let Some(rest) = text.strip_prefix('-') {
        return Some((Vec::new(), rest));
    }
    if text.is_empty() {
        return Some((Vec::new(), text));
    }
    let mut elements = Vec::new();
    let mut rest = text;
    while let Some(inner) = rest.strip_prefix('[') {
        let id_end = inner.find([' ', ']'])?;
        let id = &inner[..id_end];
        if id.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        let mut at = &inner[id_end..];
        loop {
            if let Some(after) = at.strip_prefix(']') {
                rest = after;
                break;
            }
            at = at.strip_prefix(' ')?;
            let eq = at.find('=')?;
            let name = &at[..eq];
            if name.is_empty() || name.contains([' ', ']', '"']) {
                return None;
            }
            let value_text = at[eq + 1..].strip_prefix('"')?;
            let (value, after) = quoted(value_text)?;
            params.push((name, value));
            at = after;
        }
        elements.push(SdElement { id, params });
    }
    (!elements.is_empty()).then_some((elements, rest))
}

/// A PARAM-VALUE up to its closing quote, with `\"`, `\\` and `\]` unescaped.
fn quoted(text: &str) -> Option<(Cow<'_, str>, &str)> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut owned: Option<String> = None;
    let mut copied = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let value = match owned {
                    Some(mut s) => {
                        s.push_str(&text[copied..i]);
                        Cow::Owned(s)
                    }
                    None => Cow::Borrowed(&text[..i]),
                };
                return Some((value, &text[i + 1..]));
            }
            b'\\' if matches!(bytes.get(i + 1), Some(b'"' | b'\\' | b']')) => {
                let s = owned.get_or_insert_with(String::new);
                s.push_str(&text[copied..i]);
                copied = i + 1;
                i += 2;
            }
            _ => i += 1,
        }
    }
    None
}

/// `[TIMESTAMP SP] [HOSTNAME SP] [TAG[PID]: ] MSG`, the timestamp as `Mmm dd hh:mm:ss` (also
/// with a year or fractions) or RFC 3339 as rsyslog's high-precision templates write it.
fn rfc3164(rest: &str, pri: Option<u8>, now: DateTime<Utc>, local: FixedOffset) -> Option<Message<'_>> {
    let (timestamp, after) = match bsd_time(rest, now, local) {
        Some((ts, after)) => (Some(ts), after),
        None => match rest.split_once(' ') {
            Some((word, after)) if looks_rfc3339(word) => (
                Some(DateTime::parse_from_rfc3339(word).ok()?.with_timezone(&Utc)),
                after,
            ),
            _ => (None, rest),
        },
    };
    // Nothing of the format at all: the caller keeps the text whole.
    if timestamp.is_none() && pri.is_none() {
        return None;
    }
    let after = after.trim_start_matches(' ');
    let (hostname, body) = match tag(after) {
        // `/dev/log` messages have no host: the first word is the tag.
        Some(_) => (None, after),
        None => match after.split_once(' ') {
            Some((host, body)) if timestamp.is_some() && is_hostname(host) => (Some(host), body),
            _ => (None, after),
        },
    };
    let (app_name, proc_id, message) = match tag(body) {
        Some((app, pid, message)) => (Some(app), pid, message),
        None => (None, None, body),
    };
    Some(Message {
        dialect: Dialect::Rfc3164,
        facility: pri.map(|p| p / 8),
        severity: pri.map(|p| p % 8),
        timestamp,
        hostname,
        app_name,
        proc_id,
        msg_id: None,
        structured_data: Vec::new(),
        message,
    })
}

fn looks_rfc3339(word: &str) -> bool {
    let b = word.as_bytes();
    b.len() >= 20 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T'
}

fn is_hostname(word: &str) -> bool {
    !word.is_empty()
        && word.len() <= 255
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
        && !word.ends_with(':')
}

/// `TAG[PID]: MSG` or `TAG: MSG`, the tag at most 48 characters of letters, digits and `._/-`.
fn tag(text: &str) -> Option<(&str, Option<&str>, &str)> {
    let end = text
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-')))?;
    if end == 0 || end > 48 {
        return None;
    }
    let name = &text[..end];
    let rest = &text[end..];
    let (pid, rest) = match rest.strip_prefix('[') {
        Some(inner) => {
            let close = inner.find(']')?;
            (Some(&inner[..close]), &inner[close + 1..])
        }
        None => (None, rest),
    };
    let message = rest.strip_prefix(':')?;
    Some((name, pid, message.strip_prefix(' ').unwrap_or(message)))
}

/// `Mmm dd hh:mm:ss` (day space-padded or not), optionally `Mmm dd yyyy hh:mm:ss` and `.fff`.
fn bsd_time(text: &str, now: DateTime<Utc>, local: FixedOffset) -> Option<(DateTime<Utc>, &str)> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| text.get(..3) == Some(*m))? as u32 + 1;
    let mut cursor = Cursor(text.get(3..)?.trim_start_matches(' '));
    let day: u32 = cursor.word()?.parse().ok()?;
    let mut clock = cursor.word_or_end()?;
    let mut year = None;
    if clock.len() == 4 && clock.bytes().all(|b| b.is_ascii_digit()) {
        year = clock.parse::<i32>().ok();
        clock = cursor.word_or_end()?;
    }
    let clock = clock.strip_suffix(':').unwrap_or(clock);
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, f)) => (hms, Some(f)),
        None => (clock, None),
    };
    let mut parts = hms.split(':');
    let (h, m, s): (u32, u32, u32) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    if parts.next().is_some() || hms.len() != 8 {
        return None;
    }
    let nanos = match fraction {
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            f.parse::<u32>().ok()? * 10u32.pow(9 - f.len() as u32)
        }
        Some(_) => return None,
        None => 0,
    };
    let at = |year: i32| -> Option<DateTime<Utc>> {
        let naive: NaiveDateTime =
            NaiveDate::from_ymd_opt(year, month, day)?.and_hms_nano_opt(h, m, s, nanos)?;
        Some(local.from_local_datetime(&naive).single()?.with_timezone(&Utc))
    };
    let timestamp = match year {
        Some(year) => at(year)?,
        None => {
            // No year: this year, unless that is more than a day ahead (a December message read
            // in January).
            let this_year = now.with_timezone(&local).year();
            match at(this_year) {
                Some(ts) if ts <= now + chrono::Duration::days(1) => ts,
                _ => at(this_year - 1)?,
            }
        }
    };
    Some((timestamp, cursor.0))
}

/// A frame taken off a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The message bytes (without the length prefix or the newline).
    pub bytes: &'a [u8],
    /// The message was longer than the limit: its length in bytes (at least this many for a
    /// newline-framed one).
    pub truncated_from: Option<u64>,
}

/// Splits a stream (TCP, a Unix stream socket) into messages, RFC 6587: octet counting
/// (`LEN SP MSG`) when a frame starts with a digit, else non-transparent framing ended by a
/// newline. Either may follow the other on one connection.
#[derive(Debug, Clone)]
pub struct Framer {
    max: usize,
    /// The rest of a frame cut at `max`, still to be skipped.
    skip: Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    Nothing,
    /// This many bytes of an octet-counted frame.
    Bytes(u64),
    /// Up to the next newline.
    Line,
}

/// Digits of a length prefix at most (a length is at most 16 MiB).
const MAX_LEN_DIGITS: usize = 9;

impl Framer {
    /// A framer for messages of at most `max` bytes.
    pub fn new(max: usize) -> Framer {
        Framer {
            max: max.max(1),
            skip: Skip::Nothing,
        }
    }

    /// Takes the next frame off the front of `buf`: the bytes consumed and the frame, if one was
    /// completed (`(n, None)` with `n > 0` when bytes were skipped; `(0, None)` when more bytes
    /// are needed). At `eof` what is left is the last frame.
    pub fn next<'a>(&mut self, buf: &'a [u8], eof: bool) -> (usize, Option<Frame<'a>>) {
        match self.skip {
            Skip::Bytes(n) => {
                let take = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
                let left = n - take as u64;
                self.skip = if left == 0 {
                    Skip::Nothing
                } else {
                    Skip::Bytes(left)
                };
                return (take, None);
            }
            Skip::Line => {
                return match memchr::memchr(b'\n', buf) {
                    Some(i) => {
                        self.skip = Skip::Nothing;
                        (i + 1, None)
                    }
                    None => (buf.len(), None),
                };
            }
            Skip::Nothing => {}
        }
        if buf.is_empty() {
            return (0, None);
        }
        if buf[0] == b'\n' || buf[0] == b'\r' || buf[0] == 0 {
            let blank = buf.iter().take_while(|b| matches!(b, b'\n' | b'\r' | 0)).count();
            return (blank, None);
        }
        if buf[0].is_ascii_digit() {
            let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
            match buf.get(digits) {
                None if !eof && digits <= MAX_LEN_DIGITS => return (0, None),
                Some(b' ') if digits <= MAX_LEN_DIGITS => {
                    let len: usize = std::str::from_utf8(&buf[..digits])
                        .expect("ASCII digits")
                        .parse()
                        .expect("at most nine digits");
                    let start = digits + 1;
                    if len == 0 {
                        return (start, None);
                    }
                    if len <= self.max {
                        return match buf.get(start..start + len) {
                            Some(bytes) => (
                                start + len,
                                Some(Frame {
                                    bytes,
                                    truncated_from: None,
                                }),
                            ),
                            None if eof => (
                                buf.len(),
                                Some(Frame {
                                    bytes: &buf[start..],
                                    truncated_from: None,
                                }),
                            ),
                            None => (0, None),
                        };
                    }
                    return match buf.get(start..start + self.max) {
                        Some(bytes) => {
                            self.skip = Skip::Bytes((len - self.max) as u64);
                            (
                                start + self.max,
                                Some(Frame {
                                    bytes,
                                    truncated_from: Some(len as u64),
                                }),
                            )
                        }
                        None if eof => (
                            buf.len(),
                            Some(Frame {
                                bytes: &buf[start..],
                                truncated_from: Some(len as u64),
                            }),
                        ),
                        None => (0, None),
                    };
                }
                // Not a length prefix: a newline-framed message that starts with a digit.
                _ => {}
            }
        }
        let window = &buf[..buf.len().min(self.max + 1)];
        match memchr::memchr(b'\n', window) {
            Some(i) => {
                let bytes = &buf[..i];
                let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
                (
                    i + 1,
                    Some(Frame {
                        bytes,
                        truncated_from: None,
                    }),
                )
            }
            None if buf.len() > self.max => {
                self.skip = Skip::Line;
                (
                    self.max,
                    Some(Frame {
                        bytes: &buf[..self.max],
                        truncated_from: Some(buf.len() as u64),
                    }),
                )
            }
            None if eof => (
                buf.len(),
                Some(Frame {
                    bytes: buf,
                    truncated_from: None,
                }),
            ),
            None => (0, None),
        }
    }
}

/// Words separated by single spaces.
struct Cursor<'a>(&'a str);

impl<'a> Cursor<'a> {
    /// The next word, which must be followed by a space.
    fn word(&mut self) -> Option<&'a str> {
        let (word, rest) = self.0.split_once(' ')?;
        if word.is_empty() {
            return None;
        }
        self.0 = rest;
        Some(word)
    }

    /// The next word (after at most one space), followed by a space or the end; what is left
    /// starts with that space.
    fn word_or_end(&mut self) -> Option<&'a str> {
        let text = self.0.strip_prefix(' ').unwrap_or(self.0);
        let end = text.find(' ').unwrap_or(text.len());
        if end == 0 {
            return None;
        }
        self.0 = &text[end..];
        Some(&text[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-02T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn utc() -> FixedOffset {
        FixedOffset::east_opt(0).unwrap()
    }

    fn auto(text: &str) -> Message<'_> {
        parse(text, SyslogFormat::Auto, now(), utc())
    }

    #[test]
    fn rfc5424_with_structured_data_and_bom() {
        let m = auto(
            "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 \
             [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"] \u{feff}An application event",
        );
        assert_eq!(m.dialect, Dialect::Rfc5424);
        assert_eq!((m.facility, m.severity), (Some(20), Some(5)));
        assert_eq!(m.facility_name(), Some("local4"));
        assert_eq!(m.severity_name(), Some("notice"));
        assert_eq!(m.timestamp.unwrap().to_rfc3339(), "2003-10-11T22:14:15.003+00:00");
        assert_eq!(m.hostname, Some("mymachine.example.com"));
        assert_eq!(m.app_name, Some("evntslog"));
        assert_eq!(m.proc_id, None);
        assert_eq!(m.msg_id, Some("ID47"));
        assert_eq!(m.structured_data.len(), 2);
        assert_eq!(m.structured_data[0].id, "exampleSDID@32473");
        assert_eq!(
            m.structured_data[0].params[1],
            ("eventSource", Cow::Borrowed("Application"))
        );
        assert_eq!(
            m.structured_data[1].params,
            vec![("class", Cow::Borrowed("high"))]
        );
        assert_eq!(m.message, "An application event");
        assert_eq!(m.level(), Some(Level::Info));
    }

    #[test]
    fn rfc5424_nil_values_escapes_and_no_message() {
        let m = auto("<34>1 - - - - - -");
        assert_eq!(m.dialect, Dialect::Rfc5424);
        assert_eq!(
            (m.timestamp, m.hostname, m.app_name, m.message),
            (None, None, None, "")
        );
        assert_eq!(m.level(), Some(Level::Error));
        let m = auto(r#"<14>1 2026-12-02T07:00:00.5+08:00 h app 42 - [x@1 q="a \"b\" \\ c\]"] hi"#);
        assert_eq!(m.structured_data[0].params[0].1, r#"a "b" \ c]"#);
        assert_eq!(m.proc_id, Some("42"));
        assert_eq!(m.timestamp.unwrap().to_rfc3339(), "2026-12-01T23:00:00.500+00:00");
        assert_eq!(m.message, "hi");
    }

    #[test]
    fn rfc3164_network_and_local_forms() {
        let m = auto("<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8");
        assert_eq!(m.dialect, Dialect::Rfc3164);
        assert_eq!((m.facility, m.severity), (Some(4), Some(2)));
        assert_eq!(m.timestamp.unwrap().to_rfc3339(), "2026-10-11T22:14:15+00:00");
        assert_eq!(m.hostname, Some("mymachine"));
        assert_eq!(m.app_name, Some("su"));
        assert_eq!(m.message, "'su root' failed for lonvick on /dev/pts/8");
        // As syslog(3) writes to /dev/log: no host.
        let m = auto("<13>Dec  2 07:59:01 nginx[1234]: GET / 200");
        assert_eq!(
            (m.hostname, m.app_name, m.proc_id),
            (None, Some("nginx"), Some("1234"))
        );
        assert_eq!(m.message, "GET / 200");
        assert_eq!(m.timestamp.unwrap().to_rfc3339(), "2026-12-02T07:59:01+00:00");
        // A host but no tag.
        let m = auto("<13>Dec  2 07:59:01 switch-7 link down on port 3");
        assert_eq!((m.hostname, m.app_name), (Some("switch-7"), None));
        assert_eq!(m.message, "link down on port 3");
        // rsyslog's high-precision timestamp.
        let m = auto("<30>2026-12-02T07:59:01.123456+00:00 web-1 app: hello");
        assert_eq!(
            m.timestamp.unwrap().to_rfc3339(),
            "2026-12-02T07:59:01.123456+00:00"
        );
        assert_eq!(
            (m.hostname, m.app_name, m.message),
            (Some("web-1"), Some("app"), "hello")
        );
    }

    #[test]
    fn rfc3164_years_offsets_and_fractions() {
        // December's message read early in January belongs to last year.
        let january = DateTime::parse_from_rfc3339("2027-01-01T00:10:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let m = parse("<13>Dec 31 23:59:59 h a: x", SyslogFormat::Auto, january, utc());
        assert_eq!(m.timestamp.unwrap().to_rfc3339(), "2026-12-31T23:59:59+00:00");
        let m = parse(
            "<13>Dec  2 15:00:00.250 h a: x",
            SyslogFormat::Rfc3164,
            now(),
            FixedOffset::east_opt(8 * 3600).unwrap(),
        );
        assert_eq!(m.timestamp.unwrap().to_rfc3339(), "2026-12-02T07:00:00.250+00:00");
        let m = auto("<13>Mar  1 2025 18:46:11 h a: x");
        assert_eq!(m.timestamp.unwrap().to_rfc3339(), "2025-03-01T18:46:11+00:00");
    }

    #[test]
    fn what_does_not_follow_the_format_is_kept_whole() {
        for text in ["hello world", "", "<", "<999>x", "<12", "{\"a\":1}"] {
            let m = auto(text);
            assert_eq!(m.dialect, Dialect::Unknown, "{text:?}");
            assert_eq!(m.message, text);
        }
        // A priority and nothing else recognisable keeps the priority.
        let m = auto("<11>just text");
        assert_eq!((m.severity, m.message), (Some(3), "just text"));
        // A forced 5424 that is not one.
        let m = parse("<13>Dec  2 07:59:01 h a: x", SyslogFormat::Rfc5424, now(), utc());
        assert_eq!(
            (m.dialect, m.message),
            (Dialect::Unknown, "Dec  2 07:59:01 h a: x")
        );
        // Broken structured data falls back to 3164 reading in auto.
        let m = auto("<13>1 2026-12-02T07:00:00Z h a - - [broken hi");
        assert_eq!(m.dialect, Dialect::Rfc3164);
    }

    fn frames(input: &[u8], max: usize, chunk: usize) -> Vec<(Vec<u8>, Option<u64>)> {
        let mut framer = Framer::new(max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let mut fed = 0;
        loop {
            let eof = fed >= input.len();
            loop {
                let (used, frame) = framer.next(&buf, eof);
                if let Some(f) = frame {
                    out.push((f.bytes.to_vec(), f.truncated_from));
                }
                if used == 0 {
                    break;
                }
                buf.drain(..used);
            }
            if eof {
                return out;
            }
            let end = (fed + chunk).min(input.len());
            buf.extend_from_slice(&input[fed..end]);
            fed = end;
        }
    }

    #[test]
    fn octet_counted_and_newline_frames_mixed_in_any_chunking() {
        let input = b"11 <13>1 - - a\n<13>plain line\r\n\n5 hello3 abc2024-starts with digits\nlast";
        let want = vec![
            (b"<13>1 - - a".to_vec(), None),
            (b"<13>plain line".to_vec(), None),
            (b"hello".to_vec(), None),
            (b"abc".to_vec(), None),
            (b"2024-starts with digits".to_vec(), None),
            (b"last".to_vec(), None),
        ];
        for chunk in [1, 2, 3, 7, 100] {
            assert_eq!(frames(input, 1000, chunk), want, "chunk {chunk}");
        }
    }

    #[test]
    fn frames_over_the_limit_are_cut_flagged_and_their_rest_skipped() {
        let input = b"10 0123456789<13>a long newline framed message\n<13>next\n";
        for chunk in [1, 4, 100] {
            let got = frames(input, 6, chunk);
            assert_eq!(got[0], (b"012345".to_vec(), Some(10)), "chunk {chunk}");
            assert_eq!(got[1].0, b"<13>a ".to_vec());
            assert!(got[1].1.unwrap() >= 7);
            assert_eq!(got[2].0, b"<13>ne".to_vec());
            assert!(got[2].1.unwrap() >= 7);
            assert_eq!(got.len(), 3);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_frame_without_panic_or_overlong_frames(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300), chunk in 1usize..50) {
            for (frame, _) in frames(&bytes, 32, chunk) {
                proptest::prop_assert!(frame.len() <= 32);
            }
        }

        #[test]
        fn octet_counted_messages_round_trip(messages in proptest::collection::vec("[ -~\n]{0,40}", 0..20), chunk in 1usize..64) {
            let mut input = Vec::new();
            for m in &messages {
                input.extend_from_slice(format!("{} {m}", m.len()).as_bytes());
            }
            let got: Vec<Vec<u8>> = frames(&input, 1000, chunk).into_iter().map(|(f, _)| f).collect();
            let want: Vec<Vec<u8>> = messages.iter().filter(|m| !m.is_empty()).map(|m| m.as_bytes().to_vec()).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_and_the_message_is_part_of_it(text in "\\PC{0,200}", format in 0u8..3) {
            let format = [SyslogFormat::Auto, SyslogFormat::Rfc5424, SyslogFormat::Rfc3164][usize::from(format)];
            let m = parse(&text, format, now(), utc());
            proptest::prop_assert!(text.contains(m.message));
        }

        #[test]
        fn headers_of_any_shape_parse(
            pri in 0u16..200, host in "[a-z0-9.-]{0,10}", app in "[a-z]{0,6}", body in "[ -~]{0,40}",
        ) {
            for text in [
                format!("<{pri}>1 2026-12-02T07:00:00Z {host} {app} - - - {body}"),
                format!("<{pri}>Dec  2 07:00:00 {host} {app}: {body}"),
            ] {
                let m = auto(&text);
                proptest::prop_assert!(text.contains(m.message));
            }
        }
    }
}
