//! The agent's state directory.
//!
//! Layout of `agent_data_dir()`:
//! - `state/`: the sled database (trees `buffer`, `meta`, `checkpoints`; see `buffer.rs` and
//!   `checkpoint.rs` for their formats);
//! - `agent_id`: the agent's stable id (one line), written once with temp file, fsync, rename and
//!   a directory fsync;
//! - `dead-letter/`: batches and records the collector refused (see `deadletter.rs`).
//!
//! A state database that sled reports as corrupt is moved aside to `state.corrupt-<unix time>`
//! and a fresh one is started: files are then read again from their beginning and the
//! collector recognises what it already has by the records' ids. Crash-looping on a broken
//! database would lose more.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Errors of the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The directory or a file in it could not be created or read.
    #[error("agent state {path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The sled database could not be opened.
    #[error("agent state database {path}: {source}")]
    Db {
        /// The database directory.
        path: PathBuf,
        /// sled's error.
        source: sled::Error,
    },
}

/// Opens (or creates) the state database, waiting up to `lock_wait` for another agent instance on
/// the same directory to let go of it (a previous run in the same process that is still
/// stopping).
pub(crate) fn open_db(
    data_dir: &Path,
    cache_bytes: u64,
    lock_wait: Duration,
) -> Result<sled::Db, StateError> {
    owl_config::files::private_dir(data_dir).map_err(|source| StateError::Io {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let path = data_dir.join("state");
    let deadline = Instant::now() + lock_wait;
    loop {
        let result = sled::Config::new()
            .path(&path)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(500))
            .mode(sled::Mode::LowSpace)
            .open();
        match result {
            Ok(db) => return Ok(db),
            Err(sled::Error::Corruption { .. }) | Err(sled::Error::Unsupported(_)) => {
                let aside = data_dir.join(format!(
                    "state.corrupt-{}",
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs())
                ));
                tracing::error!(
                    path = %path.display(),
                    moved_to = %aside.display(),
                    "agent state database is corrupt; moved aside, files will be read again from their beginning"
                );
                std::fs::rename(&path, &aside).map_err(|source| StateError::Io {
                    path: path.clone(),
                    source,
                })?;
            }
            Err(sled::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock || is_lock_error(&e) => {
                if Instant::now() >= deadline {
                    return Err(StateError::Db {
                        path,
                        source: sled::Error::Io(e),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(source) => return Err(StateError::Db { path, source }),
        }
    }
}

fn is_lock_error(e: &std::io::Error) -> bool {
    e.to_string().contains("lock")
}

/// The agent id: the configured one, else the one kept in `agent_id`, else a new one saved there.
pub(crate) fn agent_id(data_dir: &Path, configured: &str) -> Result<String, StateError> {
    if !configured.trim().is_empty() {
        return Ok(configured.trim().to_string());
    }
    let path = data_dir.join("agent_id");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(StateError::Io { path, source }),
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    write_atomically(&path, format!("{id}\n").as_bytes())
        .map_err(|source| StateError::Io { path, source })?;
    Ok(id)
}

/// Writes a small file so that a crash leaves either the old or the new content: temp file,
/// fsync, rename, fsync of the directory.
pub(crate) fn write_atomically(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(content)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_id_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let id = agent_id(dir.path(), "").unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(agent_id(dir.path(), "").unwrap(), id);
        assert_eq!(agent_id(dir.path(), " node-7 ").unwrap(), "node-7");
    }

    #[test]
    fn a_locked_database_is_waited_for_then_reported() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path(), 1 << 20, Duration::from_millis(10)).unwrap();
        let err = open_db(dir.path(), 1 << 20, Duration::from_millis(50)).unwrap_err();
        assert!(err.to_string().contains("state"), "{err}");
        drop(db);
        open_db(dir.path(), 1 << 20, Duration::from_millis(10)).unwrap();
    }
}
