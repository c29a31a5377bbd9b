//! Every domain error of the query API as the answer it gives: the one place where a store's or a
//! service's error type becomes a [`Failure`], so the mapping from cause to status and code reads
//! in one file.

use super::{Failure, FailureKind, FieldError};
use crate::auth::{AuthError, TokenError};
use crate::authz::Denied;
use crate::crm::CrmStoreError;
use crate::crm::period::PeriodError;
use crate::db::DbError;
use crate::kv::KvError;
use owl_alerts::SettingsProblem;

impl From<DbError> for Failure {
    fn from(error: DbError) -> Failure {
        match error {
            DbError::Conflict { what, value } => {
                let mut failure = Failure::invalid(vec![FieldError::new(
                    what,
                    "unique",
                    format!("{what} {value} 已存在"),
                )]);
                failure.kind = FailureKind::Conflict;
                failure.message = format!("{what} {value} 已存在");
                failure
            }
            other => Failure::internal(other),
        }
    }
}

impl From<KvError> for Failure {
    fn from(error: KvError) -> Failure {
        Failure::unavailable("缓存服务不可用", error)
    }
}

impl From<CrmStoreError> for Failure {
    fn from(error: CrmStoreError) -> Failure {
        if error.is_unreachable() {
            Failure::unavailable("CRM 数据库不可用，请稍后重试", error)
        } else {
            Failure::internal(error)
        }
    }
}

impl From<AuthError> for Failure {
    fn from(error: AuthError) -> Failure {
        match error {
            AuthError::InvalidCredentials => Failure::unauthorized("用户名或密码错误"),
            AuthError::Locked { retry_after_s } => Failure::too_many_requests(
                format!("登录失败次数过多，请在 {retry_after_s} 秒后重试"),
                retry_after_s,
            ),
            AuthError::Busy => Failure {
                retry_after_s: Some(1),
                ..Failure::new(FailureKind::Unavailable, "登录请求过多，请稍后重试")
            },
            AuthError::MissingToken => Failure::unauthorized("未认证：缺少 Bearer 令牌"),
            AuthError::Token(TokenError::Expired) => Failure::unauthorized("令牌已过期"),
            AuthError::Token(_) | AuthError::Revoked | AuthError::UserDisabled => {
                Failure::unauthorized("令牌无效或已失效")
            }
            AuthError::RefreshReused => Failure::unauthorized("刷新令牌已被使用，会话已撤销，请重新登录"),
            AuthError::Kv(e) => Failure::unavailable("缓存服务不可用", e),
            AuthError::Db(e) => Failure::from(e),
            AuthError::Password(e) => Failure::internal(e),
        }
    }
}

/// A bad period of the CRM analytics API's analytics (`period`, `start_date`, `end_date`): a 400 naming the field.
impl From<PeriodError> for Failure {
    fn from(error: PeriodError) -> Failure {
        let mut failure = Failure::new(FailureKind::Invalid, error.to_string());
        failure.field = Some(error.field().to_string());
        failure
    }
}

/// An action the authorization rules refuse: a 403 with their reason.
impl From<Denied> for Failure {
    fn from(denied: Denied) -> Failure {
        Failure::forbidden(denied.0)
    }
}

/// The 400 of invalid alert settings, each field named under `prefix` (`alerts.` inside the log
/// configuration); a channel problem is `LOG_ALERT_CHANNEL_INVALID`.
pub(crate) fn settings_failure(problems: Vec<SettingsProblem>, prefix: &str) -> Failure {
    let channel = problems.iter().any(|p| p.channel);
    let errors: Vec<FieldError> = problems
        .into_iter()
        .map(|p| {
            let constraint = if p.channel { "channel" } else { "rule" };
            FieldError::new(format!("{prefix}{}", p.field), constraint, p.message)
        })
        .collect();
    let failure = Failure::invalid(errors);
    if channel {
        let message = format!(
            "告警通道配置无效：{}",
            failure
                .errors
                .iter()
                .find(|e| e.constraint.as_deref() == Some("channel"))
                .map_or("", |e| e.message.as_str())
        );
        Failure { message, ..failure }.with_code("LOG_ALERT_CHANNEL_INVALID")
    } else {
        failure
    }
}
