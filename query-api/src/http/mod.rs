//! The HTTP edge: one file per resource, each with `pub fn router() -> Router<AppState>` built from
//! a [`Routes`] table.
//!
//! # Every route declares its access
//!
//! Routes are added only through [`Routes::route`], which takes the method, the path, the
//! [`Access`] the route requires and the handler, and wraps the handler in the route guard. The
//! guard publishes the route's [`Family`] for error rendering, refuses a request without the
//! required access (401 without a valid token, 403 `LOG_PERMISSION_DENIED` or the family's
//! equivalent without the permission or role level) before the handler runs, and tags the response
//! for the audit middleware. [`routes`] lists every route with its access; a test sends every route a
//! request from every built-in role and from a role without permissions and checks the answer
//! against the declaration.
//!
//! # Layers, outermost first
//!
//! 1. `owl_http::TraceLayer`: `X-Trace-Id`, `X-Request-Id`, `X-Response-Time`, and the `request`
//!    span every line logged for the request carries (authentication adds the `user`).
//! 2. Audit ([`middleware::audit`]): buffers the body of mutating requests (bounded by
//!    `query_api.max_body_bytes`), and after the handler records the request if its route is audited.
//! 3. Authentication ([`middleware::authenticate`]): checks a bearer token if one is presented and
//!    leaves the result in the request extensions.
//! 4. Routing, then the route guard, then the handler.
//!
//! Log endpoints (the log API, issue 6) get the user's region and environment scope from
//! [`AuthUser::scope`](crate::auth::Principal::scope) and must pass every query through it.

pub mod alerts;
pub mod analytics;
pub mod analytics_monitoring;
pub mod audit_logs;
pub mod auth;
pub mod crm_logs;
pub mod extract;
pub mod health;
pub mod jobs;
pub mod logs;
pub(crate) mod middleware;
pub mod openapi;
pub mod organizations;
pub mod roles;
pub mod statistics;
pub mod users;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, RawPathParams, Request};
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};

use crate::envelope::{Failure, Family, RequestContext};
use crate::permissions::Access;
use crate::state::AppState;
pub use extract::{AuthUser, ClientIp, Json, Path, Query};
pub use middleware::MAX_UNAUTHENTICATED_AUDITS_PER_MINUTE;

/// When a route is written to the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditPolicy {
    /// When the method changes something (POST, PUT, PATCH, DELETE).
    Mutations,
    /// Always (exports, which read but must be recorded).
    Always,
}

/// One route as declared.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// Method.
    pub method: Method,
    /// Path template (`/api/users/{id}`).
    pub path: &'static str,
    /// What it requires.
    pub access: Access,
    /// The envelope family of its answers.
    pub family: Family,
    /// Resource type in the audit log (`user`).
    pub resource: &'static str,
    /// Audit action (`login`, `export`); `None` derives it from the method.
    pub action: Option<&'static str>,
    /// When it is audited.
    pub audit: AuditPolicy,
}

impl RouteSpec {
    /// The audit action of this route.
    pub fn action(&self) -> &'static str {
        if let Some(action) = self.action {
            return action;
        }
        match self.method {
            Method::POST => "create",
            Method::PUT | Method::PATCH => "update",
            Method::DELETE => "delete",
            _ => "read",
        }
    }
}

/// The route a response came from, for the audit middleware.
#[derive(Debug, Clone)]
pub(crate) struct MatchedRoute {
    pub(crate) spec: Arc<RouteSpec>,
    /// The `{id}`-like path parameter, if any.
    pub(crate) resource_id: Option<String>,
}

/// Details a handler adds to its audit entry (a created resource's id, the user of a login).
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    /// The resource id, when the path has none (creation).
    pub resource_id: Option<String>,
    /// The acting user's id, when not signed in (login).
    pub user_id: Option<i64>,
    /// The acting user's login name, when not signed in (login: the name tried).
    pub user_code: Option<String>,
}

impl AuditNote {
    /// Attaches the note to a response.
    pub fn attach(self, response: impl IntoResponse) -> Response {
        let mut response = response.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// The answer of every creation: its `201` body (in the route's family) with the new resource's
/// id on the audit entry.
pub(crate) fn created(id: impl ToString, body: impl IntoResponse) -> Response {
    AuditNote {
        resource_id: Some(id.to_string()),
        ..AuditNote::default()
    }
    .attach(body)
}

/// [`created`] in the admin API's envelope: `{success: true, message, data}`.
pub(crate) fn created_success(id: i64, message: &str, resource: serde_json::Value) -> Response {
    created(
        id,
        crate::envelope::Success::with_message(message, resource).created(),
    )
}

/// A table of routes: an axum router plus the declaration of every route in it.
pub struct Routes {
    router: Router<AppState>,
    specs: Vec<Arc<RouteSpec>>,
    docs: Vec<openapi::RouteDoc>,
    family: Family,
    resource: &'static str,
}

impl Routes {
    /// An empty table whose routes answer in `family` and audit as `resource`.
    pub fn new(family: Family, resource: &'static str) -> Routes {
        Routes {
            router: Router::new(),
            specs: Vec::new(),
            docs: Vec::new(),
            family,
            resource,
        }
    }

    /// Switches the family of the routes added next.
    pub fn family(mut self, family: Family) -> Routes {
        self.family = family;
        self
    }

    /// Switches the audit resource type of the routes added next.
    pub fn resource(mut self, resource: &'static str) -> Routes {
        self.resource = resource;
        self
    }

    /// Adds a route, audited when it mutates.
    pub fn route<H, T>(self, method: Method, path: &'static str, access: Access, handler: H) -> Routes
    where
        H: Handler<T, AppState>,
        T: openapi::Describe + 'static,
    {
        self.add(method, path, access, None, AuditPolicy::Mutations, handler)
    }

    /// Adds a route with a named audit action and policy.
    pub fn audited<H, T>(
        self,
        method: Method,
        path: &'static str,
        access: Access,
        action: &'static str,
        audit: AuditPolicy,
        handler: H,
    ) -> Routes
    where
        H: Handler<T, AppState>,
        T: openapi::Describe + 'static,
    {
        self.add(method, path, access, Some(action), audit, handler)
    }

    fn add<H, T>(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        action: Option<&'static str>,
        audit: AuditPolicy,
        handler: H,
    ) -> Routes
    where
        H: Handler<T, AppState>,
        T: openapi::Describe + 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("routes use standard methods");
        let spec = Arc::new(RouteSpec {
            method,
            path,
            access,
            family: self.family,
            resource: self.resource,
            action,
            audit,
        });
        let guard_spec = spec.clone();
        let method_router = on(filter, handler).route_layer(from_fn(move |request: Request, next: Next| {
            let spec = guard_spec.clone();
            async move { guard(spec, request, next).await }
        }));
        self.router = self.router.route(path, method_router);
        self.specs.push(spec);
        let mut input = openapi::Input::default();
        T::describe(&mut input);
        self.docs.push(openapi::RouteDoc {
            input,
            doc: openapi::Doc::default(),
        });
        self
    }

    /// Documents what the route added last reads by hand (its query string, its body) and
    /// answers beyond JSON.
    pub fn doc(mut self, doc: openapi::Doc) -> Routes {
        let last = self.docs.last_mut().expect("doc follows a route");
        last.doc = doc;
        self
    }

    /// Adds every route of another table.
    pub fn merge(mut self, other: Routes) -> Routes {
        self.router = self.router.merge(other.router);
        self.specs.extend(other.specs);
        self.docs.extend(other.docs);
        self
    }

    /// The declarations.
    pub fn specs(&self) -> impl Iterator<Item = &RouteSpec> {
        self.specs.iter().map(|s| s.as_ref())
    }

    /// The declarations with their documentation.
    pub fn documented(&self) -> impl Iterator<Item = (&RouteSpec, &openapi::RouteDoc)> {
        self.specs.iter().map(|s| s.as_ref()).zip(&self.docs)
    }

    /// The router.
    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}

/// Checks the route's access against the authentication result.
fn check_access(access: Access, extensions: &axum::http::Extensions) -> Result<(), Failure> {
    let principal = match access {
        Access::Public => return Ok(()),
        Access::Authenticated | Access::Require { .. } => extract::Authn::principal(extensions.get())?,
    };
    if let Access::Require {
        permission,
        max_level,
        all_regions,
    } = access
    {
        let level_ok = max_level.is_none_or(|max| principal.role_level <= max);
        if !principal.has(permission) || !level_ok {
            tracing::debug!(user = %principal.user_code, %access, "permission denied");
            return Err(Failure::permission_denied());
        }
        if all_regions && !(principal.regions.is_empty() && principal.environments.is_empty()) {
            tracing::debug!(user = %principal.user_code, %access, "scoped user refused an all-region action");
            return Err(
                Failure::forbidden("此操作影响所有区域与环境，需要不限区域和环境的账号")
                    .with_code(crate::envelope::PERMISSION_DENIED_CODE),
            );
        }
    }
    Ok(())
}

/// The route guard: family context, access check, audit tag.
async fn guard(spec: Arc<RouteSpec>, request: Request, next: Next) -> Response {
    let context = RequestContext {
        family: spec.family,
        method: request.method().clone(),
        path: request.uri().path().to_string(),
    };
    context
        .scope(async move {
            let (mut parts, body) = request.into_parts();
            let resource_id = match RawPathParams::from_request_parts(&mut parts, &()).await {
                Ok(params) => {
                    let params: Vec<(&str, &str)> = params.iter().collect();
                    params
                        .iter()
                        .find(|(k, _)| *k == "id")
                        .or(params.last())
                        .map(|(_, v)| v.to_string())
                }
                Err(_) => None,
            };
            let mut response = match check_access(spec.access, &parts.extensions) {
                Ok(()) => next.run(Request::from_parts(parts, body)).await,
                Err(failure) => failure.render(spec.family),
            };
            response
                .extensions_mut()
                .insert(MatchedRoute { spec, resource_id });
            response
        })
        .await
}

/// Every route of the query API core.
pub fn routes() -> Routes {
    Routes::new(Family::Platform, "health")
        .merge(health::routes())
        .merge(auth::routes())
        .merge(users::routes())
        .merge(organizations::routes())
        .merge(roles::routes())
        .merge(audit_logs::routes())
        .merge(analytics::routes())
        .merge(analytics_monitoring::routes())
        .merge(logs::routes())
        .merge(crm_logs::routes())
        .merge(alerts::routes())
        .merge(jobs::routes())
        .merge(statistics::routes())
}

/// Answers paths no route knows, in the family the path belongs to.
async fn not_found(request: Request) -> Response {
    let path = request.uri().path().to_string();
    let family = Family::for_path(&path);
    let message = format!("接口不存在：{} {}", request.method(), path);
    let context = RequestContext {
        family,
        method: request.method().clone(),
        path,
    };
    context
        .scope(async move { Failure::not_found(message).render(family) })
        .await
}

/// The full application over `state`: the routes of `table`, the authentication and audit
/// middleware, body limits and the trace layer.
pub fn application(state: AppState, table: Routes) -> Router {
    let max_body = state.config.query_api.max_body_bytes;
    let region = state.config.query_api.region.clone();
    let api = openapi::document(&table, state.more_api_paths.as_ref());
    table
        .into_router()
        .merge(openapi::docs_router(api))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(from_fn_with_state(state.clone(), middleware::authenticate))
        .layer(from_fn_with_state(state.clone(), middleware::audit))
        .layer(from_fn_with_state(
            alerts::Blocklist::new(&state),
            alerts::refuse_blocked,
        ))
        .layer(from_fn_with_state(
            std::sync::Arc::new(state.config.query_api.trusted_proxies.clone()),
            extract::resolve_client,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(owl_http::trace_layer(&region))
        .with_state(state)
}
