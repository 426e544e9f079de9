//! `rusm run COMPONENT.wasm`: one actor, or a plain WASI command sandboxed by a policy.

use crate::{component, run, temp_dir};

#[test]
fn a_wasi_command_runs_and_its_exit_code_is_rusms() {
    let hello = component("hello-cli").to_str().unwrap();
    let out = run(&["run", hello]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    // Under the default policy stdout goes to the host log, tagged with the pid.
    assert!(out.stderr.contains("hello from rusm"), "{}", out.stderr);

    // Arguments after -- reach the program. Rust's std (through wasi-libc) ends a
    // program with WASI's `exit`, which carries only success or failure, so a non-zero
    // code is 1 here, as under `wasmtime run`; `exit-with-code` carries the code (below).
    let out = run(&["run", hello, "--", "7"]);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    let out = run(&["run", hello, "--", "0"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let out = run(&["run", hello, "--", "seven"]);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("the exit code must be an integer from 0 to 255, got \"seven\""),
        "{}",
        out.stderr
    );
}

#[test]
fn a_command_runs_under_the_given_policy() {
    let dir = temp_dir("command-policy");
    let silent = dir.join("silent.toml");
    std::fs::write(&silent, "[stdio]\nstdout = \"null\"\n").unwrap();
    let out = run(&[
        "run",
        component("hello-cli").to_str().unwrap(),
        "--policy",
        silent.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(!out.stderr.contains("hello from rusm"), "{}", out.stderr);
}

#[test]
fn an_actor_runs_with_init_data_and_its_exit_reason_sets_the_code() {
    let crasher = component("crasher").to_str().unwrap();
    let out = run(&["run", crasher, "--init", "error"]);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("rusm: crasher ended: crasher: requested error"),
        "{}",
        out.stderr
    );

    let out = run(&["run", crasher, "--init-hex", "756e726561636861626c65"]); // "unreachable"
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("rusm: crasher ended: crashed: "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("spawn   <0.1> crasher"),
        "{}",
        out.stderr
    );

    // `trivial` with empty init returns at once: a normal exit.
    let out = run(&["run", component("trivial").to_str().unwrap()]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("exit    <0.1> trivial: normal"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_command_calling_exit_with_code_passes_its_code_through() {
    let wasm = component("exit-code").to_str().unwrap();
    let out = run(&["run", wasm]);
    assert_eq!(out.code(), 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("exit-code: exiting with 3"),
        "{}",
        out.stderr
    );
    let out = run(&["run", wasm, "--", "42"]);
    assert_eq!(out.code(), 42, "{}", out.stderr);
    let out = run(&["run", wasm, "--", "0"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
}

