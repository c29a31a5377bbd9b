//! Authentication and audit middleware.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::extract::{Authn, ClientIp, bearer_token};
use super::{AuditNote, AuditPolicy, MatchedRoute};
use crate::db::NewAuditEntry;
use crate::envelope::{Failure, FailureKind, Family};
use crate::state::AppState;

/// Who acted, copied to the response for the audit middleware.
#[derive(Debug, Clone)]
struct Actor {
    user_id: i64,
    user_code: String,
}

/// Checks a presented bearer token and leaves [`Authn`] in the request extensions. Requests without
/// a token pass untouched; the route guard decides whether the route needs one.
///
/// When the request changed users, roles, grants or organizations (the database's access
/// generation moved while it ran), the change is published to the other replicas before the
/// answer leaves, so no write path can forget to: see `auth`'s principal cache.
pub(crate) async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let generation = state.db.access_generation();
    let response = check_token(&state, request, next).await;
    if state.db.access_generation() != generation {
        state.auth.access_changed().await;
    }
    response
}

async fn check_token(state: &AppState, mut request: Request, next: Next) -> Response {
    let Some(token) = bearer_token(request.headers()).map(str::to_string) else {
        return next.run(request).await;
    };
    let authn = match state.auth.authenticate(&token).await {
        Ok(principal) => Authn::User(principal),
        Err(error) => {
            let failure = Failure::from(error);
            match &failure.source {
                Some(source) => tracing::error!(error = format!("{source:#}"), "token check failed"),
                None => tracing::debug!(reason = %failure.message, "token refused"),
            }
            Authn::Rejected {
                kind: failure.kind,
                message: failure.message,
            }
        }
    };
    let actor = match &authn {
        Authn::User(principal) => Some(Actor {
            user_id: principal.user_id,
            user_code: principal.user_code.clone(),
        }),
        Authn::Rejected { .. } => None,
    };
    request.extensions_mut().insert(authn);
    let mut response = next.run(request).await;
    if let Some(actor) = actor {
        response.extensions_mut().insert(actor);
    }
    response
}

/// Largest parameter document stored per audit row; bigger ones keep their size only.
const MAX_AUDIT_PARAMS_BYTES: usize = 16 * 1024;

/// Key fragments that mark a secret wherever they appear in a key (`new_password`, `x_api_token`),
/// on top of the masking rules' exact keys.
const SECRET_KEY_PARTS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "authorization",
    "api_key",
    "apikey",
    "cookie",
    "private_key",
    "credential",
    // Alert channel webhook URLs (`webhookUrl`) authorise posting to a chat: secrets too.
    "webhook",
];

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    SECRET_KEY_PARTS.iter().any(|part| key.contains(part))
}

/// Replaces secrets in audited parameters: values under secret-looking keys entirely, then the
/// masking rules (bearer tokens, JWTs, ID and card numbers inside text).
pub(crate) fn filter_secrets(state: &AppState, value: &mut Value) {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    if is_secret_key(key) && !item.is_null() {
                        *item = Value::String(owl_model::REDACTED.to_string());
                    } else {
                        walk(item);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(value);
    state.audit_masker.mask_value(value);
}

fn is_mutation(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Records audited requests (001): who, what, parameters without secrets, client, outcome, time.
pub(crate) async fn audit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let created_at = state.clock.now_ms();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    let ip_address = ClientIp::of(request.extensions());
    let user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .take(512)
        .collect::<String>();
    let request_id = request
        .extensions()
        .get::<owl_http::TraceContext>()
        .map(|c| c.request_id.clone());

    let (request, body) = if is_mutation(&method) {
        let (parts, body) = request.into_parts();
        let limit = state.config.query_api.max_body_bytes;
        let bytes = match axum::body::to_bytes(body, limit).await {
            Ok(bytes) => bytes,
            Err(_) => {
                return Failure::new(
                    FailureKind::PayloadTooLarge,
                    format!("请求体超过 {limit} 字节上限"),
                )
                .render(Family::for_path(&path));
            }
        };
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (
            Request::from_parts(parts, Body::from(bytes.clone())),
            Some((bytes, content_type)),
        )
    } else {
        (request, None)
    };

    let response = next.run(request).await;

    let Some(matched) = response.extensions().get::<MatchedRoute>().cloned() else {
        return response;
    };
    let audited = match matched.spec.audit {
        AuditPolicy::Always => true,
        AuditPolicy::Mutations => is_mutation(&method),
    };
    if !audited {
        return response;
    }
    let note = response
        .extensions()
        .get::<AuditNote>()
        .cloned()
        .unwrap_or_default();
    let actor = response.extensions().get::<Actor>().cloned();
    let status = response.status();

    let mut params = Map::new();
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        let pairs: Map<String, Value> = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        params.insert("query".into(), Value::Object(pairs));
    }
    if let Some((bytes, content_type)) = body.filter(|(b, _)| !b.is_empty()) {
        let parsed = serde_json::from_slice::<Value>(&bytes).ok();
        let body = parsed.unwrap_or_else(|| json!({ "content_type": content_type, "bytes": bytes.len() }));
        params.insert("body".into(), body);
    }
    let params = (!params.is_empty()).then(|| {
        let mut value = Value::Object(params);
        filter_secrets(&state, &mut value);
        let text = value.to_string();
        if text.len() > MAX_AUDIT_PARAMS_BYTES {
            json!({ "truncated": true, "bytes": text.len() }).to_string()
        } else {
            text
        }
    });

    let action = match matched.spec.action() {
        "login" if !status.is_success() => "login_failed",
        action => action,
    };
    let entry = NewAuditEntry {
        user_id: actor.as_ref().map(|a| a.user_id).or(note.user_id),
        user_code: actor.map(|a| a.user_code).or(note.user_code),
        action: action.to_string(),
        resource_type: matched.spec.resource.to_string(),
        resource_id: note.resource_id.or(matched.resource_id),
        method: method.to_string(),
        path,
        params,
        ip_address,
        user_agent,
        status_code: i64::from(status.as_u16()),
        duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        request_id,
        created_at,
    };
    if let Err(error) = state.db.insert_audit(&entry).await {
        // The request already happened; losing its audit row is what an operator must hear about.
        tracing::error!(%error, action = %entry.action, path = %entry.path, "audit entry lost");
        metrics::counter!(crate::metrics::AUDIT_WRITE_FAILURES).increment(1);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_recognised_inside_longer_names() {
        for key in [
            "password",
            "new_password",
            "Old-Password",
            "refresh_token",
            "client_secret",
            "X-API-KEY",
            "apiKey",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["user_code", "username", "org_code", "permission_ids", "format"] {
            assert!(!is_secret_key(key), "{key}");
        }
    }
}
