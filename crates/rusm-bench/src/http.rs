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
//! - **wasmtime serve** (only when a `wasmtime` binary is found: `$RUSM_BENCH_WASMTIME`,
//!   else `wasmtime` on `PATH`): `wasmtime serve` running the same `http-hello`
//!   component in its own process.
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

    let config = WasmConfig {
        cache_dir: Some(crate::wasm::cache_dir()),
        preemption: p.preemption,
        ..WasmConfig::default()
    };
    let node = WasmNode::new(Runtime::new(), config)?;
    node.load_file("http-hello", component)
        .context("loading http-hello")?;
    let http_config = HttpConfig {
        max_concurrent: usize::try_from(connections)?.max(1024),
        ..HttpConfig::default()
    };
    let rusm = HttpServer::bind(
        node,
        loopback(0),
        vec![Route::new("/", "http-hello")],
        http_config,
    )
    .await?;
    let native = NativeServer::start().await?;
    let wasmtime = match wasmtime_binary() {
        Some(binary) => Some(WasmtimeServe::start(&binary, component).await?),
        None => None,
    };

    let rusm_addr = rusm.local_addr();
    let native_addr = native.addr;
    let mut sides = vec![
        Contender::new("rusm", move || load(rusm_addr, requests, connections)),
        Contender::new("native hyper", move || {
            load(native_addr, requests, connections)
        }),
    ];
    if let Some(serve) = &wasmtime {
        let addr = serve.addr;
        sides.push(Contender::new("wasmtime serve", move || {
            load(addr, requests, connections)
        }));
    }
    let series = interleaved(p.repeats, p.rusm_only, sides).await?;
    let stats = rusm.stats();
    rusm.shutdown().await;
    native.stop();
    drop(wasmtime);

    let expected = requests * (p.repeats as u64 + 1);
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
    match series.get(2) {
        Some(serve) => figures.push(Figure::new(
            "http",
            "hello vs wasmtime serve",
            "requests",
            params,
            rusm_side,
            Side::new("wasmtime serve", serve, Some("request")),
            Some(1.0),
        )),
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

/// One run: `requests` requests over `connections` keep-alive connections, every
/// response checked, every latency recorded. Runs inside a spawned task.
async fn load(addr: SocketAddr, requests: u64, connections: u64) -> Result<Sample> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut clients = Vec::new();
        for i in 0..connections {
            let share = requests / connections + u64::from(i < requests % connections);
            clients.push(tokio::spawn(client(addr, share)));
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
async fn client(addr: SocketAddr, count: u64) -> Result<Vec<Duration>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let mut latencies = Vec::with_capacity(usize::try_from(count)?);
    for i in 0..count {
        let request = Request::get("/")
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

/// `wasmtime serve` in a child process, killed on drop.
struct WasmtimeServe {
    addr: SocketAddr,
    child: Child,
}

impl WasmtimeServe {
    async fn start(binary: &Path, component: &Path) -> Result<WasmtimeServe> {
        // Ask the kernel for a free port, then hand it to wasmtime.
        let port = std::net::TcpListener::bind(loopback(0))?
            .local_addr()?
            .port();
        let addr = loopback(port);
        let child = Command::new(binary)
            .arg("serve")
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
        client(addr, 1)
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
}
