//! Sign-in endpoints: the admin API's `/api/auth/*` and the platform API's aliases `POST /auth/login`, `POST /api/refresh`,
//! `GET /api/me`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{AuthUser, ClientIp, Json, bearer_token, parse_json};
use super::{AuditNote, AuditPolicy, Routes};
use crate::auth::{AuthError, Principal, TokenPair};
use crate::db::UserRecord;
use crate::envelope::{AuthAdminError, Coded, Failure, Family, PlatformError, StatusOk, Success};
use crate::permissions::{Access, Permission};
use crate::state::AppState;
use crate::validate::Validator;

/// The routes.
pub(crate) fn routes() -> Routes {
    Routes::new(Family::AuthAdmin, "auth")
        .audited(
            Method::POST,
            "/api/auth/login",
            Access::Public,
            "login",
            AuditPolicy::Mutations,
            login,
        )
        .audited(
            Method::POST,
            "/api/auth/refresh",
            Access::Public,
            "refresh",
            AuditPolicy::Mutations,
            refresh,
        )
        .doc(super::openapi::Doc::default().body::<RefreshBody>(true))
        .audited(
            Method::POST,
            "/api/auth/logout",
            Access::Authenticated,
            "logout",
            AuditPolicy::Mutations,
            logout,
        )
        .route(Method::GET, "/api/auth/profile", Access::Authenticated, profile)
        .route(
            Method::GET,
            "/api/auth/permissions",
            Access::Authenticated,
            permissions,
        )
        .family(Family::Platform)
        .audited(
            Method::POST,
            "/auth/login",
            Access::Public,
            "login",
            AuditPolicy::Mutations,
            login_alias,
        )
        .audited(
            Method::POST,
            "/api/refresh",
            Access::Public,
            "refresh",
            AuditPolicy::Mutations,
            refresh_alias,
        )
        .doc(super::openapi::Doc::default().body::<RefreshBody>(true))
        .route(Method::GET, "/api/me", Access::Authenticated, me)
}

/// The sign-in router.
pub fn router() -> Router<AppState> {
    routes().into_router()
}

/// The refresh token in a body, when not sent as `Authorization: Bearer`.
#[derive(Deserialize, utoipa::ToSchema)]
struct RefreshBody {
    refresh_token: Option<String>,
}

/// The admin API's login body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct LoginBody {
    username: Option<String>,
    password: Option<String>,
}

/// Checks the body, then the credentials. The returned note names the login tried.
async fn sign_in(
    state: &AppState,
    ip: &str,
    body: LoginBody,
) -> (AuditNote, Result<(UserRecord, TokenPair), Failure>) {
    let mut validator = Validator::new();
    let username = validator.required("username", body.username.as_deref(), 128);
    let password = body.password.unwrap_or_default();
    validator.check(!password.is_empty(), "password", "required", "password 不能为空");
    let mut note = AuditNote {
        user_code: username.clone(),
        ..AuditNote::default()
    };
    if let Err(failure) = validator.finish() {
        return (note, Err(failure));
    }
    let username = username.expect("validated above");
    let result = state.auth.login(&username, &password, ip).await;
    if let Ok((user, _)) = &result {
        note.user_id = Some(user.id);
    }
    (note, result.map_err(Failure::from))
}

/// Answers that carry tokens are never stored by a browser or a proxy.
fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response.headers_mut().insert(
        axum::http::header::PRAGMA,
        axum::http::HeaderValue::from_static("no-cache"),
    );
    response
}

fn pair_json(pair: &TokenPair) -> Value {
    json!({
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": "bearer",
        "expires_in": pair.expires_in,
    })
}

/// `POST /api/auth/login`: `{code:200, message:"登录成功", data:{access_token, refresh_token, token_type, expires_in}}`.
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<LoginBody>,
) -> Response {
    let (note, result) = sign_in(&state, &ip, body).await;
    let response = match result {
        Ok((_, pair)) => Coded::ok("登录成功", pair_json(&pair)).into_response(),
        Err(failure) => AuthAdminError::from(failure).into_response(),
    };
    note.attach(no_store(response))
}

/// `POST /auth/login` (platform API): `{status:"success", data:{access_token, refresh_token, user:{id, username, role}}, message}`.
async fn login_alias(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<LoginBody>,
) -> Response {
    let (note, result) = sign_in(&state, &ip, body).await;
    let response = match result {
        Ok((user, pair)) => {
            let mut data = pair_json(&pair);
            data["user"] = json!({ "id": user.id, "username": user.user_code, "role": user.role_code });
            StatusOk::new(data, "登录成功").into_response()
        }
        Err(failure) => PlatformError::from(failure).into_response(),
    };
    note.attach(no_store(response))
}

/// The refresh token: `Authorization: Bearer <refresh_token>` (admin API) or a JSON body
/// `{"refresh_token": "..."}`.
fn refresh_token_of(headers: &HeaderMap, body: &Bytes) -> Result<String, Failure> {
    if let Some(token) = bearer_token(headers) {
        return Ok(token.to_string());
    }
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        parse_json::<RefreshBody>(body)?.refresh_token
    };
    from_body
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Failure::from(AuthError::MissingToken))
}

async fn rotate(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> (AuditNote, Result<TokenPair, Failure>) {
    let token = match refresh_token_of(headers, body) {
        Ok(token) => token,
        Err(failure) => return (AuditNote::default(), Err(failure)),
    };
    match state.auth.refresh(&token).await {
        Ok((user, pair)) => (
            AuditNote {
                user_id: Some(user.id),
                user_code: Some(user.user_code),
                ..AuditNote::default()
            },
            Ok(pair),
        ),
        Err(error) => (AuditNote::default(), Err(Failure::from(error))),
    }
}

/// `POST /api/auth/refresh`: a new access token and the rotated refresh token.
async fn refresh(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (note, result) = rotate(&state, &headers, &body).await;
    let response = match result {
        Ok(pair) => Coded::ok("令牌刷新成功", pair_json(&pair)).into_response(),
        Err(failure) => AuthAdminError::from(failure).into_response(),
    };
    note.attach(no_store(response))
}

/// `POST /api/refresh` (platform API).
async fn refresh_alias(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (note, result) = rotate(&state, &headers, &body).await;
    let response = match result {
        Ok(pair) => StatusOk::new(pair_json(&pair), "令牌刷新成功").into_response(),
        Err(failure) => PlatformError::from(failure).into_response(),
    };
    note.attach(no_store(response))
}

/// `POST /api/auth/logout`: revokes every token of the user.
async fn logout(State(state): State<AppState>, user: AuthUser) -> Result<Coded<()>, AuthAdminError> {
    state.auth.logout(&user).await?;
    Ok(Coded::message("登出成功"))
}

fn profile_json(principal: &Principal, user: &UserRecord) -> Value {
    json!({
        "id": user.id,
        "name": user.username,
        "avatar": user.avatar,
        "email": user.email,
        "role_code": user.role_code,
        "org_code": user.org_code,
        "permissions": principal.permissions.iter().collect::<Vec<_>>(),
        "user_code": user.user_code,
        "role_name": user.role_name,
        "role_level": user.role_level,
        "org_name": user.org_name,
        "phone": user.phone,
        "regions": user.regions,
        "environments": user.environments,
    })
}

async fn load_self(state: &AppState, principal: &Principal) -> Result<UserRecord, Failure> {
    state
        .db
        .find_user(principal.user_id)
        .await?
        .ok_or_else(|| Failure::unauthorized("令牌无效或已失效"))
}

/// `GET /api/auth/profile`.
async fn profile(State(state): State<AppState>, user: AuthUser) -> Result<Success<Value>, AuthAdminError> {
    let record = load_self(&state, &user).await?;
    Ok(Success::data(profile_json(&user, &record)))
}

/// `GET /api/auth/permissions`: the caller's permissions in the admin API's permission shape.
async fn permissions(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Success<Value>, AuthAdminError> {
    let all = state.db.list_permissions().await?;
    let mine: Vec<_> = all
        .into_iter()
        .filter(|p| p.status == 1 && user.permissions.contains(&p.permission_code))
        .collect();
    Ok(Success::data(
        serde_json::to_value(mine).map_err(Failure::internal)?,
    ))
}

/// `GET /api/me` (platform API).
async fn me(State(state): State<AppState>, user: AuthUser) -> Result<StatusOk<Value>, PlatformError> {
    let record = load_self(&state, &user).await?;
    let mut data = profile_json(&user, &record);
    data["username"] = json!(record.user_code);
    data["role"] = json!(record.role_code);
    data["is_admin"] = json!(user.has(Permission::UserWrite) && user.is_super_admin());
    Ok(StatusOk::new(data, "获取用户信息成功"))
}
