//! An idle node costs no wake-ups: while no guest runs, the thread that preempts
//! guests sleeps until one starts.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::{components, lines, rusm, signal_interrupt, temp_dir, wait, wait_for_line};

/// The voluntary context switches of the process `pid`'s thread named `name`.
fn thread_wakeups(pid: u32, name: &str) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let mut names = Vec::new();
    for task in tasks {
        let dir = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if comm.trim_end() != name {
            names.push(comm.trim_end().to_owned());
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap();
        return status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .expect("a thread's status counts its voluntary context switches")
            .trim()
            .parse()
            .unwrap();
    }
    panic!("process {pid} has no thread named {name}, only {names:?}");
}

#[test]
fn the_epoch_thread_of_an_idle_node_sleeps() {
    let dir = temp_dir("idle-epoch");
    let file = dir.join("app.toml");
    let manifest = format!(
        r#"name = "idle"

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
    let mut child = rusm()
        .env("RUST_LOG", "error")
        .args(["run", file.to_str().unwrap(), "--keep-running"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = lines(child.stdout.take().unwrap());
    let mut seen = String::new();
    wait_for_line(&stdout, "all 1 steps done", &mut seen);

    // With a 1 ms slice the thread looked every 0.5 ms, 1,000 wake-ups in a 500 ms
    // window. Now, once the counter waits in `receive`, a window sees at most the
    // look that put it to sleep.
    let window = Duration::from_millis(500);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Vec::new();
    loop {
        let (before, start) = (thread_wakeups(child.id(), "rusm-epoch"), Instant::now());
        while start.elapsed() < window {
            std::thread::park_timeout(window - start.elapsed());
        }
        let woke = thread_wakeups(child.id(), "rusm-epoch") - before;
        if woke <= 3 {
            break;
        }
        last.push(woke);
        assert!(
            Instant::now() < deadline,
            "the epoch thread of an idle node kept waking: {last:?} times per {window:?}"
        );
    }
    signal_interrupt(&child);
    let status = wait(child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0));
}
