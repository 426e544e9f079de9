//! `rusm new NAME`: the scaffolded crate builds for wasm32-wasip2 and runs with `rusm run`.

use std::path::Path;
use std::time::Duration;

use crate::{finish, run, target_root, temp_dir};

#[test]
fn a_new_actor_builds_and_runs() {
    let dir = temp_dir("new");
    let out = run(&["new", "hello-actor", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let crate_dir = dir.join("hello-actor");
    for file in ["Cargo.toml", "src/lib.rs", "README.md"] {
        assert!(crate_dir.join(file).is_file(), "{file} was written");
    }
    // Its dependencies (rusm-guest's) at the versions the repository's components are
    // locked to: the components' lock file, from which cargo drops what the crate does
    // not use, and no registry (the components were built with them already).
    let components_lock = rusm_e2e::components_dir().join("Cargo.lock");
    std::fs::copy(&components_lock, crate_dir.join("Cargo.lock")).unwrap();

    // Built the way its README says, with a target directory shared between runs.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-new-target");
    let mut build = rusm_e2e::nested_cargo();
    build
        .args([
            "build",
            "--offline",
            "--release",
            "--target",
            "wasm32-wasip2",
        ])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", &target);
    let built = finish(&mut build, Duration::from_secs(600));
    assert!(built.status.success(), "{}", built.stderr);
    let locked = locked_packages(&components_lock);
    let resolved = locked_packages(&crate_dir.join("Cargo.lock"));
    let drifted: Vec<_> = resolved
        .iter()
        .filter(|(name, _)| name != "hello-actor" && name != "rusm-guest")
        .filter(|package| !locked.contains(package))
        .collect();
    assert!(
        drifted.is_empty(),
        "resolved apart from components/Cargo.lock: {drifted:?}"
    );
    assert!(
        resolved.iter().any(|(name, _)| name == "wit-bindgen"),
        "{resolved:?}"
    );

    let wasm = target.join("wasm32-wasip2/release/hello_actor.wasm");
    let out = run(&["run", wasm.to_str().unwrap(), "--init", "tester"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("hello, tester, from hello-actor <0.1>"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("exit    <0.1> hello_actor: normal"),
        "{}",
        out.stderr
    );

    // And with cargo-component, as its README says too (installed into the target
    // directory when it is missing).
    let mut build = rusm_e2e::cargo_component(target_root());
    build
        .args(["build", "--offline", "--release"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", &target);
    let built = finish(&mut build, Duration::from_secs(600));
    assert!(
        built.status.success(),
        "cargo component build failed:\n{}",
        built.stderr
    );
    let wasm = target.join("wasm32-wasip1/release/hello_actor.wasm");
    let out = run(&["run", wasm.to_str().unwrap(), "--init", "component"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("hello, component, from hello-actor <0.1>"),
        "{}",
        out.stderr
    );

    // A second crate of the same name is refused, in one line.
    let again = run(&["new", "hello-actor", "--dir", dir.to_str().unwrap()]);
    assert_eq!(again.code(), 2);
    assert_eq!(again.errors().len(), 1, "{}", again.stderr);
    assert!(
        again.errors()[0].contains("already exists"),
        "{}",
        again.stderr
    );
}

/// The (name, version) of every package in a `Cargo.lock`.
fn locked_packages(lock: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(lock).unwrap();
    let mut packages = Vec::new();
    for block in text.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block.lines().find_map(|line| {
                line.strip_prefix(key)
                    .and_then(|rest| rest.strip_prefix(" = \""))
                    .and_then(|rest| rest.strip_suffix('"'))
                    .map(str::to_owned)
            })
        };
        packages.push((field("name").unwrap(), field("version").unwrap()));
    }
    packages
}
