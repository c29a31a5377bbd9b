//! Writes realistic JSON log lines (about 400 bytes each, like an HTTP service's access and
//! application logs) for benchmarking the agent.
//!
//! `cargo run --release -p owl-agent --example gen_logs -- FILE MEGABYTES`

use std::io::{BufWriter, Write};

const PATHS: &[&str] = &[
    "/api/v1/forms",
    "/api/v1/orders",
    "/api/v1/users/profile",
    "/api/v1/logs/query",
    "/health",
];
const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "PUT", "DELETE"];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "okhttp/4.12.0",
];

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().map_or("bench.log", String::as_str);
    let megabytes: u64 = args.get(1).and_then(|m| m.parse().ok()).unwrap_or(200);
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut written = 0u64;
    let mut n = 0u64;
    // A fixed linear congruential sequence: the same file every time.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    while written < megabytes * 1024 * 1024 {
        let r = next();
        let (level, status) = match r % 100 {
            0..=2 => ("ERROR", 500),
            3..=9 => ("WARN", 404),
            _ => ("INFO", 200),
        };
        let ms = 1_733_580_000_000 + n * 7;
        let line = format!(
            concat!(
                r#"{{"ts":"2025-12-07T10:{:02}:{:02}.{:03}Z","level":"{}","msg":"{} {} completed","service":"Form","#,
                r#""trace_id":"CN-{}-{:08x}","span_id":"FORM-{}-{:06x}","request_id":"{}-{:03x}","method":"{}","#,
                r#""path":"{}","status":{},"duration_ms":{}.{},"user_id":"user-{:03}","client_ip":"10.{}.{}.{}","#,
                r#""user_agent":"{}","tenant":"tenant-{}"}}"#,
                "\n"
            ),
            (n / 60_000) % 60,
            (n / 1000) % 60,
            n % 1000,
            level,
            METHODS[(r % 6) as usize],
            PATHS[(r % 5) as usize],
            ms,
            r as u32,
            ms + 3,
            r & 0xff_ffff,
            ms,
            r & 0xfff,
            METHODS[(r % 6) as usize],
            PATHS[(r % 5) as usize],
            status,
            r % 900,
            r % 10,
            r % 1000,
            r % 256,
            (r >> 8) % 256,
            (r >> 16) % 256,
            AGENTS[(r % 3) as usize],
            r % 50,
        );
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
        n += 1;
    }
    out.flush()?;
    eprintln!("wrote {n} lines, {written} bytes to {path}");
    Ok(())
}
