-- The built-in roles of 003's matrix, in this order so their ids are 1, 2 and 3 on a fresh database:
-- admin (everything), ops (stats, alerts, cleanup and region-scoped queries) and developer (query and
-- trace on the development environment only). Their permissions are granted at start-up from the
-- permission catalogue in the query API.
INSERT INTO roles (role_code, role_name, role_level, description, status, environments, builtin, created_at, updated_at)
VALUES ('admin', '平台管理员', 1, '所有接口，全部日志与配置管理', 1, '[]', 1,
        CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED), CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED));
INSERT INTO roles (role_code, role_name, role_level, description, status, environments, builtin, created_at, updated_at)
VALUES ('ops', '运维人员', 2, '统计、告警、清理接口，运维相关数据', 1, '[]', 1,
        CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED), CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED));
INSERT INTO roles (role_code, role_name, role_level, description, status, environments, builtin, created_at, updated_at)
VALUES ('developer', '开发人员', 3, '查询、追踪接口，仅开发环境，无配置权限', 1, '["development"]', 1,
        CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED), CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED));
