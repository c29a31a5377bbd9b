//! Sign-in: passwords, tokens, refresh rotation, revocation and lockout.
//!
//! - **Login** is admitted by the [`VerifyGate`] (about one argon2 verification per core at once,
//!   a short queue, 503 with `Retry-After` past it), checks the lockout (429 with `Retry-After`,
//!   even with the right password), then reserves the attempt against the login name and the
//!   client IP (atomic counters in fixed windows of `auth.lockout_s`) before hashing, so at most
//!   `auth.max_failed_logins` guesses per name and per IP are ever evaluated in a window, however
//!   many arrive at once. Then the password is checked with argon2id; an unknown user is checked
//!   against a dummy hash so both failures take the same time and give the same answer. The
//!   attempt that reaches `auth.max_failed_logins` and fails locks the name or the IP for
//!   `auth.lockout_s`. Success clears the name's counter and returns the IP its slot, but earlier
//!   failures of the IP stay counted, so a valid account cannot launder a password spray from one
//!   address.
//! - **Tokens**: a login starts a token family. The access token lives `auth.access_token_ttl_s`; the
//!   refresh token is single use: refreshing swaps the family's current refresh id atomically
//!   (compare-and-swap in the [`KvStore`]) and answers a new pair. Presenting an already used refresh
//!   token means it was stolen or replayed: the family is revoked, which also kills its access
//!   tokens. A family lives at most `auth.refresh_token_ttl_s` from login (rotation does not extend
//!   it). With the in-process store a restart forgets families, so refresh tokens fail closed and
//!   users sign in again; access tokens survive.
//! - **Revocation of a user** (logout, password change, disable, delete, role change) bumps the
//!   user's `token_version` in SQL; every token carries the version it was issued under, and loading
//!   the principal reads the user row to refuse disabled or deleted users.
//! - **Checking a request's token**: a token seen before (the same bytes, which verified then) is
//!   checked against its stored expiry and served the cached [`Principal`] (user, status, role,
//!   permissions, regions, organization scope) while the entry is current: no signature check, no
//!   SQL. Any other token is verified (signature, type, validity window) and loaded. Every write
//!   that changes users, roles, grants or organizations, and every revocation, makes all entries
//!   stale at once in this process and, with Redis, in every replica (a new `auth:epoch`, read on
//!   each request). Changes made outside the query API (`owl admin`, direct SQL) apply within
//!   [`PRINCIPAL_TTL`] (5 s). See `cache.rs` for the rules.

mod cache;
mod password;
mod tokens;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use owl_config::AuthConfig;
use tokio::sync::OnceCell;

pub use cache::PRINCIPAL_TTL;
pub use password::{PasswordError, VerifyGate, check_policy, hash_password};
pub use tokens::{Claims, TokenError, TokenService, TokenType};

use self::cache::{EPOCH_KEY, Epoch, PrincipalCache};
use crate::authz::scope::Scope;
use crate::db::{Database, DbError, UserRecord, subtree};
use crate::kv::{KvError, KvStore, Swap};
use crate::permissions::{ADMIN_ROLE, Permission};
use owl_model::clock::Clock;

/// A signed-in user, as every request sees them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Principal {
    /// User id.
    pub user_id: i64,
    /// Login name.
    pub user_code: String,
    /// Display name.
    pub username: String,
    /// Organization code ("" for none).
    pub org_code: String,
    /// Role id.
    pub role_id: i64,
    /// Role code.
    pub role_code: String,
    /// Role level (1: super admin).
    pub role_level: i64,
    /// Granted permission codes (unknown codes from newer releases included).
    pub permissions: BTreeSet<String>,
    /// Regions the user may read ([] = all).
    pub regions: Vec<String>,
    /// Environments the role may read ([] = all).
    pub environments: Vec<String>,
    /// Organization codes the user may see: `None` for a super admin (every organization), else
    /// their organization and its descendants (empty without an organization).
    pub orgs: Option<BTreeSet<String>>,
    /// The token family of this session.
    pub token_family: String,
}

impl Principal {
    /// Whether the user holds a permission.
    pub fn has(&self, permission: Permission) -> bool {
        self.permissions.contains(permission.code())
    }

    /// Whether the user is a super admin (role level 1), who sees every organization.
    pub fn is_super_admin(&self) -> bool {
        self.role_level <= crate::permissions::SUPER_ADMIN_LEVEL
    }

    /// The log data the user may read.
    pub fn scope(&self) -> Scope {
        Scope::new(&self.regions, &self.environments)
    }
}

/// A new pair of tokens.
#[derive(Debug, Clone)]
pub struct TokenPair {
    /// Access token.
    pub access_token: String,
    /// Refresh token.
    pub refresh_token: String,
    /// Access token lifetime in seconds.
    pub expires_in: u64,
}

/// Why sign-in or a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong user name or password, or a disabled user: one answer for all.
    #[error("invalid user name or password")]
    InvalidCredentials,
    /// Too many logins are being checked at once.
    #[error("too many logins in progress")]
    Busy,
    /// Too many failures for this name or IP.
    #[error("too many failed logins; retry in {retry_after_s} s")]
    Locked {
        /// Seconds until the lock ends.
        retry_after_s: u64,
    },
    /// No token where one is required.
    #[error("missing bearer token")]
    MissingToken,
    /// The token itself is invalid.
    #[error("{0}")]
    Token(#[from] TokenError),
    /// The token was revoked (logout, family revoked, version bumped).
    #[error("token revoked")]
    Revoked,
    /// A used refresh token came back: the family is now revoked.
    #[error("refresh token reused; session revoked")]
    RefreshReused,
    /// The user is disabled, deleted or gone.
    #[error("user disabled or deleted")]
    UserDisabled,
    /// The shared store failed.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Hashing failed.
    #[error(transparent)]
    Password(#[from] PasswordError),
}

/// The sign-in service. Cheap to clone (every request clones the application state, which holds
/// it): the keys, their validation rules and the config sit behind `Arc`s.
#[derive(Clone)]
pub struct Auth {
    db: Database,
    kv: Arc<dyn KvStore>,
    tokens: Arc<TokenService>,
    clock: Clock,
    config: Arc<AuthConfig>,
    dummy_hash: Arc<OnceCell<String>>,
    principals: Arc<PrincipalCache>,
    verify_gate: Arc<VerifyGate>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("kv", &self.kv.backend())
            .finish_non_exhaustive()
    }
}

fn family_key(family: &str) -> String {
    format!("auth:family:{family}")
}

fn revoked_key(family: &str) -> String {
    format!("auth:revoked:{family}")
}

/// Whole seconds, rounded up, at least 1.
fn ceil_seconds(duration: Duration) -> u64 {
    duration.as_millis().div_ceil(1000).max(1) as u64
}

impl Auth {
    /// Whether `password` matches the PHC string `hash`, checked on the sign-in gate's threads;
    /// `false` when the gate is full.
    pub async fn password_matches(&self, password: String, hash: String) -> bool {
        match self.verify_gate.admit() {
            Some(admitted) => admitted.verify(password, hash).await.unwrap_or(false),
            None => false,
        }
    }

    /// A service over the database and store, signing with `secret`.
    pub fn new(db: Database, kv: Arc<dyn KvStore>, secret: &[u8], clock: Clock, config: AuthConfig) -> Auth {
        Auth {
            db,
            kv,
            tokens: Arc::new(TokenService::new(secret)),
            principals: Arc::new(PrincipalCache::new(clock.clone())),
            clock,
            dummy_hash: Arc::new(OnceCell::new()),
            verify_gate: Arc::new(VerifyGate::with_limit(config.max_concurrent_logins)),
            config: Arc::new(config),
        }
    }

    /// The token service (tests and tools sign with it).
    pub fn tokens(&self) -> &TokenService {
        &self.tokens
    }

    fn lockout(&self) -> Duration {
        Duration::from_secs(self.config.lockout_s)
    }

    /// Checks a login; on success returns the user and a new token pair.
    pub async fn login(
        &self,
        user_code: &str,
        password: &str,
        client_ip: &str,
    ) -> Result<(UserRecord, TokenPair), AuthError> {
        let keys = [
            (
                format!("auth:fail:user:{user_code}"),
                format!("auth:lock:user:{user_code}"),
            ),
            (
                format!("auth:fail:ip:{client_ip}"),
                format!("auth:lock:ip:{client_ip}"),
            ),
        ];
        let Some(admitted) = self.verify_gate.admit() else {
            metrics::counter!(crate::metrics::LOGIN_FAILURES).increment(1);
            return Err(AuthError::Busy);
        };
        let mut locked_for = None::<Duration>;
        for (_, lock) in &keys {
            if let Some(left) = self.kv.ttl(lock).await? {
                locked_for = Some(locked_for.map_or(left, |l| l.max(left)));
            }
        }
        if let Some(left) = locked_for {
            return Err(AuthError::Locked {
                retry_after_s: ceil_seconds(left),
            });
        }
        // Reserve this attempt against the name and the IP before any hashing: concurrent logins
        // each take a numbered slot atomically, so no more than `max_failed_logins` guesses are
        // ever evaluated per name and per IP in a window, however many arrive at once.
        let max = i64::from(self.config.max_failed_logins);
        let mut slots = [0_i64; 2];
        for (slot, (fail, _)) in slots.iter_mut().zip(&keys) {
            *slot = self.kv.incr(fail, self.lockout()).await?;
        }
        if slots.iter().any(|&n| n > max) {
            metrics::counter!(crate::metrics::LOGIN_FAILURES).increment(1);
            return Err(AuthError::Locked {
                retry_after_s: ceil_seconds(self.lockout()),
            });
        }

        let user = if user_code.is_empty() || user_code.len() > 128 {
            None
        } else {
            self.db.find_user_by_code(user_code).await?
        };
        let password = password.to_string();
        let accepted = match user {
            Some(user) => {
                let matches = admitted.verify(password, user.password_hash.clone()).await?;
                (matches && user.status == 1).then_some(user)
            }
            None => {
                // Same work as for a real user, so timing does not tell whether the name exists.
                let dummy = self
                    .dummy_hash
                    .get_or_try_init(|| hash_password("owl-dummy-password-0".into()))
                    .await?;
                admitted.verify(password, dummy.clone()).await?;
                None
            }
        };
        drop(admitted);

        let Some(user) = accepted else {
            metrics::counter!(crate::metrics::LOGIN_FAILURES).increment(1);
            for (((_, lock), scope), failures) in keys.iter().zip(["user", "ip"]).zip(slots) {
                if failures >= max {
                    // The counter stays until its window ends: deleting it would hand a fresh
                    // budget to attempts that passed the lock check a moment ago.
                    self.kv.set(lock, "1", Some(self.lockout())).await?;
                    metrics::counter!(crate::metrics::LOGIN_LOCKOUTS, "scope" => scope).increment(1);
                    tracing::warn!(key = %lock, failures, "login locked after repeated failures");
                }
            }
            return Err(AuthError::InvalidCredentials);
        };
        // A success is no failure: the name starts afresh, the IP gets its slot back.
        self.kv.add(&keys[1].0, -1, self.lockout()).await?;
        self.kv.delete(&keys[0].0).await?;
        let pair = self.start_family(&user).await?;
        self.db.set_last_login(user.id, self.clock.now_ms()).await?;
        Ok((user, pair))
    }

    async fn start_family(&self, user: &UserRecord) -> Result<TokenPair, AuthError> {
        let now = self.clock.now_s();
        let family = uuid::Uuid::new_v4().simple().to_string();
        let refresh_exp = now + self.config.refresh_token_ttl_s as i64;
        let refresh_jti = uuid::Uuid::new_v4().simple().to_string();
        let ttl = Duration::from_secs(self.config.refresh_token_ttl_s.max(1));
        self.kv.set(&family_key(&family), &refresh_jti, Some(ttl)).await?;
        Ok(self.issue(
            user.id,
            user.token_version,
            &family,
            refresh_jti,
            now,
            refresh_exp,
        ))
    }

    /// Signs a pair in `family` whose refresh token has the id `refresh_jti`.
    fn issue(
        &self,
        user_id: i64,
        version: i64,
        family: &str,
        refresh_jti: String,
        now: i64,
        refresh_exp: i64,
    ) -> TokenPair {
        let access = Claims {
            sub: user_id.to_string(),
            typ: TokenType::Access,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            fam: family.to_string(),
            ver: version,
            iat: now,
            nbf: now,
            exp: (now + self.config.access_token_ttl_s as i64).min(refresh_exp),
            iss: tokens::ISSUER.to_string(),
            aud: tokens::AUDIENCE.to_string(),
        };
        let refresh = Claims {
            typ: TokenType::Refresh,
            jti: refresh_jti,
            exp: refresh_exp,
            ..access.clone()
        };
        TokenPair {
            access_token: self.tokens.sign(&access),
            refresh_token: self.tokens.sign(&refresh),
            expires_in: u64::try_from(access.exp - now).unwrap_or(0),
        }
    }

    /// Exchanges a refresh token for a new pair (rotation with reuse detection).
    pub async fn refresh(&self, refresh_token: &str) -> Result<(UserRecord, TokenPair), AuthError> {
        let now = self.clock.now_s();
        let claims = self.tokens.verify(refresh_token, TokenType::Refresh, now)?;
        let user = self.current_user(&claims).await?;
        let next_jti = uuid::Uuid::new_v4().simple().to_string();
        let ttl = Duration::from_secs(u64::try_from(claims.exp - now).unwrap_or(1).max(1));
        match self
            .kv
            .compare_and_swap(&family_key(&claims.fam), &claims.jti, &next_jti, ttl)
            .await?
        {
            Swap::Swapped => {}
            Swap::Missing => return Err(AuthError::Revoked),
            Swap::Mismatch => {
                // A used refresh token came back: it was stolen or replayed. The family is revoked
                // in SQL as well as in the store, so the revocation survives a restart of an
                // in-process store (which forgets revocations, and would let the stolen family's
                // access tokens work again until they expire).
                let now_ms = self.clock.now_ms();
                self.db
                    .revoke_token_family(&claims.fam, user.id, claims.exp.saturating_mul(1000), now_ms)
                    .await?;
                self.revoke_family(&claims.fam).await?;
                metrics::counter!(crate::metrics::REFRESH_REUSE).increment(1);
                tracing::warn!(user_id = user.id, family = %claims.fam, "refresh token reused; family revoked");
                return Err(AuthError::RefreshReused);
            }
        }
        let pair = self.issue(
            user.id,
            user.token_version,
            &claims.fam,
            next_jti,
            now,
            claims.exp,
        );
        Ok((user, pair))
    }

    async fn revoke_family(&self, family: &str) -> Result<(), AuthError> {
        self.kv.delete(&family_key(family)).await?;
        let ttl = Duration::from_secs(self.config.refresh_token_ttl_s.max(1));
        self.kv.set(&revoked_key(family), "1", Some(ttl)).await?;
        self.access_changed().await;
        Ok(())
    }

    /// Makes every cached principal stale: at once in this process, and with a shared store in
    /// every replica on its next request. Called after the change is stored. A failure to publish
    /// is logged, not returned: the change itself happened, and other replicas then pick it up
    /// within [`PRINCIPAL_TTL`].
    pub async fn access_changed(&self) {
        self.principals.invalidate();
        if !self.kv.is_shared() {
            return;
        }
        let epoch = uuid::Uuid::new_v4().simple().to_string();
        if let Err(error) = self.kv.set(EPOCH_KEY, &epoch, None).await {
            metrics::counter!(crate::metrics::AUTH_EPOCH_PUBLISH_FAILURES).increment(1);
            tracing::error!(%error, "could not publish an access change to other replicas");
        }
    }

    /// What cached principals must have been loaded under to be used now.
    async fn epoch(&self) -> Result<Epoch, AuthError> {
        let shared = if self.kv.is_shared() {
            self.kv.get(EPOCH_KEY).await?
        } else {
            None
        };
        Ok(Epoch {
            writes: self.db.access_generation(),
            local: self.principals.local_epoch(),
            shared,
        })
    }

    /// Revokes every token of the signed-in user (logout).
    pub async fn logout(&self, principal: &Principal) -> Result<(), AuthError> {
        self.db
            .revoke_user_tokens(principal.user_id, self.clock.now_ms())
            .await?;
        self.revoke_family(&principal.token_family).await
    }

    /// Checks an access token and returns the user behind it: from the principal cache when the
    /// same token verified under the current epoch, else verified and loaded from the database.
    pub async fn authenticate(&self, access_token: &str) -> Result<Arc<Principal>, AuthError> {
        let cached = self.principals.get(access_token);
        // A token not seen before is checked before anything else: garbage costs no store lookup.
        let claims = match cached {
            Some(_) => None,
            None => Some(
                self.tokens
                    .verify(access_token, TokenType::Access, self.clock.now_s())?,
            ),
        };
        // Read before loading: a write committed meanwhile leaves the entry under an old epoch.
        let epoch = self.epoch().await?;
        if let Some((principal, loaded_under)) = cached
            && loaded_under == epoch
        {
            return Ok(principal);
        }
        // Unknown, or known but stale: verify (again) and load.
        let claims = match claims {
            Some(claims) => claims,
            None => self
                .tokens
                .verify(access_token, TokenType::Access, self.clock.now_s())?,
        };
        if self.kv.get(&revoked_key(&claims.fam)).await?.is_some()
            || self
                .db
                .is_token_family_revoked(&claims.fam, self.clock.now_ms())
                .await?
        {
            return Err(AuthError::Revoked);
        }
        let user = self.current_user(&claims).await?;
        let permissions = self.permissions_of(&user).await?;
        let role_level = user.role_level;
        let orgs = self.org_scope_of(&user, &mut None).await?;
        let principal = Arc::new(Principal {
            user_id: user.id,
            user_code: user.user_code,
            username: user.username,
            org_code: user.org_code,
            role_id: user.role_id,
            role_code: user.role_code,
            role_level,
            permissions,
            regions: user.regions,
            environments: user.environments,
            orgs,
            token_family: claims.fam,
        });
        self.principals
            .insert(access_token, claims.exp, principal.clone(), epoch);
        Ok(principal)
    }

    /// The organizations a user may see: `None` for a super admin (every organization), else their
    /// organization and its descendants (empty without one). `tree` keeps the organization tree
    /// between calls over many users; it is read only when needed.
    pub async fn org_scope_of(
        &self,
        user: &UserRecord,
        tree: &mut Option<Vec<crate::db::Organization>>,
    ) -> Result<Option<BTreeSet<String>>, AuthError> {
        if user.role_level <= crate::permissions::SUPER_ADMIN_LEVEL {
            return Ok(None);
        }
        if user.org_code.is_empty() {
            return Ok(Some(BTreeSet::new()));
        }
        let all = match tree {
            Some(all) => all,
            None => tree.insert(self.db.all_organizations().await?),
        };
        Ok(Some(subtree(all, &user.org_code)))
    }

    /// The permission codes a user holds: every code for `admin`, none while the role is disabled.
    pub async fn permissions_of(&self, user: &UserRecord) -> Result<BTreeSet<String>, AuthError> {
        if user.role_status != 1 {
            return Ok(BTreeSet::new());
        }
        let mut codes: BTreeSet<String> = self
            .db
            .role_permissions(user.role_id)
            .await?
            .into_iter()
            .map(|p| p.permission_code)
            .collect();
        if user.role_code == ADMIN_ROLE {
            codes.extend(Permission::all().map(|p| p.code().to_string()));
        }
        Ok(codes)
    }

    async fn current_user(&self, claims: &Claims) -> Result<UserRecord, AuthError> {
        let id = claims.user_id().ok_or(AuthError::Token(TokenError::Malformed))?;
        let user = self.db.find_user(id).await?.ok_or(AuthError::UserDisabled)?;
        if user.status != 1 {
            return Err(AuthError::UserDisabled);
        }
        if user.token_version != claims.ver {
            return Err(AuthError::Revoked);
        }
        Ok(user)
    }
}

/// The HS256 secret: `auth.jwt_secret` when set, else the one kept in `<data_dir>/jwt-secret`,
/// generated (32 random bytes, hex) on first start with mode 0600.
pub fn load_or_create_secret(config: &owl_config::Config) -> anyhow::Result<Vec<u8>> {
    let configured = config.auth.jwt_secret.expose();
    if !configured.is_empty() {
        return Ok(configured.as_bytes().to_vec());
    }
    let path = config.data_dir.join("jwt-secret");
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    write_private_file_once(&path, &hex::encode(bytes))?;
    let stored = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("cannot read jwt secret {}: {e}", path.display()))?;
    let stored = stored.trim();
    if stored.len() < 32 {
        anyhow::bail!(
            "jwt secret in {} is shorter than 32 bytes; delete it to generate a new one",
            path.display()
        );
    }
    Ok(stored.as_bytes().to_vec())
}

/// Writes `contents` to `path` with mode 0600 unless the file exists. Returns whether it wrote.
pub(crate) fn write_private_file_once(path: &Path, contents: &str) -> anyhow::Result<bool> {
    owl_config::files::write_private_once(path, contents)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_file_is_private_stable_and_configurable() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = owl_config::Config {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let first = load_or_create_secret(&config).unwrap();
        let second = load_or_create_secret(&config).unwrap();
        assert_eq!(first, second, "generated once, then kept");
        assert_eq!(first.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("jwt-secret"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        config.auth.jwt_secret = owl_config::Secret::new("x".repeat(40));
        assert_eq!(
            load_or_create_secret(&config).unwrap(),
            "x".repeat(40).into_bytes()
        );
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(ceil_seconds(Duration::from_millis(1)), 1);
        assert_eq!(ceil_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(ceil_seconds(Duration::from_secs(900)), 900);
    }
}
