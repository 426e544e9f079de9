//! A thousand WebSocket connections held open at once: every one answers, and the
//! host's resident memory grows by less than a stated bound per connection.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use rusm_http::{HttpConfig, HttpServer, Route};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::{MIB, WAIT, node, one_at_a_time, resident};

/// Connections held at once.
const CONNECTIONS: usize = 1_000;

/// The most resident memory one open, answering connection may add to this process:
/// its connection process, its `ws-echo` guest (instance, linear memory, stack) and
/// both ends of the socket, client included (it lives in this process too).
const BOUND_PER_CONNECTION: u64 = 512 * 1024;

type Client = WebSocketStream<TcpStream>;

/// Make sure this process may hold `needed` file descriptors, raising its soft
/// limit towards the hard one when it is lower.
fn allow_descriptors(needed: u64) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_none_or(|soft| soft >= needed) {
        return;
    }
    assert!(
        limit.maximum.is_none_or(|hard| hard >= needed),
        "this test needs {needed} file descriptors; the hard limit (ulimit -Hn) is {:?}",
        limit.maximum
    );
    let raised = rustix::process::Rlimit {
        current: Some(needed),
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, raised)
        .unwrap_or_else(|e| panic!("raising the soft descriptor limit to {needed}: {e}"));
}

/// Connect to `/ws` and check the guest echoes one message.
async fn open(addr: SocketAddr, i: usize) -> Client {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut client, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
        .await
        .expect("the upgrade succeeds");
    round_trip(&mut client, i).await;
    client
}

/// Send `hello <i>` and wait for it to come back.
async fn round_trip(client: &mut Client, i: usize) {
    let sent = format!("hello {i}");
    client
        .send(WsMessage::text(sent.clone()))
        .await
        .expect("send");
    loop {
        match client.next().await {
            Some(Ok(WsMessage::Text(text))) => {
                assert_eq!(text.as_str(), sent);
                return;
            }
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
            other => panic!("connection {i}: expected the echo, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_websocket_connections_all_answer_within_the_memory_bound() {
    let _turn = one_at_a_time().await;
    // Both ends of every connection, and room for the rest of the process.
    allow_descriptors(2 * CONNECTIONS as u64 + 512);
    let node = node(&["ws-echo"]);
    let config = HttpConfig {
        max_streams: CONNECTIONS + 16,
        max_connections: CONNECTIONS + 16,
        ..HttpConfig::default()
    };
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = HttpServer::bind(
        node.clone(),
        addr,
        vec![Route::websocket("/ws", "ws-echo")],
        config,
    )
    .await
    .expect("the server binds");
    let addr = server.local_addr();
    // Warm up: the first connections bring in code and the allocators' first chunks.
    for i in 0..8 {
        let mut client = open(addr, i).await;
        let _ = client.close(None).await;
    }
    let before = resident();

    let mut clients = tokio::time::timeout(WAIT, async {
        let mut opening = JoinSet::new();
        let mut clients = Vec::with_capacity(CONNECTIONS);
        for i in 0..CONNECTIONS {
            // At most 64 handshakes in flight.
            if opening.len() == 64 {
                clients.push(opening.join_next().await.unwrap().unwrap());
            }
            opening.spawn(open(addr, i));
        }
        while let Some(client) = opening.join_next().await {
            clients.push(client.unwrap());
        }
        clients
    })
    .await
    .expect("a thousand connections open in time");
    assert_eq!(clients.len(), CONNECTIONS);
    assert_eq!(server.stats().websockets_open, CONNECTIONS as u64);

    // All open at once, every one answers again.
    tokio::time::timeout(WAIT, async {
        let mut answering = JoinSet::new();
        for (i, mut client) in clients.drain(..).enumerate() {
            answering.spawn(async move {
                round_trip(&mut client, CONNECTIONS + i).await;
                client
            });
        }
        while let Some(client) = answering.join_next().await {
            clients.push(client.unwrap());
        }
    })
    .await
    .expect("every connection answers in time");
    let grown = resident().saturating_sub(before);
    let per_connection = grown / CONNECTIONS as u64;
    eprintln!(
        "{CONNECTIONS} open WebSocket connections: {} MiB resident, {per_connection} B each",
        grown / MIB
    );
    assert!(
        per_connection < BOUND_PER_CONNECTION,
        "each open connection added {per_connection} B of resident memory, past the bound of {BOUND_PER_CONNECTION} B"
    );
    drop(clients);
    server.shutdown().await;
}
