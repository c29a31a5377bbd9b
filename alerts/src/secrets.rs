//! Channel secrets at rest: webhook URLs, the Feishu signing secret and the SMTP password are
//! stored in SQL encrypted with XChaCha20-Poly1305 under the node's secret key
//! (`storage.secret_key` / `OWL_SECRET_KEY`, else generated once into `<data_dir>/secret-key`,
//! mode 0600). Each value is bound to its field (associated data), so a ciphertext cannot be moved
//! to another field. A stored value without the `owlenc:v1:` prefix is a plaintext written before
//! encryption existed: it is read as is and encrypted by the next save.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

const PREFIX: &str = "owlenc:v1:";
const NONCE_BYTES: usize = 24;
/// The generated key's file in the data directory.
pub const SECRET_KEY_FILE: &str = "secret-key";

/// Why a secret could not be read or the key loaded.
#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    /// The key is not 64 hex characters.
    #[error("{origin}: the secret key must be 64 hex characters (32 bytes)")]
    BadKey {
        /// Where the key came from.
        origin: String,
    },
    /// The key file could not be read or written.
    #[error("cannot use the secret key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A stored value does not decrypt under this key (another key, or tampering).
    #[error("{field}: the stored secret does not decrypt with this node's secret key (storage.secret_key)")]
    Undecryptable {
        /// The field.
        field: String,
    },
}

/// Seals and opens channel secrets.
#[derive(Clone)]
pub struct SecretCipher {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretCipher { .. }")
    }
}

fn parse_key(hex_key: &str, origin: &str) -> Result<[u8; 32], CipherError> {
    let bad = || CipherError::BadKey {
        origin: origin.to_string(),
    };
    let bytes = hex::decode(hex_key.trim()).map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

impl SecretCipher {
    /// A cipher under `key`.
    pub fn new(key: [u8; 32]) -> SecretCipher {
        SecretCipher {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// A cipher under a fresh random key (tests, tools).
    pub fn random() -> SecretCipher {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        SecretCipher::new(key)
    }

    /// The node's cipher: `storage.secret_key` when set, else the key in
    /// `<data_dir>/secret-key`, generated (0600) on first use.
    pub fn from_config(config: &owl_config::Config) -> Result<SecretCipher, CipherError> {
        let configured = config.storage.secret_key.expose();
        if !configured.is_empty() {
            return Ok(SecretCipher::new(parse_key(configured, "storage.secret_key")?));
        }
        let path = config.data_dir.join(SECRET_KEY_FILE);
        let file_error = |source| CipherError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        let mut fresh = [0u8; 32];
        rand::rng().fill_bytes(&mut fresh);
        owl_config::files::write_private_once(&path, &hex::encode(fresh)).map_err(file_error)?;
        let stored = std::fs::read_to_string(&path).map_err(file_error)?;
        Ok(SecretCipher::new(parse_key(
            &stored,
            &path.display().to_string(),
        )?))
    }

    /// The stored form of `plaintext` in `field`; an empty value stays empty.
    pub fn seal(&self, field: &str, plaintext: &str) -> String {
        if plaintext.is_empty() {
            return String::new();
        }
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: field.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message of this size");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    /// The plaintext of a stored value of `field`.
    pub fn open(&self, field: &str, stored: &str) -> Result<String, CipherError> {
        let Some(encoded) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let undecryptable = || CipherError::Undecryptable {
            field: field.to_string(),
        };
        let bytes = STANDARD.decode(encoded).map_err(|_| undecryptable())?;
        if bytes.len() < NONCE_BYTES {
            return Err(undecryptable());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| undecryptable())?;
        let plain = self
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: field.as_bytes(),
                },
            )
            .map_err(|_| undecryptable())?;
        String::from_utf8(plain).map_err(|_| undecryptable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_bound_to_their_field_and_key() {
        let cipher = SecretCipher::random();
        let sealed = cipher.seal("notifications.email.password", "hunter2");
        assert!(
            sealed.starts_with(PREFIX) && !sealed.contains("hunter2"),
            "{sealed}"
        );
        assert_ne!(
            sealed,
            cipher.seal("notifications.email.password", "hunter2"),
            "fresh nonces"
        );
        assert_eq!(
            cipher.open("notifications.email.password", &sealed).unwrap(),
            "hunter2"
        );
        assert!(
            cipher.open("notifications.feishu.secret", &sealed).is_err(),
            "bound to its field"
        );
        assert!(
            SecretCipher::random()
                .open("notifications.email.password", &sealed)
                .is_err()
        );
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push('A');
        assert!(cipher.open("notifications.email.password", &tampered).is_err());
        assert_eq!(cipher.seal("x", ""), "");
        assert_eq!(cipher.open("x", "legacy plaintext").unwrap(), "legacy plaintext");
    }

    #[test]
    fn the_key_comes_from_config_or_a_private_generated_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = owl_config::Config {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let first = SecretCipher::from_config(&config).unwrap();
        let sealed = first.seal("f", "v");
        let again = SecretCipher::from_config(&config).unwrap();
        assert_eq!(
            again.open("f", &sealed).unwrap(),
            "v",
            "the generated key is kept"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        config.storage.secret_key = owl_config::Secret::new("ab".repeat(32));
        let configured = SecretCipher::from_config(&config).unwrap();
        assert!(configured.open("f", &sealed).is_err());
        config.storage.secret_key = owl_config::Secret::new("short");
        assert!(SecretCipher::from_config(&config).is_err());
    }
}
