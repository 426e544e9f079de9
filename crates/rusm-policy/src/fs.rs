//! The `[[fs.preopen]]` entries: host directories the guest sees at fixed paths.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use crate::error::Location;

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

/// One preopened directory. Two are equal when they grant the same: where they were
/// written (`origin`, `location`) is not compared.
#[derive(Debug, Clone)]
pub struct Preopen {
    /// The host directory as written in the policy.
    pub host: PathBuf,
    /// The host directory with a relative path resolved against the policy file's
    /// directory and `.`/`..` removed lexically (symbolic links are not followed).
    pub host_resolved: PathBuf,
    /// The name the guest sees it under, normalised (no `.`, no empty or trailing
    /// components): an absolute path (`/data`) or a relative name (`.`, `readonly`,
    /// `a/b`), as `wasmtime run --dir HOST::GUEST` takes it. A label only: what the
    /// guest may reach is decided by the host path and the mode.
    pub guest: String,
    /// What the guest may do there.
    pub mode: FsMode,
    /// The policy this entry was read from (its file, or the origin given to
    /// [`crate::Policy::parse`]), for error messages.
    pub origin: PathBuf,
    /// Where its `host` key is in that source, when known.
    pub location: Option<Location>,
}

impl PartialEq for Preopen {
    fn eq(&self, other: &Self) -> bool {
        self.host == other.host
            && self.host_resolved == other.host_resolved
            && self.guest == other.guest
            && self.mode == other.mode
    }
}

impl Eq for Preopen {}

impl Preopen {
    /// Checks that the host directory can be preopened as the runtime opens it: it
    /// exists, is a directory, and no component of [`Preopen::host_resolved`] (made
    /// absolute against the working directory) is a symbolic link. The runtime opens
    /// preopens without following any symbolic link, so that the directory compared by
    /// the subset rule is the one opened; this check finds such a path before anything
    /// runs.
    ///
    /// # Errors
    ///
    /// A [`HostPathError`] naming the policy, the entry and the first component that
    /// is missing, a symbolic link, not a directory or cannot be inspected.
    pub fn check_host(&self) -> Result<(), HostPathError> {
        self.host_problem()
            .map_or(Ok(()), |problem| Err(self.error(problem)))
    }

    /// The first thing wrong with the host path, if any.
    #[must_use]
    pub fn host_problem(&self) -> Option<HostPathProblem> {
        let path = std::path::absolute(&self.host_resolved).unwrap_or(self.host_resolved.clone());
        let mut prefix = PathBuf::new();
        for component in path.components() {
            prefix.push(component.as_os_str());
            if !matches!(component, Component::Normal(_) | Component::ParentDir) {
                continue;
            }
            match std::fs::symlink_metadata(&prefix) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Some(HostPathProblem::Symlink(prefix));
                }
                Ok(meta) if !meta.is_dir() => return Some(HostPathProblem::NotDirectory(prefix)),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Some(HostPathProblem::Missing(prefix));
                }
                Err(e) => return Some(HostPathProblem::Inaccessible(prefix, e.to_string())),
            }
        }
        None
    }

    /// The error for this entry and `problem`.
    #[must_use]
    pub fn error(&self, problem: HostPathProblem) -> HostPathError {
        HostPathError {
            origin: self.origin.clone(),
            location: self.location,
            host: self.host_resolved.clone(),
            problem,
        }
    }
}

/// What is wrong with a preopen's host path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostPathProblem {
    /// A component (the directory itself or one of its ancestors) is a symbolic link.
    #[error(
        "{} is a symbolic link, and preopens are opened without following symbolic links; name the directory it leads to",
        .0.display()
    )]
    Symlink(PathBuf),
    /// A component does not exist.
    #[error("{} does not exist", .0.display())]
    Missing(PathBuf),
    /// A component is not a directory.
    #[error("{} is not a directory", .0.display())]
    NotDirectory(PathBuf),
    /// A component could not be inspected.
    #[error("cannot inspect {}: {}", .0.display(), .1)]
    Inaccessible(PathBuf, String),
}

/// A preopen whose host directory cannot be opened as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{}{}: preopen {} cannot be opened: {problem}",
    origin.display(),
    location.map(|l| format!(":{l}")).unwrap_or_default(),
    host.display()
)]
pub struct HostPathError {
    /// The policy the preopen is in.
    pub origin: PathBuf,
    /// Where its `host` key is.
    pub location: Option<Location>,
    /// The resolved host directory.
    pub host: PathBuf,
    /// What is wrong with it.
    pub problem: HostPathProblem,
}

/// The `fs` section: the preopened directories. With none, the guest has no file
/// system at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsPolicy {
    /// The preopened directories, in the order written.
    pub preopens: Vec<Preopen>,
}

impl FsPolicy {
    /// [`Preopen::check_host`] for every preopen, in order.
    ///
    /// # Errors
    ///
    /// The first preopen whose host directory cannot be opened as written.
    pub fn check_host_paths(&self) -> Result<(), HostPathError> {
        self.preopens.iter().try_for_each(Preopen::check_host)
    }

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
    Empty,
    ParentComponent,
    Nul,
}

/// Normalises a guest path, absolute or relative: `/data/./x/` becomes `/data/x`,
/// `./readonly/` becomes `readonly`, and `./` (or `.`) becomes `.`.
pub(crate) fn normalize_guest(guest: &str) -> Result<String, GuestPathError> {
    if guest.contains('\0') {
        return Err(GuestPathError::Nul);
    }
    if guest.is_empty() {
        return Err(GuestPathError::Empty);
    }
    let absolute = guest.starts_with('/');
    let mut parts = Vec::new();
    for part in guest.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(GuestPathError::ParentComponent),
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    Ok(match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    })
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
        assert_eq!(normalize_guest("data").as_deref(), Ok("data"));
        assert_eq!(normalize_guest(".").as_deref(), Ok("."));
        assert_eq!(normalize_guest("./").as_deref(), Ok("."));
        assert_eq!(normalize_guest("./readonly/").as_deref(), Ok("readonly"));
        assert_eq!(normalize_guest("a//b/./c").as_deref(), Ok("a/b/c"));
        assert_eq!(normalize_guest(""), Err(GuestPathError::Empty));
        assert_eq!(
            normalize_guest("a/../../etc"),
            Err(GuestPathError::ParentComponent)
        );
        assert_eq!(normalize_guest(".."), Err(GuestPathError::ParentComponent));
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
                origin: "p.toml".into(),
                location: None,
            }],
        };
        assert!(fs.preopen_at("/data/").is_some());
        assert!(fs.preopen_at("/data/x").is_none());
        // A relative name is another label than the absolute one.
        assert!(fs.preopen_at("data").is_none());
        assert!(FsMode::ReadOnly < FsMode::ReadWrite);
    }
}
