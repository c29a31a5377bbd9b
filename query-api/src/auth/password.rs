//! Password hashing (argon2id) and the password policy.
//!
//! Parameters are argon2's defaults, which are OWASP's recommendation for argon2id: 19 MiB of
//! memory, 2 passes, 1 lane. Verification reads the parameters from the stored PHC string, so
//! raising them later keeps old hashes valid. Hashing takes tens of milliseconds of CPU, so it runs
//! on the blocking pool, never on the async workers.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;

use crate::envelope::FieldError;

/// The longest accepted password, in characters: hashing cost grows with input and nobody types
/// more.
pub const MAX_PASSWORD_CHARS: usize = 128;

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// argon2 refused the input or parameters.
    #[error("password hashing failed: {0}")]
    Hash(argon2::password_hash::Error),
    /// The blocking task panicked or was cancelled.
    #[error("password hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
pub async fn hash_password(password: String) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || hash_blocking(&password)).await?
}

fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(PasswordError::Hash)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(PasswordError::Hash)
}

/// Bounds the argon2 work of logins. Each verification holds about 19 MiB and a core for tens of
/// milliseconds, so a flood of logins would take gigabytes and starve everything else: at most
/// `running` verifications run at once (about the core count), at most `admitted` wait or run,
/// and a login past that is answered 503 with `Retry-After` before any work.
#[derive(Debug)]
pub struct VerifyGate {
    admitted: std::sync::Arc<tokio::sync::Semaphore>,
    running: std::sync::Arc<tokio::sync::Semaphore>,
}

/// A login admitted by the [`VerifyGate`]; dropping it makes room for the next.
#[derive(Debug)]
pub struct Admitted {
    _admitted: tokio::sync::OwnedSemaphorePermit,
    running: std::sync::Arc<tokio::sync::Semaphore>,
}

impl VerifyGate {
    /// A gate running `running` verifications at once with `waiting` more queued.
    pub fn new(running: usize, waiting: usize) -> VerifyGate {
        let running = running.max(1);
        VerifyGate {
            admitted: std::sync::Arc::new(tokio::sync::Semaphore::new(running + waiting)),
            running: std::sync::Arc::new(tokio::sync::Semaphore::new(running)),
        }
    }

    /// `running` verifications at once (0: one per core), four times as many waiting.
    pub fn with_limit(running: usize) -> VerifyGate {
        let running = if running == 0 {
            std::thread::available_parallelism().map_or(2, usize::from)
        } else {
            running
        };
        VerifyGate::new(running, running * 4)
    }

    /// Admits a login, or `None` when the gate is full.
    pub fn admit(&self) -> Option<Admitted> {
        let permit = self.admitted.clone().try_acquire_owned().ok()?;
        Some(Admitted {
            _admitted: permit,
            running: self.running.clone(),
        })
    }
}

impl Admitted {
    /// Whether `password` matches `hash`, once a verification slot is free.
    pub async fn verify(&self, password: String, hash: String) -> Result<bool, PasswordError> {
        let _slot = self
            .running
            .acquire()
            .await
            .expect("the verification semaphore is never closed");
        verify_password(password, hash).await
    }
}

/// Whether `password` matches the PHC string `hash`. A malformed hash never matches.
pub async fn verify_password(password: String, hash: String) -> Result<bool, PasswordError> {
    Ok(tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await?)
}

/// Checks the password policy: `min_chars` to 128 characters, at least one letter and one digit, and
/// not the login name. Returns the field error to show.
pub fn check_policy(password: &str, user_code: &str, min_chars: usize) -> Result<(), FieldError> {
    let chars = password.chars().count();
    let has_letter = password.chars().any(char::is_alphabetic);
    let has_digit = password.chars().any(|c| c.is_ascii_digit());
    let ok = chars >= min_chars
        && chars <= MAX_PASSWORD_CHARS
        && has_letter
        && has_digit
        && !password.eq_ignore_ascii_case(user_code);
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "password",
            "policy",
            format!(
                "密码长度需为 {min_chars}-{MAX_PASSWORD_CHARS} 个字符，至少包含一个字母和一个数字，且不能与用户编码相同"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_salted_and_verify() {
        let a = hash_password("Admin123".into()).await.unwrap();
        let b = hash_password("Admin123".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify_password("Admin123".into(), a.clone()).await.unwrap());
        assert!(!verify_password("admin123".into(), a).await.unwrap());
        assert!(!verify_password("x".into(), "not a hash".into()).await.unwrap());
    }

    #[test]
    fn policy_explains_itself() {
        assert!(check_policy("test123", "test001", 6).is_ok());
        assert!(check_policy("Admin123", "admin", 8).is_ok());
        let short = check_policy("ab1", "u", 8).unwrap_err();
        assert_eq!(short.field, "password");
        assert!(short.message.contains("8-128"), "{}", short.message);
        assert!(check_policy("abcdefgh", "u", 8).is_err(), "no digit");
        assert!(check_policy("12345678", "u", 8).is_err(), "no letter");
        assert!(
            check_policy("Admin123", "admin123", 8).is_err(),
            "same as the login name"
        );
        assert!(
            check_policy(&format!("a1{}", "x".repeat(200)), "u", 8).is_err(),
            "too long"
        );
    }
}
