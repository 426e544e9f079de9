use std::process::Command;

/// The normal and build dependencies of `krate`, one a line.
fn tree(krate: &str) -> String {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            krate,
            "-e",
            "normal,build",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {krate} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).unwrap();
    assert!(
        tree.lines().count() > 1,
        "cargo tree printed nothing for {krate}"
    );
    tree
}

/// The actor core and the policy crate never depend on wasmtime, directly or not.
#[test]
fn wasm_free_crates_do_not_depend_on_wasmtime() {
    for krate in ["rusm-otp", "rusm-policy"] {
        let tree = tree(krate);
        let offenders: Vec<&str> = tree
            .lines()
            .filter(|l| l.contains("wasmtime") || l.contains("cranelift"))
            .collect();
        assert!(offenders.is_empty(), "{krate} depends on {offenders:?}");
    }
}

/// The actor core knows no transport between nodes: the cluster layer plugs into it,
/// and the cluster layer itself stays free of wasmtime.
#[test]
fn the_core_does_not_depend_on_nats_nor_the_cluster_on_wasmtime() {
    let core = tree("rusm-otp");
    assert!(
        !core
            .lines()
            .any(|l| l.contains("nats") || l.contains("rusm-cluster")),
        "rusm-otp depends on a transport: {core}"
    );
    let cluster = tree("rusm-cluster");
    assert!(
        cluster.lines().any(|l| l.starts_with("async-nats")),
        "{cluster}"
    );
    assert!(
        !cluster.lines().any(|l| l.contains("wasmtime")),
        "rusm-cluster depends on wasmtime"
    );
}
