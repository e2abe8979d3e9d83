//! Where rule files come from: a directory on disk, or the pack compiled into the binary
//! (so `auditlake detect` works from any directory). Both are read through [`Source`], so a
//! rule loads, validates and reports errors the same way wherever it lives.

use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};

/// A read-only file tree compiled into the binary: `root` is the name its paths are shown
/// under (e.g. `<built-in rules>`), `files` are `(path relative to root with '/', bytes)`.
#[derive(Debug)]
pub struct Embedded {
    pub root: &'static str,
    pub files: &'static [(&'static str, &'static [u8])],
}

impl Embedded {
    /// The path of `p` relative to the root, `..` and `.` resolved lexically (a rule's list
    /// file `../known-controllers.txt` is a sibling of the rule folders). `None` when `p` is
    /// not under the root.
    fn relative(&self, p: &Path) -> Option<String> {
        let rest = p.strip_prefix(self.root).ok()?;
        let mut parts: Vec<&str> = Vec::new();
        for c in rest.components() {
            match c {
                Component::Normal(s) => parts.push(s.to_str()?),
                Component::ParentDir => {
                    parts.pop()?;
                }
                Component::CurDir => {}
                _ => return None,
            }
        }
        Some(parts.join("/"))
    }

    fn get(&self, p: &Path) -> Option<&'static [u8]> {
        let rel = self.relative(p)?;
        self.files
            .iter()
            .find(|(name, _)| *name == rel)
            .map(|(_, bytes)| *bytes)
    }

    /// Every file under the root, as a path under `root`.
    pub fn paths(&self) -> impl Iterator<Item = (PathBuf, &'static [u8])> + '_ {
        self.files
            .iter()
            .map(|(name, bytes)| (Path::new(self.root).join(name), *bytes))
    }
}

/// The file system a rule was loaded from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    Disk,
    Embedded(&'static Embedded),
}

fn not_found(p: &Path) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("{} is not in the built-in pack", p.display()),
    )
}

impl Source {
    pub fn read(&self, p: &Path) -> std::io::Result<Cow<'static, [u8]>> {
        match self {
            Source::Disk => std::fs::read(p).map(Cow::Owned),
            Source::Embedded(e) => e.get(p).map(Cow::Borrowed).ok_or_else(|| not_found(p)),
        }
    }

    pub fn read_to_string(&self, p: &Path) -> std::io::Result<String> {
        let bytes = self.read(p)?;
        String::from_utf8(bytes.into_owned())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    pub fn is_file(&self, p: &Path) -> bool {
        match self {
            Source::Disk => p.is_file(),
            Source::Embedded(e) => e.get(p).is_some(),
        }
    }

    /// The folders directly under `dir` that hold a `rule.toml`.
    pub fn rule_dirs(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        match self {
            Source::Disk => {
                let mut out = Vec::new();
                for entry in std::fs::read_dir(dir)? {
                    let p = entry?.path();
                    if p.join("rule.toml").is_file() {
                        out.push(p);
                    }
                }
                Ok(out)
            }
            Source::Embedded(e) => {
                let rel = e.relative(dir).ok_or_else(|| not_found(dir))?;
                let prefix = if rel.is_empty() {
                    String::new()
                } else {
                    format!("{rel}/")
                };
                let mut out: Vec<PathBuf> = e
                    .files
                    .iter()
                    .filter_map(|(name, _)| name.strip_prefix(prefix.as_str()))
                    .filter_map(|rest| rest.strip_suffix("/rule.toml"))
                    .filter(|folder| !folder.contains('/'))
                    .map(|folder| dir.join(folder))
                    .collect();
                out.sort();
                out.dedup();
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static PACK: Embedded = Embedded {
        root: "<built-in rules>",
        files: &[
            ("known.txt", b"a\nb\n"),
            ("one/rule.toml", b"id = 1"),
            ("one/query.sql", b"SELECT 1"),
            ("one/fixtures/pos.jsonl", b"{}"),
            ("two/rule.toml", b""),
            ("tools/x.py", b""),
        ],
    };

    #[test]
    fn embedded_paths_resolve_parent_components_and_list_rule_folders() {
        let s = Source::Embedded(&PACK);
        let root = Path::new("<built-in rules>");
        assert_eq!(
            s.read_to_string(&root.join("one/../known.txt")).unwrap(),
            "a\nb\n"
        );
        assert!(s.is_file(&root.join("one/fixtures/pos.jsonl")));
        assert!(!s.is_file(&root.join("one/fixtures")));
        assert!(!s.is_file(Path::new("/etc/passwd")));
        let err = s.read(&root.join("../escape")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(
            s.rule_dirs(root).unwrap(),
            vec![root.join("one"), root.join("two")]
        );
    }
}
