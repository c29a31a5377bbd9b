//! Who may call what (the route x role matrix), the region scope hook, the audit log and its
//! export, first-start bootstrap and serving on a real socket.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{Method, StatusCode, header};
use common::{ADMIN_PASSWORD, CLIENT_IP, TestEnv, Variant};
use owl_query_api::envelope::{Family, LogsV1Ok};
use owl_query_api::http::{AuthUser, Query, Routes};
use owl_query_api::{Access, Permission};
use serde_json::{Value, json};

on_every_backend!(
    route_role_matrix,
    region_scope_hook,
    audit_log_records_filters_and_exports
);

/// A signed-in identity of the matrix.
struct Identity {
    name: &'static str,
    user_code: &'static str,
    password: &'static str,
    level: i64,
    permissions: Vec<String>,
    token: String,
}

/// Whether a reply is the family's "permission missing" answer.
fn is_permission_denial(family: Family, status: StatusCode, body: &Value) -> bool {
    if status != StatusCode::FORBIDDEN {
        return false;
    }
    match family {
        Family::LogsV1 => body["error"]["code"] == "LOG_PERMISSION_DENIED" && body["statusCode"] == 403,
        Family::AuthAdmin => body["success"] == false && body["code"] == 403 && body["message"] == "权限不足",
        Family::Platform => {
            body["status"] == "error"
                && body["error"] == "AuthorizationError"
                && body["message"] == "权限不足"
        }
        Family::AnalyticsMonitoring => body == &json!({ "code": 403, "message": "权限不足", "data": null }),
    }
}

fn is_unauthenticated(family: Family, status: StatusCode, body: &Value) -> bool {
    if status != StatusCode::UNAUTHORIZED {
        return false;
    }
    match family {
        Family::LogsV1 => body["error"]["code"] == "UNAUTHORIZED",
        Family::AuthAdmin => body["code"] == 401,
        Family::Platform => body["error"] == "AuthenticationError",
        Family::AnalyticsMonitoring => body["code"] == 401,
    }
}

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment {
            "{resource_type}" => "user".to_string(),
            s if s.starts_with('{') => "999999".to_string(),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every registered route, called by every role and by a role without permissions: a route answers
/// 401 without a token, the family's 403 without the declared permission or level, and never that
/// 403 with them.
async fn route_role_matrix(variant: Variant) {
    let Some(env) = TestEnv::start(variant).await else {
        return;
    };
    let admin = env.admin().await;
    // Custom roles: none at all, and level 3 holding every permission (refused where the route also
    // needs level <= 2 or level 1).
    let mut custom = BTreeMap::new();
    for (code, level, all) in [("NOBODY", 5, false), ("WRITER3", 3, true)] {
        let role = env
            .call(
                "POST",
                "/api/roles",
                Some(&admin),
                Some(json!({ "role_code": code, "role_name": code, "role_level": level })),
            )
            .await
            .expect(StatusCode::CREATED);
        let id = role.body["data"]["id"].as_i64().unwrap();
        if all {
            let catalogue = env
                .call("GET", "/api/permissions", Some(&admin), None)
                .await
                .expect(StatusCode::OK);
            let ids: Vec<i64> = catalogue.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_i64().unwrap())
                .collect();
            env.call(
                "POST",
                &format!("/api/roles/{id}/permissions"),
                Some(&admin),
                Some(json!({ "permission_ids": ids })),
            )
            .await
            .expect(StatusCode::OK);
        }
        custom.insert(code, id);
    }
    let users = [
        ("ops", "ops1", 2_i64),
        ("developer", "dev1", 3),
        ("NOBODY", "nobody1", custom["NOBODY"]),
        ("WRITER3", "writer1", custom["WRITER3"]),
    ];
    for (_, user_code, role_id) in users {
        env.create_user(&admin, json!({ "user_code": user_code, "username": user_code, "password": "Passw0rd", "role_id": role_id }))
            .await;
    }
    let mut identities = vec![Identity {
        name: "admin",
        user_code: "admin",
        password: ADMIN_PASSWORD,
        level: 1,
        permissions: Vec::new(),
        token: String::new(),
    }];
    for (name, user_code, level) in [
        ("ops", "ops1", 2),
        ("developer", "dev1", 3),
        ("nobody", "nobody1", 5),
        ("writer3", "writer1", 3),
    ] {
        identities.push(Identity {
            name,
            user_code,
            password: "Passw0rd",
            level,
            permissions: Vec::new(),
            token: String::new(),
        });
    }
    for identity in &mut identities {
        identity.token = env.login(identity.user_code, identity.password).await.0;
        let profile = env
            .call("GET", "/api/auth/profile", Some(&identity.token), None)
            .await
            .expect(StatusCode::OK);
        identity.permissions = serde_json::from_value(profile.body["data"]["permissions"].clone()).unwrap();
    }
    // The log API's matrix, as granted on a fresh database.
    let of = |name: &str| {
        identities
            .iter()
            .find(|i| i.name == name)
            .unwrap()
            .permissions
            .clone()
    };
    assert_eq!(of("admin").len(), owl_query_api::CATALOGUE.len());
    assert_eq!(
        of("ops"),
        [
            "log:alert",
            "log:cleanup",
            "log:read",
            "monitoring:read",
            "scheduler_view"
        ]
    );
    assert_eq!(of("developer"), ["log:read"]);
    assert!(of("nobody").is_empty());

    let table = owl_query_api::http::routes();
    let specs: Vec<_> = table.specs().cloned().collect();
    let public: Vec<String> = specs
        .iter()
        .filter(|s| s.access == Access::Public)
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert_eq!(
        public,
        [
            "GET /health",
            "GET /api/health",
            "GET /health/detailed",
            "POST /api/auth/login",
            "POST /api/auth/refresh",
            "POST /auth/login",
            "POST /api/refresh"
        ]
    );
    let mut checked = 0;
    for spec in &specs {
        let path = concrete(spec.path);
        let body = matches!(spec.method, Method::POST | Method::PUT).then(|| json!({}));
        let method = spec.method.as_str();
        let anonymous = env.call(method, &path, None, body.clone()).await;
        if spec.access == Access::Public {
            assert!(
                !is_permission_denial(spec.family, anonymous.status, &anonymous.body),
                "{method} {path} is public"
            );
        } else {
            assert!(
                is_unauthenticated(spec.family, anonymous.status, &anonymous.body),
                "{method} {path} without a token: {} {}",
                anonymous.status,
                anonymous.text
            );
        }
        for identity in &mut identities {
            let allowed = match spec.access {
                Access::Public | Access::Authenticated => true,
                Access::Require {
                    permission,
                    max_level,
                    ..
                } => {
                    identity.permissions.iter().any(|p| p == permission.code())
                        && max_level.is_none_or(|max| identity.level <= max)
                }
            };
            let reply = env.call(method, &path, Some(&identity.token), body.clone()).await;
            let denied = is_permission_denial(spec.family, reply.status, &reply.body);
            assert_eq!(
                denied, !allowed,
                "{} calling {method} {path} (needs {}): {} {}",
                identity.name, spec.access, reply.status, reply.text
            );
            if allowed && spec.access != Access::Public {
                assert_ne!(
                    reply.status,
                    StatusCode::UNAUTHORIZED,
                    "{} calling {method} {path}: {}",
                    identity.name,
                    reply.text
                );
            }
            if spec.path == "/api/auth/logout" && reply.status == StatusCode::OK {
                identity.token = env.login(identity.user_code, identity.password).await.0;
            }
            checked += 1;
        }
    }
    assert!(checked >= specs.len() * 5);
    // The walk above covers the whole router: a path outside the table is unknown.
    env.call("GET", "/api/secret-admin-panel", Some(&admin), None)
        .await
        .expect(StatusCode::NOT_FOUND);
}

/// The probe's filters.
#[derive(serde::Deserialize, utoipa::IntoParams)]
struct ProbeQuery {
    region: Option<String>,
    environment: Option<String>,
}

async fn scope_probe(user: AuthUser, Query(query): Query<ProbeQuery>) -> LogsV1Ok<Value> {
    let split = |key: &str| {
        let value = if key == "region" {
            &query.region
        } else {
            &query.environment
        };
        value
            .as_ref()
            .map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>())
    };
    let scope = user.scope();
    LogsV1Ok::new(json!({
        "regions": scope.regions_for(split("region").as_deref()),
        "environments": scope.environments_for(split("environment").as_deref()),
    }))
}

/// The hook log endpoints use: an ops user limited to CN only ever gets CN, a developer only the
/// development environment, an admin everything; changes apply on the next request.
async fn region_scope_hook(variant: Variant) {
    let Some(env) = TestEnv::start(variant).await else {
        return;
    };
    let table = owl_query_api::http::routes().merge(Routes::new(Family::LogsV1, "log").route(
        Method::GET,
        "/api/v1/logs/scope-probe",
        Access::perm(Permission::LogRead),
        scope_probe,
    ));
    let mut env = env;
    env.router = owl_query_api::http::application(env.state.clone(), table);
    let admin = env.admin().await;
    let ops_id = env
        .create_user(&admin, json!({ "user_code": "cnops", "username": "CN Ops", "password": "Passw0rd", "role_id": 2, "regions": ["cn"] }))
        .await;
    let stored = env
        .call("GET", &format!("/api/users/{ops_id}"), Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(stored.body["data"]["regions"], json!(["CN"]));
    env.create_user(
        &admin,
        json!({ "user_code": "dev", "username": "Dev", "password": "Passw0rd", "role_id": 3 }),
    )
    .await;
    let (ops, _) = env.login("cnops", "Passw0rd").await;
    let (dev, _) = env.login("dev", "Passw0rd").await;

    let probe = |token: String, query: &'static str| {
        let env = &env;
        async move {
            let reply = env
                .call(
                    "GET",
                    &format!("/api/v1/logs/scope-probe{query}"),
                    Some(&token),
                    None,
                )
                .await
                .expect(StatusCode::OK);
            assert_eq!(reply.body["success"], true);
            assert_eq!(reply.body["path"], "/api/v1/logs/scope-probe");
            reply.body["data"].clone()
        }
    };
    assert_eq!(probe(ops.clone(), "").await["regions"], json!(["CN"]));
    assert_eq!(probe(ops.clone(), "?region=US").await["regions"], json!([]));
    assert_eq!(
        probe(ops.clone(), "?region=US,cn").await["regions"],
        json!(["CN"])
    );
    assert_eq!(probe(ops.clone(), "").await["environments"], Value::Null);
    assert_eq!(
        probe(dev.clone(), "").await["environments"],
        json!(["development"])
    );
    assert_eq!(
        probe(dev.clone(), "?environment=production").await["environments"],
        json!([])
    );
    assert_eq!(probe(dev.clone(), "?region=UAE").await["regions"], json!(["UAE"]));
    assert_eq!(
        probe(admin.clone(), "").await,
        json!({ "regions": null, "environments": null })
    );

    // Widening the user's regions applies to their next request; "all" is an empty list.
    env.call(
        "PUT",
        &format!("/api/users/{ops_id}"),
        Some(&admin),
        Some(json!({ "regions": ["CN", "US"] })),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(probe(ops.clone(), "?region=US").await["regions"], json!(["US"]));
    env.call(
        "PUT",
        &format!("/api/users/{ops_id}"),
        Some(&admin),
        Some(json!({ "regions": [] })),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(probe(ops.clone(), "").await["regions"], Value::Null);

    // A region-limited manager cannot grant regions they do not hold.
    let manager = env
        .call(
            "POST",
            "/api/roles",
            Some(&admin),
            Some(json!({ "role_code": "RMGR", "role_name": "Regional manager", "role_level": 2 })),
        )
        .await
        .expect(StatusCode::CREATED);
    let manager_role = manager.body["data"]["id"].as_i64().unwrap();
    let catalogue = env
        .call("GET", "/api/permissions", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    let ids: Vec<i64> = catalogue.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["permission_code"] == "user:write")
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    env.call(
        "POST",
        &format!("/api/roles/{manager_role}/permissions"),
        Some(&admin),
        Some(json!({ "permission_ids": ids })),
    )
    .await
    .expect(StatusCode::OK);
    env.create_org(&admin, "R", "Region org", "0").await;
    env.create_user(
        &admin,
        json!({ "user_code": "rmgr", "username": "R", "password": "Passw0rd", "role_id": manager_role, "regions": ["CN"], "org_code": "R" }),
    )
    .await;
    let (rmgr, _) = env.login("rmgr", "Passw0rd").await;
    // A manager grants only roles below its own that hold nothing it lacks: a plain level-3 role.
    let plain = env
        .call(
            "POST",
            "/api/roles",
            Some(&admin),
            Some(json!({ "role_code": "PLAIN3", "role_name": "Plain", "role_level": 3 })),
        )
        .await
        .expect(StatusCode::CREATED);
    let plain_role = plain.body["data"]["id"].as_i64().unwrap();
    for regions in [json!(["US"]), json!([])] {
        let refused = env
            .call(
                "POST",
                "/api/users",
                Some(&rmgr),
                Some(json!({ "user_code": "x", "username": "X", "password": "Passw0rd", "role_id": plain_role, "regions": regions, "org_code": "R" })),
            )
            .await
            .expect(StatusCode::BAD_REQUEST);
        assert_eq!(refused.body["errors"][0]["field"], "regions");
    }
    let allowed = json!({ "user_code": "y", "username": "Y", "password": "Passw0rd", "role_id": plain_role, "regions": ["CN"], "org_code": "R" });
    env.call("POST", "/api/users", Some(&rmgr), Some(allowed))
        .await
        .expect(StatusCode::CREATED);
}

async fn audit_log_records_filters_and_exports(variant: Variant) {
    let Some(env) = TestEnv::start(variant).await else {
        return;
    };
    let admin = env.admin().await;
    env.call(
        "POST",
        "/api/auth/login",
        None,
        Some(json!({ "username": "admin", "password": "Wrong-Secret-1" })),
    )
    .await
    .expect(StatusCode::UNAUTHORIZED);
    let created = env
        .call(
            "POST",
            "/api/users?source=test&token=query-secret",
            Some(&admin),
            Some(json!({
                "user_code": "auditme",
                "username": "Audit Me",
                "password": "Hunter2hunter2",
                "role_id": 3,
                "api_token": "tok-123456",
                "note": "Authorization: Bearer abcdefghijklmnop"
            })),
        )
        .await
        .expect(StatusCode::CREATED);
    let user_id = created.body["data"]["id"].as_i64().unwrap();
    env.call("GET", "/api/users", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    env.call(
        "PUT",
        &format!("/api/users/{user_id}"),
        Some(&admin),
        Some(json!({ "password": "NewSecret99" })),
    )
    .await
    .expect(StatusCode::OK);

    let list = env
        .call(
            "GET",
            "/api/foundation/audit-logs?page_size=100",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(list.body["code"], 200);
    let items = list.body["data"]["items"].as_array().unwrap();
    for secret in [
        "Wrong-Secret-1",
        "Hunter2hunter2",
        "tok-123456",
        "abcdefghijklmnop",
        "NewSecret99",
        "query-secret",
        ADMIN_PASSWORD,
    ] {
        assert!(
            !list.text.contains(secret),
            "{secret} leaked into the audit log: {}",
            list.text
        );
    }
    let actions: Vec<&str> = items.iter().map(|i| i["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["update", "create", "login_failed", "login"],
        "newest first; reads are not audited"
    );
    let create = &items[1];
    assert_eq!(create["user_id"], 1);
    assert_eq!(create["username"], "admin");
    assert_eq!(create["resource_type"], "user");
    assert_eq!(create["resource_id"], user_id.to_string());
    assert_eq!(create["method"], "POST");
    assert_eq!(create["path"], "/api/users");
    assert_eq!(create["status_code"], 201);
    assert_eq!(create["ip_address"], CLIENT_IP);
    assert_eq!(create["user_agent"], "owl-tests/1.0");
    assert!(create["duration_ms"].as_i64().unwrap() >= 0);
    assert!(
        create["request_id"].as_str().is_some_and(|r| !r.is_empty()),
        "{create}"
    );
    assert!(owl_model::parse_timestamp(create["created_at"].as_str().unwrap()).is_some());
    assert_eq!(create["params"]["body"]["password"], "***REDACTED***");
    assert_eq!(create["params"]["body"]["api_token"], "***REDACTED***");
    assert_eq!(create["params"]["body"]["user_code"], "auditme");
    assert_eq!(create["params"]["query"]["source"], "test");
    assert_eq!(create["params"]["query"]["token"], "***REDACTED***");
    let failed = &items[2];
    assert_eq!(failed["username"], "admin");
    assert_eq!(failed["user_id"], Value::Null);
    assert_eq!(failed["status_code"], 401);
    // Refused anonymous requests are audited without their body.
    assert_eq!(failed["params"], Value::Null, "{failed}");
    assert_eq!(items[3]["user_id"], 1, "a successful login names its user");

    // Detail, per user, per resource, filters.
    let id = create["id"].as_i64().unwrap();
    let detail = env
        .call(
            "GET",
            &format!("/api/foundation/audit-logs/{id}"),
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(detail.body["data"]["id"], id);
    env.call("GET", "/api/foundation/audit-logs/999999", Some(&admin), None)
        .await
        .expect(StatusCode::NOT_FOUND);
    let by_user = env
        .call("GET", "/api/foundation/audit-logs/users/1", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(by_user.body["data"]["total"], 3);
    let by_resource = env
        .call(
            "GET",
            &format!("/api/foundation/audit-logs/resources/user/{user_id}"),
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(by_resource.body["data"]["total"], 2);
    let failures = env
        .call(
            "GET",
            "/api/foundation/audit-logs?status=failure",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(failures.body["data"]["total"], 1);
    let now = owl_model::format_timestamp(&env.clock.now());
    let later = owl_model::format_timestamp(&(env.clock.now() + chrono::Duration::hours(1)));
    let range = env
        .call(
            "GET",
            &format!("/api/foundation/audit-logs?action=create&start_time={now}&end_time={later}"),
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(range.body["data"]["total"], 1);
    let empty = env
        .call(
            "GET",
            &format!("/api/foundation/audit-logs?start_time={later}"),
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(empty.body["data"]["total"], 0);
    let bad = env
        .call(
            "GET",
            "/api/foundation/audit-logs?start_time=yesterday",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["code"], 400);
    assert_eq!(bad.body["data"]["errors"][0]["field"], "start_time");

    // CSV export: streamed, a header and one line per entry, nothing secret.
    let csv = env
        .call(
            "POST",
            "/api/foundation/audit-logs/export",
            Some(&admin),
            Some(json!({ "format": "csv" })),
        )
        .await
        .expect(StatusCode::OK);
    assert!(
        csv.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        csv.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains(".csv")
    );
    let lines: Vec<&str> = csv.text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(
        lines[0].starts_with("id,created_at,user_id,username,action"),
        "{}",
        lines[0]
    );
    // The four entries above, and the export itself, recorded before its body streams.
    assert_eq!(lines.len(), 1 + 5, "{}", csv.text);
    assert!(lines[1].contains(",login,"), "oldest first: {}", lines[1]);
    assert!(lines[5].contains(",export,audit_log,"), "{}", lines[5]);
    assert!(!csv.text.contains("Hunter2hunter2") && csv.text.contains("***REDACTED***"));
    // JSON export, bounded by limit and filterable.
    let json_export = env
        .call(
            "POST",
            "/api/foundation/audit-logs/export",
            Some(&admin),
            Some(json!({ "format": "json", "limit": 2 })),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(json_export.body.as_array().unwrap().len(), 2);
    let filtered = env
        .call(
            "POST",
            "/api/foundation/audit-logs/export",
            Some(&admin),
            Some(json!({ "action": "login_failed" })),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(filtered.body.as_array().unwrap().len(), 1);
    let refused = env
        .call(
            "POST",
            "/api/foundation/audit-logs/export",
            Some(&admin),
            Some(json!({ "format": "xml" })),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["data"]["errors"][0]["field"], "format");
    // Exports are audited.
    let exports = env
        .call(
            "GET",
            "/api/foundation/audit-logs?action=export",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(exports.body["data"]["total"], 4);
}

#[tokio::test]
async fn export_streams_more_rows_than_a_page() {
    let Some(env) = TestEnv::start(Variant::Sqlite).await else {
        return;
    };
    let admin = env.admin().await;
    let rows = owl_query_api::http::audit_logs::EXPORT_PAGE_ROWS as usize + 20;
    for i in 0..rows {
        let entry = owl_query_api::NewAuditEntry {
            user_id: Some(1),
            user_code: Some("admin".into()),
            action: "update".into(),
            resource_type: "user".into(),
            resource_id: Some(i.to_string()),
            method: "PUT".into(),
            path: format!("/api/users/{i}"),
            params: Some(r#"{"body":{"note":"=1+1, \"quoted\""}}"#.into()),
            ip_address: "10.0.0.1".into(),
            user_agent: "ua".into(),
            status_code: 200,
            duration_ms: 1,
            request_id: None,
            created_at: env.clock.now_ms(),
        };
        env.state.db.insert_audit(&entry).await.unwrap();
    }
    let csv = env
        .call(
            "POST",
            "/api/foundation/audit-logs/export",
            Some(&admin),
            Some(json!({ "format": "csv", "action": "update" })),
        )
        .await
        .expect(StatusCode::OK);
    let lines: Vec<&str> = csv.text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), rows + 1);
    assert!(
        lines[1].ends_with(r#""{""body"":{""note"":""=1+1, \""quoted\""""}}""#),
        "{}",
        lines[1]
    );
    let json_export = env
        .call(
            "POST",
            "/api/foundation/audit-logs/export",
            Some(&admin),
            Some(json!({ "action": "update" })),
        )
        .await
        .expect(StatusCode::OK);
    let ids: Vec<i64> = json_export
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), rows);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ascending, no row twice");
}

#[tokio::test]
async fn bootstrap_generates_the_first_admin_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::base_config(dir.path());
    config.auth.admin_password = owl_config::Secret::default();
    let first = owl_query_api::bootstrap(&config).await.unwrap();
    let owl_query_api::AdminAccount::CreatedWithGeneratedPassword { file } = &first.admin else {
        panic!("expected a generated password, got {:?}", first.admin)
    };
    let password = std::fs::read_to_string(file).unwrap().trim().to_string();
    assert_eq!(password.len(), 20);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    first.database.close().await;
    let second = owl_query_api::bootstrap(&config).await.unwrap();
    assert_eq!(second.admin, owl_query_api::AdminAccount::Existing);
    second.database.close().await;
    assert_eq!(
        std::fs::read_to_string(file).unwrap().trim(),
        password,
        "kept, not regenerated"
    );

    // `owl admin` functions work on the same database.
    let request = owl_query_api::CreateUser {
        user_code: "ops9".into(),
        username: "Ops Nine".into(),
        password: "opsPass9".into(),
        role_code: "ops".into(),
        org_code: String::new(),
        regions: vec!["cn".into()],
    };
    owl_query_api::admin::create_user(&config, &request)
        .await
        .unwrap();
    let weak = owl_query_api::admin::reset_password(&config, "ops9", "short")
        .await
        .unwrap_err();
    assert!(matches!(weak, owl_query_api::AdminError::Password(_)), "{weak}");
    let unknown = owl_query_api::admin::create_user(
        &config,
        &owl_query_api::CreateUser {
            role_code: "nope".into(),
            ..request.clone()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(unknown, owl_query_api::AdminError::UnknownRole(_)),
        "{unknown}"
    );
    owl_query_api::admin::reset_password(&config, "ops9", "opsPass10")
        .await
        .unwrap();
    owl_query_api::admin::migrate(&config).await.unwrap();

    let index = owl_index::Index::open(&dir.path().join("index"), Default::default()).unwrap();
    let router = owl_query_api::app(config, index).await.unwrap();
    for (user, pw) in [("admin", password.as_str()), ("ops9", "opsPass10")] {
        use tower::ServiceExt;
        let request = axum::http::Request::post("/api/auth/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(
                json!({ "username": user, "password": pw }).to_string(),
            ))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{user}");
    }
}

/// One HTTP/1.1 exchange over a fresh connection.
async fn http(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

#[tokio::test]
async fn run_serves_on_a_real_socket_and_shuts_down() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::base_config(dir.path());
    let index = owl_index::Index::open(&dir.path().join("index"), Default::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(owl_query_api::run(config, index, listener, shutdown.clone()));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (status, head, body) = loop {
        // The listener is bound before `run` starts, so connecting never fails; the first answer
        // waits for the bootstrap.
        let answer = http(address, "GET", "/health", None).await;
        if answer.0 == 200 || tokio::time::Instant::now() > deadline {
            break answer;
        }
    };
    assert_eq!(status, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("x-request-id:"), "{head}");
    assert!(head.to_ascii_lowercase().contains("x-trace-id:"), "{head}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["data"]["status"],
        "healthy"
    );
    let login = json!({ "username": "admin", "password": ADMIN_PASSWORD }).to_string();
    let (status, _, body) = http(address, "POST", "/api/auth/login", Some(&login)).await;
    assert_eq!(status, 200, "{body}");
    let token = serde_json::from_str::<Value>(&body).unwrap()["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!token.is_empty());

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("stops on cancel")
        .unwrap()
        .unwrap();
    // The client address of a real connection reaches the audit log.
    let database = owl_query_api::Database::connect(&common::base_config(dir.path()).database_url(), 1)
        .await
        .unwrap();
    let (entries, _) = database
        .list_audit(&owl_query_api::AuditFilter::default(), 1, 10)
        .await
        .unwrap();
    assert_eq!(entries[0].action, "login");
    assert_eq!(entries[0].ip_address, "127.0.0.1");
}

#[tokio::test]
async fn detailed_health_reports_a_failed_database() {
    let Some(env) = TestEnv::start(Variant::Sqlite).await else {
        return;
    };
    let admin = env.admin().await;
    // Once seen, the signed-in principal is served from the cache, without the database.
    env.call("GET", "/api/auth/profile", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    env.state.db.close().await;
    let public = env
        .call("GET", "/health/detailed", None, None)
        .await
        .expect(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(public.body["data"]["database"], "disconnected");
    let reply = env
        .call("GET", "/health/detailed", Some(&admin), None)
        .await
        .expect(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body["status"], "error");
    assert_eq!(reply.body["message"], "服务不可用");
    let data = &reply.body["data"];
    assert_eq!(data["status"], "unhealthy");
    assert_eq!(data["database"], "disconnected");
    assert_eq!(data["cache"], "connected");
    assert_eq!(data["index"], "ok");
    assert!(
        !reply.text.contains("sqlite://"),
        "no connection details: {}",
        reply.text
    );
    // The liveness answer does not depend on the database.
    env.call("GET", "/health", None, None)
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn refused_anonymous_requests_are_audited_without_body_and_within_a_share_per_ip() {
    let Some(env) = TestEnv::start(Variant::Sqlite).await else {
        return;
    };
    let filler = "x".repeat(8_000);
    for i in 0..60 {
        let reply = env
            .call_from(
                "203.0.113.50",
                "POST",
                "/api/users",
                None,
                Some(json!({ "user_code": format!("u{i}"), "username": filler, "password": "Passw0rd" })),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    // Another address still gets its rows.
    env.call_from(
        "203.0.113.51",
        "POST",
        "/api/users",
        None,
        Some(json!({ "user_code": "other" })),
    )
    .await
    .expect(StatusCode::UNAUTHORIZED);
    let (entries, total) = env
        .state
        .db
        .list_audit(&owl_query_api::AuditFilter::default(), 1, 500)
        .await
        .unwrap();
    let flood: Vec<_> = entries
        .iter()
        .filter(|e| e.ip_address == "203.0.113.50")
        .collect();
    assert_eq!(
        flood.len() as i64,
        owl_query_api::http::MAX_UNAUTHENTICATED_AUDITS_PER_MINUTE,
        "{total} rows"
    );
    assert!(
        flood.iter().all(|e| e.status_code == 401 && e.params.is_none()),
        "{flood:?}"
    );
    assert!(entries.iter().any(|e| e.ip_address == "203.0.113.51"));
    // A minute later the address has a new share.
    env.clock.advance(Duration::from_secs(61));
    env.call_from(
        "203.0.113.50",
        "POST",
        "/api/users",
        None,
        Some(json!({ "user_code": "again" })),
    )
    .await
    .expect(StatusCode::UNAUTHORIZED);
    let (entries, _) = env
        .state
        .db
        .list_audit(&owl_query_api::AuditFilter::default(), 1, 500)
        .await
        .unwrap();
    let flood = entries.iter().filter(|e| e.ip_address == "203.0.113.50").count() as i64;
    assert_eq!(
        flood,
        owl_query_api::http::MAX_UNAUTHENTICATED_AUDITS_PER_MINUTE + 1
    );
}
