//! Real protocol peers on 127.0.0.1 for the alert tests: webhook sinks (axum) that record what
//! Slack or Feishu would receive and answer as they would, a small SMTP server that receives
//! what lettre sends, and stores on SQLite or PostgreSQL (a fresh database per test).

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use owl_alerts::{AlertEngine, AlertStore, Clock, EngineOptions, NotifierOptions};
use owl_model::{Client, Http, LogRecord, Service, Trace};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a test waits for something that should happen promptly.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// One request a sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Value,
}

/// How a sink answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// This status and body.
    Reply(u16, String),
    /// Never answers (a hung peer).
    Hang,
}

#[derive(Clone)]
struct SinkState {
    answer: Arc<Mutex<Answer>>,
    hits: Arc<AtomicU64>,
    received: mpsc::UnboundedSender<Received>,
}

/// A webhook endpoint.
pub struct Sink {
    pub url: String,
    answer: Arc<Mutex<Answer>>,
    hits: Arc<AtomicU64>,
    received: mpsc::UnboundedReceiver<Received>,
    stop: CancellationToken,
}

async fn sink_handler(
    State(state): State<SinkState>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let _ = state.received.send(Received { headers, body });
    let answer = state.answer.lock().unwrap().clone();
    match answer {
        Answer::Reply(status, text) => (StatusCode::from_u16(status).unwrap(), text),
        Answer::Hang => std::future::pending().await,
    }
}

impl Sink {
    /// A Slack-like sink answering `200 ok`.
    pub async fn slack() -> Sink {
        Sink::start(Answer::Reply(200, "ok".into())).await
    }

    /// A Feishu-like sink answering `{"code":0,"msg":"success"}`.
    pub async fn feishu() -> Sink {
        Sink::start(Answer::Reply(
            200,
            r#"{"code":0,"msg":"success","data":{}}"#.into(),
        ))
        .await
    }

    pub async fn start(answer: Answer) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook/secret-token", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        let answer = Arc::new(Mutex::new(answer));
        let hits = Arc::new(AtomicU64::new(0));
        let state = SinkState {
            answer: answer.clone(),
            hits: hits.clone(),
            received: tx,
        };
        let app = Router::new()
            .route("/hook/secret-token", post(sink_handler))
            .with_state(state);
        let stop = CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(until.cancelled_owned())
                .await
                .unwrap();
        });
        Sink {
            url,
            answer,
            hits,
            received: rx,
            stop,
        }
    }

    pub fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// The next request, or a panic at the deadline.
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(DEADLINE, self.received.recv())
            .await
            .expect("the webhook sink received nothing in time")
            .expect("sink stopped")
    }

    /// A request already received, if any (no waiting).
    pub fn try_next(&mut self) -> Option<Received> {
        self.received.try_recv().ok()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One mail the SMTP server accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// An SMTP server speaking enough of RFC 5321 for lettre's plain transport: greeting, EHLO,
/// MAIL, RCPT, DATA, RSET, NOOP, QUIT.
pub struct SmtpServer {
    pub port: u16,
    mails: mpsc::UnboundedReceiver<Mail>,
}

async fn smtp_session(
    stream: tokio::net::TcpStream,
    mails: mpsc::UnboundedSender<Mail>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 owl-test ESMTP ready\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            write
                .write_all(b"250-owl-test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                .await?;
        } else if upper.starts_with("MAIL FROM:") {
            from = address(&command["MAIL FROM:".len()..]);
            to.clear();
            write.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            to.push(address(&command["RCPT TO:".len()..]));
            write.write_all(b"250 OK\r\n").await?;
        } else if upper == "DATA" {
            write
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                // Undo dot-stuffing.
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            let _ = mails.send(Mail {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            write.write_all(b"250 OK: queued\r\n").await?;
        } else if upper == "QUIT" {
            write.write_all(b"221 Bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            write.write_all(b"250 OK\r\n").await?;
        } else {
            write.write_all(b"502 Command not implemented\r\n").await?;
        }
    }
}

fn address(text: &str) -> String {
    let text = text.trim();
    let inner = text.split('>').next().unwrap_or("").trim_start_matches('<');
    inner.to_string()
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = smtp_session(stream, tx).await;
                });
            }
        });
        SmtpServer { port, mails: rx }
    }

    pub async fn next(&mut self) -> Mail {
        tokio::time::timeout(DEADLINE, self.mails.recv())
            .await
            .expect("no mail in time")
            .expect("server stopped")
    }
}

// Not every test binary of this crate needs it.
#[allow(unused_imports)]
pub use owl_sql::testing::services_skipped;

/// A throw-away PostgreSQL database, dropped with the guard.
pub struct PgDatabase(owl_sql::testing::TempPostgres);

impl PgDatabase {
    pub async fn create() -> PgDatabase {
        PgDatabase(owl_sql::testing::TempPostgres::create("owl_alerts_test").await)
    }

    /// A MariaDB database of its own.
    pub async fn mariadb() -> PgDatabase {
        PgDatabase(owl_sql::testing::TempDatabase::mysql("owl_alerts_test").await)
    }

    pub fn url(&self) -> String {
        self.0.url()
    }
}

/// A store on a database `url` names, migrated first as the binary does at start.
pub async fn store_at(url: &str, max_connections: u32, cipher: owl_alerts::SecretCipher) -> AlertStore {
    let db = owl_sql::Db::connect(url, max_connections).await.unwrap();
    owl_sql::migrate(&db).await.unwrap();
    AlertStore::new(db, Arc::new(cipher))
}

/// A store on a fresh SQLite file.
pub async fn sqlite_store(dir: &std::path::Path) -> AlertStore {
    store_at(
        &format!("sqlite://{}?mode=rwc", dir.join("owl.db").display()),
        4,
        owl_alerts::SecretCipher::random(),
    )
    .await
}

/// Delivery knobs that keep tests fast: three attempts 10 ms apart, half a second per attempt.
pub fn fast_notifier() -> NotifierOptions {
    NotifierOptions {
        attempts: 3,
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        timeout: Duration::from_millis(500),
        queue_capacity: 64,
    }
}

/// The epoch the tests start at: now, so records are fresh.
pub fn start_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A running engine over a store, with a manual clock.
pub struct TestEngine {
    pub engine: AlertEngine,
    pub clock: Clock,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl TestEngine {
    pub async fn start(config: &owl_config::Config, store: &AlertStore, clock: Clock) -> TestEngine {
        let stop = CancellationToken::new();
        let options = EngineOptions {
            clock: clock.clone(),
            link_base: Some("https://owl.example.com".into()),
            notifier: fast_notifier(),
            ..EngineOptions::default()
        };
        let (engine, task) = AlertEngine::start(config, store.clone(), options, stop.clone())
            .await
            .unwrap();
        TestEngine {
            engine,
            clock,
            stop,
            task,
        }
    }

    /// Feeds records and waits until they were evaluated and a tick ran.
    pub async fn feed(&self, records: &[LogRecord]) {
        self.engine.observe_records(records);
        assert!(self.engine.sync().await);
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

/// An HTTP access record at `at_ms`.
pub fn request(
    at_ms: i64,
    service: &str,
    method: &str,
    url: &str,
    duration_ms: f64,
    status: u16,
) -> LogRecord {
    LogRecord {
        id: LogRecord::new_id(),
        timestamp: chrono::DateTime::from_timestamp_millis(at_ms).unwrap(),
        message: format!("{method} {url} {status}"),
        host: Some("web-1".into()),
        trace: Some(Trace {
            id: "CN-1733580000000-a1b2c3d4".into(),
            ..Trace::default()
        }),
        http: Some(Http {
            method: Some(method.into()),
            url: Some(url.into()),
            status_code: Some(status),
            duration_ms: Some(duration_ms),
            ..Http::default()
        }),
        client: Some(Client {
            ip: Some("198.51.100.23".into()),
            user_agent: None,
        }),
        service: Service {
            name: service.into(),
            region: Some("CN".into()),
            instance: None,
        },
        ..LogRecord::default()
    }
}

/// A config whose channels point at the given sinks (on 127.0.0.1, which the config allows).
pub fn config_with(slack: Option<&Sink>, feishu: Option<(&Sink, &str)>) -> owl_config::Config {
    let mut config = owl_config::Config::default();
    config.notifications.allowed_networks = owl_config::Networks::parse(&["127.0.0.0/8"]).unwrap();
    config.alerts.cooldown_s = 60;
    config.alerts.resolve_after_s = 120;
    if let Some(sink) = slack {
        config.notifications.slack.enabled = true;
        config.notifications.slack.webhook_url = owl_config::Secret::new(sink.url.clone());
    }
    if let Some((sink, secret)) = feishu {
        config.notifications.feishu.enabled = true;
        config.notifications.feishu.webhook_url = owl_config::Secret::new(sink.url.clone());
        config.notifications.feishu.secret = owl_config::Secret::new(secret);
    }
    config
}
