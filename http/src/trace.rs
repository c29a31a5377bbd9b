//! The Data Plane headers of the log API as one tower layer.
//!
//! Inbound: `X-Trace-Id` is kept when it is a sane id, else the trace id of a W3C `traceparent`
//! is used, else one is generated as `{region}-{epoch ms}-{random8}`. `X-Span-Id` (or the parent
//! id of `traceparent`) becomes the parent span of this request. Outbound, every response carries
//! `X-Request-Id` (`{epoch ms}-{random6}`), `X-Trace-Id` and `X-Response-Time` (`123ms`).
//!
//! The resolved [`TraceContext`] is put in the request extensions so that handlers and the audit
//! log can carry the same ids, and the request runs inside a `request` span (`method`, `route`,
//! `request_id`, `trace_id`, and `user` once [`record_user`] names it), so every line Owl logs
//! while serving it carries them too.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::MatchedPath;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use rand::Rng;
use tower::{Layer, Service};
use tracing::Span;

/// `X-Trace-Id`.
pub const TRACE_ID: HeaderName = HeaderName::from_static("x-trace-id");
/// `X-Span-Id`.
pub const SPAN_ID: HeaderName = HeaderName::from_static("x-span-id");
/// `X-Request-Id`.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-Response-Time`.
pub const RESPONSE_TIME: HeaderName = HeaderName::from_static("x-response-time");
/// W3C `traceparent`.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Longest trace or span id accepted from a client.
const MAX_ID_LEN: usize = 128;

/// The ids of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// Trace id, shared across services.
    pub trace_id: String,
    /// Span id of this request's operation.
    pub span_id: String,
    /// Span id of the caller, when one was given.
    pub parent_span_id: Option<String>,
    /// Request id, unique within this service.
    pub request_id: String,
}

fn epoch_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn random_chars(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

const HEX: &[u8] = b"0123456789abcdef";
const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A new trace id: `{region}-{epoch ms}-{random8}` (`CN-1733580000000-a1b2c3d4`).
pub fn new_trace_id(region: &str) -> String {
    format!("{region}-{}-{}", epoch_millis(), random_chars(8, HEX))
}

/// A new request id: `{epoch ms}-{random6}`.
pub fn new_request_id() -> String {
    format!("{}-{}", epoch_millis(), random_chars(6, ALNUM))
}

/// A new span id: `{SERVICE}-{epoch ms}-{random6}` (`OWL-1733580000123-x1y2z3`).
pub fn new_span_id(service: &str) -> String {
    format!(
        "{}-{}-{}",
        service.to_ascii_uppercase(),
        epoch_millis(),
        random_chars(6, ALNUM)
    )
}

fn sane_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?.trim();
    let ok = !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| s.to_string())
}

/// Parses a W3C `traceparent` (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`).
pub fn parse_traceparent(value: &str) -> Option<(String, String)> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let parent_id = parts.next()?;
    let flags = parts.next()?;
    let is_hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_hex(version, 2)
        || version == "ff"
        || !is_hex(trace_id, 32)
        || !is_hex(parent_id, 16)
        || !is_hex(flags, 2)
    {
        return None;
    }
    // Version 00 has exactly four fields; later versions may append more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if trace_id.bytes().all(|b| b == b'0') || parent_id.bytes().all(|b| b == b'0') {
        return None;
    }
    Some((trace_id.to_ascii_lowercase(), parent_id.to_ascii_lowercase()))
}

impl TraceContext {
    /// Resolves the ids of a request from its headers.
    pub fn from_headers(headers: &HeaderMap, region: &str, service: &str) -> TraceContext {
        let traceparent = headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent);
        let trace_id = headers
            .get(TRACE_ID)
            .and_then(sane_id)
            .or_else(|| traceparent.as_ref().map(|(trace, _)| trace.clone()))
            .unwrap_or_else(|| new_trace_id(region));
        let parent_span_id = headers
            .get(SPAN_ID)
            .and_then(sane_id)
            .or_else(|| traceparent.map(|(_, parent)| parent));
        TraceContext {
            trace_id,
            span_id: new_span_id(service),
            parent_span_id,
            request_id: new_request_id(),
        }
    }
}

/// Names the signed-in user on the current request's span (a no-op outside one).
pub fn record_user(user: &str) {
    Span::current().record("user", user);
}

/// The layer: `TraceLayer::new("CN", "owl")`.
#[derive(Debug, Clone)]
pub struct TraceLayer {
    names: Arc<(String, String)>,
}

impl TraceLayer {
    /// A layer generating trace ids for `region` and span ids for `service`.
    pub fn new(region: impl Into<String>, service: impl Into<String>) -> TraceLayer {
        TraceLayer {
            names: Arc::new((region.into(), service.into())),
        }
    }
}

/// The trace-header layer with Owl's service name.
pub fn trace_layer(region: &str) -> TraceLayer {
    TraceLayer::new(region, "owl")
}

impl<S> Layer<S> for TraceLayer {
    type Service = TraceService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TraceService {
            inner,
            names: self.names.clone(),
        }
    }
}

/// The service of [`TraceLayer`].
#[derive(Debug, Clone)]
pub struct TraceService<S> {
    inner: S,
    names: Arc<(String, String)>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for TraceService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TraceFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let (region, service) = &*self.names;
        let context = TraceContext::from_headers(request.headers(), region, service);
        let ids = (
            HeaderValue::from_str(&context.request_id).ok(),
            HeaderValue::from_str(&context.trace_id).ok(),
        );
        // The route template, not the path, so that lines group by endpoint; a path no route
        // knows is named as sent.
        let route = match request.extensions().get::<MatchedPath>() {
            Some(path) => path.as_str(),
            None => request.uri().path(),
        };
        let span = tracing::info_span!(
            "request",
            method = %request.method(),
            route,
            request_id = %context.request_id,
            trace_id = %context.trace_id,
            user = tracing::field::Empty,
        );
        request.extensions_mut().insert(context);
        let inner = span.in_scope(|| self.inner.call(request));
        TraceFuture {
            inner,
            span,
            started: Instant::now(),
            ids: Some(ids),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`TraceService`].
    pub struct TraceFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        started: Instant,
        ids: Option<(Option<HeaderValue>, Option<HeaderValue>)>,
    }
}

impl<F, B, E> Future for TraceFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let mut response = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(response)) => response,
        };
        let elapsed = this.started.elapsed().as_millis();
        // A server error was logged where it happened, with its cause; this line is the access
        // log, for those who ask for it.
        tracing::debug!(
            status = response.status().as_u16(),
            elapsed_ms = elapsed as u64,
            "request answered"
        );
        let headers = response.headers_mut();
        if let Some((request_id, trace_id)) = this.ids.take() {
            if let Some(v) = request_id {
                headers.insert(REQUEST_ID, v);
            }
            if let Some(v) = trace_id {
                headers.insert(TRACE_ID, v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&format!("{elapsed}ms")) {
            headers.insert(RESPONSE_TIME, v);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{Extension, Router, body::Body, routing::get};
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new()
            .route(
                "/",
                get(|Extension(ctx): Extension<TraceContext>| async move {
                    ctx.parent_span_id.unwrap_or_default()
                }),
            )
            .layer(TraceLayer::new("CN", "form"))
    }

    fn is_trace_id(s: &str) -> bool {
        let parts: Vec<&str> = s.split('-').collect();
        parts.len() == 3
            && parts[0] == "CN"
            && parts[1].len() == 13
            && parts[1].bytes().all(|b| b.is_ascii_digit())
            && parts[2].len() == 8
            && parts[2].bytes().all(|b| b.is_ascii_hexdigit())
    }

    #[tokio::test]
    async fn generates_ids_in_the_documented_formats() {
        let response = app().oneshot(Request::new(Body::empty())).await.unwrap();
        let headers = response.headers();
        let trace = headers[TRACE_ID].to_str().unwrap();
        assert!(is_trace_id(trace), "{trace}");
        let request_id = headers[REQUEST_ID].to_str().unwrap();
        let (ts, random) = request_id.split_once('-').unwrap();
        assert_eq!(ts.len(), 13);
        assert!(ts.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(random.len(), 6);
        let time = headers[RESPONSE_TIME].to_str().unwrap();
        assert!(
            time.ends_with("ms") && time.trim_end_matches("ms").parse::<u64>().is_ok(),
            "{time}"
        );
        let span = new_span_id("form");
        assert!(
            span.starts_with("FORM-") && span.len() == "FORM-".len() + 13 + 1 + 6,
            "{span}"
        );
    }

    #[tokio::test]
    async fn propagates_a_given_trace_id_and_span() {
        let request = Request::builder()
            .header("X-Trace-Id", "CN-1733580000000-a1b2c3d4")
            .header("X-Span-Id", "IAM-1733580000100-m1n2o3")
            .body(Body::empty())
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.headers()[TRACE_ID], "CN-1733580000000-a1b2c3d4");
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], b"IAM-1733580000100-m1n2o3");
    }

    #[tokio::test]
    async fn accepts_w3c_traceparent() {
        let request = Request::builder()
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .body(Body::empty())
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.headers()[TRACE_ID], "4bf92f3577b34da6a3ce929d0e0e4736");
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], b"00f067aa0ba902b7");
    }

    #[tokio::test]
    async fn x_trace_id_wins_over_traceparent_and_garbage_is_replaced() {
        let request = Request::builder()
            .header("X-Trace-Id", "US-1-deadbeef")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .body(Body::empty())
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.headers()[TRACE_ID], "US-1-deadbeef");

        let request = Request::builder()
            .header("X-Trace-Id", "bad id<script>")
            .body(Body::empty())
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        assert!(is_trace_id(response.headers()[TRACE_ID].to_str().unwrap()));
    }

    #[tokio::test]
    async fn every_line_of_a_request_carries_its_ids_route_and_user() {
        let lines = owl_logging::Captured::default();
        let _guard = tracing::subscriber::set_default(lines.subscriber("debug", owl_config::LogFormat::Json));
        let app = Router::new()
            .route(
                "/users/{id}",
                get(|| async {
                    record_user("alice");
                    // The handler awaits before it logs: the span must follow the future.
                    tokio::task::yield_now().await;
                    tracing::info!("handling");
                    "ok"
                }),
            )
            .layer(TraceLayer::new("CN", "owl"));
        let request = Request::builder()
            .uri("/users/42")
            .header("X-Trace-Id", "CN-1733580000000-a1b2c3d4")
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let request_id = response.headers()[REQUEST_ID].to_str().unwrap().to_string();

        let text = lines.text();
        let parsed = lines.json_lines();
        let handling = parsed.iter().find(|l| l["message"] == "handling").expect(&text);
        assert_eq!(handling["trace_id"], "CN-1733580000000-a1b2c3d4");
        assert_eq!(handling["request_id"], request_id);
        assert_eq!(handling["route"], "/users/{id}");
        assert_eq!(handling["method"], "GET");
        assert_eq!(handling["user"], "alice");
        let answered = parsed
            .iter()
            .find(|l| l["message"] == "request answered")
            .expect(&text);
        assert_eq!(answered["status"], 200);
        assert_eq!(answered["trace_id"], "CN-1733580000000-a1b2c3d4");
    }

    #[test]
    fn traceparent_parsing_rejects_invalid_values() {
        assert!(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }
}
