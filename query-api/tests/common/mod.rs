//! The test environment shared by the integration tests: one application per test, on a chosen
//! backend, with its own database (a fresh PostgreSQL database per test) and its own Redis key
//! prefix, all removed when the test ends.
//!
//! PostgreSQL (`OWL_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`) and Redis
//! (`OWL_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`) must be reachable: a test fails loudly
//! when they are not, unless `OWL_TEST_SKIP_SERVICES=1` says this machine has none.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use owl_query_api::{AppState, Clock, Options};
use serde_json::Value;
use tower::ServiceExt;

/// Where the suite runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// SQLite file and the in-process store (the embedded default).
    Sqlite,
    /// PostgreSQL and the in-process store.
    Postgres,
    /// PostgreSQL and Redis (state shared between replicas).
    Redis,
    /// MariaDB and the in-process store.
    MariaDb,
}

impl Variant {
    pub fn uses_services(self) -> bool {
        self != Variant::Sqlite
    }

    pub fn uses_redis(self) -> bool {
        self == Variant::Redis
    }
}

pub fn services_skipped() -> bool {
    std::env::var("OWL_TEST_SKIP_SERVICES").is_ok_and(|v| v == "1")
}

fn redis_url() -> String {
    std::env::var("OWL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// The admin password every test environment starts with.
pub const ADMIN_PASSWORD: &str = "Admin123";
/// The client address requests come from unless a test says otherwise.
pub const CLIENT_IP: &str = "192.0.2.10";

/// A throw-away PostgreSQL database, dropped with the guard.
type PgDatabase = owl_sql::testing::TempPostgres;

/// A Redis key prefix of this test, cleared with the guard.
struct RedisPrefix {
    prefix: String,
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(kv) = owl_query_api::RedisKv::connect(&redis_url(), &prefix).await {
                    let _ = kv.clear().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// One running application.
pub struct TestEnv {
    pub variant: Variant,
    pub router: Router,
    pub state: AppState,
    pub clock: Clock,
    pub dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
    _redis: Option<RedisPrefix>,
}

/// An answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    #[track_caller]
    pub fn expect(self, status: StatusCode) -> Reply {
        assert_eq!(self.status, status, "body: {}", self.text);
        self
    }
}

/// The base configuration of a test: a temp data dir, the admin password, a generated JWT secret,
/// a minimum password length of 6 so the admin API's example password `test123` is accepted, and channels
/// allowed to reach sinks on 127.0.0.1.
pub fn base_config(dir: &std::path::Path) -> owl_config::Config {
    let mut config = owl_config::Config {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    };
    config.auth.admin_password = owl_config::Secret::new(ADMIN_PASSWORD);
    config.auth.min_password_length = 6;
    config.storage.max_connections = 4;
    config.notifications.allowed_networks = owl_config::Networks::parse(&["127.0.0.0/8"]).unwrap();
    config
}

impl TestEnv {
    /// Starts an application, or returns `None` when the variant needs services and
    /// `OWL_TEST_SKIP_SERVICES=1`.
    pub async fn start(variant: Variant) -> Option<TestEnv> {
        TestEnv::start_with(variant, |_| {}).await
    }

    pub async fn start_with(
        variant: Variant,
        tweak: impl FnOnce(&mut owl_config::Config),
    ) -> Option<TestEnv> {
        if variant.uses_services() && services_skipped() {
            eprintln!("skipping the {variant:?} variant: OWL_TEST_SKIP_SERVICES=1");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut config = base_config(dir.path());
        let pg = match variant {
            Variant::Sqlite => None,
            Variant::MariaDb => Some(owl_sql::testing::TempDatabase::mysql("owl_test").await),
            Variant::Postgres | Variant::Redis => Some(PgDatabase::create("owl_test").await),
        };
        if let Some(pg) = &pg {
            config.storage.database_url = owl_config::Secret::new(pg.url());
        }
        let redis = variant.uses_redis().then(|| RedisPrefix {
            prefix: format!("owltest:{}:", uuid::Uuid::new_v4().simple()),
        });
        if let Some(redis) = &redis {
            config.storage.redis_url = owl_config::Secret::new(redis_url());
            config.storage.redis_prefix = redis.prefix.clone();
        }
        tweak(&mut config);
        let index = owl_index::Index::open(&dir.path().join("index"), Default::default()).unwrap();
        let clock = Clock::manual(chrono::Utc::now().timestamp_millis());
        let (router, state) = owl_query_api::app_with(
            config,
            index,
            Options {
                clock: clock.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{variant:?} application failed to start: {e:#}"));
        Some(TestEnv {
            variant,
            router,
            state,
            clock,
            dir,
            _pg: pg,
            _redis: redis,
        })
    }

    /// Sends a request from [`CLIENT_IP`].
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        self.call_from(CLIENT_IP, method, path, token, body).await
    }

    /// Sends a request from a client address.
    pub async fn call_from(
        &self,
        ip: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.send(request(ip, method, path, token, body)).await
    }

    /// Starts another application over the same database, Redis prefix, data directory (so the same
    /// JWT secret) and clock: a second replica. Its index is its own.
    pub async fn replica(&self) -> Router {
        let index_dir = self
            .dir
            .path()
            .join(format!("index-{}", uuid::Uuid::new_v4().simple()));
        let index = owl_index::Index::open(&index_dir, Default::default()).unwrap();
        let config = self.state.config.as_ref().clone();
        let options = Options {
            clock: self.clock.clone(),
            ..Default::default()
        };
        owl_query_api::app_with(config, index, options)
            .await
            .unwrap_or_else(|e| panic!("{:?} replica failed to start: {e:#}", self.variant))
            .0
    }

    /// Sends a request from [`CLIENT_IP`] to another router (a [`TestEnv::replica`]).
    pub async fn call_on(&self, router: &Router, method: &str, path: &str, token: Option<&str>) -> Reply {
        send_to(router, request(CLIENT_IP, method, path, token, None)).await
    }

    /// Sends a prepared request.
    pub async fn send(&self, request: Request<Body>) -> Reply {
        send_to(&self.router, request).await
    }

    /// The ids of the permissions with these codes (all of them must exist).
    pub async fn permission_ids(&self, admin: &str, codes: &[&str]) -> Vec<i64> {
        let all = self
            .call("GET", "/api/permissions", Some(admin), None)
            .await
            .expect(StatusCode::OK);
        let ids: Vec<i64> = all.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| codes.contains(&p["permission_code"].as_str().unwrap()))
            .map(|p| p["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids.len(), codes.len(), "{codes:?}: {}", all.text);
        ids
    }

    /// Logs in through the admin API's endpoint and returns `(access, refresh)`.
    pub async fn login(&self, username: &str, password: &str) -> (String, String) {
        let reply = self
            .call(
                "POST",
                "/api/auth/login",
                None,
                Some(serde_json::json!({ "username": username, "password": password })),
            )
            .await
            .expect(StatusCode::OK);
        let data = &reply.body["data"];
        (
            data["access_token"].as_str().unwrap().to_string(),
            data["refresh_token"].as_str().unwrap().to_string(),
        )
    }

    /// An access token of the first admin.
    pub async fn admin(&self) -> String {
        self.login("admin", ADMIN_PASSWORD).await.0
    }

    /// Creates a user (as admin) and returns its id.
    pub async fn create_user(&self, admin: &str, body: Value) -> i64 {
        let reply = self
            .call("POST", "/api/users", Some(admin), Some(body))
            .await
            .expect(StatusCode::CREATED);
        reply.body["data"]["id"].as_i64().unwrap()
    }

    /// Creates a role `code` at `level` holding exactly `permissions` (as `admin`); returns its id.
    pub async fn create_role(&self, admin: &str, code: &str, level: i64, permissions: &[&str]) -> i64 {
        let role = self
            .call(
                "POST",
                "/api/roles",
                Some(admin),
                Some(serde_json::json!({ "role_code": code, "role_name": code, "role_level": level })),
            )
            .await
            .expect(StatusCode::CREATED);
        let id = role.body["data"]["id"].as_i64().unwrap();
        let ids = self.permission_ids(admin, permissions).await;
        self.call(
            "POST",
            &format!("/api/roles/{id}/permissions"),
            Some(admin),
            Some(serde_json::json!({ "permission_ids": ids })),
        )
        .await
        .expect(StatusCode::OK);
        id
    }

    /// Creates an organization (as `token`).
    pub async fn create_org(&self, token: &str, code: &str, name: &str, parent: &str) -> i64 {
        let body = serde_json::json!({ "org_code": code, "org_name": name, "parent_code": parent });
        let reply = self
            .call("POST", "/api/organizations", Some(token), Some(body))
            .await
            .expect(StatusCode::CREATED);
        reply.body["data"]["id"].as_i64().unwrap()
    }
}

/// Sends a prepared request to `router` and reads the whole answer.
pub async fn send_to(router: &Router, request: Request<Body>) -> Reply {
    let response = tokio::time::timeout(Duration::from_secs(30), router.clone().oneshot(request))
        .await
        .expect("answer within 30 s")
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).to_string();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

/// Runs an async test body on every variant: `on_every_backend!(name, ...)` makes modules `name`
/// with tests `sqlite`, `postgres`, `redis` and `mariadb` calling `name(Variant)`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::common::Variant;

                #[tokio::test]
                async fn sqlite() {
                    super::$name(Variant::Sqlite).await;
                }

                #[tokio::test]
                async fn postgres() {
                    super::$name(Variant::Postgres).await;
                }

                #[tokio::test]
                async fn redis() {
                    super::$name(Variant::Redis).await;
                }

                #[tokio::test]
                async fn mariadb() {
                    super::$name(Variant::MariaDb).await;
                }
            }
        )*
    };
}

/// A request from `ip` with an optional bearer token and JSON body.
fn request(ip: &str, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::USER_AGENT, "owl-tests/1.0");
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some(body) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Body::from(serde_json::to_vec(&body).unwrap())
        }
        None => Body::empty(),
    };
    let mut request = builder.body(body).unwrap();
    let address: SocketAddr = format!("{ip}:40000").parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(address));
    request
}
