//! Fuzzes the syslog listener's input: any bytes, framed as a TCP stream in any chunking, must
//! give frames no longer than the limit, and each frame, parsed in every format, a message whose
//! text is part of the frame and a record the collector accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use owl_agent::{Parser, ParserKind, SyslogFormat};
use owl_model::LogRecord;
use owl_parse::syslog::{Framer, parse};

const MAX: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let now = chrono::DateTime::from_timestamp(1_735_689_600, 0).expect("a valid time");
    let offset = chrono::FixedOffset::east_opt(8 * 3600).expect("a valid offset");
    let parser = Parser::new(ParserKind::Auto, "").expect("auto needs no configuration");
    let mut framer = Framer::new(MAX);
    let mut buf = Vec::new();
    let mut fed = 0;
    loop {
        let eof = fed >= data.len();
        loop {
            let (used, frame) = framer.next(&buf, eof);
            if let Some(frame) = frame {
                assert!(frame.bytes.len() <= MAX, "a frame over the limit");
                let text = String::from_utf8_lossy(frame.bytes);
                for format in [SyslogFormat::Auto, SyslogFormat::Rfc5424, SyslogFormat::Rfc3164] {
                    let message = parse(&text, format, now, offset);
                    assert!(text.contains(message.message), "the message is not part of the frame");
                    let record = parser.parse_with(message.message, message.timestamp.unwrap_or(now), message.level()).record;
                    let line = serde_json::to_vec(&record).expect("records serialise");
                    if let Err(e) = LogRecord::from_json_slice(&line, now) {
                        panic!("a record the collector would reject: {e}");
                    }
                }
            }
            if used == 0 {
                break;
            }
            buf.drain(..used);
        }
        if eof {
            return;
        }
        let end = (fed + chunk).min(data.len());
        buf.extend_from_slice(&data[fed..end]);
        fed = end;
    }
});
