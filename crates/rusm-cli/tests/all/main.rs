//! End-to-end tests of the `rusm` binary: each runs the built command on real
//! components from `components/` (built by `rusm-e2e`) and checks what it prints and
//! its exit code. One module per area.

mod apps;
mod browser;
mod cluster;
mod conformance;
mod errors;
mod idle;
mod kv;
mod new;
mod pipes;
mod policy;
mod run;
mod serve;
mod shared_kv;
mod storm;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

// `components::COUNTER` and the rest; this suite owns the components whose manifests
// say `tested-by = "rusm-cli"` (an unused one of those does not compile).
rusm_e2e::components!(rusm_cli);

/// The answer to `GET path` on `addr` (the whole response, head and body).
pub fn http_get(addr: &str, path: &str) -> String {
    http_request(addr, "GET", path)
}

/// The answer to `METHOD path`, with no body, on `addr` (the whole response).
pub fn http_request(addr: &str, method: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// The target directory the tests were built in.
pub fn target_root() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the tests' temporary directory is inside the target directory")
}

/// A fresh, empty directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the temporary directory can be created");
    dir
}

/// What a finished `rusm` run printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The exit code.
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .expect("rusm exited by itself, not by a signal")
    }

    /// The stderr lines starting with `rusm: error: `.
    pub fn errors(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("rusm: error: "))
            .collect()
    }
}

/// The `rusm` command, run from the repository root, with plain logs.
pub fn rusm() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rusm"));
    command
        .current_dir(root())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

/// Run `rusm ARGS` to completion (failing the test after 120 s).
pub fn run(args: &[&str]) -> Output {
    finish(rusm().args(args), Duration::from_secs(120))
}

/// Run `command` to completion, failing the test after `limit`.
pub fn finish(command: &mut Command, limit: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rusm starts");
    let stdout = read_all(child.stdout.take().expect("stdout is piped"));
    let stderr = read_all(child.stderr.take().expect("stderr is piped"));
    let status = wait(child, limit);
    Output {
        status,
        stdout: stdout.join().expect("stdout is read"),
        stderr: stderr.join().expect("stderr is read"),
    }
}

fn read_all(mut stream: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Stop a running `rusm` as Ctrl-C does, and check that it ends cleanly.
pub fn interrupt(child: Child) {
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    assert_eq!(wait(child, Duration::from_secs(30)).code(), Some(0));
}

/// Wait for `child`, killing it and failing the test after `limit`.
pub fn wait(mut child: Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("rusm can be waited for") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rusm did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Read a stream line by line on a thread, forwarding each line.
pub fn lines(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Read lines from `stream` until one contains `text`, failing after 60 s.
pub fn wait_for_line(stream: &mpsc::Receiver<String>, text: &str, seen: &mut String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = stream
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no line with {text:?} within 60 s in:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(text) {
            return;
        }
    }
}

/// Send SIGINT (Ctrl-C) to `child`, leaving the waiting to the caller.
pub fn signal_interrupt(child: &Child) {
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}
