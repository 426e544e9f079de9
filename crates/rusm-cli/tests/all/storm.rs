//! `rusm run APP.toml` with a restart storm: a supervisor with no practical intensity
//! limit restarting the crasher, which traps as soon as it starts. The app must still
//! stop after its steps and on Ctrl-C, and the storm shows in the log and the metrics.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::{
    components, finish, http_get, lines, rusm, signal_interrupt, temp_dir, wait, wait_for_line,
};

/// How long a stopping app may take before the test fails.
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// An app whose root supervisor restarts the crasher up to a billion times a second,
/// with `steps` (TOML) after the tree.
fn storm_app(name: &str, steps: &str) -> PathBuf {
    let dir = temp_dir(name);
    let file = dir.join("app.toml");
    let manifest = format!(
        r#"name = "storm"

[components.crasher]
path = {:?}

[supervisor]
max_restarts = 1000000000
period = "1s"
children = [{{ id = "crasher", component = "crasher", init = "unreachable", restart = "permanent" }}]

{steps}
"#,
        components::CRASHER.path()
    );
    std::fs::write(&file, manifest).unwrap();
    file
}

/// Runs the app at `file` with `RUST_LOG=error` until it ends by itself (failing past
/// the bound), and checks that it ended well after its one step.
fn run_to_its_end(file: &std::path::Path) -> crate::Output {
    let out = finish(
        rusm()
            .env("RUST_LOG", "error")
            .args(["run", file.to_str().unwrap()]),
        STOP_LIMIT + Duration::from_secs(30),
    );
    assert_eq!(
        out.code(),
        0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("all 1 steps done"), "{}", out.stdout);
    out
}

#[test]
fn an_app_in_a_restart_storm_stops_after_its_steps() {
    let file = storm_app("storm-steps", "[[steps]]\nsleep = \"3s\"\n");
    let out = run_to_its_end(&file);
    let summary = out
        .stdout
        .lines()
        .find(|l| l.starts_with("stopped storm: "))
        .unwrap_or_else(|| panic!("no summary in:\n{}", out.stdout));
    // The storm ran: many restarts, each a crash.
    let restarts: u64 = summary
        .split(" processes spawned, ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no restart count in {summary:?}"));
    assert!(restarts > 100, "{summary}");
    assert!(summary.contains(" crashed"), "{summary}");
}

/// A supervision tree whose first child is a supervisor storming with the crasher,
/// and whose second (`slow`) traps exits and so takes its whole shutdown timeout to
/// stop: the root stops it first, and meanwhile the storming supervisor sees its
/// child end while the node is stopping.
fn storm_behind_a_slow_sibling(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    let file = dir.join("app.toml");
    // The spawner's init: reporter <0.1> (the app process, which ignores data), no
    // children, flags trap exits and stay, no component, policy or child init.
    let spawner_init =
        "[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]";
    let manifest = format!(
        r#"name = "storm"

[components.crasher]
path = {:?}

[components.spawner]
path = {:?}

[supervisor]
max_restarts = 10
period = "1s"

[[supervisor.children]]
id = "storm"
max_restarts = 1000000000
period = "1s"
children = [{{ id = "crasher", component = "crasher", init = "unreachable", restart = "permanent" }}]

[[supervisor.children]]
id = "slow"
component = "spawner"
init = {spawner_init}
shutdown = "500ms"

[[steps]]
sleep = "1s"
"#,
        components::CRASHER.path(),
        components::SPAWNER.path()
    );
    std::fs::write(&file, manifest).unwrap();
    file
}

#[test]
fn an_app_stops_after_its_steps_while_a_nested_supervisor_storms() {
    let file = storm_behind_a_slow_sibling("storm-nested-steps");
    let out = run_to_its_end(&file);
    assert!(out.stdout.contains("stopped storm: "), "{}", out.stdout);
}

#[test]
fn ctrl_c_stops_an_app_in_a_restart_storm() {
    let file = storm_behind_a_slow_sibling("storm-ctrl-c");
    let mut child = rusm()
        .env("RUST_LOG", "error")
        .args(["run", file.to_str().unwrap(), "--keep-running"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines(child.stdout.take().unwrap());
    let stderr = lines(child.stderr.take().unwrap());
    let mut seen = String::new();
    wait_for_line(&stdout, "all 1 steps done", &mut seen);
    signal_interrupt(&child);
    let status = wait(child, STOP_LIMIT);
    let rest: Vec<String> = stdout.try_iter().collect();
    let errors: Vec<String> = stderr.try_iter().collect();
    let errors = errors.join("\n");
    assert_eq!(
        status.code(),
        Some(0),
        "{seen}{}\n{errors}",
        rest.join("\n")
    );
    assert!(errors.contains("rusm: Ctrl-C; stopping"), "{errors}");
    let summary = rest
        .iter()
        .find(|l| l.starts_with("stopped storm: "))
        .unwrap_or_else(|| panic!("no summary in:\n{}", rest.join("\n")));
    // The slow child was killed once its shutdown timeout ran out.
    assert!(summary.contains(" killed"), "{summary}");
}

#[test]
fn a_restart_storm_is_logged_and_counted_per_supervisor() {
    let file = storm_app("storm-visible", "[[steps]]\nsay = \"storming\"\n");
    let mut child = rusm()
        .env("RUST_LOG", "warn,rusm::app=info")
        .args([
            "run",
            file.to_str().unwrap(),
            "--keep-running",
            "--metrics",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = lines(child.stderr.take().unwrap());
    let mut seen = String::new();
    wait_for_line(&stderr, "metrics at http://", &mut seen);
    let addr = seen
        .split("metrics at http://")
        .nth(1)
        .and_then(|rest| rest.split("/metrics").next())
        .unwrap()
        .to_owned();
    // The root supervisor (<0.2>, under the app process <0.1>) warns about the storm.
    wait_for_line(&stderr, "restart storm", &mut seen);
    let warning = seen.lines().rfind(|l| l.contains("restart storm")).unwrap();
    assert!(warning.contains("supervisor=<0.2>"), "{warning}");
    assert!(warning.contains(" restarts in the last "), "{warning}");

    let answer = http_get(&addr, "/metrics");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains("# TYPE rusm_supervisor_child_restarts_total counter\n"),
        "{answer}"
    );
    let prefix =
        "rusm_supervisor_child_restarts_total{supervisor=\"<0.2>\",label=\"supervisor root\"} ";
    let count: u64 = answer
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{answer}"));
    assert!(count > 0, "{answer}");

    signal_interrupt(&child);
    let status = wait(child, STOP_LIMIT);
    assert_eq!(status.code(), Some(0));
}
