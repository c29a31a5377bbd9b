-- Per-agent ingest tokens (`owl admin agent-token create`): each names one node and, optionally,
-- the one region its records may claim. Only the SHA-256 digest of a token is kept.
CREATE TABLE agent_tokens (
    id         BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name       VARCHAR(255) NOT NULL UNIQUE,
    region     TEXT         NOT NULL DEFAULT '',
    digest     VARCHAR(128) NOT NULL UNIQUE,
    created_at BIGINT       NOT NULL,
    revoked_at BIGINT       NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
