//! A component built by `cargo component build` (rather than plain cargo for
//! wasm32-wasip2) runs in the host like any other.

use std::path::Path;

use crate::{node, pid_bytes, probe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cargo_component_build_runs_in_the_host() {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cargo-component-target");
    let manifest = rusm_e2e::components_dir().join("Cargo.toml");
    let out = tokio::task::spawn_blocking(move || {
        // Installed into the target directory when it is missing.
        let target_root = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("the tests' temporary directory is inside the target directory");
        rusm_e2e::cargo_component(target_root)
            .args(["build", "--release", "-p", "trivial", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target_dir)
            .output()
            .map(|out| (out, target_dir))
    })
    .await
    .unwrap()
    .expect("cargo runs");
    let (out, target_dir) = out;
    assert!(
        out.status.success(),
        "cargo component build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = target_dir.join("wasm32-wasip1/release/trivial.wasm");
    let bytes = std::fs::read(&wasm).unwrap_or_else(|e| panic!("{}: {e}", wasm.display()));
    assert_eq!(
        &bytes[..8],
        b"\0asm\x0d\0\x01\0",
        "cargo component wrote a component"
    );

    let node = node(&[]);
    node.load_bytes("trivial-cc", &bytes)
        .expect("the cargo-component build loads");
    let (me, mut probe) = probe(node.runtime());
    node.spawn("trivial-cc", pid_bytes(me)).unwrap();
    assert_eq!(probe.data().await, (1, Vec::new()));
}
