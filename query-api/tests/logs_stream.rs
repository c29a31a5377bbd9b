//! `GET /api/v1/logs/stream`: a live tail over a real server; a record written after the client
//! connected arrives as an event, records outside the filter do not, and the stream ends with the
//! server.

mod common;
mod logs_common;

use std::time::Duration;

use common::{ADMIN_PASSWORD, base_config};
use logs_common::*;
use owl_index::Index;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Reads server-sent events from a response body.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    fn new(response: reqwest::Response) -> Events {
        Events {
            response,
            buffer: String::new(),
        }
    }

    /// The next event as (name, data); `None` when the stream ended.
    async fn next(&mut self) -> Option<(String, String)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_string();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim_start());
                    }
                }
                if block.lines().all(|l| l.starts_with(':') || l.is_empty()) {
                    continue;
                }
                return Some((name, data));
            }
            let chunk = self.response.chunk().await.ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test]
async fn a_record_written_after_connecting_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path());
    let index = Index::open(&config.index_dir(), Default::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(owl_query_api::run(
        config,
        index.clone(),
        listener,
        shutdown.clone(),
    ));
    let client = http_client();
    eventually(30, "the query API to serve", || {
        let (client, base) = (client.clone(), base.clone());
        async move {
            client
                .get(format!("{base}/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    let login: Value = client
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["data"]["access_token"].as_str().unwrap().to_string();

    // A live tail needs a filter.
    let reply = client
        .get(format!("{base}/api/v1/logs/stream"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["error"]["code"], "LOG_QUERY_TOO_BROAD");

    // An older matching record is not replayed.
    let old = chrono::Utc::now() - chrono::Duration::minutes(10);
    ingest(&index, vec![record(json!({"id": "before", "@timestamp": ts(&old), "level": "ERROR", "message": "old", "service": "Form"}))]).await;

    let response = client
        .get(format!(
            "{base}/api/v1/logs/stream?service=Form&keyword={}",
            enc("登录")
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut events = Events::new(response);
    let (name, data) = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(name, "ready", "{data}");

    // Written after connecting: one matching record among others that do not match.
    let now = chrono::Utc::now();
    ingest(
        &index,
        vec![
            record(json!({"id": "other-service", "@timestamp": ts(&now), "level": "INFO", "message": "用户登录失败", "service": "IAM"})),
            record(json!({"id": "other-text", "@timestamp": ts(&now), "level": "INFO", "message": "form saved", "service": "Form"})),
            record(json!({"id": "live-1", "@timestamp": ts(&now), "level": "WARN", "message": "用户登录失败：密码错误", "service": "Form"})),
        ],
    )
    .await;
    let (name, data) = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .unwrap();
    assert_eq!(name, "log");
    let item: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(item["id"], "live-1");
    assert_eq!(item["service"]["name"], "Form");
    assert_eq!(item["level"], "WARN");

    // Later records arrive in order, each once.
    let later = chrono::Utc::now();
    ingest(
        &index,
        (2..5)
            .map(|i| record(json!({"id": format!("live-{i}"), "@timestamp": ts(&(later + chrono::Duration::milliseconds(i))), "message": "登录 ok", "service": "Form"})))
            .collect(),
    )
    .await;
    for i in 2..5 {
        let (name, data) = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(name, "log");
        assert_eq!(
            serde_json::from_str::<Value>(&data).unwrap()["id"],
            format!("live-{i}")
        );
    }

    // The server stops: the stream ends instead of holding the shutdown open.
    shutdown.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("the stream ends with the server");
    assert!(ended.is_none(), "no event after shutdown: {ended:?}");
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Server-sent events of an in-process stream answer.
struct BodyEvents {
    body: axum::body::Body,
    buffer: String,
}

impl BodyEvents {
    /// The next event's name; `None` when the stream ended.
    async fn next_name(&mut self) -> Option<String> {
        use http_body_util::BodyExt;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if block.lines().all(|l| l.starts_with(':') || l.is_empty()) {
                    continue;
                }
                let name = block
                    .lines()
                    .find_map(|l| l.strip_prefix("event:"))
                    .map_or("message".to_string(), |n| n.trim().to_string());
                if name == "end" {
                    assert!(block.contains("reason"), "{block}");
                }
                return Some(format!(
                    "{name} {}",
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix("data:"))
                        .unwrap_or("")
                        .trim()
                ));
            }
            let frame = self.body.frame().await?.ok()?;
            if let Some(data) = frame.data_ref() {
                self.buffer.push_str(&String::from_utf8_lossy(data));
            }
        }
    }
}

async fn open_stream(env: &common::TestEnv, token: &str) -> Result<BodyEvents, axum::http::StatusCode> {
    use tower::ServiceExt;
    let mut request = axum::http::Request::builder()
        .uri("/api/v1/logs/stream?service=Form")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let peer: std::net::SocketAddr = "192.0.2.10:40000".parse().unwrap();
    request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
    let response = env.router.clone().oneshot(request).await.unwrap();
    if !response.status().is_success() {
        return Err(response.status());
    }
    Ok(BodyEvents {
        body: response.into_body(),
        buffer: String::new(),
    })
}

/// Reads events until the stream ends, returning the last one.
async fn until_end(events: &mut BodyEvents) -> String {
    let mut last = String::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(10), events.next_name())
        .await
        .expect("the stream ends within 10 s")
    {
        last = event;
    }
    last
}

#[tokio::test]
async fn a_stream_ends_with_its_rights_and_streams_are_bounded() {
    let Some(env) = common::TestEnv::start_with(common::Variant::Sqlite, |config| {
        config.query_api.max_streams_per_user = 2;
    })
    .await
    else {
        return;
    };
    // Logout ends the stream.
    let (token, _) = env.login("admin", ADMIN_PASSWORD).await;
    let mut events = open_stream(&env, &token).await.unwrap();
    assert!(events.next_name().await.unwrap().starts_with("ready"));
    env.call("POST", "/api/auth/logout", Some(&token), None)
        .await
        .expect(axum::http::StatusCode::OK);
    assert!(until_end(&mut events).await.contains("token_revoked"));

    // Token expiry ends it (the clock moves past the 30 minutes).
    let (token, _) = env.login("admin", ADMIN_PASSWORD).await;
    let mut events = open_stream(&env, &token).await.unwrap();
    assert!(events.next_name().await.unwrap().starts_with("ready"));
    env.clock.advance(Duration::from_secs(31 * 60));
    assert!(until_end(&mut events).await.contains("token_expired"));

    // A role change ends it too.
    let (admin, _) = env.login("admin", ADMIN_PASSWORD).await;
    let id = env
        .create_user(
            &admin,
            json!({"user_code": "tail1", "username": "Tail", "password": "Passw0rd", "role_id": 2}),
        )
        .await;
    let (ops, _) = env.login("tail1", "Passw0rd").await;
    let mut events = open_stream(&env, &ops).await.unwrap();
    assert!(events.next_name().await.unwrap().starts_with("ready"));
    env.call(
        "PUT",
        &format!("/api/users/{id}"),
        Some(&admin),
        Some(json!({"regions": ["US"]})),
    )
    .await
    .expect(axum::http::StatusCode::OK);
    let last = until_end(&mut events).await;
    assert!(
        last.contains("scope_changed") || last.contains("token_revoked"),
        "{last}"
    );

    // Two streams per user, then 429 in the log API's envelope; closing one frees its slot.
    let (ops, _) = env.login("tail1", "Passw0rd").await;
    let first = open_stream(&env, &ops).await.unwrap();
    let _second = open_stream(&env, &ops).await.unwrap();
    let refused = env
        .call("GET", "/api/v1/logs/stream?service=Form", Some(&ops), None)
        .await;
    assert_eq!(
        refused.status,
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.text
    );
    assert_eq!(refused.body["error"]["code"], "LOG_STREAM_LIMIT_EXCEEDED");
    assert!(refused.headers.contains_key("retry-after"));
    drop(first);
    let _third = open_stream(&env, &ops).await.unwrap();
}
