use std::process::Command;

/// The actor core and the policy crate never depend on wasmtime, directly or not.
#[test]
fn wasm_free_crates_do_not_depend_on_wasmtime() {
    for krate in ["rusm-otp", "rusm-policy"] {
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
        let offenders: Vec<&str> = tree
            .lines()
            .filter(|l| l.contains("wasmtime") || l.contains("cranelift"))
            .collect();
        assert!(offenders.is_empty(), "{krate} depends on {offenders:?}");
    }
}
