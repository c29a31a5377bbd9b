//! Finding the files an input names: globs expanded by walking only the directories they can
//! match, then include and exclude globs applied to full paths.

use std::path::{Component, Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// Errors in an input's globs.
#[derive(Debug, thiserror::Error)]
#[error("glob `{pattern}`: {source}")]
pub struct GlobError {
    /// The glob.
    pattern: String,
    /// Why it is invalid.
    source: globset::Error,
}

/// One root to walk: a directory without glob characters and how deep below it matches can be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Root {
    pub dir: PathBuf,
    /// `None`: any depth (`**`).
    pub depth: Option<usize>,
}

/// The include and exclude globs of one input.
#[derive(Debug, Clone)]
pub(crate) struct FileMatcher {
    include: GlobSet,
    exclude: GlobSet,
    exclude_names: GlobSet,
    literals: Vec<PathBuf>,
    pub roots: Vec<Root>,
}

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

fn glob(pattern: &str) -> Result<Glob, GlobError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|source| GlobError {
            pattern: pattern.to_string(),
            source,
        })
}

impl FileMatcher {
    pub(crate) fn new(paths: &[String], exclude: &[String]) -> Result<FileMatcher, GlobError> {
        let mut include = GlobSetBuilder::new();
        let mut literals = Vec::new();
        let mut roots: Vec<Root> = Vec::new();
        for pattern in paths {
            if !has_meta(pattern) {
                literals.push(PathBuf::from(pattern));
                continue;
            }
            include.add(glob(pattern)?);
            let mut dir = PathBuf::new();
            let mut rest = Vec::new();
            for component in Path::new(pattern).components() {
                let text = component.as_os_str().to_string_lossy();
                if rest.is_empty() && !has_meta(&text) {
                    dir.push(component);
                } else {
                    rest.push(text.into_owned());
                }
            }
            // The last component before the glob part is part of the walk when it is the file.
            if dir.as_os_str().is_empty() {
                dir.push(Component::CurDir);
            }
            let depth = if rest.iter().any(|c| c.contains("**")) {
                None
            } else {
                Some(rest.len())
            };
            match roots.iter_mut().find(|r| r.dir == dir) {
                Some(root) => {
                    root.depth = match (root.depth, depth) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    }
                }
                None => roots.push(Root { dir, depth }),
            }
        }
        let mut excludes = GlobSetBuilder::new();
        let mut names = GlobSetBuilder::new();
        for pattern in exclude {
            if pattern.contains('/') {
                excludes.add(glob(pattern)?);
            } else {
                names.add(glob(pattern)?);
            }
        }
        let build = |b: GlobSetBuilder, p: &[String]| {
            b.build().map_err(|source| GlobError {
                pattern: p.join(", "),
                source,
            })
        };
        Ok(FileMatcher {
            include: build(include, paths)?,
            exclude: build(excludes, exclude)?,
            exclude_names: build(names, exclude)?,
            literals,
            roots,
        })
    }

    /// Whether a path is excluded.
    fn excluded(&self, path: &Path) -> bool {
        self.exclude.is_match(path) || path.file_name().is_some_and(|n| self.exclude_names.is_match(n))
    }

    /// The directories worth watching for changes.
    pub(crate) fn watch_dirs(&self) -> Vec<(PathBuf, bool)> {
        let mut dirs: Vec<(PathBuf, bool)> = self
            .roots
            .iter()
            .map(|r| (r.dir.clone(), r.depth != Some(1)))
            .collect();
        for literal in &self.literals {
            if let Some(parent) = literal.parent() {
                let parent = if parent.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    parent.to_path_buf()
                };
                dirs.push((parent, false));
            }
        }
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// The regular files that match now.
    pub(crate) fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for literal in &self.literals {
            if literal.is_file() && !self.excluded(literal) {
                out.push(literal.clone());
            }
        }
        for root in &self.roots {
            self.walk(&root.dir, root.depth, &mut out);
        }
        out.sort();
        out.dedup();
        out
    }

    fn walk(&self, dir: &Path, depth: Option<usize>, out: &mut Vec<PathBuf>) {
        if depth == Some(0) {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // Follows symlinks, so a link to a log file is tailed like the file.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                self.walk(&path, depth.map(|d| d - 1), out);
            } else if meta.is_file() {
                let relative = path.strip_prefix("./").unwrap_or(&path);
                if (self.include.is_match(&path) || self.include.is_match(relative)) && !self.excluded(&path)
                {
                    out.push(path);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_globs_with_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("app/sub")).unwrap();
        for f in [
            "app/a.log",
            "app/b.log",
            "app/b.log.1",
            "app/b.log.2.gz",
            "app/sub/c.log",
            "app/x.txt",
        ] {
            std::fs::write(root.join(f), "x\n").unwrap();
        }
        let p = |s: &str| format!("{}/{s}", root.display());
        let m = FileMatcher::new(&[p("app/*.log*")], &["*.gz".to_string()]).unwrap();
        let names: Vec<_> = m
            .files()
            .iter()
            .map(|f| f.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["app/a.log", "app/b.log", "app/b.log.1"]);

        let m = FileMatcher::new(&[p("app/**/*.log"), p("app/x.txt")], &[p("app/a.*")]).unwrap();
        let names: Vec<_> = m
            .files()
            .iter()
            .map(|f| f.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["app/b.log", "app/sub/c.log", "app/x.txt"]);
        assert_eq!(
            m.roots,
            [Root {
                dir: root.join("app"),
                depth: None
            }]
        );
        assert!(m.watch_dirs().contains(&(root.join("app"), true)));
    }

    #[test]
    fn bad_globs_are_named() {
        let err = FileMatcher::new(&["/var/log/[".to_string()], &[]).unwrap_err();
        assert!(err.to_string().contains("/var/log/["), "{err}");
    }
}
