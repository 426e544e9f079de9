//! The `http` scenario: keep-alive load over loopback at a fixed concurrency.
//!
//! `c` client connections (HTTP/1.1, keep-alive), each sending its share of `n`
//! `GET /` requests one after another, every response checked (status 200 and the
//! exact body). One unit is one request; every request's latency is recorded.
//!
//! Sides, interleaved round by round in this process:
//! - **rusm**: `rusm_http::HttpServer` serving the `http-hello` component, a fresh
//!   sandboxed instance (and rusm process) per request, on a node with the default
//!   `WasmConfig`;
//! - **native hyper**: a hyper 1 HTTP/1.1 server on the same runtime answering with
//!   the same status, header and body from a plain Rust closure;
//! - **rusm reuse** (with `--reuse N`): the same server and node, a second route
//!   serving `http-hello` from a pool of instances (`Route::reuse(N)`, as many as
//!   there are connections), each serving N requests in turn;
//! - **wasmtime serve** (only when a `wasmtime` binary is found: `$RUSM_BENCH_WASMTIME`,
//!   else `wasmtime` on `PATH`): `wasmtime serve` running the same `http-hello`
//!   component in its own process, one instance per request (its default for a
//!   `wasi:http` 0.2 component); with `--reuse N`, also **wasmtime serve reuse**, a
//!   second one run with `--max-instance-reuse-count N`;
//! - **rusm p3** (with `--p3 C`): the same server and node, a third route serving
//!   `http-p3`, a `wasi:http` 0.3 service, from a pool of instances each serving up
//!   to C requests at once (`Route::concurrency(C)`, no reuse cap); with a `wasmtime`
//!   binary, also **wasmtime serve p3**, `wasmtime serve -Wcomponent-model-async
//!   -Sp3` on the same `http-p3` file with `--max-instance-concurrent-reuse-count C`
//!   (and its default reuse count, 128 for a 0.3 service).
//!
//! The load generator shares the machine with the server in every case (it runs on
//! the same tokio runtime as rusm and the native server, and beside the `wasmtime`
//! process for the third side).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rusm_http::{HttpConfig, HttpServer, Route};
use rusm_otp::Runtime;
use rusm_wasm::{WasmConfig, WasmNode};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{Contender, interleaved};
use crate::native::Params;
use crate::report::{Figure, Sample, Side};

/// What `http-hello` answers, byte for byte.
const HELLO: &[u8] = b"hello from rusm\n";

/// The path of the reusing route.
const REUSE_PATH: &str = "/reuse";

/// The route of the `wasi:http` 0.3 side, and the path `http-p3` answers like
/// `http-hello` on.
const P3_ROUTE: &str = "/p3";
const P3_PATH: &str = "/p3/hello";

/// Environment variable naming the `wasmtime` binary for the third side.
const WASMTIME_VAR: &str = "RUSM_BENCH_WASMTIME";

/// `http`: `n` requests per run over `m` keep-alive connections.
pub async fn http(p: Params) -> Result<Vec<Figure>> {
    let requests = p.n;
    let connections = p.m.max(1);
    ensure!(
        requests >= connections,
        "http: n ({requests}) must be at least the number of connections ({connections})"
    );
    let component = crate::wasm::component_path("http-hello")?;
    let p3_component = crate::wasm::component_path("http-p3")?;

    let config = WasmConfig {
        cache_dir: Some(crate::wasm::cache_dir()),
        preemption: p.preemption,
        ..WasmConfig::default()
    };
    let node = WasmNode::new(Runtime::new(), config)?;
    node.load_file("http-hello", component)
        .context("loading http-hello")?;
    if p.p3 > 0 {
        node.load_file("http-p3", p3_component)
            .context("loading http-p3")?;
    }
    let http_config = HttpConfig {
        max_concurrent: usize::try_from(connections)?.max(1024),
        ..HttpConfig::default()
    };
    let mut routes = vec![Route::new("/", "http-hello")];
    if p.reuse > 1 {
        routes.push(
            Route::new(REUSE_PATH, "http-hello")
                .reuse(p.reuse)
                .pool(usize::try_from(connections)?),
        );
    }
    if p.p3 > 0 {
        // As many instances as connections at most, each serving up to `p.p3` at once.
        routes.push(
            Route::new(P3_ROUTE, "http-p3")
                .concurrency(p.p3)
                .pool(usize::try_from(connections)?),
        );
    }
    let rusm = HttpServer::bind(node, loopback(0), routes, http_config).await?;
    let native = NativeServer::start().await?;
    let binary = wasmtime_binary();
    let wasmtime = match &binary {
        Some(binary) => Some(WasmtimeServe::start(binary, component, Serve::Fresh).await?),
        None => None,
    };
    let wasmtime_reuse = match &binary {
        Some(binary) if p.reuse > 1 => {
            Some(WasmtimeServe::start(binary, component, Serve::Reuse(p.reuse)).await?)
        }
        _ => None,
    };
    let wasmtime_p3 = match &binary {
        Some(binary) if p.p3 > 0 => {
            Some(WasmtimeServe::start(binary, p3_component, Serve::P3(p.p3)).await?)
        }
        _ => None,
    };

    let rusm_addr = rusm.local_addr();
    let native_addr = native.addr;
    let reuse_label = format!("rusm reuse={}", p.reuse);
    let wasmtime_reuse_label = format!("wasmtime serve reuse={}", p.reuse);
    let p3_label = format!("rusm p3 concurrency={}", p.p3);
    let wasmtime_p3_label = format!("wasmtime serve p3 concurrency={}", p.p3);
    let mut sides = vec![
        Contender::new("rusm", move || load(rusm_addr, "/", requests, connections)),
        Contender::new("native hyper", move || {
            load(native_addr, "/", requests, connections)
        }),
    ];
    if p.reuse > 1 {
        sides.push(Contender::new(&reuse_label, move || {
            load(rusm_addr, REUSE_PATH, requests, connections)
        }));
    }
    let serve_at = sides.len();
    if let Some(serve) = &wasmtime {
        let addr = serve.addr;
        sides.push(Contender::new("wasmtime serve", move || {
            load(addr, "/", requests, connections)
        }));
    }
    let serve_reuse_at = sides.len();
    if let Some(serve) = &wasmtime_reuse {
        let addr = serve.addr;
        sides.push(Contender::new(&wasmtime_reuse_label, move || {
            load(addr, "/", requests, connections)
        }));
    }
    // Where each side's series is: rusm, native, then these in this order.
    let p3_at = sides.len();
    let p3_serve_at = p3_at + 1;
    if p.p3 > 0 {
        sides.push(Contender::new(&p3_label, move || {
            load(rusm_addr, P3_PATH, requests, connections)
        }));
    }
    if let Some(serve) = &wasmtime_p3 {
        let addr = serve.addr;
        sides.push(Contender::new(&wasmtime_p3_label, move || {
            load(addr, "/hello", requests, connections)
        }));
    }
    let series = interleaved(p.repeats, p.rusm_only, sides).await?;
    let stats = rusm.stats();
    rusm.shutdown().await;
    native.stop();
    // The children stop now; only whether there were any is used below.
    let (wasmtime, wasmtime_reuse, wasmtime_p3) = (
        wasmtime.map(drop),
        wasmtime_reuse.map(drop),
        wasmtime_p3.map(drop),
    );

    let rusm_sides = 1 + u64::from(p.reuse > 1) + u64::from(p.p3 > 0);
    let expected = requests * (p.repeats as u64 + 1) * rusm_sides;
    ensure!(
        p.rusm_only || stats.status(200) == expected,
        "the rusm server counted {} 200s, expected {expected}",
        stats.status(200)
    );

    let params = format!("n={requests} c={connections}");
    let rusm_side = Side::new("rusm", &series[0], Some("request"));
    let mut figures = vec![Figure::new(
        "http",
        "hello, keep-alive",
        "requests",
        params.clone(),
        rusm_side.clone(),
        Side::new("native hyper", &series[1], Some("request")),
        None,
    )];
    let reuse_side = (p.reuse > 1).then(|| Side::new(&reuse_label, &series[2], Some("request")));
    if let Some(reused) = &reuse_side {
        figures.push(Figure::new(
            "http",
            "reuse vs fresh instance",
            "requests",
            format!("{params} reuse={}", p.reuse),
            reused.clone(),
            rusm_side.clone(),
            Some(2.0),
        ));
    }
    let serve_reuse = wasmtime_reuse.is_some().then(|| &series[serve_reuse_at]);
    if let (Some(reused), Some(serve)) = (&reuse_side, serve_reuse) {
        figures.push(Figure::new(
            "http",
            "reuse vs wasmtime reuse",
            "requests",
            format!("{params} reuse={}", p.reuse),
            reused.clone(),
            Side::new(&wasmtime_reuse_label, serve, Some("request")),
            Some(1.0),
        ));
    }
    if p.p3 > 0 {
        let p3_side = Side::new(&p3_label, &series[p3_at], Some("request"));
        figures.push(Figure::new(
            "http",
            "p3 service vs fresh instance",
            "requests",
            format!("{params} concurrency={}", p.p3),
            p3_side.clone(),
            rusm_side.clone(),
            None,
        ));
        if wasmtime_p3.is_some() {
            let serve = &series[p3_serve_at];
            figures.push(Figure::new(
                "http",
                "p3 service vs wasmtime serve p3",
                "requests",
                format!("{params} concurrency={}", p.p3),
                p3_side,
                Side::new(&wasmtime_p3_label, serve, Some("request")),
                Some(1.0),
            ));
        }
    }
    match wasmtime.is_some().then(|| &series[serve_at]) {
        Some(serve) => {
            let serve = Side::new("wasmtime serve", serve, Some("request"));
            figures.push(Figure::new(
                "http",
                "hello vs wasmtime serve",
                "requests",
                params,
                rusm_side,
                serve,
                Some(1.0),
            ));
        }
        None => {
            figures[0] = figures[0].clone().with_note(format!(
                "no wasmtime serve side: set {WASMTIME_VAR} or put `wasmtime` on PATH"
            ));
        }
    }
    Ok(figures)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One run: `requests` requests to `path` over `connections` keep-alive connections, every
/// response checked, every latency recorded. Runs inside a spawned task.
async fn load(
    addr: SocketAddr,
    path: &'static str,
    requests: u64,
    connections: u64,
) -> Result<Sample> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut clients = Vec::new();
        for i in 0..connections {
            let share = requests / connections + u64::from(i < requests % connections);
            clients.push(tokio::spawn(client(addr, path, share)));
        }
        let mut latencies = Vec::with_capacity(usize::try_from(requests)?);
        for c in clients {
            latencies.extend(c.await??);
        }
        let elapsed = start.elapsed();
        ensure!(latencies.len() as u64 == requests, "requests went missing");
        Ok(Sample {
            units: requests,
            elapsed,
            latencies,
        })
    })
    .await?
}

/// One keep-alive connection sending `count` requests in turn.
async fn client(addr: SocketAddr, path: &str, count: u64) -> Result<Vec<Duration>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let mut latencies = Vec::with_capacity(usize::try_from(count)?);
    for i in 0..count {
        let request = Request::get(path)
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())?;
        let t = Instant::now();
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        latencies.push(t.elapsed());
        ensure!(
            status == 200 && body.as_ref() == HELLO,
            "request {i} to {addr}: status {status}, body {body:?}"
        );
    }
    drop(sender);
    driver.abort();
    Ok(latencies)
}

/// The native baseline: a hyper HTTP/1.1 server answering every request like
/// `http-hello`.
struct NativeServer {
    addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl NativeServer {
    async fn start() -> Result<NativeServer> {
        let listener = TcpListener::bind(loopback(0)).await?;
        let addr = listener.local_addr()?;
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = service_fn(|_request: Request<hyper::body::Incoming>| async {
                        Response::builder()
                            .status(200)
                            .header("content-type", "text/plain")
                            .body(Full::new(Bytes::from_static(HELLO)))
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(NativeServer { addr, accept })
    }

    fn stop(&self) {
        self.accept.abort();
    }
}

/// The `wasmtime` binary for the third side, if there is one.
fn wasmtime_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(WASMTIME_VAR) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("wasmtime"))
        .find(|candidate| candidate.is_file())
}

/// How a `wasmtime serve` side serves its component.
#[derive(Clone, Copy)]
enum Serve {
    /// Its default for a `wasi:http` 0.2 component: an instance per request.
    Fresh,
    /// Each instance serves this many requests in turn (`--max-instance-reuse-count`).
    Reuse(u32),
    /// A `wasi:http` 0.3 service, each instance serving up to this many requests at
    /// once (`--max-instance-concurrent-reuse-count`).
    P3(u32),
}

/// `wasmtime serve` in a child process, killed on drop.
struct WasmtimeServe {
    addr: SocketAddr,
    child: Child,
}

impl WasmtimeServe {
    async fn start(binary: &Path, component: &Path, how: Serve) -> Result<WasmtimeServe> {
        // Ask the kernel for a free port, then hand it to wasmtime.
        let port = std::net::TcpListener::bind(loopback(0))?
            .local_addr()?
            .port();
        let addr = loopback(port);
        let mut command = Command::new(binary);
        command.arg("serve");
        match how {
            Serve::Fresh => {}
            Serve::Reuse(n) => {
                command.arg(format!("--max-instance-reuse-count={n}"));
            }
            Serve::P3(n) => {
                command
                    .arg("-Wcomponent-model-async")
                    .arg("-Sp3")
                    .arg(format!("--max-instance-concurrent-reuse-count={n}"));
            }
        }
        let child = command
            // The component imports wasi:cli (environment, stdio), as a Rust std
            // guest does; `serve` links it only when asked.
            .arg("-Scli")
            .arg("--addr")
            .arg(addr.to_string())
            .arg(component)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {} serve", binary.display()))?;
        let serve = WasmtimeServe { addr, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(addr).await.is_ok() {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "wasmtime serve did not listen on {addr} within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // One request to check it serves the component at all.
        let path = if matches!(how, Serve::P3(_)) {
            "/hello"
        } else {
            "/"
        };
        client(addr, path, 1)
            .await
            .map_err(|e| anyhow!("wasmtime serve does not answer like http-hello: {e:#}"))?;
        Ok(serve)
    }
}

impl Drop for WasmtimeServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{runtime, small};

    #[test]
    fn a_small_http_run_checks_every_response() {
        let rt = runtime();
        let params = Params {
            repeats: 1,
            ..small(200, 4)
        };
        let figures = rt.block_on(http(params)).unwrap();
        assert!(!figures.is_empty());
        assert!(figures[0].rusm.rate > 0.0 && figures[0].baseline.rate > 0.0);
    }

    #[test]
    fn a_small_reuse_run_compares_reused_with_fresh_instances() {
        let rt = runtime();
        let params = Params {
            repeats: 1,
            reuse: 50,
            ..small(200, 4)
        };
        let figures = rt.block_on(http(params)).unwrap();
        let reuse = figures
            .iter()
            .find(|f| f.name == "reuse vs fresh instance")
            .expect("a reuse figure");
        assert_eq!(reuse.params, "n=200 c=4 reuse=50");
        assert!(reuse.rusm.rate > 0.0 && reuse.baseline.rate > 0.0);
    }

    #[test]
    fn a_small_p3_run_compares_a_concurrent_service_with_fresh_instances() {
        let rt = runtime();
        let params = Params {
            repeats: 1,
            p3: 8,
            ..small(200, 4)
        };
        let figures = rt.block_on(http(params)).unwrap();
        let p3 = figures
            .iter()
            .find(|f| f.name == "p3 service vs fresh instance")
            .expect("a p3 figure");
        assert_eq!(p3.params, "n=200 c=4 concurrency=8");
        assert!(p3.rusm.rate > 0.0 && p3.baseline.rate > 0.0);
    }
}
