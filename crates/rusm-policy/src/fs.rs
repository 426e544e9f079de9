//! The `[[fs.preopen]]` entries: host directories the guest sees at fixed paths.

use std::fmt;
use std::path::{Component, Path, PathBuf};

/// What a preopened directory lets the guest do.
///
/// The order is by power: `ReadOnly < ReadWrite`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum FsMode {
    /// `ro`: read files and list directories; nothing can be created, changed or
    /// removed. This is the mode when none is written.
    #[default]
    ReadOnly,
    /// `rw`: everything `ro` allows, and creating, writing, renaming and removing.
    ReadWrite,
}

impl FsMode {
    /// `ro` or `rw`, as written in a policy.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            FsMode::ReadOnly => "ro",
            FsMode::ReadWrite => "rw",
        }
    }
}

impl fmt::Display for FsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// One preopened directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// The host directory as written in the policy.
    pub host: PathBuf,
    /// The host directory with a relative path resolved against the policy file's
    /// directory and `.`/`..` removed lexically (symbolic links are not followed).
    pub host_resolved: PathBuf,
    /// The absolute path the guest sees, normalised (no `.`, no empty or trailing
    /// components).
    pub guest: String,
    /// What the guest may do there.
    pub mode: FsMode,
}

/// The `fs` section: the preopened directories. With none, the guest has no file
/// system at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsPolicy {
    /// The preopened directories, in the order written.
    pub preopens: Vec<Preopen>,
}

impl FsPolicy {
    /// Whether the section grants nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.preopens.is_empty()
    }

    /// The preopen the guest sees at `guest` (compared after normalisation).
    #[must_use]
    pub fn preopen_at(&self, guest: &str) -> Option<&Preopen> {
        let guest = normalize_guest(guest).ok()?;
        self.preopens.iter().find(|p| p.guest == guest)
    }
}

/// Why a guest path is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GuestPathError {
    NotAbsolute,
    ParentComponent,
    Nul,
}

/// Normalises an absolute guest path: `/data/./x/` becomes `/data/x`.
pub(crate) fn normalize_guest(guest: &str) -> Result<String, GuestPathError> {
    if guest.contains('\0') {
        return Err(GuestPathError::Nul);
    }
    if !guest.starts_with('/') {
        return Err(GuestPathError::NotAbsolute);
    }
    let mut out = String::new();
    for part in guest.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(GuestPathError::ParentComponent),
            other => {
                out.push('/');
                out.push_str(other);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Joins `path` onto `base` (unless it is absolute) and removes `.` and `..`
/// without touching the file system.
pub(crate) fn resolve_host(base: &Path, path: &Path) -> PathBuf {
    let joined = base.join(path);
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                // `/..` is `/`.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_are_normalised_and_checked() {
        assert_eq!(normalize_guest("/data").as_deref(), Ok("/data"));
        assert_eq!(normalize_guest("/data/./x/").as_deref(), Ok("/data/x"));
        assert_eq!(normalize_guest("//a//b").as_deref(), Ok("/a/b"));
        assert_eq!(normalize_guest("/").as_deref(), Ok("/"));
        assert_eq!(normalize_guest("data"), Err(GuestPathError::NotAbsolute));
        assert_eq!(normalize_guest(""), Err(GuestPathError::NotAbsolute));
        assert_eq!(
            normalize_guest("/a/../b"),
            Err(GuestPathError::ParentComponent)
        );
        assert_eq!(normalize_guest("/a\0"), Err(GuestPathError::Nul));
    }

    #[test]
    fn host_paths_resolve_lexically_against_the_base() {
        let base = Path::new("/etc/rusm/capabilities");
        assert_eq!(
            resolve_host(base, Path::new("data")),
            Path::new("/etc/rusm/capabilities/data")
        );
        assert_eq!(
            resolve_host(base, Path::new("../data/./x")),
            Path::new("/etc/rusm/data/x")
        );
        assert_eq!(
            resolve_host(base, Path::new("/srv/www")),
            Path::new("/srv/www")
        );
        assert_eq!(resolve_host(base, Path::new("/../..")), Path::new("/"));
        assert_eq!(
            resolve_host(Path::new("caps"), Path::new("../../x")),
            Path::new("../x")
        );
        assert_eq!(resolve_host(Path::new(""), Path::new(".")), Path::new("."));
    }

    #[test]
    fn preopen_lookup_normalises_the_guest_path() {
        let fs = FsPolicy {
            preopens: vec![Preopen {
                host: "d".into(),
                host_resolved: "/x/d".into(),
                guest: "/data".into(),
                mode: FsMode::ReadOnly,
            }],
        };
        assert!(fs.preopen_at("/data/").is_some());
        assert!(fs.preopen_at("/data/x").is_none());
        assert!(fs.preopen_at("data").is_none());
        assert!(FsMode::ReadOnly < FsMode::ReadWrite);
    }
}
