//! Every metric the query API emits (the `metrics` facade; the binary installs the exporter).

/// Audit rows that could not be written (each is a request missing from the audit log).
pub const AUDIT_WRITE_FAILURES: &str = "owl_query_api_audit_write_failures_total";
/// Refused unauthenticated requests not audited because their client IP had its share this minute.
pub const AUDIT_UNAUTHENTICATED_DROPPED: &str = "owl_query_api_audit_unauthenticated_dropped_total";
/// Failed logins (wrong password, unknown or disabled user).
pub const LOGIN_FAILURES: &str = "owl_query_api_login_failures_total";
/// Lockouts started, labelled `scope` = `user` or `ip`.
pub const LOGIN_LOCKOUTS: &str = "owl_query_api_login_lockouts_total";
/// Refresh tokens presented twice (each revokes a token family).
pub const REFRESH_REUSE: &str = "owl_query_api_refresh_token_reuse_total";
/// Access changes (logout, disabled user, role change, ...) that could not be published to the other
/// replicas through Redis; they then apply there within the principal cache's TTL.
pub const AUTH_EPOCH_PUBLISH_FAILURES: &str = "owl_query_api_auth_epoch_publish_failures_total";
