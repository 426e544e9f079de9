//! Capability policies enforced on real components: for each capability, that its
//! grant works and that its absence is enforced, seen from inside a guest using Rust
//! std or the `rusm:runtime` interface. The probes (`fs-probe`, `net-probe`,
//! `env-probe`, `clock-probe`, `rights-probe`) report what they saw; the formats are in
//! `components/README.md`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusm_otp::{ExitReason, Pid, Watch};
use rusm_policy::{Policy, PolicyLibrary};
use rusm_wasm::{SpawnError, WasmConfig, WasmNode, WasmSpawnOptions};

use crate::components;
use crate::{node, pid_bytes, policy, probe};

/// The longest any single wait of these tests may take.
const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

/// Init bytes in the components' wire encoding (`rusm_guest::wire`).
#[derive(Default, Clone)]
struct Wire(Vec<u8>);

impl Wire {
    /// A request starting with the probe's op code.
    fn op(op: u8) -> Wire {
        Wire(vec![op])
    }

    fn u8(mut self, value: u8) -> Wire {
        self.0.push(value);
        self
    }

    fn u32(mut self, value: u32) -> Wire {
        self.0.extend(value.to_le_bytes());
        self
    }

    fn u64(mut self, value: u64) -> Wire {
        self.0.extend(value.to_le_bytes());
        self
    }

    fn pid(self, pid: Pid) -> Wire {
        self.u64(pid.as_raw())
    }

    fn bytes(mut self, bytes: &[u8]) -> Wire {
        self.0
            .extend(u32::try_from(bytes.len()).unwrap().to_le_bytes());
        self.0.extend(bytes);
        self
    }

    fn str(self, text: &str) -> Wire {
        self.bytes(text.as_bytes())
    }
}

/// Decodes a payload made of wire strings only.
fn strings(mut bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        out.push(String::from_utf8(bytes[4..4 + len].to_vec()).unwrap());
        bytes = &bytes[4 + len..];
    }
    out
}

/// What a probe reported: tag 1 (`ok`) or tag 2 (`error`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok(Vec<u8>),
    Err(String),
}

impl Outcome {
    fn from_report(tag: u64, payload: Vec<u8>) -> Outcome {
        match tag {
            1 => Outcome::Ok(payload),
            2 => Outcome::Err(String::from_utf8(payload).expect("error texts are UTF-8")),
            other => panic!("unexpected report tag {other}: {payload:?}"),
        }
    }

    #[track_caller]
    fn ok(self) -> Vec<u8> {
        match self {
            Outcome::Ok(detail) => detail,
            Outcome::Err(error) => panic!("expected success, got error {error:?}"),
        }
    }

    #[track_caller]
    fn ok_text(self) -> String {
        String::from_utf8(self.ok()).expect("UTF-8")
    }

    #[track_caller]
    fn err(self) -> String {
        match self {
            Outcome::Err(error) => error,
            Outcome::Ok(detail) => panic!(
                "expected an error, got success {:?}",
                String::from_utf8_lossy(&detail)
            ),
        }
    }
}

/// Waits for a process to end, failing the test after [`WAIT`].
async fn ended(end: Watch) -> ExitReason {
    tokio::time::timeout(WAIT, end)
        .await
        .expect("the process ends in time")
}

fn options(init: Vec<u8>, policy: &Arc<Policy>) -> WasmSpawnOptions {
    WasmSpawnOptions {
        init,
        policy: Some(policy.clone()),
        ..Default::default()
    }
}

/// Runs `component` under `policy` with the init `reporter ++ request`, and returns
/// its one report; the probe must then end normally.
async fn ask(node: &WasmNode, component: &str, policy: &Arc<Policy>, request: Wire) -> Outcome {
    let (reporter, mut reports) = probe(node.runtime());
    let mut init = pid_bytes(reporter);
    init.extend(request.0);
    let (_pid, end) = node
        .spawn_watched(component, options(init, policy))
        .expect("the probe spawns");
    let (tag, payload) = reports.data().await;
    assert_eq!(
        ended(end).await,
        ExitReason::Normal,
        "{component} ends normally"
    );
    Outcome::from_report(tag, payload)
}

/// Runs `component` under `policy` with the init `reporter ++ request` and returns
/// how it ended (whatever it reported is ignored).
async fn end_of(
    node: &WasmNode,
    component: &str,
    policy: &Arc<Policy>,
    request: Wire,
) -> ExitReason {
    let (reporter, _reports) = probe(node.runtime());
    let mut init = pid_bytes(reporter);
    init.extend(request.0);
    let (_pid, end) = node
        .spawn_watched(component, options(init, policy))
        .expect("the probe spawns");
    ended(end).await
}

/// Asserts that an I/O error text reports `PermissionDenied`.
#[track_caller]
fn assert_permission_denied(error: &str) {
    assert!(
        error.starts_with("PermissionDenied"),
        "expected PermissionDenied, got {error:?}"
    );
}

/// Asserts that an I/O error text reports `NotFound`.
#[track_caller]
fn assert_not_found(error: &str) {
    assert!(
        error.starts_with("NotFound"),
        "expected NotFound, got {error:?}"
    );
}

/// Asserts that a failed name lookup is reported.
#[track_caller]
fn assert_lookup_failed(error: &str) {
    assert!(
        error.contains("failed to lookup address information"),
        "expected a failed lookup, got {error:?}"
    );
}

/// Asserts that a runtime error text is `not permitted: ...`.
#[track_caller]
fn assert_not_permitted(error: &str) {
    assert!(
        error.starts_with("not permitted: "),
        "expected not permitted, got {error:?}"
    );
}

/// A native process that waits until it is ended: a target for kill and exit.
fn bystander(node: &WasmNode) -> Pid {
    node.runtime().spawn(|ctx| async move {
        loop {
            let _ = ctx.recv().await;
        }
    })
}

// ---------------------------------------------------------------------------------
// Filesystem
// ---------------------------------------------------------------------------------

const FS_READ: u8 = 1;
const FS_WRITE: u8 = 2;
const FS_LIST: u8 = 3;
const FS_SWAP_AND_SPAWN: u8 = 4;

const HELLO: &[u8] = b"hello from the preopen";
const SECRET: &[u8] = b"outside the preopen";

/// A fresh directory for one test: `inside/` (what the policy preopens, holding
/// `hello.txt` and `sub/`) next to `outside/secret.txt`. Removed when dropped.
struct Scratch {
    root: PathBuf,
}

impl Scratch {
    fn new(test: &str) -> Scratch {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("capabilities")
            .join(format!("{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("inside/sub")).unwrap();
        std::fs::create_dir_all(root.join("outside")).unwrap();
        std::fs::write(root.join("inside/hello.txt"), HELLO).unwrap();
        std::fs::write(root.join("outside/secret.txt"), SECRET).unwrap();
        Scratch { root }
    }

    fn inside(&self) -> PathBuf {
        self.root.join("inside")
    }

    fn secret(&self) -> PathBuf {
        self.root.join("outside/secret.txt")
    }

    /// A policy preopening `inside/` at `/data` with `mode`.
    fn policy(&self, mode: &str) -> Arc<Policy> {
        policy(&format!(
            "[[fs.preopen]]\nhost = '{}'\nguest = \"/data\"\nmode = \"{mode}\"\n",
            self.inside().display()
        ))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn read(path: &str) -> Wire {
    Wire::op(FS_READ).str(path)
}

fn write(path: &str, data: &[u8]) -> Wire {
    Wire::op(FS_WRITE).str(path).bytes(data)
}

fn list(path: &str) -> Wire {
    Wire::op(FS_LIST).str(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_read_only_preopen_reads_and_lists() {
    let scratch = Scratch::new("fs-read-only-reads");
    let node = node(&[components::FS_PROBE]);
    let ro = scratch.policy("ro");
    let hello = ask(&node, "fs-probe", &ro, read("/data/hello.txt")).await;
    assert_eq!(hello.ok(), HELLO);
    let entries = ask(&node, "fs-probe", &ro, list("/data")).await.ok();
    assert_eq!(strings(&entries), ["hello.txt", "sub"]);
    // `..` that stays inside the preopen is fine.
    let hello = ask(&node, "fs-probe", &ro, read("/data/sub/../hello.txt")).await;
    assert_eq!(hello.ok(), HELLO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_read_only_preopen_refuses_writes() {
    let scratch = Scratch::new("fs-read-only-writes");
    let node = node(&[components::FS_PROBE]);
    let ro = scratch.policy("ro");
    let created = ask(&node, "fs-probe", &ro, write("/data/new.txt", b"x")).await;
    assert_permission_denied(&created.err());
    assert!(!scratch.inside().join("new.txt").exists());
    let overwritten = ask(&node, "fs-probe", &ro, write("/data/hello.txt", b"x")).await;
    assert_permission_denied(&overwritten.err());
    assert_eq!(
        std::fs::read(scratch.inside().join("hello.txt")).unwrap(),
        HELLO
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_read_write_preopen_creates_and_overwrites() {
    let scratch = Scratch::new("fs-read-write");
    let node = node(&[components::FS_PROBE]);
    let rw = scratch.policy("rw");
    let created = ask(&node, "fs-probe", &rw, write("/data/sub/new.txt", b"new")).await;
    assert_eq!(created.ok(), b"");
    assert_eq!(
        std::fs::read(scratch.inside().join("sub/new.txt")).unwrap(),
        b"new"
    );
    let overwritten = ask(&node, "fs-probe", &rw, write("/data/hello.txt", b"changed")).await;
    assert_eq!(overwritten.ok(), b"");
    assert_eq!(
        std::fs::read(scratch.inside().join("hello.txt")).unwrap(),
        b"changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_dot_dot_and_absolute_paths_cannot_leave_the_preopen() {
    let scratch = Scratch::new("fs-escape-paths");
    let node = node(&[components::FS_PROBE]);
    let rw = scratch.policy("rw");
    let host_secret = scratch.secret().display().to_string();
    // `..` out of the preopen is refused by the sandbox.
    for path in [
        "/data/../outside/secret.txt",
        "/data/sub/../../outside/secret.txt",
        "/data/../../../../../../../../etc/hostname",
    ] {
        let refused = ask(&node, "fs-probe", &rw, read(path)).await;
        assert_permission_denied(&refused.err());
    }
    let listed = ask(&node, "fs-probe", &rw, list("/data/..")).await;
    assert_permission_denied(&listed.err());
    let written = ask(
        &node,
        "fs-probe",
        &rw,
        write("/data/../outside/secret.txt", b"x"),
    )
    .await;
    assert_permission_denied(&written.err());
    // An absolute path outside every preopen has nothing to start from: the host's
    // own path to the file included.
    for path in ["/outside/secret.txt", host_secret.as_str(), "/etc/hostname"] {
        let missing = ask(&node, "fs-probe", &rw, read(path)).await;
        assert_not_found(&missing.err());
    }
    let written = ask(&node, "fs-probe", &rw, write(&host_secret, b"x")).await;
    assert_not_found(&written.err());
    assert_eq!(std::fs::read(scratch.secret()).unwrap(), SECRET);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_symlinks_cannot_leave_the_preopen() {
    use std::os::unix::fs::symlink;
    let scratch = Scratch::new("fs-escape-symlinks");
    symlink("hello.txt", scratch.inside().join("inner-link")).unwrap();
    symlink(
        "../outside/secret.txt",
        scratch.inside().join("relative-escape"),
    )
    .unwrap();
    symlink(scratch.secret(), scratch.inside().join("absolute-escape")).unwrap();
    symlink("../outside", scratch.inside().join("escape-dir")).unwrap();
    let node = node(&[components::FS_PROBE]);
    let rw = scratch.policy("rw");
    // A link that stays inside is followed.
    let inner = ask(&node, "fs-probe", &rw, read("/data/inner-link")).await;
    assert_eq!(inner.ok(), HELLO);
    for path in [
        "/data/relative-escape",
        "/data/absolute-escape",
        "/data/escape-dir/secret.txt",
    ] {
        let refused = ask(&node, "fs-probe", &rw, read(path)).await;
        assert_permission_denied(&refused.err());
        let refused = ask(&node, "fs-probe", &rw, write(path, b"x")).await;
        assert_permission_denied(&refused.err());
    }
    let listed = ask(&node, "fs-probe", &rw, list("/data/escape-dir")).await;
    assert_permission_denied(&listed.err());
    assert_eq!(std::fs::read(scratch.secret()).unwrap(), SECRET);
}

/// A policy preopening `host` at `/job`, read-only, as if read from `origin`.
fn job_policy(host: &Path, origin: &str) -> Policy {
    Policy::parse(
        &format!(
            "[[fs.preopen]]\nhost = '{}'\nguest = \"/job\"\n",
            host.display()
        ),
        Path::new(origin),
    )
    .unwrap()
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_a_child_preopen_swapped_for_a_symlink_is_not_opened() {
    // The parent has `rw` on inside/ and may spawn fs-probe under `job`, which
    // preopens inside/job: a subset, compared by path. It replaces job/ with a link
    // climbing to `/` and spawns; the child must not get `/`.
    let scratch = Scratch::new("fs-swap-child-preopen");
    let job_dir = scratch.inside().join("job");
    std::fs::create_dir(&job_dir).unwrap();
    let node = node(&[components::FS_PROBE]);
    let mut library = PolicyLibrary::new();
    library
        .insert("job", job_policy(&job_dir, "policies/job.toml"))
        .unwrap();
    node.set_policies(library);
    let parent = policy(&format!(
        "[[fs.preopen]]\nhost = '{}'\nguest = \"/data\"\nmode = \"rw\"\n\
         [process]\nspawn = [{{ component = \"fs-probe\", policy = \"job\" }}]\n",
        scratch.inside().display()
    ));
    let up = "../".repeat(job_dir.components().count() + 4);
    // Both report to one probe: the child (listing its /job) before it ends, the
    // parent (the child's exit reason, or its spawn error) after, so the first report
    // tells which ran.
    let (reporter, mut reports) = probe(node.runtime());
    let child_init = [pid_bytes(reporter), list("/job").0].concat();
    let request = Wire::op(FS_SWAP_AND_SPAWN)
        .str("/data/job")
        .str(&up)
        .str("job")
        .bytes(&child_init);
    let init = [pid_bytes(reporter), request.0].concat();
    let (_pid, end) = node
        .spawn_watched("fs-probe", options(init, &parent))
        .unwrap();
    let (tag, payload) = reports.data().await;
    assert_eq!(ended(end).await, ExitReason::Normal);
    assert!(
        std::fs::symlink_metadata(&job_dir)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the parent made job/ a link"
    );
    // The spawn itself is refused: the parent sees the error, no child ever runs.
    let report = Outcome::from_report(tag, payload).err();
    assert!(
        report.contains("not permitted: cannot grant preopen") && report.contains("symbolic link"),
        "the child ran instead of being refused: {report:?}"
    );
    assert!(
        report.contains("policies/job.toml") && report.contains(&job_dir.display().to_string()),
        "the error names the policy and the path: {report}"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_a_preopen_through_a_symlink_is_refused_at_load_and_at_spawn() {
    use std::os::unix::fs::symlink;
    let scratch = Scratch::new("fs-preopen-symlink");
    symlink("inside", scratch.root.join("alias")).unwrap();
    symlink("sub", scratch.inside().join("sub-link")).unwrap();
    let node = node(&[components::FS_PROBE]);
    for (host, link) in [
        // The directory itself is a link.
        (
            scratch.inside().join("sub-link"),
            scratch.inside().join("sub-link"),
        ),
        // An ancestor is.
        (scratch.root.join("alias/sub"), scratch.root.join("alias")),
    ] {
        let job = job_policy(&host, "policies/job.toml");
        let error = job.fs.check_host_paths().unwrap_err();
        assert_eq!(
            error.problem,
            rusm_policy::HostPathProblem::Symlink(link.clone())
        );
        let text = error.to_string();
        assert!(
            text.starts_with("policies/job.toml:2:8: preopen ") && text.contains("symbolic link"),
            "{text}"
        );

        // A policy library holding it is refused as a whole.
        let dir = scratch.root.join("policies");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("job.toml"),
            format!(
                "[[fs.preopen]]\nhost = '{}'\nguest = \"/job\"\n",
                host.display()
            ),
        )
        .unwrap();
        let refused = PolicyLibrary::load_dir(&dir).unwrap_err().to_string();
        assert!(
            refused.contains("job.toml:2:8: preopen")
                && refused.contains(&link.display().to_string()),
            "{refused}"
        );

        // Given one anyway, the spawn is refused, naming the policy and the link.
        let Err(SpawnError::NotPermitted(text)) =
            node.spawn_watched("fs-probe", options(list("/job").0, &Arc::new(job)))
        else {
            panic!("a spawn under a preopen through a link was not refused")
        };
        assert!(
            text.contains("policies/job.toml")
                && text.contains(&link.display().to_string())
                && text.contains("symbolic link"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_a_missing_preopen_is_refused_at_load_and_at_spawn() {
    let scratch = Scratch::new("fs-preopen-missing");
    let missing = scratch.inside().join("missing");
    let job = job_policy(&missing.join("deeper"), "policies/job.toml");
    let error = job.fs.check_host_paths().unwrap_err();
    assert_eq!(
        error.problem,
        rusm_policy::HostPathProblem::Missing(missing.clone())
    );
    let node = node(&[components::FS_PROBE]);
    let Err(SpawnError::NotPermitted(text)) =
        node.spawn_watched("fs-probe", options(list("/job").0, &Arc::new(job)))
    else {
        panic!("a spawn under a missing preopen was not refused")
    };
    assert!(
        text.contains("policies/job.toml")
            && text.contains(&format!("{} does not exist", missing.display())),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_without_a_preopen_there_is_no_file_system() {
    let scratch = Scratch::new("fs-no-preopen");
    let node = node(&[components::FS_PROBE]);
    // Other grants do not bring a file system with them.
    let no_fs = policy("[env]\nvars = { A = \"1\" }\n[clocks]\nwall = true\n");
    let host_hello = scratch.inside().join("hello.txt").display().to_string();
    for request in [
        read("/data/hello.txt"),
        read(&host_hello),
        list("/"),
        list("."),
        write("/data/new.txt", b"x"),
    ] {
        let missing = ask(&node, "fs-probe", &no_fs, request).await;
        assert_not_found(&missing.err());
    }
    assert!(!scratch.inside().join("new.txt").exists());
}

// ---------------------------------------------------------------------------------
// Network
// ---------------------------------------------------------------------------------

const TCP_CONNECT: u8 = 1;
const TCP_LISTEN: u8 = 2;
const UDP_BIND: u8 = 3;
const UDP_SEND: u8 = 4;
const DNS: u8 = 5;

fn net(op: u8, target: &str) -> Wire {
    Wire::op(op).str(target)
}

/// A udp-send from `local` to `target`.
fn udp_send(target: &str, local: &str) -> Wire {
    Wire::op(UDP_SEND).str(target).str(local)
}

fn loopback_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("a loopback listener")
}

/// Accepts one connection on a thread of its own and reads it to the end. The
/// receiver yields what was read; a test only awaits it once a probe reported a
/// connection, and with a timeout.
fn accept_one(listener: TcpListener) -> tokio::sync::oneshot::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let read = listener.accept().and_then(|(mut stream, _)| {
            stream.set_read_timeout(Some(WAIT))?;
            let mut data = Vec::new();
            stream.read_to_end(&mut data)?;
            Ok(data)
        });
        let _ = tx.send(read);
    });
    rx
}

/// Asserts that nothing is waiting to be accepted on `listener`.
#[track_caller]
fn assert_no_connection(listener: &TcpListener) {
    listener.set_nonblocking(true).unwrap();
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("expected no connection, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connect_reaches_exactly_the_granted_port() {
    let node = node(&[components::NET_PROBE]);
    let allowed = loopback_listener();
    let other = loopback_listener();
    let allowed_addr = allowed.local_addr().unwrap();
    let other_addr = other.local_addr().unwrap();
    let client = policy(&format!(
        "[net]\ntcp_connect = [\"127.0.0.1:{}\"]\n",
        allowed_addr.port()
    ));
    let accepted = accept_one(allowed);
    let peer = ask(
        &node,
        "net-probe",
        &client,
        net(TCP_CONNECT, &allowed_addr.to_string()),
    )
    .await;
    assert_eq!(peer.ok_text(), allowed_addr.to_string());
    let received = tokio::time::timeout(WAIT, accepted)
        .await
        .expect("the connection is accepted in time")
        .unwrap()
        .unwrap();
    assert_eq!(received, b"net-probe");

    // Same host, another port: refused by the policy, and nothing reaches it.
    let refused = ask(
        &node,
        "net-probe",
        &client,
        net(TCP_CONNECT, &other_addr.to_string()),
    )
    .await;
    assert_permission_denied(&refused.err());
    // The allowed port on another loopback address: refused by the policy (the
    // network would say connection refused).
    let elsewhere = format!("127.0.0.2:{}", allowed_addr.port());
    let refused = ask(&node, "net-probe", &client, net(TCP_CONNECT, &elsewhere)).await;
    assert_permission_denied(&refused.err());
    // A bind grant on the same address is not a connect grant.
    let bind_only = policy(&format!(
        "[net]\ntcp_bind = [\"127.0.0.1:{}\"]\n",
        other_addr.port()
    ));
    let refused = ask(
        &node,
        "net-probe",
        &bind_only,
        net(TCP_CONNECT, &other_addr.to_string()),
    )
    .await;
    assert_permission_denied(&refused.err());
    assert_no_connection(&other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_listen_is_refused_when_only_connect_is_granted() {
    let node = node(&[components::NET_PROBE]);
    let connect_only = policy("[net]\ntcp_connect = [\"127.0.0.1:*\", \"0.0.0.0/0:*\"]\n");
    for addr in ["127.0.0.1:0", "0.0.0.0:0", "127.0.0.1:45678"] {
        let refused = ask(&node, "net-probe", &connect_only, net(TCP_LISTEN, addr)).await;
        assert_permission_denied(&refused.err());
    }
    // A bind grant on other ports does not cover port 0.
    let fixed = policy("[net]\ntcp_bind = [\"127.0.0.1:40000-40010\"]\n");
    let refused = ask(&node, "net-probe", &fixed, net(TCP_LISTEN, "127.0.0.1:0")).await;
    assert_permission_denied(&refused.err());
}

/// net-probe under `grant` listens on 127.0.0.1:0; the host connects to the address it
/// reports and sends `greeting`, which the probe reports back before it ends normally.
/// Returns the address the guest listened on.
async fn listen_and_accept(node: &WasmNode, grant: &Arc<Policy>, greeting: &[u8]) -> SocketAddr {
    let (reporter, mut reports) = probe(node.runtime());
    let init = [pid_bytes(reporter), net(TCP_LISTEN, "127.0.0.1:0").0].concat();
    let (_pid, end) = node
        .spawn_watched("net-probe", options(init, grant))
        .unwrap();
    let (tag, bound) = reports.data().await;
    let bound: SocketAddr = String::from_utf8(Outcome::from_report(tag, bound).ok())
        .unwrap()
        .parse()
        .unwrap();
    let sent = greeting.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect_timeout(&bound, WAIT)?;
        stream.write_all(&sent)?;
        stream.shutdown(std::net::Shutdown::Write)
    })
    .await
    .unwrap()
    .expect("the host connects to the guest's listener");
    assert_eq!(reports.data().await, (3, greeting.to_vec()));
    assert_eq!(ended(end).await, ExitReason::Normal);
    bound
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_of_port_zero_listens_on_the_port_the_system_picks_and_no_other() {
    let node = node(&[components::NET_PROBE]);
    let ephemeral = policy("[net]\ntcp_bind = [\"127.0.0.1:0\"]\n");
    let bound = listen_and_accept(&node, &ephemeral, b"on an ephemeral port").await;
    assert_ne!(bound.port(), 0, "the system picked a port");
    // Port 0 is not any port the guest names, nor another address.
    for addr in ["127.0.0.1:45678", "127.0.0.2:0", "0.0.0.0:0"] {
        let refused = ask(&node, "net-probe", &ephemeral, net(TCP_LISTEN, addr)).await;
        assert_permission_denied(&refused.err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_listen_grant_binds_and_accepts() {
    let node = node(&[components::NET_PROBE]);
    let server = policy("[net]\ntcp_bind = [\"127.0.0.1:*\"]\n");
    let bound = listen_and_accept(&node, &server, b"hello, guest").await;
    assert_eq!(bound.ip().to_string(), "127.0.0.1");
    assert_ne!(bound.port(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_bind_only_where_granted() {
    let node = node(&[components::NET_PROBE]);
    let udp = policy("[net]\nudp_bind = [\"127.0.0.1:*\"]\n");
    let bound: SocketAddr = ask(&node, "net-probe", &udp, net(UDP_BIND, "127.0.0.1:0"))
        .await
        .ok_text()
        .parse()
        .unwrap();
    assert_eq!(bound.ip().to_string(), "127.0.0.1");
    // All interfaces, and IPv6, are not in the grant.
    for addr in ["0.0.0.0:5353", "[::1]:0"] {
        let refused = ask(&node, "net-probe", &udp, net(UDP_BIND, addr)).await;
        assert_permission_denied(&refused.err());
    }
    // A TCP grant is not a UDP grant.
    let tcp = policy("[net]\ntcp_bind = [\"127.0.0.1:*\"]\n");
    let refused = ask(&node, "net-probe", &tcp, net(UDP_BIND, "127.0.0.1:0")).await;
    assert_permission_denied(&refused.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_send_reaches_only_the_granted_destination() {
    let node = node(&[components::NET_PROBE]);
    let allowed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    let allowed_addr = allowed.local_addr().unwrap();
    let other_addr = other.local_addr().unwrap();
    let sender = policy(&format!(
        "[net]\nudp_connect = [\"127.0.0.1:{}\"]\n",
        allowed_addr.port()
    ));
    // An unspecified local address, as an implicit bind would use.
    let sent = ask(
        &node,
        "net-probe",
        &sender,
        udp_send(&allowed_addr.to_string(), "0.0.0.0:0"),
    )
    .await;
    assert_eq!(sent.ok_text(), "9");
    let received = tokio::task::spawn_blocking(move || {
        allowed.set_read_timeout(Some(WAIT))?;
        let mut buf = [0u8; 64];
        let (n, _) = allowed.recv_from(&mut buf)?;
        Ok::<_, std::io::Error>(buf[..n].to_vec())
    })
    .await
    .unwrap()
    .expect("the datagram arrives");
    assert_eq!(received, b"net-probe");

    let refused = ask(
        &node,
        "net-probe",
        &sender,
        udp_send(&other_addr.to_string(), "0.0.0.0:0"),
    )
    .await;
    assert_permission_denied(&refused.err());
    // A bind grant is not a send grant: the socket binds, the datagram is refused.
    let bind_only = policy("[net]\nudp_bind = [\"127.0.0.1:*\"]\n");
    let refused = ask(
        &node,
        "net-probe",
        &bind_only,
        udp_send(&other_addr.to_string(), "127.0.0.1:0"),
    )
    .await;
    assert_permission_denied(&refused.err());
    other.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let nothing = other.recv_from(&mut buf);
    assert!(
        nothing
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "{nothing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_lookups_only_when_granted() {
    let node = node(&[components::NET_PROBE]);
    let listener = loopback_listener();
    let port = listener.local_addr().unwrap().port();
    let without_dns = policy(&format!("[net]\ntcp_connect = [\"localhost:{port}\"]\n"));
    let refused = ask(&node, "net-probe", &without_dns, net(DNS, "localhost")).await;
    assert_lookup_failed(&refused.err());
    // Connecting by name needs the lookup too, even to an address that is granted.
    let refused = ask(
        &node,
        "net-probe",
        &without_dns,
        net(TCP_CONNECT, &format!("localhost:{port}")),
    )
    .await;
    assert_lookup_failed(&refused.err());
    assert_no_connection(&listener);

    let with_dns = policy("[net]\ndns = true\n");
    let found = ask(&node, "net-probe", &with_dns, net(DNS, "localhost")).await;
    let found = strings(&found.ok());
    assert!(
        found.iter().any(|a| a == "127.0.0.1" || a == "::1"),
        "localhost resolves to a loopback address: {found:?}"
    );
}

// ---------------------------------------------------------------------------------
// Environment and arguments
// ---------------------------------------------------------------------------------

const ENV_VAR: u8 = 1;
const ENV_ARGS: u8 = 2;
const ENV_VARS: u8 = 3;

fn var(name: &str) -> Wire {
    Wire::op(ENV_VAR).str(name)
}

/// A variable the host of these tests always has.
const HOST_VAR: &str = "PATH";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_vars_granted_by_value_or_inherited_are_visible() {
    let node = node(&[components::ENV_PROBE]);
    let host_value = std::env::var(HOST_VAR).expect("the test host sets PATH");
    let env = policy(&format!(
        "[env]\nvars = {{ RUSM_GREETING = \"hello\" }}\ninherit = [\"{HOST_VAR}\"]\n"
    ));
    let greeting = ask(&node, "env-probe", &env, var("RUSM_GREETING")).await;
    assert_eq!(greeting.ok_text(), "hello");
    let inherited = ask(&node, "env-probe", &env, var(HOST_VAR)).await;
    assert_eq!(inherited.ok_text(), host_value);
    let all = ask(&node, "env-probe", &env, Wire::op(ENV_VARS)).await.ok();
    assert_eq!(strings(&all), [HOST_VAR, "RUSM_GREETING"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_vars_not_granted_are_absent() {
    let node = node(&[components::ENV_PROBE]);
    const UNSET: &str = "RUSM_CAPABILITIES_TEST_NEVER_SET";
    assert!(std::env::var_os(HOST_VAR).is_some());
    assert!(std::env::var_os(UNSET).is_none());
    let env = policy(&format!(
        "[env]\nvars = {{ RUSM_GREETING = \"hello\" }}\ninherit = [\"{UNSET}\"]\n"
    ));
    // A host variable that is not inherited, one that is inherited but that the host
    // does not set, and one nobody mentions.
    for name in [HOST_VAR, UNSET, "RUSM_OTHER"] {
        let absent = ask(&node, "env-probe", &env, var(name)).await;
        assert_eq!(absent.err(), "NotPresent", "{name}");
    }
    let all = ask(&node, "env-probe", &env, Wire::op(ENV_VARS)).await.ok();
    assert_eq!(strings(&all), ["RUSM_GREETING"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn args_are_exactly_the_policy_args() {
    let node = node(&[components::ENV_PROBE]);
    let with_args = policy("[env]\nargs = [\"--port\", \"8080\"]\n");
    let args = ask(&node, "env-probe", &with_args, Wire::op(ENV_ARGS))
        .await
        .ok();
    assert_eq!(strings(&args), ["--port", "8080"]);
    let without = policy("[env]\nvars = { A = \"1\" }\n");
    let args = ask(&node, "env-probe", &without, Wire::op(ENV_ARGS))
        .await
        .ok();
    assert!(strings(&args).is_empty());
}

// ---------------------------------------------------------------------------------
// Clocks
// ---------------------------------------------------------------------------------

const CLOCK_WALL: u8 = 1;
const CLOCK_MONOTONIC: u8 = 2;
const CLOCK_SLEEP: u8 = 3;
const CLOCK_WAIT_UNTIL: u8 = 4;
const CLOCK_WAIT_FOR: u8 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_reads_only_when_granted() {
    let node = node(&[components::CLOCK_PROBE]);
    let wall = policy("[clocks]\nwall = true\n");
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let reading = ask(&node, "clock-probe", &wall, Wire::op(CLOCK_WALL))
        .await
        .ok();
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let secs = u64::from_le_bytes(reading.try_into().unwrap());
    assert!(
        (before..=after).contains(&secs),
        "{before} <= {secs} <= {after}"
    );

    let monotonic_only = policy("[clocks]\nmonotonic = true\n");
    let reason = end_of(&node, "clock-probe", &monotonic_only, Wire::op(CLOCK_WALL)).await;
    assert_eq!(
        reason,
        ExitReason::CapabilityDenied("wasi:clocks/wall-clock".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monotonic_clock_reads_only_when_granted() {
    let node = node(&[components::CLOCK_PROBE]);
    let monotonic = policy("[clocks]\nmonotonic = true\n");
    let reading = ask(&node, "clock-probe", &monotonic, Wire::op(CLOCK_MONOTONIC))
        .await
        .ok();
    let elapsed = u64::from_le_bytes(reading.try_into().unwrap());
    assert!(elapsed < WAIT.as_nanos() as u64, "{elapsed} ns");

    let wall_only = policy("[clocks]\nwall = true\n");
    let reason = end_of(&node, "clock-probe", &wall_only, Wire::op(CLOCK_MONOTONIC)).await;
    assert_eq!(
        reason,
        ExitReason::CapabilityDenied("wasi:clocks/monotonic-clock".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_reads_no_clock() {
    // Waiting on the monotonic clock reveals no reading, so it needs no grant.
    let node = node(&[components::CLOCK_PROBE]);
    let no_clocks = policy("[env]\nvars = { A = \"1\" }\n");
    let slept = ask(
        &node,
        "clock-probe",
        &no_clocks,
        Wire::op(CLOCK_SLEEP).u64(5),
    )
    .await;
    assert_eq!(slept.ok(), b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_an_instant_needs_the_monotonic_clock() {
    // A pollable for an instant is ready at once when the instant has passed: asking
    // for ever closer instants reads the clock, so it needs the grant.
    let node = node(&[components::CLOCK_PROBE]);
    let wall_only = policy("[clocks]\nwall = true\n");
    for instant in [0, u64::MAX / 2] {
        let reason = end_of(
            &node,
            "clock-probe",
            &wall_only,
            Wire::op(CLOCK_WAIT_UNTIL).u64(instant),
        )
        .await;
        assert_eq!(
            reason,
            ExitReason::CapabilityDenied("wasi:clocks/monotonic-clock".into()),
            "waiting until {instant}"
        );
    }

    let monotonic = policy("[clocks]\nmonotonic = true\n");
    let waited = ask(
        &node,
        "clock-probe",
        &monotonic,
        Wire::op(CLOCK_WAIT_UNTIL).u64(0),
    )
    .await;
    assert_eq!(waited.ok(), b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_duration_reads_no_clock() {
    let node = node(&[components::CLOCK_PROBE]);
    let no_clocks = policy("[env]\nvars = { A = \"1\" }\n");
    for ns in [0, 1_000_000] {
        let waited = ask(
            &node,
            "clock-probe",
            &no_clocks,
            Wire::op(CLOCK_WAIT_FOR).u64(ns),
        )
        .await;
        assert_eq!(waited.ok(), b"", "waiting for {ns} ns");
    }
}

// ---------------------------------------------------------------------------------
// Stdio
// ---------------------------------------------------------------------------------

/// The guest output (target `rusm::guest`) logged on one test's threads.
#[derive(Clone, Default)]
struct GuestLog(Arc<Mutex<Vec<u8>>>);

impl Write for GuestLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl GuestLog {
    /// The captured guest output lines of process `pid`.
    fn lines(&self, pid: Pid) -> Vec<String> {
        let tag = format!("pid={pid} ");
        let log = self.0.lock().unwrap();
        String::from_utf8_lossy(&log)
            .lines()
            .filter(|line| line.contains(&tag))
            .map(str::to_owned)
            .collect()
    }
}

/// Runs `test` on a tokio runtime of its own (two workers, as the other tests) whose
/// every thread logs to one [`GuestLog`] and nowhere else. Guest output is logged on
/// the thread running the guest, so the log holds this test's lines only: other
/// tests' processes have the same pids (each node numbers from 1) but run on their
/// own runtimes' threads.
fn with_guest_log<F: Future<Output = ()>>(test: impl FnOnce(GuestLog) -> F) {
    let log = GuestLog::default();
    let dispatch = {
        let log = log.clone();
        tracing::Dispatch::new(
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("rusm::guest=info"))
                .with_writer(move || log.clone())
                .with_ansi(false)
                .without_time()
                .finish(),
        )
    };
    let on_start = dispatch.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // The thread's default for as long as it lives.
            std::mem::forget(tracing::dispatcher::set_default(&on_start));
        })
        .build()
        .expect("the test's runtime starts");
    let _main = tracing::dispatcher::set_default(&dispatch);
    runtime.block_on(test(log));
}

/// Runs `hello-cli` under `policy` and returns its pid once it ended.
async fn run_hello_cli(node: &WasmNode, policy: &Arc<Policy>) -> Pid {
    let (pid, end) = node
        .spawn_watched("hello-cli", options(Vec::new(), policy))
        .unwrap();
    let _ = ended(end).await;
    pid
}

#[test]
fn stdout_and_stderr_reach_the_log_only_when_granted() {
    with_guest_log(stdout_and_stderr_only_when_granted);
}

async fn stdout_and_stderr_only_when_granted(log: GuestLog) {
    let node = node(&[components::HELLO_CLI]);
    // `hello-cli bogus` prints its greeting on stdout and an error on stderr.
    let args = "[env]\nargs = [\"hello-cli\", \"bogus\"]\n";
    let both = policy(&format!(
        "{args}[stdio]\nstdout = \"log\"\nstderr = \"log\"\n"
    ));
    let pid = run_hello_cli(&node, &both).await;
    let lines = log.lines(pid);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("hello from rusm") && l.contains("stream=\"stdout\"")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("hello-cli: the exit code") && l.contains("stream=\"stderr\"")),
        "{lines:?}"
    );

    let stdout_only = policy(&format!("{args}[stdio]\nstdout = \"log\"\n"));
    let pid = run_hello_cli(&node, &stdout_only).await;
    let lines = log.lines(pid);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("stream=\"stdout\""), "{lines:?}");

    let neither = policy(args);
    let pid = run_hello_cli(&node, &neither).await;
    assert_eq!(log.lines(pid), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------
// Process rights: spawn, kill, exit, register
// ---------------------------------------------------------------------------------

const SPAWNER_STAY: u8 = 1 << 3;
const SPAWNER_MONITOR: u8 = 1 << 1;

/// The spawner's init after its reporter pid.
fn spawner(count: u32, flags: u8, component: &str, policy: &str, child_init: &[u8]) -> Wire {
    Wire::default()
        .u32(count)
        .u8(flags)
        .str(component)
        .str(policy)
        .bytes(child_init)
}

/// Runs the spawner under `policy` and collects its reports up to `done`.
async fn spawn_reports(
    node: &WasmNode,
    policy: &Arc<Policy>,
    request: Wire,
) -> (Vec<Outcome>, crate::Probe, Pid) {
    let (reporter, mut reports) = probe(node.runtime());
    let init = [pid_bytes(reporter), request.0].concat();
    let (pid, _end) = node
        .spawn_watched("spawner", options(init, policy))
        .unwrap();
    let mut outcomes = Vec::new();
    loop {
        let (tag, payload) = reports.data().await;
        match tag {
            1 => outcomes.push(Outcome::Ok(payload[4..].to_vec())),
            2 => outcomes.push(Outcome::Err(
                String::from_utf8(payload[4..].to_vec()).unwrap(),
            )),
            3 => return (outcomes, reports, pid),
            other => panic!("unexpected spawner report {other}"),
        }
    }
}

fn pid_of(bytes: &[u8]) -> Pid {
    Pid::from_raw(u64::from_le_bytes(bytes[..8].try_into().unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_only_granted_components() {
    let node = node(&[
        components::SPAWNER,
        components::TRIVIAL,
        components::CRASHER,
    ]);
    let may_spawn_trivial = policy("[process]\nspawn = [{ component = \"trivial\" }]\n");
    let (granted, _, _) =
        spawn_reports(&node, &may_spawn_trivial, spawner(1, 0, "trivial", "", b"")).await;
    assert!(matches!(granted[..], [Outcome::Ok(_)]), "{granted:?}");
    let (refused, _, _) = spawn_reports(
        &node,
        &may_spawn_trivial,
        spawner(1, 0, "crasher", "", b"error"),
    )
    .await;
    let [Outcome::Err(error)] = &refused[..] else {
        panic!("{refused:?}")
    };
    assert_not_permitted(error);
    assert!(error.contains("crasher"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_under_a_named_policy_only_when_it_grants_no_more() {
    let node = node(&[components::SPAWNER, components::CLOCK_PROBE]);
    let mut library = PolicyLibrary::new();
    library
        .insert(
            "narrow",
            Policy::parse("", Path::new("narrow.toml")).unwrap(),
        )
        .unwrap();
    library
        .insert(
            "wide",
            Policy::parse(
                "[clocks]\nwall = true\nmonotonic = true\n",
                Path::new("wide.toml"),
            )
            .unwrap(),
        )
        .unwrap();
    node.set_policies(library);
    let parent = policy(
        "[clocks]\nwall = true\n[process]\nspawn = [\
         { component = \"clock-probe\", policy = \"narrow\" }, \
         { component = \"clock-probe\", policy = \"wide\" }, \
         { component = \"clock-probe\", policy = \"missing\" }, \
         { component = \"clock-probe\" }]\n",
    );
    let rt = node.runtime().clone();
    let (child_reporter, mut child_reports) = probe(&rt);
    let read_wall = [pid_bytes(child_reporter), vec![CLOCK_WALL]].concat();

    // Escalation: `wide` grants the monotonic clock, which the parent lacks.
    let (refused, _, _) = spawn_reports(
        &node,
        &parent,
        spawner(1, 0, "clock-probe", "wide", &read_wall),
    )
    .await;
    let [Outcome::Err(error)] = &refused[..] else {
        panic!("{refused:?}")
    };
    assert_not_permitted(error);
    assert!(
        error.contains("\"wide\"") && error.contains("monotonic"),
        "{error}"
    );

    // A name the library does not hold.
    let (missing, _, _) = spawn_reports(
        &node,
        &parent,
        spawner(1, 0, "clock-probe", "missing", &read_wall),
    )
    .await;
    let [Outcome::Err(error)] = &missing[..] else {
        panic!("{missing:?}")
    };
    assert!(error.starts_with("not found: "), "{error}");

    // `narrow` is a subset: granted, and the child really runs under it.
    let flags = SPAWNER_MONITOR | SPAWNER_STAY;
    let (granted, mut reports, spawner_pid) = spawn_reports(
        &node,
        &parent,
        spawner(1, flags, "clock-probe", "narrow", &read_wall),
    )
    .await;
    assert!(matches!(granted[..], [Outcome::Ok(_)]), "{granted:?}");
    let (tag, down) = reports.data().await;
    assert_eq!(tag, 4);
    assert_eq!(
        String::from_utf8_lossy(&down[8..]),
        "capability-denied:wasi:clocks/wall-clock"
    );
    rt.send(spawner_pid, b"stop".to_vec());

    // Its own policy (the default for a spawn naming none) reads the wall clock.
    let (granted, _, _) =
        spawn_reports(&node, &parent, spawner(1, 0, "clock-probe", "", &read_wall)).await;
    assert!(matches!(granted[..], [Outcome::Ok(_)]), "{granted:?}");
    let (tag, _) = child_reports.data().await;
    assert_eq!(tag, 1, "the child read the wall clock");
}

const RIGHTS_WAIT: u8 = 0;
const RIGHTS_KILL: u8 = 1;
const RIGHTS_EXIT: u8 = 2;
const RIGHTS_REGISTER: u8 = 3;
const RIGHTS_SPAWN_KILL: u8 = 4;
const RIGHTS_SEND: u8 = 5;
const RIGHTS_FLOOD: u8 = 6;
const RIGHTS_ALLOC: u8 = 7;
const RIGHTS_SEND_AFTER: u8 = 8;
const RIGHTS_LINK_EXIT: u8 = 9;
const RIGHTS_SUCCEED: u8 = 10;
const RIGHTS_CANCEL_TIMER: u8 = 11;
const RIGHTS_TIMERS: u8 = 12;
const RIGHTS_MONITORS: u8 = 13;
const RIGHTS_LINK_MANY: u8 = 14;
const RIGHTS_HOARD: u8 = 15;
const RIGHTS_SEND_TO: u8 = 16;

/// The init of a `rights-probe` that waits for `stop`.
fn waiting_child() -> Vec<u8> {
    [0u64.to_le_bytes().to_vec(), vec![RIGHTS_WAIT]].concat()
}

fn spawn_kill() -> Wire {
    Wire::op(RIGHTS_SPAWN_KILL)
        .str("rights-probe")
        .bytes(&waiting_child())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_children_ends_own_children_only() {
    let node = node(&[components::RIGHTS_PROBE]);
    let children =
        policy("[process]\nspawn = [{ component = \"rights-probe\" }]\nkill = \"children\"\n");
    let killed = ask(&node, "rights-probe", &children, spawn_kill())
        .await
        .ok();
    assert_eq!(String::from_utf8_lossy(&killed[8..]), "killed");

    let target = bystander(&node);
    let refused = ask(
        &node,
        "rights-probe",
        &children,
        Wire::op(RIGHTS_KILL).pid(target),
    )
    .await;
    assert_not_permitted(&refused.err());
    let refused = ask(
        &node,
        "rights-probe",
        &children,
        Wire::op(RIGHTS_EXIT).pid(target),
    )
    .await;
    assert_not_permitted(&refused.err());
    assert!(node.runtime().is_alive(target), "the target was not ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_none_ends_not_even_own_children() {
    let node = node(&[components::RIGHTS_PROBE]);
    let spawn_only = policy("[process]\nspawn = [{ component = \"rights-probe\" }]\n");
    let refused = ask(&node, "rights-probe", &spawn_only, spawn_kill())
        .await
        .err();
    assert!(refused.starts_with("kill: not permitted: "), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_any_ends_other_processes() {
    let node = node(&[components::RIGHTS_PROBE]);
    let rt = node.runtime().clone();
    let any = policy("[process]\nkill = \"any\"\n");
    let target = bystander(&node);
    let end = rt.watch(target);
    let killed = ask(
        &node,
        "rights-probe",
        &any,
        Wire::op(RIGHTS_KILL).pid(target),
    )
    .await;
    assert_eq!(killed.ok(), b"");
    assert_eq!(ended(end).await, ExitReason::Killed);

    let target = bystander(&node);
    let end = rt.watch(target);
    let exited = ask(
        &node,
        "rights-probe",
        &any,
        Wire::op(RIGHTS_EXIT).pid(target),
    )
    .await;
    assert_eq!(exited.ok(), b"");
    assert_eq!(ended(end).await, ExitReason::custom("rights-probe: exit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_only_granted_names() {
    let node = node(&[components::RIGHTS_PROBE]);
    let names = policy("[process]\nregister = [\"cap-*\"]\n");
    let registered = ask(
        &node,
        "rights-probe",
        &names,
        Wire::op(RIGHTS_REGISTER).str("cap-one"),
    )
    .await
    .ok();
    assert_eq!(registered.len(), 8, "whereis found the probe itself");
    let refused = ask(
        &node,
        "rights-probe",
        &names,
        Wire::op(RIGHTS_REGISTER).str("other"),
    )
    .await;
    assert_not_permitted(&refused.err());
    assert_eq!(node.runtime().whereis("other"), None);
}

// ---------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------

fn alloc(bytes: u64) -> Wire {
    Wire::op(RIGHTS_ALLOC).u64(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_comes_from_the_policy() {
    let node = node(&[components::RIGHTS_PROBE, components::CRASHER]);
    let small = policy("[limits]\nmemory = \"8MiB\"\n");
    let roomy = policy("[limits]\nmemory = \"48MiB\"\n");
    let sixteen = 16 << 20;
    let fits = ask(&node, "rights-probe", &roomy, alloc(sixteen))
        .await
        .ok();
    assert_eq!(fits, sixteen.to_le_bytes());
    let reason = end_of(&node, "rights-probe", &small, alloc(sixteen)).await;
    assert_eq!(reason, ExitReason::OutOfMemory);
    let (_pid, end) = node
        .spawn_watched("crasher", options(b"oom".to_vec(), &small))
        .unwrap();
    assert_eq!(ended(end).await, ExitReason::OutOfMemory);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_limit_comes_from_the_policy() {
    let node = node(&[
        components::SPINNER,
        components::RIGHTS_PROBE,
        components::TRIVIAL,
    ]);
    let short = policy("[limits]\ndeadline = \"200ms\"\n");
    // Spinning in wasm, and blocked in receive: both end at the deadline.
    let (_pid, end) = node
        .spawn_watched("spinner", options(Vec::new(), &short))
        .unwrap();
    assert_eq!(ended(end).await, ExitReason::DeadlineExceeded);
    let reason = end_of(&node, "rights-probe", &short, Wire::op(RIGHTS_WAIT)).await;
    assert_eq!(reason, ExitReason::DeadlineExceeded);
    // Within its deadline a process ends as it chooses.
    let long = policy("[limits]\ndeadline = \"20s\"\n");
    let (_pid, end) = node
        .spawn_watched("trivial", options(Vec::new(), &long))
        .unwrap();
    assert_eq!(ended(end).await, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_size_limit_comes_from_the_policy() {
    let node = node(&[components::RIGHTS_PROBE]);
    let rt = node.runtime().clone();
    let limited = policy("[limits]\nmessage_size = \"1KiB\"\n");
    let (reporter, mut reports) = probe(&rt);
    let init = [pid_bytes(reporter), Wire::op(RIGHTS_SEND).u32(1024).0].concat();
    let (_pid, end) = node
        .spawn_watched("rights-probe", options(init, &limited))
        .unwrap();
    assert_eq!(reports.data().await, (3, vec![0xab; 1024]));
    assert_eq!(reports.data().await, (1, Vec::new()));
    assert_eq!(ended(end).await, ExitReason::Normal);

    let refused = ask(
        &node,
        "rights-probe",
        &limited,
        Wire::op(RIGHTS_SEND).u32(1025),
    )
    .await;
    assert_eq!(
        refused.err(),
        "invalid request: message of 1025 bytes is larger than the 1024 bytes allowed"
    );
    // A timer message within the limit is delivered.
    let delivered = ask(
        &node,
        "rights-probe",
        &limited,
        Wire::op(RIGHTS_SEND_AFTER).u32(1024),
    )
    .await;
    assert_eq!(delivered.ok(), 1024u32.to_le_bytes());
    // A timer message over the limit is refused like a send.
    let refused = ask(
        &node,
        "rights-probe",
        &limited,
        Wire::op(RIGHTS_SEND_AFTER).u32(4096),
    )
    .await;
    assert_eq!(
        refused.err(),
        "invalid request: message of 4096 bytes is larger than the 1024 bytes allowed"
    );
}

/// A link can end the other process, so linking needs the kill right: under the empty
/// policy a guest cannot link to a bystander and take it down by crashing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linking_to_a_foreign_process_needs_the_kill_right() {
    let node = node(&[components::RIGHTS_PROBE]);
    let target = bystander(&node);
    let refused = ask(
        &node,
        "rights-probe",
        &policy(""),
        Wire::op(RIGHTS_LINK_EXIT).pid(target),
    )
    .await;
    assert_not_permitted(&refused.err());
    assert!(node.runtime().is_alive(target), "the bystander survived");
    // With the right, the link is made and the probe's abnormal end takes it down.
    let end = node.runtime().watch(target);
    let (reporter, _reports) = probe(node.runtime());
    let mut init = pid_bytes(reporter);
    init.extend(Wire::op(RIGHTS_LINK_EXIT).pid(target).0);
    let _ = node
        .spawn_watched(
            "rights-probe",
            options(init, &policy("[process]\nkill = \"any\"\n")),
        )
        .unwrap();
    assert_eq!(
        ended(end).await,
        ExitReason::custom("rights-probe: linked exit")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_limit_comes_from_the_policy() {
    let node = node(&[components::RIGHTS_PROBE]);
    let bounded = policy("[limits]\nmailbox = 3\n");
    let kept = ask(
        &node,
        "rights-probe",
        &bounded,
        Wire::op(RIGHTS_FLOOD).u32(10),
    )
    .await;
    assert_eq!(kept.ok(), 3u32.to_le_bytes());
    let unbounded = policy("[limits]\nmemory = \"32MiB\"\n");
    let kept = ask(
        &node,
        "rights-probe",
        &unbounded,
        Wire::op(RIGHTS_FLOOD).u32(10),
    )
    .await;
    assert_eq!(kept.ok(), 10u32.to_le_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_limit_comes_from_the_policy() {
    let node = node(&[components::SPAWNER, components::RIGHTS_PROBE]);
    let rt = node.runtime().clone();
    for (limit, count) in [(2u32, 3u32), (3, 3)] {
        let parent = policy(&format!(
            "[process]\nspawn = [{{ component = \"rights-probe\" }}]\n[limits]\nchildren = {limit}\n"
        ));
        let (outcomes, _, _) = spawn_reports(
            &node,
            &parent,
            spawner(count, 0, "rights-probe", "", &waiting_child()),
        )
        .await;
        assert_eq!(outcomes.len(), count as usize);
        for (i, outcome) in outcomes.iter().enumerate() {
            match outcome {
                Outcome::Ok(child) => {
                    assert!(i < limit as usize, "child {i} spawned past the limit");
                    rt.send(pid_of(child), b"stop".to_vec());
                }
                Outcome::Err(error) => {
                    assert!(i >= limit as usize, "child {i} refused: {error}");
                    assert_eq!(
                        error,
                        &format!("not permitted: the policy allows at most {limit} live children")
                    );
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuel_limit_comes_from_the_policy() {
    let rt = rusm_otp::Runtime::new();
    let config = WasmConfig {
        cache_dir: Some(crate::cache_dir()),
        fuel_metering: true,
        ..WasmConfig::default()
    };
    let node = WasmNode::new(rt, config).unwrap();
    for component in [components::SPINNER, components::TRIVIAL] {
        node.load_file(component.name(), component.path()).unwrap();
    }
    let little = policy("[limits]\nfuel = 1000000\n");
    let (_pid, end) = node
        .spawn_watched("spinner", options(Vec::new(), &little))
        .unwrap();
    let ExitReason::Crashed(text) = ended(end).await else {
        panic!("a spinner out of fuel crashes")
    };
    assert!(text.contains("fuel"), "{text}");
    let plenty = policy("[limits]\nfuel = 100000000\n");
    let (_pid, end) = node
        .spawn_watched("trivial", options(Vec::new(), &plenty))
        .unwrap();
    assert_eq!(ended(end).await, ExitReason::Normal);
}

// ---------------------------------------------------------------------------------
// The empty policy
// ---------------------------------------------------------------------------------

#[test]
fn the_empty_policy_denies_everything() {
    with_guest_log(empty_policy_denies_everything);
}

async fn empty_policy_denies_everything(log: GuestLog) {
    let node = node(&[
        components::FS_PROBE,
        components::NET_PROBE,
        components::ENV_PROBE,
        components::CLOCK_PROBE,
        components::RIGHTS_PROBE,
        components::SPAWNER,
        components::TRIVIAL,
        components::HELLO_CLI,
    ]);
    let nothing = policy("");
    let scratch = Scratch::new("empty-policy");
    let host_hello = scratch.inside().join("hello.txt").display().to_string();

    // Filesystem: no paths at all.
    for request in [
        read(&host_hello),
        read("/data/hello.txt"),
        list("/"),
        write("/new.txt", b"x"),
    ] {
        let missing = ask(&node, "fs-probe", &nothing, request).await;
        assert_not_found(&missing.err());
    }

    // Network: no sockets, no names.
    let listener = loopback_listener();
    let addr = listener.local_addr().unwrap().to_string();
    for request in [
        net(TCP_CONNECT, &addr),
        net(TCP_LISTEN, "127.0.0.1:0"),
        net(UDP_BIND, "127.0.0.1:0"),
        udp_send(&addr, "0.0.0.0:0"),
    ] {
        let refused = ask(&node, "net-probe", &nothing, request).await;
        assert_permission_denied(&refused.err());
    }
    assert_no_connection(&listener);
    let refused = ask(&node, "net-probe", &nothing, net(DNS, "localhost")).await;
    assert_lookup_failed(&refused.err());

    // Environment: no variables, no arguments.
    let vars = ask(&node, "env-probe", &nothing, Wire::op(ENV_VARS))
        .await
        .ok();
    assert!(strings(&vars).is_empty(), "{:?}", strings(&vars));
    let absent = ask(&node, "env-probe", &nothing, var(HOST_VAR)).await;
    assert_eq!(absent.err(), "NotPresent");
    let args = ask(&node, "env-probe", &nothing, Wire::op(ENV_ARGS))
        .await
        .ok();
    assert!(strings(&args).is_empty());

    // Clocks: reading either ends the process.
    for (op, clock) in [
        (CLOCK_WALL, "wasi:clocks/wall-clock"),
        (CLOCK_MONOTONIC, "wasi:clocks/monotonic-clock"),
    ] {
        let reason = end_of(&node, "clock-probe", &nothing, Wire::op(op)).await;
        assert_eq!(reason, ExitReason::CapabilityDenied(clock.into()));
    }

    // Stdio: output goes nowhere (where a stdout grant would log it).
    let pid = run_hello_cli(&node, &policy("[stdio]\nstdout = \"log\"\n")).await;
    assert_eq!(log.lines(pid).len(), 1, "the log is captured");
    let pid = run_hello_cli(&node, &nothing).await;
    assert_eq!(log.lines(pid), Vec::<String>::new());

    // Process rights: no spawn, kill, exit or register.
    let (refused, _, _) = spawn_reports(&node, &nothing, spawner(1, 0, "trivial", "", b"")).await;
    let [Outcome::Err(error)] = &refused[..] else {
        panic!("{refused:?}")
    };
    assert_not_permitted(error);
    let refused = ask(&node, "rights-probe", &nothing, spawn_kill())
        .await
        .err();
    assert!(refused.starts_with("spawn: not permitted: "), "{refused}");
    let target = bystander(&node);
    for request in [
        Wire::op(RIGHTS_KILL).pid(target),
        Wire::op(RIGHTS_EXIT).pid(target),
        Wire::op(RIGHTS_REGISTER).str("anything"),
    ] {
        let refused = ask(&node, "rights-probe", &nothing, request).await;
        assert_not_permitted(&refused.err());
    }
    assert!(node.runtime().is_alive(target));
    assert_eq!(node.runtime().whereis("anything"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_successors_ends_with_the_deadline_of_its_root() {
    // Each rights-probe spawns a successor under its own policy and returns, so no
    // process of the chain lives long; only the root's deadline can end the chain.
    let node = node(&[components::RIGHTS_PROBE]);
    let (exits_tx, mut exits) = tokio::sync::mpsc::unbounded_channel();
    node.runtime().add_observer(move |event| {
        if let rusm_otp::Event::Exited {
            label: Some("rights-probe"),
            reason,
            ..
        } = event
        {
            let _ = exits_tx.send(ExitReason::clone(reason));
        }
    });
    let chain = policy(
        "[process]\nspawn = [{ component = \"rights-probe\" }]\n[limits]\ndeadline = \"300ms\"\n",
    );
    let (reporter, _reports) = probe(node.runtime());
    let mut init = pid_bytes(reporter);
    init.extend(Wire::op(RIGHTS_SUCCEED).0);
    node.spawn_with(None, "rights-probe", options(init, &chain))
        .expect("the root spawns");
    let mut successors = 0_u64;
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match exits.recv().await.expect("the observer stays") {
                ExitReason::Normal => successors += 1,
                ExitReason::DeadlineExceeded => return,
                other => panic!("a successor ended with {other}"),
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the chain still ran after 30 s ({successors} successors)"
    );
    assert!(
        successors > 0,
        "the root spawned successors before its deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_cannot_cancel_another_processs_timer() {
    let node = node(&[components::RIGHTS_PROBE]);
    // A native victim sets itself a timer and waits for its message.
    let (timer_tx, timer_rx) = tokio::sync::oneshot::channel();
    let (victim, arrived) = node.runtime().spawn_watched(
        rusm_otp::SpawnOptions::default(),
        move |ctx: rusm_otp::Context| async move {
            let me = ctx.pid();
            let timer = ctx.send_after(me, 5, vec![1_u8], Duration::from_millis(500));
            timer_tx.send(timer.as_raw()).unwrap();
            match ctx.recv_timeout(WAIT).await {
                Some(rusm_otp::Message::Data(data)) if data.tag == 5 => ExitReason::Normal,
                other => ExitReason::custom(format!("the timer's message was lost: {other:?}")),
            }
        },
    );
    let timer = timer_rx.await.unwrap();
    // A guest under the empty policy guesses the id (ids are node-wide) and cancels.
    let cancelled = ask(
        &node,
        "rights-probe",
        &policy(""),
        Wire::op(RIGHTS_CANCEL_TIMER).u64(timer),
    )
    .await
    .ok();
    assert_eq!(cancelled, [0], "the guest cancelled {victim}'s timer");
    assert_eq!(ended(arrived).await, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_are_capped_per_process_by_the_policy_and_by_default() {
    let node = node(&[components::RIGHTS_PROBE]);
    let set = |outcome: Vec<u8>| {
        let count = u32::from_le_bytes(outcome[..4].try_into().unwrap());
        (count, String::from_utf8(outcome[4..].to_vec()).unwrap())
    };
    let capped = policy("[limits]\ntimers = 10\n");
    let (count, error) = set(ask(
        &node,
        "rights-probe",
        &capped,
        Wire::op(RIGHTS_TIMERS).u32(20),
    )
    .await
    .ok());
    assert_eq!(count, 10);
    assert!(error.contains("at most 10 waiting timers"), "{error}");
    // The default policy sets no `timers` limit: the node's default holds.
    let (count, error) = set(ask(
        &node,
        "rights-probe",
        &policy(""),
        Wire::op(RIGHTS_TIMERS).u32(5_000),
    )
    .await
    .ok());
    assert_eq!(count, 1_000);
    assert!(error.contains("at most 1000 waiting timers"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_a_dead_process_in_a_loop_stops_at_the_monitor_limit() {
    let node = node(&[components::RIGHTS_PROBE]);
    // A pid that has ended: every monitor of it is a `down` waiting in the mailbox.
    let dead = node.runtime().spawn(|_ctx| async {});
    ended(node.runtime().watch(dead)).await;
    let few = policy("[limits]\nmonitors = 100\n");
    let within = ask(
        &node,
        "rights-probe",
        &few,
        Wire::op(RIGHTS_MONITORS).pid(dead).u32(100),
    )
    .await
    .ok();
    assert_eq!(within, 100_u32.to_le_bytes());
    for (limits, count, bound) in [(&few, 101, 100), (&policy(""), 1_000_000, 10_000)] {
        let reason = end_of(
            &node,
            "rights-probe",
            limits,
            Wire::op(RIGHTS_MONITORS).pid(dead).u32(count),
        )
        .await;
        let ExitReason::Crashed(text) = &reason else {
            panic!("{count} monitors end the guest with a crash, not {reason}")
        };
        assert!(
            text.contains(&format!("the policy allows at most {bound} monitors")),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_stop_at_the_link_limit() {
    let node = node(&[components::RIGHTS_PROBE]);
    let targets: Vec<Pid> = (0..5).map(|_| bystander(&node)).collect();
    let linker = policy("[process]\nkill = \"any\"\n[limits]\nlinks = 3\n");
    let mut request = Wire::op(RIGHTS_LINK_MANY).u32(5);
    for pid in &targets {
        request = request.pid(*pid);
    }
    let outcome = ask(&node, "rights-probe", &linker, request).await.ok();
    assert_eq!(outcome[..4], 3_u32.to_le_bytes());
    let error = String::from_utf8_lossy(&outcome[4..]);
    assert!(
        error.contains("the policy allows at most 3 links"),
        "{error}"
    );
    // The probe ended normally: its links took no bystander with it.
    for pid in targets {
        assert!(node.runtime().is_alive(pid));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_a_guest_sends_itself_are_bounded_in_bytes() {
    let node = node(&[components::RIGHTS_PROBE]);
    const MIB: u32 = 1 << 20;
    // 100 messages of 1 MiB to itself: a mailbox holds its memory limit's worth by
    // default (64 MiB), or what the policy's mailbox_bytes says; the rest are dropped.
    let got = |outcome: Vec<u8>| u32::from_le_bytes(outcome[..].try_into().unwrap());
    let hoard = Wire::op(RIGHTS_HOARD).u32(MIB).u32(100);
    let by_default = ask(&node, "rights-probe", &policy(""), hoard.clone())
        .await
        .ok();
    assert_eq!(got(by_default), 64);
    let small = policy("[limits]\nmailbox_bytes = \"8 MiB\"\n");
    assert_eq!(got(ask(&node, "rights-probe", &small, hoard).await.ok()), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_larger_than_the_receiver_takes_is_refused_at_the_send() {
    let node = node(&[components::RIGHTS_PROBE]);
    // The victim, with 16 MiB of memory, accepts up to 4 MiB; a 20 MiB message would
    // end it while being copied into its memory.
    let (victim_reporter, _victim_reports) = probe(node.runtime());
    let mut init = pid_bytes(victim_reporter);
    init.extend(Wire::op(RIGHTS_WAIT).0);
    let (victim, end) = node
        .spawn_watched(
            "rights-probe",
            options(init, &policy("[limits]\nmemory = \"16 MiB\"\n")),
        )
        .unwrap();
    let refused = ask(
        &node,
        "rights-probe",
        &policy(""),
        Wire::op(RIGHTS_SEND_TO).pid(victim).u32(20 << 20),
    )
    .await
    .err();
    assert!(
        refused.contains(&format!(
            "a message of 20971520 bytes is larger than the 4194304 bytes {victim} accepts"
        )),
        "{refused}"
    );
    // A message it can take still arrives, and the victim ends as asked.
    let fits = ask(
        &node,
        "rights-probe",
        &policy(""),
        Wire::op(RIGHTS_SEND_TO).pid(victim).u32(1 << 20),
    )
    .await
    .ok();
    assert!(fits.is_empty());
    node.runtime().send_tagged(victim, 0, b"stop".to_vec());
    assert_eq!(ended(end).await, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawn_tree_cannot_have_more_live_processes_than_its_root_was_granted() {
    let node = node(&[components::SPAWNER, components::RIGHTS_PROBE]);
    // The root may spawn waiting children and grandchildren, three alive at once in
    // its whole tree, whatever each child's own count of children.
    let tree = policy(
        "[process]\nspawn = [{ component = \"rights-probe\" }]\n[limits]\ndescendants = 3\n",
    );
    let (outcomes, _reports, spawner_pid) = spawn_reports(
        &node,
        &tree,
        spawner(5, SPAWNER_STAY, "rights-probe", "", &waiting_child()),
    )
    .await;
    assert!(
        matches!(
            outcomes[..3],
            [Outcome::Ok(_), Outcome::Ok(_), Outcome::Ok(_)]
        ),
        "{outcomes:?}"
    );
    for refused in &outcomes[3..] {
        let Outcome::Err(error) = refused else {
            panic!("{outcomes:?}")
        };
        assert!(
            error.contains("the spawn tree may have at most 3 live processes"),
            "{error}"
        );
    }
    let children: Vec<Pid> = outcomes[..3]
        .iter()
        .map(|o| match o {
            Outcome::Ok(pid) => pid_of(pid),
            Outcome::Err(e) => panic!("{e}"),
        })
        .collect();
    for child in children {
        node.runtime().send_tagged(child, 0, b"stop".to_vec());
    }
    node.runtime().send_tagged(spawner_pid, 0, b"stop".to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_successors_stops_at_its_roots_spawn_budget() {
    let node = node(&[components::RIGHTS_PROBE]);
    let chain =
        policy("[process]\nspawn = [{ component = \"rights-probe\" }]\n[limits]\nspawns = 5\n");
    let (reporter, mut reports) = probe(node.runtime());
    let mut init = pid_bytes(reporter);
    init.extend(Wire::op(RIGHTS_SUCCEED).0);
    node.spawn_with(None, "rights-probe", options(init, &chain))
        .expect("the root spawns");
    // Each link of the chain reports its successor, and the sixth spawn is refused.
    // A link reports after its successor starts, so the reports may come in any
    // order: six of them, five successes and one refusal.
    let mut spawned = 0;
    let mut refusals = Vec::new();
    for _ in 0..6 {
        match reports.data().await {
            (1, _) => spawned += 1,
            (2, payload) => refusals.push(String::from_utf8(payload).unwrap()),
            (tag, payload) => panic!("an unexpected report {tag}: {payload:?}"),
        }
    }
    assert_eq!(spawned, 5, "five successors were spawned");
    assert_eq!(refusals.len(), 1, "one spawn was refused: {refusals:?}");
    assert!(
        refusals[0].contains("the spawn tree may spawn at most 5 processes"),
        "{}",
        refusals[0]
    );
}
