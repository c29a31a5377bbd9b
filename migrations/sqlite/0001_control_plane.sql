-- Owl control plane: organizations, roles, permissions, users and the audit log.
-- Times are epoch milliseconds (UTC); statuses are 1 (enabled) or 0 (disabled or soft-deleted);
-- lists are JSON text. The PostgreSQL folder holds the same schema.

-- Organizations form a tree through parent_code; '0' is the parent of the roots (002).
CREATE TABLE organizations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_code    TEXT    NOT NULL UNIQUE,
    org_name    TEXT    NOT NULL,
    parent_code TEXT    NOT NULL DEFAULT '0',
    org_level   INTEGER NOT NULL DEFAULT 1,
    description TEXT    NOT NULL DEFAULT '',
    status      INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX organizations_parent_code ON organizations (parent_code);

-- role_level: 1 is the super admin, <= 2 manages users and organizations (002).
-- environments: JSON list of log environments the role may read; [] means all.
CREATE TABLE roles (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    role_code    TEXT    NOT NULL UNIQUE,
    role_name    TEXT    NOT NULL,
    role_level   INTEGER NOT NULL,
    description  TEXT    NOT NULL DEFAULT '',
    status       INTEGER NOT NULL DEFAULT 1,
    environments TEXT    NOT NULL DEFAULT '[]',
    builtin      INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE permissions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    permission_code TEXT    NOT NULL UNIQUE,
    permission_name TEXT    NOT NULL,
    api_path        TEXT    NOT NULL DEFAULT '',
    api_method      TEXT    NOT NULL DEFAULT '',
    resource_type   TEXT    NOT NULL DEFAULT 'api',
    description     TEXT    NOT NULL DEFAULT '',
    status          INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE role_permissions (
    role_id       INTEGER NOT NULL REFERENCES roles (id),
    permission_id INTEGER NOT NULL REFERENCES permissions (id),
    PRIMARY KEY (role_id, permission_id)
);

-- user_code is the login name (002); username the display name.
-- regions: JSON list of regions whose logs the user may read; [] means all (003).
-- token_version: bumped to revoke every token of the user (logout, password change, disable).
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_code     TEXT    NOT NULL UNIQUE,
    username      TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    org_code      TEXT    NOT NULL DEFAULT '',
    role_id       INTEGER NOT NULL REFERENCES roles (id),
    phone         TEXT    NOT NULL DEFAULT '',
    address       TEXT    NOT NULL DEFAULT '',
    email         TEXT    NOT NULL DEFAULT '',
    avatar        TEXT    NOT NULL DEFAULT '',
    regions       TEXT    NOT NULL DEFAULT '[]',
    status        INTEGER NOT NULL DEFAULT 1,
    token_version INTEGER NOT NULL DEFAULT 0,
    last_login_at INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX users_org_code ON users (org_code);
CREATE INDEX users_role_id ON users (role_id);

-- One row per audited request (001). params holds the request parameters with passwords, tokens
-- and secrets already replaced by ***REDACTED***.
CREATE TABLE audit_logs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       INTEGER,
    user_code     TEXT,
    action        TEXT    NOT NULL,
    resource_type TEXT    NOT NULL DEFAULT '',
    resource_id   TEXT,
    method        TEXT    NOT NULL,
    path          TEXT    NOT NULL,
    params        TEXT,
    ip_address    TEXT    NOT NULL DEFAULT '',
    user_agent    TEXT    NOT NULL DEFAULT '',
    status_code   INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    request_id    TEXT,
    created_at    INTEGER NOT NULL
);
CREATE INDEX audit_logs_created_at ON audit_logs (created_at);
CREATE INDEX audit_logs_user ON audit_logs (user_id, created_at);
CREATE INDEX audit_logs_resource ON audit_logs (resource_type, resource_id, created_at);
