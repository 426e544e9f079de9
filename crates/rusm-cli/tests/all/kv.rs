//! `rusm kv` and an app's key-value database: a count kept by `http-counter` survives
//! a restart of the app, operators read and write it offline, and a database that is
//! locked by a running app or damaged is a clear error.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::{components, interrupt, lines, run, rusm, temp_dir, wait};

/// An app serving `http-counter` with the `counter` bucket granted, running `steps`.
fn counter_app(dir: &Path, node: &str, steps: &str) -> String {
    let file = dir.join("app.toml");
    let manifest = format!(
        r#"name = "kept"
{node}
[components.web]
path = {:?}
policy = {{ keyvalue = {{ buckets = [{{ name = "counter", mode = "rw" }}] }} }}

[components.idle]
path = {:?}

[supervisor]
children = [{{ id = "idle", component = "idle" }}]

[[listeners]]
listen = "127.0.0.1:0"
routes = [{{ path = "/counter", component = "web" }}]
{steps}"#,
        components::HTTP_COUNTER.path(),
        components::COUNTER.path()
    );
    std::fs::write(&file, manifest).unwrap();
    file.to_str().unwrap().to_owned()
}

fn step(request: &str, body: &str) -> String {
    format!("\n[[steps]]\nhttp = \"{request}\"\nexpect_body = \"{body}\"\n")
}

#[test]
fn a_stored_count_survives_a_restart_and_rusm_kv_reads_and_writes_it() {
    let dir = temp_dir("kv-restart");
    let steps = step("POST /counter", "1") + &step("POST /counter", "2");
    let app = counter_app(&dir, "", &steps);
    let out = run(&["run", &app]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(dir.join(".rusm/kv.redb").is_file(), "the default kv_path");

    let got = run(&["kv", "get", &app, "counter", "count"]);
    assert_eq!(
        (got.code(), got.stdout.as_str()),
        (0, "2\n"),
        "{}",
        got.stderr
    );
    let buckets = run(&["kv", "list", &app]);
    assert_eq!(buckets.stdout, "counter\t6 bytes\n", "{}", buckets.stderr);
    let keys = run(&["kv", "list", &app, "counter"]);
    assert_eq!(keys.stdout, "count\n");
    let set = run(&["kv", "set", &app, "counter", "count", "41"]);
    assert_eq!(set.code(), 0, "{}", set.stderr);

    // The app again, on the same file: the count goes on from what was stored.
    let steps = step("GET /counter", "41") + &step("POST /counter", "42");
    let app = counter_app(&dir, "", &steps);
    let out = run(&["run", &app]);
    assert_eq!(out.code(), 0, "{}", out.stderr);

    let missing = run(&["kv", "get", &app, "counter", "other"]);
    assert_eq!(missing.code(), 2);
    assert_eq!(
        missing.errors(),
        ["rusm: error: bucket \"counter\" has no key \"other\""]
    );
    let bad = run(&["kv", "get", &app, "a/b", "k"]);
    assert_eq!(bad.code(), 2);
    assert!(
        bad.errors()[0].contains("invalid bucket name \"a/b\""),
        "{}",
        bad.stderr
    );
}

/// `rusm run` on `app` until it is up, and the address its listener serves.
fn start(app: &str, name: &str) -> (std::process::Child, String) {
    let mut child = rusm()
        .args(["run", app])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = lines(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut addr = None;
    loop {
        let line = stderr
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the app did not come up:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if let Some((_, rest)) = line.split_once("serving * http://") {
            addr = rest.split_once('/').map(|(a, _)| a.to_owned());
        }
        if line.contains(&format!("app {name} is up")) {
            break;
        }
    }
    (child, addr.expect("the app logs its listener's address"))
}

/// `METHOD path` on `addr`: the body of a `200` answer.
fn http(addr: &str, method: &str, path: &str) -> String {
    let answer = crate::http_request(addr, method, path);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (head, mut body) = answer.split_once("\r\n\r\n").unwrap();
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_owned();
    }
    let mut text = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return text;
        }
        text.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

#[test]
fn rusm_kv_reads_and_writes_through_a_running_app() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = temp_dir("kv-live");
    let db = dir.join("state/app.redb");
    let socket = dir.join("state/app.redb.sock");
    let app = counter_app(&dir, "\n[node]\nkv_path = \"state/app.redb\"\n", "");
    let (child, addr) = start(&app, "kept");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only its owner reaches the socket");

    // What the actor stores, rusm kv reads from the running node.
    assert_eq!(http(&addr, "POST", "/counter"), "1\n");
    let got = run(&["kv", "get", &app, "counter", "count"]);
    assert_eq!(
        (got.code(), got.stdout.as_str()),
        (0, "1\n"),
        "{}",
        got.stderr
    );
    // What rusm kv stores, the actor sees at once.
    let set = run(&["kv", "set", &app, "counter", "count", "41"]);
    assert_eq!(set.code(), 0, "{}", set.stderr);
    assert_eq!(http(&addr, "GET", "/counter"), "41\n");
    assert_eq!(http(&addr, "POST", "/counter"), "42\n");
    let direct = run(&["kv", "get", db.to_str().unwrap(), "counter", "count"]);
    assert_eq!(direct.stdout, "42\n", "{}", direct.stderr);
    let buckets = run(&["kv", "list", &app]);
    assert_eq!(buckets.stdout, "counter\t7 bytes\n", "{}", buckets.stderr);
    let keys = run(&["kv", "list", &app, "counter"]);
    assert_eq!(keys.stdout, "count\n", "{}", keys.stderr);
    let deleted = run(&["kv", "delete", &app, "counter", "count"]);
    assert_eq!(deleted.code(), 0, "{}", deleted.stderr);
    assert_eq!(http(&addr, "GET", "/counter"), "0\n");
    let missing = run(&["kv", "get", &app, "counter", "count"]);
    assert_eq!(
        missing.errors(),
        ["rusm: error: bucket \"counter\" has no key \"count\""]
    );
    // The node's errors come back as errors.
    let bad = run(&["kv", "set", &app, "counter", &"k".repeat(5000), "v"]);
    assert_eq!(bad.code(), 2);
    assert!(
        bad.errors()[0].contains("key of 5000 bytes"),
        "{}",
        bad.stderr
    );

    // Something that is not a request gets an error back, and the node serves on.
    {
        use std::io::{Read, Write};
        let mut raw = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        raw.write_all(b"{\"op\": \"drop-everything\"}\n").unwrap();
        let mut answer = String::new();
        raw.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("{\"error\":\"bad request: "), "{answer}");
    }
    assert_eq!(run(&["kv", "set", &app, "counter", "count", "5"]).code(), 0);
    assert_eq!(http(&addr, "GET", "/counter"), "5\n");

    // A second app on the same file does not start, and leaves the first's socket.
    let second = run(&["run", &app]);
    assert_eq!(second.code(), 2);
    assert!(
        second.errors()[0].contains("it is locked by another open database"),
        "{}",
        second.stderr
    );
    assert_eq!(
        run(&["kv", "list", &app]).code(),
        0,
        "the first app still answers"
    );

    interrupt(child);
    assert!(!socket.exists(), "a stopped node removes its socket");
    // Stopped, it lets go of the file, and rusm kv opens it.
    let offline = run(&["kv", "set", &app, "counter", "count", "7"]);
    assert_eq!(offline.code(), 0, "{}", offline.stderr);
    assert_eq!(run(&["kv", "get", &app, "counter", "count"]).stdout, "7\n");
}

#[test]
fn a_locked_database_with_no_node_answering_is_an_error_naming_both() {
    let dir = temp_dir("kv-locked");
    let db = dir.join("state/app.redb");
    let socket = dir.join("state/app.redb.sock");
    let app = counter_app(&dir, "\n[node]\nkv_path = \"state/app.redb\"\n", "");
    let (child, _) = start(&app, "kept");
    // Someone removed the running node's socket: the file is locked and no node answers.
    std::fs::remove_file(&socket).unwrap();
    let expected = format!(
        "rusm: error: cannot open the key-value database {}: another process holds it locked, and no node answers on its operator socket {} (a node that is still starting, or one that is not rusm run)",
        db.display(),
        socket.display()
    );
    let out = run(&["kv", "list", &app]);
    assert_eq!(out.code(), 2);
    assert_eq!(out.errors(), [expected.as_str()]);
    let direct = run(&["kv", "set", db.to_str().unwrap(), "counter", "count", "9"]);
    assert_eq!(direct.errors(), [expected.as_str()]);
    // A socket file no node listens on is the same.
    std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let stale = run(&["kv", "get", &app, "counter", "count"]);
    assert_eq!(stale.errors(), [expected.as_str()]);
    interrupt(child);
    assert_eq!(run(&["kv", "list", &app]).code(), 0);
}

/// A database whose socket path is too long for a Unix socket address: the app runs
/// all the same, says why `rusm kv` cannot reach it, and `rusm kv` names the file.
#[test]
fn an_app_whose_operator_socket_cannot_be_made_runs_and_says_so() {
    let dir = temp_dir("kv-no-socket");
    let deep = "d".repeat(120);
    let node = format!("\n[node]\nkv_path = \"{deep}/kv.redb\"\n");
    let app = counter_app(&dir, &node, &step("POST /counter", "1"));
    let out = run(&["run", &app]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("no operator socket, so rusm kv cannot reach this node: cannot create the operator socket"),
        "{}",
        out.stderr
    );
    let got = run(&["kv", "get", &app, "counter", "count"]);
    assert_eq!(got.stdout, "1\n", "{}", got.stderr);
}

#[test]
fn a_damaged_database_stops_the_app_at_start_with_an_error_naming_it() {
    let dir = temp_dir("kv-damaged");
    let db = dir.join("kv.redb");
    std::fs::write(&db, vec![0xa5; 32 << 10]).unwrap();
    let app = counter_app(&dir, "\n[node]\nkv_path = \"kv.redb\"\n", "");
    let out = run(&["run", &app]);
    assert_eq!(out.code(), 2, "{}", out.stderr);
    let prefix = format!(
        "rusm: error: cannot start the wasm engine: cannot open the key-value database {}: ",
        db.display()
    );
    assert!(out.errors()[0].starts_with(&prefix), "{}", out.stderr);
    let read = run(&["kv", "list", db.to_str().unwrap()]);
    assert_eq!(read.code(), 2);
    assert!(
        read.errors()[0].contains(&db.display().to_string()),
        "{}",
        read.stderr
    );
}

#[test]
fn inspect_maps_keyvalue_and_config_imports_to_their_sections() {
    let probe = components::KV_PROBE.path().to_str().unwrap();
    let line = |stdout: &str, prefix: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} import in:\n{stdout}"))
            .to_owned()
    };
    let out = run(&["inspect", probe]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let store = line(&out.stdout, "wasi:keyvalue/store@");
    assert!(store.contains("DENIED: [keyvalue] no buckets"), "{store}");
    let config = line(&out.stdout, "wasi:config/store@");
    assert!(config.contains("DENIED: [config] no values"), "{config}");

    let dir = temp_dir("kv-inspect");
    let policy = dir.join("kv.toml");
    std::fs::write(
        &policy,
        "[keyvalue]\nbuckets = [{ name = \"sessions\", mode = \"rw\" }]\n[config.vars]\nmode = \"fast\"\n",
    )
    .unwrap();
    let out = run(&["inspect", probe, "--policy", policy.to_str().unwrap()]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let atomics = line(&out.stdout, "wasi:keyvalue/atomics@");
    assert!(
        atomics.contains("granted: [keyvalue] sessions (rw)"),
        "{atomics}"
    );
    let config = line(&out.stdout, "wasi:config/store@");
    assert!(config.contains("granted: [config] mode"), "{config}");
}

/// A node killed (SIGKILL) while an actor stores batch after batch leaves each batch
/// whole: every batch found has all of its keys, and they are the first ones written.
#[test]
fn a_node_killed_mid_batch_leaves_every_batch_whole_or_absent() {
    const KEYS: usize = 8;
    let dir = temp_dir("kv-crash");
    let file = dir.join("app.toml");
    let db = dir.join(".rusm/kv.redb");
    std::fs::write(
        &file,
        format!(
            r#"name = "crash"

[components.writer]
path = {:?}
policy = {{ keyvalue = {{ buckets = [{{ name = "b", mode = "rw" }}] }} }}

[supervisor]
children = [{{ id = "w", component = "writer", init = "open b\nbatches 1000000000 {KEYS}" }}]
"#,
            components::KV_PROBE.path()
        ),
    )
    .unwrap();
    let app = file.to_str().unwrap();
    let mut child = rusm()
        .args(["run", app])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = lines(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("app crash is up") {
        let line = stderr
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the app did not come up:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
    }
    // Wait (at most a minute) until the writer's batches have grown the file.
    let start = std::fs::metadata(&db).unwrap().len();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&db).unwrap().len() <= start {
        assert!(std::time::Instant::now() < deadline, "no batch was written");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let status = wait(child, Duration::from_secs(30));
    assert_eq!(status.code(), None, "killed by a signal");

    let listed = run(&["kv", "list", app, "b"]);
    assert_eq!(listed.code(), 0, "{}", listed.stderr);
    let mut batches: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
    for key in listed.stdout.lines() {
        let (batch, _) = key[1..].split_once('-').unwrap();
        batches
            .entry(batch.parse().unwrap())
            .or_default()
            .push(key.to_owned());
    }
    assert!(
        !batches.is_empty(),
        "the file grew, so batches were committed"
    );
    let last = *batches.keys().last().unwrap();
    assert_eq!(
        batches.keys().copied().collect::<Vec<_>>(),
        (1..=last).collect::<Vec<_>>(),
        "the batches found are the first ones"
    );
    for (batch, keys) in &batches {
        assert_eq!(keys.len(), KEYS, "batch {batch} is whole: {keys:?}");
    }
    let got = run(&["kv", "get", app, "b", &format!("b{last}-{}", KEYS - 1)]);
    assert_eq!(got.stdout, format!("{last}\n"));
}
