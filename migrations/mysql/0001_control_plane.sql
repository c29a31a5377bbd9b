-- Owl control plane: organizations, roles, permissions, users and the audit log.
-- Times are epoch milliseconds (UTC); statuses are 1 (enabled) or 0 (disabled or soft-deleted);
-- lists are JSON text. The sqlite and postgres folders hold the same schema. Runs on MariaDB 10.5+.
-- Tables use utf8mb4_bin so that codes compare exactly, as on the other backends; keys are
-- VARCHAR, which MySQL can index whole.

-- Organizations form a tree through parent_code; '0' is the parent of the roots (002).
CREATE TABLE organizations (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    org_code    VARCHAR(255) NOT NULL UNIQUE,
    org_name    TEXT         NOT NULL,
    parent_code VARCHAR(255) NOT NULL DEFAULT '0',
    org_level   BIGINT       NOT NULL DEFAULT 1,
    description TEXT         NOT NULL DEFAULT '',
    status      BIGINT       NOT NULL DEFAULT 1,
    created_at  BIGINT       NOT NULL,
    updated_at  BIGINT       NOT NULL,
    INDEX organizations_parent_code (parent_code)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- role_level: 1 is the super admin, <= 2 manages users and organizations (002).
-- environments: JSON list of log environments the role may read; [] means all.
CREATE TABLE roles (
    id           BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    role_code    VARCHAR(255) NOT NULL UNIQUE,
    role_name    TEXT         NOT NULL,
    role_level   BIGINT       NOT NULL,
    description  TEXT         NOT NULL DEFAULT '',
    status       BIGINT       NOT NULL DEFAULT 1,
    environments TEXT         NOT NULL DEFAULT '[]',
    builtin      BIGINT       NOT NULL DEFAULT 0,
    created_at   BIGINT       NOT NULL,
    updated_at   BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE permissions (
    id              BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    permission_code VARCHAR(255) NOT NULL UNIQUE,
    permission_name TEXT         NOT NULL,
    api_path        TEXT         NOT NULL DEFAULT '',
    api_method      TEXT         NOT NULL DEFAULT '',
    resource_type   TEXT         NOT NULL DEFAULT 'api',
    description     TEXT         NOT NULL DEFAULT '',
    status          BIGINT       NOT NULL DEFAULT 1
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE role_permissions (
    role_id       BIGINT NOT NULL,
    permission_id BIGINT NOT NULL,
    PRIMARY KEY (role_id, permission_id),
    FOREIGN KEY (role_id) REFERENCES roles (id),
    FOREIGN KEY (permission_id) REFERENCES permissions (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- user_code is the login name (002); username the display name.
-- regions: JSON list of regions whose logs the user may read; [] means all (003).
-- token_version: bumped to revoke every token of the user (logout, password change, disable).
CREATE TABLE users (
    id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_code     VARCHAR(255) NOT NULL UNIQUE,
    username      TEXT         NOT NULL,
    password_hash TEXT         NOT NULL,
    org_code      VARCHAR(255) NOT NULL DEFAULT '',
    role_id       BIGINT       NOT NULL,
    phone         TEXT         NOT NULL DEFAULT '',
    address       TEXT         NOT NULL DEFAULT '',
    email         TEXT         NOT NULL DEFAULT '',
    avatar        TEXT         NOT NULL DEFAULT '',
    regions       TEXT         NOT NULL DEFAULT '[]',
    status        BIGINT       NOT NULL DEFAULT 1,
    token_version BIGINT       NOT NULL DEFAULT 0,
    last_login_at BIGINT       NULL,
    created_at    BIGINT       NOT NULL,
    updated_at    BIGINT       NOT NULL,
    INDEX users_org_code (org_code),
    INDEX users_role_id (role_id),
    FOREIGN KEY (role_id) REFERENCES roles (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per audited request (001). params holds the request parameters with passwords, tokens
-- and secrets already replaced by ***REDACTED***.
CREATE TABLE audit_logs (
    id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id       BIGINT       NULL,
    user_code     TEXT         NULL,
    action        TEXT         NOT NULL,
    resource_type VARCHAR(255) NOT NULL DEFAULT '',
    resource_id   VARCHAR(255) NULL,
    method        TEXT         NOT NULL,
    path          TEXT         NOT NULL,
    params        MEDIUMTEXT   NULL,
    ip_address    TEXT         NOT NULL DEFAULT '',
    user_agent    TEXT         NOT NULL DEFAULT '',
    status_code   BIGINT       NOT NULL,
    duration_ms   BIGINT       NOT NULL,
    request_id    TEXT         NULL,
    created_at    BIGINT       NOT NULL,
    INDEX audit_logs_created_at (created_at),
    INDEX audit_logs_user (user_id, created_at),
    INDEX audit_logs_resource (resource_type, resource_id, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
