-- Owl alerting: the alerts the engine raises (003 alert history, 000 active alerts), the alert
-- configuration the query API edits, muted alert types and the IPs refused after an IP anomaly.
-- Times are epoch milliseconds (UTC); lists and objects are JSON text; ids of alerts are UUIDs so
-- the same id names an alert in the 003 and 000 APIs. The sqlite and postgres folders hold the
-- same schema.

-- One row per incident: repeats while the condition holds fold into it (occurrences).
-- alert_type: SLOW_REQUEST, HIGH_ERROR_RATE, DISK_SPACE, IP_ANOMALY, CPU_HIGH, MEMORY_HIGH.
-- alert_key: what the incident is about within its type (service, endpoint, host and mount, IP).
-- state: OPEN while the condition holds, RESOLVED once it cleared.
-- status: delivery of the latest notice (PENDING, SENT, FAILED), SUPPRESSED when nothing was sent
-- (type muted, no channel enabled), ACKNOWLEDGED once someone took it (kept from then on).
-- is_open is 1 while OPEN and NULL afterwards: MySQL has no partial index, and a unique index
-- counts NULLs as distinct, so at most one alert per type and key is open, as on the others.
CREATE TABLE alerts (
    id              VARCHAR(64)  NOT NULL PRIMARY KEY,
    alert_type      VARCHAR(64)  NOT NULL,
    alert_key       VARCHAR(512) NOT NULL,
    severity        TEXT         NOT NULL,
    state           VARCHAR(32)  NOT NULL,
    status          TEXT         NOT NULL,
    message         TEXT         NOT NULL,
    context         MEDIUMTEXT   NOT NULL DEFAULT '{}',
    service         TEXT         NULL,
    host            TEXT         NULL,
    region          TEXT         NULL,
    channels        TEXT         NOT NULL DEFAULT '[]',
    occurrences     BIGINT       NOT NULL DEFAULT 1,
    notices         BIGINT       NOT NULL DEFAULT 0,
    last_error      TEXT         NULL,
    created_at      BIGINT       NOT NULL,
    last_seen_at    BIGINT       NOT NULL,
    notified_at     BIGINT       NULL,
    sent_at         BIGINT       NULL,
    resolved_at     BIGINT       NULL,
    acknowledged_at BIGINT       NULL,
    acknowledged_by TEXT         NULL,
    is_open         TINYINT AS (CASE WHEN state = 'OPEN' THEN 1 END) STORED,
    INDEX alerts_created_at (created_at),
    INDEX alerts_state (state, created_at),
    UNIQUE INDEX alerts_one_open (alert_type, alert_key, is_open)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The live alert configuration (rules and channels, with channel secrets) as JSON; one row, id 1.
-- Absent until the first PUT: the config file's [alerts] and [notifications] apply until then.
-- version grows with every change so engines reload it without a restart.
CREATE TABLE alert_config (
    id         BIGINT     NOT NULL PRIMARY KEY,
    settings   MEDIUMTEXT NOT NULL,
    version    BIGINT     NOT NULL,
    updated_at BIGINT     NOT NULL,
    updated_by TEXT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- An alert type muted until a time: alerts are still recorded, no notice goes out.
CREATE TABLE alert_mutes (
    alert_type VARCHAR(64) NOT NULL PRIMARY KEY,
    until_at   BIGINT      NOT NULL,
    reason     TEXT        NOT NULL DEFAULT '',
    created_by TEXT        NOT NULL,
    created_at BIGINT      NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Client IPs over the IP_ANOMALY rate, refused by the query API until until_at.
CREATE TABLE blocked_ips (
    ip         VARCHAR(64) NOT NULL PRIMARY KEY,
    until_at   BIGINT      NOT NULL,
    reason     TEXT        NOT NULL DEFAULT '',
    alert_id   TEXT        NULL,
    created_at BIGINT      NOT NULL,
    INDEX blocked_ips_until (until_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
