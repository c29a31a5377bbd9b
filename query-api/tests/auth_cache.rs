//! The principal cache end to end, on SQLite, on PostgreSQL and with Redis: a signed-in request is
//! served from the cache (a change made behind the API's back shows only after `PRINCIPAL_TTL`), and
//! every change made through the API applies on the very next request: permission grants, role,
//! organization tree, disable, delete, logout and refresh-token reuse; with Redis also in another
//! replica.

mod common;

use axum::Router;
use axum::http::StatusCode;
use common::{Reply, TestEnv, Variant};
use serde_json::json;

on_every_backend!(
    cached_principal_follows_every_change_at_once,
    changes_behind_the_apis_back_apply_within_the_ttl,
);

/// Replicas share state through Redis; without it they share nothing but the database.
#[tokio::test]
async fn replicas_with_redis_see_changes_at_once() {
    replicas_see_changes_at_once(Variant::Redis).await;
}

const ORGS: &str = "/api/organizations?type=list";
/// Needs `monitoring:read`, which `developer` lacks.
const MONITORING: &str = "/api/analytics-monitoring/monitoring/alerts/active";
const PASSWORD: &str = "watchPass1";

/// A level-2 role `WATCHER` holding `codes`; returns its id.
async fn watcher_role(env: &TestEnv, admin: &str, codes: &[&str]) -> i64 {
    env.create_role(admin, "WATCHER", 2, codes).await
}

/// Replaces the grants of role `id` by `codes`.
async fn grant(env: &TestEnv, admin: &str, id: i64, codes: &[&str]) {
    let ids = env.permission_ids(admin, codes).await;
    env.call(
        "POST",
        &format!("/api/roles/{id}/permissions"),
        Some(admin),
        Some(json!({ "permission_ids": ids })),
    )
    .await
    .expect(StatusCode::OK);
}

/// The organization codes `token` sees.
fn org_codes(reply: &Reply) -> Vec<String> {
    let mut codes: Vec<String> = reply.body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", reply.text))
        .iter()
        .map(|o| o["org_code"].as_str().unwrap().to_string())
        .collect();
    codes.sort();
    codes
}

async fn get(env: &TestEnv, path: &str, token: &str) -> Reply {
    env.call("GET", path, Some(token), None).await
}

/// A user `code` in organization `org` with role `role_id`; returns its id.
async fn user(env: &TestEnv, admin: &str, code: &str, org: &str, role_id: i64) -> i64 {
    env.create_user(
        admin,
        json!({ "user_code": code, "username": code, "password": PASSWORD, "org_code": org, "role_id": role_id }),
    )
    .await
}

async fn cached_principal_follows_every_change_at_once(variant: Variant) {
    let Some(env) = TestEnv::start(variant).await else {
        return;
    };
    let admin = env.admin().await;
    env.create_org(&admin, "A", "Org A", "0").await;
    env.create_org(&admin, "B", "Org B", "0").await;
    let role = watcher_role(&env, &admin, &["org:read", "monitoring:read"]).await;
    let id = user(&env, &admin, "w1", "A", role).await;
    let (token, refresh) = env.login("w1", PASSWORD).await;

    // Twice: the second answer comes from the cached principal.
    for _ in 0..2 {
        let reply = get(&env, ORGS, &token).await.expect(StatusCode::OK);
        assert_eq!(org_codes(&reply), ["A"]);
        get(&env, MONITORING, &token).await.expect(StatusCode::OK);
    }

    // Organization tree: a new child and a move apply to the scope at once.
    let a1 = env.create_org(&admin, "A1", "Org A1", "A").await;
    let reply = get(&env, ORGS, &token).await.expect(StatusCode::OK);
    assert_eq!(org_codes(&reply), ["A", "A1"], "new child organization");
    env.call(
        "PUT",
        &format!("/api/organizations/{a1}"),
        Some(&admin),
        Some(json!({ "parent_code": "B" })),
    )
    .await
    .expect(StatusCode::OK);
    let reply = get(&env, ORGS, &token).await.expect(StatusCode::OK);
    assert_eq!(org_codes(&reply), ["A"], "child moved away");

    // Grants of the role: withdrawn, then given back.
    grant(&env, &admin, role, &["monitoring:read"]).await;
    get(&env, ORGS, &token).await.expect(StatusCode::FORBIDDEN);
    get(&env, MONITORING, &token).await.expect(StatusCode::OK);
    grant(&env, &admin, role, &["org:read", "monitoring:read"]).await;
    get(&env, ORGS, &token).await.expect(StatusCode::OK);

    // The user's role: developer lacks monitoring:read.
    let user_path = format!("/api/users/{id}");
    env.call("PUT", &user_path, Some(&admin), Some(json!({ "role_id": 3 })))
        .await
        .expect(StatusCode::OK);
    get(&env, MONITORING, &token).await.expect(StatusCode::FORBIDDEN);
    env.call("PUT", &user_path, Some(&admin), Some(json!({ "role_id": role })))
        .await
        .expect(StatusCode::OK);
    get(&env, MONITORING, &token).await.expect(StatusCode::OK);

    // A disabled role grants nothing.
    env.call(
        "PUT",
        &format!("/api/roles/{role}"),
        Some(&admin),
        Some(json!({ "status": 0 })),
    )
    .await
    .expect(StatusCode::OK);
    get(&env, MONITORING, &token).await.expect(StatusCode::FORBIDDEN);
    env.call(
        "PUT",
        &format!("/api/roles/{role}"),
        Some(&admin),
        Some(json!({ "status": 1 })),
    )
    .await
    .expect(StatusCode::OK);
    get(&env, MONITORING, &token).await.expect(StatusCode::OK);

    // Refresh-token reuse revokes the family, and with it the cached access token.
    env.call("POST", "/api/auth/refresh", Some(&refresh), None)
        .await
        .expect(StatusCode::OK);
    get(&env, MONITORING, &token).await.expect(StatusCode::OK);
    env.call("POST", "/api/auth/refresh", Some(&refresh), None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    get(&env, MONITORING, &token)
        .await
        .expect(StatusCode::UNAUTHORIZED);

    // Logout refuses every session of the user at once.
    let (first, _) = env.login("w1", PASSWORD).await;
    let (second, _) = env.login("w1", PASSWORD).await;
    get(&env, MONITORING, &first).await.expect(StatusCode::OK);
    get(&env, MONITORING, &second).await.expect(StatusCode::OK);
    env.call("POST", "/api/auth/logout", Some(&first), None)
        .await
        .expect(StatusCode::OK);
    get(&env, MONITORING, &first)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    get(&env, MONITORING, &second)
        .await
        .expect(StatusCode::UNAUTHORIZED);

    // Disable (PUT status 0), then delete: refused on the next request.
    let (token, _) = env.login("w1", PASSWORD).await;
    get(&env, MONITORING, &token).await.expect(StatusCode::OK);
    env.call("PUT", &user_path, Some(&admin), Some(json!({ "status": 0 })))
        .await
        .expect(StatusCode::OK);
    get(&env, MONITORING, &token)
        .await
        .expect(StatusCode::UNAUTHORIZED);

    let other = user(&env, &admin, "w2", "A", role).await;
    let (token, _) = env.login("w2", PASSWORD).await;
    get(&env, MONITORING, &token).await.expect(StatusCode::OK);
    env.call("DELETE", &format!("/api/users/{other}"), Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    get(&env, MONITORING, &token)
        .await
        .expect(StatusCode::UNAUTHORIZED);
}

async fn changes_behind_the_apis_back_apply_within_the_ttl(variant: Variant) {
    let Some(env) = TestEnv::start(variant).await else {
        return;
    };
    let admin = env.admin().await;
    env.create_org(&admin, "A", "Org A", "0").await;
    let role = watcher_role(&env, &admin, &["monitoring:read"]).await;
    user(&env, &admin, "w1", "A", role).await;
    let (token, _) = env.login("w1", PASSWORD).await;
    get(&env, MONITORING, &token).await.expect(StatusCode::OK);

    // What `owl admin` in another process or a hand-written UPDATE does: no access generation bump,
    // no shared epoch. The cached principal keeps answering (no SQL per request) until the TTL.
    let mut disable = env
        .state
        .db
        .sql_db()
        .sql("UPDATE users SET status = 0 WHERE user_code = ");
    disable.bind("w1".to_string());
    disable.query().execute(env.state.db.pool()).await.unwrap();
    get(&env, MONITORING, &token).await.expect(StatusCode::OK);
    env.clock
        .advance(owl_query_api::PRINCIPAL_TTL - std::time::Duration::from_millis(1));
    get(&env, MONITORING, &token).await.expect(StatusCode::OK);
    env.clock.advance(std::time::Duration::from_millis(1));
    get(&env, MONITORING, &token)
        .await
        .expect(StatusCode::UNAUTHORIZED);
}

async fn call_b(env: &TestEnv, replica: &Router, path: &str, token: &str) -> Reply {
    env.call_on(replica, "GET", path, Some(token)).await
}

async fn replicas_see_changes_at_once(variant: Variant) {
    let Some(env) = TestEnv::start(variant).await else {
        return;
    };
    let replica = env.replica().await;
    let admin = env.admin().await;
    env.create_org(&admin, "A", "Org A", "0").await;
    let role = watcher_role(&env, &admin, &["org:read", "monitoring:read"]).await;
    let id = user(&env, &admin, "w1", "A", role).await;
    let (token, _) = env.login("w1", PASSWORD).await;
    for _ in 0..2 {
        call_b(&env, &replica, ORGS, &token).await.expect(StatusCode::OK);
    }

    // Organization tree and grants changed on the first replica apply on the second at once.
    env.create_org(&admin, "A1", "Org A1", "A").await;
    let reply = call_b(&env, &replica, ORGS, &token).await.expect(StatusCode::OK);
    assert_eq!(org_codes(&reply), ["A", "A1"]);
    grant(&env, &admin, role, &["monitoring:read"]).await;
    call_b(&env, &replica, ORGS, &token)
        .await
        .expect(StatusCode::FORBIDDEN);
    call_b(&env, &replica, MONITORING, &token)
        .await
        .expect(StatusCode::OK);

    // Role change.
    let user_path = format!("/api/users/{id}");
    env.call("PUT", &user_path, Some(&admin), Some(json!({ "role_id": 3 })))
        .await
        .expect(StatusCode::OK);
    call_b(&env, &replica, MONITORING, &token)
        .await
        .expect(StatusCode::FORBIDDEN);
    env.call("PUT", &user_path, Some(&admin), Some(json!({ "role_id": role })))
        .await
        .expect(StatusCode::OK);
    call_b(&env, &replica, MONITORING, &token)
        .await
        .expect(StatusCode::OK);

    // Logout on the first replica.
    env.call("POST", "/api/auth/logout", Some(&token), None)
        .await
        .expect(StatusCode::OK);
    call_b(&env, &replica, MONITORING, &token)
        .await
        .expect(StatusCode::UNAUTHORIZED);

    // Disable and delete on the first replica.
    let (token, _) = env.login("w1", PASSWORD).await;
    call_b(&env, &replica, MONITORING, &token)
        .await
        .expect(StatusCode::OK);
    env.call("PUT", &user_path, Some(&admin), Some(json!({ "status": 0 })))
        .await
        .expect(StatusCode::OK);
    call_b(&env, &replica, MONITORING, &token)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    let other = user(&env, &admin, "w2", "A", role).await;
    let (token, _) = env.login("w2", PASSWORD).await;
    call_b(&env, &replica, MONITORING, &token)
        .await
        .expect(StatusCode::OK);
    env.call("DELETE", &format!("/api/users/{other}"), Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    call_b(&env, &replica, MONITORING, &token)
        .await
        .expect(StatusCode::UNAUTHORIZED);
}
