//! The OpenAPI 3.1 document of the query API, built from the route tables so that it cannot
//! drift from what is served.
//!
//! - **Paths, methods, permissions, envelopes** come from the [`RouteSpec`] of every route: the
//!   same declaration the router and the route guard are built from.
//! - **Inputs** come from the handler's extractor types ([`Describe`]): a [`Json<T>`] body is
//!   documented by `T`'s schema, a [`Query<T>`] by `T`'s parameters, a [`Path<T>`] by `T`'s
//!   types. `Routes::route` does not compile for a handler whose extractors cannot describe
//!   themselves.
//! - Handlers that read their query string or body by hand (the log endpoints: [`RawQuery`],
//!   `Bytes`) declare it with [`Doc`]; a test sends each such route a parameter it does not take
//!   and compares the names its error lists with the documented ones.
//! - **Answers** are each family's envelope, success and error, with the status codes the family
//!   uses (`Failure::status`) and the error codes of its vocabulary.

use std::collections::BTreeMap;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method};
use bytes::Bytes;
use serde_json::{Value, json};
use utoipa::openapi::path::{HttpMethod, Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, PathItem, Paths, RefOr, Required,
    ResponseBuilder, Tag,
};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::extract::{AuthUser, ClientIp, Json, Path, Query, ShutdownSignal};
use super::{RouteSpec, Routes};
use crate::envelope::{Failure, FailureKind, Family};
use crate::logs::params::RawQuery;
use crate::permissions::Access;
use crate::state::AppState;

/// What a route takes: query and path parameters and its body.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// Query parameters.
    pub query: Vec<Parameter>,
    /// The schemas of the path parameters, in template order.
    pub path: Vec<RefOr<Schema>>,
    /// The body: its media types and schema.
    pub body: Option<Body>,
    /// Named schemas the others refer to.
    pub schemas: Vec<(String, RefOr<Schema>)>,
}

/// A request body.
#[derive(Debug, Clone)]
pub struct Body {
    /// Its schema.
    pub schema: RefOr<Schema>,
    /// Whether it may be left out.
    pub optional: bool,
}

/// An extractor's part of a route's [`Input`].
pub trait Describe {
    /// Adds what this extractor reads to `input`.
    fn describe(input: &mut Input);
}

/// Extractors that read nothing the client chooses per route (state, credentials, peer).
macro_rules! describes_nothing {
    ($($ty:ty),* $(,)?) => {
        $(impl Describe for $ty {
            fn describe(_: &mut Input) {}
        })*
    };
}

describes_nothing!(
    State<AppState>,
    AuthUser,
    Option<AuthUser>,
    ClientIp,
    ShutdownSignal,
    HeaderMap,
    ConnectInfo<std::net::SocketAddr>,
);

/// Read by hand: the route declares its parameters with [`Doc::params`].
impl Describe for RawQuery {
    fn describe(_: &mut Input) {}
}

/// Read by hand: the route declares its body with [`Doc::body`].
impl Describe for Bytes {
    fn describe(_: &mut Input) {}
}

impl<T: ToSchema> Describe for Json<T> {
    fn describe(input: &mut Input) {
        input.body = Some(Body {
            schema: schema_of::<T>(&mut input.schemas),
            optional: false,
        });
    }
}

impl<T: IntoParams> Describe for Query<T> {
    fn describe(input: &mut Input) {
        input.query.extend(T::into_params(|| Some(ParameterIn::Query)));
    }
}

/// The types of a route's path parameters.
pub trait PathTypes {
    /// One schema per parameter, in order.
    fn schemas() -> Vec<RefOr<Schema>>;
}

macro_rules! path_scalar {
    ($($ty:ty),*) => {
        $(impl PathTypes for $ty {
            fn schemas() -> Vec<RefOr<Schema>> {
                vec![<$ty as PartialSchema>::schema()]
            }
        })*
    };
}

path_scalar!(String, i64);

impl PathTypes for uuid::Uuid {
    fn schemas() -> Vec<RefOr<Schema>> {
        let uuid = ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::Custom("uuid".into())));
        vec![RefOr::T(uuid.into())]
    }
}

impl<A: PartialSchema, B: PartialSchema> PathTypes for (A, B) {
    fn schemas() -> Vec<RefOr<Schema>> {
        vec![A::schema(), B::schema()]
    }
}

impl<T: PathTypes> Describe for Path<T> {
    fn describe(input: &mut Input) {
        input.path = T::schemas();
    }
}

/// A handler's arguments, as axum's `Handler` impls see them: a marker, then the extractors.
macro_rules! describe_args {
    ($($arg:ident),*) => {
        impl<M, $($arg: Describe),*> Describe for (M, $($arg,)*) {
            fn describe(_input: &mut Input) {
                $($arg::describe(_input);)*
            }
        }
    };
}

describe_args!();
describe_args!(A1);
describe_args!(A1, A2);
describe_args!(A1, A2, A3);
describe_args!(A1, A2, A3, A4);
describe_args!(A1, A2, A3, A4, A5);
describe_args!(A1, A2, A3, A4, A5, A6);
describe_args!(A1, A2, A3, A4, A5, A6, A7);
describe_args!(A1, A2, A3, A4, A5, A6, A7, A8);

/// `T`'s schema, its named parts added to `schemas`; a named type is referenced.
fn schema_of<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) -> RefOr<Schema> {
    T::schemas(schemas);
    let name = T::name();
    let schema = T::schema();
    if name.is_empty() || matches!(schema, RefOr::Ref(_)) || name == "Value" {
        return schema;
    }
    schemas.push((name.to_string(), schema));
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name(name))
}

/// What a route declares beside its extractors.
#[derive(Debug, Clone, Default)]
pub struct Doc {
    /// Query parameters read by hand, by name from [`QUERY_PARAMS`].
    pub params: Vec<&'static str>,
    /// Query parameters read by hand into a typed shape.
    pub query: Vec<Parameter>,
    /// A body read by hand.
    pub body: Option<Body>,
    /// Named schemas the body refers to.
    pub schemas: Vec<(String, RefOr<Schema>)>,
    /// Media types of the success answer beyond JSON (an export's `text/csv`).
    pub produces: Vec<&'static str>,
    /// An answer whose body is the success envelope under a non-2xx status (health's 503).
    pub success_also: Option<u16>,
}

impl Doc {
    /// Query parameters, by name (see [`QUERY_PARAMS`]).
    pub fn params(names: &[&'static str]) -> Doc {
        Doc {
            params: names.to_vec(),
            ..Doc::default()
        }
    }

    /// Query parameters of `T`'s shape.
    pub fn query<T: IntoParams>() -> Doc {
        Doc {
            query: T::into_params(|| Some(ParameterIn::Query)),
            ..Doc::default()
        }
    }

    /// A body of `T`'s shape.
    pub fn body<T: ToSchema>(mut self, optional: bool) -> Doc {
        let schema = schema_of::<T>(&mut self.schemas);
        self.body = Some(Body { schema, optional });
        self
    }

    /// The success answer's media types, JSON first.
    pub fn produces(mut self, media: &[&'static str]) -> Doc {
        self.produces = media.to_vec();
        self
    }

    /// The success envelope also answers with `status`.
    pub fn success_also(mut self, status: u16) -> Doc {
        self.success_also = Some(status);
        self
    }
}

/// The query parameters read by hand, with their type and meaning. One entry per name, whatever
/// route takes it.
pub const QUERY_PARAMS: &[(&str, &str, &str)] = &[
    (
        "startTime",
        "date-time",
        "Start of the range (ISO 8601; UTC when no zone is given).",
    ),
    (
        "endTime",
        "date-time",
        "End of the range, inclusive at the precision written (ISO 8601).",
    ),
    ("service", "list", "Services, comma-separated or repeated."),
    (
        "region",
        "list",
        "Regions (CN, US, UAE), comma-separated or repeated; within the caller's scope.",
    ),
    (
        "level",
        "list",
        "Levels (DEBUG, INFO, WARN, ERROR, FATAL), comma-separated or repeated.",
    ),
    ("sortBy", "string", "Sort key: timestamp or duration."),
    ("sortOrder", "string", "asc or desc."),
    ("page", "integer", "Page, from 1."),
    ("limit", "integer", "Items per page (at most 200)."),
    ("traceId", "string", "Trace id."),
    ("requestId", "string", "Request id."),
    ("userId", "string", "User id."),
    ("url", "string", "URL path, or a prefix ending in *."),
    (
        "keyword",
        "string",
        "Words or a substring of the message (CJK included).",
    ),
    ("minDuration", "integer", "Smallest request duration, in ms."),
    ("maxDuration", "integer", "Largest request duration, in ms."),
    ("statusCode", "integer", "HTTP status code."),
    (
        "hasError",
        "boolean",
        "Only records with (true) or without (false) an error.",
    ),
    ("errorType", "string", "Error type (the error's class)."),
    ("errorCode", "string", "Error code."),
    (
        "thresholdMs",
        "integer",
        "Requests at least this slow, in ms (default 2000).",
    ),
    (
        "groupBy",
        "string",
        "Breakdown: hour, day, service, region or level.",
    ),
    ("format", "string", "csv or json (NDJSON)."),
    (
        "type",
        "string",
        "Alert type (SLOW_REQUEST, ERROR_RATE, IP_ANOMALY, DISK_SPACE, CPU_USAGE).",
    ),
    ("status", "string", "Alert status."),
    ("services", "list", "Services, comma-separated or repeated."),
    ("levels", "list", "Levels, comma-separated or repeated."),
    ("start_time", "date-time", "Start of the range (ISO 8601)."),
    ("end_time", "date-time", "End of the range (ISO 8601)."),
    ("file", "string", "Source file."),
    ("function", "string", "Function."),
    ("page_size", "integer", "Items per page."),
    ("user_id", "integer", "User id."),
    (
        "action",
        "string",
        "Audit action (create, update, delete, login, export...).",
    ),
    (
        "resource_type",
        "string",
        "Resource type (user, role, organization...).",
    ),
    ("resource_id", "string", "Resource id."),
    ("ip_address", "string", "Client IP."),
    ("start_date", "date-time", "Start of the range (ISO 8601)."),
    ("end_date", "date-time", "End of the range (ISO 8601)."),
    (
        "response_status",
        "integer",
        "HTTP status of the audited request.",
    ),
    ("method", "string", "HTTP method of the audited request."),
    ("path", "string", "Path of the audited request, or a prefix."),
];

/// A hand-read parameter's entry.
pub fn query_param(name: &str) -> Option<Parameter> {
    let (_, kind, description) = QUERY_PARAMS.iter().find(|(n, _, _)| *n == name)?;
    let schema: Schema = match *kind {
        "integer" => ObjectBuilder::new().schema_type(Type::Integer).into(),
        "boolean" => ObjectBuilder::new().schema_type(Type::Boolean).into(),
        "date-time" => ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::DateTime,
            )))
            .into(),
        _ => ObjectBuilder::new().schema_type(Type::String).into(),
    };
    Some(
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(*description))
            .schema(Some(schema))
            .build(),
    )
}

/// The documentation of one route.
#[derive(Debug, Clone, Default)]
pub struct RouteDoc {
    /// From its extractors.
    pub input: Input,
    /// Declared beside it.
    pub doc: Doc,
}

/// What every family's answers look like and which statuses it uses for errors.
struct FamilyDoc {
    name: &'static str,
    success: Value,
    error: Value,
    /// The error codes its answers carry.
    codes: Vec<&'static str>,
}

/// Codes the log API's routes set beside their failure kind's own (`Failure::with_code`).
const ROUTE_CODES: [&str; 11] = [
    "LOG_QUERY_TIME_RANGE_TOO_LARGE",
    "LOG_QUERY_TOO_BROAD",
    "LOG_QUERY_TOO_MANY",
    "LOG_TRACE_NOT_FOUND",
    "LOG_NOT_FOUND",
    "LOG_STREAM_LIMIT_EXCEEDED",
    "LOG_CLEANUP_IN_PROGRESS",
    "LOG_CONFIG_UPDATE_FAILED",
    "LOG_ALERT_TEST_FAILED",
    "LOG_ALERT_CHANNEL_INVALID",
    "IP_BLOCKED",
];

/// A family's error codes, from the failure kinds' own (`Failure::code`, `Failure::platform_error`).
fn codes(family: Family) -> Vec<&'static str> {
    let mut codes: Vec<&'static str> = Vec::new();
    for kind in FailureKind::ALL {
        let failure = Failure::new(kind, "");
        let code = match family {
            Family::Platform => failure.platform_error(),
            _ => failure.code(),
        };
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    if family == Family::LogsV1 {
        codes.extend(ROUTE_CODES);
    }
    codes
}

/// The status a family answers a failed validation with (`Failure::status`).
fn invalid_status(family: Family) -> u16 {
    Failure::new(FailureKind::Invalid, "").status(family).as_u16()
}

fn family_doc(family: Family) -> FamilyDoc {
    let string = json!({"type": "string"});
    let field_errors = json!({
        "type": "array",
        "items": {
            "type": "object",
            "required": ["field", "message"],
            "properties": {
                "field": string,
                "message": string,
                "constraint": {"type": ["string", "null"]},
                "value": {},
            },
        },
    });
    match family {
        Family::LogsV1 => FamilyDoc {
            name: "LogsV1",
            success: json!({
                "type": "object",
                "required": ["success", "data", "timestamp", "path"],
                "properties": {
                    "success": {"const": true},
                    "data": {},
                    "message": string,
                    "timestamp": {"type": "string", "format": "date-time"},
                    "path": string,
                },
            }),
            error: json!({
                "type": "object",
                "required": ["success", "error", "timestamp", "path", "method", "statusCode"],
                "properties": {
                    "success": {"const": false},
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": string,
                            "message": string,
                            "details": {},
                            "field": string,
                            "errors": field_errors,
                        },
                    },
                    "timestamp": {"type": "string", "format": "date-time"},
                    "path": string,
                    "method": string,
                    "statusCode": {"type": "integer"},
                },
            }),
            codes: codes(family),
        },
        Family::AuthAdmin => FamilyDoc {
            name: "AuthAdmin",
            success: json!({
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["success"],
                        "properties": {"success": {"const": true}, "message": string, "data": {}},
                    },
                    {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {"code": {"const": 200}, "message": string, "data": {}},
                    },
                ],
            }),
            error: json!({
                "type": "object",
                "required": ["success", "code", "message", "error", "data"],
                "properties": {
                    "success": {"const": false},
                    "code": {"type": "integer"},
                    "message": string,
                    "error": string,
                    "errors": field_errors,
                    "details": {},
                    "data": {"type": "null"},
                },
            }),
            codes: codes(family),
        },
        Family::Platform => FamilyDoc {
            name: "Platform",
            success: json!({
                "type": "object",
                "required": ["status", "data", "message"],
                "properties": {
                    "status": {"enum": ["success", "error"]},
                    "data": {},
                    "pagination": {
                        "type": "object",
                        "properties": {
                            "page": {"type": "integer"},
                            "per_page": {"type": "integer"},
                            "total": {"type": "integer"},
                            "pages": {"type": "integer"},
                        },
                    },
                    "message": string,
                },
            }),
            error: json!({
                "type": "object",
                "required": ["status", "error", "message", "code", "details"],
                "properties": {
                    "status": {"const": "error"},
                    "error": {"enum": codes(family)},
                    "message": string,
                    "code": {"type": "integer"},
                    "details": {"type": "object", "properties": {"errors": field_errors}},
                },
            }),
            codes: codes(family),
        },
        Family::AnalyticsMonitoring => FamilyDoc {
            name: "AnalyticsMonitoring",
            success: json!({
                "type": "object",
                "required": ["code", "message", "data"],
                "properties": {"code": {"const": 200}, "message": string, "data": {}},
            }),
            error: json!({
                "type": "object",
                "required": ["code", "message", "data"],
                "properties": {
                    "code": {"type": "integer"},
                    "message": string,
                    "data": {
                        "oneOf": [
                            {"type": "null"},
                            {"type": "object", "properties": {"errors": field_errors}},
                        ],
                    },
                },
            }),
            codes: Vec::new(),
        },
    }
}

const FAMILIES: [Family; 4] = [
    Family::LogsV1,
    Family::AuthAdmin,
    Family::Platform,
    Family::AnalyticsMonitoring,
];

fn reference(name: &str) -> RefOr<Schema> {
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name(name))
}

fn http_method(method: &Method) -> HttpMethod {
    match *method {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::PATCH => HttpMethod::Patch,
        Method::HEAD => HttpMethod::Head,
        Method::OPTIONS => HttpMethod::Options,
        _ => HttpMethod::Trace,
    }
}

/// The names of a path template's parameters (`/api/users/{id}` -> `id`).
fn path_names(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| name.trim_start_matches('*'))
        .collect()
}

/// The words of a route for its summary (`POST /api/jobs/{job_id}/run` -> `run job`).
fn summary(spec: &RouteSpec) -> String {
    format!("{} {}", spec.action(), spec.resource.replace('_', " "))
}

fn permission_text(access: Access) -> String {
    match access {
        Access::Public => "Public: no token needed.".to_string(),
        Access::Authenticated => "Any signed-in user.".to_string(),
        Access::Require { .. } => format!("Needs `{access}`."),
    }
}

fn error_response(family: &FamilyDoc, description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(reference(&format!("{}Error", family.name))))
                .build(),
        )
        .into()
}

fn operation(spec: &RouteSpec, doc: &RouteDoc, family: &FamilyDoc) -> Operation {
    let mut op = Operation::new();
    op.tags = Some(vec![spec.resource.to_string()]);
    op.summary = Some(summary(spec));
    op.operation_id = Some(format!(
        "{}_{}",
        spec.method.as_str().to_ascii_lowercase(),
        spec.path
            .trim_start_matches('/')
            .replace(['/', '-'], "_")
            .replace(['{', '}'], "")
    ));
    let mut description = vec![
        permission_text(spec.access),
        format!("Envelope: `{}`.", family.name),
    ];
    if !family.codes.is_empty() {
        description.push(format!("Error codes: {}.", family.codes.join(", ")));
    }
    op.description = Some(description.join("\n\n"));
    let mut extensions = utoipa::openapi::extensions::Extensions::default();
    extensions.insert("x-owl-permission".into(), json!(spec.access.to_string()));
    extensions.insert("x-owl-envelope".into(), json!(family.name));
    op.extensions = Some(extensions);

    let mut parameters: Vec<Parameter> = Vec::new();
    for (i, name) in path_names(spec.path).into_iter().enumerate() {
        let schema = doc.input.path.get(i).cloned().unwrap_or_else(String::schema);
        parameters.push(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(schema))
                .build(),
        );
    }
    parameters.extend(doc.input.query.iter().cloned());
    parameters.extend(doc.doc.query.iter().cloned());
    parameters.extend(doc.doc.params.iter().filter_map(|name| query_param(name)));
    if !parameters.is_empty() {
        op.parameters = Some(parameters);
    }

    if let Some(body) = doc.doc.body.as_ref().or(doc.input.body.as_ref()) {
        op.request_body = Some(
            RequestBodyBuilder::new()
                .required(Some(if body.optional {
                    Required::False
                } else {
                    Required::True
                }))
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(body.schema.clone())).build(),
                )
                .build(),
        );
    }

    if spec.access != Access::Public {
        op.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    }

    let success_schema = reference(&format!("{}Success", family.name));
    // An export answers the file itself (a JSON array, CSV, NDJSON, an event stream), not an
    // envelope.
    let success = if doc.doc.produces.is_empty() {
        ResponseBuilder::new().description("Success.").content(
            "application/json",
            ContentBuilder::new().schema(Some(success_schema.clone())).build(),
        )
    } else {
        let mut file = ResponseBuilder::new()
            .description("The exported records, in the media type asked for.")
            .content("application/json", ContentBuilder::new().build());
        for media in &doc.doc.produces {
            file = file.content(*media, ContentBuilder::new().build());
        }
        file
    };
    let mut responses = utoipa::openapi::ResponsesBuilder::new().response("2XX", success.build());
    if let Some(status) = doc.doc.success_also {
        responses = responses.response(
            status.to_string(),
            ResponseBuilder::new()
                .description("Unhealthy: the same envelope, status error.")
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(success_schema)).build(),
                )
                .build(),
        );
    }
    let invalid = invalid_status(spec.family).to_string();
    let errors: [(&str, &str); 8] = [
        (
            "400",
            "A parameter or the body is wrong; `errors` names each field.",
        ),
        (&invalid, "Validation failed; `errors` names each field."),
        ("401", "No valid token."),
        (
            "403",
            "The token lacks the permission named above, or the action is refused.",
        ),
        ("404", "Not found, or outside the caller's scope."),
        ("409", "Conflicts with the current state."),
        ("413", "The body is over the limit."),
        (
            "429",
            "Too many requests, or the client IP is blocked; see Retry-After.",
        ),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (status, description) in errors {
        if seen.insert(status) {
            responses = responses.response(status, error_response(family, description));
        }
    }
    responses = responses.response(
        "5XX",
        error_response(family, "A dependency is down or took too long."),
    );
    op.responses = responses.build();
    op
}

/// The document of a route table, with `extra` paths (the collector's) beside its own.
pub fn document(table: &Routes, extra: Option<&Value>) -> Value {
    let families: Vec<(Family, FamilyDoc)> = FAMILIES.map(|family| (family, family_doc(family))).into();
    let family_of = |family: Family| {
        let (_, doc) = families
            .iter()
            .find(|(f, _)| *f == family)
            .expect("every family is documented");
        doc
    };
    let mut paths: BTreeMap<String, PathItem> = BTreeMap::new();
    for (spec, doc) in table.documented() {
        let item = PathItem::new(
            http_method(&spec.method),
            operation(spec, doc, family_of(spec.family)),
        );
        paths
            .entry(spec.path.to_string())
            .and_modify(|existing| existing.merge_operations(item.clone()))
            .or_insert(item);
    }
    let mut all = Paths::new();
    for (path, item) in paths {
        all.paths.insert(path, item);
    }

    let mut components = ComponentsBuilder::new().security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "The access token of `POST /api/auth/login` (or `/auth/login`).",
                ))
                .build(),
        ),
    );
    let mut named: BTreeMap<String, RefOr<Schema>> = BTreeMap::new();
    for (_, doc) in table.documented() {
        for (name, schema) in doc.input.schemas.iter().chain(&doc.doc.schemas) {
            named.entry(name.clone()).or_insert_with(|| schema.clone());
        }
    }
    for (name, schema) in named {
        components = components.schema(name, schema);
    }

    let mut tags: Vec<&str> = table.specs().map(|spec| spec.resource).collect();
    tags.sort_unstable();
    tags.dedup();
    let mut api = OpenApi::new(
        InfoBuilder::new()
            .title("Owl")
            .version(env!("CARGO_PKG_VERSION"))
            .description(Some(
                "Owl's query API: logs, traces, stats and alerts; users, roles, organizations and \
                 the audit log; CRM analytics and monitoring; scheduled jobs. Each route answers in \
                 the envelope of its family (see `x-owl-envelope`) and names the permission it \
                 needs (`x-owl-permission`).",
            ))
            .build(),
        all,
    );
    api.components = Some(components.build());
    api.tags = Some(tags.into_iter().map(Tag::new).collect());
    // The envelopes use JSON Schema 2020-12 words (`const`, type lists) that utoipa's model does
    // not hold: they are added to the JSON.
    let mut api = serde_json::to_value(api).expect("an OpenAPI document serialises");
    for (_, doc) in families {
        let schemas = &mut api["components"]["schemas"];
        schemas[format!("{}Success", doc.name)] = doc.success;
        schemas[format!("{}Error", doc.name)] = doc.error;
    }
    add_seed_examples(&mut api);
    // The collector's paths; one it shares with the query API (`/health`) is the query API's
    // here, at this document's server.
    if let Some(Value::Object(extra)) = extra {
        for (path, item) in extra {
            if api["paths"].get(path).is_none() {
                api["paths"][path] = item.clone();
            }
        }
    }
    api
}

/// The seeds' examples of each route (`openapi_examples.json`: method, path, the seed and line
/// they come from, and its query string, request body and success answer as the seed shows them).
const SEED_EXAMPLES: &str = include_str!("openapi_examples.json");

/// One route's examples.
#[derive(Debug, serde::Deserialize)]
struct SeedExample {
    method: String,
    path: String,
    seed: String,
    line: u32,
    query: Option<String>,
    request: Option<Value>,
    response: Option<Value>,
}

fn seed_examples() -> Vec<SeedExample> {
    serde_json::from_str(SEED_EXAMPLES).expect("openapi_examples.json is valid (tested)")
}

/// Puts the seeds' examples on their operations: the query string's values on the parameters
/// they name, the body on the request, the answer on the 2XX response. Swagger UI fills its
/// forms with them.
fn add_seed_examples(api: &mut Value) {
    for example in seed_examples() {
        let Some(op) = api
            .pointer_mut(&format!(
                "/paths/{}/{}",
                example.path.replace('~', "~0").replace('/', "~1"),
                example.method.to_ascii_lowercase()
            ))
            .filter(|op| op.is_object())
        else {
            continue;
        };
        let summary = format!("The example of seed {}, line {}.", example.seed, example.line);
        if let Some(query) = &example.query {
            for (name, value) in form_urlencoded::parse(query.as_bytes()) {
                let Some(parameters) = op["parameters"].as_array_mut() else {
                    break;
                };
                if let Some(parameter) = parameters
                    .iter_mut()
                    .find(|p| p["name"] == name.as_ref() && p["in"] == "query")
                {
                    parameter["example"] = json!(value);
                }
            }
        }
        if let Some(request) = example.request
            && let Some(content) = op.pointer_mut("/requestBody/content/application~1json")
        {
            content["examples"] = json!({ "seed": { "summary": summary, "value": request } });
        }
        if let Some(response) = example.response
            && let Some(content) = op.pointer_mut("/responses/2XX/content/application~1json")
        {
            content["examples"] = json!({ "seed": { "summary": summary, "value": response } });
        }
    }
}

/// `/openapi.json` and Swagger UI at `/docs`, from the bundle compiled into the binary.
pub fn docs_router(api: Value) -> axum::Router<AppState> {
    utoipa_swagger_ui::SwaggerUi::new("/docs")
        .external_url_unchecked("/openapi.json", api)
        .into()
}
