// Which variables of its own environment a program must not pass on to a nested
// `cargo build` of guest components. One implementation for every program that runs
// one: `rusm` (`crates/rusm-cli/src/build.rs`, which may itself run under `cargo run`
// or `cargo test`), the build script of `rusm-e2e` (`tests/build.rs`, which
// `include!`s this file; cargo gives a build script the outer build's settings), and
// the cargo commands tests run (`rusm_e2e::nested_cargo` in `tests/src/lib.rs`, which
// includes it too).
// Plain comments only, no inner attributes: the file is included as items.

/// True for the variables through which an outer cargo's settings would leak into a
/// nested build: its flags and wrappers, its target directory and target, its job
/// server, its profile, and what it tells a build script or a crate about the package
/// being built. Everything else (`PATH`, `CARGO_HOME`, `RUSTUP_TOOLCHAIN`, proxies,
/// `CARGO_NET_OFFLINE`, ...) is passed on.
pub fn leaks_into_nested_build(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_ENCODED_RUSTDOCFLAGS",
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_RUSTC_WRAPPER",
        "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_PRIMARY_PACKAGE",
    ];
    const PREFIXES: &[&str] = &[
        "CARGO_PROFILE_",
        "CARGO_CFG_",
        "CARGO_FEATURE_",
        "CARGO_PKG_",
    ];
    EXACT.contains(&key) || PREFIXES.iter().any(|prefix| key.starts_with(prefix))
}

#[cfg(test)]
mod nested_env_tests {
    use super::leaks_into_nested_build;

    #[test]
    fn the_outer_builds_settings_are_dropped() {
        for key in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "CARGO_MAKEFLAGS",
            "RUSTC_WRAPPER",
            "CARGO_MANIFEST_DIR",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_PROFILE_RELEASE_LTO",
            "CARGO_CFG_TARGET_OS",
            "CARGO_FEATURE_SERDE",
            "CARGO_PKG_NAME",
        ] {
            assert!(leaks_into_nested_build(key), "{key} is passed on");
        }
    }

    #[test]
    fn the_rest_of_the_environment_is_passed_on() {
        for key in [
            "PATH",
            "HOME",
            "CARGO",
            "CARGO_HOME",
            "CARGO_NET_OFFLINE",
            "RUSTUP_TOOLCHAIN",
            "RUSTC",
            "HTTPS_PROXY",
            "RUSM_COMPONENT_JOBS",
            // A prefix is matched whole, not as any start of a name.
            "CARGO_PROFILE",
            "CARGO_PKG",
        ] {
            assert!(!leaks_into_nested_build(key), "{key} is dropped");
        }
    }
}
