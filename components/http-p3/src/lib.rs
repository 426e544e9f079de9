//! `http-p3`: a `wasi:http` 0.3 service (it exports `wasi:http/handler@0.3.0`), so
//! one instance serves many requests at once, each an async `handle` call.
//!
//! By the last segment of the path (so routes with any prefix reach it):
//! - `/hello`: answers `200 "hello from rusm\n"` (as `http-hello` does);
//! - `/count`: adds 1 to the instance's request counter and answers `200` with it,
//!   `"<count>\n"` (a fresh instance answers `1`);
//! - `/gather?N`: waits until `N` gather requests have arrived at this instance (the
//!   ones before it still waiting), then answers `200 "gathered <N> of <arrived>\n"`:
//!   it answers only when `N` requests are in flight on one instance at once;
//! - `/sleep?MS`: waits `MS` milliseconds on the monotonic clock, then answers
//!   `200 "slept <MS> <most in flight>\n"`, the most requests this instance has had
//!   in flight at once;
//! - `/echo`: answers `200` with the request body;
//! - `/now`: reads the monotonic clock and answers `200 "now\n"` (a policy without
//!   the monotonic clock ends the instance with `capability-denied`);
//! - `/until?NS`: waits until the monotonic clock reads `NS` (which tells whether it
//!   has passed: a clock reading too), then answers `200 "passed\n"`;
//! - `/trap`: traps (a panic, built with `panic = "abort"`) before answering;
//! - `/spin`: loops forever without yielding (until its deadline);
//! - anything else: `404`.

use std::cell::Cell;

wit_bindgen::generate!({
    path: "wit",
    world: "service",
    generate_all,
});

use exports::wasi::http::handler::Guest;
use wasi::http::types::{ErrorCode, Fields, Request, Response};

thread_local! {
    /// Requests this instance has served at `/count`.
    static COUNT: Cell<u64> = const { Cell::new(0) };
    /// Gather requests that have arrived at this instance.
    static ARRIVED: Cell<u64> = const { Cell::new(0) };
    /// Requests in flight now, and the most at once.
    static IN_FLIGHT: Cell<u64> = const { Cell::new(0) };
    static MOST: Cell<u64> = const { Cell::new(0) };
}

/// Counts a request in flight while it lives.
struct Flight;

impl Flight {
    fn start() -> Flight {
        let now = IN_FLIGHT.get() + 1;
        IN_FLIGHT.set(now);
        MOST.set(MOST.get().max(now));
        Flight
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        IN_FLIGHT.set(IN_FLIGHT.get() - 1);
    }
}

struct Service;

impl Guest for Service {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let _flight = Flight::start();
        let target = request.get_path_with_query().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        match path.rsplit('/').next().unwrap_or_default() {
            "hello" => respond(200, b"hello from rusm\n".to_vec()),
            "count" => {
                COUNT.set(COUNT.get() + 1);
                respond(200, format!("{}\n", COUNT.get()).into_bytes())
            }
            "gather" => {
                let want: u64 = query.parse().unwrap_or(1);
                ARRIVED.set(ARRIVED.get() + 1);
                // The other requests run while this one waits on the clock; the
                // waits are short so the gathering is seen soon after it happens.
                while ARRIVED.get() < want {
                    wasi::clocks::monotonic_clock::wait_for(1_000_000).await;
                }
                let text = format!("gathered {want} of {}\n", ARRIVED.get());
                respond(200, text.into_bytes())
            }
            "sleep" => {
                let ms: u64 = query.parse().unwrap_or(0);
                wasi::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
                respond(200, format!("slept {ms} {}\n", MOST.get()).into_bytes())
            }
            "echo" => {
                let (_done, done_rx) = wit_future::new::<Result<(), ErrorCode>>(|| Ok(()));
                let (body, _trailers) = Request::consume_body(request, done_rx);
                let bytes = body.collect().await;
                respond(200, bytes)
            }
            "now" => {
                let _ = wasi::clocks::monotonic_clock::now();
                respond(200, b"now\n".to_vec())
            }
            "until" => {
                let mark: u64 = query.parse().unwrap_or(0);
                wasi::clocks::monotonic_clock::wait_until(mark).await;
                respond(200, b"passed\n".to_vec())
            }
            "trap" => panic!("http-p3: trapping as asked"),
            "spin" => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            _ => respond(404, b"not found\n".to_vec()),
        }
    }
}

/// A response with `status` and `body` (plain text), the body written by a task of
/// its own once the host reads it.
fn respond(status: u16, body: Vec<u8>) -> Result<Response, ErrorCode> {
    let headers = Fields::from_list(&[("content-type".to_owned(), b"text/plain".to_vec())])
        .map_err(|_| ErrorCode::InternalError(Some("bad header".to_owned())))?;
    let (mut writer, reader) = wit_stream::new::<u8>();
    let (trailers, trailers_rx) = wit_future::new::<Result<Option<Fields>, ErrorCode>>(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(reader), trailers_rx);
    response
        .set_status_code(status)
        .map_err(|()| ErrorCode::InternalError(Some("bad status".to_owned())))?;
    wit_bindgen::spawn(async move {
        let _ = writer.write_all(body).await;
        drop(writer);
        let _ = trailers.write(Ok(None)).await;
    });
    Ok(response)
}

export!(Service);
