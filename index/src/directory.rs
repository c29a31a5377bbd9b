//! The directory of a partition: tantivy's `MmapDirectory`, except that the document stores
//! (`*.store`) are read with `pread`.
//!
//! A trace lookup or a page of results fetches a few documents from each of many segments. Through
//! the memory map each fetch of a block not in memory is a major page fault, served with the
//! kernel's read-ahead around it, and a lookup over about 100 segments took 4-11 ms at p99 on the
//! benchmark's 5M records. `pread` reads exactly the block the store reader asks for (it keeps the
//! blocks it decompressed in its own cache), through the page cache like any read. Postings, term
//! dictionaries and fast fields stay memory-mapped: they are read in long runs, where the map wins.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tantivy::HasLen;
use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    Directory, DirectoryLock, FileHandle, Lock, MmapDirectory, OwnedBytes, WatchCallback, WatchHandle,
    WritePtr,
};

/// A partition's directory.
#[derive(Clone, Debug)]
pub(crate) struct PartitionDirectory {
    root: PathBuf,
    mmap: MmapDirectory,
}

impl PartitionDirectory {
    /// The directory at `root`, which must exist.
    pub(crate) fn open(
        root: &Path,
    ) -> Result<PartitionDirectory, tantivy::directory::error::OpenDirectoryError> {
        Ok(PartitionDirectory {
            root: root.to_path_buf(),
            mmap: MmapDirectory::open(root)?,
        })
    }
}

/// Whether tantivy's file `path` is a segment's document store.
fn is_store(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "store")
}

/// A file read with `pread`, its length fixed when opened (segment files never change).
#[derive(Debug)]
struct PreadFile {
    file: File,
    len: usize,
}

impl HasLen for PreadFile {
    fn len(&self) -> usize {
        self.len
    }
}

impl FileHandle for PreadFile {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        use std::os::unix::fs::FileExt;
        if range.end > self.len || range.start > range.end {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("range {range:?} outside a file of {} bytes", self.len),
            ));
        }
        let mut buffer = vec![0u8; range.len()];
        self.file.read_exact_at(&mut buffer, range.start as u64)?;
        Ok(OwnedBytes::new(buffer))
    }
}

impl Directory for PartitionDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        if !is_store(path) {
            return self.mmap.get_file_handle(path);
        }
        let full = self.root.join(path);
        let file = File::open(&full).map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => OpenReadError::FileDoesNotExist(path.to_path_buf()),
            _ => OpenReadError::wrap_io_error(error, path.to_path_buf()),
        })?;
        let len = file
            .metadata()
            .map_err(|error| OpenReadError::wrap_io_error(error, path.to_path_buf()))?
            .len() as usize;
        Ok(Arc::new(PreadFile { file, len }))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        self.mmap.delete(path)
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.mmap.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        self.mmap.open_write(path)
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.mmap.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.mmap.atomic_write(path, data)
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        self.mmap.acquire_lock(lock)
    }

    fn sync_directory(&self) -> io::Result<()> {
        self.mmap.sync_directory()
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.mmap.watch(watch_callback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_are_read_by_range_and_other_files_through_the_map() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.store"), b"0123456789").unwrap();
        std::fs::write(dir.path().join("a.idx"), b"abcdef").unwrap();
        let directory = PartitionDirectory::open(dir.path()).unwrap();
        let store = directory.get_file_handle(Path::new("a.store")).unwrap();
        assert_eq!(store.len(), 10);
        assert_eq!(store.read_bytes(2..5).unwrap().as_slice(), b"234");
        assert_eq!(store.read_bytes(10..10).unwrap().as_slice(), b"");
        assert!(store.read_bytes(8..11).is_err(), "past the end");
        let idx = directory.get_file_handle(Path::new("a.idx")).unwrap();
        assert_eq!(idx.read_bytes(0..6).unwrap().as_slice(), b"abcdef");
        assert!(matches!(
            directory.get_file_handle(Path::new("missing.store")),
            Err(OpenReadError::FileDoesNotExist(_))
        ));
    }
}
