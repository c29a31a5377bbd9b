-- The CRM tables Owl's analytics read (query-api/src/crm/README.md documents every column and how
-- a CRM maps its own tables or views onto them). The sqlite and postgres folders hold the same step.
-- Runs on MySQL 5.7+ and MariaDB 10.3+.
--
-- Times are epoch milliseconds (UTC). org_code is the Owl organization a row belongs to: the
-- analytics of a user who is not a super admin read only rows of their organization and its
-- descendants in Owl's organization tree.

-- The CRM's own organizations (partners, vendors, agents, internal units).
CREATE TABLE crm_organizations (
    id         BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    code       VARCHAR(64)  NOT NULL UNIQUE,
    name       VARCHAR(255) NOT NULL,
    org_type   VARCHAR(32)  NOT NULL,            -- internal | vendor | agent | ...
    is_active  INT          NOT NULL DEFAULT 1,  -- 1 active, 0 inactive
    org_code   VARCHAR(64)  NOT NULL,
    created_at BIGINT       NOT NULL,
    INDEX crm_organizations_org_code (org_code, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The CRM's users (named crm_users so they never collide with Owl's own users table).
CREATE TABLE crm_users (
    id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    username      VARCHAR(128) NOT NULL,
    is_active     INT          NOT NULL DEFAULT 1,  -- 1 active, 0 inactive
    last_login_at BIGINT       NULL,                -- NULL: never signed in
    org_code      VARCHAR(64)  NOT NULL,
    created_at    BIGINT       NOT NULL,
    INDEX crm_users_org_code (org_code, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE customers (
    id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name          VARCHAR(255) NOT NULL,
    customer_type VARCHAR(32)  NOT NULL,  -- individual | organization
    source        VARCHAR(32)  NOT NULL,  -- own | agent
    org_code      VARCHAR(64)  NOT NULL,
    created_at    BIGINT       NOT NULL,
    INDEX customers_org_code (org_code, created_at),
    INDEX customers_created_at (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE orders (
    id            BIGINT         NOT NULL AUTO_INCREMENT PRIMARY KEY,
    order_no      VARCHAR(64)    NOT NULL UNIQUE,
    customer_id   BIGINT         NULL,
    status        VARCHAR(32)    NOT NULL,  -- submitted | approved | processing | completed | cancelled
    amount        DECIMAL(18, 2) NOT NULL,  -- in currency_code
    currency_code VARCHAR(3)     NOT NULL,  -- ISO 4217
    org_code      VARCHAR(64)    NOT NULL,
    created_at    BIGINT         NOT NULL,
    completed_at  BIGINT         NULL,      -- when the order reached completed; NULL otherwise
    INDEX orders_org_code (org_code, created_at),
    INDEX orders_created_at (created_at),
    INDEX orders_customer (customer_id, created_at),
    INDEX orders_completed (status, completed_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE service_records (
    id          BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    customer_id BIGINT      NULL,
    status      VARCHAR(32) NOT NULL,  -- pending | in_progress | completed | cancelled
    priority    VARCHAR(32) NOT NULL,  -- low | normal | high | urgent
    org_code    VARCHAR(64) NOT NULL,
    created_at  BIGINT      NOT NULL,
    INDEX service_records_org_code (org_code, created_at),
    INDEX service_records_customer (customer_id, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
