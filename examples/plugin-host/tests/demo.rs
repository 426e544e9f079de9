//! The example's binary, run the way the guide tells a newcomer to run it.

use std::process::Command;

rusm_e2e::components!();

#[test]
fn the_demo_binary_calls_both_plugins_survives_the_looper_and_reloads_the_greeter() {
    let out = Command::new(env!("CARGO_BIN_EXE_plugin-host"))
        .args([
            components::PLUGIN_GREETER.path(),
            components::PLUGIN_LOOPER.path(),
            components::PLUGIN_GREETER_V2.path(),
        ])
        .output()
        .expect("plugin-host starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("greeter 1 (<0."), "{stdout}");
    for expected in [
        "Hello, world!",
        "2 + 3 = 5",
        "Hello, again!",
        "looper 1",
        "reloaded greeter to version 2: greeter 2",
        "log: greeter: greeted world",
        "log: greeter: greeted again",
    ] {
        assert!(
            lines.contains(&expected),
            "no line {expected:?} in\n{stdout}"
        );
    }
    let looper = lines
        .iter()
        .find(|l| l.starts_with("looper: "))
        .unwrap_or_else(|| panic!("no looper line in\n{stdout}"));
    assert!(looper.contains("did not answer within 200ms"), "{looper}");
}

#[test]
fn the_demo_binary_explains_its_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_plugin-host"))
        .output()
        .expect("plugin-host starts");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("usage: plugin-host"), "{stderr}");
}
