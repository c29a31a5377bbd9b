//! Files Owl keeps private: its data directory (0700) and the secrets it generates in it (0600).
//! The binaries also set a umask of 077, so every other file they create there (SQLite database,
//! write-ahead log, index, agent buffer) is private too.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Sets the process's umask to 077: every file and directory it creates from then on is readable
/// by its user only. The binaries call it first thing.
pub fn private_umask() {
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Creates `dir` and its parents with mode 0700, and tightens `dir` itself to 0700 if it existed.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

/// Writes `contents` and a newline to `path` with mode 0600 unless the file exists; returns
/// whether it wrote. The file appears whole or not at all (temporary file, fsync, hard link into
/// place), and of two processes starting together one value wins for both.
pub fn write_private_once(path: &Path, contents: &str) -> std::io::Result<bool> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    if path.exists() {
        return Ok(false);
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    private_dir(dir)?;
    let temp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("secret"),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = || -> std::io::Result<bool> {
        let mut file = options.open(&temp)?;
        file.write_all(contents.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        let linked = match std::fs::hard_link(&temp, path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e),
        };
        std::fs::File::open(dir)?.sync_all()?;
        Ok(linked)
    };
    let result = write();
    let _ = std::fs::remove_file(&temp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_and_dirs_are_private_and_written_once() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = dir.join("secret-key");
        assert!(write_private_once(&path, "one").unwrap());
        assert!(!write_private_once(&path, "two").unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&dir), 0o700, "an existing data directory is tightened");
            let nested = root.path().join("a/b");
            private_dir(&nested).unwrap();
            assert_eq!(mode(&nested), 0o700);
        }
    }
}
