//! A discard-and-acknowledge ingest endpoint for measuring the agent alone.
//!
//! `cargo run --release -p owl-agent --example ack_sink -- [ADDR] [--count]`
//!
//! Answers every `POST /api/v1/ingest` with 200 and `{"accepted": N, ...}` in one write
//! (TCP_NODELAY), without storing anything. With `--count` it decompresses bodies and counts
//! lines (on its own core, so the agent's figures are not affected); it prints its totals every
//! second as `requests=R lines=L wire_bytes=W`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[derive(Default)]
struct Totals {
    requests: AtomicU64,
    lines: AtomicU64,
    wire_bytes: AtomicU64,
}

async fn handle(request: Request<Incoming>, totals: Arc<Totals>, count: bool) -> Response<Full<Bytes>> {
    let encoding = request
        .headers()
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    };
    totals.requests.fetch_add(1, Ordering::Relaxed);
    totals.wire_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    let mut lines = 0u64;
    if count {
        let decoded = match encoding.as_deref() {
            Some("zstd") => zstd::stream::decode_all(&body[..]).unwrap_or_default(),
            Some("gzip") => {
                let mut out = Vec::new();
                let _ = std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut out);
                out
            }
            _ => body.to_vec(),
        };
        lines = memchr::memchr_iter(b'\n', &decoded).count() as u64;
        totals.lines.fetch_add(lines, Ordering::Relaxed);
    }
    let answer = format!(r#"{{"accepted":{lines},"duplicates":0,"rejected":[]}}"#);
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(answer)))
        .expect("static headers are valid")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count = args.iter().any(|a| a == "--count");
    let addr = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .expect("bind the sink address");
    println!(
        "listening on {}",
        listener.local_addr().expect("bound listener has an address")
    );
    let totals = Arc::new(Totals::default());
    {
        let totals = totals.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                println!(
                    "requests={} lines={} wire_bytes={}",
                    totals.requests.load(Ordering::Relaxed),
                    totals.lines.load(Ordering::Relaxed),
                    totals.wire_bytes.load(Ordering::Relaxed)
                );
            }
        });
    }
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let totals = totals.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let totals = totals.clone();
                async move { Ok::<_, Infallible>(handle(request, totals, count).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
