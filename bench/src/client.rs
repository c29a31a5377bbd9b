//! A small HTTP/1.1 keep-alive client (one connection per [`Conn`], hyper underneath), the load
//! loop of the API figure, and percentiles.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// One keep-alive connection.
pub struct Conn {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

/// An answer.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: Bytes,
}

impl Conn {
    /// Connects to `addr` (TCP_NODELAY set).
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("while connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn { addr, sender })
    }

    /// Sends a request and reads the whole answer.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<Answer> {
        if self.sender.is_closed() {
            *self = Conn::connect(self.addr).await?;
        }
        self.sender.ready().await?;
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self.sender.send_request(request.body(Full::new(body))?).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer { status, body })
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Answer> {
        self.send("GET", path, headers, Bytes::new()).await
    }
}

/// Requests per second that `connections` keep-alive clients get from `GET path` over `duration`
/// (after a short warm-up). Every answer must have status 200.
pub async fn load(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    connections: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let headers: Arc<Vec<(String, String)>> = Arc::new(
        headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let path: Arc<str> = Arc::from(path);
    // Warm-up: one request per connection, which also fills a cache behind the endpoint.
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        let mut conn = Conn::connect(addr).await?;
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let answer = conn.get(&path, &pairs).await?;
        anyhow::ensure!(
            answer.status == 200,
            "GET {path} answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)])
        );
        conns.push(conn);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let started = Instant::now();
    for mut conn in conns {
        let (stop, done, headers, path) = (stop.clone(), done.clone(), headers.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            while !stop.load(Ordering::Relaxed) {
                let answer = conn.get(&path, &pairs).await?;
                anyhow::ensure!(answer.status == 200, "GET {path} answered {}", answer.status);
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let count = done.load(Ordering::Relaxed);
    for task in tasks {
        task.await.context("load task panicked")??;
    }
    Ok(count as f64 / elapsed.as_secs_f64())
}

/// Nearest-rank percentile `p` (0-100) of `values` in milliseconds; `None` when empty.
pub fn percentile_ms(values: &[Duration], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1].as_secs_f64() * 1000.0)
}

/// Finds `key` anywhere in a JSON value (the first match, depth first).
pub fn find_key<'a>(value: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    match value {
        serde_json::Value::Object(map) => map
            .get(key)
            .or_else(|| map.values().find_map(|v| find_key(v, key))),
        serde_json::Value::Array(items) => items.iter().find_map(|v| find_key(v, key)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&values, 50.0), Some(50.0));
        assert_eq!(percentile_ms(&values, 99.0), Some(99.0));
        assert_eq!(percentile_ms(&values[..1], 99.0), Some(1.0));
        assert_eq!(percentile_ms(&[], 50.0), None);
    }

    #[test]
    fn find_key_searches_nested_objects() {
        let value = serde_json::json!({"data": {"tokens": [{"access_token": "t"}]}});
        assert_eq!(
            find_key(&value, "access_token").and_then(|v| v.as_str()),
            Some("t")
        );
        assert!(find_key(&value, "missing").is_none());
    }
}
