//! What every Owl HTTP server shares: the Data Plane trace headers ([`TraceLayer`]), the basic
//! health body, and serving a router with the settings Owl always wants (TCP_NODELAY, graceful
//! shutdown on a [`CancellationToken`]).
#![warn(missing_docs)]

mod trace;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use trace::{
    REQUEST_ID, RESPONSE_TIME, SPAN_ID, TRACE_ID, TRACEPARENT, TraceContext, TraceFuture, TraceLayer,
    TraceService, new_request_id, new_span_id, new_trace_id, parse_traceparent, trace_layer,
};

/// The body of `/health` and `/api/health` (the health check shape of the Whalefall API, 004).
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

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets in-flight requests
/// finish. TCP_NODELAY is set so that a response written in two parts never waits for a delayed
/// ACK.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    let app = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_body_has_the_004_shape() {
        let body = health_body("1.2.3");
        assert_eq!(body["status"], "success");
        assert_eq!(body["data"]["status"], "healthy");
        assert_eq!(body["data"]["version"], "1.2.3");
        assert!(body["data"]["timestamp"].as_f64().unwrap() > 1.7e9);
        assert_eq!(body["message"], "服务运行正常");
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
