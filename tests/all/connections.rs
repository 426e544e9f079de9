//! WebSocket and server-sent events routes: real sockets on 127.0.0.1, a real
//! WebSocket client (tokio-tungstenite) and HTTP client (hyper), the connection
//! components of `components/` (`ws-echo`, `ws-chat` with `chat-room`, `sse-clock`)
//! served by `rusm_http::HttpServer`. Each limit has a test written as the attack it
//! stops.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rusm_http::{ConnectionConfig, HttpConfig, HttpServer, Route};
use rusm_otp::{ExitReason, Pid, Watch};
use rusm_wasm::WasmNode;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};

use crate::{Probe, components, node, policy, probe};

/// Every wait in these tests ends within this, whatever happens.
const LIMIT: Duration = Duration::from_secs(30);

type Client = WebSocketStream<TcpStream>;

async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} within {LIMIT:?}"))
}

async fn serve(node: &WasmNode, routes: Vec<Route>) -> HttpServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    HttpServer::bind(node.clone(), addr, routes, HttpConfig::default())
        .await
        .expect("the server binds")
}

/// A server with `ws-echo` at `/ws` under `config`.
async fn echo_server(config: ConnectionConfig) -> (WasmNode, HttpServer) {
    let node = node(&[components::WS_ECHO]);
    let server = serve(
        &node,
        vec![Route::websocket("/ws", "ws-echo").connection(config)],
    )
    .await;
    (node, server)
}

async fn connect(addr: SocketAddr, path: &str) -> Client {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let url = format!("ws://{addr}{path}");
    let (client, response) = bounded(
        "the handshake",
        tokio_tungstenite::client_async(url, stream),
    )
    .await
    .expect("the upgrade succeeds");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    client
}

/// The next text or binary message (pings and pongs skipped).
async fn next(client: &mut Client) -> WsMessage {
    bounded("a message", async {
        loop {
            match client.next().await {
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                Some(Ok(message)) => return message,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    })
    .await
}

async fn text(client: &mut Client) -> String {
    match next(client).await {
        WsMessage::Text(text) => text.as_str().to_owned(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Read until the server's close: its code and reason.
async fn closed(client: &mut Client) -> (u16, String) {
    bounded("the close", async {
        loop {
            match client.next().await {
                Some(Ok(WsMessage::Close(Some(frame)))) => {
                    return (u16::from(frame.code), frame.reason.as_str().to_owned());
                }
                Some(Ok(WsMessage::Close(None))) => return (1005, String::new()),
                Some(Ok(_)) => {}
                other => panic!("expected a close, got {other:?}"),
            }
        }
    })
    .await
}

/// A watch on `pid`'s end (registered at once).
fn watch(node: &WasmNode, pid: Pid) -> Watch {
    node.runtime().watch(pid)
}

async fn ended(watch: &mut Watch) -> ExitReason {
    bounded("the guest's end", watch).await
}

/// The guest's pid, asked with `whoami`.
async fn whoami(client: &mut Client) -> Pid {
    client.send(WsMessage::text("whoami")).await.unwrap();
    Pid::from_raw(text(client).await.parse().expect("a pid"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echoes_text_and_binary_and_sees_the_request() {
    let (_node, server) = echo_server(ConnectionConfig::default()).await;
    let mut client = connect(server.local_addr(), "/ws/room?x=1").await;
    client.send(WsMessage::text("hello")).await.unwrap();
    assert_eq!(text(&mut client).await, "hello");
    client
        .send(WsMessage::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    match next(&mut client).await {
        WsMessage::Binary(bytes) => assert_eq!(&bytes[..], &[0, 1, 2, 255]),
        other => panic!("expected binary, got {other:?}"),
    }
    client.send(WsMessage::text("path")).await.unwrap();
    assert_eq!(text(&mut client).await, "/ws/room?x=1");
    let stats = server.stats();
    assert_eq!(stats.websockets_open, 1);
    assert_eq!(stats.frames_in, 3);
    assert_eq!(stats.frames_out, 3);
    assert_eq!(stats.bytes_in, 5 + 4 + 4);
    drop(client);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_exit_closes_the_socket_with_its_code() {
    let (node, server) = echo_server(ConnectionConfig::default()).await;
    let mut client = connect(server.local_addr(), "/ws").await;
    let mut guest = watch(&node, whoami(&mut client).await);
    client.send(WsMessage::text("bye")).await.unwrap();
    assert_eq!(closed(&mut client).await, (4000, "bye".to_owned()));
    assert_eq!(ended(&mut guest).await, ExitReason::Normal);
    assert_eq!(server.stats().closes_by_code.get(&4000), Some(&1));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_ends_the_guest() {
    let (node, server) = echo_server(ConnectionConfig::default()).await;
    let mut client = connect(server.local_addr(), "/ws").await;
    let mut guest = watch(&node, whoami(&mut client).await);
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    };
    client.close(Some(frame)).await.unwrap();
    // The server answers the close, then the socket ends.
    assert_eq!(closed(&mut client).await.0, 1000);
    assert_eq!(ended(&mut guest).await, ExitReason::Normal);
    bounded("the connection to be counted closed", async {
        while server.stats().websockets_open != 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_crash_closes_with_1011() {
    let (node, server) = echo_server(ConnectionConfig::default()).await;
    let mut client = connect(server.local_addr(), "/ws").await;
    let mut guest = watch(&node, whoami(&mut client).await);
    client.send(WsMessage::text("crash")).await.unwrap();
    assert_eq!(closed(&mut client).await.0, 1011);
    assert!(matches!(ended(&mut guest).await, ExitReason::Crashed(_)));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_client_message_closes_with_1009() {
    let config = ConnectionConfig {
        max_message_bytes: 1024,
        ..ConnectionConfig::default()
    };
    let (node, server) = echo_server(config).await;
    let mut client = connect(server.local_addr(), "/ws").await;
    let mut guest = watch(&node, whoami(&mut client).await);
    client
        .send(WsMessage::text("y".repeat(1024)))
        .await
        .unwrap();
    assert_eq!(text(&mut client).await.len(), 1024, "at the limit is fine");
    let _ = client.send(WsMessage::text("y".repeat(1025))).await;
    assert_eq!(
        closed(&mut client).await,
        (1009, "message too big".to_owned())
    );
    // The guest is told (close 1009) and ends.
    assert_eq!(ended(&mut guest).await, ExitReason::Normal);
    assert_eq!(server.stats().oversized_messages, 1);
    server.shutdown().await;
}

/// `payload` as a text message in frames of at most `piece` bytes: a first text
/// frame, then continuation frames, the last one final.
async fn send_fragmented(client: &mut Client, payload: &str, piece: usize) {
    let bytes = payload.as_bytes();
    let pieces: Vec<&[u8]> = bytes.chunks(piece).collect();
    for (i, chunk) in pieces.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let last = i + 1 == pieces.len();
        let frame = Frame::message(Bytes::copy_from_slice(chunk), opcode, last);
        if client.send(WsMessage::Frame(frame)).await.is_err() {
            // The server may close while the rest is still going out.
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_in_continuation_frames_arrives_as_one() {
    let (_node, server) = echo_server(ConnectionConfig::default()).await;
    let mut client = connect(server.local_addr(), "/ws").await;
    // 5 frames: "hello, " "fragm" "ented " "world" and a final "!".
    let message = "hello, fragmented world!";
    send_fragmented(&mut client, message, 5).await;
    assert_eq!(
        text(&mut client).await,
        message,
        "one message, echoed whole"
    );
    // A larger one in many frames, each under the frame limit.
    let long: String = (0..4000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    send_fragmented(&mut client, &long, 100).await;
    assert_eq!(text(&mut client).await, long);
    assert!(server.stats().frames_in >= 2, "counted as messages");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_message_in_small_fragments_closes_with_1009() {
    let config = ConnectionConfig {
        max_message_bytes: 1024,
        ..ConnectionConfig::default()
    };
    let (node, server) = echo_server(config).await;
    let mut client = connect(server.local_addr(), "/ws").await;
    let mut guest = watch(&node, whoami(&mut client).await);
    // Every frame is well under the limit; the message they make is not.
    send_fragmented(&mut client, &"z".repeat(1024), 256).await;
    assert_eq!(text(&mut client).await.len(), 1024, "at the limit is fine");
    send_fragmented(&mut client, &"z".repeat(3000), 256).await;
    assert_eq!(
        closed(&mut client).await,
        (1009, "message too big".to_owned())
    );
    assert_eq!(ended(&mut guest).await, ExitReason::Normal);
    assert_eq!(server.stats().oversized_messages, 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_sending_a_message_over_the_limit_is_refused() {
    let config = ConnectionConfig {
        max_message_bytes: 1024,
        ..ConnectionConfig::default()
    };
    let (_node, server) = echo_server(config).await;
    let mut client = connect(server.local_addr(), "/ws").await;
    client.send(WsMessage::text("big 1000")).await.unwrap();
    assert_eq!(text(&mut client).await.len(), 1000);
    client.send(WsMessage::text("big 5000")).await.unwrap();
    let answer = text(&mut client).await;
    let shown = &answer[..answer.len().min(120)];
    assert!(answer.starts_with("refused: "), "{shown}");
    assert!(answer.contains("larger than the 1024 bytes"), "{shown}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_after_the_idle_timeout() {
    let config = ConnectionConfig {
        idle_timeout: Duration::from_millis(300),
        ping_interval: Duration::from_secs(3600),
        ..ConnectionConfig::default()
    };
    let (node, server) = echo_server(config).await;
    let mut client = connect(server.local_addr(), "/ws").await;
    let mut guest = watch(&node, whoami(&mut client).await);
    assert_eq!(closed(&mut client).await, (1001, "idle timeout".to_owned()));
    assert_eq!(ended(&mut guest).await, ExitReason::Normal);
    assert_eq!(server.stats().idle_timeouts, 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_keep_an_answering_client_alive_past_the_idle_timeout() {
    let config = ConnectionConfig {
        idle_timeout: Duration::from_millis(400),
        ping_interval: Duration::from_millis(100),
        ..ConnectionConfig::default()
    };
    let (_node, server) = echo_server(config).await;
    let mut client = connect(server.local_addr(), "/ws").await;
    // Ten pings span 1 s, past the idle timeout; reading answers each with a pong.
    let mut pings = 0;
    bounded("ten pings", async {
        while pings < 10 {
            match client.next().await {
                Some(Ok(WsMessage::Ping(_))) => pings += 1,
                other => panic!("expected a ping, got {other:?}"),
            }
        }
    })
    .await;
    client.send(WsMessage::text("still here")).await.unwrap();
    assert_eq!(text(&mut client).await, "still here");
    assert_eq!(server.stats().idle_timeouts, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_to_a_guest_that_does_not_read_closes_with_1008() {
    let config = ConnectionConfig {
        max_queued_messages: 8,
        close_timeout: Duration::from_millis(300),
        ..ConnectionConfig::default()
    };
    let (node, server) = echo_server(config).await;
    let mut client = connect(server.local_addr(), "/ws").await;
    let mut guest = watch(&node, whoami(&mut client).await);
    client.send(WsMessage::text("stall")).await.unwrap();
    for i in 0..100 {
        if client
            .send(WsMessage::text(format!("frame {i}")))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(
        closed(&mut client).await,
        (1008, "guest not keeping up".to_owned())
    );
    // The stalled guest does not end by itself: the link ends it after the close.
    assert!(!ended(&mut guest).await.is_normal());
    assert_eq!(server.stats().queue_overflows, 1);
    server.shutdown().await;
}

/// A flood of frames from the guest towards a client that does not read: the
/// client, and a watch on the guest.
async fn flood(config: ConnectionConfig) -> (HttpServer, Client, Watch, Probe) {
    let (node, server) = echo_server(config).await;
    let (report, reports) = probe(node.runtime());
    node.runtime().register("ws-flood-report", report).unwrap();
    let mut client = connect(server.local_addr(), "/ws").await;
    let guest = watch(&node, whoami(&mut client).await);
    // 20,000 frames of 4 KiB: 80 MiB, far more than the socket buffers hold.
    client
        .send(WsMessage::text("flood 20000 4096"))
        .await
        .unwrap();
    (server, client, guest, reports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_overflows_the_bounded_queue_and_is_closed() {
    let config = ConnectionConfig {
        max_queued_bytes: 64 * 1024,
        ..ConnectionConfig::default()
    };
    let (server, mut client, _guest, mut reports) = flood(config).await;
    // The guest has sent everything; now read what the server kept.
    reports.data().await;
    let mut frames = 0u64;
    let close = bounded("the close", async {
        loop {
            match client.next().await {
                Some(Ok(WsMessage::Binary(_))) => frames += 1,
                Some(Ok(WsMessage::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                other => panic!("expected frames then a close, got {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(close, Some(1008));
    assert!(frames < 20_000, "all {frames} frames were kept");
    let stats = server.stats();
    assert_eq!(stats.queue_overflows, 1);
    assert!(stats.bytes_out < 20_000 * 4096);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_after_the_write_timeout() {
    // Queues that hold the whole flood, so the write timing out is the only way the
    // connection can end (with the default bounds the queue may overflow first).
    let config = ConnectionConfig {
        write_timeout: Duration::from_millis(300),
        close_timeout: Duration::from_millis(300),
        max_queued_bytes: 128 << 20,
        max_queued_messages: 40_000,
        ..ConnectionConfig::default()
    };
    let (server, client, mut guest, _reports) = flood(config).await;
    // The client never reads: the blocked write times out, the connection ends, and
    // so does its guest.
    ended(&mut guest).await;
    assert_eq!(server.stats().write_timeouts, 1);
    drop(client);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_shutdown_closes_with_1001() {
    let (node, server) = echo_server(ConnectionConfig::default()).await;
    let mut client = connect(server.local_addr(), "/ws").await;
    let mut guest = watch(&node, whoami(&mut client).await);
    let rt = node.runtime().clone();
    let stopping = tokio::spawn(async move { rt.shutdown(Duration::from_secs(5)).await });
    assert_eq!(
        closed(&mut client).await,
        (1001, "server shutting down".to_owned())
    );
    assert_eq!(ended(&mut guest).await, ExitReason::Shutdown);
    bounded("the node to stop", stopping).await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_shutdown_closes_with_1001() {
    let (_node, server) = echo_server(ConnectionConfig::default()).await;
    let mut client = connect(server.local_addr(), "/ws").await;
    whoami(&mut client).await;
    let stopping = tokio::spawn(server.shutdown());
    assert_eq!(
        closed(&mut client).await,
        (1001, "server shutting down".to_owned())
    );
    bounded("the server to stop", stopping).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_max_streams_get_503() {
    let node = node(&[components::WS_ECHO]);
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let config = HttpConfig {
        max_streams: 1,
        ..HttpConfig::default()
    };
    let routes = vec![Route::websocket("/ws", "ws-echo")];
    let server = HttpServer::bind(node.clone(), addr, routes, config)
        .await
        .unwrap();
    let mut first = connect(server.local_addr(), "/ws").await;
    whoami(&mut first).await;
    let stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let url = format!("ws://{}/ws", server.local_addr());
    match tokio_tungstenite::client_async(url, stream).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected 503, got {:?}", other.map(|(_, r)| r.status())),
    }
    assert_eq!(server.stats().streams_refused, 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_request_to_a_websocket_route_gets_426() {
    let (_node, server) = echo_server(ConnectionConfig::default()).await;
    let (status, _) = get(server.local_addr(), "/ws", &[]).await;
    assert_eq!(status, StatusCode::UPGRADE_REQUIRED);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_room_fans_out_to_every_connection() {
    let node = node(&[components::WS_CHAT, components::CHAT_ROOM]);
    let options = rusm_wasm::WasmSpawnOptions {
        policy: Some(policy("[process]\nregister = [\"chat-room\"]\n")),
        ..Default::default()
    };
    let room = node.spawn_with(None, "chat-room", options).unwrap().pid;
    bounded("the room to register", async {
        while node.runtime().whereis("chat-room") != Some(room) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let server = serve(&node, vec![Route::websocket("/chat", "ws-chat")]).await;
    let mut alice = connect(server.local_addr(), "/chat").await;
    assert_eq!(text(&mut alice).await, "joined 1");
    let mut bob = connect(server.local_addr(), "/chat").await;
    assert_eq!(text(&mut bob).await, "joined 2");
    alice.send(WsMessage::text("hello, bob")).await.unwrap();
    assert_eq!(text(&mut alice).await, "hello, bob");
    assert_eq!(text(&mut bob).await, "hello, bob");
    bob.send(WsMessage::text("hi alice")).await.unwrap();
    assert_eq!(text(&mut alice).await, "hi alice");
    assert_eq!(text(&mut bob).await, "hi alice");
    // Bob leaves; the room (monitoring his connection) keeps serving alice.
    bob.close(None).await.unwrap();
    drop(bob);
    alice.send(WsMessage::text("alone")).await.unwrap();
    assert_eq!(text(&mut alice).await, "alone");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_page_is_served_beside_the_room() {
    let node = node(&[components::WS_CHAT, components::CHAT_PAGE]);
    let routes = vec![
        Route::websocket("/chat", "ws-chat"),
        Route::new("/", "chat-page").method(hyper::Method::GET),
    ];
    let server = serve(&node, routes).await;
    let addr = server.local_addr();
    let (status, mut body) = get(addr, "/", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let page = read_all(&mut body).await;
    assert!(page.starts_with("<!doctype html>"), "{page}");
    // Its script opens the room's WebSocket on the page's own host.
    assert!(
        page.contains(r#"new WebSocket(scheme + location.host + "/chat")"#),
        "{page}"
    );
    server.shutdown().await;
}

// ---- server-sent events --------------------------------------------------------------

/// A GET with `headers`; the status and the body's frames as they arrive.
async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, mpsc::UnboundedReceiver<Bytes>) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let mut builder = Request::get(path).header("host", addr.to_string());
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Empty::<Bytes>::new()).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut conn = std::pin::pin!(conn);
        let response = tokio::select! {
            response = sender.send_request(request) => response,
            _ = conn.as_mut() => return,
        };
        let Ok(response) = response else { return };
        let status = response.status();
        let _ = tx.send(Bytes::from(status.as_u16().to_string()));
        let mut body = response.into_body();
        loop {
            tokio::select! {
                frame = body.frame() => match frame {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data()
                            && tx.send(data).is_err()
                        {
                            return;
                        }
                    }
                    _ => return,
                },
                _ = conn.as_mut() => return,
                () = tx.closed() => return,
            }
        }
    });
    let mut rx = rx;
    let status = bounded("the response head", rx.recv())
        .await
        .expect("a response");
    let status =
        StatusCode::from_u16(std::str::from_utf8(&status).unwrap().parse().unwrap()).unwrap();
    (status, rx)
}

/// The whole body, until the stream ends.
async fn read_all(rx: &mut mpsc::UnboundedReceiver<Bytes>) -> String {
    let mut all = Vec::new();
    bounded("the stream's end", async {
        while let Some(chunk) = rx.recv().await {
            all.extend_from_slice(&chunk);
        }
    })
    .await;
    String::from_utf8(all).unwrap()
}

/// Read until the body so far contains `needle`; returns it.
async fn read_until(rx: &mut mpsc::UnboundedReceiver<Bytes>, needle: &str) -> String {
    let mut all = String::new();
    bounded(needle, async {
        while !all.contains(needle) {
            let chunk = rx.recv().await.expect("the stream goes on");
            all.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await;
    all
}

async fn clock_server(config: ConnectionConfig) -> (WasmNode, HttpServer) {
    let node = node(&[components::SSE_CLOCK]);
    let server = serve(
        &node,
        vec![Route::sse("/clock", "sse-clock").connection(config)],
    )
    .await;
    (node, server)
}

fn pid_in(body: &str) -> Pid {
    let line = body
        .lines()
        .skip_while(|l| *l != "event: pid")
        .nth(1)
        .expect("the pid event");
    Pid::from_raw(line.strip_prefix("data: ").unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_events_arrive_in_order_with_ids_and_end_with_the_guest() {
    let (_node, server) = clock_server(ConnectionConfig::default()).await;
    let (status, mut body) = get(server.local_addr(), "/clock?count=3", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let body = read_all(&mut body).await;
    let pid = pid_in(&body).as_raw();
    assert_eq!(
        body,
        format!(
            "event: pid\ndata: {pid}\n\n\
             id: 1\nevent: tick\nretry: 2000\ndata: tick 1\n\n\
             id: 2\nevent: tick\ndata: tick 2\n\n\
             id: 3\nevent: tick\ndata: tick 3\n\n"
        )
    );
    let stats = server.stats();
    assert_eq!(stats.sse_accepted, 1);
    assert_eq!(stats.frames_out, 4);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_last_event_id_reaches_the_guest() {
    let (_node, server) = clock_server(ConnectionConfig::default()).await;
    let headers = [("last-event-id", "41")];
    let (_, mut body) = get(server.local_addr(), "/clock?count=2", &headers).await;
    let body = read_all(&mut body).await;
    let ids: Vec<&str> = body.lines().filter(|l| l.starts_with("id: ")).collect();
    assert_eq!(ids, ["id: 42", "id: 43"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_heartbeats_fill_the_silence() {
    let config = ConnectionConfig {
        heartbeat: Duration::from_millis(50),
        ..ConnectionConfig::default()
    };
    let (_node, server) = clock_server(config).await;
    // One tick, then a minute of silence before the next.
    let (_, mut body) = get(server.local_addr(), "/clock?every=60000", &[]).await;
    let seen = read_until(&mut body, ": heartbeat\n\n").await;
    assert!(seen.contains("data: tick 1\n"), "{seen}");
    drop(body);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_client_going_away_ends_the_guest() {
    let config = ConnectionConfig {
        heartbeat: Duration::from_millis(50),
        ..ConnectionConfig::default()
    };
    let (node, server) = clock_server(config).await;
    let (_, mut body) = get(server.local_addr(), "/clock?every=20", &[]).await;
    let seen = read_until(&mut body, "data: tick 2\n").await;
    let mut guest = watch(&node, pid_in(&seen));
    // The client goes away: its connection closes.
    drop(body);
    let reason = ended(&mut guest).await;
    assert_eq!(reason, ExitReason::custom("client went away"));
    bounded("the stream to be counted closed", async {
        while server.stats().sse_open != 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_routes_need_an_actor() {
    let node = node(&[components::WS_ECHO, components::HTTP_HELLO]);
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let routes = vec![Route::websocket("/ws", "http-hello")];
    let err = HttpServer::bind(node.clone(), addr, routes, HttpConfig::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("runs an actor"), "{err}");
    let routes = vec![Route::sse("/s", "ws-echo").connection(ConnectionConfig {
        heartbeat: Duration::ZERO,
        ..ConnectionConfig::default()
    })];
    let err = HttpServer::bind(node, addr, routes, HttpConfig::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("heartbeat must be more than 0"),
        "{err}"
    );
}
