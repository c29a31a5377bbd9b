//! The benchmark's records: the shapes of `owl up --demo` (Gateway → IAM → Form → Approval hops
//! sharing a trace, failures with stack traces, slow requests with a Chinese warning, the CRM's
//! Python service with Chinese messages, a development service), as NDJSON lines, at scale.
//!
//! Everything the demo writes to several files in several formats is written here as JSON lines
//! of one file, so that every shipper and every query engine reads the same bytes. A small
//! xorshift generator keeps runs deterministic and the generator cheap (it writes gigabytes).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};

const REGIONS: [&str; 3] = ["CN", "US", "UAE"];
const USERS: [(&str, &str); 6] = [
    ("user-001", "zhangsan"),
    ("user-002", "lisi"),
    ("user-003", "wangwu"),
    ("user-004", "alice"),
    ("user-005", "bob"),
    ("user-006", "张三"),
];
const FORM_URLS: [&str; 4] = [
    "/api/v1/forms",
    "/api/v1/forms/submit",
    "/api/v1/forms/42",
    "/api/v1/files/upload",
];
const AGENTS: [&str; 3] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 Version/17.1 Safari/605.1.15",
    "okhttp/4.12.0",
];
const STACK: &str = "Error: Failed to connect to database\\n    at Pool.connect (/app/node_modules/pg/lib/pool.js:45:11)\\n    at FormRepository.save (/app/src/forms/form.repository.ts:88:20)\\n    at FormService.create (/app/src/forms/form.service.ts:41:31)";

/// The Latin keyword the query figures search for: in the message of every failed form request
/// (about one request in 40).
pub const LATIN_KEYWORD: &str = "Database connection failed";
/// The Chinese keyword the query figures search for: in the warning of every slow request.
pub const CJK_KEYWORD: &str = "慢查询";
/// The service the filtered top-50 query filters on.
pub const FILTER_SERVICE: &str = "Form";

/// A deterministic xorshift64* generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `[low, high)`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low).max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }
}

/// Writes NDJSON records of the demo shapes. Timestamps advance by `step_us` per request from
/// `start`.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: Rng,
    seed: u64,
    sequence: u64,
    records: u64,
    start_us: i64,
    step_us: i64,
    /// Every `sample_every`-th trace id is kept in `traces`.
    sample_every: u64,
    traces: Vec<String>,
}

/// What a [`Generator`] wrote.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// Records (lines).
    pub records: u64,
    /// Bytes, newlines included.
    pub bytes: u64,
}

impl Generator {
    /// A generator whose requests start at `start` and advance by `step_us` microseconds each.
    pub fn new(seed: u64, start: DateTime<Utc>, step_us: i64) -> Generator {
        Generator {
            rng: Rng::new(seed),
            seed,
            sequence: 0,
            records: 0,
            start_us: start.timestamp_micros(),
            step_us: step_us.max(1),
            sample_every: 1000,
            traces: Vec::new(),
        }
    }

    /// Keeps every `n`-th trace id (for trace lookups).
    pub fn sample_traces_every(mut self, n: u64) -> Generator {
        self.sample_every = n.max(1);
        self
    }

    /// The sampled trace ids.
    pub fn traces(&self) -> &[String] {
        &self.traces
    }

    fn id(&mut self) -> String {
        self.records += 1;
        format!("b{:x}-{:010}", self.seed & 0xffff, self.records)
    }

    fn alnum(&mut self, len: usize) -> String {
        const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| ALNUM[(self.rng.next_u64() % ALNUM.len() as u64) as usize] as char)
            .collect()
    }

    fn ts(us: i64) -> String {
        let at = Utc.timestamp_micros(us).single().unwrap_or_else(Utc::now);
        owl_model::format_timestamp(&at)
    }

    /// Appends the lines of one user request (two to six records) to `out`; returns how many.
    pub fn request(&mut self, out: &mut Vec<u8>) -> u64 {
        self.sequence += 1;
        let now_us = self.start_us + self.step_us * self.sequence as i64;
        let ms = now_us / 1000;
        let region = *self.rng.pick(&REGIONS);
        let trace_id = format!("{region}-{ms}-{:08x}", self.rng.next_u64() as u32);
        if self.sequence % self.sample_every == 0 {
            self.traces.push(trace_id.clone());
        }
        let (user_id, user_name) = *self.rng.pick(&USERS);
        let url = *self.rng.pick(&FORM_URLS);
        let method = if url.ends_with("42") { "GET" } else { "POST" };
        let ip = format!("192.168.{}.{}", self.rng.range(0, 4), self.rng.range(2, 250));
        let agent = *self.rng.pick(&AGENTS);
        let failed = self.rng.range(0, 40) == 0;
        let slow = self.rng.range(0, 25) == 0;
        let form_ms = if slow {
            self.rng.range(2100, 6000)
        } else {
            self.rng.range(20, 300)
        } as i64;
        let iam_ms = self.rng.range(5, 60) as i64;
        let approval_ms = self.rng.range(10, 120) as i64;
        let status = if failed {
            500
        } else if method == "POST" {
            201
        } else {
            200
        };
        let gateway_span = format!("GATEWAY-{ms}-{}", self.alnum(6));
        let iam_span = format!("IAM-{}-{}", ms + 1, self.alnum(6));
        let form_span = format!("FORM-{}-{}", ms + 1 + iam_ms, self.alnum(6));
        let approval_span = format!("APPROVAL-{}-{}", ms + 1 + iam_ms + form_ms, self.alnum(6));
        let request_id = format!("{ms}-{}", self.alnum(6));
        let host = format!("node-{}", self.rng.range(1, 9));
        let before = self.records;

        let hop = |g: &mut Generator,
                   out: &mut Vec<u8>,
                   service: &str,
                   span: &str,
                   parent: &str,
                   offset_ms: i64,
                   method: &str,
                   url: &str,
                   dur: i64,
                   status: u16,
                   error: bool| {
            let id = g.id();
            let level = if status >= 500 { "ERROR" } else { "INFO" };
            let instance = format!("{}-pod-{}", service.to_ascii_lowercase(), 1 + (ms % 3));
            let _ = write!(
                out,
                r#"{{"id":"{id}","@timestamp":"{ts}","level":"{level}","message":"{method} {url} | {status} | {dur}ms","trace":{{"id":"{trace_id}","span_id":"{span}","parent_span_id":"{parent}"}},"http":{{"request_id":"{request_id}","method":"{method}","url":"{url}","status_code":{status},"duration_ms":{dur}}},"user":{{"id":"{user_id}","name":"{user_name}"}},"client":{{"ip":"{ip}","user_agent":"{agent}"}},"service":{{"name":"{service}","region":"{region}","instance":"{instance}"}},"host":"{host}","environment":"production""#,
                ts = Generator::ts(now_us + offset_ms * 1000),
            );
            if error {
                let _ = write!(
                    out,
                    r#","error":{{"type":"DatabaseError","message":"{LATIN_KEYWORD}","code":"CONNECTION_REFUSED","stack":"{STACK}"}}"#
                );
            }
            out.extend_from_slice(b"}\n");
        };

        hop(
            self,
            out,
            "IAM",
            &iam_span,
            &gateway_span,
            1,
            "POST",
            "/api/v1/auth/verify",
            iam_ms,
            200,
            false,
        );
        hop(
            self,
            out,
            "Form",
            &form_span,
            &iam_span,
            1 + iam_ms,
            method,
            url,
            form_ms,
            status,
            failed,
        );
        if slow {
            let id = self.id();
            let _ = writeln!(
                out,
                r#"{{"id":"{id}","@timestamp":"{ts}","level":"WARN","message":"{CJK_KEYWORD}: 表单提交耗时 {form_ms}ms, 超过阈值 2000ms","trace":{{"id":"{trace_id}","span_id":"{form_span}"}},"user":{{"id":"{user_id}","name":"{user_name}"}},"service":{{"name":"Form","region":"{region}","instance":"form-pod-1"}},"host":"{host}","environment":"production"}}"#,
                ts = Generator::ts(now_us + (1 + iam_ms + form_ms) * 1000),
            );
        }
        if !failed {
            hop(
                self,
                out,
                "Approval",
                &approval_span,
                &form_span,
                1 + iam_ms + form_ms,
                "POST",
                "/api/v1/approval/start",
                approval_ms,
                200,
                false,
            );
        }
        // The CRM's Python service (its logging fields, Chinese messages).
        if self.sequence % 3 == 0 {
            let thread = 140_245_000 + self.rng.range(0, 1000);
            let (level, function, line, message) = match self.rng.range(0, 10) {
                0 => ("ERROR", "login", 45, "用户登录失败：用户名或密码错误".to_string()),
                1 => (
                    "WARN",
                    "get_customer",
                    112,
                    format!("客户 {} 的资料不完整", self.rng.range(1000, 9999)),
                ),
                2 => (
                    "INFO",
                    "create_order",
                    77,
                    "订单已创建, status=submitted, currency=IDR".to_string(),
                ),
                _ => ("INFO", "login", 39, format!("用户 {user_name} 登录成功")),
            };
            let id = self.id();
            let _ = writeln!(
                out,
                r#"{{"id":"{id}","@timestamp":"{ts}","level":"{level}","message":"{message}","logger":"foundation_service.api.v1.auth","module":"auth","file":"auth.py","function":"{function}","line":{line},"thread":{thread},"process":1,"service":{{"name":"foundation-service","region":"{region}","instance":"foundation-pod-1"}},"host":"{host}","environment":"production"}}"#,
                ts = Generator::ts(now_us),
            );
        }
        // A development service with debug chatter.
        if self.sequence % 5 == 0 {
            let level = if self.sequence % 15 == 0 { "ERROR" } else { "DEBUG" };
            let rows = self.rng.range(10, 5000);
            let dev_trace = format!("{region}-{ms}-{:08x}", self.rng.next_u64() as u32);
            let id = self.id();
            let _ = writeln!(
                out,
                r#"{{"id":"{id}","@timestamp":"{ts}","level":"{level}","message":"report job {seq} rendered {rows} rows","service":{{"name":"Report","region":"{region}","instance":"report-dev-1"}},"trace":{{"id":"{dev_trace}"}},"host":"{host}","environment":"development"}}"#,
                ts = Generator::ts(now_us),
                seq = self.sequence,
            );
        }
        self.records - before
    }

    /// Appends requests until at least `records` more records were written.
    pub fn records_into(&mut self, records: u64, out: &mut Vec<u8>) -> u64 {
        let mut written = 0;
        while written < records {
            written += self.request(out);
        }
        written
    }

    /// Writes requests to `path` until at least `bytes` bytes or `records` records were written,
    /// whichever comes first.
    pub fn write_file(&mut self, path: &Path, bytes: u64, records: u64) -> std::io::Result<Written> {
        let mut file = BufWriter::with_capacity(1 << 20, File::create(path)?);
        let mut written = Written::default();
        let mut buf = Vec::with_capacity(64 * 1024);
        while written.bytes < bytes && written.records < records {
            buf.clear();
            for _ in 0..64 {
                written.records += self.request(&mut buf);
            }
            written.bytes += buf.len() as u64;
            file.write_all(&buf)?;
        }
        file.flush()?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_is_a_record_of_the_demo_shapes() {
        let start = Utc::now() - chrono::Duration::hours(1);
        let mut generator = Generator::new(7, start, 1000).sample_traces_every(10);
        let mut out = Vec::new();
        let written = generator.records_into(2000, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count() as u64, written);
        let mut kinds = std::collections::BTreeSet::new();
        for line in text.lines() {
            let record = owl_model::LogRecord::from_json_slice(line.as_bytes(), Utc::now()).unwrap();
            assert!(!record.id.is_empty());
            kinds.insert(record.classify());
        }
        assert_eq!(kinds.len(), 3, "http, application and error records: {kinds:?}");
        assert!(text.contains(LATIN_KEYWORD) && text.contains(CJK_KEYWORD));
        assert!(!generator.traces().is_empty());
        // Deterministic: the same seed writes the same bytes.
        let mut again = Vec::new();
        Generator::new(7, start, 1000).records_into(2000, &mut again);
        assert_eq!(again, text.as_bytes());
    }
}
