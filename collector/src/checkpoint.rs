//! The index checkpoint: the highest WAL position whose entry is in a committed index.
//!
//! # Format
//!
//! `<data_dir>/collector/wal/checkpoint` holds one JSON object, `{"version":1,"committed_lsn":N}`.
//!
//! # Invariants
//!
//! - Every WAL entry with an LSN at or below `committed_lsn` is in the committed index (and its
//!   record ids in the synced dedup journal): the checkpoint is written only after both.
//! - The value never goes down.
//!
//! # Writing and recovery
//!
//! A write goes to `checkpoint.tmp`, is fsynced, renamed over `checkpoint`, and the directory is
//! fsynced. A crash can leave a complete `checkpoint.tmp` that was not renamed yet (or a partial
//! one that does not parse): recovery reads both files and takes the highest valid value, since any
//! value that was completely written was true when it was written.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::wal::{WalError, sync_dir};

const FILE: &str = "checkpoint";
const TEMP_FILE: &str = "checkpoint.tmp";
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    version: u32,
    committed_lsn: u64,
}

/// Reads the checkpoint of `dir`; 0 when there is none yet.
pub(crate) fn read(dir: &Path) -> Result<u64, WalError> {
    let mut best = None;
    for name in [FILE, TEMP_FILE] {
        let path = dir.join(name);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(WalError::Io { path, source }),
        };
        match serde_json::from_slice::<Stored>(&bytes) {
            Ok(stored) if stored.version == VERSION => best = best.max(Some(stored.committed_lsn)),
            Ok(stored) => {
                return Err(WalError::Io {
                    path,
                    source: std::io::Error::other(format!("unknown checkpoint version {}", stored.version)),
                });
            }
            // A torn temp file: the previous value in `checkpoint` stands.
            Err(_) if name == TEMP_FILE => {}
            Err(e) => {
                return Err(WalError::Io {
                    path,
                    source: std::io::Error::other(e),
                });
            }
        }
    }
    Ok(best.unwrap_or(0))
}

/// Durably records `committed_lsn`.
pub(crate) fn write(dir: &Path, committed_lsn: u64) -> Result<(), WalError> {
    let temp = dir.join(TEMP_FILE);
    let bytes = serde_json::to_vec(&Stored {
        version: VERSION,
        committed_lsn,
    })
    .expect("plain struct serialises");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WalError::Io { path, source }
    };
    let mut file = File::create(&temp).map_err(io(&temp))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(io(&temp))?;
    drop(file);
    let path = dir.join(FILE);
    std::fs::rename(&temp, &path).map_err(io(&path))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_checkpoint_is_zero_and_writes_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), 0);
        write(dir.path(), 42).unwrap();
        assert_eq!(read(dir.path()).unwrap(), 42);
        write(dir.path(), 43).unwrap();
        assert_eq!(read(dir.path()).unwrap(), 43);
        assert!(!dir.path().join(TEMP_FILE).exists());
    }

    // Golden: the on-disk shape.
    #[test]
    fn checkpoint_file_shape_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 7).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FILE)).unwrap(),
            r#"{"version":1,"committed_lsn":7}"#
        );
    }

    #[test]
    fn a_complete_temp_file_left_by_a_crash_wins_and_a_torn_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 10).unwrap();
        std::fs::write(dir.path().join(TEMP_FILE), r#"{"version":1,"committed_lsn":12}"#).unwrap();
        assert_eq!(read(dir.path()).unwrap(), 12);
        std::fs::write(dir.path().join(TEMP_FILE), r#"{"version":1,"commit"#).unwrap();
        assert_eq!(read(dir.path()).unwrap(), 10);
    }

    #[test]
    fn a_corrupt_checkpoint_is_an_error_not_a_silent_zero() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "garbage").unwrap();
        assert!(read(dir.path()).is_err());
    }
}
