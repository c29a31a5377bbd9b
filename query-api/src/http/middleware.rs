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
    if let Authn::User(principal) = &authn {
        owl_http::record_user(&principal.user_code);
    }
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

/// The masker of the audit log: the configured masking rules, always on, with the default keys
/// kept beside any configured ones (a configuration that lists its own keys for records must not
/// let passwords into the audit log).
pub(crate) fn audit_masker(
    rules: &owl_model::MaskingRules,
) -> Result<owl_model::Masker, owl_model::MaskError> {
    let mut keys = owl_model::default_sensitive_keys();
    for key in &rules.keys {
        if !keys.contains(key) {
            keys.push(key.clone());
        }
    }
    owl_model::Masker::new(&owl_model::MaskingRules {
        enabled: true,
        keys,
        ..rules.clone()
    })
}

/// Replaces secrets in audited parameters with the one rule set that masks records: whatever
/// lies under a sensitive key (matched by word: `newPassword`, `db_password`, `x-auth-token`)
/// entirely, objects and lists included, then the rules for text (bearer tokens, JWTs, ID and card
/// numbers). The audit masker is always enabled.
pub(crate) fn filter_secrets(state: &AppState, value: &mut Value) {
    state.audit_masker.mask_value(value);
}

fn is_mutation(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Unauthenticated (401) requests audited per client IP and minute; more are counted, not stored.
pub const MAX_UNAUTHENTICATED_AUDITS_PER_MINUTE: i64 = 20;

async fn unauthenticated_audit_allowed(state: &AppState, ip: &str) -> bool {
    let key = format!("audit:401:{ip}");
    match state.kv.incr(&key, std::time::Duration::from_secs(60)).await {
        Ok(count) => count <= MAX_UNAUTHENTICATED_AUDITS_PER_MINUTE,
        // The store is down: keep auditing rather than lose rows silently.
        Err(_) => true,
    }
}

/// Deletes audit rows older than `storage.retention.audit_days`, now and then every
/// `storage.retention.check_interval_s`, until `shutdown`. Replicas sharing a database all run it;
/// the delete is idempotent.
pub(crate) async fn audit_retention(state: AppState, shutdown: tokio_util::sync::CancellationToken) {
    let retention = state.config.storage.retention;
    let every = std::time::Duration::from_secs(retention.check_interval_s.max(1));
    loop {
        let cutoff = state.clock.now_ms() - i64::from(retention.audit_days) * 86_400_000;
        match state.db.delete_audit_before(cutoff).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, days = retention.audit_days, "old audit rows deleted"),
            Err(error) => tracing::warn!(%error, "audit retention failed; trying again at the next run"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Records audited requests (CRM backend): who, what, parameters without secrets, client, outcome, time.
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
    // Anyone can send unauthenticated requests: a refused one (401, a locked login's 429, a bad
    // login body, a login the verification gate turned away with 503) is audited without its
    // body, and each client IP gets a bounded number of such rows per minute, so a flood cannot
    // fill the audit log.
    let refused = status.is_client_error() || status == axum::http::StatusCode::SERVICE_UNAVAILABLE;
    let unauthenticated = actor.is_none() && note.user_id.is_none() && refused;
    if unauthenticated && !unauthenticated_audit_allowed(&state, &ip_address).await {
        metrics::counter!(crate::metrics::AUDIT_UNAUTHENTICATED_DROPPED).increment(1);
        return response;
    }
    let body = if unauthenticated { None } else { body };

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

    fn entry(created_at: i64) -> NewAuditEntry {
        NewAuditEntry {
            user_id: None,
            user_code: None,
            action: "update".into(),
            resource_type: "user".into(),
            resource_id: None,
            method: "PUT".into(),
            path: "/api/users/1".into(),
            params: None,
            ip_address: "192.0.2.1".into(),
            user_agent: String::new(),
            status_code: 200,
            duration_ms: 1,
            request_id: None,
            created_at,
        }
    }

    #[tokio::test]
    async fn audit_rows_older_than_the_retention_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = owl_config::Config {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        config.auth.admin_password = owl_config::Secret::new("Admin123");
        config.storage.retention.audit_days = 180;
        let index = owl_index::Index::open(&dir.path().join("index"), Default::default()).unwrap();
        let clock = crate::Clock::manual(chrono::Utc::now().timestamp_millis());
        let (_, state) = crate::app_with(
            config,
            index,
            crate::Options {
                clock: clock.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let now = clock.now_ms();
        let day = 86_400_000;
        let old = state.db.insert_audit(&entry(now - 181 * day)).await.unwrap();
        let kept = state.db.insert_audit(&entry(now - 179 * day)).await.unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(audit_retention(state.clone(), shutdown.clone()));
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while state.db.find_audit(old).await.unwrap().is_some() {
            assert!(Instant::now() < deadline, "the old row was never deleted");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(state.db.find_audit(kept).await.unwrap().is_some());
        shutdown.cancel();
        task.await.unwrap();
    }

    #[test]
    fn secret_keys_are_recognised_inside_longer_names() {
        let masker = audit_masker(&owl_model::MaskingRules {
            keys: vec!["tenant_key".into()],
            ..Default::default()
        })
        .unwrap();
        for key in [
            "password",
            "new_password",
            "newPassword",
            "Old-Password",
            "db_password",
            "refresh_token",
            "session_token",
            "x-auth-token",
            "client_secret",
            "clientSecret",
            "X-API-KEY",
            "apiKey",
            "webhookUrl",
            "credentials",
            // Configured keys add to the defaults, never replace them.
            "tenantKey",
        ] {
            assert!(masker.is_sensitive_key(key), "{key}");
        }
        for key in [
            "user_code",
            "username",
            "org_code",
            "permission_ids",
            "format",
            "tokenizer",
        ] {
            assert!(!masker.is_sensitive_key(key), "{key}");
        }
    }
}
