//! `agent.kubernetes.api = true` against a local server that answers the node, list and watch
//! calls in the Kubernetes API's wire format: pod labels and the node's region reach the records,
//! a `410 Gone` watch lists again, new pods arrive through the watch, a deleted pod keeps its
//! labels for its last lines, and the API is not asked per line.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Collector, Writer, config, input};
use owl_config::ParserKind;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

/// A request the fake API server saw: its path and query, and its bearer token.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    token: Option<String>,
}

fn pod(uid: &str, name: &str, version: &str, labels: Value) -> Value {
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": uid,
            "resourceVersion": version,
            "labels": labels,
        },
        "spec": { "nodeName": "node-1" },
    })
}

struct FakeApi {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    events: mpsc::UnboundedSender<Value>,
}

/// Serves `/api/v1/nodes/node-1`, the pod list (version 100 first, 200 after) and the watch: the
/// watch from 100 answers an expired-version error, the watch from 200 streams what the test
/// sends.
async fn fake_api() -> FakeApi {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (events, rx) = mpsc::unbounded_channel::<Value>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let lists = Arc::new(Mutex::new(0));
    {
        let seen = seen.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let (seen, rx, lists) = (seen.clone(), rx.clone(), lists.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8(head).unwrap();
                    let target = head.split(' ').nth(1).unwrap().to_string();
                    let token = head
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("authorization: Bearer ")
                                .or(l.strip_prefix("Authorization: Bearer "))
                        })
                        .map(str::to_string);
                    seen.lock().unwrap().push(Seen {
                        target: target.clone(),
                        token,
                    });
                    let reply = |body: Value| {
                        let body = body.to_string();
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    };
                    if target == "/api/v1/nodes/node-1" {
                        let node = json!({"kind": "Node", "metadata": {"name": "node-1", "labels": {
                            "topology.kubernetes.io/region": "UAE", "kubernetes.io/hostname": "node-1"}}});
                        let _ = stream.write_all(reply(node).as_bytes()).await;
                    } else if target.starts_with("/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1")
                        && !target.contains("watch=1")
                    {
                        let version = {
                            let mut n = lists.lock().unwrap();
                            *n += 1;
                            if *n == 1 { "100" } else { "200" }
                        };
                        let list = json!({"kind": "PodList", "metadata": {"resourceVersion": version}, "items": [
                            pod("uid-a", "web-a", version, json!({"app.kubernetes.io/name": "checkout", "environment": "staging"})),
                        ]});
                        let _ = stream.write_all(reply(list).as_bytes()).await;
                    } else if target.contains("watch=1") && target.contains("resourceVersion=100") {
                        let status = json!({"type": "ERROR", "object": {"kind": "Status", "status": "Failure",
                            "reason": "Expired", "code": 410, "message": "too old resource version: 100 (150)"}});
                        let _ = stream.write_all(reply_chunked_head().as_bytes()).await;
                        let _ = stream.write_all(chunk(&format!("{status}\n")).as_bytes()).await;
                        let _ = stream.write_all(b"0\r\n\r\n").await;
                    } else if target.contains("watch=1") {
                        let _ = stream.write_all(reply_chunked_head().as_bytes()).await;
                        let mut rx = rx.lock().await;
                        while let Some(event) = rx.recv().await {
                            if stream
                                .write_all(chunk(&format!("{event}\n")).as_bytes())
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                    } else {
                        let _ = stream
                            .write_all(
                                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                            )
                            .await;
                    }
                });
            }
        });
    }
    FakeApi { port, seen, events }
}

fn reply_chunked_head() -> String {
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
}

fn chunk(text: &str) -> String {
    format!("{:x}\r\n{text}\r\n", text.len())
}

fn cri(line: &str) -> String {
    format!("2026-12-02T07:00:00.000000000Z stdout F {line}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_labels_and_the_node_region_come_from_the_api_server_watch() {
    let api = fake_api().await;
    let collector = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods");
    let a = pods.join("shop_web-a_uid-a/app");
    let b = pods.join("shop_worker-b_uid-b/app");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(dir.path().join("token"), "sa-token-1\n").unwrap();
    let mut file = input(&pods.join("*/*/*.log"), "kubernetes");
    file.parser = ParserKind::Cri;
    let mut config = config(dir.path(), &collector.url(), vec![file]);
    config.agent.kubernetes.api = true;
    config.agent.kubernetes.api_url = format!("http://127.0.0.1:{}", api.port);
    config.agent.kubernetes.node_name = "node-1".to_string();
    config.agent.kubernetes.token_file = dir.path().join("token");
    config.validate().unwrap();

    let mut a_log = Writer::open(&a.join("0.log"));
    for n in 0..200 {
        a_log.line(&cri(&format!("web-a line {n}")));
    }
    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(config, shutdown.clone()).await.unwrap();
    collector
        .wait_for(WAIT, "pod a's lines", |r| common::count(r, "web-a line ") == 200)
        .await;
    {
        let received = collector.received();
        for record in received
            .records
            .values()
            .filter(|r| r.message.starts_with("web-a line "))
        {
            assert_eq!(
                record.service.name, "checkout",
                "the app.kubernetes.io/name label"
            );
            assert_eq!(record.environment.as_deref(), Some("staging"));
            assert_eq!(
                record.service.region.as_deref(),
                Some("UAE"),
                "the node's region label"
            );
            assert_eq!(record.service.instance.as_deref(), Some("web-a"));
            let extra = record.extra.as_ref().unwrap();
            assert_eq!(extra["kubernetes.labels.environment"], "staging");
            assert_eq!(extra["kubernetes.node"], "node-1");
            assert_eq!(extra["kubernetes.namespace"], "shop");
        }
    }

    // A pod that starts later arrives through the watch (opened after the expired one listed
    // again); its lines get its labels once the event is in.
    api.events
        .send(json!({"type": "ADDED", "object": pod("uid-b", "worker-b", "201", json!({"app": "worker"}))}))
        .unwrap();
    let mut b_log = Writer::open(&b.join("0.log"));
    let mut written = 0;
    common::wait_until(WAIT, "a labelled line of pod b", || {
        b_log.line(&cri(&format!("worker-b line {written}")));
        written += 1;
        collector
            .received()
            .records
            .values()
            .any(|r| r.message.starts_with("worker-b line ") && r.service.name == "worker")
    })
    .await;

    // Deleted: its last lines keep its labels.
    api.events
        .send(json!({"type": "DELETED", "object": pod("uid-a", "web-a", "202", json!({}))}))
        .unwrap();
    api.events
        .send(json!({"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "203"}}}))
        .unwrap();
    a_log.line(&cri("web-a last words"));
    collector
        .wait_for(WAIT, "pod a's last line", |r| {
            common::count(r, "web-a last words") == 1
        })
        .await;
    {
        let received = collector.received();
        let last = received
            .records
            .values()
            .find(|r| r.message == "web-a last words")
            .unwrap();
        assert_eq!(last.service.name, "checkout");
    }

    let seen = api.seen.lock().unwrap().clone();
    let lists = seen
        .iter()
        .filter(|s| !s.target.contains("watch=1") && s.target.contains("/pods"))
        .count();
    let watches: Vec<&Seen> = seen.iter().filter(|s| s.target.contains("watch=1")).collect();
    let nodes = seen
        .iter()
        .filter(|s| s.target.starts_with("/api/v1/nodes/"))
        .count();
    assert_eq!(
        lists, 2,
        "one list at start, one after the expired watch, none per line: {seen:?}"
    );
    assert_eq!(nodes, 1, "{seen:?}");
    assert_eq!(watches.len(), 2, "{seen:?}");
    assert!(
        watches[0].target.contains("resourceVersion=100")
            && watches[1].target.contains("resourceVersion=200")
    );
    assert!(
        seen.iter().all(|s| s.token.as_deref() == Some("sa-token-1")),
        "the service account token: {seen:?}"
    );
    shutdown.cancel();
    agent.wait().await.unwrap();
}

#[tokio::test]
async fn the_api_option_without_a_node_is_refused_at_start() {
    let collector = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &collector.url(), Vec::new());
    config.agent.kubernetes.api = true;
    config.agent.kubernetes.api_url = "http://127.0.0.1:9".to_string();
    let err = match std::env::var("NODE_NAME") {
        Ok(_) => return eprintln!("SKIPPED: NODE_NAME is set in this environment"),
        Err(_) => owl_agent::start(config, CancellationToken::new())
            .await
            .err()
            .unwrap(),
    };
    assert!(err.to_string().contains("agent.kubernetes.node_name"), "{err}");
}
