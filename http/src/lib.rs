//! What every Owl HTTP server shares: the Data Plane trace headers and the request span
//! ([`TraceLayer`]), the log API's error body ([`logs_v1_error_body`]), the basic health body, and serving a router with the settings Owl always
//! wants (header and body timeouts, `nosniff`, TCP_NODELAY, graceful shutdown on a
//! [`CancellationToken`]).
#![warn(missing_docs)]

mod error;
mod trace;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::logs_v1_error_body;
pub use trace::{
    REQUEST_ID, RESPONSE_TIME, SPAN_ID, TRACE_ID, TRACEPARENT, TraceContext, TraceFuture, TraceLayer,
    TraceService, new_request_id, new_span_id, new_trace_id, parse_traceparent, record_user, trace_layer,
};

/// The body of `/health` and `/api/health` (the health check shape of the platform API).
pub fn health_body(version: &str) -> serde_json::Value {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    serde_json::json!({
        "status": "success",
        "data": { "status": "healthy", "timestamp": timestamp, "version": version },
        "message": "服务运行正常",
    })
}

/// How long a client may take to send a request's headers (slowloris).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request body may go without sending anything.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets in-flight requests
/// finish. Every Owl server gets the same protections: request headers must arrive within
/// [`HEADER_READ_TIMEOUT`] and a body may not stall for longer than [`BODY_IDLE_TIMEOUT`], so a
/// client that trickles bytes cannot hold connections open; every answer carries
/// `X-Content-Type-Options: nosniff`; TCP_NODELAY is set so that a response written in two parts
/// never waits for a delayed ACK.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, router, shutdown, HEADER_READ_TIMEOUT, BODY_IDLE_TIMEOUT).await
}

/// [`serve`] with other timeouts (tests shorten them).
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    header_read_timeout: Duration,
    body_idle_timeout: Duration,
) -> std::io::Result<()> {
    use axum::extract::ConnectInfo;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let router = router
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            body_idle_timeout,
        ))
        .layer(tower_http::set_header::SetResponseHeaderLayer::if_not_present(
            http::header::X_CONTENT_TYPE_OPTIONS,
            http::HeaderValue::from_static("nosniff"),
        ));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        let connection = builder.serve_connection(TokioIo::new(tcp), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_body_has_the_platform_shape() {
        let body = health_body("1.2.3");
        assert_eq!(body["status"], "success");
        assert_eq!(body["data"]["status"], "healthy");
        assert_eq!(body["data"]["version"], "1.2.3");
        assert!(body["data"]["timestamp"].as_f64().unwrap() > 1.7e9);
        assert_eq!(body["message"], "服务运行正常");
    }

    #[tokio::test]
    async fn slow_clients_are_cut_off_and_answers_carry_nosniff() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let app = Router::new().route(
            "/",
            axum::routing::get(|| async { "hi" }).post(|body: String| async move { body }),
        );
        tokio::spawn(serve_with(
            listener,
            app,
            shutdown.clone(),
            Duration::from_millis(300),
            Duration::from_millis(300),
        ));
        let read_all = |mut tcp: tokio::net::TcpStream| async move {
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
                .await
                .expect("the server closes the connection")
                .unwrap();
            String::from_utf8_lossy(&answer).to_string()
        };
        // A normal request.
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_all(tcp).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("x-content-type-options: nosniff"),
            "{answer}"
        );
        // Headers that never end: the connection is closed.
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let answer = read_all(tcp).await;
        assert!(!answer.contains("200 OK"), "{answer}");
        // A body that stalls: the request fails instead of waiting forever.
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\nabc")
            .await
            .unwrap();
        let answer = read_all(tcp).await;
        assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn serve_stops_on_cancel() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, Router::new(), shutdown.clone()));
        shutdown.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
