//! Logins under a flood: however many arrive at once, no more than `auth.max_failed_logins`
//! guesses per name and per IP are evaluated in a lock window; behind a trusted proxy one client
//! cannot lock out the others. The memory bound is checked in `login_memory.rs`, alone in its
//! binary.

mod common;

use axum::http::StatusCode;
use common::{TestEnv, Variant};
use serde_json::json;

const FLOOD: usize = 500;

/// Sends `FLOOD` concurrent logins, the i-th as `name(i)` from `ip(i)` with a wrong password, and
/// counts the answers by status.
async fn flood(
    env: &TestEnv,
    name: impl Fn(usize) -> String,
    ip: impl Fn(usize) -> String,
) -> std::collections::BTreeMap<u16, usize> {
    let ips: Vec<String> = (0..FLOOD).map(&ip).collect();
    let mut calls = Vec::with_capacity(FLOOD);
    for (i, ip) in ips.iter().enumerate() {
        let body = json!({"username": name(i), "password": format!("wrong-{i}")});
        calls.push(env.call_from(ip, "POST", "/api/auth/login", None, Some(body)));
    }
    let mut counts = std::collections::BTreeMap::new();
    for reply in futures::future::join_all(calls).await {
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(reply.headers.contains_key("retry-after"), "{:?}", reply.headers);
        }
        *counts.entry(reply.status.as_u16()).or_insert(0) += 1;
    }
    counts
}

async fn guesses_are_reserved_before_hashing(variant: Variant) {
    // A gate wide enough to admit the whole flood: the reservation alone must bound the guesses.
    let Some(env) = TestEnv::start_with(variant, |config| {
        config.auth.max_concurrent_logins = 200;
    })
    .await
    else {
        return;
    };
    let max = env.state.config.auth.max_failed_logins as usize;
    let admin = env.admin().await;
    env.create_user(
        &admin,
        json!({"user_code": "victim", "username": "Victim", "password": "Passw0rd", "role_id": 3}),
    )
    .await;

    // One name from many addresses.
    let counts = flood(
        &env,
        |_| "victim".into(),
        |i| format!("198.51.100.{}", i % 250 + 1),
    )
    .await;
    assert_eq!(
        counts.get(&401),
        Some(&max),
        "guesses evaluated for one name: {counts:?}"
    );
    assert_eq!(counts.get(&429), Some(&(FLOOD - max)), "{counts:?}");
    // The name is locked now, even with the right password.
    let reply = env
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"username": "victim", "password": "Passw0rd"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);

    // Many names from one address.
    let counts = flood(&env, |i| format!("nobody-{i}"), |_| "203.0.113.77".into()).await;
    assert_eq!(
        counts.get(&401),
        Some(&max),
        "guesses evaluated for one IP: {counts:?}"
    );
    assert_eq!(counts.get(&429), Some(&(FLOOD - max)), "{counts:?}");

    // Another address and name are untouched.
    env.login("admin", common::ADMIN_PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_are_reserved_before_hashing_in_memory() {
    guesses_are_reserved_before_hashing(Variant::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_are_reserved_before_hashing_in_redis() {
    guesses_are_reserved_before_hashing(Variant::Redis).await;
}

/// A login as `username` sent by the proxy at 10.0.0.1 for the client `client`.
fn proxied_login(client: &str, username: &str, password: &str) -> axum::http::Request<axum::body::Body> {
    let body = serde_json::to_vec(&json!({"username": username, "password": password})).unwrap();
    let mut request = axum::http::Request::builder()
        .method("POST")
        .uri("/api/auth/login")
        .header("content-type", "application/json")
        .header("x-forwarded-for", format!("6.6.6.6, {client}"))
        .body(axum::body::Body::from(body))
        .unwrap();
    let peer: std::net::SocketAddr = "10.0.0.1:40000".parse().unwrap();
    request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_one_client_cannot_lock_out_the_others() {
    let Some(env) = TestEnv::start_with(Variant::Sqlite, |config| {
        config.query_api.trusted_proxies = owl_config::Networks::parse(&["10.0.0.0/8"]).unwrap();
    })
    .await
    else {
        return;
    };
    let max = env.state.config.auth.max_failed_logins;
    for i in 0..=max {
        let reply = env
            .send(proxied_login("203.0.113.5", &format!("guess-{i}"), "wrong"))
            .await;
        assert!(matches!(reply.status.as_u16(), 401 | 429), "{}", reply.text);
    }
    // The guessing client is locked...
    let reply = env
        .send(proxied_login("203.0.113.5", "admin", common::ADMIN_PASSWORD))
        .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{}", reply.text);
    // ...another client behind the same proxy is not, and the audit log names the real client.
    let reply = env
        .send(proxied_login("203.0.113.6", "admin", common::ADMIN_PASSWORD))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        reply.headers["cache-control"], "no-store",
        "an answer carrying tokens is never cached"
    );
    let token = reply.body["data"]["access_token"].as_str().unwrap().to_string();
    let audit = env
        .call(
            "GET",
            "/api/foundation/audit-logs?page=1&page_size=50",
            Some(&token),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert!(audit.text.contains("203.0.113.5"), "{}", audit.text);
    assert!(
        !audit.text.contains("6.6.6.6"),
        "a spoofed hop reached the audit log"
    );
}
