//! Extractors whose rejections answer in the family of the matched route, with field-level detail:
//! [`Json`], [`Query`], [`Path`], and the signed-in user [`AuthUser`] (required) or
//! `Option<AuthUser>` (explicitly optional).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{
    ConnectInfo, FromRequest, FromRequestParts, OptionalFromRequestParts, RawPathParams, Request,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use tokio_util::sync::CancellationToken;

use crate::auth::Principal;
use crate::envelope::{Failure, FailureKind, FieldError};
use crate::logs::StreamShutdown;
use crate::logs::params::RawQuery;

/// What the authentication middleware found in `Authorization`.
#[derive(Debug, Clone)]
pub(crate) enum Authn {
    /// A valid access token of an enabled user.
    User(Arc<Principal>),
    /// A token was presented and refused.
    Rejected {
        /// Unauthorized, or Unavailable/Internal when a dependency failed while checking it.
        kind: FailureKind,
        /// What to tell the client.
        message: String,
    },
}

impl Authn {
    /// The principal, or the failure a protected route answers.
    pub(crate) fn principal(authn: Option<&Authn>) -> Result<Arc<Principal>, Failure> {
        match authn {
            Some(Authn::User(principal)) => Ok(principal.clone()),
            Some(Authn::Rejected { kind, message }) => Err(Failure::new(*kind, message.clone())),
            None => Err(Failure::unauthorized("未认证：缺少 Bearer 令牌")),
        }
    }
}

/// The bearer token of a request, if the header has one.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The signed-in user; a route without one answers 401.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Arc<Principal>);

impl std::ops::Deref for AuthUser {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Failure> {
        Authn::principal(parts.extensions.get::<Authn>()).map(AuthUser)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for AuthUser {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Failure> {
        match parts.extensions.get::<Authn>() {
            Some(Authn::User(principal)) => Ok(Some(AuthUser(principal.clone()))),
            _ => Ok(None),
        }
    }
}

/// The client's address: the connection's peer, or, when the peer is one of
/// `query_api.trusted_proxies`, the right-most address of `Forwarded` (RFC 7239) or
/// `X-Forwarded-For` that is not a trusted proxy. Hops left of that were written by the client and
/// prove nothing. `unknown` without connection info (e.g. in `oneshot` tests).
#[derive(Debug, Clone)]
pub struct ClientIp(pub String);

/// The address [`resolve_client`] found, stored in the request's extensions.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedClient(pub(crate) IpAddr);

impl ClientIp {
    pub(crate) fn of(extensions: &axum::http::Extensions) -> String {
        if let Some(ResolvedClient(ip)) = extensions.get::<ResolvedClient>() {
            return ip.to_string();
        }
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string())
    }
}

/// The client of a request from `peer` through `trusted` proxies.
pub(crate) fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &owl_config::Networks) -> IpAddr {
    let peer = owl_config::net::canonical(peer);
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let forwarded: Vec<&str> = headers
        .get_all(header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(forwarded_for)
        .collect();
    let hops: Vec<&str> = if forwarded.is_empty() {
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|hop| !hop.is_empty())
            .collect()
    } else {
        forwarded
    };
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            // Garbage where a proxy should have written an address: stop at the last proxy.
            break;
        };
        client = ip;
        if !trusted.contains(ip) {
            break;
        }
    }
    client
}

/// The `for=` node of one `Forwarded` element.
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// An address of a hop: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(owl_config::net::canonical(ip));
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(owl_config::net::canonical(addr.ip()));
    }
    hop.strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(ip, _)| ip.parse::<IpAddr>().ok())
        .map(owl_config::net::canonical)
}

/// Middleware: resolves the client address once, before anything that uses it (the blocked
/// list, the audit log, login lockouts).
pub(crate) async fn resolve_client(
    axum::extract::State(trusted): axum::extract::State<std::sync::Arc<owl_config::Networks>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let client = client_address(peer.ip(), request.headers(), &trusted);
        request.extensions_mut().insert(ResolvedClient(client));
    }
    next.run(request).await
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(ClientIp::of(&parts.extensions)))
    }
}

/// A JSON body, deserialised with the path of the offending field in errors.
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

fn is_json(headers: &HeaderMap) -> bool {
    match headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        // Clients that send no content type at all still mean JSON here.
        None => true,
        Some(value) => {
            let mime = value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
        }
    }
}

/// Deserialises JSON, naming the field at fault.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Failure> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let message = error.inner().to_string();
        Failure::invalid(vec![field_error(&path, &message, "body")])
    })
}

impl<S: Send + Sync> FromRequestParts<S> for RawQuery {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(RawQuery::parse(parts.uri.query().unwrap_or_default()))
    }
}

/// The shutdown signal of the request, if the server set one ([`StreamShutdown`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct ShutdownSignal(pub Option<CancellationToken>);

impl<S: Send + Sync> FromRequestParts<S> for ShutdownSignal {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(ShutdownSignal(
            parts.extensions.get::<StreamShutdown>().map(|s| s.0.clone()),
        ))
    }
}

/// Reads a part of a JSON body already parsed, naming fields under `prefix` (`alerts`; empty for
/// the body itself) in errors.
pub(crate) fn parse_part<T: DeserializeOwned>(value: serde_json::Value, prefix: &str) -> Result<T, Failure> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let path = match (prefix, path.trim_end_matches('?').trim_end_matches('.')) {
            ("", inner) => inner.to_string(),
            (prefix, "") => prefix.to_string(),
            (prefix, inner) => format!("{prefix}.{inner}"),
        };
        let message = error.inner().to_string();
        let whole = if prefix.is_empty() { "body" } else { prefix };
        Failure::invalid(vec![field_error(&path, &message, whole)])
    })
}

/// A field error from a serde message, turning `missing field `x`` into a `required` error on `x`.
fn field_error(path: &str, message: &str, whole: &str) -> FieldError {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    // serde_path_to_error writes `.` for the root and `?` where the position is unknown.
    let known = path.trim_end_matches('?').trim_end_matches('.');
    let base = if known.is_empty() {
        String::new()
    } else {
        known.to_string()
    };
    match missing {
        Some(name) => {
            let field = if base.is_empty() {
                name.to_string()
            } else {
                format!("{base}.{name}")
            };
            FieldError::new(field.clone(), "required", format!("缺少必填字段 {field}"))
        }
        None => {
            let field = if base.is_empty() { whole.to_string() } else { base };
            let detail = message.split(" at line ").next().unwrap_or(message);
            FieldError::new(field.clone(), "type", format!("{field} 格式错误：{detail}"))
        }
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Failure;

    async fn from_request(request: Request, state: &S) -> Result<Self, Failure> {
        if !is_json(request.headers()) {
            return Err(Failure::invalid_field(
                "body",
                "content_type",
                "请求体必须是 JSON（Content-Type: application/json）",
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Failure::new(FailureKind::PayloadTooLarge, "请求体过大")
            } else {
                Failure::invalid_field(
                    "body",
                    "read",
                    format!("无法读取请求体：{}", rejection.body_text()),
                )
            }
        })?;
        parse_json(&bytes).map(Json)
    }
}

/// Query parameters, deserialised with the parameter at fault in errors. A parameter the type
/// does not take is refused by name (`unknown`), as the log endpoints refuse theirs: a misspelt
/// filter must not silently widen an answer.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Failure> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        let mut unknown: Vec<String> = Vec::new();
        let mut note = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
        let ignoring = serde_ignored::Deserializer::new(deserializer, &mut note);
        let value = serde_path_to_error::deserialize(ignoring).map_err(|error| {
            let path = error.path().to_string();
            let message = error.inner().to_string();
            Failure::invalid(vec![field_error(&path, &message, "query")])
        })?;
        if unknown.is_empty() {
            return Ok(Query(value));
        }
        let errors = unknown
            .iter()
            .map(|name| FieldError::new(name.as_str(), "unknown", format!("不支持的参数 {name}")))
            .collect();
        Err(Failure::invalid(errors))
    }
}

fn form_urlencoded_parse(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
}

/// Path parameters; a malformed one (`/api/users/abc`) is a field error on that parameter.
#[derive(Debug, Clone)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Failure> {
        match <axum::extract::Path<T> as FromRequestParts<S>>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(error)) => {
                use axum::extract::path::ErrorKind;
                let field = match error.kind() {
                    ErrorKind::ParseErrorAtKey { key, .. }
                    | ErrorKind::DeserializeError { key, .. }
                    | ErrorKind::InvalidUtf8InPathParam { key } => key.clone(),
                    // A single parameter is parsed without its name: look it up.
                    _ => match RawPathParams::from_request_parts(parts, state).await {
                        Ok(params) if params.iter().count() == 1 => params
                            .iter()
                            .next()
                            .map_or_else(|| "path".to_string(), |(key, _)| key.to_string()),
                        _ => "path".to_string(),
                    },
                };
                Err(Failure::invalid_field(
                    &field,
                    "format",
                    format!("路径参数 {field} 格式错误"),
                ))
            }
            Err(other) => Err(Failure::internal(anyhow::anyhow!(
                "path extraction: {}",
                other.body_text()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let trusted = owl_config::Networks::parse(&["10.0.0.0/8"]).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.append(*name, value.parse().unwrap());
            }
            map
        };
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.2")]);
        // From an untrusted peer the headers are the client's own words.
        assert_eq!(
            client_address(ip("198.51.100.1"), &xff, &trusted),
            ip("198.51.100.1")
        );
        // Nothing is trusted by default.
        let none = owl_config::Networks::default();
        assert_eq!(client_address(ip("10.0.0.1"), &xff, &none), ip("10.0.0.1"));
        // Through trusted proxies: the right-most untrusted hop, not the spoofable left-most.
        assert_eq!(client_address(ip("10.0.0.1"), &xff, &trusted), ip("203.0.113.9"));
        let split = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &split, &trusted),
            ip("203.0.113.9")
        );
        let forwarded = headers(&[(
            "forwarded",
            r#"for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.3"#,
        )]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &forwarded, &trusted),
            ip("2001:db8:cafe::17")
        );
        // Only proxies on the way: the left-most of them.
        let proxies = headers(&[("x-forwarded-for", "10.0.0.7, 10.0.0.8")]);
        assert_eq!(client_address(ip("10.0.0.1"), &proxies, &trusted), ip("10.0.0.7"));
        // Garbage stops the walk at the last proxy.
        let garbage = headers(&[("x-forwarded-for", "203.0.113.9, not-an-ip")]);
        assert_eq!(client_address(ip("10.0.0.1"), &garbage, &trusted), ip("10.0.0.1"));
        assert_eq!(
            client_address(ip("::ffff:10.0.0.1"), &xff, &trusted),
            ip("203.0.113.9")
        );
    }

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        user_code: String,
        role_id: i64,
        regions: Option<Vec<String>>,
    }

    #[test]
    fn json_errors_name_the_field() {
        let missing = parse_json::<Body>(br#"{"role_id": 3}"#).unwrap_err();
        assert_eq!(missing.errors[0].field, "user_code");
        assert_eq!(missing.errors[0].constraint.as_deref(), Some("required"));
        let wrong = parse_json::<Body>(br#"{"user_code": "a", "role_id": "three"}"#).unwrap_err();
        assert_eq!(wrong.errors[0].field, "role_id");
        let nested =
            parse_json::<Body>(br#"{"user_code": "a", "role_id": 1, "regions": ["CN", 2]}"#).unwrap_err();
        assert_eq!(nested.errors[0].field, "regions[1]");
        let broken = parse_json::<Body>(b"{not json").unwrap_err();
        assert_eq!(broken.errors[0].field, "body");
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer_token(&headers), None);
    }

    async fn query_of<T: DeserializeOwned>(uri: &str) -> Result<T, Failure> {
        let request = axum::http::Request::builder().uri(uri).body(()).unwrap();
        let (mut parts, ()) = request.into_parts();
        Query::<T>::from_request_parts(&mut parts, &())
            .await
            .map(|Query(value)| value)
    }

    #[derive(Debug, serde::Deserialize)]
    struct Paging {
        page: Option<u32>,
        #[allow(dead_code)]
        keyword: Option<String>,
    }

    #[tokio::test]
    async fn unknown_query_parameters_are_refused_by_name() {
        let paging: Paging = query_of("/api/users?page=2&keyword=a").await.unwrap();
        assert_eq!(paging.page, Some(2));
        let failure = query_of::<Paging>("/api/users?page=2&pgae=3&bogus=")
            .await
            .unwrap_err();
        assert_eq!(failure.kind, FailureKind::Invalid);
        let fields: Vec<(&str, &str)> = failure
            .errors
            .iter()
            .map(|e| (e.field.as_str(), e.constraint.as_deref().unwrap_or_default()))
            .collect();
        assert_eq!(fields, [("pgae", "unknown"), ("bogus", "unknown")]);
        assert!(failure.errors[0].message.contains("pgae"), "{:?}", failure.errors);
        // A wrong type is still reported as such.
        let failure = query_of::<Paging>("/api/users?page=x").await.unwrap_err();
        assert_eq!(failure.errors[0].field, "page");
    }
}
