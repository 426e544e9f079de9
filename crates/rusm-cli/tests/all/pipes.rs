//! `rusm` whose stdout or stderr reader goes away (`rusm ... | head -1`): every command
//! ends promptly and quietly, by `SIGPIPE` once its stdout is gone, and a closed stderr
//! only drops log lines, so long-running commands keep serving.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::{components, http_get, root, rusm, temp_dir, wait};

/// How long a command may take once its reader is gone.
const LIMIT: Duration = Duration::from_secs(60);
/// The signal a write to a closed pipe raises (13 on Linux and the BSDs).
const SIGPIPE: i32 = 13;

/// What the test does with one of rusm's output streams.
#[derive(Clone, Copy)]
enum Reader {
    /// Closed before rusm starts.
    Close,
    /// Read until `text` has come (any first bytes for ""), then close it.
    CloseAfter(&'static str),
    /// Read it to the end.
    ReadAll,
}

/// Read `stream` as `reader` says on a thread; the text read is sent once the stream
/// is closed (or has ended).
fn handle(stream: impl Read + Send + 'static, reader: Reader) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut stream = stream;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let done = |seen: &[u8]| match reader {
            Reader::Close => true,
            Reader::CloseAfter(text) => {
                !seen.is_empty() && String::from_utf8_lossy(seen).contains(text)
            }
            Reader::ReadAll => false,
        };
        while !done(&seen) {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        drop(stream);
        let _ = tx.send(String::from_utf8_lossy(&seen).into_owned());
    });
    rx
}

/// A running `rusm` whose streams are handled as given.
struct Piped {
    child: std::process::Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

/// The stdio for a stream handled as `reader` says: `Close` is a pipe whose reading
/// end is closed before rusm starts.
fn stdio(reader: Reader) -> Stdio {
    match reader {
        Reader::Close => {
            let (read, write) = std::io::pipe().expect("a pipe");
            drop(read);
            Stdio::from(write)
        }
        _ => Stdio::piped(),
    }
}

/// Read a piped stream as `reader` says; nothing to read for `Close`.
fn handle_stream(
    stream: Option<impl Read + Send + 'static>,
    reader: Reader,
) -> mpsc::Receiver<String> {
    match stream {
        Some(stream) => handle(stream, reader),
        None => {
            let (tx, rx) = mpsc::channel();
            let _ = tx.send(String::new());
            rx
        }
    }
}

fn start(args: &[&str], log: Option<&str>, stdout: Reader, stderr: Reader) -> Piped {
    let mut command = rusm();
    command
        .args(args)
        .stdout(stdio(stdout))
        .stderr(stdio(stderr));
    if let Some(log) = log {
        command.env("RUST_LOG", log);
    }
    let mut child = command.spawn().expect("rusm starts");
    let out = handle_stream(child.stdout.take(), stdout);
    let err = handle_stream(child.stderr.take(), stderr);
    Piped {
        child,
        stdout: out,
        stderr: err,
    }
}

impl Piped {
    /// Wait for rusm to end (killing it and failing after `LIMIT`), with what was read.
    fn finish(self) -> (ExitStatus, String, String) {
        let status = wait(self.child, LIMIT);
        // Once rusm has ended, both readers end too; one already taken gives "".
        let out = self.stdout.recv_timeout(LIMIT).unwrap_or_default();
        let err = self.stderr.recv_timeout(LIMIT).unwrap_or_default();
        (status, out, err)
    }
}

/// `rusm ARGS` with stdout closed after its first bytes (at once with `Close`) and
/// stderr read to the end: it dies of `SIGPIPE`, as Unix tools do, without a panic.
fn ends_by_sigpipe(args: &[&str], stdout: Reader) {
    let (status, out, err) = start(args, None, stdout, Reader::ReadAll).finish();
    assert_eq!(
        status.signal(),
        Some(SIGPIPE),
        "{status}; stdout:\n{out}\nstderr:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn policy_explain_and_check_end_by_sigpipe_when_stdout_is_closed() {
    let policy = root().join("capabilities/default.toml");
    let policy = policy.to_str().unwrap();
    ends_by_sigpipe(&["policy", "explain", policy], Reader::Close);
    ends_by_sigpipe(&["policy", "check", policy], Reader::Close);
}

#[test]
fn inspect_ends_by_sigpipe_when_stdout_is_closed() {
    ends_by_sigpipe(
        &["inspect", components::HELLO_CLI.path().to_str().unwrap()],
        Reader::Close,
    );
}

#[test]
fn run_of_a_component_ends_when_its_log_reader_closes() {
    // The default policy sends the command's output to the log, after the spawn line.
    let wasm = components::HELLO_CLI.path().to_str().unwrap();
    let (status, _, err) = start(
        &["run", wasm],
        None,
        Reader::Close,
        Reader::CloseAfter("spawn"),
    )
    .finish();
    assert_eq!(
        status.code(),
        Some(0),
        "{status}; stderr before closing:\n{err}"
    );
    // With stderr read to the end, nothing panicked either.
    let (status, _, err) = start(&["run", wasm], None, Reader::Close, Reader::ReadAll).finish();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_guest_writing_to_an_inherited_closed_stdout_fails_and_the_host_reports_it() {
    let dir = temp_dir("pipes-inherit");
    let policy = dir.join("inherit.toml");
    std::fs::write(&policy, "[stdio]\nstdout = \"inherit\"\nstderr = \"log\"\n").unwrap();
    let (status, _, err) = start(
        &[
            "run",
            components::HELLO_CLI.path().to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ],
        None,
        Reader::Close,
        Reader::ReadAll,
    )
    .finish();
    // hello-cli's println! fails on the closed stream and traps: the guest's business.
    // rusm itself never wrote to stdout, so it reports the crash and exits with 1.
    assert_eq!(status.code(), Some(1), "{status}\n{err}");
    assert!(err.contains("rusm: hello_cli ended: crashed"), "{err}");
}

/// The demo app, on a port the OS picks, with its components already built.
fn demo_on_any_port(name: &str) -> PathBuf {
    let demo = std::fs::read_to_string(root().join("apps/demo/app.toml")).unwrap();
    let mut manifest = demo.replace("127.0.0.1:8080", "127.0.0.1:0").replace(
        "policies = \"../../capabilities\"",
        &format!("policies = {:?}", root().join("capabilities")),
    );
    for component in [
        components::COUNTER,
        components::CRASHER,
        components::HTTP_COUNTER,
    ] {
        manifest = manifest.replace(
            &format!("build = \"../../components/{}\"", component.name()),
            &format!("path = {:?}", component.path()),
        );
    }
    assert!(!manifest.contains("build ="), "{manifest}");
    let file = temp_dir(name).join("app.toml");
    std::fs::write(&file, manifest).unwrap();
    file
}

#[test]
fn the_demo_app_ends_by_sigpipe_when_stdout_closes_after_its_first_line() {
    let file = demo_on_any_port("pipes-demo-stdout");
    ends_by_sigpipe(&["run", file.to_str().unwrap()], Reader::CloseAfter("\n"));
}

#[test]
fn the_demo_app_runs_to_its_end_when_its_log_reader_closes() {
    let file = demo_on_any_port("pipes-demo-stderr");
    let (status, out, _) = start(
        &["run", file.to_str().unwrap()],
        None,
        Reader::ReadAll,
        Reader::CloseAfter(""),
    )
    .finish();
    assert_eq!(status.code(), Some(0), "{status}\n{out}");
    assert!(out.contains(" steps done"), "{out}");
    assert!(out.contains("stopped demo:"), "{out}");
}

#[test]
fn the_demo_app_ends_when_both_readers_close() {
    let file = demo_on_any_port("pipes-demo-both");
    let (status, out, err) = start(
        &["run", file.to_str().unwrap()],
        None,
        Reader::CloseAfter(""),
        Reader::CloseAfter(""),
    )
    .finish();
    assert_eq!(status.signal(), Some(SIGPIPE), "{status}\n{out}\n{err}");
}

/// The address after `marker` in `log` (up to the next `/`).
fn address_after(log: &str, marker: &str) -> String {
    log.split(marker)
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no {marker:?} in:\n{log}"))
        .to_owned()
}

/// Interrupt a long-running rusm whose log reader is gone; it stops with 0.
fn interrupt_and_finish(piped: Piped) -> String {
    let sent = std::process::Command::new("kill")
        .args(["-INT", &piped.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let (status, out, _) = piped.finish();
    assert_eq!(status.code(), Some(0), "{status}\n{out}");
    out
}

#[test]
fn serve_keeps_serving_after_its_log_reader_closes() {
    // Debug logs: every request writes log lines to the closed stderr.
    let piped = start(
        &[
            "serve",
            components::HTTP_HELLO.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        Some("warn,rusm::=debug"),
        Reader::Close,
        Reader::CloseAfter("; press Ctrl-C to stop"),
    );
    let log = piped
        .stderr
        .recv_timeout(LIMIT)
        .expect("rusm serve comes up");
    let addr = address_after(&log, "on http://");
    for _ in 0..3 {
        let answer = http_get(&addr, "/");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("hello from rusm\n"), "{answer}");
    }
    interrupt_and_finish(piped);
}

#[test]
fn an_app_kept_running_keeps_serving_after_its_log_reader_closes() {
    let dir = temp_dir("pipes-keep-running");
    let file = dir.join("app.toml");
    let manifest = format!(
        r#"name = "kept"

[components.http-hello]
path = {:?}

[components.counter]
path = {:?}
policy = "{}"

[supervisor]
children = [{{ id = "counter", component = "counter", init = "counter" }}]

[[listeners]]
listen = "127.0.0.1:0"
routes = [{{ path = "/", component = "http-hello" }}]

[[steps]]
say = "up"
"#,
        components::HTTP_HELLO.path(),
        components::COUNTER.path(),
        root().join("capabilities/counter.toml").display()
    );
    std::fs::write(&file, manifest).unwrap();
    let piped = start(
        &["run", file.to_str().unwrap(), "--keep-running"],
        Some("warn,rusm::=debug"),
        Reader::ReadAll,
        Reader::CloseAfter("; press Ctrl-C to stop"),
    );
    let log = piped.stderr.recv_timeout(LIMIT).expect("the app comes up");
    let addr = address_after(&log, "serving * http://");
    for _ in 0..3 {
        let answer = http_get(&addr, "/");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    }
    let out = interrupt_and_finish(piped);
    assert!(out.contains("stopped kept:"), "{out}");
}
