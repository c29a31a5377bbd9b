//! `/openapi.json` and `/docs`: the document names every route the router serves, with its
//! permission and envelope, and the parameters a route reads by hand are the ones it takes.

mod common;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use common::{TestEnv, Variant};
use owl_query_api::http::routes;
use serde_json::Value;

async fn env() -> TestEnv {
    TestEnv::start(Variant::Sqlite)
        .await
        .expect("the embedded variant needs no services")
}

/// `GET /openapi.json`, without a token.
async fn document(env: &TestEnv) -> Value {
    env.call("GET", "/openapi.json", None, None)
        .await
        .expect(StatusCode::OK)
        .body
}

#[tokio::test]
async fn the_document_names_every_route_with_its_permission_and_envelope() {
    let doc = document(&env().await).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );

    let table = routes();
    let mut documented = 0;
    for spec in table.specs() {
        let method = spec.method.as_str().to_ascii_lowercase();
        let op = &doc["paths"][spec.path][&method];
        assert!(op.is_object(), "{} {} is not documented", spec.method, spec.path);
        assert_eq!(
            op["x-owl-permission"],
            spec.access.to_string(),
            "{} {}",
            spec.method,
            spec.path
        );
        assert_eq!(
            op["x-owl-envelope"],
            format!("{:?}", spec.family),
            "{} {}",
            spec.method,
            spec.path
        );
        let public = spec.access == owl_query_api::Access::Public;
        assert_eq!(
            op["security"].is_array(),
            !public,
            "{} {}",
            spec.method,
            spec.path
        );
        for status in ["2XX", "401", "403", "5XX"] {
            assert!(
                op["responses"][status].is_object(),
                "{} {} lacks {status}",
                spec.method,
                spec.path
            );
        }
        // Every `{name}` of the template is a required path parameter.
        for name in spec
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        {
            let found = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true);
            assert!(found, "{} {} lacks path parameter {name}", spec.method, spec.path);
        }
        documented += 1;
    }
    assert!(documented >= 85, "only {documented} routes");

    // Typed inputs are documented from their types: the job body names its fields, the users
    // list its query parameters.
    let create_job =
        &doc["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let name = create_job["$ref"]
        .as_str()
        .expect("a named schema")
        .rsplit('/')
        .next()
        .unwrap();
    let schema = &doc["components"]["schemas"][name];
    for field in ["name", "task_type", "schedule", "description", "params"] {
        assert!(
            schema["properties"][field].is_object(),
            "job body lacks {field}: {schema}"
        );
    }
    let users: BTreeSet<&str> = doc["paths"]["/api/users"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(users.contains("page") && users.contains("keyword"), "{users:?}");
    // Each family's envelopes are components.
    for family in ["LogsV1", "AuthAdmin", "Platform", "AnalyticsMonitoring"] {
        for part in ["Success", "Error"] {
            assert!(doc["components"]["schemas"][format!("{family}{part}")].is_object());
        }
    }
}

/// The names an "unknown parameter" error lists as accepted.
fn accepted(body: &Value) -> Option<BTreeSet<String>> {
    let errors = body["error"]["errors"]
        .as_array()
        .or(body["data"]["errors"].as_array())?;
    let unknown = errors.iter().find(|e| e["field"] == "owlProbe")?;
    let message = unknown["message"].as_str()?;
    let list = message.split("可用参数：").nth(1)?;
    Some(list.split(", ").map(str::to_string).collect())
}

#[tokio::test]
async fn hand_read_parameters_are_exactly_the_ones_each_route_takes() {
    let env = env().await;
    let admin = env.admin().await;
    let table = routes();
    let mut checked = 0;
    for (spec, doc) in table.documented() {
        if doc.doc.params.is_empty() {
            continue;
        }
        let path = spec.path.replace("{id}", "1");
        let reply = env
            .call(
                spec.method.as_str(),
                &format!("{path}?owlProbe=1"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{} {}: {}",
            spec.method,
            spec.path,
            reply.text
        );
        let taken =
            accepted(&reply.body).unwrap_or_else(|| panic!("{} {}: {}", spec.method, spec.path, reply.text));
        let declared: BTreeSet<String> = doc.doc.params.iter().map(|s| s.to_string()).collect();
        assert_eq!(declared, taken, "{} {}", spec.method, spec.path);
        for name in &doc.doc.params {
            assert!(
                owl_query_api::http::openapi::query_param(name).is_some(),
                "{name} has no entry in QUERY_PARAMS"
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} routes read parameters by hand");
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary() {
    let env = env().await;
    let page = env.call("GET", "/docs/", None, None).await.expect(StatusCode::OK);
    let content_type = page.headers["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.text.contains("swagger-ui"), "{}", page.text);
    let init = env
        .call("GET", "/docs/swagger-initializer.js", None, None)
        .await
        .expect(StatusCode::OK);
    assert!(init.text.contains("/openapi.json"), "{}", init.text);
    let bundle = env
        .call("GET", "/docs/swagger-ui-bundle.js", None, None)
        .await
        .expect(StatusCode::OK);
    assert!(
        bundle.text.len() > 100_000,
        "the bundle is {} bytes",
        bundle.text.len()
    );
}

/// Every example taken from the seeds lands on its operation: a route that moved, a parameter
/// renamed or a body no longer read fails here rather than losing its example quietly.
#[tokio::test]
async fn the_seeds_examples_are_on_their_operations() {
    let doc = document(&env().await).await;
    let examples: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/http/openapi_examples.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert!(examples.len() >= 40, "{}", examples.len());
    for example in &examples {
        let (method, path) = (
            example["method"].as_str().unwrap().to_ascii_lowercase(),
            example["path"].as_str().unwrap(),
        );
        let what = format!("{method} {path}");
        let op = &doc["paths"][path][&method];
        assert!(op.is_object(), "{what} is not documented");
        if let Some(query) = example["query"].as_str() {
            for (name, value) in form_urlencoded::parse(query.as_bytes()) {
                let parameter = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| p["name"] == name.as_ref())
                    .unwrap_or_else(|| panic!("{what}: the seed's `{name}` is not a parameter"));
                assert_eq!(parameter["example"], value.as_ref(), "{what}");
            }
        }
        if !example["request"].is_null() {
            assert_eq!(
                op["requestBody"]["content"]["application/json"]["examples"]["seed"]["value"],
                example["request"],
                "{what}"
            );
        }
        if !example["response"].is_null() {
            assert_eq!(
                op["responses"]["2XX"]["content"]["application/json"]["examples"]["seed"]["value"],
                example["response"],
                "{what}"
            );
        }
    }
}
