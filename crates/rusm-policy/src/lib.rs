//! Declarative, default-deny capability policies for rusm processes.
//!
//! Every rusm process runs under a [`Policy`] that grants exactly what it names
//! and nothing else: a policy parsed from an empty file denies everything. This
//! crate reads policies from TOML ([`Policy::from_file`], [`Policy::parse`]),
//! rejects anything that is not a valid policy with an error naming the file,
//! line and column and saying what would be valid ([`PolicyError`]), checks that a
//! child policy grants no more than its parent ([`Policy::is_subset_of`]),
//! explains a policy in plain words ([`Policy::explain`]) and keeps a directory of
//! named policies ([`PolicyLibrary`]).
//!
//! The types are plain data with query methods, meant to be turned into a
//! runtime's configuration: [`NetPolicy::allows_tcp_connect`],
//! [`HttpPolicy::allows`], [`EnvPolicy::resolve`], [`ProcessPolicy::may_spawn`]
//! and so on.
//!
//! ```
//! use std::path::Path;
//! use rusm_policy::Policy;
//!
//! let policy = Policy::parse(
//!     "[net]\ntcp_connect = [\"127.0.0.1:8080\"]\n",
//!     Path::new("capabilities/client.toml"),
//! )?;
//! assert!(policy.net.allows_tcp_connect("127.0.0.1:8080".parse()?));
//! assert!(!policy.net.allows_tcp_connect("127.0.0.1:8081".parse()?));
//! assert!(!policy.clocks.wall);
//!
//! let err = Policy::parse("[net]\ntcp_conect = []\n", Path::new("capabilities/bad.toml"))
//!     .unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "capabilities/bad.toml:2:1: unknown key \"tcp_conect\" in [net]; expected one of: \
//!      tcp_connect, tcp_bind, udp_bind, udp_connect, dns"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The file format is described in `capabilities/README.md` at the root of the
//! repository.

#![deny(missing_docs)]

mod config;
mod env;
mod error;
mod explain;
mod fs;
mod http;
mod keyvalue;
mod library;
mod limits;
mod net;
mod parse;
mod pattern;
mod process;
mod render;
mod stdio;
mod subset;

use std::path::Path;

pub use config::{ConfigPolicy, ConfigValue};
pub use env::EnvPolicy;
pub use error::{Location, PolicyError};
pub use fs::{FsMode, FsPolicy, HostPathError, HostPathProblem, Preopen};
pub use http::{HttpHost, HttpPattern, HttpPolicy, Scheme};
pub use keyvalue::{
    Bucket, BucketMode, DEFAULT_BUCKET_BYTES, DEFAULT_VALUE_BYTES, KeyValuePolicy, is_bucket_name,
};
pub use library::{LibraryError, LibraryProblem, PolicyLibrary, SpawnGrant, SpawnRefusal};
pub use limits::{
    Limits, MailboxOverflow, format_duration, format_size, parse_duration, parse_size,
};
pub use net::{HostPattern, IpRange, NetPolicy, PortRange, SocketKind, SocketPattern};
pub use pattern::PatternError;
pub use process::{KillRight, NamePattern, PolicyRef, ProcessPolicy, SpawnRule, is_policy_name};
pub use stdio::{ClockPolicy, StdioMode, StdioPolicy};
pub use subset::Escalation;

/// The source of the embedded default policy, `capabilities/default.toml`.
pub const DEFAULT_POLICY_SOURCE: &str = include_str!("../../../capabilities/default.toml");

/// Everything a process may do. Each section's absence (its `Default`) grants
/// nothing; see each field's type for what it governs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// `[[fs.preopen]]`: directories the guest sees.
    pub fs: FsPolicy,
    /// `[net]`: sockets and name lookups.
    pub net: NetPolicy,
    /// `[http]`: outbound HTTP requests.
    pub http: HttpPolicy,
    /// `[clocks]`: the wall and monotonic clocks.
    pub clocks: ClockPolicy,
    /// `[env]`: environment variables and arguments.
    pub env: EnvPolicy,
    /// `[stdio]`: where the standard streams go.
    pub stdio: StdioPolicy,
    /// `[limits]`: resource ceilings; `None` means the node's default.
    pub limits: Limits,
    /// `[process]`: spawning, killing and registering names.
    pub process: ProcessPolicy,
    /// `[keyvalue]`: the `wasi:keyvalue` buckets it may open.
    pub keyvalue: KeyValuePolicy,
    /// `[config]`: what it reads through `wasi:config/store`.
    pub config: ConfigPolicy,
}

impl Policy {
    /// The policy that grants nothing, the same as an empty file.
    #[must_use]
    pub fn deny_all() -> Self {
        Policy::default()
    }

    /// The policy a node uses when it is given none: `capabilities/default.toml`,
    /// compiled into this crate. It grants nothing but `stdout` and `stderr` to the
    /// host log, and caps memory.
    #[must_use]
    pub fn embedded_default() -> Self {
        // The file is part of this crate's sources and a test parses it.
        Policy::parse(
            DEFAULT_POLICY_SOURCE,
            Path::new("capabilities/default.toml"),
        )
        .unwrap_or_else(|e| panic!("the embedded default policy is invalid: {e}"))
    }

    /// Reads and validates the policy file at `path`. Relative preopen host paths
    /// are resolved against the file's directory, made absolute.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Read`] if the file cannot be read, and
    /// [`PolicyError::Invalid`] if it is not UTF-8, not TOML or not a valid policy.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, PolicyError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let source = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
                return Err(PolicyError::Invalid {
                    origin: path.to_path_buf(),
                    location: Location::from_offset(&prefix, valid),
                    message: "the file is not valid UTF-8; policy files are UTF-8 text".into(),
                });
            }
        };
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = absolute.parent().unwrap_or(Path::new(""));
        parse::Parser::new(&source, path, base).parse()
    }

    /// Validates policy `source`. `origin` names the source in error messages, and
    /// relative preopen host paths are resolved against its directory (as it is,
    /// without making it absolute).
    ///
    /// # Errors
    ///
    /// [`PolicyError::Invalid`] if `source` is not TOML or not a valid policy.
    pub fn parse(source: &str, origin: &Path) -> Result<Self, PolicyError> {
        let base = origin.parent().unwrap_or(Path::new(""));
        parse::Parser::new(source, origin, base).parse()
    }

    /// Checks attenuation: `Ok` if this policy grants nothing that `parent` does not.
    ///
    /// Containment is checked pattern by pattern and is sound: CIDR and port range
    /// containment (a pattern may be covered by several parent patterns' ports
    /// together), host wildcard containment, preopens inside a parent preopen of
    /// the same or a stronger mode, limits no higher than the parent's wherever the
    /// parent sets one, and ordered rights for kill and stdio. Program arguments
    /// carry no authority and are not compared.
    ///
    /// # Errors
    ///
    /// The first [`Escalation`], in section order; see [`Policy::escalations`] for
    /// all of them.
    pub fn is_subset_of(&self, parent: &Policy) -> Result<(), Escalation> {
        match subset::escalations(self, parent).into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every grant of this policy that `parent` does not hold, in section order.
    #[must_use]
    pub fn escalations(&self, parent: &Policy) -> Vec<Escalation> {
        subset::escalations(self, parent)
    }

    /// The policy in plain words: one line per grant, a line per denied area (such
    /// as `network: no access`), and every limit. Each line starts with its area
    /// (`filesystem:`, `network:`, `http:`, `clocks:`, `env:`, `stdio:`, `limits:`,
    /// `process:`, `keyvalue:`, `config:`) and the text ends with a newline.
    #[must_use]
    pub fn explain(&self) -> String {
        explain::explain(self)
    }
}
