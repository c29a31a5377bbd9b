//! Fuzzes the agent's line parsers: any bytes, through every parser (and through the container
//! runtime envelopes first), must give a record that serialises to an ingest line the collector
//! accepts.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use owl_agent::{Parser, ParserKind};
use owl_model::LogRecord;

fn parsers() -> &'static [Parser] {
    static PARSERS: OnceLock<Vec<Parser>> = OnceLock::new();
    PARSERS.get_or_init(|| {
        let mut parsers: Vec<Parser> = [ParserKind::Auto, ParserKind::Json, ParserKind::Python, ParserKind::Combined, ParserKind::Plain]
            .into_iter()
            .map(|kind| Parser::new(kind, "").expect("built-in parsers need no configuration"))
            .collect();
        parsers.push(
            Parser::new(ParserKind::Regex, r"^(?P<ts>\S+) (?P<level>\w+) (?P<trace_id>\S+) (?P<msg>.*)$")
                .expect("the pattern is valid"),
        );
        parsers
    })
}

fuzz_target!(|data: &[u8]| {
    // A runtime envelope's content is what the content parsers then see.
    let content = owl_parse::runtime::unwrap(owl_parse::runtime::Envelope::Any, data).map(|line| line.content.into_owned());
    let data = content.as_deref().unwrap_or(data);
    let text = String::from_utf8_lossy(data);
    let now = chrono::DateTime::from_timestamp(1_735_689_600, 0).expect("a valid time");
    for parser in parsers() {
        let parsed = parser.parse(&text, now);
        let line = serde_json::to_vec(&parsed.record).expect("records serialise");
        if let Err(e) = LogRecord::from_json_slice(&line, now) {
            panic!("{:?} made a record the collector would reject: {e}\n{}", parser.kind(), String::from_utf8_lossy(&line));
        }
    }
});
