//! Fuzzes what the collector does with each line of an ingest body it did not produce itself:
//! any bytes must give either an item or a reason, never a panic; an accepted record must survive
//! masking and serialise back to a line that parses to the same item.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use owl_model::{IngestItem, Masker, MaskingRules};

fn masker() -> &'static Masker {
    static MASKER: OnceLock<Masker> = OnceLock::new();
    MASKER.get_or_init(|| Masker::new(&MaskingRules::default()).expect("the default rules are valid"))
}

fuzz_target!(|data: &[u8]| {
    let now = chrono::DateTime::from_timestamp(1_735_689_600, 0).expect("a valid time");
    let Ok(mut item) = IngestItem::parse(data, now) else {
        return;
    };
    if let IngestItem::Log(record) = &mut item {
        masker().mask_record(record);
    }
    let line = item.to_line();
    match IngestItem::parse(&line, now) {
        Ok(again) => assert_eq!(again.to_line(), line, "a stored line must read back the same"),
        Err(e) => panic!("an accepted item serialised to a line the collector rejects: {e}\n{}", String::from_utf8_lossy(&line)),
    }
});
