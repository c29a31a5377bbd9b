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
    /// The verification threads are gone (they do not end while the gate lives).
    #[error("password verification is unavailable")]
    Unavailable,
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
/// milliseconds, so a flood of logins would take gigabytes and starve everything else. The gate
/// runs verifications on `running` threads of its own (about the core count), so at most that many
/// run at once and the allocator keeps at most that many 19 MiB blocks (a thread of a general pool
/// keeps the block of its last verification); at most `waiting` more logins wait, and a login past
/// that is answered 503 with `Retry-After` before any work.
#[derive(Debug)]
pub struct VerifyGate {
    admitted: std::sync::Arc<tokio::sync::Semaphore>,
    jobs: std::sync::mpsc::SyncSender<Job>,
}

/// A password, a PHC string and where to answer whether they match.
type Job = (String, String, tokio::sync::oneshot::Sender<bool>);

/// A login admitted by the [`VerifyGate`]; dropping it makes room for the next.
#[derive(Debug)]
pub struct Admitted {
    _admitted: tokio::sync::OwnedSemaphorePermit,
    jobs: std::sync::mpsc::SyncSender<Job>,
}

impl VerifyGate {
    /// A gate running `running` verifications at once with `waiting` more queued. Its threads end
    /// when the gate is dropped.
    pub fn new(running: usize, waiting: usize) -> VerifyGate {
        let running = running.max(1);
        // Every admitted login holds a permit, so the queue never holds more than its capacity.
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(running + waiting);
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        for i in 0..running {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("owl-argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = queue.lock().map(|q| q.recv());
                        let Ok(Ok((password, hash, reply))) = job else {
                            return;
                        };
                        let _ = reply.send(verify_blocking(&password, &hash));
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a password verification thread");
            }
        }
        VerifyGate {
            admitted: std::sync::Arc::new(tokio::sync::Semaphore::new(running + waiting)),
            jobs,
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
            jobs: self.jobs.clone(),
        })
    }
}

impl Admitted {
    /// Whether `password` matches `hash`, checked on one of the gate's threads.
    pub async fn verify(&self, password: String, hash: String) -> Result<bool, PasswordError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .try_send((password, hash, reply))
            .map_err(|_| PasswordError::Unavailable)?;
        answer.await.map_err(|_| PasswordError::Unavailable)
    }
}

fn verify_blocking(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Whether `password` matches the PHC string `hash`. A malformed hash never matches.
#[cfg(test)]
pub async fn verify_password(password: String, hash: String) -> Result<bool, PasswordError> {
    Ok(tokio::task::spawn_blocking(move || verify_blocking(&password, &hash)).await?)
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
