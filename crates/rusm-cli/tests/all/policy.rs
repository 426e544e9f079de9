//! `rusm policy check` and `rusm policy explain`, and `rusm inspect`.

use crate::{components, run};

#[test]
fn check_accepts_every_shipped_policy() {
    for entry in std::fs::read_dir(crate::root().join("capabilities")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = run(&["policy", "check", path.to_str().unwrap()]);
            assert_eq!(out.code(), 0, "{}", out.stderr);
            assert_eq!(out.stdout, format!("{}: ok\n", path.display()));
        }
    }
}

#[test]
fn explain_prints_the_policy_in_words() {
    let out = run(&["policy", "explain", "capabilities/counter.toml"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let policy =
        rusm_policy::Policy::from_file(crate::root().join("capabilities/counter.toml")).unwrap();
    assert_eq!(out.stdout, policy.explain());
    assert!(
        out.stdout
            .contains("process: may register name \"counter\"")
    );
}

#[test]
fn inspect_lists_imports_and_what_the_policy_denies() {
    let counter = components::COUNTER.path().to_str().unwrap();
    let out = run(&["inspect", counter]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let text = &out.stdout;
    assert!(text.contains("world: rusm:runtime/actor"), "{text}");
    assert!(text.contains("runs in rusm: yes, as an actor"), "{text}");
    assert!(text.contains("\n  rusm:runtime/entry@"), "{text}");
    // Under the default policy the counter may not register its name.
    let process = text
        .lines()
        .find(|l| l.trim_start().starts_with("rusm:runtime/process@"))
        .unwrap();
    assert!(
        process.contains("DENIED: [process] register not permitted"),
        "{process}"
    );

    let out = run(&["inspect", counter, "--policy", "capabilities/counter.toml"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let process = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("rusm:runtime/process@"))
        .unwrap();
    assert!(
        process.contains("granted: [process] register counter"),
        "{process}"
    );
}

#[test]
fn inspect_maps_wasi_interfaces_to_policy_sections() {
    let out = run(&["inspect", components::FS_PROBE.path().to_str().unwrap()]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let fs = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("wasi:filesystem/preopens@"))
        .unwrap();
    assert!(fs.contains("DENIED: [fs] no preopened directories"), "{fs}");
    let denied = out
        .stdout
        .lines()
        .find(|l| l.starts_with("denied by this policy: "))
        .unwrap();
    assert!(denied.contains("wasi:filesystem/preopens@"), "{denied}");

    let out = run(&["inspect", components::CLOCK_PROBE.path().to_str().unwrap()]);
    let wall = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("wasi:clocks/wall-clock@"))
        .unwrap();
    assert!(wall.contains("DENIED: [clocks] wall is off"), "{wall}");

    let out = run(&["inspect", components::HELLO_CLI.path().to_str().unwrap()]);
    assert!(
        out.stdout.contains("world: wasi:cli/command"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("runs in rusm: yes, as a command"),
        "{}",
        out.stdout
    );
}

#[test]
fn inspect_tells_handler_actors_and_plugins_apart() {
    let out = run(&["inspect", components::IDLE_HANDLER.path().to_str().unwrap()]);
    assert!(
        out.stdout.contains("world: rusm:runtime/handler-actor"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("runs in rusm: yes, as a handler-style actor"),
        "{}",
        out.stdout
    );

    // A plugin exports its host's own interface: the command cannot run it alone.
    let out = run(&[
        "inspect",
        components::PLUGIN_GREETER.path().to_str().unwrap(),
    ]);
    assert!(out.stdout.contains("world: unknown"), "{}", out.stdout);
    assert!(
        out.stdout.contains("a plugin of an embedding host"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("runs in rusm: no"), "{}", out.stdout);
    let host = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("myapp:plugin/host"))
        .unwrap();
    assert!(
        host.contains("DENIED: not provided by the rusm command"),
        "{host}"
    );
}

#[cfg(unix)]
#[test]
fn check_refuses_a_preopen_through_a_symlink_or_missing() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("policy-check-preopen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("real")).unwrap();
    std::os::unix::fs::symlink("real", dir.join("link")).unwrap();
    for (host, why) in [
        ("real", None),
        ("link", Some("link is a symbolic link")),
        ("gone", Some("gone does not exist")),
    ] {
        let file = dir.join(format!("{host}.toml"));
        std::fs::write(
            &file,
            format!("[[fs.preopen]]\nhost = \"{host}\"\nguest = \"/data\"\n"),
        )
        .unwrap();
        let out = run(&["policy", "check", file.to_str().unwrap()]);
        match why {
            None => assert_eq!(out.code(), 0, "{}", out.stderr),
            Some(why) => {
                assert_eq!(out.code(), 2, "{host}: {}", out.stdout);
                let expected = format!("rusm: error: {}:2:8: preopen ", file.display());
                assert!(
                    out.stderr.starts_with(&expected) && out.stderr.contains(why),
                    "{}",
                    out.stderr
                );
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
