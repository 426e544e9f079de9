//! `rusm run COMPONENT.wasm`: one actor, or a plain WASI command sandboxed by a policy.

use crate::{components, run, temp_dir};

#[test]
fn a_wasi_command_runs_and_its_exit_code_is_rusms() {
    let hello = components::HELLO_CLI.path().to_str().unwrap();
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
        components::HELLO_CLI.path().to_str().unwrap(),
        "--policy",
        silent.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(!out.stderr.contains("hello from rusm"), "{}", out.stderr);
}

#[test]
fn an_actor_runs_with_init_data_and_its_exit_reason_sets_the_code() {
    let crasher = components::CRASHER.path().to_str().unwrap();
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
    let out = run(&["run", components::TRIVIAL.path().to_str().unwrap()]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("exit    <0.1> trivial: normal"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_command_calling_exit_with_code_passes_its_code_through() {
    let wasm = components::EXIT_CODE.path().to_str().unwrap();
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

/// `rusm run cli-probe.wasm FLAGS -- ARGS`.
fn probe(flags: &[&str], args: &[&str]) -> crate::Output {
    let wasm = components::CLI_PROBE.path().to_str().unwrap();
    let all: Vec<&str> = ["run", wasm]
        .into_iter()
        .chain(flags.iter().copied())
        .chain(["--"])
        .chain(args.iter().copied())
        .collect();
    run(&all)
}

#[test]
fn dir_preopens_a_directory_for_one_run_only() {
    let dir = temp_dir("grant-dir");
    std::fs::write(dir.join("note.txt"), "granted by --dir").unwrap();
    let host = dir.to_str().unwrap();

    let denied = probe(&[], &["read", "/data/note.txt"]);
    assert_eq!(denied.code(), 1, "{}", denied.stderr);
    assert!(
        denied.stderr.contains("cli-probe: failed: "),
        "{}",
        denied.stderr
    );

    let flag = format!("{host}::/data");
    let granted = probe(&["--dir", &flag, "-v"], &["read", "/data/note.txt"]);
    assert_eq!(granted.code(), 0, "{}", granted.stderr);
    assert!(
        granted.stderr.contains("cli-probe: read: granted by --dir"),
        "{}",
        granted.stderr
    );
    assert!(
        granted.stderr.contains(&format!(
            "rusm: --dir {flag} grants: [[fs.preopen]] host = \"{host}\" guest = \"/data\" mode = \"rw\""
        )),
        "{}",
        granted.stderr
    );
    // Read-write, as wasmtime's --dir; without GUEST the guest sees HOST as written.
    let file = format!("{host}/written.txt");
    let wrote = probe(&["--dir", host], &["write", &file, "by the guest"]);
    assert_eq!(wrote.code(), 0, "{}", wrote.stderr);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "by the guest");

    let bad = probe(&["--dir", &format!("{host}::/a/../b")], &["read", "/b"]);
    assert_eq!(bad.code(), 2, "{}", bad.stderr);
    assert!(bad.errors()[0].contains("--dir "), "{}", bad.stderr);
}

/// `rusm run cli-probe.wasm FLAGS -- ARGS` started in `dir`.
fn probe_in(dir: &std::path::Path, flags: &[&str], args: &[&str]) -> crate::Output {
    let wasm = components::CLI_PROBE.path().to_str().unwrap();
    let mut command = crate::rusm();
    command
        .current_dir(dir)
        .args(["run", wasm])
        .args(flags)
        .arg("--")
        .args(args);
    crate::finish(&mut command, std::time::Duration::from_secs(120))
}

#[test]
fn dir_takes_relative_guest_names_as_wasmtime_does() {
    let dir = temp_dir("grant-dir-relative");
    std::fs::write(dir.join("here.txt"), "in the current directory").unwrap();
    std::fs::create_dir_all(dir.join("fixtures/deep")).unwrap();
    std::fs::write(dir.join("fixtures/deep/f.txt"), "nested").unwrap();

    // `--dir .`: the guest's `.` is rusm's current directory, so relative paths
    // (which wasi-libc resolves against `/`, then looks up among the preopens) and
    // `./` paths reach it.
    for path in ["here.txt", "./here.txt", "/here.txt"] {
        let out = probe_in(&dir, &["--dir", ".", "-v"], &["read", path]);
        assert_eq!(out.code(), 0, "{path}: {}", out.stderr);
        assert!(
            out.stderr
                .contains("cli-probe: read: in the current directory"),
            "{path}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(
                "rusm: --dir . grants: [[fs.preopen]] host = \".\" guest = \".\" mode = \"rw\""
            ),
            "{}",
            out.stderr
        );
    }
    // HOST::GUEST with a relative and with a nested name.
    for path in ["readonly/deep/f.txt", "/readonly/deep/f.txt"] {
        let out = probe_in(&dir, &["--dir", "fixtures::readonly"], &["read", path]);
        assert_eq!(out.code(), 0, "{path}: {}", out.stderr);
        assert!(
            out.stderr.contains("cli-probe: read: nested"),
            "{}",
            out.stderr
        );
    }
    let out = probe_in(
        &dir,
        &["--dir", "fixtures/deep::a/b"],
        &["read", "a/b/f.txt"],
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("cli-probe: read: nested"),
        "{}",
        out.stderr
    );
    // A name is only a label: nothing outside the host directory becomes reachable
    // through it.
    let out = probe_in(
        &dir,
        &["--dir", "fixtures::readonly"],
        &["read", "readonly/../here.txt"],
    );
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("cli-probe: failed: "), "{}", out.stderr);

    // `..` stays refused in a guest name, with the way out named.
    let out = probe_in(
        &dir.join("fixtures"),
        &["--dir", "../fixtures"],
        &["read", "x"],
    );
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert_eq!(
        out.errors(),
        [
            "rusm: error: --dir ../fixtures: the guest would see it as \"../fixtures\", and guest names cannot contain \"..\"; name it with --dir ../fixtures::GUEST"
        ],
        "{}",
        out.stderr
    );
}

#[test]
fn the_policy_names_the_initial_working_directory() {
    let dir = temp_dir("policy-cwd");
    std::fs::create_dir_all(dir.join("data/sub")).unwrap();
    std::fs::write(dir.join("data/sub/rel.txt"), "relative to the cwd").unwrap();
    let policy = dir.join("cwd.toml");
    std::fs::write(
        &policy,
        "[[fs.preopen]]\nhost = \"data\"\nguest = \"/data\"\n\n[env]\ncwd = \"/data/sub\"\n\n[stdio]\nstdout = \"log\"\n",
    )
    .unwrap();
    let with = |args: &[&str]| probe(&["--policy", policy.to_str().unwrap()], args);

    let out = with(&["cwd"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("cli-probe: cwd: /data/sub"),
        "{}",
        out.stderr
    );
    // A relative open is resolved against it.
    let out = with(&["read", "rel.txt"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("cli-probe: read: relative to the cwd"),
        "{}",
        out.stderr
    );
    // Without it the program starts in `/`, where `rel.txt` is not.
    let data = format!("{}::/data", dir.join("data").display());
    let out = probe(&["--dir", &data], &["cwd"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("cli-probe: cwd: / pid="),
        "{}",
        out.stderr
    );
    let out = probe(&["--dir", &data], &["read", "rel.txt"]);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("cli-probe: failed: NotFound"),
        "{}",
        out.stderr
    );

    let inspected = run(&[
        "inspect",
        components::CLI_PROBE.path().to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert!(
        inspected.stdout.contains(
            "granted: [env] 0 variables, 0 inherited, 0 arguments, working directory /data/sub"
        ),
        "{}",
        inspected.stdout
    );
    let explained = run(&["policy", "explain", policy.to_str().unwrap()]);
    assert!(
        explained
            .stdout
            .contains("env: working directory /data/sub"),
        "{}",
        explained.stdout
    );
}

#[test]
fn env_sets_or_passes_a_variable_for_one_run_only() {
    let denied = probe(&[], &["env", "GREETING"]);
    assert_eq!(denied.code(), 1, "{}", denied.stderr);
    assert!(
        denied.stderr.contains("cli-probe: failed: NotPresent"),
        "{}",
        denied.stderr
    );

    let set = probe(&["--env", "GREETING=hi there", "-v"], &["env", "GREETING"]);
    assert_eq!(set.code(), 0, "{}", set.stderr);
    assert!(
        set.stderr.contains("cli-probe: env: GREETING=hi there"),
        "{}",
        set.stderr
    );
    assert!(
        set.stderr.contains(
            "rusm: --env GREETING=hi there grants: [env] vars = { \"GREETING\" = \"hi there\" }"
        ),
        "{}",
        set.stderr
    );

    // Without a value, rusm's own value is passed through; never without the flag.
    let wasm = components::CLI_PROBE.path().to_str().unwrap();
    let args = [
        "run",
        wasm,
        "--env",
        "RUSM_GRANT_TEST",
        "--",
        "env",
        "RUSM_GRANT_TEST",
    ];
    let out = crate::finish(
        crate::rusm().args(args).env("RUSM_GRANT_TEST", "from rusm"),
        std::time::Duration::from_secs(120),
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("cli-probe: env: RUSM_GRANT_TEST=from rusm"),
        "{}",
        out.stderr
    );
    let out = crate::finish(
        crate::rusm()
            .args(["run", wasm, "--", "env", "RUSM_GRANT_TEST"])
            .env("RUSM_GRANT_TEST", "from rusm"),
        std::time::Duration::from_secs(120),
    );
    assert_eq!(out.code(), 1, "{}", out.stderr);
}

#[test]
fn inherit_network_grants_sockets_for_one_run_only() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let denied = probe(&[], &["connect", &addr]);
    assert_eq!(denied.code(), 1, "{}", denied.stderr);
    assert!(
        denied
            .stderr
            .contains("cli-probe: failed: PermissionDenied"),
        "{}",
        denied.stderr
    );
    let granted = probe(&["--inherit-network"], &["connect", &addr]);
    assert_eq!(granted.code(), 0, "{}", granted.stderr);
    assert!(
        granted
            .stderr
            .contains(&format!("cli-probe: connected to {addr}")),
        "{}",
        granted.stderr
    );
}

#[test]
fn clock_flags_grant_reading_a_clock_for_one_run_only() {
    for (which, flag) in [("wall", "--wall-clock"), ("monotonic", "--monotonic-clock")] {
        let denied = probe(&[], &["clock", which]);
        assert_eq!(denied.code(), 1, "{which}: {}", denied.stderr);
        assert!(
            denied.stderr.contains("capability denied: wasi:clocks"),
            "{which}: {}",
            denied.stderr
        );
        let granted = probe(&[flag, "-v"], &["clock", which]);
        assert_eq!(granted.code(), 0, "{which}: {}", granted.stderr);
        assert!(
            granted
                .stderr
                .contains(&format!("cli-probe: {which} clock read")),
            "{which}: {}",
            granted.stderr
        );
        assert!(
            granted
                .stderr
                .contains(&format!("rusm: {flag} grants: [clocks] {which} = true")),
            "{which}: {}",
            granted.stderr
        );
    }
}

#[test]
fn grant_flags_do_not_apply_to_an_app() {
    let out = run(&["run", "apps/demo/app.toml", "--env", "A=b"]);
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(out.errors()[0].contains("--env"), "{}", out.stderr);
}
