//! `wasi:http` 0.3 services: the `http-p3` component, whose instances serve several
//! requests at once, served over real sockets on 127.0.0.1 by `rusm_http::HttpServer`:
//! state shared by the requests of one instance, requests overlapping on it up to the
//! route's `concurrency`, what happens past that bound, a trap, a missed deadline, the
//! clock grant.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::client::conn::http1::SendRequest;
use rusm_http::{HttpConfig, Route};

use crate::components;
use crate::http::{BoxBody, bounded, connect, exchange, get, request, serve, spawn_get, until};
use crate::{node, policy};

/// Poll until the server's instances have taken `n` requests, failing after the
/// test bound (no event says so).
async fn on_instances(what: &str, server: &rusm_http::HttpServer, n: usize) {
    bounded(what, async {
        while server.requests_on_instances() != n {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// `/count`'s answer: the instance's count.
async fn count(client: &mut SendRequest<BoxBody>) -> u64 {
    let (status, body) = get(client, "/count").await;
    let text = String::from_utf8(body).expect("a text answer");
    assert_eq!(status, StatusCode::OK, "/count: {text}");
    text.trim_end().parse().expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p3_service_answers_and_keeps_its_state_across_requests() {
    let node = node(&[components::HTTP_P3]);
    assert!(node.is_http_service("http-p3"));
    let spawned = node.runtime().stats().spawned;
    let server = serve(
        &node,
        vec![Route::new("/", "http-p3")],
        HttpConfig::default(),
    )
    .await;
    let mut client = connect(server.local_addr()).await;

    // One instance serves them all (no reuse cap by default), its counter shared.
    for expected in 1..=3 {
        assert_eq!(count(&mut client).await, expected);
    }
    let body: BoxBody = Full::new(bytes::Bytes::from_static(b"hello p3"))
        .map_err(|never| match never {})
        .boxed();
    let (status, _, echoed) = exchange(&mut client, request("POST", "/echo", body)).await;
    assert_eq!(
        (status, echoed.as_slice()),
        (StatusCode::OK, &b"hello p3"[..])
    );
    let (status, _) = get(&mut client, "/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(count(&mut client).await, 4);
    assert_eq!(
        node.runtime().stats().spawned - spawned,
        1,
        "one instance served every request"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_overlap_on_one_instance_up_to_the_concurrency() {
    let node = node(&[components::HTTP_P3]);
    let spawned = node.runtime().stats().spawned;
    let routes = vec![Route::new("/", "http-p3").concurrency(4).pool(1)];
    let server = serve(&node, routes, HttpConfig::default()).await;
    let addr = server.local_addr();

    // Each `/gather?4` answers only once four have arrived at its instance: all four
    // are in flight on one instance at once.
    let gathers: Vec<_> = (0..4).map(|_| spawn_get(addr, "/gather?4")).collect();
    for g in gathers {
        let (status, body) = bounded("a gathered request", g).await.unwrap();
        assert_eq!(
            (status, String::from_utf8(body).unwrap()),
            (StatusCode::OK, "gathered 4 of 4\n".to_owned())
        );
    }
    // Concurrent sleeps overlap too: the instance saw them in flight together.
    let sleeps: Vec<_> = (0..3).map(|_| spawn_get(addr, "/sleep?300")).collect();
    let mut most = 0;
    for s in sleeps {
        let (status, body) = bounded("a sleep", s).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let text = String::from_utf8(body).unwrap();
        most = most.max(
            text.trim_end()
                .rsplit(' ')
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
    }
    assert!(
        most >= 4,
        "the gathers were four in flight at once (saw {most})"
    );
    assert_eq!(node.runtime().stats().spawned - spawned, 1, "one instance");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_bound_a_request_waits_then_gets_503_and_missed_deadlines_retire() {
    let node = node(&[components::HTTP_P3]);
    let rt = node.runtime().clone();
    let routes = vec![Route::new("/", "http-p3").concurrency(2).pool(1)];
    let config = HttpConfig {
        queue_timeout: Duration::from_millis(200),
        request_deadline: Duration::from_secs(3),
        ..HttpConfig::default()
    };
    let server = serve(&node, routes, config).await;
    let addr = server.local_addr();

    // Two gathers waiting for a third take both slots of the pool's one instance.
    let held = [spawn_get(addr, "/gather?3"), spawn_get(addr, "/gather?3")];
    on_instances("both gathers on the instance", &server, 2).await;
    let spawned = rt.stats().spawned;
    let mut client = connect(addr).await;
    let (status, headers, _) =
        exchange(&mut client, request("GET", "/count", crate::http::empty())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(rt.stats().spawned, spawned, "the full pool started nothing");
    // The third gather never comes: both pass their deadline, and the instance,
    // which took no new request since, retires.
    for h in held {
        let (status, _) = bounded("a gather past its deadline", h).await.unwrap();
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    }
    // The next request has a fresh instance.
    assert_eq!(count(&mut client).await, 1);
    assert_eq!(rt.stats().spawned, spawned + 1);
    until("the 503 counted", &server, |s| s.status(503) == 1).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_bound_waits_for_a_slot_within_the_queue_timeout() {
    let node = node(&[components::HTTP_P3]);
    let routes = vec![Route::new("/", "http-p3").concurrency(1).pool(1)];
    let config = HttpConfig {
        queue_timeout: Duration::from_secs(20),
        ..HttpConfig::default()
    };
    let server = serve(&node, routes, config).await;
    let addr = server.local_addr();

    let sleeping = spawn_get(addr, "/sleep?300");
    on_instances("the sleep on the instance", &server, 1).await;
    // The one slot is taken: this request waits for it, then runs on the same
    // instance, which never had two in flight.
    let (status, body) = bounded("the waiting request", spawn_get(addr, "/sleep?0"))
        .await
        .unwrap();
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"slept 0 1\n"[..])
    );
    let (status, _) = bounded("the sleep", sleeping).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_fails_the_requests_in_flight_and_the_next_gets_a_fresh_instance() {
    let node = node(&[components::HTTP_P3]);
    let rt = node.runtime().clone();
    let routes = vec![Route::new("/", "http-p3").concurrency(4).pool(1)];
    let server = serve(&node, routes, HttpConfig::default()).await;
    let addr = server.local_addr();
    let mut client = connect(addr).await;

    assert_eq!(count(&mut client).await, 1);
    assert_eq!(count(&mut client).await, 2);
    let spawned = rt.stats().spawned;
    let held = [spawn_get(addr, "/gather?10"), spawn_get(addr, "/gather?10")];
    on_instances("both gathers on the instance", &server, 2).await;
    let (status, _) = get(&mut client, "/trap").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    // The requests in flight on the trapped instance fail with it.
    for h in held {
        let (status, _) = bounded("a gather on the trapped instance", h)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    // The next request gets a fresh instance, its state from zero.
    assert_eq!(count(&mut client).await, 1);
    assert_eq!(rt.stats().spawned, spawned + 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_yields_is_ended_at_its_deadline() {
    let node = node(&[components::HTTP_P3]);
    let routes = vec![Route::new("/", "http-p3").concurrency(4).pool(1)];
    let config = HttpConfig {
        request_deadline: Duration::from_millis(500),
        ..HttpConfig::default()
    };
    let server = serve(&node, routes, config).await;
    let mut client = connect(server.local_addr()).await;

    assert_eq!(count(&mut client).await, 1);
    let (status, _) = get(&mut client, "/spin").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        count(&mut client).await,
        1,
        "a fresh instance after the overrun"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wasi_0_3_clocks_hold_to_the_policy() {
    let node = node(&[components::HTTP_P3]);
    let routes = vec![
        // The node's default policy grants no clock.
        Route::new("/denied", "http-p3"),
        Route::new("/granted", "http-p3").policy(policy("[clocks]\nmonotonic = true\n")),
    ];
    let server = serve(&node, routes, HttpConfig::default()).await;
    let mut client = connect(server.local_addr()).await;

    // Reading the clock, or asking whether a mark has passed, is a clock reading.
    for path in ["/denied/now", "/denied/until?1"] {
        let (status, _) = get(&mut client, path).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
    }
    let (status, body) = get(&mut client, "/granted/now").await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"now\n"[..]));
    let (status, body) = get(&mut client, "/granted/until?1").await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"passed\n"[..])
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_refused_where_it_does_not_apply() {
    let node = node(&[components::HTTP_P3, components::HTTP_REUSE]);
    let addr = "127.0.0.1:0".parse().unwrap();
    for (route, says) in [
        (
            Route::new("/", "http-p3").concurrency(0),
            "concurrency must be at least 1",
        ),
        (
            Route::new("/", "http-reuse").concurrency(4),
            "concurrency applies to components exporting wasi:http/handler@0.3",
        ),
    ] {
        let bound =
            rusm_http::HttpServer::bind(node.clone(), addr, vec![route], HttpConfig::default())
                .await;
        let Err(err) = bound else {
            panic!("the route is refused");
        };
        assert!(err.to_string().contains(says), "{err}");
    }
}
