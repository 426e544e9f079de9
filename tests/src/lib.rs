//! The example components of `components/`, built for the end-to-end tests.
//!
//! The build script compiles every member of the `components/` workspace for
//! `wasm32-wasip2` in release, so depending on this crate is enough to have them.
//! [`ALL`] lists them. A test crate names them through constants that
//! [`components!`] declares in its own `mod components`, one per component, named
//! after its package in SCREAMING_SNAKE_CASE (`ping-pong` is `PING_PONG`).
//!
//! Every component is owned by one test suite: `e2e` (`tests/all`) unless its
//! `Cargo.toml` says otherwise (`[package.metadata.rusm-e2e] tested-by =
//! "plugin-host"`). In the suite that invokes `components!(e2e)` (or
//! `components!(plugin_host)`), a constant of a component it owns that no test uses is
//! a compile error, so a component cannot be added without a test that loads it.
//!
//! In a test crate's root, `rusm_e2e::components!(e2e);` (or, checking nothing,
//! `components!()`), then:
//!
//! ```
//! rusm_e2e::components!();
//!
//! let bytes = std::fs::read(components::COUNTER.path())?;
//! assert_eq!(components::COUNTER.name(), "counter");
//! assert!(!bytes.is_empty());
//! # Ok::<(), std::io::Error>(())
//! ```

#![deny(missing_docs)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

include!(concat!(env!("OUT_DIR"), "/all.rs"));
include!(concat!(env!("OUT_DIR"), "/macros.rs"));

/// A component of `components/`: its package name and its built `.wasm` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Component {
    name: &'static str,
    path: &'static str,
}

impl Component {
    /// A component named `name` built at `path` (used by the generated constants).
    #[doc(hidden)]
    pub const fn new(name: &'static str, path: &'static str) -> Self {
        Component { name, path }
    }

    /// The package name, such as `ping-pong`.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The absolute path of its `.wasm` file.
    pub fn path(&self) -> &'static Path {
        Path::new(self.path)
    }
}

/// The absolute path of the `components/` workspace.
pub fn components_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the rusm-e2e crate lives inside the repository")
        .join("components")
}

/// The version of `cargo-component` the tests install when none is installed.
pub const CARGO_COMPONENT_VERSION: &str = "0.21.1";

/// The variable naming the directory [`cargo_component`] installs into.
pub const TOOLS_DIR_VAR: &str = "RUSM_TOOLS_DIR";

/// A `cargo` command (the one running the tests) for a nested build: without any of
/// the variables through which the outer build's settings would leak into it (its
/// flags, target directory and target, job server, profile and package; the rule
/// `rusm` itself applies to the builds it runs, in `crates/rusm-cli/src/build/nested_env.rs`).
pub fn nested_cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    for (key, _) in std::env::vars_os() {
        if key
            .to_str()
            .is_some_and(nested_env::leaks_into_nested_build)
        {
            command.env_remove(key);
        }
    }
    command
}

mod nested_env {
    include!("../../crates/rusm-cli/src/build/nested_env.rs");
}

/// A `cargo component` command, for the tests that build with cargo-component.
///
/// Uses the `cargo-component` cargo finds (on `PATH` or in cargo's own `bin`
/// directory) when there is one. Otherwise installs version
/// [`CARGO_COMPONENT_VERSION`] once into a tools directory with `cargo install
/// --locked --root` (saying so on stderr first: the build takes about 11 minutes) and
/// puts its `bin` directory first on the command's `PATH`. The tools directory is
/// `$RUSM_TOOLS_DIR` when that is set (CI keeps it outside its fresh clone), otherwise
/// `target_dir/tools`. A lock file in it keeps test binaries run at the same time from
/// installing it twice.
///
/// # Panics
/// When the install fails or the tools directory cannot be created: the tests that
/// call it cannot run without it.
pub fn cargo_component(target_dir: &Path) -> Command {
    let mut command = nested_cargo();
    command.arg("component");
    let installed = |command: &Command| {
        let mut probe = Command::new(command.get_program());
        probe.args(["component", "--version"]);
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => probe.env(key, value),
                None => probe.env_remove(key),
            };
        }
        probe
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if installed(&command) {
        return command;
    }

    let tools = std::env::var_os(TOOLS_DIR_VAR)
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| target_dir.join("tools"), PathBuf::from);
    let bin = tools.join("bin");
    let mut path = vec![bin.clone()];
    path.extend(std::env::var_os("PATH").map_or_else(Vec::new, |p| {
        std::env::split_paths(&p).collect::<Vec<PathBuf>>()
    }));
    command.env(
        "PATH",
        std::env::join_paths(path).expect("the PATH entries join"),
    );
    std::fs::create_dir_all(&tools)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", tools.display()));
    let lock = std::fs::File::create(tools.join(".install-lock"))
        .unwrap_or_else(|e| panic!("cannot create the lock in {}: {e}", tools.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", tools.display()));
    if installed(&command) {
        return command;
    }
    let _ = writeln!(
        std::io::stderr(),
        "rusm-e2e: cargo-component is not installed; installing cargo-component \
         {CARGO_COMPONENT_VERSION} into {} (once; it takes about 11 minutes)",
        tools.display()
    );
    let mut install = nested_cargo();
    install
        .args(["install", "--locked", "--root"])
        .arg(&tools)
        .args(["--version", CARGO_COMPONENT_VERSION, "cargo-component"])
        .stdin(Stdio::null());
    let status = install
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo install: {e}"));
    assert!(
        status.success(),
        "installing cargo-component into {} failed ({status}); see the output above",
        tools.display()
    );
    assert!(
        installed(&command),
        "cargo-component was installed into {} but `cargo component --version` fails",
        tools.display()
    );
    command
}

/// The `.wasm` file of the component whose package is called `name` (for tools that
/// take a name as input; tests use the constants of [`components!`]).
pub fn component(name: &str) -> Option<&'static Path> {
    ALL.iter()
        .find(|component| component.name == name)
        .map(Component::path)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::fs;

    use super::*;

    /// `\0asm`, then the version of the component binary format (0x0d) and layer 1,
    /// which sets a component apart from a core module (version 1, layer 0).
    const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

    #[test]
    fn every_component_is_a_component_binary() {
        assert!(!ALL.is_empty());
        for component in ALL {
            let name = component.name();
            let bytes = fs::read(component.path())
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", component.path().display()));
            let path = component.path().display();
            assert!(bytes.len() > 8, "{name}: {path} is too short");
            assert_eq!(&bytes[..4], b"\0asm", "{name}: {path} is not wasm");
            assert_eq!(
                &bytes[6..8],
                &[0x01, 0x00],
                "{name}: {path} is a core module, not a component"
            );
            assert_eq!(bytes[..8], COMPONENT_HEADER, "{name}: {path}");
        }
    }

    #[test]
    fn every_workspace_member_was_built() {
        let dir = components_dir();
        let mut on_disk = BTreeSet::new();
        for entry in fs::read_dir(&dir).expect("components/ is readable") {
            let entry = entry.expect("components/ is readable");
            if entry.path().join("Cargo.toml").is_file() {
                on_disk.insert(entry.file_name().to_string_lossy().into_owned());
            }
        }
        let built: BTreeSet<String> = ALL.iter().map(|c| c.name().to_owned()).collect();
        assert_eq!(built, on_disk, "every directory of components/ is a member");
    }

    #[test]
    fn the_documented_components_exist() {
        for name in [
            "counter",
            "crasher",
            "hello-cli",
            "ping-pong",
            "spawner",
            "spinner",
            "supervisor",
            "trivial",
        ] {
            let path = component(name).unwrap_or_else(|| panic!("no component {name}"));
            assert!(path.is_absolute(), "{}", path.display());
        }
        components!();
        assert_eq!(component("ping-pong"), Some(components::PING_PONG.path()));
        assert_eq!(components::PING_PONG.name(), "ping-pong");
        assert_eq!(component("nope"), None);
    }
}
