//! The capability broker: turns a process's [`Policy`] into its WASI context and the
//! checks its host calls make. One function per capability; the policy itself is parsed
//! and validated by `rusm-policy`, with no engine involved.
//!
//! What a denial looks like to the guest:
//! - filesystem: only the preopened directories exist, each opened without following a
//!   symbolic link anywhere on its host path, when the process is spawned (one that
//!   is or contains a link, or does not exist, is a spawn error naming the policy and
//!   the path: `not-permitted` to a spawning guest); a guest's child gets only
//!   directories that lie, as opened, within its parent's; cap-std confines every path to them (`..`, absolute paths and symlinks leading outside fail with `access`/
//!   `not-permitted`), and a read-only preopen refuses writes;
//! - sockets: a denied bind, listen or connect fails with `access-denied`; DNS lookups
//!   fail when `dns` is off;
//! - environment and arguments: only what the policy names exists;
//! - clocks (no error channel in WASI): reading a denied clock (`now`/`resolution`)
//!   ends the process with `capability-denied: wasi:clocks/...`, and so does waiting
//!   for an instant of the monotonic clock (`subscribe-instant`): a pollable that is
//!   ready at once for every instant up to now would let a guest search for the
//!   reading. Waiting for a duration (`subscribe-duration`, used by sleeps and
//!   timeouts) stays available: it reveals no reading;
//! - outbound HTTP (`wasi:http/outgoing-handler`): a request to an origin the
//!   policy's `[http]` section does not grant fails with `HttpRequestDenied` (when the
//!   guest awaits the response) and never leaves the host;
//! - `rusm:runtime`: spawn, kill/exit and register outside the policy return
//!   `not-permitted`.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusm_otp::Pid;
use rusm_policy::{FsMode, HostPathError, HostPathProblem, Policy, Preopen, StdioMode};
use rustix::fs::{CWD, Mode, OFlags, ResolveFlags, openat, openat2};
use rustix::io::Errno;
use tokio::io::AsyncWrite;
use wasmtime::StoreContextMut;
use wasmtime::component::Linker;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::clocks::WasiClocksView;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::bindings::clocks::wall_clock::Datetime;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};
use wasmtime_wasi_http::{WasiBody, WasiHttpHooks};

/// The version of the WASI clock interfaces this host links (the version wasmtime-wasi
/// ships); guests importing an older 0.2 patch resolve to it.
const WASI_CLOCKS: &str = "0.2.12";

/// Why a WASI context could not be built from a policy.
#[derive(Debug, thiserror::Error)]
#[error("cannot grant {what}: {detail}")]
pub struct GrantError {
    what: String,
    detail: String,
}

/// Build the WASI context of process `pid` from its policy, with `dirs` (its
/// policy's preopens, opened at spawn) as its filesystem.
pub(crate) fn wasi_ctx(
    policy: &Policy,
    dirs: &Dirs,
    pid: Pid,
    started: Instant,
) -> Result<WasiCtx, GrantError> {
    let mut builder = WasiCtxBuilder::new();
    // The same clock the policy-checked `now` reads, so instants agree with waits.
    builder.monotonic_clock(ProcessClock { started });
    grant_filesystem(&mut builder, dirs)?;
    grant_network(&mut builder, policy);
    grant_env(&mut builder, policy);
    grant_stdio(&mut builder, policy, pid);
    Ok(builder.build())
}

/// A process's preopened directories, opened once when it is spawned (before it has a
/// pid, so a path that cannot be granted is the spawner's error) and kept open for its
/// whole life: every store it gets (after an upgrade, or a plugin's fresh instance)
/// grants exactly these directories, whatever has been renamed or replaced since.
pub(crate) struct Dirs(Vec<OpenedDir>);

struct OpenedDir {
    fd: OwnedFd,
    guest: String,
    mode: FsMode,
    /// What the policy names, for errors.
    host: std::path::PathBuf,
}

/// A directory as the kernel knows it: its device and inode.
type DirId = (u64, u64);

fn dir_id(fd: impl rustix::fd::AsFd) -> rustix::io::Result<DirId> {
    let stat = rustix::fs::fstat(fd)?;
    Ok((stat.st_dev, stat.st_ino))
}

impl Dirs {
    /// No directories.
    pub(crate) fn none() -> Dirs {
        Dirs(Vec::new())
    }

    /// Open `policy`'s preopens (see [`open_preopen`]).
    ///
    /// # Errors
    /// The first preopen that cannot be opened, naming the policy and the path.
    pub(crate) fn open(policy: &Policy) -> Result<Dirs, GrantError> {
        let mut dirs = Vec::with_capacity(policy.fs.preopens.len());
        for preopen in &policy.fs.preopens {
            let fd = open_preopen(preopen).map_err(|e| GrantError {
                what: format!(
                    "preopen {} at {}",
                    preopen.host_resolved.display(),
                    preopen.guest
                ),
                detail: e.to_string(),
            })?;
            dirs.push(OpenedDir {
                fd,
                guest: preopen.guest.clone(),
                mode: preopen.mode,
                host: preopen.host_resolved.clone(),
            });
        }
        Ok(Dirs(dirs))
    }

    /// Check that every directory here lies in (or is) one of `parent`'s, in a mode the
    /// parent's allows, by what was opened (device and inode, walking up through `..`)
    /// rather than by path names: the subset rule the policies passed, as it holds on
    /// the directories themselves.
    ///
    /// # Errors
    /// A text naming the first directory that is not within the parent's.
    pub(crate) fn within(&self, parent: &Dirs) -> Result<(), String> {
        if self.0.is_empty() {
            return Ok(());
        }
        let io = |dir: &OpenedDir, e: Errno| {
            format!(
                "cannot check preopen {} against the parent's: {}",
                dir.host.display(),
                std::io::Error::from(e)
            )
        };
        let mut granted: Vec<(DirId, FsMode)> = Vec::with_capacity(parent.0.len());
        for dir in &parent.0 {
            granted.push((dir_id(&dir.fd).map_err(|e| io(dir, e))?, dir.mode));
        }
        for dir in &self.0 {
            let covers = |id: DirId| {
                granted.iter().any(|&(at, mode)| {
                    at == id && (mode == FsMode::ReadWrite || dir.mode == FsMode::ReadOnly)
                })
            };
            let mut id = dir_id(&dir.fd).map_err(|e| io(dir, e))?;
            let mut current: Option<OwnedFd> = None;
            let within = loop {
                if covers(id) {
                    break true;
                }
                let from = current
                    .as_ref()
                    .map_or_else(|| rustix::fd::AsFd::as_fd(&dir.fd), rustix::fd::AsFd::as_fd);
                let up = openat(
                    from,
                    "..",
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                    Mode::empty(),
                )
                .map_err(|e| io(dir, e))?;
                let up_id = dir_id(&up).map_err(|e| io(dir, e))?;
                if up_id == id {
                    // The root: nothing above it.
                    break false;
                }
                id = up_id;
                current = Some(up);
            };
            if !within {
                return Err(format!(
                    "preopen {} ({}) is not within a directory the parent has {}",
                    dir.host.display(),
                    dir.guest,
                    match dir.mode {
                        FsMode::ReadOnly => "read access to",
                        FsMode::ReadWrite => "read-write access to",
                    }
                ));
            }
        }
        Ok(())
    }
}

fn grant_filesystem(builder: &mut WasiCtxBuilder, dirs: &Dirs) -> Result<(), GrantError> {
    for dir in &dirs.0 {
        let perms = match dir.mode {
            FsMode::ReadOnly => FsPerms::ReadOnly,
            FsMode::ReadWrite => FsPerms::ReadWrite,
        };
        // wasmtime-wasi opens preopens by path, following symbolic links. Handing it
        // the descriptor's own /proc entry (a link the kernel resolves to the open
        // directory itself, not by name) makes it open exactly the directory opened
        // at spawn, whatever has been renamed or replaced since.
        let by_descriptor = format!("/proc/self/fd/{}", dir.fd.as_raw_fd());
        builder
            .preopened_dir(&by_descriptor, &dir.guest, perms)
            .map_err(|e| GrantError {
                what: format!("preopen {} at {}", dir.host.display(), dir.guest),
                detail: format!("cannot reopen it through {by_descriptor}: {e:#}"),
            })?;
    }
    Ok(())
}

/// Opens a preopen's host directory without following a symbolic link anywhere on
/// its path: `openat2` with `RESOLVE_NO_SYMLINKS` where the kernel has it, else a walk
/// from `/` opening one component at a time with `O_NOFOLLOW`. So the directory opened
/// is the one the policy's resolved host path names (which the subset rule compares),
/// never one a guest with `rw` above it redirected with a link.
///
/// # Errors
/// The preopen's [`HostPathError`]: the path is missing, not a directory, reached
/// through a symbolic link, or cannot be opened.
pub(crate) fn open_preopen(preopen: &Preopen) -> Result<OwnedFd, HostPathError> {
    let path = std::path::absolute(&preopen.host_resolved)
        .unwrap_or_else(|_| preopen.host_resolved.clone());
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let opened = match openat2(CWD, &path, flags, Mode::empty(), ResolveFlags::NO_SYMLINKS) {
        // No openat2 (before Linux 5.6, or refused by a seccomp filter).
        Err(Errno::NOSYS | Errno::PERM) => open_without_links(&path, flags),
        other => other,
    };
    opened.map_err(|errno| {
        // Name the component at fault; the kernel only says ELOOP or ENOENT.
        let problem = preopen.host_problem().unwrap_or_else(|| {
            HostPathProblem::Inaccessible(path.clone(), std::io::Error::from(errno).to_string())
        });
        preopen.error(problem)
    })
}

/// The fallback of [`open_preopen`]: from `/`, each component with `O_NOFOLLOW`.
fn open_without_links(path: &Path, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    let mut dir = openat(CWD, "/", flags, Mode::empty())?;
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => {
                dir = openat(&dir, name, flags | OFlags::NOFOLLOW, Mode::empty())?;
            }
            // An absolute, lexically resolved path has neither.
            Component::ParentDir | Component::Prefix(_) => return Err(Errno::INVAL),
        }
    }
    Ok(dir)
}

fn grant_network(builder: &mut WasiCtxBuilder, policy: &Policy) {
    let net = &policy.net;
    builder.allow_ip_name_lookup(net.dns);
    builder.allow_tcp(!net.tcp_connect.is_empty() || !net.tcp_bind.is_empty());
    builder.allow_udp(!net.udp_connect.is_empty() || !net.udp_bind.is_empty());
    let net = Arc::new(net.clone());
    builder.socket_addr_check(move |addr, use_| {
        let allowed = socket_allowed(&net, addr, use_);
        if !allowed {
            tracing::debug!(%addr, ?use_, "socket use denied by policy");
        }
        Box::pin(async move { allowed })
    });
}

/// Whether the policy allows this use of this address. wasmtime-wasi checks an
/// implicit bind to the unspecified address, port 0, before every connect or send that
/// was not preceded by an explicit bind; that implicit bind is allowed when the policy
/// allows connecting (or sending) at all, and the connect (send) check that follows
/// decides.
fn socket_allowed(net: &rusm_policy::NetPolicy, addr: SocketAddr, use_: SocketAddrUse) -> bool {
    let implicit = addr.ip().is_unspecified() && addr.port() == 0;
    match use_ {
        SocketAddrUse::TcpBind => {
            net.allows_tcp_bind(addr) || (implicit && !net.tcp_connect.is_empty())
        }
        // Listening is checked on the address the socket got: after a bind to port 0,
        // the port the system picked, which a grant of port 0 on that address covers.
        SocketAddrUse::TcpListen => {
            net.allows_tcp_bind(addr) || net.allows_tcp_bind(SocketAddr::new(addr.ip(), 0))
        }
        SocketAddrUse::TcpAccept => !net.tcp_bind.is_empty(),
        SocketAddrUse::TcpConnect => net.allows_tcp_connect(addr),
        SocketAddrUse::UdpBind => {
            net.allows_udp_bind(addr) || (implicit && !net.udp_connect.is_empty())
        }
        SocketAddrUse::UdpSend => net.allows_udp_connect(addr),
        SocketAddrUse::UdpReceive => net.allows_udp_connect(addr) || !net.udp_bind.is_empty(),
    }
}

/// Outbound HTTP for one process: every request is checked against the policy's
/// `[http]` section (scheme, host and port of the request URI) before it is sent with
/// wasmtime-wasi-http's default sender; anything else fails with `HttpRequestDenied`.
pub(crate) struct HttpGrant {
    policy: Arc<Policy>,
    pid: Pid,
}

impl HttpGrant {
    pub(crate) fn new(policy: &Arc<Policy>, pid: Pid) -> HttpGrant {
        HttpGrant {
            policy: policy.clone(),
            pid,
        }
    }

    /// Whether the policy grants a request to this URI.
    fn allows(&self, uri: &http::Uri) -> bool {
        match (uri.scheme_str(), uri.host()) {
            (Some(scheme), Some(host)) => self.policy.http.allows(scheme, host, uri.port_u16()),
            _ => false,
        }
    }
}

/// What [`WasiHttpHooks::send_request`] returns.
type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for HttpGrant {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        if !self.allows(request.uri()) {
            tracing::debug!(pid = %self.pid, uri = %request.uri(), "outbound HTTP denied by policy");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

fn grant_env(builder: &mut WasiCtxBuilder, policy: &Policy) {
    let vars = policy.env.resolve(|name| std::env::var(name).ok());
    builder.envs(&vars);
    builder.args(&policy.env.args);
    if let Some(cwd) = &policy.env.cwd {
        builder.initial_cwd(cwd);
    }
}

fn grant_stdio(builder: &mut WasiCtxBuilder, policy: &Policy, pid: Pid) {
    match policy.stdio.stdin {
        StdioMode::Inherit => {
            builder.inherit_stdin();
        }
        StdioMode::Null | StdioMode::Log => {}
    }
    match policy.stdio.stdout {
        StdioMode::Inherit => {
            builder.inherit_stdout();
        }
        StdioMode::Log => {
            builder.stdout(LogStream {
                pid,
                stream: "stdout",
            });
        }
        StdioMode::Null => {}
    }
    match policy.stdio.stderr {
        StdioMode::Inherit => {
            builder.inherit_stderr();
        }
        StdioMode::Log => {
            builder.stderr(LogStream {
                pid,
                stream: "stderr",
            });
        }
        StdioMode::Null => {}
    }
}

/// A guest output stream that becomes host log lines tagged with the pid.
#[derive(Clone, Copy)]
struct LogStream {
    pid: Pid,
    stream: &'static str,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LogWriter {
            stream: *self,
            line: Vec::new(),
        })
    }
}

struct LogWriter {
    stream: LogStream,
    line: Vec<u8>,
}

impl LogWriter {
    fn emit(&mut self) {
        let text = log_text(&self.line);
        tracing::info!(target: "rusm::guest", pid = %self.stream.pid, stream = self.stream.stream, "{text}");
        self.line.clear();
    }
}

/// A guest's output line as the host logs it: UTF-8 (invalid bytes replaced), trailing
/// white space removed, and every control character left escaped as Rust writes it
/// (`\r`, `\u{1b}`, ...), so a guest can neither rewrite earlier log lines with a
/// carriage return nor send terminal escape sequences to whoever reads the log.
fn log_text(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut out = String::with_capacity(text.len());
    for c in text.trim_end().chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Lines longer than this are logged in pieces.
const MAX_LOG_LINE: usize = 16 * 1024;

impl AsyncWrite for LogWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        for &byte in buf {
            if byte == b'\n' {
                self.emit();
            } else {
                self.line.push(byte);
                if self.line.len() >= MAX_LOG_LINE {
                    self.emit();
                }
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.line.is_empty() {
            self.emit();
        }
        Poll::Ready(Ok(()))
    }
}

/// The monotonic clock of a process: nanoseconds since it started.
struct ProcessClock {
    started: Instant,
}

impl wasmtime_wasi::HostMonotonicClock for ProcessClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }
}

/// A process read a clock its policy denies; ends it with `capability-denied`.
#[derive(Debug)]
pub(crate) struct CapabilityDenied(pub(crate) &'static str);

impl std::fmt::Display for CapabilityDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "capability denied: {}", self.0)
    }
}

impl std::error::Error for CapabilityDenied {}

/// What the clock checks read of a process: its clock grant and when it started (the
/// zero of its monotonic clock).
pub(crate) trait ClockView: 'static {
    /// The policy's clock section and the process's start.
    fn clock_grant(&self) -> (&rusm_policy::ClockPolicy, Instant);
}

/// Replace the clock readings wasmtime-wasi links with ones that consult the process's
/// policy first: `now` and `resolution` of both clocks, and the monotonic clock's
/// `subscribe-instant` (which answers "is it past `t` yet?" for any `t`, a reading by
/// bisection). `subscribe-duration` is left as wasmtime-wasi links it.
pub(crate) fn link_clock_checks<T: ClockView + WasiClocksView + Send>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let wall = format!("wasi:clocks/wall-clock@{WASI_CLOCKS}");
    let mut inst = linker.instance(&wall)?;
    inst.func_wrap("now", |store: StoreContextMut<'_, T>, (): ()| {
        require(store.data().clock_grant().0.wall, "wasi:clocks/wall-clock")?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Ok((Datetime {
            seconds: now.as_secs(),
            nanoseconds: now.subsec_nanos(),
        },))
    })?;
    inst.func_wrap("resolution", |store: StoreContextMut<'_, T>, (): ()| {
        require(store.data().clock_grant().0.wall, "wasi:clocks/wall-clock")?;
        Ok((Datetime {
            seconds: 0,
            nanoseconds: 1,
        },))
    })?;
    let mono = format!("wasi:clocks/monotonic-clock@{WASI_CLOCKS}");
    let mut inst = linker.instance(&mono)?;
    inst.func_wrap("now", |store: StoreContextMut<'_, T>, (): ()| {
        require(
            store.data().clock_grant().0.monotonic,
            "wasi:clocks/monotonic-clock",
        )?;
        Ok((store.data().clock_grant().1.elapsed().as_nanos() as u64,))
    })?;
    inst.func_wrap("resolution", |store: StoreContextMut<'_, T>, (): ()| {
        require(
            store.data().clock_grant().0.monotonic,
            "wasi:clocks/monotonic-clock",
        )?;
        Ok((1u64,))
    })?;
    inst.func_wrap(
        "subscribe-instant",
        |mut store: StoreContextMut<'_, T>, (when,): (u64,)| {
            require(
                store.data().clock_grant().0.monotonic,
                "wasi:clocks/monotonic-clock",
            )?;
            let pollable =
                monotonic_clock::Host::subscribe_instant(&mut store.data_mut().clocks(), when)?;
            Ok((pollable,))
        },
    )?;
    link_p3_clock_checks(linker)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The same checks for the WASI 0.3 clocks (`now` and `get-resolution` of both, and
/// the monotonic clock's `wait-until`, which tells whether a mark has passed, a
/// reading by bisection); `wait-for` is left as wasmtime-wasi links it. Called with
/// shadowing allowed, after WASI 0.3 is linked.
fn link_p3_clock_checks<T: ClockView + WasiClocksView + Send>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    use wasmtime::AsContextMut as _;
    use wasmtime_wasi::p3::bindings::clocks::{monotonic_clock as mono3, system_clock};
    let system = format!("wasi:clocks/system-clock@{WASI_CLOCKS_P3}");
    let mut inst = linker.instance(&system)?;
    inst.func_wrap("now", |mut store: StoreContextMut<'_, T>, (): ()| {
        require(
            store.data().clock_grant().0.wall,
            "wasi:clocks/system-clock",
        )?;
        Ok((system_clock::Host::now(&mut store.data_mut().clocks())?,))
    })?;
    inst.func_wrap(
        "get-resolution",
        |mut store: StoreContextMut<'_, T>, (): ()| {
            require(
                store.data().clock_grant().0.wall,
                "wasi:clocks/system-clock",
            )?;
            Ok((system_clock::Host::get_resolution(
                &mut store.data_mut().clocks(),
            )?,))
        },
    )?;
    let mono = format!("wasi:clocks/monotonic-clock@{WASI_CLOCKS_P3}");
    let mut inst = linker.instance(&mono)?;
    inst.func_wrap("now", |mut store: StoreContextMut<'_, T>, (): ()| {
        require(
            store.data().clock_grant().0.monotonic,
            "wasi:clocks/monotonic-clock",
        )?;
        Ok((mono3::Host::now(&mut store.data_mut().clocks())?,))
    })?;
    inst.func_wrap(
        "get-resolution",
        |mut store: StoreContextMut<'_, T>, (): ()| {
            require(
                store.data().clock_grant().0.monotonic,
                "wasi:clocks/monotonic-clock",
            )?;
            Ok((mono3::Host::get_resolution(&mut store.data_mut().clocks())?,))
        },
    )?;
    inst.func_wrap_concurrent(
        "wait-until",
        |accessor: &wasmtime::component::Accessor<T>, (when,): (u64,)| {
            Box::pin(async move {
                let (granted, now) = accessor.with(|mut access| {
                    let mut store = access.as_context_mut();
                    let data = store.data_mut();
                    let granted = data.clock_grant().0.monotonic;
                    let now = mono3::Host::now(&mut data.clocks());
                    (granted, now)
                });
                require(granted, "wasi:clocks/monotonic-clock")?;
                let now = now?;
                if when > now {
                    tokio::time::sleep(Duration::from_nanos(when - now)).await;
                }
                Ok(())
            })
        },
    )?;
    Ok(())
}

/// The WASI 0.3 clocks version wasmtime-wasi links.
const WASI_CLOCKS_P3: &str = "0.3.0";

fn require(granted: bool, what: &'static str) -> wasmtime::Result<()> {
    if granted {
        Ok(())
    } else {
        Err(wasmtime::Error::new(CapabilityDenied(what)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_log_lines_carry_no_control_characters() {
        assert_eq!(log_text(b"plain text, caf\xc3\xa9\r"), "plain text, café");
        assert_eq!(
            log_text(b"fake\rWARN host: all good"),
            "fake\\rWARN host: all good"
        );
        assert_eq!(
            log_text(b"\x1b[31mred\x1b[0m \x1b]0;title\x07 tab\there"),
            "\\u{1b}[31mred\\u{1b}[0m \\u{1b}]0;title\\u{7} tab\\there"
        );
        assert_eq!(log_text(b"\xff\x00 \xc2\x9b"), "\u{fffd}\\u{0} \\u{9b}");
        assert!(!log_text(b"\x08\x7f\x1b").chars().any(char::is_control));
    }

    #[test]
    fn the_fallback_walk_opens_directories_and_refuses_links() {
        let root = std::env::temp_dir().join(format!("rusm-broker-walk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        std::os::unix::fs::symlink("real", root.join("link")).unwrap();
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        assert!(open_without_links(&root.join("real/sub"), flags).is_ok());
        assert_eq!(
            open_without_links(&root.join("link/sub"), flags).err(),
            Some(Errno::NOTDIR)
        );
        assert_eq!(
            open_without_links(&root.join("link"), flags).err(),
            Some(Errno::NOTDIR)
        );
        assert_eq!(
            open_without_links(&root.join("missing"), flags).err(),
            Some(Errno::NOENT)
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    fn preopen_policy(dirs: &[(&Path, &str)]) -> Policy {
        let mut toml = String::new();
        for (host, mode) in dirs {
            toml.push_str(&format!(
                "[[fs.preopen]]\nhost = '{}'\nguest = \"/d{}\"\nmode = \"{mode}\"\n",
                host.display(),
                toml.len()
            ));
        }
        Policy::parse(&toml, Path::new("test.toml")).unwrap()
    }

    #[test]
    fn a_child_gets_only_directories_within_what_its_parent_opened() {
        let root = std::env::temp_dir().join(format!("rusm-broker-within-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("inside/job/deeper")).unwrap();
        std::fs::create_dir_all(root.join("beside")).unwrap();
        let inside = root.join("inside");
        let parent = Dirs::open(&preopen_policy(&[(&inside, "rw")])).unwrap();
        let read_only = Dirs::open(&preopen_policy(&[(&inside, "ro")])).unwrap();
        let child = |host: &Path, mode: &str| Dirs::open(&preopen_policy(&[(host, mode)])).unwrap();

        assert!(
            child(&inside, "rw").within(&parent).is_ok(),
            "the same directory"
        );
        assert!(
            child(&inside.join("job/deeper"), "rw")
                .within(&parent)
                .is_ok()
        );
        assert!(child(&inside.join("job"), "ro").within(&read_only).is_ok());
        let error = child(&inside.join("job"), "rw")
            .within(&read_only)
            .unwrap_err();
        assert!(error.contains("read-write access"), "{error}");
        let error = child(&root.join("beside"), "ro")
            .within(&parent)
            .unwrap_err();
        assert!(
            error.contains("beside") && error.contains("not within"),
            "{error}"
        );
        assert!(child(&inside, "ro").within(&Dirs::none()).is_err());
        assert!(Dirs::none().within(&Dirs::none()).is_ok());

        // Someone else moves the parent's directory away and puts another in its
        // place: by name the child's `inside/job` is still under the parent's
        // `inside`, but it is not in the directory the parent was given.
        std::fs::rename(&inside, root.join("moved")).unwrap();
        std::fs::create_dir_all(inside.join("job")).unwrap();
        let error = child(&inside.join("job"), "ro")
            .within(&parent)
            .unwrap_err();
        assert!(error.contains("not within"), "{error}");
        assert!(child(&root.join("moved/job"), "rw").within(&parent).is_ok());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
