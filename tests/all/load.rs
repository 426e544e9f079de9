use rusm_wasm::{ComponentKind, LoadError};

use crate::node;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actors_and_commands_load_with_their_kind() {
    let node = node(&[]);
    let actor = node
        .load_file("counter", rusm_e2e::component("counter").unwrap())
        .unwrap();
    assert_eq!(actor.kind, ComponentKind::Actor);
    let command = node
        .load_file("hello", rusm_e2e::component("hello-cli").unwrap())
        .unwrap();
    assert_eq!(command.kind, ComponentKind::Command);
    assert_eq!(node.component_names(), ["counter", "hello"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_components_are_rejected_with_a_reason_and_change_nothing() {
    let node = node(&["counter"]);

    let err = node
        .load_bytes("junk", b"this is not wasm at all")
        .unwrap_err();
    assert!(matches!(err, LoadError::NotWasm { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("\"junk\" is not a WebAssembly binary"),
        "{err}"
    );

    // The smallest valid core module.
    let err = node.load_bytes("core", b"\0asm\x01\0\0\0").unwrap_err();
    assert!(matches!(err, LoadError::CoreModule { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("core WebAssembly module, not a component"),
        "{err}"
    );

    // A component that validates but exports nothing runnable.
    let err = node
        .load_bytes("empty", &wat::parse_str("(component)").unwrap())
        .unwrap_err();
    assert!(matches!(err, LoadError::NoEntryPoint { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("exports no entry point rusm can run"),
        "{err}"
    );

    // A truncated component does not validate.
    let counter = std::fs::read(rusm_e2e::component("counter").unwrap()).unwrap();
    let err = node
        .load_bytes("truncated", &counter[..counter.len() / 2])
        .unwrap_err();
    assert!(matches!(err, LoadError::Invalid { .. }), "{err}");

    // A command that imports an interface the host does not have: the error names it.
    let wat = crate::UNSATISFIABLE_COMMAND_WAT;
    let err = node
        .load_bytes("missing", &wat::parse_str(wat).unwrap())
        .unwrap_err();
    assert!(matches!(err, LoadError::UnsatisfiedImport { .. }), "{err}");
    assert!(
        err.to_string().contains("acme:missing/thing@1.0.0"),
        "{err}"
    );

    // Replacing a good component with a bad one keeps the good one.
    node.load_bytes("counter", b"garbage").unwrap_err();
    assert_eq!(node.component_names(), ["counter"]);
    node.spawn("counter", Vec::new())
        .expect("the old counter still spawns");

    let err = node.spawn("nope", Vec::new()).unwrap_err();
    assert_eq!(err.to_string(), "no component named \"nope\" is loaded");
}

/// Whether `word` occurs in `text` as a whole identifier.
fn contains_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word)
        .any(|(at, _)| !text[..at].ends_with(ident) && !text[at + word.len()..].starts_with(ident))
}

/// Every component in `components/` is exercised by some end-to-end test: its package
/// name appears quoted, or its path constant (`rusm_e2e::PLUGIN_GREETER`) by name, in a
/// test module of `tests/all` or of an example.
#[test]
fn every_component_has_a_test() {
    // The end-to-end suites: this one, the `rusm` command's, and each example's own.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("all"), root.join("../crates/rusm-cli/tests/all")];
    for example in std::fs::read_dir(root.join("../examples")).unwrap() {
        dirs.push(example.unwrap().path().join("tests"));
    }
    let mut sources = String::new();
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                sources.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let untested: Vec<&str> = rusm_e2e::ALL
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| {
            let constant = name.to_uppercase().replace('-', "_");
            !sources.contains(&format!("\"{name}\"")) && !contains_word(&sources, &constant)
        })
        .collect();
    assert!(
        untested.is_empty(),
        "components without an end-to-end test: {untested:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_exports_the_http_handler_loads_in_either_role() {
    let node = node(&["counter"]);
    let path = rusm_e2e::component("http-cli").unwrap();
    let command = node.load_file("as-command", path).unwrap();
    assert_eq!(command.kind, ComponentKind::Command);
    let handler = node.load_http_file("as-handler", path).unwrap();
    assert_eq!(handler.kind, ComponentKind::Http);

    // A new version of a name loaded as a handler stays a handler.
    node.reload("as-handler", std::fs::read(path).unwrap())
        .await
        .unwrap();
    assert_eq!(node.component_kind("as-handler"), Some(ComponentKind::Http));

    // As a command it runs its main.
    let (_, exit) = node
        .spawn_watched("as-command", rusm_wasm::WasmSpawnOptions::default())
        .unwrap();
    assert_eq!(exit.await, rusm_otp::ExitReason::Normal);

    // A component without the handler cannot be loaded as one.
    let err = node
        .load_http_file("not-http", rusm_e2e::component("counter").unwrap())
        .unwrap_err();
    assert!(matches!(err, LoadError::NotHttpHandler { .. }), "{err}");
    assert!(err.to_string().contains("is not an HTTP handler"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_calling_exit_with_code_ends_with_its_code() {
    let node = node(&["exit-code"]);
    let (_, exit) = node
        .spawn_watched("exit-code", rusm_wasm::WasmSpawnOptions::default())
        .unwrap();
    assert_eq!(exit.await, rusm_otp::ExitReason::custom("exit code 3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_probe_succeeds_only_with_its_grant() {
    let node = node(&["cli-probe"]);
    // cli-probe reads a variable: granted, it ends normally; denied, with failure
    // (Rust's std tells the host only that it failed).
    for (env, granted) in [("vars = { A = \"b\" }\n", true), ("", false)] {
        let policy = crate::policy(&format!(
            "[env]\nargs = [\"cli-probe\", \"env\", \"A\"]\n{env}"
        ));
        let options = rusm_wasm::WasmSpawnOptions {
            policy: Some(policy),
            ..rusm_wasm::WasmSpawnOptions::default()
        };
        let (_, exit) = node.spawn_watched("cli-probe", options).unwrap();
        let reason = exit.await;
        assert_eq!(reason.is_normal(), granted, "{env}: {reason}");
        assert!(
            matches!(
                reason,
                rusm_otp::ExitReason::Normal | rusm_otp::ExitReason::Custom(_)
            ),
            "{env}: {reason}"
        );
    }
}
