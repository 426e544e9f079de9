//! HTTP instance reuse (`Route::reuse`): the `http-reuse` component, whose counter
//! lives in a global, served over real sockets on 127.0.0.1 by `rusm_http::HttpServer`
//! with and without reuse; what retires an instance (its count, a trap, the deadline,
//! a request kept past its call, its memory limit) and the pool's bound.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use hyper::StatusCode;
use hyper::client::conn::http1::SendRequest;
use rusm_http::{HttpConfig, Route};
use rusm_otp::{Message, Pid, Runtime};
use tokio::sync::mpsc;

use crate::components;
use crate::http::{
    BoxBody, bounded, connect, empty, exchange, get, request, serve, spawn_get, until,
};
use crate::{node, policy};

/// `/count`'s answer: the instance's count and its pid.
async fn count(client: &mut SendRequest<BoxBody>, path: &str) -> (u64, Pid) {
    let (status, body) = get(client, path).await;
    let text = String::from_utf8(body).expect("a text answer");
    assert_eq!(status, StatusCode::OK, "{path}: {text}");
    let (count, pid) = text
        .trim_end()
        .split_once(' ')
        .unwrap_or_else(|| panic!("{path}: {text:?} is not `<count> <pid>`"));
    let raw = pid
        .strip_prefix("<0.")
        .and_then(|p| p.strip_suffix('>'))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{path}: {pid:?} is not a pid"));
    (count.parse().expect("a count"), Pid::from_raw(raw))
}

/// Poll until `pid` has ended (its instance dropped), failing after the test bound.
async fn ended(rt: &Runtime, pid: Pid) {
    bounded("the retired instance to end", async {
        while rt.is_alive(pid) {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_carries_between_requests_only_on_a_reusing_route() {
    let node = node(&[components::HTTP_REUSE]);
    let routes = vec![
        Route::new("/fresh", "http-reuse"),
        Route::new("/reused", "http-reuse").reuse(3).pool(1),
    ];
    let server = serve(&node, routes, HttpConfig::default()).await;
    let mut client = connect(server.local_addr()).await;

    // Without reuse every request has a fresh instance: a count of 1, a new pid.
    let mut pids = HashSet::new();
    for _ in 0..3 {
        let (n, pid) = count(&mut client, "/fresh/count").await;
        assert_eq!(n, 1, "a fresh instance starts from 0");
        pids.insert(pid);
    }
    assert_eq!(pids.len(), 3, "each request had its own instance");

    // With reuse = 3, one instance serves three requests in turn, then retires.
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(count(&mut client, "/reused/count").await);
    }
    let counts: Vec<u64> = seen.iter().map(|(n, _)| *n).collect();
    assert_eq!(counts, [1, 2, 3, 1, 2]);
    let (first, second) = (seen[0].1, seen[3].1);
    assert!(seen[..3].iter().all(|(_, p)| *p == first));
    assert!(seen[3..].iter().all(|(_, p)| *p == second));
    assert_ne!(
        first, second,
        "the third request retired the first instance"
    );
    ended(node.runtime(), first).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_retires_the_instance() {
    let node = node(&[components::HTTP_REUSE]);
    let routes = vec![Route::new("/", "http-reuse").reuse(100).pool(1)];
    let server = serve(&node, routes, HttpConfig::default()).await;
    let mut client = connect(server.local_addr()).await;

    let (_, a) = count(&mut client, "/count").await;
    assert_eq!(count(&mut client, "/count").await, (2, a));
    let (status, _) = get(&mut client, "/trap").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    ended(node.runtime(), a).await;
    // The next request gets a fresh instance, which is then reused.
    let (n, b) = count(&mut client, "/count").await;
    assert_eq!(n, 1, "the trap's instance and its state are gone");
    assert_ne!(a, b);
    assert_eq!(count(&mut client, "/count").await, (2, b));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_overrun_retires_the_instance() {
    let node = node(&[components::HTTP_REUSE]);
    let routes = vec![Route::new("/", "http-reuse").reuse(100).pool(1)];
    let config = HttpConfig {
        request_deadline: Duration::from_millis(400),
        ..HttpConfig::default()
    };
    let server = serve(&node, routes, config).await;
    let mut client = connect(server.local_addr()).await;

    let (_, a) = count(&mut client, "/count").await;
    let (status, _) = get(&mut client, "/spin").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    ended(node.runtime(), a).await;
    let (n, b) = count(&mut client, "/count").await;
    assert_eq!(
        (n, b == a),
        (1, false),
        "a fresh instance after the overrun"
    );
    // The deadline is per request: the new instance serves many within it each.
    for expected in 2..=4 {
        assert_eq!(count(&mut client, "/count").await, (expected, b));
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_serves_many_concurrent_requests_on_at_most_its_instances() {
    let node = node(&[components::HTTP_REUSE]);
    let rt = node.runtime().clone();
    let before = rt.stats().live;
    let routes = vec![Route::new("/", "http-reuse").reuse(1000).pool(2)];
    let config = HttpConfig {
        queue_timeout: Duration::from_secs(20),
        ..HttpConfig::default()
    };
    let server = serve(&node, routes, config).await;
    let addr = server.local_addr();

    let gets: Vec<_> = (0..16).map(|_| spawn_get(addr, "/count")).collect();
    let mut by_pid: HashMap<String, Vec<u64>> = HashMap::new();
    for g in gets {
        let (status, body) = bounded("a pooled request", g).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let text = String::from_utf8(body).unwrap();
        let (n, pid) = text.trim_end().split_once(' ').unwrap();
        by_pid
            .entry(pid.to_owned())
            .or_default()
            .push(n.parse().unwrap());
    }
    assert!(
        by_pid.len() <= 2,
        "16 requests on a pool of 2 ran on {} instances",
        by_pid.len()
    );
    // Each instance counted its own requests, one after another.
    let mut total = 0;
    for counts in by_pid.values_mut() {
        counts.sort_unstable();
        let expected: Vec<u64> = (1..=counts.len() as u64).collect();
        assert_eq!(*counts, expected);
        total += counts.len();
    }
    assert_eq!(total, 16);
    assert!(
        rt.stats().live <= before + 2,
        "no more than the pool's instances live"
    );
    // Stopping the server retires the idle instances.
    server.shutdown().await;
    bounded("the idle instances to retire", async {
        while rt.stats().live > before {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// A native process registered as `gate` that holds every call until the test
/// releases it: the callers' pids and reply tags arrive on the receiver.
fn gate(rt: &Runtime) -> mpsc::UnboundedReceiver<(Pid, u64)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let pid = rt.spawn(move |ctx| async move {
        loop {
            if let Message::Data(d) = ctx.recv().await {
                let bytes: Vec<u8> = d.payload.downcast().expect("bytes");
                let from = Pid::from_raw(u64::from_le_bytes(bytes[..8].try_into().unwrap()));
                let reply_tag = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
                if tx.send((from, reply_tag)).is_err() {
                    return;
                }
            }
        }
    });
    rt.register("gate", pid).expect("register the gate");
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_finding_the_pool_busy_waits_then_gets_503() {
    let node = node(&[components::HTTP_REUSE]);
    let rt = node.runtime().clone();
    let mut held = gate(&rt);
    let routes = vec![Route::new("/", "http-reuse").reuse(10).pool(2)];
    let config = HttpConfig {
        queue_timeout: Duration::from_millis(200),
        ..HttpConfig::default()
    };
    let server = serve(&node, routes, config).await;
    let addr = server.local_addr();

    // Both instances are held by the gate.
    let waiting = [spawn_get(addr, "/wait"), spawn_get(addr, "/wait")];
    let mut calls = Vec::new();
    for _ in 0..2 {
        calls.push(bounded("a call at the gate", held.recv()).await.unwrap());
    }
    let holders: HashSet<Pid> = calls.iter().map(|(pid, _)| *pid).collect();
    assert_eq!(holders.len(), 2, "two instances hold the two requests");
    // A third request waits for the queue timeout, then gets 503: no third instance.
    let spawned = rt.stats().spawned;
    let mut client = connect(addr).await;
    let (status, headers, _) = exchange(&mut client, request("GET", "/count", empty())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(rt.stats().spawned, spawned, "the full pool started nothing");
    for (pid, tag) in calls {
        rt.send_tagged(pid, tag, Vec::new());
    }
    for w in waiting {
        assert_eq!(
            bounded("a released request", w).await.unwrap(),
            (StatusCode::OK, b"released\n".to_vec())
        );
    }
    // The instances are free again and serve the next request.
    let (n, pid) = count(&mut client, "/count").await;
    assert_eq!(n, 1);
    assert!(
        holders.contains(&pid),
        "served by one of the pool's two instances"
    );
    until("the 503 counted", &server, |s| s.status(503) == 1).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_keeping_its_request_past_the_call_is_retired() {
    let node = node(&[components::HTTP_REUSE]);
    let routes = vec![Route::new("/", "http-reuse").reuse(100).pool(1)];
    let server = serve(&node, routes, HttpConfig::default()).await;
    let mut client = connect(server.local_addr()).await;

    let (_, a) = count(&mut client, "/count").await;
    // The guest answers, then leaks the request (its headers and body, the client's
    // connection state) so that it would outlive the call in a reused instance.
    let (status, body) = get(&mut client, "/keep").await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"kept\n"[..]));
    ended(node.runtime(), a).await;
    let (n, b) = count(&mut client, "/count").await;
    assert_eq!(
        (n, b == a),
        (1, false),
        "what it kept went with its instance"
    );
    // The connection the kept request came on still serves.
    assert_eq!(count(&mut client, "/count").await, (2, b));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hoarded_across_requests_stays_within_the_instance_limit() {
    let node = node(&[components::HTTP_REUSE]);
    let limit = 8 * 1024 * 1024;
    let routes = vec![
        Route::new("/", "http-reuse")
            .reuse(1000)
            .pool(1)
            .policy(policy("[limits]\nmemory = \"8MiB\"\n")),
    ];
    let server = serve(&node, routes, HttpConfig::default()).await;
    let mut client = connect(server.local_addr()).await;

    // Each request keeps 1 MiB more in a global: reuse lets the hoard grow from one
    // request to the next, but never past the instance's memory limit.
    let (_, a) = count(&mut client, "/count").await;
    let mut kept = Vec::new();
    let refused = loop {
        let (status, body) = get(&mut client, "/hoard?1024").await;
        assert!(
            node.granted_memory() <= limit,
            "the pool's one instance holds at most its policy's memory"
        );
        if status != StatusCode::OK {
            break status;
        }
        kept.push(String::from_utf8(body).unwrap());
        assert!(kept.len() < 8, "8 MiB hoarded under an 8 MiB limit");
    };
    assert_eq!(refused, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        kept.len() >= 2 && kept[1] == "2048\n",
        "the hoard grew across requests on one instance: {kept:?}"
    );
    ended(node.runtime(), a).await;
    let (n, b) = count(&mut client, "/count").await;
    assert_eq!(
        (n, b == a),
        (1, false),
        "the next request has a fresh instance"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_settings_are_checked_at_bind() {
    let node = node(&[components::HTTP_REUSE, components::WS_ECHO]);
    let addr = "127.0.0.1:0".parse().unwrap();
    for (route, needle) in [
        (Route::new("/", "http-reuse").reuse(0), "at least 1"),
        (Route::new("/", "http-reuse").reuse(2).pool(0), "at least 1"),
        (
            Route::websocket("/", "ws-echo").reuse(2),
            "reuse applies to http routes",
        ),
    ] {
        let err =
            rusm_http::HttpServer::bind(node.clone(), addr, vec![route], HttpConfig::default())
                .await
                .expect_err("a bad reuse setting is refused");
        assert!(err.to_string().contains(needle), "{err}");
    }
}
