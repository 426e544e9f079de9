//! HTTP-serving actors and outbound HTTP: real sockets on 127.0.0.1, a real HTTP
//! client (hyper's, or a raw `TcpStream` for the edge cases), the components of
//! `components/` served by `rusm_http::HttpServer`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rusm_http::{HttpConfig, HttpServer, Route};
use rusm_otp::{ExitReason, Message, Pid, Runtime};
use rusm_wasm::{ComponentKind, WasmNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::components;
use crate::{node, pid_bytes, policy, probe};
use rusm_e2e::Component;

const HTTP_COMPONENTS: [Component; 5] = [
    components::HTTP_HELLO,
    components::HTTP_ECHO,
    components::HTTP_COUNTER,
    components::HTTP_PROXY,
    components::HTTP_TRAP,
];

/// Every test ends within this, whatever happens.
const LIMIT: Duration = Duration::from_secs(30);

pub(crate) async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} within {LIMIT:?}"))
}

pub(crate) async fn serve(node: &WasmNode, routes: Vec<Route>, config: HttpConfig) -> HttpServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    HttpServer::bind(node.clone(), addr, routes, config)
        .await
        .expect("the server binds")
}

fn all_routes() -> Vec<Route> {
    vec![
        Route::new("/hello", "http-hello"),
        Route::new("/echo", "http-echo"),
        Route::new("/counter", "http-counter"),
        Route::new("/trap", "http-trap"),
    ]
}

/// A client connection (keep-alive: every request goes over this one socket).
pub(crate) async fn connect(addr: SocketAddr) -> SendRequest<BoxBody> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

pub(crate) type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

pub(crate) fn empty() -> BoxBody {
    Empty::new().boxed()
}

pub(crate) fn request(method: &str, path: &str, body: BoxBody) -> Request<BoxBody> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "rusm.test")
        .body(body)
        .unwrap()
}

/// Send a request and read the whole answer: status, headers, body.
pub(crate) async fn exchange(
    sender: &mut SendRequest<BoxBody>,
    req: Request<BoxBody>,
) -> (StatusCode, hyper::HeaderMap, Vec<u8>) {
    bounded("a response", async {
        sender.ready().await.expect("the connection is open");
        let response = sender.send_request(req).await.expect("a response");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("the whole body").to_bytes();
        (parts.status, parts.headers, body.to_vec())
    })
    .await
}

pub(crate) async fn get(sender: &mut SendRequest<BoxBody>, path: &str) -> (StatusCode, Vec<u8>) {
    let (status, _, body) = exchange(sender, request("GET", path, empty())).await;
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_headers_bodies_and_404() {
    let node = node(&HTTP_COMPONENTS);
    let server = serve(&node, all_routes(), HttpConfig::default()).await;
    let mut client = connect(server.local_addr()).await;

    let (status, headers, body) = exchange(&mut client, request("GET", "/hello", empty())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(body, b"hello from rusm\n");

    let (status, headers, body) = exchange(
        &mut client,
        request(
            "PUT",
            "/echo/a?b=c",
            Full::new(Bytes::from_static(b"some bytes")).boxed(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-echo-method"], "PUT");
    assert_eq!(headers["x-echo-path"], "/echo/a?b=c");
    assert_eq!(body, b"some bytes");

    let (status, _) = get(&mut client, "/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&mut client, "/hellox").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let stats = server.stats();
    assert_eq!(stats.status(200), 2);
    assert_eq!(stats.status(404), 2);
    assert_eq!(stats.latency_buckets.iter().sum::<u64>(), 4);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_serves_many_requests_on_one_connection() {
    let node = node(&[components::HTTP_HELLO]);
    let server = serve(
        &node,
        vec![Route::new("/", "http-hello")],
        HttpConfig::default(),
    )
    .await;
    let mut client = connect(server.local_addr()).await;
    for i in 0..5 {
        let (status, body) = get(&mut client, &format!("/n/{i}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, b"hello from rusm\n");
    }
    assert_eq!(server.stats().status(200), 5);
    server.shutdown().await;
}

/// A request body fed by the test chunk by chunk.
struct ChannelBody(mpsc::UnboundedReceiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

async fn next_chunk(body: &mut Incoming) -> Option<Bytes> {
    loop {
        let frame = bounded("a body frame", body.frame())
            .await?
            .expect("a frame");
        if let Ok(data) = frame.into_data() {
            return Some(data);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_streams_the_body_both_ways() {
    let node = node(&[components::HTTP_ECHO]);
    let server = serve(&node, all_routes_for(&["http-echo"]), HttpConfig::default()).await;
    let mut client = connect(server.local_addr()).await;
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(Bytes::from_static(b"first chunk")).unwrap();
    let req = request("POST", "/echo", ChannelBody(rx).boxed());
    let response: Response<Incoming> = bounded("the response head", async {
        client.ready().await.unwrap();
        client.send_request(req).await.expect("a response")
    })
    .await;
    // The head and the first chunk come back while the request body is still open:
    // nothing is buffered whole on either side.
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut echoed = Vec::new();
    while echoed.len() < b"first chunk".len() {
        echoed.extend_from_slice(&next_chunk(&mut body).await.expect("echoed bytes"));
    }
    assert_eq!(echoed, b"first chunk");
    tx.send(Bytes::from_static(b", second chunk")).unwrap();
    drop(tx);
    while let Some(chunk) = next_chunk(&mut body).await {
        echoed.extend_from_slice(&chunk);
    }
    assert_eq!(echoed, b"first chunk, second chunk");
    server.shutdown().await;
}

fn all_routes_for(names: &[&str]) -> Vec<Route> {
    all_routes()
        .into_iter()
        .filter(|r| names.contains(&r.component()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused() {
    let node = node(&[components::HTTP_ECHO]);
    let config = HttpConfig {
        max_body_bytes: 1024,
        ..HttpConfig::default()
    };
    let server = serve(&node, all_routes_for(&["http-echo"]), config).await;
    let mut client = connect(server.local_addr()).await;

    // Declared too large: 413 before any instance runs.
    let (status, _, _) = exchange(
        &mut client,
        request(
            "POST",
            "/echo",
            Full::new(Bytes::from(vec![b'x'; 2048])).boxed(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // Streamed past the limit (no length announced) after the echo has answered: its
    // read fails at the limit, so the client gets the 200 it sent and the 1024 bytes
    // within the limit, never a byte past it.
    let mut client = connect(server.local_addr()).await;
    let (tx, rx) = mpsc::unbounded_channel();
    for _ in 0..2 {
        tx.send(Bytes::from(vec![b'y'; 512])).unwrap();
    }
    let response = bounded("the response head", async {
        client.ready().await.unwrap();
        client
            .send_request(request("POST", "/echo", ChannelBody(rx).boxed()))
            .await
            .expect("a response")
    })
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut echoed = Vec::new();
    while echoed.len() < 1024 {
        echoed.extend_from_slice(&next_chunk(&mut body).await.expect("echoed bytes"));
    }
    tx.send(Bytes::from(vec![b'n'; 512])).unwrap();
    // The echo ends its response where its read failed (`components/http-echo`).
    while let Some(frame) = bounded("a frame", body.frame()).await {
        let frame = frame.expect("the echo ends its body cleanly");
        echoed.extend_from_slice(frame.data_ref().map_or(&[][..], |d| &d[..]));
    }
    assert_eq!(echoed, vec![b'y'; 1024]);
    // Within the limit all is well.
    let mut client = connect(server.local_addr()).await;
    let (status, _, body) = exchange(
        &mut client,
        request(
            "POST",
            "/echo",
            Full::new(Bytes::from(vec![b'z'; 1000])).boxed(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), 1000);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431() {
    let node = node(&[components::HTTP_HELLO]);
    let config = HttpConfig {
        max_header_bytes: 8192,
        ..HttpConfig::default()
    };
    let server = serve(&node, vec![Route::new("/", "http-hello")], config).await;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let big = "a".repeat(20_000);
    let head = format!("GET / HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n");
    // The server may answer before it has read everything, then close.
    let _ = stream.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = bounded("the answer", stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_handler_gets_500_and_the_server_keeps_serving() {
    let node = node(&[components::HTTP_TRAP, components::HTTP_HELLO]);
    let server = serve(
        &node,
        all_routes_for(&["http-trap", "http-hello"]),
        HttpConfig::default(),
    )
    .await;
    let mut client = connect(server.local_addr()).await;
    for _ in 0..2 {
        let (status, _) = get(&mut client, "/trap").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let (status, body) = get(&mut client, "/hello").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, b"hello from rusm\n");
    }
    assert_eq!(node.runtime().stats().exits.get("crashed"), 2);
    server.shutdown().await;
}

/// What the stand-in counter saw.
#[derive(Debug)]
enum Held {
    /// A call from a request process, held until the test answers it.
    Call { from: Pid, reply_tag: u64 },
    /// A request process it was holding ended.
    Down { pid: Pid, reason: ExitReason },
}

/// A native process registered as `counter` that speaks the counter's call protocol
/// but answers only when the test says so (`answer`); it monitors each caller and
/// reports how it ended.
fn held_counter(rt: &Runtime) -> mpsc::UnboundedReceiver<Held> {
    let (tx, rx) = mpsc::unbounded_channel();
    let pid = rt.spawn(move |ctx| async move {
        loop {
            let held = match ctx.recv().await {
                Message::Data(d) => {
                    let bytes: Vec<u8> = d.payload.downcast().expect("bytes");
                    let from = Pid::from_raw(u64::from_le_bytes(bytes[..8].try_into().unwrap()));
                    let reply_tag = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
                    ctx.monitor(from);
                    Held::Call { from, reply_tag }
                }
                Message::Down(down) => Held::Down {
                    pid: down.pid,
                    reason: down.reason,
                },
                _ => continue,
            };
            if tx.send(held).is_err() {
                return;
            }
        }
    });
    rt.register("counter", pid).expect("register counter");
    rx
}

async fn next_held(rx: &mut mpsc::UnboundedReceiver<Held>) -> Held {
    bounded("the counter to hear", rx.recv())
        .await
        .expect("the counter runs")
}

/// The next call the counter holds (ends of earlier callers are skipped).
async fn next_call(rx: &mut mpsc::UnboundedReceiver<Held>) -> (Pid, u64) {
    loop {
        if let Held::Call { from, reply_tag } = next_held(rx).await {
            return (from, reply_tag);
        }
    }
}

fn answer(rt: &Runtime, (to, tag): (Pid, u64), value: i64) {
    rt.send_tagged(to, tag, value.to_le_bytes().to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_counter_is_backed_by_a_long_lived_counter_actor() {
    let node = node(&[components::HTTP_COUNTER, components::COUNTER]);
    let options = rusm_wasm::WasmSpawnOptions {
        init: b"counter".to_vec(),
        policy: Some(policy("[process]\nregister = [\"counter\"]\n")),
        ..Default::default()
    };
    let counter = node.spawn_with(None, "counter", options).unwrap().pid;
    // The counter registers itself first thing; wait (bounded) until it has.
    bounded("the counter to register", async {
        while node.runtime().whereis("counter") != Some(counter) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // The handler runs under its shipped policy, which grants nothing beyond output.
    let shipped =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../capabilities/http-counter.toml");
    let shipped = rusm_policy::Policy::from_file(&shipped).unwrap_or_else(|e| panic!("{e}"));
    let route = Route::new("/counter", "http-counter").policy(Arc::new(shipped));
    let server = serve(&node, vec![route], HttpConfig::default()).await;
    let mut client = connect(server.local_addr()).await;
    for expected in 1..=3 {
        let (status, _, body) = exchange(&mut client, request("POST", "/counter", empty())).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, format!("{expected}\n").as_bytes());
    }
    let (status, body) = get(&mut client, "/counter").await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"3\n"[..]));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_answers_504_and_kills_the_instance() {
    let node = node(&[components::HTTP_COUNTER]);
    let mut held = held_counter(node.runtime());
    let config = HttpConfig {
        request_deadline: Duration::from_millis(300),
        ..HttpConfig::default()
    };
    let server = serve(&node, all_routes_for(&["http-counter"]), config).await;
    let mut client = connect(server.local_addr()).await;
    let (status, _) = get(&mut client, "/counter").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    let (caller, _) = next_call(&mut held).await;
    match next_held(&mut held).await {
        Held::Down { pid, reason } => {
            assert_eq!(pid, caller);
            assert_eq!(reason, ExitReason::DeadlineExceeded);
        }
        other => panic!("expected the caller to end, got {other:?}"),
    }
    // The server is still fine.
    let (status, _) = get(&mut client, "/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_instance_bound_wait_then_get_503() {
    let node = node(&[components::HTTP_COUNTER]);
    let rt = node.runtime().clone();
    let mut held = held_counter(&rt);
    let config = HttpConfig {
        max_concurrent: 1,
        queue_timeout: Duration::from_secs(20),
        ..HttpConfig::default()
    };
    let server = serve(&node, all_routes_for(&["http-counter"]), config).await;
    let addr = server.local_addr();

    // A takes the only slot and is held by the counter.
    let first = spawn_get(addr, "/counter");
    let a = next_call(&mut held).await;
    // B arrives and waits for the slot (backpressure), rather than failing.
    let second = spawn_get(addr, "/counter");
    bounded("B to queue", async {
        while server.stats().in_flight < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    answer(&rt, a, 41);
    assert_eq!(
        bounded("A", first).await.unwrap(),
        (StatusCode::OK, b"41\n".to_vec())
    );
    let b = next_call(&mut held).await;
    answer(&rt, b, 42);
    assert_eq!(
        bounded("B", second).await.unwrap(),
        (StatusCode::OK, b"42\n".to_vec())
    );
    server.shutdown().await;

    // With a short queue, a request that finds the slot taken gets 503.
    let mut held = held;
    let config = HttpConfig {
        max_concurrent: 1,
        queue_timeout: Duration::from_millis(100),
        ..HttpConfig::default()
    };
    let server = serve(&node, all_routes_for(&["http-counter"]), config).await;
    let addr = server.local_addr();
    let first = spawn_get(addr, "/counter");
    let a = next_call(&mut held).await;
    let mut client = connect(addr).await;
    let (status, headers, _) = exchange(&mut client, request("GET", "/counter", empty())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    answer(&rt, a, 7);
    assert_eq!(
        bounded("A", first).await.unwrap(),
        (StatusCode::OK, b"7\n".to_vec())
    );
    assert_eq!(server.stats().status(503), 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_in_flight_requests() {
    let node = node(&[components::HTTP_COUNTER]);
    let rt = node.runtime().clone();
    let mut held = held_counter(&rt);
    let server = serve(
        &node,
        all_routes_for(&["http-counter"]),
        HttpConfig::default(),
    )
    .await;
    let addr = server.local_addr();
    let in_flight = spawn_get(addr, "/counter");
    let a = next_call(&mut held).await;
    let shutdown = tokio::spawn(server.shutdown());
    // New connections are refused once the listener is closed.
    bounded("the listener to close", async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // The request in flight still completes.
    answer(&rt, a, 5);
    assert_eq!(
        bounded("the in-flight request", in_flight).await.unwrap(),
        (StatusCode::OK, b"5\n".to_vec())
    );
    bounded("shutdown", shutdown).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_past_the_grace_kills_what_is_left() {
    let node = node(&[components::HTTP_COUNTER]);
    let mut held = held_counter(node.runtime());
    let config = HttpConfig {
        shutdown_grace: Duration::from_millis(100),
        ..HttpConfig::default()
    };
    let server = serve(&node, all_routes_for(&["http-counter"]), config).await;
    let addr = server.local_addr();
    let in_flight = tokio::spawn(async move {
        let mut client = connect(addr).await;
        client.ready().await.unwrap();
        client
            .send_request(request("GET", "/counter", empty()))
            .await
            .map(|r| r.status())
    });
    let (caller, _) = next_call(&mut held).await;
    bounded("shutdown", server.shutdown()).await;
    match next_held(&mut held).await {
        Held::Down { pid, reason } => {
            assert_eq!(pid, caller);
            assert_eq!(reason, ExitReason::Killed);
        }
        other => panic!("expected the caller to be killed, got {other:?}"),
    }
    // The client sees its connection closed without an answer.
    assert!(bounded("the client", in_flight).await.unwrap().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_exporting_the_handler_is_routed_as_loaded() {
    // Loaded by what it exports, http-cli is a command; it serves requests all the same.
    let node = node(&[components::HTTP_CLI]);
    assert_eq!(
        node.component_kind("http-cli"),
        Some(ComponentKind::Command)
    );
    assert!(node.serves_http("http-cli"));
    assert!(!node.serves_http("nope"));
    let server = serve(
        &node,
        vec![Route::new("/", "http-cli")],
        HttpConfig::default(),
    )
    .await;
    let mut client = connect(server.local_addr()).await;
    let (status, body) = get(&mut client, "/anything").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"http-cli: served over http\n");
    server.shutdown().await;

    // And it still runs its main as a command.
    let (_, exit) = node
        .spawn_watched("http-cli", rusm_wasm::WasmSpawnOptions::default())
        .unwrap();
    assert_eq!(bounded("the command's end", exit).await, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_routes_are_refused_at_bind() {
    let node = node(&[components::HTTP_HELLO, components::COUNTER]);
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    for (route, expect) in [
        (Route::new("/", "counter"), "not an HTTP handler"),
        (Route::new("/", "nope"), "no component of that name"),
        (Route::new("hello", "http-hello"), "must start with '/'"),
    ] {
        let err = HttpServer::bind(node.clone(), addr, vec![route], HttpConfig::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains(expect), "{err}");
    }
    // An HTTP handler is not an actor.
    let err = node.spawn("http-hello", Vec::new()).unwrap_err();
    assert!(err.to_string().contains("HTTP handler"), "{err}");
}

/// A native upstream on loopback answering every request with `upstream says hi`,
/// counting the requests it got.
async fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let body = format!("upstream says hi to {}", req.uri().path());
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "text/x-upstream")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, hits)
}

/// A policy for `http-proxy` with `UPSTREAM` set and the given `[http]` grants.
fn proxy_policy(upstream: &str, outbound: &[String]) -> Arc<rusm_policy::Policy> {
    let http = if outbound.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = outbound.iter().map(|o| format!("{o:?}")).collect();
        format!("[http]\noutbound = [{}]\n", list.join(", "))
    };
    policy(&format!(
        "[env]\nvars = {{ UPSTREAM = {upstream:?} }}\n{http}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_proxy_reaches_only_the_upstream_its_policy_grants() {
    let (up, hits) = upstream().await;
    let base = format!("http://{up}");
    let port = up.port();
    let node = node(&[components::HTTP_PROXY]);
    let cases = [
        // (granted origins, expect success)
        (vec![format!("http://127.0.0.1:{port}")], true),
        (vec![], false),                                         // no [http] section
        (vec![format!("http://127.0.0.2:{port}")], false),       // another host
        (vec![format!("http://127.0.0.1:{}", port ^ 1)], false), // another port
        (vec![format!("https://127.0.0.1:{port}")], false),      // another scheme
    ];
    for (grants, allowed) in cases {
        let route = Route::new("/", "http-proxy").policy(proxy_policy(&base, &grants));
        let server = serve(&node, vec![route], HttpConfig::default()).await;
        let mut client = connect(server.local_addr()).await;
        let before = hits.load(Ordering::SeqCst);
        let (status, headers, body) = exchange(&mut client, request("GET", "/x/y", empty())).await;
        let body = String::from_utf8_lossy(&body);
        if allowed {
            assert_eq!(status, StatusCode::OK, "{grants:?}: {body}");
            assert_eq!(headers["content-type"], "text/x-upstream");
            assert_eq!(body, "upstream says hi to /x/y");
            assert_eq!(hits.load(Ordering::SeqCst), before + 1);
        } else {
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{grants:?}: {body}");
            assert!(body.contains("HttpRequestDenied"), "{grants:?}: {body}");
            assert_eq!(
                hits.load(Ordering::SeqCst),
                before,
                "a denied request went out"
            );
        }
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_actor_gets_outbound_http_only_as_granted() {
    let (up, hits) = upstream().await;
    let port = up.port();
    let node = node(&[components::HTTP_PROBE]);
    let (reporter, mut inbox) = probe(node.runtime());
    let url = format!("http://127.0.0.1:{port}/probe");
    let cases = [
        (
            format!("[http]\noutbound = [\"http://127.0.0.1:{port}\"]\n"),
            true,
        ),
        (String::new(), false),
        (
            format!("[http]\noutbound = [\"http://localhost:{port}\"]\n"),
            false,
        ),
        (
            format!("[http]\noutbound = [\"http://127.0.0.1:{}\"]\n", port ^ 1),
            false,
        ),
        (
            format!("[http]\noutbound = [\"https://127.0.0.1:{port}\"]\n"),
            false,
        ),
    ];
    for (toml, allowed) in cases {
        let before = hits.load(Ordering::SeqCst);
        let options = rusm_wasm::WasmSpawnOptions {
            init: [pid_bytes(reporter), url.clone().into_bytes()].concat(),
            policy: Some(policy(&toml)),
            ..Default::default()
        };
        node.spawn_with(None, "http-probe", options).unwrap();
        let (tag, payload) = inbox.data().await;
        if allowed {
            assert_eq!(tag, 1, "{toml}: {}", String::from_utf8_lossy(&payload));
            assert_eq!(u16::from_le_bytes([payload[0], payload[1]]), 200);
            assert_eq!(&payload[2..], b"upstream says hi to /probe");
            assert_eq!(hits.load(Ordering::SeqCst), before + 1);
        } else {
            assert_eq!(tag, 2, "{toml}");
            let text = String::from_utf8_lossy(&payload);
            assert!(text.contains("HttpRequestDenied"), "{toml}: {text}");
            assert_eq!(hits.load(Ordering::SeqCst), before);
        }
    }
}

/// The HTTP handler shown in the README is `components/http-hello`, word for word
/// (its serving is tested above).
#[test]
fn the_readme_http_handler_is_the_http_hello_component() {
    crate::assert_readme_shows("http-hello");
}

/// A GET of `path` on a new connection, in its own task.
pub(crate) fn spawn_get(
    addr: std::net::SocketAddr,
    path: &'static str,
) -> tokio::task::JoinHandle<(StatusCode, Vec<u8>)> {
    tokio::spawn(async move {
        let mut client = connect(addr).await;
        get(&mut client, path).await
    })
}

/// A raw connection that has sent `head_and_part` (a request head and the start of
/// its body) and then holds the socket without sending more.
async fn stalled_client(addr: SocketAddr, head_and_part: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(head_and_part.as_bytes())
        .await
        .expect("write the partial request");
    stream
}

/// Everything the server sends on `stream` until it closes it, as text.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = bounded("the server to close", stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

pub(crate) async fn until(
    what: &str,
    server: &HttpServer,
    done: impl Fn(&rusm_http::HttpStats) -> bool,
) {
    bounded(what, async {
        while !done(&server.stats()) {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

const SLOW_BODY: &str = "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_hold_no_instance_and_get_408() {
    let node = node(&[components::HTTP_ECHO, components::HTTP_HELLO]);
    let config = HttpConfig {
        max_concurrent: 2,
        max_connections: 4,
        queue_timeout: Duration::from_millis(100),
        body_read_timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    };
    let server = serve(&node, all_routes_for(&["http-echo", "http-hello"]), config).await;
    let addr = server.local_addr();
    // As many slow uploads as there are instance slots, both arrived.
    let mut slow = Vec::new();
    for _ in 0..2 {
        slow.push(stalled_client(addr, SLOW_BODY).await);
    }
    until("both slow requests to arrive", &server, |s| {
        s.in_flight == 2
    })
    .await;
    // A normal client is served at once: the slow ones hold no instance slot.
    let mut client = connect(addr).await;
    let (status, body) = get(&mut client, "/hello").await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"hello from rusm\n"[..])
    );
    // The slow ones get 408 once their body time is up, and are closed.
    for stream in &mut slow {
        let answer = read_until_closed(stream).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    let stats = server.stats();
    assert_eq!(stats.status(503), 0);
    assert_eq!(stats.status(408), 2);
    assert_eq!(stats.body_read_timeouts, 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_streamed_body_is_cut_at_the_body_timeout() {
    let node = node(&[components::HTTP_ECHO]);
    let config = HttpConfig {
        body_read_timeout: Duration::from_millis(300),
        request_deadline: Duration::from_secs(120),
        ..HttpConfig::default()
    };
    let server = serve(&node, all_routes_for(&["http-echo"]), config).await;
    // No length: the body streams into the instance, which answers at once.
    let mut stream = stalled_client(
        server.local_addr(),
        "POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
    )
    .await;
    // Within the body timeout, not the two-minute deadline, the connection ends.
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("abc"), "{answer}");
    until("the timeout to be counted", &server, |s| {
        s.body_read_timeouts == 1
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_counts_from_the_request_s_arrival() {
    let node = node(&[components::HTTP_ECHO]);
    let config = HttpConfig {
        request_deadline: Duration::from_millis(300),
        body_read_timeout: Duration::from_secs(20),
        ..HttpConfig::default()
    };
    let server = serve(&node, all_routes_for(&["http-echo"]), config).await;
    // The head arrives; the body never finishes. The deadline runs from the head, so
    // the client gets 504 without the request ever reaching an instance.
    let mut stream = stalled_client(server.local_addr(), SLOW_BODY).await;
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert_eq!(node.runtime().stats().spawned, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_in_the_backlog() {
    let node = node(&[components::HTTP_HELLO]);
    let config = HttpConfig {
        max_connections: 4,
        ..HttpConfig::default()
    };
    let server = serve(&node, vec![Route::new("/", "http-hello")], config).await;
    let addr = server.local_addr();
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
    }
    until("the cap to be reached", &server, |s| {
        s.connections_open == 4 && s.connection_cap_reached >= 1
    })
    .await;
    // A fifth client connects (the kernel completes the handshake) and asks; it is
    // not accepted while four are open.
    let fifth = spawn_get(addr, "/");
    assert_eq!(server.stats().connections_accepted, 4);
    // One idle connection goes away: the fifth is accepted and served.
    drop(idle.pop());
    let (status, _) = bounded("the fifth client", fifth).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let stats = server.stats();
    assert_eq!(stats.connections_accepted, 5);
    assert!(stats.connections_open <= 4, "{stats:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_does_not_starve_a_normal_client() {
    let node = node(&[components::HTTP_HELLO, components::HTTP_ECHO]);
    let config = HttpConfig {
        max_concurrent: 2,
        max_connections: 4,
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    };
    let server = serve(&node, all_routes_for(&["http-hello", "http-echo"]), config).await;
    let addr = server.local_addr();
    // Twice the cap in connections that never finish a head, and two slow uploads.
    let mut flood = Vec::new();
    for _ in 0..8 {
        flood.push(stalled_client(addr, "GET /hello HTTP/1.1\r\nhost").await);
    }
    for _ in 0..2 {
        flood.push(stalled_client(addr, SLOW_BODY).await);
    }
    let mut client = connect(addr).await;
    let (status, body) = get(&mut client, "/hello").await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"hello from rusm\n"[..])
    );
    let stats = server.stats();
    assert!(stats.connections_open <= 4, "{stats:?}");
    assert!(stats.connection_cap_reached >= 1, "{stats:?}");
    assert!(stats.header_read_timeouts >= 1, "{stats:?}");
    assert_eq!(stats.status(503), 0);
    server.shutdown().await;
}
