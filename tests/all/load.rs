use rusm_wasm::{ComponentKind, LoadError};

use crate::components;
use crate::node;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actors_and_commands_load_with_their_kind() {
    let node = node(&[]);
    let actor = node
        .load_file("counter", components::COUNTER.path())
        .unwrap();
    assert_eq!(actor.kind, ComponentKind::Actor);
    let command = node
        .load_file("hello", components::HELLO_CLI.path())
        .unwrap();
    assert_eq!(command.kind, ComponentKind::Command);
    assert_eq!(node.component_names(), ["counter", "hello"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_components_are_rejected_with_a_reason_and_change_nothing() {
    let node = node(&[components::COUNTER]);

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
    let counter = std::fs::read(components::COUNTER.path()).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_exports_the_http_handler_loads_in_either_role() {
    let node = node(&[components::COUNTER]);
    let path = components::HTTP_CLI.path();
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
        .load_http_file("not-http", components::COUNTER.path())
        .unwrap_err();
    assert!(matches!(err, LoadError::NotHttpHandler { .. }), "{err}");
    assert!(err.to_string().contains("is not an HTTP handler"), "{err}");
    // The error names both versions it looked for, and what the component exports.
    assert!(
        err.to_string()
            .contains("exports neither wasi:http/incoming-handler@0.2 nor wasi:http/handler@0.3")
            && err.to_string().contains("rusm:runtime/entry"),
        "{err}"
    );
    // A wasi:http 0.3 service loads as an HTTP handler, detected from its exports.
    node.load_http_file("p3", components::HTTP_P3.path())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(node.is_http_service("p3") && node.serves_http("p3"));
    assert!(!node.is_http_service("as-handler"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_calling_exit_with_code_ends_with_its_code() {
    let node = node(&[components::EXIT_CODE]);
    let (_, exit) = node
        .spawn_watched("exit-code", rusm_wasm::WasmSpawnOptions::default())
        .unwrap();
    assert_eq!(exit.await, rusm_otp::ExitReason::custom("exit code 3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_probe_succeeds_only_with_its_grant() {
    let node = node(&[components::CLI_PROBE]);
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
