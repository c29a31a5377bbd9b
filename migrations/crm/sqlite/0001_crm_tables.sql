-- The CRM tables Owl's analytics read (query-api/src/crm/README.md documents every column and how
-- a CRM maps its own tables or views onto them). The postgres and mysql folders hold the same step.
--
-- Times are epoch milliseconds (UTC). org_code is the Owl organization a row belongs to: the
-- analytics of a user who is not a super admin read only rows of their organization and its
-- descendants in Owl's organization tree.

-- The CRM's own organizations (partners, vendors, agents, internal units).
CREATE TABLE crm_organizations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    code       TEXT    NOT NULL UNIQUE,
    name       TEXT    NOT NULL,
    org_type   TEXT    NOT NULL,            -- internal | vendor | agent | ...
    is_active  INTEGER NOT NULL DEFAULT 1,  -- 1 active, 0 inactive
    org_code   TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX crm_organizations_org_code ON crm_organizations (org_code, created_at);

-- The CRM's users (named crm_users so they never collide with Owl's own users table).
CREATE TABLE crm_users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL,
    is_active     INTEGER NOT NULL DEFAULT 1,  -- 1 active, 0 inactive
    last_login_at INTEGER,                     -- NULL: never signed in
    org_code      TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX crm_users_org_code ON crm_users (org_code, created_at);

CREATE TABLE customers (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL,
    customer_type TEXT    NOT NULL,  -- individual | organization
    source        TEXT    NOT NULL,  -- own | agent
    org_code      TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX customers_org_code ON customers (org_code, created_at);
CREATE INDEX customers_created_at ON customers (created_at);

CREATE TABLE orders (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    order_no      TEXT    NOT NULL UNIQUE,
    customer_id   INTEGER,
    status        TEXT    NOT NULL,  -- submitted | approved | processing | completed | cancelled
    amount        REAL    NOT NULL,  -- in currency_code; two decimals
    currency_code TEXT    NOT NULL,  -- ISO 4217
    org_code      TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    completed_at  INTEGER            -- when the order reached completed; NULL otherwise
);
CREATE INDEX orders_org_code ON orders (org_code, created_at);
CREATE INDEX orders_created_at ON orders (created_at);
CREATE INDEX orders_customer ON orders (customer_id, created_at);
CREATE INDEX orders_completed ON orders (status, completed_at);

CREATE TABLE service_records (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id INTEGER,
    status      TEXT    NOT NULL,  -- pending | in_progress | completed | cancelled
    priority    TEXT    NOT NULL,  -- low | normal | high | urgent
    org_code    TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX service_records_org_code ON service_records (org_code, created_at);
CREATE INDEX service_records_customer ON service_records (customer_id, created_at);
