//! The query API core end to end, on SQLite, on PostgreSQL and with Redis: the admin API's curl flows, the platform API
//! aliases, tokens (expiry, tampering, algorithm confusion, refresh reuse, logout), lockout,
//! organization scoping and validation.

mod common;

use std::time::Duration;

use axum::http::{StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{ADMIN_PASSWORD, TestEnv, Variant};
use serde_json::{Value, json};

on_every_backend!(
    auth_admin_curl_flows,
    platform_aliases_and_user_toggle,
    token_expiry_tampering_and_algorithms,
    refresh_rotation_and_reuse,
    logout_revokes_every_token_of_the_user,
    lockout_per_user_and_per_ip,
    organization_scoping,
    validation_errors_name_fields,
);

/// Creates the organizations the admin API's examples assume (`0501` and `050101`).
async fn seed_002_orgs(env: &TestEnv, admin: &str) {
    env.create_org(admin, "0501", "广东省电力公司", "0").await;
    env.create_org(admin, "050101", "广州供电局", "0501").await;
}

/// The admin API's curl examples, verbatim bodies and headers, in order.
async fn auth_admin_curl_flows(variant: Variant) {
    let Some(env) = TestEnv::start(variant).await else {
        return;
    };
    let admin = env.admin().await;
    seed_002_orgs(&env, &admin).await;

    // POST /api/users
    let create = env
        .call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({
                "user_code": "test001",
                "username": "测试用户",
                "password": "test123",
                "org_code": "050101",
                "role_id": 3,
                "phone": "13800138001",
                "address": "测试地址"
            })),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(create.body["success"], true);
    assert_eq!(create.body["message"], "用户创建成功");
    let user = &create.body["data"];
    for (key, value) in [
        ("user_code", json!("test001")),
        ("username", json!("测试用户")),
        ("org_code", json!("050101")),
        ("role_id", json!(3)),
        ("phone", json!("13800138001")),
        ("address", json!("测试地址")),
        ("status", json!(1)),
    ] {
        assert_eq!(user[key], value, "{key} in {user}");
    }
    assert!(user["id"].is_i64());
    assert!(
        user.get("password").is_none() && user.get("password_hash").is_none(),
        "{user}"
    );
    let user_id = user["id"].as_i64().unwrap();

    // POST /api/auth/login
    let login = env
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({ "username": "test001", "password": "test123" })),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(login.body["code"], 200);
    assert_eq!(login.body["message"], "登录成功");
    assert_eq!(login.body["data"]["token_type"], "bearer");
    assert_eq!(login.body["data"]["expires_in"], 1800);
    let access = login.body["data"]["access_token"].as_str().unwrap().to_string();
    let refresh = login.body["data"]["refresh_token"].as_str().unwrap().to_string();
    assert!(access.starts_with("eyJ") && refresh.starts_with("eyJ") && access.split('.').count() == 3);

    // POST /api/auth/refresh with the refresh token in Authorization.
    let refreshed = env
        .call("POST", "/api/auth/refresh", Some(&refresh), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(refreshed.body["code"], 200);
    assert_eq!(refreshed.body["message"], "令牌刷新成功");
    assert_eq!(refreshed.body["data"]["token_type"], "bearer");
    assert_eq!(refreshed.body["data"]["expires_in"], 1800);
    let access = refreshed.body["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(
        refreshed.body["data"]["refresh_token"].as_str().unwrap(),
        refresh,
        "rotated"
    );

    // GET /api/auth/profile
    let profile = env
        .call("GET", "/api/auth/profile", Some(&access), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(profile.body["success"], true);
    let data = &profile.body["data"];
    assert_eq!(data["id"], user_id);
    assert_eq!(data["name"], "测试用户");
    assert_eq!(data["avatar"], "");
    assert_eq!(data["email"], "");
    assert_eq!(data["role_code"], "developer");
    assert_eq!(data["org_code"], "050101");
    assert_eq!(data["permissions"], json!(["log:read"]));

    // GET /api/auth/permissions
    let permissions = env
        .call("GET", "/api/auth/permissions", Some(&access), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(permissions.body["success"], true);
    let list = permissions.body["data"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    for key in [
        "id",
        "permission_code",
        "permission_name",
        "api_path",
        "api_method",
        "resource_type",
        "description",
        "status",
    ] {
        assert!(list[0].get(key).is_some(), "{key} missing in {}", list[0]);
    }
    assert_eq!(list[0]["permission_code"], "log:read");

    // POST /api/auth/logout
    let logout = env
        .call("POST", "/api/auth/logout", Some(&access), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(logout.body, json!({ "code": 200, "message": "登出成功" }));
    env.call("GET", "/api/auth/profile", Some(&access), None)
        .await
        .expect(StatusCode::UNAUTHORIZED);

    // GET /api/users and the filtered query.
    let users = env
        .call("GET", "/api/users", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(users.body["success"], true);
    assert_eq!(users.body["data"]["pagination"]["total"], 2);
    let filtered = env
        .call(
            "GET",
            "/api/users?page=1&page_size=10&status=1&org_code=050101",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    let list = filtered.body["data"]["list"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    for (key, value) in [
        ("id", json!(user_id)),
        ("user_code", json!("test001")),
        ("username", json!("测试用户")),
        ("org_code", json!("050101")),
        ("org_name", json!("广州供电局")),
        ("role_code", json!("developer")),
        ("role_name", json!("开发人员")),
        ("status", json!(1)),
    ] {
        assert_eq!(list[0][key], value, "{key}");
    }
    assert_eq!(
        filtered.body["data"]["pagination"],
        json!({ "page": 1, "page_size": 10, "total": 1, "total_pages": 1, "has_next": false, "has_prev": false })
    );

    // POST /api/organizations
    let org = env
        .call(
            "POST",
            "/api/organizations",
            Some(&admin),
            Some(json!({
                "org_code": "050102",
                "org_name": "深圳供电局",
                "parent_code": "0501",
                "org_level": 2,
                "description": "深圳供电局",
                "status": 1
            })),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(org.body["message"], "组织创建成功");
    for (key, value) in [
        ("org_code", json!("050102")),
        ("org_name", json!("深圳供电局")),
        ("parent_code", json!("0501")),
        ("org_level", json!(2)),
        ("description", json!("深圳供电局")),
        ("status", json!(1)),
    ] {
        assert_eq!(org.body["data"][key], value, "{key}");
    }

    // GET /api/organizations?type=tree
    let tree = env
        .call("GET", "/api/organizations?type=tree", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(tree.body["success"], true);
    let roots = tree.body["data"].as_array().unwrap();
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0]["org_code"], "0501");
    assert_eq!(roots[0]["parent_code"], "0");
    let children: Vec<&str> = roots[0]["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["org_code"].as_str().unwrap())
        .collect();
    assert_eq!(children, ["050101", "050102"]);

    // GET /api/organizations?type=list&parent_code=0501
    let list = env
        .call(
            "GET",
            "/api/organizations?type=list&parent_code=0501",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    let codes: Vec<&str> = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["org_code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["050101", "050102"]);

    // POST /api/roles: the fourth role on a fresh database, id 4 as in the admin API.
    let role = env
        .call(
            "POST",
            "/api/roles",
            Some(&admin),
            Some(json!({
                "role_code": "DEPT_MANAGER",
                "role_name": "部门经理",
                "role_level": 2,
                "description": "部门管理员角色",
                "status": 1
            })),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(role.body["message"], "角色创建成功");
    for (key, value) in [
        ("id", json!(4)),
        ("role_code", json!("DEPT_MANAGER")),
        ("role_name", json!("部门经理")),
        ("role_level", json!(2)),
        ("description", json!("部门管理员角色")),
        ("status", json!(1)),
    ] {
        assert_eq!(role.body["data"][key], value, "{key}");
    }

    // POST /api/roles/4/permissions
    let assigned = env
        .call(
            "POST",
            "/api/roles/4/permissions",
            Some(&admin),
            Some(json!({ "permission_ids": [1, 2, 3, 4] })),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        assigned.body,
        json!({ "success": true, "message": "权限分配成功" })
    );
    let detail = env
        .call("GET", "/api/roles/4", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    let codes: Vec<&str> = detail.body["data"]["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["permission_code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["log:read", "log:config", "log:cleanup", "log:alert"]);

    // Update and soft delete.
    let updated = env
        .call(
            "PUT",
            &format!("/api/users/{user_id}"),
            Some(&admin),
            Some(json!({ "phone": "13900000000" })),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(updated.body["data"]["phone"], "13900000000");
    env.call("DELETE", &format!("/api/users/{user_id}"), Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    let deleted = env
        .call("GET", &format!("/api/users/{user_id}"), Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        deleted.body["data"]["status"], 0,
        "soft delete keeps the row with status 0"
    );
    let denied = env
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({ "username": "test001", "password": "test123" })),
        )
        .await;
    assert_eq!(
        denied.status,
        StatusCode::UNAUTHORIZED,
        "a deleted user cannot sign in"
    );
}

/// The platform API's `/auth/login`, `/api/refresh`, `/api/me`, user toggle and stats, health.
async fn platform_aliases_and_user_toggle(variant: Variant) {
    let Some(env) = TestEnv::start(variant).await else {
        return;
    };
    let login = env
        .call(
            "POST",
            "/auth/login",
            None,
            Some(json!({ "username": "admin", "password": ADMIN_PASSWORD })),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(login.body["status"], "success");
    assert_eq!(login.body["message"], "登录成功");
    assert_eq!(
        login.body["data"]["user"],
        json!({ "id": 1, "username": "admin", "role": "admin" })
    );
    let admin = login.body["data"]["access_token"].as_str().unwrap().to_string();
    let refresh = login.body["data"]["refresh_token"].as_str().unwrap().to_string();

    let refreshed = env
        .call("POST", "/api/refresh", Some(&refresh), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(refreshed.body["status"], "success");
    assert!(refreshed.body["data"]["access_token"].is_string());

    let me = env
        .call("GET", "/api/me", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(me.body["status"], "success");
    assert_eq!(me.body["data"]["username"], "admin");
    assert_eq!(me.body["data"]["role"], "admin");

    // The platform API's user creation body: `username` is the login name, `role` a role code.
    let created = env
        .call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({ "username": "newuser", "password": "password123", "role": "ops", "email": "user@example.com" })),
        )
        .await
        .expect(StatusCode::CREATED);
    let id = created.body["data"]["id"].as_i64().unwrap();
    assert_eq!(created.body["data"]["user_code"], "newuser");
    assert_eq!(created.body["data"]["role_code"], "ops");
    let (ops_token, _) = env.login("newuser", "password123").await;

    let toggled = env
        .call(
            "POST",
            &format!("/api/users/{id}/toggle-status"),
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(toggled.body["status"], "success");
    assert_eq!(toggled.body["data"]["status"], 0);
    env.call("GET", "/api/auth/profile", Some(&ops_token), None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    let stats = env
        .call("GET", "/api/users/stats", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(stats.body["data"]["total"], 2);
    assert_eq!(stats.body["data"]["active"], 1);
    assert_eq!(stats.body["data"]["inactive"], 1);
    assert_eq!(stats.body["data"]["by_role"], json!({ "admin": 1, "ops": 1 }));
    let toggled = env
        .call(
            "POST",
            &format!("/api/users/{id}/toggle-status"),
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(toggled.body["data"]["status"], 1);
    env.login("newuser", "password123").await;

    let self_toggle = env
        .call("POST", "/api/users/1/toggle-status", Some(&admin), None)
        .await
        .expect(StatusCode::FORBIDDEN);
    assert_eq!(self_toggle.body["status"], "error");

    for path in ["/health", "/api/health"] {
        let health = env.call("GET", path, None, None).await.expect(StatusCode::OK);
        assert_eq!(health.body["status"], "success");
        assert_eq!(health.body["data"]["status"], "healthy");
        assert!(health.body["data"]["timestamp"].as_f64().unwrap() > 1.7e9);
        assert_eq!(health.body["message"], "服务运行正常");
    }
    // In public: the platform API's statuses and nothing else (no counts, sizes, versions or paths).
    let public = env
        .call("GET", "/health/detailed", None, None)
        .await
        .expect(StatusCode::OK);
    let keys: Vec<&str> = public.body["data"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["status", "database", "redis", "timestamp"],
        "{}",
        public.text
    );
    let admin = env.admin().await;
    let detailed = env
        .call("GET", "/health/detailed", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    let data = &detailed.body["data"];
    assert_eq!(data["status"], "healthy", "{data}");
    assert_eq!(data["database"], "connected");
    assert_eq!(
        data["redis"],
        if variant.uses_redis() {
            "connected"
        } else {
            "not_configured"
        }
    );
    assert_eq!(data["index"], "ok");
    assert!(data["checks"]["database"]["latency_ms"].as_f64().is_some());
    assert!(data["checks"]["disk"]["free_bytes"].as_u64().unwrap() > 0);
    assert!(owl_model::parse_timestamp(data["timestamp"].as_str().unwrap()).is_some());
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn forge(header: &str, claims: &Value, secret: Option<&[u8]>) -> String {
    use hmac::{Hmac, Mac};
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = match secret {
        Some(secret) => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
            mac.update(signing_input.as_bytes());
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
        None => String::new(),
    };
    format!("{signing_input}.{signature}")
}

async fn assert_refused(env: &TestEnv, token: &str, why: &str) {
    let reply = env.call("GET", "/api/auth/profile", Some(token), None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{why}: {}", reply.text);
    assert_eq!(reply.body["success"], false, "{why}");
    assert_eq!(reply.body["code"], 401, "{why}");
}

async fn token_expiry_tampering_and_algorithms(variant: Variant) {
    let Some(env) = TestEnv::start(variant).await else {
        return;
    };
    let (access, refresh) = env.login("admin", ADMIN_PASSWORD).await;
    env.call("GET", "/api/auth/profile", Some(&access), None)
        .await
        .expect(StatusCode::OK);
    let secret = std::fs::read_to_string(env.dir.path().join("jwt-secret")).unwrap();
    let secret = secret.trim().as_bytes().to_vec();
    let claims = claims_of(&access);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        1800,
        "30-minute access tokens"
    );

    let genuine = forge(r#"{"alg":"HS256","typ":"JWT"}"#, &claims, Some(&secret));
    env.call("GET", "/api/auth/profile", Some(&genuine), None)
        .await
        .expect(StatusCode::OK);

    let mut other_user = claims.clone();
    other_user["sub"] = json!("2");
    let (head, rest) = access.split_once('.').unwrap();
    let signature = rest.rsplit('.').next().unwrap();
    let tampered = format!(
        "{head}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(other_user.to_string())
    );
    assert_refused(&env, &tampered, "tampered payload").await;
    assert_refused(
        &env,
        &forge(r#"{"alg":"none","typ":"JWT"}"#, &claims, None),
        "alg none",
    )
    .await;
    assert_refused(
        &env,
        &forge(r#"{"alg":"RS256","typ":"JWT"}"#, &claims, Some(&secret)),
        "RS256 confusion",
    )
    .await;
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap();
    assert_refused(&env, &hs512, "HS512").await;
    assert_refused(
        &env,
        &forge(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            &claims,
            Some(b"not-the-secret-not-the-secret-00"),
        ),
        "wrong key",
    )
    .await;
    assert_refused(&env, &refresh, "refresh token used as access token").await;
    let mut early = claims.clone();
    early["nbf"] = json!(claims["iat"].as_i64().unwrap() + 3600);
    assert_refused(
        &env,
        &forge(r#"{"alg":"HS256","typ":"JWT"}"#, &early, Some(&secret)),
        "not yet valid",
    )
    .await;
    let mut no_exp = claims.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_refused(
        &env,
        &forge(r#"{"alg":"HS256","typ":"JWT"}"#, &no_exp, Some(&secret)),
        "no exp",
    )
    .await;
    assert_refused(&env, "garbage", "not a token").await;
    let missing = env
        .call("GET", "/api/auth/profile", None, None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    assert_eq!(missing.body["code"], 401);

    env.clock.advance(Duration::from_secs(29 * 60));
    env.call("GET", "/api/auth/profile", Some(&access), None)
        .await
        .expect(StatusCode::OK);
    env.clock.advance(Duration::from_secs(61));
    let expired = env
        .call("GET", "/api/auth/profile", Some(&access), None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    assert_eq!(expired.body["message"], "令牌已过期");
    // The refresh token outlives the access token and yields a fresh one.
    let refreshed = env
        .call("POST", "/api/auth/refresh", Some(&refresh), None)
        .await
        .expect(StatusCode::OK);
    let fresh = refreshed.body["data"]["access_token"].as_str().unwrap();
    env.call("GET", "/api/auth/profile", Some(fresh), None)
        .await
        .expect(StatusCode::OK);
}

async fn refresh_rotation_and_reuse(variant: Variant) {
    let Some(env) = TestEnv::start(variant).await else {
        return;
    };
    let (access, refresh) = env.login("admin", ADMIN_PASSWORD).await;
    let (other_access, other_refresh) = env.login("admin", ADMIN_PASSWORD).await;

    let first = env
        .call("POST", "/api/auth/refresh", Some(&refresh), None)
        .await
        .expect(StatusCode::OK);
    let access2 = first.body["data"]["access_token"].as_str().unwrap().to_string();
    let refresh2 = first.body["data"]["refresh_token"].as_str().unwrap().to_string();
    // The refresh token may also come in the body.
    let second = env
        .call(
            "POST",
            "/api/auth/refresh",
            None,
            Some(json!({ "refresh_token": refresh2 })),
        )
        .await
        .expect(StatusCode::OK);
    let refresh3 = second.body["data"]["refresh_token"].as_str().unwrap().to_string();

    // Replaying an already used refresh token revokes the whole family.
    let reused = env
        .call("POST", "/api/auth/refresh", Some(&refresh), None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    assert!(
        reused.body["message"].as_str().unwrap().contains("已被使用"),
        "{}",
        reused.text
    );
    env.call("POST", "/api/auth/refresh", Some(&refresh3), None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    assert_refused(&env, &access, "access token of a revoked family").await;
    assert_refused(&env, &access2, "rotated access token of a revoked family").await;
    // After a restart (a process with a fresh in-process store over the same database) the
    // revoked family stays revoked.
    let restarted = env.replica().await;
    for token in [&access, &access2] {
        let reply = env
            .call_on(&restarted, "GET", "/api/auth/profile", Some(token))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "after a restart: {}",
            reply.text
        );
    }
    env.call_on(&restarted, "GET", "/api/auth/profile", Some(&other_access))
        .await
        .expect(StatusCode::OK);

    // Another login of the same user is another family and keeps working.
    env.call("GET", "/api/auth/profile", Some(&other_access), None)
        .await
        .expect(StatusCode::OK);
    env.call("POST", "/api/auth/refresh", Some(&other_refresh), None)
        .await
        .expect(StatusCode::OK);

    // Concurrent use of one refresh token: exactly one wins.
    let (_, racing) = env.login("admin", ADMIN_PASSWORD).await;
    let (a, b) = tokio::join!(
        env.call("POST", "/api/auth/refresh", Some(&racing), None),
        env.call("POST", "/api/auth/refresh", Some(&racing), None)
    );
    let wins = [a.status, b.status]
        .iter()
        .filter(|s| **s == StatusCode::OK)
        .count();
    assert_eq!(wins, 1, "{} / {}", a.text, b.text);
}

async fn logout_revokes_every_token_of_the_user(variant: Variant) {
    let Some(env) = TestEnv::start(variant).await else {
        return;
    };
    let (access_a, refresh_a) = env.login("admin", ADMIN_PASSWORD).await;
    let (access_b, refresh_b) = env.login("admin", ADMIN_PASSWORD).await;
    env.call("POST", "/api/auth/logout", Some(&access_a), None)
        .await
        .expect(StatusCode::OK);
    assert_refused(&env, &access_a, "logged-out token").await;
    assert_refused(&env, &access_b, "other session of the logged-out user").await;
    env.call("POST", "/api/auth/refresh", Some(&refresh_a), None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    env.call("POST", "/api/auth/refresh", Some(&refresh_b), None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    let (fresh, _) = env.login("admin", ADMIN_PASSWORD).await;
    env.call("GET", "/api/auth/profile", Some(&fresh), None)
        .await
        .expect(StatusCode::OK);

    // A password change revokes too.
    let admin = fresh;
    let id = env
        .create_user(
            &admin,
            json!({ "user_code": "ops1", "username": "Ops", "password": "opsPass1", "role_id": 2 }),
        )
        .await;
    let (ops, _) = env.login("ops1", "opsPass1").await;
    env.call(
        "PUT",
        &format!("/api/users/{id}"),
        Some(&admin),
        Some(json!({ "password": "opsPass2" })),
    )
    .await
    .expect(StatusCode::OK);
    assert_refused(&env, &ops, "token after a password change").await;
    env.login("ops1", "opsPass2").await;
}

async fn lockout_per_user_and_per_ip(variant: Variant) {
    let Some(env) = TestEnv::start_with(variant, |c| {
        c.auth.max_failed_logins = 3;
        c.auth.lockout_s = 600;
    })
    .await
    else {
        return;
    };
    let admin = env.admin().await;
    env.create_user(
        &admin,
        json!({ "user_code": "alice", "username": "Alice", "password": "alicePw1", "role_id": 3 }),
    )
    .await;
    let attempt = |ip: &'static str, user: &'static str, password: &'static str| {
        let env = &env;
        async move {
            env.call_from(
                ip,
                "POST",
                "/api/auth/login",
                None,
                Some(json!({ "username": user, "password": password })),
            )
            .await
        }
    };

    // Wrong password and unknown user: the same answer.
    let wrong = attempt("198.51.100.1", "alice", "nope")
        .await
        .expect(StatusCode::UNAUTHORIZED);
    let unknown = attempt("198.51.100.2", "nobody", "nope")
        .await
        .expect(StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.body["message"], "用户名或密码错误");

    // Per user: failures from different addresses lock the name, even for the right password.
    attempt("198.51.100.3", "alice", "nope")
        .await
        .expect(StatusCode::UNAUTHORIZED);
    attempt("198.51.100.4", "alice", "nope")
        .await
        .expect(StatusCode::UNAUTHORIZED);
    let locked = attempt("198.51.100.5", "alice", "alicePw1")
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = locked.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&retry_after), "{retry_after}");
    assert_eq!(locked.body["success"], false);
    assert_eq!(locked.body["code"], 429);
    // An unknown name locks the same way.
    for ip in ["198.51.100.6", "198.51.100.7"] {
        attempt(ip, "nobody", "nope")
            .await
            .expect(StatusCode::UNAUTHORIZED);
    }
    let unknown_locked = attempt("198.51.100.8", "nobody", "nope")
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(unknown_locked.body["code"], 429);
    // The platform API alias answers 429 in its own shape.
    let alias = env
        .call_from(
            "198.51.100.9",
            "POST",
            "/auth/login",
            None,
            Some(json!({ "username": "alice", "password": "alicePw1" })),
        )
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(alias.body["status"], "error");
    assert!(alias.headers.contains_key(header::RETRY_AFTER));

    // Per IP: one address guessing across names is locked, for every name.
    for user in ["u1", "u2", "u3"] {
        attempt("203.0.113.50", user, "guess")
            .await
            .expect(StatusCode::UNAUTHORIZED);
    }
    attempt("203.0.113.50", "admin", ADMIN_PASSWORD)
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS);
    attempt("203.0.113.51", "admin", ADMIN_PASSWORD)
        .await
        .expect(StatusCode::OK);

    // A success clears the name's counter: two failures, a success, two failures do not lock.
    for ip in ["198.18.0.1", "198.18.0.2"] {
        attempt(ip, "admin", "nope")
            .await
            .expect(StatusCode::UNAUTHORIZED);
    }
    attempt("198.18.0.3", "admin", ADMIN_PASSWORD)
        .await
        .expect(StatusCode::OK);
    for ip in ["198.18.0.4", "198.18.0.5"] {
        attempt(ip, "admin", "nope")
            .await
            .expect(StatusCode::UNAUTHORIZED);
    }
    attempt("198.18.0.6", "admin", ADMIN_PASSWORD)
        .await
        .expect(StatusCode::OK);

    // The lock ends after lockout_s (the in-process store follows the test clock).
    if !variant.uses_redis() {
        env.clock.advance(Duration::from_secs(601));
        attempt("198.51.100.5", "alice", "alicePw1")
            .await
            .expect(StatusCode::OK);
    }

    // Failed logins are audited, without the password.
    let audit = env
        .call(
            "GET",
            "/api/foundation/audit-logs?action=login_failed&username=alice&page_size=100",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    let items = audit.body["data"]["items"].as_array().unwrap();
    assert!(items.len() >= 3, "{}", audit.text);
    assert!(
        !audit.text.contains("nope") && !audit.text.contains("alicePw1"),
        "{}",
        audit.text
    );
}

async fn organization_scoping(variant: Variant) {
    let Some(env) = TestEnv::start(variant).await else {
        return;
    };
    let admin = env.admin().await;
    env.create_org(&admin, "A", "Org A", "0").await;
    let a1 = env.create_org(&admin, "A1", "Org A1", "A").await;
    let b = env.create_org(&admin, "B", "Org B", "0").await;
    // A level-2 manager role with user and organization rights.
    let role = env
        .call(
            "POST",
            "/api/roles",
            Some(&admin),
            Some(json!({ "role_code": "MANAGER", "role_name": "Manager", "role_level": 2 })),
        )
        .await
        .expect(StatusCode::CREATED);
    let role_id = role.body["data"]["id"].as_i64().unwrap();
    let permissions = env
        .call("GET", "/api/permissions", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    let ids: Vec<i64> = permissions.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            // log:read too: a manager only assigns roles granting nothing it lacks (developer).
            ["user:read", "user:write", "org:read", "org:write", "log:read"]
                .contains(&p["permission_code"].as_str().unwrap())
        })
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    env.call(
        "POST",
        &format!("/api/roles/{role_id}/permissions"),
        Some(&admin),
        Some(json!({ "permission_ids": ids })),
    )
    .await
    .expect(StatusCode::OK);
    env.create_user(&admin, json!({ "user_code": "mgr", "username": "Manager A", "password": "mgrPass1", "org_code": "A", "role_id": role_id }))
        .await;
    let in_a1 = env
        .create_user(&admin, json!({ "user_code": "a1dev", "username": "Dev A1", "password": "devPass1", "org_code": "A1", "role_id": 3 }))
        .await;
    let in_b = env
        .create_user(&admin, json!({ "user_code": "bdev", "username": "Dev B", "password": "devPass1", "org_code": "B", "role_id": 3 }))
        .await;
    let (mgr, _) = env.login("mgr", "mgrPass1").await;

    let users = env
        .call("GET", "/api/users?page_size=100", Some(&mgr), None)
        .await
        .expect(StatusCode::OK);
    let mut codes: Vec<&str> = users.body["data"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_code"].as_str().unwrap())
        .collect();
    codes.sort_unstable();
    assert_eq!(
        codes,
        ["a1dev", "mgr"],
        "own organization and its descendants only"
    );
    env.call("GET", &format!("/api/users/{in_a1}"), Some(&mgr), None)
        .await
        .expect(StatusCode::OK);
    env.call("GET", &format!("/api/users/{in_b}"), Some(&mgr), None)
        .await
        .expect(StatusCode::NOT_FOUND);
    env.call(
        "PUT",
        &format!("/api/users/{in_b}"),
        Some(&mgr),
        Some(json!({ "phone": "1" })),
    )
    .await
    .expect(StatusCode::NOT_FOUND);
    env.call("DELETE", &format!("/api/users/{in_b}"), Some(&mgr), None)
        .await
        .expect(StatusCode::NOT_FOUND);
    let stats = env
        .call("GET", "/api/users/stats", Some(&mgr), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(stats.body["data"]["total"], 2);

    // Creating users: only inside the subtree, never a more privileged role.
    let outside = env
        .call("POST", "/api/users", Some(&mgr), Some(json!({ "user_code": "x1", "username": "X", "password": "xPass123", "org_code": "B", "role_id": 3 })))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(outside.body["errors"][0]["field"], "org_code");
    let escalate = env
        .call("POST", "/api/users", Some(&mgr), Some(json!({ "user_code": "x2", "username": "X", "password": "xPass123", "org_code": "A1", "role_id": 1 })))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(escalate.body["errors"][0]["field"], "role_id");
    env.call("POST", "/api/users", Some(&mgr), Some(json!({ "user_code": "x3", "username": "X", "password": "xPass123", "org_code": "A1", "role_id": 3 })))
        .await
        .expect(StatusCode::CREATED);
    let promote = env
        .call(
            "PUT",
            &format!("/api/users/{in_a1}"),
            Some(&mgr),
            Some(json!({ "role_id": 1 })),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(promote.body["errors"][0]["field"], "role_id");

    // Organizations: the tree starts at the manager's organization.
    let tree = env
        .call("GET", "/api/organizations", Some(&mgr), None)
        .await
        .expect(StatusCode::OK);
    let roots = tree.body["data"].as_array().unwrap();
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0]["org_code"], "A");
    assert_eq!(roots[0]["children"][0]["org_code"], "A1");
    env.call("GET", &format!("/api/organizations/{a1}"), Some(&mgr), None)
        .await
        .expect(StatusCode::OK);
    env.call("GET", &format!("/api/organizations/{b}"), Some(&mgr), None)
        .await
        .expect(StatusCode::NOT_FOUND);
    env.call(
        "POST",
        "/api/organizations",
        Some(&mgr),
        Some(json!({ "org_code": "A2", "org_name": "Org A2", "parent_code": "A" })),
    )
    .await
    .expect(StatusCode::CREATED);
    let root = env
        .call(
            "POST",
            "/api/organizations",
            Some(&mgr),
            Some(json!({ "org_code": "C", "org_name": "Org C", "parent_code": "0" })),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(root.body["errors"][0]["field"], "parent_code");
    // The admin sees everything.
    let tree = env
        .call("GET", "/api/organizations", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(tree.body["data"].as_array().unwrap().len(), 2);
    // An organization with enabled children cannot be deleted; a leaf can (status 0).
    let a = tree.body["data"][0]["id"].as_i64().unwrap();
    env.call("DELETE", &format!("/api/organizations/{a}"), Some(&admin), None)
        .await
        .expect(StatusCode::CONFLICT);
    let a2 = env
        .call(
            "GET",
            "/api/organizations?type=list&parent_code=A",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    let a2 = a2.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["org_code"] == "A2")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    env.call("DELETE", &format!("/api/organizations/{a2}"), Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    let deleted = env
        .call("GET", &format!("/api/organizations/{a2}"), Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(deleted.body["data"]["status"], 0);
}

async fn validation_errors_name_fields(variant: Variant) {
    let Some(env) = TestEnv::start(variant).await else {
        return;
    };
    let admin = env.admin().await;
    let reply = env
        .call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({ "user_code": "bad code", "username": "", "password": "short", "role_id": 99, "regions": ["CN", "??"], "email": "nope" })),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["success"], false);
    assert_eq!(reply.body["code"], 400);
    let fields: Vec<&str> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for field in [
        "user_code",
        "username",
        "password",
        "role_id",
        "email",
        "regions[1]",
    ] {
        assert!(fields.contains(&field), "{field} missing from {fields:?}");
    }
    let policy = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["field"] == "password")
        .unwrap();
    assert!(
        policy["message"]
            .as_str()
            .unwrap()
            .contains("至少包含一个字母和一个数字"),
        "{policy}"
    );

    let wrong_type = env
        .call(
            "POST",
            "/api/roles",
            Some(&admin),
            Some(json!({ "role_code": "X", "role_name": "X", "role_level": "two" })),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(wrong_type.body["errors"][0]["field"], "role_level");
    let query = env
        .call("GET", "/api/users?page_size=500", Some(&admin), None)
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(query.body["errors"][0]["field"], "page_size");
    let path = env
        .call("GET", "/api/users/abc", Some(&admin), None)
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(path.body["errors"][0]["field"], "id");
    // The platform API family: 422 and its own shape.
    let toggle = env
        .call("POST", "/api/users/abc/toggle-status", Some(&admin), None)
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(toggle.body["status"], "error");
    assert_eq!(toggle.body["error"], "ValidationError");
    assert_eq!(toggle.body["details"]["errors"][0]["field"], "id");
    // Duplicates are conflicts on the field.
    let duplicate = env
        .call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({ "user_code": "admin", "username": "A", "password": "abcdef12", "role_id": 1 })),
        )
        .await
        .expect(StatusCode::CONFLICT);
    assert_eq!(duplicate.body["errors"][0]["field"], "user_code");
    // Unknown paths answer in the family the path belongs to (`/api/v1/logs/{id}` is a route,
    // so the unknown path goes one level deeper).
    let unknown = env
        .call("GET", "/api/v1/logs/nothing/here", Some(&admin), None)
        .await
        .expect(StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["success"], false);
    assert_eq!(unknown.body["error"]["code"], "NOT_FOUND");
    assert_eq!(unknown.body["path"], "/api/v1/logs/nothing/here");
    // Oversized bodies are refused before they are read whole.
    let big = "x".repeat(2 * 1024 * 1024);
    let too_big = env
        .call(
            "POST",
            "/api/roles",
            Some(&admin),
            Some(json!({ "role_code": big })),
        )
        .await;
    assert_eq!(
        too_big.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        &too_big.text[..too_big.text.len().min(200)]
    );
}

#[tokio::test]
async fn a_user_manager_acts_only_below_itself_within_its_regions_and_grants_only_what_it_holds() {
    let Some(env) = TestEnv::start(Variant::Sqlite).await else {
        return;
    };
    let admin = env.admin().await;
    let manager_role = env
        .create_role(&admin, "USERMGR", 2, &["user:read", "user:write", "log:read"])
        .await;
    let auditor_role = env.create_role(&admin, "AUDITOR3", 3, &["audit:read"]).await;
    let reader_role = env.create_role(&admin, "READER3", 3, &["log:read"]).await;
    env.create_org(&admin, "0501", "广东省电力公司", "0").await;
    let user = |code: &str, role: i64, regions: &[&str]| json!({"user_code": code, "username": code, "password": "Passw0rd", "role_id": role, "regions": regions, "org_code": "0501"});
    env.create_user(&admin, user("mgr", manager_role, &["CN"])).await;
    let peer = env.create_user(&admin, user("peer", manager_role, &["CN"])).await;
    let ops = env.create_user(&admin, user("opsuser", 2, &["CN"])).await;
    let outside = env.create_user(&admin, user("usdev", reader_role, &["US"])).await;
    let everywhere = env.create_user(&admin, user("alldev", reader_role, &[])).await;
    let inside = env.create_user(&admin, user("cndev", reader_role, &["CN"])).await;
    let (mgr, _) = env.login("mgr", "Passw0rd").await;
    let reset = |id: i64| {
        let mgr = mgr.clone();
        let env = &env;
        async move {
            env.call(
                "PUT",
                &format!("/api/users/{id}"),
                Some(&mgr),
                Some(json!({"password": "Takeover1"})),
            )
            .await
        }
    };
    // Peers and users at the manager's level, users outside its regions or seeing all regions.
    for (id, who) in [
        (peer, "peer"),
        (ops, "ops"),
        (outside, "US user"),
        (everywhere, "unscoped user"),
    ] {
        let reply = reset(id).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{who}: {}", reply.text);
    }
    env.login("peer", "Passw0rd").await;
    // A user strictly below, inside its regions.
    reset(inside).await.expect(StatusCode::OK);
    env.login("cndev", "Takeover1").await;
    // Granting: not its own level, not a permission it lacks.
    for (role, why) in [(manager_role, "same level"), (auditor_role, "audit:read")] {
        let reply = env
            .call(
                "POST",
                "/api/users",
                Some(&mgr),
                Some(user(&format!("new{role}"), role, &["CN"])),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{why}: {}", reply.text);
    }
    env.call(
        "POST",
        "/api/users",
        Some(&mgr),
        Some(user("newreader", reader_role, &["CN"])),
    )
    .await
    .expect(StatusCode::CREATED);
    // Nor raise a user below it to a role it may not grant.
    let reply = env
        .call(
            "PUT",
            &format!("/api/users/{inside}"),
            Some(&mgr),
            Some(json!({"role_id": auditor_role})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
}

/// A create sent again as it was (a retry after a lost answer, a setup script run twice) answers
/// the resource as stored, 200; the same code with any field or the password different is 409.
#[tokio::test]
async fn a_repeated_create_answers_the_resource_and_a_different_one_conflicts() {
    let Some(env) = TestEnv::start(Variant::Sqlite).await else {
        return;
    };
    let admin = env.admin().await;
    let org = json!({ "org_code": "0501", "org_name": "广东省电力公司", "parent_code": "0" });
    let first = env
        .call("POST", "/api/organizations", Some(&admin), Some(org.clone()))
        .await
        .expect(StatusCode::CREATED);
    let again = env
        .call("POST", "/api/organizations", Some(&admin), Some(org))
        .await
        .expect(StatusCode::OK);
    assert_eq!(again.body["success"], true);
    assert_eq!(again.body["data"]["id"], first.body["data"]["id"]);
    env.call(
        "POST",
        "/api/organizations",
        Some(&admin),
        Some(json!({ "org_code": "0501", "org_name": "另一个名字", "parent_code": "0" })),
    )
    .await
    .expect(StatusCode::CONFLICT);

    let user = json!({ "user_code": "test001", "username": "测试用户", "password": "test1234", "org_code": "0501", "role_id": 3, "phone": "13800138001" });
    let first = env
        .call("POST", "/api/users", Some(&admin), Some(user.clone()))
        .await
        .expect(StatusCode::CREATED);
    let again = env
        .call("POST", "/api/users", Some(&admin), Some(user.clone()))
        .await
        .expect(StatusCode::OK);
    assert_eq!(again.body["data"]["id"], first.body["data"]["id"]);
    assert!(
        again.body["data"].get("password_hash").is_none(),
        "{}",
        again.text
    );
    let mut other_password = user.clone();
    other_password["password"] = json!("test5678");
    env.call("POST", "/api/users", Some(&admin), Some(other_password))
        .await
        .expect(StatusCode::CONFLICT);
    let mut other_phone = user;
    other_phone["phone"] = json!("13800138002");
    env.call("POST", "/api/users", Some(&admin), Some(other_phone))
        .await
        .expect(StatusCode::CONFLICT);
}
