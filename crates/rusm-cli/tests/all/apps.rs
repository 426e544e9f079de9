//! `rusm run APP.toml`: the README's demo, a root supervisor giving up, Ctrl-C and the
//! metrics endpoint.

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use crate::{components, finish, http_get, lines, root, run, rusm, temp_dir, wait};

/// The README's quick start: its first command runs the demo through `rusm run`, its
/// second runs the whole test suite.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("## Quick start")
        .expect("the README has a quick start");
    let block = readme[start..]
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the quick start has a sh block");
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_readme_demo_command_runs_the_demo_to_a_clean_end() {
    let commands = readme_commands();
    assert_eq!(
        commands,
        [
            "cargo run --release -p rusm-cli -- run apps/demo/app.toml",
            "cargo test --workspace"
        ]
    );
    // The same command, with the binary this test was built with, serving on a port
    // the system picks (the demo's own is 8080, which anything may hold).
    let args: Vec<&str> = commands[0]
        .split_once(" -- ")
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let out = finish(
        rusm().args(&args).args(["--listen", "127.0.0.1:0"]),
        Duration::from_secs(300),
    );
    assert_eq!(
        out.code(),
        0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    let all = format!("{}\n{}", out.stdout, out.stderr);
    for expected in [
        // The crasher, under its own supervisor and an 8 MiB policy, runs out of
        // memory, is restarted twice, and its supervisor gives up.
        "crashers <0.4> ended: reached max restart intensity",
        "restart crasher as",
        "crasher: out of memory",
        // The counter is crashed and restarted by the root supervisor.
        "exit    <0.3> counter: demo crash",
        "restart counter as",
        "steps done",
        "stopped demo:",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    let serving = all
        .lines()
        .find_map(|l| l.split_once("serving * http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no serving line in:\n{all}"))
        .1;
    let port: u16 = serving.split_once('/').unwrap().0.parse().unwrap();
    assert_ne!(port, 8080, "{all}");
}

#[test]
fn the_app_exits_non_zero_when_the_root_supervisor_gives_up() {
    let dir = temp_dir("root-gives-up");
    let file = dir.join("app.toml");
    let manifest = format!(
        r#"name = "doomed"

[components.crasher]
path = {:?}

[supervisor]
max_restarts = 1
period = "1m"
children = [{{ id = "c", component = "crasher", init = "error" }}]
"#,
        components::CRASHER.path()
    );
    std::fs::write(&file, manifest).unwrap();
    let out = run(&["run", file.to_str().unwrap()]);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("rusm: the root supervisor of doomed ended: reached max restart intensity"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.matches("restart c as").count(),
        1,
        "{}",
        out.stderr
    );
}

#[test]
fn the_node_table_sizes_the_app_node() {
    let dir = temp_dir("node-table");
    let file = dir.join("app.toml");
    let manifest = format!(
        r#"name = "sized"

[node]
allocator = "pooling"
max_instances = 8
time_slice = "5ms"

[components.counter]
path = {:?}

[supervisor]
children = [{{ id = "c", component = "counter" }}]

[[steps]]
say = "up"
"#,
        components::COUNTER.path()
    );
    std::fs::write(&file, manifest).unwrap();
    let out = run(&["run", file.to_str().unwrap()]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("node: pooling allocator, at most 8 instances, time slice 5ms"),
        "{}",
        out.stderr
    );
}

#[test]
fn ctrl_c_stops_the_app_gracefully_and_metrics_are_served_meanwhile() {
    let dir = temp_dir("ctrl-c");
    let file = dir.join("app.toml");
    let manifest = format!(
        r#"name = "steady"

[components.counter]
path = {:?}
policy = "{}"

[supervisor]
children = [{{ id = "counter", component = "counter", init = "counter" }}]
"#,
        components::COUNTER.path(),
        root().join("capabilities/counter.toml").display()
    );
    std::fs::write(&file, manifest).unwrap();
    let mut child = rusm()
        .args(["run", file.to_str().unwrap(), "--metrics", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = lines(child.stderr.take().unwrap());
    let mut metrics_addr = None;
    let mut seen = String::new();
    loop {
        let line = stderr
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the app did not come up:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.split("metrics at http://").nth(1) {
            metrics_addr = Some(rest.trim_end_matches("/metrics").to_owned());
        }
        if line.contains("app steady is up; press Ctrl-C to stop") {
            break;
        }
    }
    let addr = metrics_addr.expect("the metrics address is logged");
    let answer = http_get(&addr, "/metrics");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    // The app process, the root supervisor and the counter.
    assert!(answer.contains("\nrusm_processes_live 3\n"), "{answer}");
    assert!(
        answer.contains("\nrusm_processes_spawned_total 3\n"),
        "{answer}"
    );
    assert!(
        answer.contains("\nrusm_process_exits_total{reason=\"crashed\"} 0\n"),
        "{answer}"
    );
    assert!(
        answer.contains("\nrusm_supervisor_restarts_total 0\n"),
        "{answer}"
    );
    assert!(
        answer.contains("# TYPE rusm_mailbox_high_water_messages gauge\n"),
        "{answer}"
    );
    assert!(
        http_get(&addr, "/other").starts_with("HTTP/1.1 404"),
        "404 elsewhere"
    );

    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = wait(child, Duration::from_secs(30));
    let rest: Vec<String> = stderr.try_iter().collect();
    let rest = rest.join("\n");
    assert_eq!(status.code(), Some(0), "{seen}{rest}");
    assert!(rest.contains("Ctrl-C; stopping"), "{rest}");
    assert!(rest.contains("exit    <0.3> counter: shutdown"), "{rest}");
    assert!(
        stdout.contains(
            "stopped steady: 3 processes spawned, 0 restarts; exits: 1 normal, 2 shutdown"
        ),
        "{stdout}"
    );
}

#[test]
fn watch_reloads_a_changed_component_and_upgrades_its_process_in_place() {
    let dir = temp_dir("watch");
    let wasm = dir.join("counter.wasm");
    std::fs::copy(components::COUNTER.path(), &wasm).unwrap();
    let file = dir.join("app.toml");
    let manifest = format!(
        r#"name = "watched"

[components.counter]
path = "counter.wasm"
policy = "{}"

[supervisor]
children = [{{ id = "counter", component = "counter", init = "counter" }}]
"#,
        root().join("capabilities/counter.toml").display()
    );
    std::fs::write(&file, manifest).unwrap();
    let mut child = rusm()
        .args(["run", file.to_str().unwrap(), "--watch"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = lines(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut wait_for = |text: &str| loop {
        let line = stderr
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no {text:?} in:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(text) {
            return;
        }
    };
    wait_for("watching 1 components for changes");
    // A new version appears: written aside, then renamed over the old one.
    let next = dir.join("counter.wasm.new");
    std::fs::copy(components::COUNTER_V2.path(), &next).unwrap();
    std::fs::rename(&next, &wasm).unwrap();
    wait_for("reload  counter is now version 2: 1 processes upgraded in place, 0 timed out");
    // A broken version is refused and the old one stays live.
    std::fs::write(&next, "not wasm").unwrap();
    std::fs::rename(&next, &wasm).unwrap();
    wait_for(
        "reload  counter failed: component \"counter\" is not a WebAssembly binary (no \\0asm header); the old version stays live",
    );

    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = wait(child, Duration::from_secs(30));
    let rest: Vec<String> = stderr.try_iter().collect();
    assert_eq!(status.code(), Some(0), "{seen}{}", rest.join("\n"));
    // The counter was upgraded under its pid, not restarted.
    assert!(!seen.contains("restart counter"), "{seen}");
}
