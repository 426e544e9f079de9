//! A named set of policies, loaded from a directory of `NAME.toml` files.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Policy;
use crate::error::{Location, PolicyError};
use crate::fs::HostPathError;
use crate::process::{PolicyRef, is_policy_name};
use crate::subset::Escalation;

/// One thing wrong with a policy directory.
#[derive(Debug, thiserror::Error)]
pub enum LibraryProblem {
    /// A file that is not a valid policy.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A preopen whose host directory is missing, not a directory, or reached
    /// through a symbolic link.
    #[error(transparent)]
    HostPath(#[from] HostPathError),
    /// A file whose stem cannot name a policy.
    #[error(
        "{}: {name:?} is not a valid policy name; use lowercase letters, digits, - and _, starting with a letter or digit",
        path.display()
    )]
    BadName {
        /// The file.
        path: PathBuf,
        /// Its stem.
        name: String,
    },
    /// A file named `self.toml`.
    #[error(
        "{}: the name \"self\" is reserved for the spawning process's own policy; rename the file",
        path.display()
    )]
    ReservedName {
        /// The file.
        path: PathBuf,
    },
    /// A spawn rule naming a policy the library does not hold.
    #[error(
        "{}:{location}: spawn rule names policy {name:?}, which is not in the library; known policies: {}",
        path.display(),
        known.join(", ")
    )]
    UnknownSpawnPolicy {
        /// The file with the rule.
        path: PathBuf,
        /// Where the rule is.
        location: Location,
        /// The policy it names.
        name: String,
        /// Every name the library holds.
        known: Vec<String>,
    },
}

/// Why a library could not be loaded or a name not resolved.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// The directory could not be listed.
    #[error("{}: cannot read policy directory: {source}", path.display())]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// One or more files are invalid. The message lists every problem, one per line.
    #[error("{}", ProblemList(dir, problems))]
    Invalid {
        /// The directory.
        dir: PathBuf,
        /// Everything wrong, in file-name order.
        problems: Vec<LibraryProblem>,
    },
    /// A name the library does not hold.
    #[error("no policy named {name:?}; known policies: {}", known.join(", "))]
    UnknownPolicy {
        /// The name asked for.
        name: String,
        /// Every name the library holds.
        known: Vec<String>,
    },
    /// A name that cannot name a policy.
    #[error(
        "{name:?} is not a valid policy name; use lowercase letters, digits, - and _, starting with a letter or digit (\"self\" is reserved)"
    )]
    BadName {
        /// The name given.
        name: String,
    },
}

struct ProblemList<'a>(&'a Path, &'a [LibraryProblem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.1.len();
        write!(
            f,
            "{}: {n} problem{} in the policy library:",
            self.0.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for problem in self.1 {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// Why a spawn request is refused. The first two correspond to `not-permitted`
/// and the third to `not-found` in `rusm:runtime`.
#[derive(Debug, thiserror::Error)]
pub enum SpawnRefusal {
    /// No spawn rule of the caller covers this component and policy.
    #[error("the policy does not allow spawning component {component:?} under policy \"{policy}\"")]
    NotPermitted {
        /// The component asked for.
        component: String,
        /// The policy asked for.
        policy: PolicyRef,
    },
    /// The named policy grants something the caller does not hold.
    #[error("policy {name:?} grants more than the spawning process holds: {escalation}")]
    Escalation {
        /// The policy asked for.
        name: String,
        /// The first grant that exceeds the caller's.
        #[source]
        escalation: Escalation,
    },
    /// The caller may spawn under this name but the library holds no such policy.
    #[error("no policy named {name:?}; known policies: {}", known.join(", "))]
    NotFound {
        /// The policy asked for.
        name: String,
        /// Every name the library holds.
        known: Vec<String>,
    },
}

/// Policies by name: the file stems of a `capabilities/` directory, so spawn
/// options can name a policy for the child.
///
/// The name `default` is always present: the directory's `default.toml` if it has
/// one, else [`Policy::embedded_default`]. The name `self` is reserved.
#[derive(Debug, Clone)]
pub struct PolicyLibrary {
    /// Shared with every process that runs under them.
    policies: BTreeMap<String, Arc<Policy>>,
}

/// The policy a spawned child runs under, as [`PolicyLibrary::policy_for_spawn`]
/// decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpawnGrant {
    /// The spawner's own policy.
    Own,
    /// A policy of the library, shared by reference.
    Named(Arc<Policy>),
}

impl Default for PolicyLibrary {
    fn default() -> Self {
        PolicyLibrary::new()
    }
}

impl PolicyLibrary {
    /// A library holding only the embedded `default` policy.
    #[must_use]
    pub fn new() -> Self {
        let mut policies = BTreeMap::new();
        policies.insert("default".to_string(), Arc::new(Policy::embedded_default()));
        PolicyLibrary { policies }
    }

    /// Loads every `*.toml` file directly inside `dir` (subdirectories and other
    /// files are ignored), each under its file stem, and checks that every spawn
    /// rule names `self` or a policy of the library and that every preopen's host
    /// directory exists with no symbolic link on its path
    /// ([`crate::FsPolicy::check_host_paths`]).
    ///
    /// # Errors
    ///
    /// [`LibraryError::ReadDir`] if the directory cannot be listed, and
    /// [`LibraryError::Invalid`] listing every invalid file, invalid name,
    /// unusable preopen and unknown spawn policy at once.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Self, LibraryError> {
        let dir = dir.as_ref();
        let read_err = |source| LibraryError::ReadDir {
            path: dir.to_path_buf(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_err)? {
            let path = entry.map_err(read_err)?.path();
            if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();

        let mut library = PolicyLibrary::new();
        let mut problems = Vec::new();
        let mut origins: BTreeMap<String, PathBuf> = BTreeMap::new();
        for path in files {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name == "self" {
                problems.push(LibraryProblem::ReservedName { path });
                continue;
            }
            if !is_policy_name(&name) {
                problems.push(LibraryProblem::BadName { path, name });
                continue;
            }
            match Policy::from_file(&path) {
                Ok(policy) => {
                    if let Err(e) = policy.fs.check_host_paths() {
                        problems.push(LibraryProblem::HostPath(e));
                    }
                    library.policies.insert(name.clone(), Arc::new(policy));
                    origins.insert(name, path);
                }
                Err(e) => problems.push(LibraryProblem::Policy(e)),
            }
        }

        let known = library.names().map(str::to_string).collect::<Vec<_>>();
        for (name, path) in &origins {
            for rule in &library.policies[name].process.spawn {
                if let PolicyRef::Named(target) = &rule.policy
                    && !library.policies.contains_key(target)
                {
                    problems.push(LibraryProblem::UnknownSpawnPolicy {
                        path: path.clone(),
                        location: rule.location.unwrap_or(Location { line: 1, column: 1 }),
                        name: target.clone(),
                        known: known.clone(),
                    });
                }
            }
        }

        if problems.is_empty() {
            Ok(library)
        } else {
            Err(LibraryError::Invalid {
                dir: dir.to_path_buf(),
                problems,
            })
        }
    }

    /// Adds or replaces the policy called `name`, returning the one it replaces.
    ///
    /// # Errors
    ///
    /// [`LibraryError::BadName`] if `name` cannot name a policy.
    pub fn insert(
        &mut self,
        name: &str,
        policy: Policy,
    ) -> Result<Option<Arc<Policy>>, LibraryError> {
        if !is_policy_name(name) {
            return Err(LibraryError::BadName {
                name: name.to_string(),
            });
        }
        Ok(self.policies.insert(name.to_string(), Arc::new(policy)))
    }

    /// The policy called `name`.
    ///
    /// # Errors
    ///
    /// [`LibraryError::UnknownPolicy`], listing the known names, if there is none.
    pub fn get(&self, name: &str) -> Result<&Arc<Policy>, LibraryError> {
        self.policies
            .get(name)
            .ok_or_else(|| LibraryError::UnknownPolicy {
                name: name.to_string(),
                known: self.names().map(str::to_string).collect(),
            })
    }

    /// The names held, in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.policies.keys().map(String::as_str)
    }

    /// Decides a spawn request: may a process under `parent` spawn `component`
    /// under the policy `requested` (`None` or `"self"` for its own)? Returns the
    /// policy the child runs under: its parent's own, or a library policy.
    ///
    /// # Errors
    ///
    /// [`SpawnRefusal::NotPermitted`] when no spawn rule of `parent` covers the
    /// request, [`SpawnRefusal::NotFound`] when the named policy is not in the
    /// library, and [`SpawnRefusal::Escalation`] when it grants more than `parent`.
    pub fn policy_for_spawn(
        &self,
        parent: &Policy,
        component: &str,
        requested: Option<&str>,
    ) -> Result<SpawnGrant, SpawnRefusal> {
        if !parent.process.may_spawn(component, requested) {
            return Err(SpawnRefusal::NotPermitted {
                component: component.to_string(),
                policy: PolicyRef::from_request(requested),
            });
        }
        let name = match PolicyRef::from_request(requested) {
            PolicyRef::Own => return Ok(SpawnGrant::Own),
            PolicyRef::Named(name) => name,
        };
        let child = self
            .policies
            .get(&name)
            .ok_or_else(|| SpawnRefusal::NotFound {
                name: name.clone(),
                known: self.names().map(str::to_string).collect(),
            })?;
        child
            .is_subset_of(parent)
            .map_err(|escalation| SpawnRefusal::Escalation { name, escalation })?;
        Ok(SpawnGrant::Named(Arc::clone(child)))
    }
}
