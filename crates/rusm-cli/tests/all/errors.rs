//! Bad input is one clear line on stderr (`rusm: error: ...`), exit code 2, never a
//! panic or a backtrace.

use crate::{components, run, temp_dir};

/// Run `rusm ARGS`, expecting one error line, and return it.
fn error(args: &[&str]) -> String {
    let out = run(args);
    assert_eq!(out.code(), 2, "{args:?}\n{}", out.stderr);
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("stack backtrace"),
        "{}",
        out.stderr
    );
    let errors = out.errors();
    assert_eq!(errors.len(), 1, "one error line: {}", out.stderr);
    errors[0].trim_start_matches("rusm: error: ").to_owned()
}

#[test]
fn a_missing_component_file() {
    let e = error(&["run", "no/such/thing.wasm"]);
    assert!(
        e.starts_with("cannot read component no/such/thing.wasm: "),
        "{e}"
    );
    assert!(e.ends_with("; check the path"), "{e}");
}

#[test]
fn a_missing_manifest() {
    let e = error(&["run", "no/such/app.toml"]);
    assert!(
        e.starts_with("cannot read the app manifest no/such/app.toml: "),
        "{e}"
    );
}

#[test]
fn a_manifest_that_is_not_toml_names_file_line_and_column() {
    let dir = temp_dir("bad-toml");
    let file = dir.join("app.toml");
    std::fs::write(&file, "name = \"x\"\n[supervisor\n").unwrap();
    let e = error(&["run", file.to_str().unwrap()]);
    assert!(e.starts_with(&format!("{}:2:", file.display())), "{e}");
}

#[test]
fn a_manifest_with_an_unknown_key() {
    let dir = temp_dir("unknown-key");
    let file = dir.join("app.toml");
    std::fs::write(&file, "name = \"x\"\nsupervisr = 1\n").unwrap();
    let e = error(&["run", file.to_str().unwrap()]);
    assert!(
        e.starts_with(&format!(
            "{}:2:1: unknown field `supervisr`",
            file.display()
        )),
        "{e}"
    );
}

#[test]
fn a_child_naming_an_unknown_component() {
    let dir = temp_dir("unknown-component");
    let file = dir.join("app.toml");
    let manifest = format!(
        "[components.counter]\npath = {:?}\n\n[supervisor]\nchildren = [\n  {{ id = \"a\", component = \"countr\" }},\n]\n",
        components::COUNTER.path()
    );
    std::fs::write(&file, manifest).unwrap();
    let e = error(&["run", file.to_str().unwrap()]);
    assert_eq!(
        e,
        format!(
            "{}:6:27: unknown component \"countr\"; declare it under [components.countr] (declared: counter)",
            file.display()
        )
    );
}

#[test]
fn a_bad_policy_names_file_line_and_column() {
    let dir = temp_dir("bad-policy");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[net]\ntcp_conect = []\n").unwrap();
    let e = error(&["policy", "check", file.to_str().unwrap()]);
    assert_eq!(
        e,
        format!(
            "{}:2:1: unknown key \"tcp_conect\" in [net]; expected one of: tcp_connect, tcp_bind, udp_bind, udp_connect, dns",
            file.display()
        )
    );
    // The same error when the policy is given to run.
    let e2 = error(&[
        "run",
        components::HELLO_CLI.path().to_str().unwrap(),
        "--policy",
        file.to_str().unwrap(),
    ]);
    assert_eq!(e, e2);
}

#[test]
fn a_bad_inline_policy_in_a_manifest() {
    let dir = temp_dir("bad-inline-policy");
    let file = dir.join("app.toml");
    let manifest = format!(
        "[components.counter]\npath = {:?}\npolicy = {{ clocks = {{ wal = true }} }}\n\n[supervisor]\nchildren = [{{ id = \"a\", component = \"counter\" }}]\n",
        components::COUNTER.path()
    );
    std::fs::write(&file, manifest).unwrap();
    let e = error(&["run", file.to_str().unwrap()]);
    assert!(
        e.starts_with(&format!(
            "{}:3:10: inline policy of component \"counter\": unknown key \"wal\" in [clocks]",
            file.display()
        )),
        "{e}"
    );
}

#[test]
fn a_file_that_is_not_a_component() {
    let dir = temp_dir("not-a-component");
    let text = dir.join("notes.wasm");
    std::fs::write(&text, "hello").unwrap();
    let e = error(&["run", text.to_str().unwrap()]);
    assert!(e.contains("is not a WebAssembly binary"), "{e}");
    let module = dir.join("module.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let e = error(&["inspect", module.to_str().unwrap()]);
    assert!(
        e.contains("is a core WebAssembly module, not a component"),
        "{e}"
    );
}

#[test]
fn a_port_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let e = error(&[
        "run",
        components::HELLO_CLI.path().to_str().unwrap(),
        "--metrics",
        &addr,
    ]);
    assert!(
        e.starts_with(&format!("cannot listen for metrics on {addr}: ")),
        "{e}"
    );
    assert!(e.contains("another program uses that port"), "{e}");
}

#[test]
fn options_that_do_not_apply() {
    let e = error(&["run", "apps/demo/app.toml", "--init", "x"]);
    assert!(e.starts_with("--init applies to a single component"), "{e}");
    let e = error(&[
        "run",
        components::COUNTER.path().to_str().unwrap(),
        "--",
        "arg",
    ]);
    assert!(e.contains("is an actor, not a WASI command"), "{e}");
    let e = error(&[
        "run",
        components::COUNTER.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(
        e.starts_with("--keep-running, --watch and --listen apply to app manifests"),
        "{e}"
    );
    // --listen stands for the one listener's address; an app without one has none.
    let dir = temp_dir("listen-without-listener");
    let file = dir.join("app.toml");
    let manifest = format!(
        "[components.counter]\npath = {:?}\n\n[supervisor]\nchildren = [{{ id = \"c\", component = \"counter\" }}]\n",
        components::COUNTER.path()
    );
    std::fs::write(&file, manifest).unwrap();
    let e = error(&["run", file.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert_eq!(
        e,
        format!(
            "--listen replaces the address of an app's one HTTP listener, and {} has 0 `[[listeners]]`",
            file.display()
        )
    );
}

#[test]
fn a_bad_node_setting_names_file_line_and_column() {
    let dir = temp_dir("bad-node");
    let file = dir.join("app.toml");
    let app = |node: &str| {
        format!(
            "[components.counter]\npath = {:?}\n\n[node]\n{node}\n\n[supervisor]\nchildren = [{{ id = \"c\", component = \"counter\" }}]\n",
            components::COUNTER.path()
        )
    };
    std::fs::write(&file, app("allocator = \"pool\"")).unwrap();
    let e = error(&["run", file.to_str().unwrap()]);
    assert_eq!(
        e,
        format!(
            "{}:5:13: unknown allocator \"pool\"; expected \"arena\" or \"pooling\"",
            file.display()
        )
    );
    std::fs::write(&file, app("max_instances = 0")).unwrap();
    let e = error(&["run", file.to_str().unwrap()]);
    assert!(
        e.starts_with(&format!(
            "{}:5:17: max_instances must be a whole number from 1 to",
            file.display()
        )),
        "{e}"
    );
    // More than the machine can hold: the pooling allocator is bounded by the
    // mappings a process may have.
    std::fs::write(
        &file,
        app("allocator = \"pooling\"\nmax_instances = 4000000000"),
    )
    .unwrap();
    let e = error(&["run", file.to_str().unwrap()]);
    assert!(
        e.starts_with(&format!(
            "{}:6:17: [node] a pool of 4000000000 instances needs about",
            file.display()
        )),
        "{e}"
    );
    assert!(e.contains("vm.max_map_count is"), "{e}");
}
