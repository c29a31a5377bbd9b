//! First start and the `owl admin` commands, as library functions over the configuration.

use std::path::PathBuf;

use owl_config::Config;
use rand::Rng;

use crate::auth::{check_policy, hash_password, write_private_file_once};
use crate::db::{Database, DbError, NewUser, UserUpdate};
use crate::permissions::ADMIN_ROLE;

/// The login name of the first user.
pub const FIRST_ADMIN: &str = "admin";
/// File that receives a generated first admin password.
pub const INITIAL_PASSWORD_FILE: &str = "initial-admin-password";

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The password breaks the policy.
    #[error("password rejected: {0}")]
    Password(String),
    /// No role has this code.
    #[error("no role with code `{0}`")]
    UnknownRole(String),
    /// No organization has this code.
    #[error("no organization with code `{0}`")]
    UnknownOrganization(String),
    /// No user has this login name.
    #[error("no user with user_code `{0}`")]
    UnknownUser(String),
    /// The database failed or refused (a taken login name included).
    #[error(transparent)]
    Db(#[from] DbError),
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] crate::auth::PasswordError),
    /// A file could not be written.
    #[error("{0}")]
    File(String),
}

/// What the first start did about the admin user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAccount {
    /// Users already existed; nothing was created.
    Existing,
    /// `admin` was created with `auth.admin_password`.
    CreatedWithConfiguredPassword,
    /// `admin` was created with a generated password, printed once and kept in this file.
    CreatedWithGeneratedPassword {
        /// `<data_dir>/initial-admin-password`.
        file: PathBuf,
    },
}

/// The result of [`bootstrap`].
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// The migrated database.
    pub database: Database,
    /// What happened to the first admin.
    pub admin: AdminAccount,
}

/// Connects to the configured database and brings the schema up to date (migrations and the
/// permission catalogue).
pub async fn connect_and_migrate(config: &Config) -> Result<Database, DbError> {
    connect(config, true).await
}

/// Connects, applies the migrations unless the process already did, and syncs the permission
/// catalogue.
async fn connect(config: &Config, migrate: bool) -> Result<Database, DbError> {
    let database = Database::connect(&config.database_url(), config.storage.max_connections).await?;
    if migrate {
        database.migrate().await?;
    }
    database.sync_permission_catalogue().await?;
    Ok(database)
}

/// `owl admin migrate`: applies the migrations and syncs the permission catalogue.
pub async fn migrate(config: &Config) -> Result<(), AdminError> {
    let database = connect_and_migrate(config).await?;
    database.close().await;
    Ok(())
}

/// A password of 20 letters and digits, with at least one of each.
fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    loop {
        let password: String = (0..20)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        if password.chars().any(|c| c.is_ascii_digit()) && password.chars().any(|c| c.is_ascii_alphabetic()) {
            return password;
        }
    }
}

/// First start: migrates, then creates the user `admin` (role `admin`) when no user exists, with
/// `auth.admin_password` (`OWL_ADMIN_PASSWORD`) or a generated password that is printed once to
/// stdout and written to `<data_dir>/initial-admin-password` (mode 0600).
pub async fn bootstrap(config: &Config) -> anyhow::Result<Bootstrap> {
    bootstrap_with(config, false).await
}

/// [`bootstrap`] over a schema the process already brought up to date when `schema_ready`.
pub async fn bootstrap_with(config: &Config, schema_ready: bool) -> anyhow::Result<Bootstrap> {
    let database = connect(config, !schema_ready).await.map_err(|e| {
        anyhow::anyhow!(
            "while preparing the database {}: {e}",
            redact_url(&config.database_url())
        )
    })?;
    let admin = ensure_admin(config, &database).await?;
    Ok(Bootstrap { database, admin })
}

/// The URL without credentials, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

async fn ensure_admin(config: &Config, database: &Database) -> anyhow::Result<AdminAccount> {
    if database.count_users().await? > 0 {
        return Ok(AdminAccount::Existing);
    }
    let configured = config.auth.admin_password.expose();
    let (password, generated) = if configured.is_empty() {
        (generate_password(), true)
    } else {
        (configured.to_string(), false)
    };
    let request = CreateUser {
        user_code: FIRST_ADMIN.to_string(),
        username: "Administrator".to_string(),
        password: password.clone(),
        role_code: ADMIN_ROLE.to_string(),
        org_code: String::new(),
        regions: Vec::new(),
    };
    match create_user_in(config, database, &request).await {
        Ok(_) => {}
        // Another process starting at the same moment created it first.
        Err(AdminError::Db(DbError::Conflict { .. })) => return Ok(AdminAccount::Existing),
        Err(error) => return Err(anyhow::anyhow!("while creating the first admin user: {error}")),
    }
    if !generated {
        tracing::info!("created user admin with the configured auth.admin_password");
        return Ok(AdminAccount::CreatedWithConfiguredPassword);
    }
    let file = config.data_dir.join(INITIAL_PASSWORD_FILE);
    write_private_file_once(&file, &password)?;
    println!("Owl created the first user `admin` with the password: {password}");
    println!(
        "It is also in {} (readable by this user only); change it after signing in.",
        file.display()
    );
    Ok(AdminAccount::CreatedWithGeneratedPassword { file })
}

/// A user to create from the command line.
#[derive(Debug, Clone)]
pub struct CreateUser {
    /// Login name.
    pub user_code: String,
    /// Display name.
    pub username: String,
    /// Password (checked against the policy).
    pub password: String,
    /// Role code (`admin`, `ops`, `developer`, or a custom role).
    pub role_code: String,
    /// Organization code ("" for none).
    pub org_code: String,
    /// Regions ([] = all).
    pub regions: Vec<String>,
}

/// `owl admin create-user`.
pub async fn create_user(config: &Config, request: &CreateUser) -> Result<i64, AdminError> {
    let database = connect_and_migrate(config).await?;
    let result = create_user_in(config, &database, request).await;
    database.close().await;
    result
}

async fn create_user_in(
    config: &Config,
    database: &Database,
    request: &CreateUser,
) -> Result<i64, AdminError> {
    check_policy(
        &request.password,
        &request.user_code,
        config.auth.min_password_length,
    )
    .map_err(|e| AdminError::Password(e.message))?;
    let role = database
        .find_role_by_code(&request.role_code)
        .await?
        .ok_or_else(|| AdminError::UnknownRole(request.role_code.clone()))?;
    if !request.org_code.is_empty()
        && database
            .find_organization_by_code(&request.org_code)
            .await?
            .is_none()
    {
        return Err(AdminError::UnknownOrganization(request.org_code.clone()));
    }
    let user = NewUser {
        user_code: request.user_code.clone(),
        username: request.username.clone(),
        password_hash: hash_password(request.password.clone()).await?,
        org_code: request.org_code.clone(),
        role_id: role.id,
        phone: String::new(),
        address: String::new(),
        email: String::new(),
        avatar: String::new(),
        regions: request
            .regions
            .iter()
            .map(|r| crate::authz::scope::normalise_region(r))
            .collect(),
        status: 1,
    };
    Ok(database
        .insert_user(&user, chrono::Utc::now().timestamp_millis())
        .await?)
}

/// `owl admin reset-password`: sets a new password, enables the user and revokes their tokens.
pub async fn reset_password(config: &Config, user_code: &str, password: &str) -> Result<(), AdminError> {
    check_policy(password, user_code, config.auth.min_password_length)
        .map_err(|e| AdminError::Password(e.message))?;
    let database = connect_and_migrate(config).await?;
    let result = async {
        let user = database
            .find_user_by_code(user_code)
            .await?
            .ok_or_else(|| AdminError::UnknownUser(user_code.to_string()))?;
        let update = UserUpdate {
            password_hash: Some(hash_password(password.to_string()).await?),
            status: Some(1),
            revoke_tokens: true,
            ..UserUpdate::default()
        };
        database
            .update_user(user.id, &update, chrono::Utc::now().timestamp_millis())
            .await?;
        Ok(())
    }
    .await;
    database.close().await;
    result
}

/// The organizations of the admin API's examples, as its create example writes them.
pub const DEMO_ORGANIZATIONS: &[(&str, &str, &str, i64, &str)] = &[
    ("0501", "广东省电力公司", "0", 1, ""),
    ("050101", "广州供电局", "0501", 2, ""),
    ("050102", "深圳供电局", "0501", 2, "深圳供电局"),
];

/// `owl up --demo`: the directory the seed examples name, once (after the first admin, who is
/// created as on any first start): the organizations 0501, 050101 and 050102 and the user
/// `test001` (password `test123`, role developer, of 050101), each exactly as the admin API's
/// create examples write them, so that sending those examples again answers the stored resource.
pub async fn load_demo_directory(config: &Config) -> anyhow::Result<()> {
    let Bootstrap { database, .. } = bootstrap_with(config, true).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let result = async {
        for (code, name, parent, level, description) in DEMO_ORGANIZATIONS {
            if database.find_organization_by_code(code).await?.is_none() {
                let org = crate::db::NewOrganization {
                    org_code: (*code).to_string(),
                    org_name: (*name).to_string(),
                    parent_code: (*parent).to_string(),
                    org_level: *level,
                    description: (*description).to_string(),
                    status: 1,
                };
                database.insert_organization(&org, now).await?;
            }
        }
        if database.find_user_by_code("test001").await?.is_none() {
            let role = database
                .find_role_by_code("developer")
                .await?
                .ok_or_else(|| anyhow::anyhow!("the built-in role developer is missing"))?;
            let user = NewUser {
                user_code: "test001".into(),
                username: "测试用户".into(),
                password_hash: hash_password("test123".into()).await?,
                org_code: "050101".into(),
                role_id: role.id,
                phone: "13800138001".into(),
                address: "测试地址".into(),
                email: String::new(),
                avatar: String::new(),
                regions: Vec::new(),
                status: 1,
            };
            database.insert_user(&user, now).await?;
        }
        anyhow::Ok(())
    }
    .await;
    database.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_pass_the_policy() {
        for _ in 0..50 {
            let password = generate_password();
            assert_eq!(password.len(), 20);
            assert!(check_policy(&password, "admin", 8).is_ok(), "{password}");
        }
    }

    #[test]
    fn urls_lose_their_credentials_in_messages() {
        assert_eq!(
            redact_url("postgres://user:pw@host:5432/db"),
            "postgres://***@host:5432/db"
        );
        assert_eq!(
            redact_url("sqlite://./data/owl.db?mode=rwc"),
            "sqlite://./data/owl.db?mode=rwc"
        );
    }
}
