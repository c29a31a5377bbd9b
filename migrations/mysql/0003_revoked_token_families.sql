-- Sessions (token families) revoked because a used refresh token came back, kept until their
-- refresh tokens would have expired. The key-value store holds the same revocation for speed; this
-- table makes it survive a restart of an in-process store.
CREATE TABLE revoked_token_families (
    family     VARCHAR(255) NOT NULL PRIMARY KEY,
    user_id    BIGINT       NOT NULL,
    expires_at BIGINT       NOT NULL,
    created_at BIGINT       NOT NULL,
    INDEX revoked_token_families_expires_at (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
