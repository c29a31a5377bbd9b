//! A collector-shaped sink that acknowledges and discards, for measuring shippers alone.
//!
//! - `POST /api/v1/ingest` (owl-agent): decodes zstd or gzip, counts records, answers
//!   `{"accepted":N,"duplicates":0,"rejected":[]}`. Agent heartbeats and host samples (lines with
//!   an `@type`) are not counted as records.
//! - `POST /_bulk` (rsyslog's omelasticsearch): counts documents (every second line), answers like
//!   Elasticsearch: `{"took":1,"errors":false,"items":[...]}`; `GET /` answers a version.
//! - Any other `POST` (syslog-ng's http destination): counts lines, answers `{}`.
//!
//! Every answer is one write (hyper sends head and a full body together) on a TCP_NODELAY socket:
//! a sink that wrote them separately would cap every shipper through Nagle and delayed ACK.

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

/// What the sink received.
#[derive(Debug, Default)]
pub struct Counts {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Records received.
    pub records: AtomicU64,
    /// Decoded body bytes.
    pub bytes: AtomicU64,
}

/// A running sink.
pub struct Sink {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it received.
    pub counts: Arc<Counts>,
    stop: CancellationToken,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Sink {
    /// Starts a sink on 127.0.0.1:0.
    pub async fn start() -> anyhow::Result<Sink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let stop = CancellationToken::new();
        let (accept_counts, accept_stop) = (counts.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = accept_stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let counts = accept_counts.clone();
                let stop = accept_stop.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let counts = counts.clone();
                        async move { Ok::<_, Infallible>(handle(request, &counts).await) }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = connection => {}
                        () = stop.cancelled() => {}
                    }
                });
            }
        });
        Ok(Sink { addr, counts, stop })
    }

    /// Records received so far.
    pub fn records(&self) -> u64 {
        self.counts.records.load(Ordering::Acquire)
    }

    /// Waits until at least `records` arrived; false when `timeout` passed first.
    pub async fn wait_for(&self, records: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.records() < records {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

fn decode(body: Bytes, encoding: Option<&str>) -> Vec<u8> {
    match encoding {
        Some("zstd") => zstd::stream::decode_all(&body[..]).unwrap_or_default(),
        Some("gzip") => {
            let mut out = Vec::new();
            let _ = flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out);
            out
        }
        _ => body.to_vec(),
    }
}

/// Non-empty lines of `body`.
fn lines(body: &[u8]) -> u64 {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && *l != b"\r")
        .count() as u64
}

fn json(body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid")
}

async fn handle(request: Request<Incoming>, counts: &Counts) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let encoding = request
        .headers()
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    };
    counts.requests.fetch_add(1, Ordering::Relaxed);
    if method == hyper::Method::GET {
        return json(r#"{"name":"owl-bench-sink","cluster_name":"bench","version":{"number":"7.17.0"},"tagline":"You Know, for Search"}"#.into());
    }
    let decoded = decode(body, encoding.as_deref());
    counts.bytes.fetch_add(decoded.len() as u64, Ordering::Relaxed);
    if path == "/api/v1/ingest" {
        let all = lines(&decoded);
        let typed = memchr::memmem::find_iter(&decoded, b"\"@type\"").count() as u64;
        let records = all.saturating_sub(typed);
        counts.records.fetch_add(records, Ordering::Release);
        return json(format!(r#"{{"accepted":{all},"duplicates":0,"rejected":[]}}"#));
    }
    if path.ends_with("/_bulk") {
        let docs = lines(&decoded) / 2;
        counts.records.fetch_add(docs, Ordering::Release);
        let mut answer = String::with_capacity(32 + docs as usize * 64);
        answer.push_str(r#"{"took":1,"errors":false,"items":["#);
        for i in 0..docs {
            if i > 0 {
                answer.push(',');
            }
            answer.push_str(
                r#"{"index":{"_index":"bench","_id":"x","_version":1,"result":"created","status":201}}"#,
            );
        }
        answer.push_str("]}");
        return json(answer);
    }
    counts.records.fetch_add(lines(&decoded), Ordering::Release);
    json("{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Conn;

    #[tokio::test]
    async fn counts_records_of_every_shape_and_answers_like_the_collector() {
        let sink = Sink::start().await.unwrap();
        let mut conn = Conn::connect(sink.addr).await.unwrap();
        let body = zstd::encode_all(&b"{\"a\":1}\n{\"a\":2}\n{\"@type\":\"heartbeat\"}\n"[..], 3).unwrap();
        let answer = conn
            .send(
                "POST",
                "/api/v1/ingest",
                &[("content-encoding", "zstd")],
                body.into(),
            )
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        let value: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(value["accepted"], 3);
        assert_eq!(value["rejected"], serde_json::json!([]));
        assert_eq!(sink.records(), 2);

        let bulk = "{\"index\":{}}\n{\"a\":1}\n{\"index\":{}}\n{\"a\":2}\n";
        let answer = conn.send("POST", "/_bulk", &[], Bytes::from(bulk)).await.unwrap();
        let value: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(value["errors"], false);
        assert_eq!(value["items"].as_array().unwrap().len(), 2);
        assert_eq!(sink.records(), 4);

        conn.send("POST", "/syslog-ng", &[], Bytes::from("x\ny"))
            .await
            .unwrap();
        assert!(sink.wait_for(6, Duration::from_secs(1)).await);
        assert!(!sink.wait_for(7, Duration::from_millis(20)).await);
    }
}
