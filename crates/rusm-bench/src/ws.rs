//! The WebSocket scenarios, over loopback against the `ws-echo` route.
//!
//! - `ws-echo`: `m` connections (256 by default) opened before the clock starts, then
//!   `n` round trips shared among them, each connection sending a text and waiting
//!   for its echo before the next; every echo checked, every round trip timed. Sides,
//!   interleaved round by round in this process: **rusm** (`rusm_http::HttpServer`,
//!   a `ws-echo` process per connection behind a native connection process) and
//!   **native tokio-tungstenite** (an echo server in plain Rust on the same runtime,
//!   the limit here).
//! - `connections-idle`: `n` connections (10,000 by default) held open by a client in
//!   a child process (this same binary, `--ws-clients`), so that only the server's
//!   memory is counted and each process needs one descriptor per connection. This
//!   process's resident memory (`/proc/self/statm`) is read before the first
//!   connection and again once every one is open and has answered twice; the growth
//!   over `n` is the cost of one idle connection. The same run measures the native
//!   tokio-tungstenite echo server the same way.

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use futures_util::{SinkExt, StreamExt};
use rusm_http::{HttpConfig, HttpServer, Route};
use rusm_otp::Runtime;
use rusm_wasm::{WasmConfig, WasmNode};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{Contender, interleaved};
use crate::native::Params;
use crate::report::{Figure, Measure, Sample, Side};

type Client = WebSocketStream<TcpStream>;

/// Handshakes in flight at once while connections open.
const OPENING: usize = 64;

/// `ws-echo`: `n` round trips per run over `m` connections.
pub async fn ws_echo(p: Params) -> Result<Vec<Figure>> {
    let trips = p.n;
    let connections = p.m.max(1);
    ensure!(
        trips >= connections,
        "ws-echo: n ({trips}) must be at least the number of connections ({connections})"
    );
    let conns = usize::try_from(connections)?;
    let rusm = RusmEcho::start(&p, conns).await?;
    let native = NativeEcho::start().await?;
    let (rusm_addr, native_addr) = (rusm.server.local_addr(), native.addr);
    let sides = vec![
        Contender::new("rusm", move || echo_run(rusm_addr, trips, connections)),
        Contender::new("native tokio-tungstenite", move || {
            echo_run(native_addr, trips, connections)
        }),
    ];
    let series = interleaved(p.repeats, p.rusm_only, sides).await?;
    rusm.server.shutdown().await;
    native.stop();
    Ok(vec![Figure::new(
        "ws-echo",
        "echo round trips",
        "round trips",
        format!("n={trips} c={connections}"),
        Side::new("rusm", &series[0], Some("round trip")),
        Side::new("native tokio-tungstenite", &series[1], Some("round trip")),
        Some(0.5),
    )])
}

/// `connections-idle`: resident bytes per open, answering connection at `n`.
pub async fn connections_idle(p: Params) -> Result<Vec<Measure>> {
    let n = usize::try_from(p.n)?;
    ensure!(n > 0, "connections-idle: n must be at least 1");
    let rusm = RusmEcho::start(&p, n).await?;
    let server = &rusm.server;
    let rusm_bytes = idle_cost(server.local_addr(), n, || {
        let open = server.stats().websockets_open;
        ensure!(
            open == n as u64,
            "the rusm server has {open} WebSockets open, expected {n}"
        );
        Ok(())
    })
    .await?;
    rusm.server.shutdown().await;
    let native = NativeEcho::start().await?;
    let native_bytes = idle_cost(native.addr, n, || Ok(())).await?;
    native.stop();
    let params = format!("n={n}");
    Ok(vec![
        Measure {
            scenario: "connections-idle".into(),
            name: "resident per idle WebSocket".into(),
            params: params.clone(),
            value: rusm_bytes,
            unit: "bytes".into(),
            note: Some(format!(
                "rusm: a connection process and a ws-echo guest each, all {n} counted open by the server"
            )),
        },
        Measure {
            scenario: "connections-idle".into(),
            name: "native per idle WebSocket".into(),
            params,
            value: native_bytes,
            unit: "bytes".into(),
            note: Some(format!(
                "tokio-tungstenite echo in plain Rust, same run; rusm / native = {:.1}",
                rusm_bytes / native_bytes.max(1.0)
            )),
        },
    ])
}

/// The rusm side: a node with `ws-echo` behind a WebSocket route.
struct RusmEcho {
    server: HttpServer,
}

impl RusmEcho {
    async fn start(p: &Params, connections: usize) -> Result<RusmEcho> {
        let config = WasmConfig {
            cache_dir: Some(crate::wasm::cache_dir()),
            preemption: p.preemption,
            ..WasmConfig::default()
        };
        let node = WasmNode::new(Runtime::new(), config)?;
        node.load_file("ws-echo", crate::wasm::component_path("ws-echo")?)
            .context("loading ws-echo")?;
        let http = HttpConfig {
            max_streams: connections + 64,
            max_connections: connections + 64,
            ..HttpConfig::default()
        };
        let server = HttpServer::bind(
            node,
            loopback(0),
            vec![Route::websocket("/ws", "ws-echo")],
            http,
        )
        .await?;
        Ok(RusmEcho { server })
    }
}

/// The native baseline: a tokio-tungstenite server echoing every text and binary
/// message, on the same runtime.
struct NativeEcho {
    addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl NativeEcho {
    async fn start() -> Result<NativeEcho> {
        let listener = TcpListener::bind(loopback(0)).await?;
        let addr = listener.local_addr()?;
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    while let Some(Ok(message)) = ws.next().await {
                        if (message.is_text() || message.is_binary())
                            && ws.send(message).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Ok(NativeEcho { addr, accept })
    }

    fn stop(&self) {
        self.accept.abort();
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Open a connection to `/ws` on `addr`.
async fn open(addr: SocketAddr) -> Result<Client> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (client, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
        .await
        .with_context(|| format!("upgrading a connection to {addr}"))?;
    Ok(client)
}

/// Open `count` connections, at most [`OPENING`] handshakes at once, each checked
/// with one round trip.
async fn open_many(addr: SocketAddr, count: usize) -> Result<Vec<Client>> {
    let mut opening = JoinSet::new();
    let mut clients = Vec::with_capacity(count);
    for i in 0..count {
        if opening.len() == OPENING
            && let Some(done) = opening.join_next().await
        {
            clients.push(done??);
        }
        opening.spawn(async move {
            let mut client = open(addr).await?;
            round_trip(&mut client, i).await?;
            anyhow::Ok(client)
        });
    }
    while let Some(done) = opening.join_next().await {
        clients.push(done??);
    }
    Ok(clients)
}

/// Send a text naming `i` and wait for its echo; the time it took.
async fn round_trip(client: &mut Client, i: usize) -> Result<Duration> {
    let sent = format!("echo {i}");
    let t = Instant::now();
    client.send(Message::text(sent.clone())).await?;
    loop {
        match client.next().await {
            Some(Ok(Message::Text(text))) => {
                ensure!(text.as_str() == sent, "expected {sent:?}, got {text:?}");
                return Ok(t.elapsed());
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => bail!("expected the echo of {sent:?}, got {other:?}"),
        }
    }
}

/// One `ws-echo` run: open `connections` (untimed), then time `trips` round trips
/// shared among them. Runs inside a spawned task.
async fn echo_run(addr: SocketAddr, trips: u64, connections: u64) -> Result<Sample> {
    tokio::spawn(async move {
        let clients = open_many(addr, usize::try_from(connections)?).await?;
        let start = Instant::now();
        let mut running = JoinSet::new();
        for (i, mut client) in clients.into_iter().enumerate() {
            let i = i as u64;
            let share = trips / connections + u64::from(i < trips % connections);
            running.spawn(async move {
                let mut latencies = Vec::with_capacity(usize::try_from(share)?);
                for k in 0..share {
                    latencies.push(round_trip(&mut client, usize::try_from(k)?).await?);
                }
                anyhow::Ok((latencies, client))
            });
        }
        let mut latencies = Vec::with_capacity(usize::try_from(trips)?);
        let mut clients = Vec::new();
        while let Some(done) = running.join_next().await {
            let (l, client) = done??;
            latencies.extend(l);
            clients.push(client);
        }
        let elapsed = start.elapsed();
        ensure!(latencies.len() as u64 == trips, "round trips went missing");
        for mut client in clients {
            let _ = client.close(None).await;
        }
        Ok(Sample {
            units: trips,
            elapsed,
            latencies,
        })
    })
    .await?
}

/// This process's resident memory in bytes: `/proc/self/statm`'s second field (pages)
/// times the page size.
fn resident() -> Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| anyhow!("no resident field in /proc/self/statm: {statm:?}"))?;
    Ok(pages * rustix::param::page_size() as u64)
}

/// The client process holding `n` connections to `addr`: its stdin and stdout.
struct Clients {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
}

impl Clients {
    fn start(addr: SocketAddr, n: usize) -> Result<Clients> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["connections-idle", &n.to_string(), "--ws-clients"])
            .arg(addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the client process")?;
        let to = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        let from = BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?);
        Ok(Clients { child, to, from })
    }

    /// Wait (on a blocking thread) for the client's next line, which must be
    /// `expected`.
    async fn expect(mut self, expected: String) -> Result<Clients> {
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            self.from.read_line(&mut line)?;
            ensure!(
                line.trim_end() == expected,
                "the client process said {line:?}, expected {expected:?}"
            );
            Ok(self)
        })
        .await?
    }

    fn say(&mut self, what: &str) -> Result<()> {
        writeln!(self.to, "{what}")?;
        self.to.flush()?;
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.say("close")?;
        drop(self.to);
        let status = self.child.wait()?;
        ensure!(status.success(), "the client process ended with {status}");
        Ok(())
    }
}

/// Resident bytes per connection of the server at `addr`, with `n` connections
/// open and answering (and `check` passing then).
async fn idle_cost(addr: SocketAddr, n: usize, check: impl Fn() -> Result<()>) -> Result<f64> {
    // Warm-up: code and the allocators' first chunks are in before measuring.
    for i in 0..8 {
        let mut client = open(addr).await?;
        round_trip(&mut client, i).await?;
        let _ = client.close(None).await;
    }
    let before = resident()?;
    let clients = Clients::start(addr, n)?;
    let mut clients = tokio::time::timeout(
        Duration::from_secs(600),
        clients.expect(format!("open {n}")),
    )
    .await
    .context("opening the connections took over 600 s")??;
    clients.say("check")?;
    let clients = tokio::time::timeout(
        Duration::from_secs(600),
        clients.expect(format!("answered {n}")),
    )
    .await
    .context("the second round trips took over 600 s")??;
    let after = resident()?;
    check()?;
    clients.finish()?;
    Ok(after.saturating_sub(before) as f64 / n as f64)
}

/// The client process of `connections-idle`: open `n` connections to `addr`, say
/// `open N`; on `check`, one more round trip on every one, say `answered N`; on
/// `close` (or end of input), close them all and return.
pub async fn ws_clients(addr: &str, n: u64) -> Result<()> {
    let addr: SocketAddr = addr.parse().context("--ws-clients takes IP:PORT")?;
    let n = usize::try_from(n)?;
    let mut clients = open_many(addr, n).await?;
    println!("open {}", clients.len());
    let (tx, mut commands) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(command) = commands.recv().await {
        match command.as_str() {
            "check" => {
                let mut answering = JoinSet::new();
                for (i, mut client) in clients.drain(..).enumerate() {
                    answering.spawn(async move {
                        round_trip(&mut client, i).await?;
                        anyhow::Ok(client)
                    });
                }
                while let Some(done) = answering.join_next().await {
                    clients.push(done??);
                }
                println!("answered {}", clients.len());
            }
            "close" => break,
            other => bail!("unknown command {other:?}"),
        }
    }
    for mut client in clients {
        let _ = client.close(None).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{runtime, small};

    #[test]
    fn a_small_ws_echo_run_checks_every_echo() {
        let rt = runtime();
        let params = Params {
            repeats: 1,
            ..small(160, 8)
        };
        let figures = rt.block_on(ws_echo(params)).unwrap();
        assert_eq!(figures.len(), 1);
        assert!(figures[0].rusm.rate > 0.0 && figures[0].baseline.rate > 0.0);
    }
}
