//! Per-file checkpoints: how far each file identity has been acknowledged by the collector.
//!
//! Design note
//! - Stored in the sled tree `checkpoints` of the agent's state database, keyed by the 16 bytes of
//!   the file's [`Fingerprint`]. Value (version 1, little endian): `u8 version = 1`,
//!   `u64 offset`, `u64 updated_unix_s`.
//! - Invariant: `offset` is the byte position right after the last record of that file the
//!   collector acknowledged, and every record before it was acknowledged too (the shipper applies
//!   checkpoints in batch order, see `ship.rs`). A checkpoint never moves backwards.
//! - Recovery: after any stop, kill -9 included, a file resumes at its checkpoint. Records between
//!   the checkpoint and what had really been sent are sent again with the same ids, which the
//!   collector recognises. A checkpoint write lost in a crash only means more such re-sends.
//! - Entries of files not seen for [`RETENTION_S`] are pruned at start.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::fingerprint::Fingerprint;

const VERSION: u8 = 1;
const VALUE_LEN: usize = 17;
/// Checkpoints untouched for this long are forgotten (the file is long gone).
pub(crate) const RETENTION_S: u64 = 30 * 24 * 3600;

/// A checkpoint as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub offset: u64,
    pub updated_unix_s: u64,
}

impl Checkpoint {
    pub(crate) fn encode(&self) -> [u8; VALUE_LEN] {
        let mut out = [0u8; VALUE_LEN];
        out[0] = VERSION;
        out[1..9].copy_from_slice(&self.offset.to_le_bytes());
        out[9..17].copy_from_slice(&self.updated_unix_s.to_le_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Checkpoint> {
        if bytes.len() != VALUE_LEN || bytes[0] != VERSION {
            return None;
        }
        Some(Checkpoint {
            offset: u64::from_le_bytes(bytes[1..9].try_into().ok()?),
            updated_unix_s: u64::from_le_bytes(bytes[9..17].try_into().ok()?),
        })
    }
}

/// The checkpoint tree.
#[derive(Clone)]
pub(crate) struct CheckpointStore {
    tree: sled::Tree,
}

fn now_unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl CheckpointStore {
    pub(crate) fn new(tree: sled::Tree) -> CheckpointStore {
        CheckpointStore { tree }
    }

    /// The acknowledged offset of a file identity.
    pub(crate) fn get(&self, fp: &Fingerprint) -> Result<Option<u64>, sled::Error> {
        Ok(self
            .tree
            .get(fp.0)?
            .and_then(|v| Checkpoint::decode(&v))
            .map(|c| c.offset))
    }

    /// Moves a checkpoint forward to `offset` (never backwards).
    pub(crate) fn advance(&self, fp: &Fingerprint, offset: u64) -> Result<(), sled::Error> {
        let now = now_unix_s();
        self.tree.fetch_and_update(fp.0, |old| {
            let current = old.and_then(Checkpoint::decode).map_or(0, |c| c.offset);
            Some(
                Checkpoint {
                    offset: current.max(offset),
                    updated_unix_s: now,
                }
                .encode()
                .to_vec(),
            )
        })?;
        Ok(())
    }

    /// Forgets checkpoints not updated for [`RETENTION_S`]; returns how many.
    pub(crate) fn prune(&self) -> Result<usize, sled::Error> {
        let cutoff = now_unix_s().saturating_sub(RETENTION_S);
        let mut removed = 0;
        for item in self.tree.iter() {
            let (key, value) = item?;
            let stale = Checkpoint::decode(&value).is_none_or(|c| c.updated_unix_s < cutoff);
            if stale {
                self.tree.remove(key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_is_stable() {
        // Golden bytes of format version 1: a change here breaks every agent's restart.
        let cp = Checkpoint {
            offset: 0x0102,
            updated_unix_s: 0x0a0b,
        };
        assert_eq!(hex::encode(cp.encode()), "0102010000000000000b0a000000000000");
        assert_eq!(Checkpoint::decode(&cp.encode()), Some(cp));
        assert_eq!(Checkpoint::decode(b"\x02garbage"), None);
    }

    #[test]
    fn advances_only_forward_and_prunes_stale_entries() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = CheckpointStore::new(db.open_tree("checkpoints").unwrap());
        let fp = Fingerprint([7; 16]);
        assert_eq!(store.get(&fp).unwrap(), None);
        store.advance(&fp, 100).unwrap();
        store.advance(&fp, 50).unwrap();
        assert_eq!(store.get(&fp).unwrap(), Some(100));
        let stale = Fingerprint([8; 16]);
        store
            .tree
            .insert(
                stale.0,
                &Checkpoint {
                    offset: 1,
                    updated_unix_s: 1,
                }
                .encode(),
            )
            .unwrap();
        store.tree.insert([9u8; 16], &b"junk"[..]).unwrap();
        assert_eq!(store.prune().unwrap(), 2);
        assert_eq!(store.get(&fp).unwrap(), Some(100));
    }
}
