//! Agent tokens: which bearer tokens the ingest endpoint accepts, and the generated token of a
//! node without configured ones.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use owl_config::{Config, Secret};

use crate::agent_tokens::{AgentIdentity, AgentTokenStore, digest};
use rand::Rng;
use rand::distr::Alphanumeric;

/// Name of the generated token file in the data directory.
pub const AGENT_TOKEN_FILE: &str = "agent-token";
/// Characters of a generated token (about 285 bits of entropy).
const GENERATED_LEN: usize = 48;
/// Shortest token accepted from the token file (the config requires as much of its tokens).
const MIN_LEN: usize = 16;

/// The token agents should send: the first of `collector.agent_tokens` (where `OWL_AGENT_TOKEN`
/// lands), or else the one in `<data_dir>/agent-token`, generated (random, file mode 0600) on
/// first use. `owl up` calls it so that the local agent and the collector agree, and remote agents
/// can be given the same token.
pub fn ensure_agent_token(config: &Config) -> anyhow::Result<Secret> {
    if let Some(token) = config.collector.agent_tokens.first() {
        return Ok(token.clone());
    }
    let path = config.data_dir.join(AGENT_TOKEN_FILE);
    if let Some(token) = read_token(&path)? {
        return Ok(token);
    }
    owl_config::files::private_dir(&config.data_dir)
        .with_context(|| format!("while creating the data directory {}", config.data_dir.display()))?;
    let token: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(GENERATED_LEN)
        .map(char::from)
        .collect();
    // Written to a private temporary file, then hard-linked into place: the link fails if another
    // process (the agent of `owl up` starting beside the collector) created the file first, and a
    // crash never leaves a partial token under the real name.
    let temp = temp_path(&path);
    write_private(&temp, &token).with_context(|| format!("while writing {}", temp.display()))?;
    let linked = std::fs::hard_link(&temp, &path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            if let Ok(dir) = std::fs::File::open(&config.data_dir) {
                let _ = dir.sync_all();
            }
            tracing::info!(path = %path.display(), "generated the agent token");
            Ok(Secret::new(token))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_token(&path)?.with_context(|| format!("{} vanished while being created", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("while creating {}", path.display())),
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let suffix: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(8)
        .map(char::from)
        .collect();
    path.with_file_name(format!(".{AGENT_TOKEN_FILE}.{suffix}.tmp"))
}

fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(token.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Reads the token file; `None` if there is none.
fn read_token(path: &Path) -> anyhow::Result<Option<Secret>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("while reading the agent token {}", path.display())),
    };
    let token = text.trim();
    if token.len() < MIN_LEN {
        bail!(
            "{} holds a token of {} characters, fewer than {MIN_LEN}; put a longer one there or delete the file to generate one",
            path.display(),
            token.len()
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "the agent token file is readable by other users; chmod 600 it");
        }
    }
    Ok(Some(Secret::new(token)))
}

/// The tokens the ingest endpoint accepts, kept as SHA-256 digests: the shared ones of the
/// configuration, and the per-agent ones of the `agent_tokens` table (see [`crate::agent_tokens`]).
pub(crate) struct AgentTokens {
    digests: Vec<[u8; 32]>,
    issued: std::sync::RwLock<std::collections::HashMap<[u8; 32], AgentIdentity>>,
    /// The control-plane database, connected on first use (from async code: the pool needs a
    /// runtime).
    database_url: String,
    store: tokio::sync::OnceCell<Option<AgentTokenStore>>,
    /// When the table was last read; one reader at a time.
    refreshed: tokio::sync::Mutex<Option<std::time::Instant>>,
}

/// How soon a token nobody knows may make the table be read again.
const MISS_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

impl std::fmt::Debug for AgentTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AgentTokens({} tokens)", self.digests.len())
    }
}

impl AgentTokens {
    /// Every configured token, or the generated one when none is configured.
    pub(crate) fn from_config(config: &Config) -> anyhow::Result<AgentTokens> {
        let tokens = if config.collector.agent_tokens.is_empty() {
            vec![ensure_agent_token(config)?]
        } else {
            config.collector.agent_tokens.clone()
        };
        Ok(AgentTokens {
            digests: tokens.iter().map(|t| digest(t.expose())).collect(),
            issued: Default::default(),
            database_url: config.database_url(),
            store: tokio::sync::OnceCell::new(),
            refreshed: tokio::sync::Mutex::new(None),
        })
    }

    /// Who an `Authorization` header's token speaks for, or `None` when it is no token in force.
    /// A shared token is [`AgentIdentity::shared`]; a per-agent one names its node.
    pub(crate) async fn identify_header(&self, value: Option<&str>) -> Option<AgentIdentity> {
        let token = presented_token(value?)?;
        let token = token.as_str();
        if self.verify(token) {
            return Some(AgentIdentity::shared());
        }
        let presented = digest(token);
        self.refresh_if_older(crate::agent_tokens::REFRESH).await;
        if let Some(identity) = self.issued(&presented) {
            return Some(identity);
        }
        // A token created a moment ago works on its first request; garbage makes the table be
        // read at most once a second.
        self.refresh_if_older(MISS_REFRESH).await;
        self.issued(&presented)
    }

    fn issued(&self, presented: &[u8; 32]) -> Option<AgentIdentity> {
        self.issued
            .read()
            .expect("agent token lock poisoned")
            .get(presented)
            .cloned()
    }

    async fn refresh_if_older(&self, age: std::time::Duration) {
        let store = self
            .store
            .get_or_init(|| async {
                AgentTokenStore::connect_lazy(&self.database_url)
                    .map_err(|error| {
                        tracing::warn!(%error, "per-agent tokens are unavailable; only the shared tokens are accepted");
                    })
                    .ok()
            })
            .await;
        let Some(store) = store else { return };
        let mut refreshed = self.refreshed.lock().await;
        if refreshed.is_some_and(|at| at.elapsed() < age) {
            return;
        }
        match store.in_force().await {
            Ok(tokens) => {
                *self.issued.write().expect("agent token lock poisoned") = tokens.into_iter().collect();
            }
            // No table yet (a database not migrated) or a database away: keep what is known.
            Err(error) => tracing::debug!(%error, "could not read the per-agent tokens"),
        }
        *refreshed = Some(std::time::Instant::now());
    }

    /// Whether `presented` is one of the tokens. Comparing fixed-size digests with a fold that
    /// looks at every byte of every token takes the same time whatever matches, so the answer's
    /// timing says nothing about how close a guess was.
    pub(crate) fn verify(&self, presented: &str) -> bool {
        let presented = digest(presented);
        let mut matched = 0u8;
        for known in &self.digests {
            let diff = known
                .iter()
                .zip(&presented)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            matched |= u8::from(diff == 0);
        }
        matched == 1
    }

    /// Checks an `Authorization` header value (`Bearer <token>`, scheme case-insensitive).
    #[cfg(test)]
    pub(crate) fn verify_header(&self, value: Option<&str>) -> bool {
        value
            .and_then(presented_token)
            .is_some_and(|token| self.verify(&token))
    }
}

/// The token of an `Authorization` header, as the shippers send it: `Bearer <token>`; HTTP Basic
/// with the token as the password (any user name), for the Loki and Elasticsearch clients that
/// offer nothing else; or Elasticsearch's `ApiKey <token>` (also as base64 of `id:token`).
fn presented_token(value: &str) -> Option<String> {
    use base64::Engine as _;
    let (scheme, credentials) = value.trim().split_once(' ')?;
    let credentials = credentials.trim();
    let decoded = || {
        base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(credentials.to_string())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let pair = decoded()?;
        let (_, password) = pair.split_once(':')?;
        Some(password.to_string())
    } else if scheme.eq_ignore_ascii_case("apikey") {
        match decoded().and_then(|pair| pair.split_once(':').map(|(_, key)| key.to_string())) {
            Some(key) => Some(key),
            None => Some(credentials.to_string()),
        }
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, tokens: &[&str]) -> Config {
        let mut config = Config {
            data_dir: dir.to_path_buf(),
            ..Config::default()
        };
        config.collector.agent_tokens = tokens.iter().map(|t| Secret::new(*t)).collect();
        config
    }

    #[test]
    fn tokens_are_read_from_bearer_basic_and_api_key_headers() {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(presented_token("Bearer tok-1").as_deref(), Some("tok-1"));
        assert_eq!(presented_token("bearer  tok-1 ").as_deref(), Some("tok-1"));
        assert_eq!(
            presented_token(&format!("Basic {}", b64("promtail:tok-2"))).as_deref(),
            Some("tok-2")
        );
        assert_eq!(
            presented_token(&format!("Basic {}", b64(":tok:3"))).as_deref(),
            Some("tok:3")
        );
        assert_eq!(presented_token("ApiKey tok-4").as_deref(), Some("tok-4"));
        assert_eq!(
            presented_token(&format!("ApiKey {}", b64("id1:tok-5"))).as_deref(),
            Some("tok-5")
        );
        assert_eq!(presented_token(&format!("Basic {}", b64("no-colon"))), None);
        assert_eq!(presented_token("Basic %%%"), None);
        assert_eq!(presented_token("Digest x"), None);
        assert_eq!(presented_token("Bearer"), None);
    }

    #[test]
    fn configured_tokens_win_and_no_file_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), &["configured-token-0123456789"]);
        assert_eq!(
            ensure_agent_token(&config).unwrap().expose(),
            "configured-token-0123456789"
        );
        assert!(!dir.path().join(AGENT_TOKEN_FILE).exists());
    }

    #[test]
    fn a_token_is_generated_once_privately_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(&dir.path().join("data"), &[]);
        let first = ensure_agent_token(&config).unwrap();
        assert!(first.expose().len() >= 32);
        assert!(first.expose().chars().all(|c| c.is_ascii_alphanumeric()));
        let path = config.data_dir.join(AGENT_TOKEN_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert_eq!(ensure_agent_token(&config).unwrap(), first);
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(&config.data_dir).unwrap().count(), 1);
    }

    #[test]
    fn concurrent_first_starts_agree_on_one_token() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), &[]);
        let tokens: Vec<Secret> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| ensure_agent_token(&config).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(tokens.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn a_short_token_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(AGENT_TOKEN_FILE), "short\n").unwrap();
        let err = ensure_agent_token(&config(dir.path(), &[])).unwrap_err();
        assert!(err.to_string().contains(AGENT_TOKEN_FILE), "{err}");
    }

    #[test]
    fn verification_accepts_any_configured_token_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = AgentTokens::from_config(&config(
            dir.path(),
            &["first-token-0123456789", "second-token-0123456789"],
        ))
        .unwrap();
        assert!(tokens.verify("first-token-0123456789"));
        assert!(tokens.verify("second-token-0123456789"));
        assert!(!tokens.verify("first-token-012345678"));
        assert!(!tokens.verify(""));
        assert!(tokens.verify_header(Some("Bearer second-token-0123456789")));
        assert!(tokens.verify_header(Some("bearer  first-token-0123456789")));
        assert!(!tokens.verify_header(Some("Basic first-token-0123456789")));
        assert!(!tokens.verify_header(Some("first-token-0123456789")));
        assert!(!tokens.verify_header(None));
    }
}
