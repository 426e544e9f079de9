//! The example components of `components/`, built for the end-to-end tests.
//!
//! The build script compiles every member of the `components/` workspace for
//! `wasm32-wasip2` in release, so depending on this crate is enough to have them.
//! Each component gets a constant holding the absolute path of its `.wasm` file,
//! named after its package in SCREAMING_SNAKE_CASE (`ping-pong` is [`PING_PONG`]),
//! and [`ALL`] lists them with their package names.
//!
//! ```no_run
//! let bytes = std::fs::read(rusm_e2e::COUNTER)?;
//! # Ok::<(), std::io::Error>(())
//! ```

#![deny(missing_docs)]

use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/components.rs"));

/// The absolute path of the `components/` workspace.
pub fn components_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the rusm-e2e crate lives inside the repository")
        .join("components")
}

/// The `.wasm` file of the component whose package is called `name`.
pub fn component(name: &str) -> Option<&'static Path> {
    ALL.iter()
        .find(|(package, _)| *package == name)
        .map(|(_, path)| Path::new(*path))
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
        for (name, path) in ALL {
            let bytes = fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
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
        let built: BTreeSet<String> = ALL.iter().map(|(name, _)| (*name).to_owned()).collect();
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
        assert_eq!(component("ping-pong"), Some(Path::new(PING_PONG)));
        assert_eq!(component("nope"), None);
    }
}
