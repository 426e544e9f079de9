//! `rusm new NAME`: the scaffolded crate builds for wasm32-wasip2 and runs with `rusm run`.

use std::path::Path;
use std::process::Command;
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

    // Built the way its README says, with a target directory shared between runs.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-new-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    let built = finish(&mut build, Duration::from_secs(600));
    assert!(built.status.success(), "{}", built.stderr);

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
        .args(["build", "--release"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
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
