//! File identity by content, not by path or inode.
//!
//! A file is identified by a 128-bit hash of its first line (through the newline, at most
//! [`HEAD_BYTES`] bytes). That identity survives what rotation does to paths and inodes:
//! - rename-and-create: the renamed file keeps its first line, the new file has another one;
//! - copytruncate: the copy has the first line of the original (so its checkpoint applies to the
//!   copy, and the rest of an unfinished file is read from there), the truncated file gets a new
//!   first line once it is written again.
//!
//! A file whose first line is not complete yet (and shorter than [`HEAD_BYTES`]) has no identity
//! and is not read until it has one. Two files whose first lines are byte-for-byte equal share an
//! identity, as in Vector's checksum strategy: log lines normally start with a timestamp, which
//! makes that rare.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Bytes of a file's head that take part in its fingerprint.
pub(crate) const HEAD_BYTES: usize = 1024;

/// A file identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 16]);

impl Fingerprint {
    /// The fingerprint of a file whose first bytes are `head` (as many as could be read, up to
    /// [`HEAD_BYTES`]); `None` while the first line is incomplete.
    pub fn of_head(head: &[u8]) -> Option<Fingerprint> {
        let head = &head[..head.len().min(HEAD_BYTES)];
        let identity = match memchr::memchr(b'\n', head) {
            Some(end) => &head[..=end],
            None if head.len() == HEAD_BYTES => head,
            None => return None,
        };
        Some(Fingerprint(xxhash_rust::xxh3::xxh3_128(identity).to_be_bytes()))
    }

    /// Reads the head of an open file and fingerprints it.
    pub fn of_file(file: &File) -> io::Result<Option<Fingerprint>> {
        let mut head = [0u8; HEAD_BYTES];
        let mut filled = 0;
        while filled < HEAD_BYTES {
            let n = file.read_at(&mut head[filled..], filled as u64)?;
            if n == 0 {
                break;
            }
            filled += n;
            if memchr::memchr(b'\n', &head[..filled]).is_some() {
                break;
            }
        }
        Ok(Fingerprint::of_head(&head[..filled]))
    }

    /// Parses the hex form.
    pub fn from_hex(text: &str) -> Option<Fingerprint> {
        let bytes = hex::decode(text).ok()?;
        Some(Fingerprint(bytes.try_into().ok()?))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn needs_a_complete_first_line() {
        assert_eq!(Fingerprint::of_head(b""), None);
        assert_eq!(Fingerprint::of_head(b"partial"), None);
        let a = Fingerprint::of_head(b"first\n").unwrap();
        assert_eq!(Fingerprint::of_head(b"first\nsecond\nthird"), Some(a));
        assert_ne!(Fingerprint::of_head(b"other\n"), Some(a));
    }

    #[test]
    fn long_first_lines_use_the_head() {
        let long = vec![b'x'; HEAD_BYTES + 10];
        let fp = Fingerprint::of_head(&long).unwrap();
        assert_eq!(Fingerprint::of_head(&long[..HEAD_BYTES]), Some(fp));
    }

    #[test]
    fn copies_share_and_rewrites_change_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"2025-01-01 first line\nsecond\n").unwrap();
        let original = Fingerprint::of_file(&File::open(&path).unwrap())
            .unwrap()
            .unwrap();
        std::fs::copy(&path, dir.path().join("a.log.1")).unwrap();
        let copy = Fingerprint::of_file(&File::open(dir.path().join("a.log.1")).unwrap()).unwrap();
        assert_eq!(copy, Some(original));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.write_all(b"2025-01-02 new first line\n").unwrap();
        let rewritten = Fingerprint::of_file(&File::open(&path).unwrap())
            .unwrap()
            .unwrap();
        assert_ne!(rewritten, original);
        assert_eq!(Fingerprint::from_hex(&original.to_string()), Some(original));
    }
}
