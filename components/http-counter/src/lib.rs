//! `http-counter`: an HTTP counter kept in the node's key-value store, or by a
//! long-lived `counter` actor.
//!
//! When its policy grants the `wasi:keyvalue` bucket `counter` (`rw`), the count is
//! key `count` there, so it survives crashes and node restarts: `POST` adds 1
//! (`atomics.increment`), `DELETE` sets it back to 0, any other method reads it (a
//! missing key is 0); the answer is `200` with the count in decimal and a newline, or
//! `500` with the store's error. It is built against the first draft of the
//! interface (`wasi:keyvalue@0.2.0-draft`, `rusm_guest::keyvalue_draft`), so the
//! command-line tests run a component of that draft through a real node.
//!
//! Otherwise the request's instance (a rusm process) looks up the actor registered as
//! `counter` (`whereis`) and calls it with `rusm_guest::call` (tag 1, `inc`, by 1 on
//! `POST`; tag 2, `get`, on any other method), then answers `200` with the counter's
//! value in decimal and a newline. No actor registered as `counter`: `503` with
//! `no counter\n`. The call fails (the counter died, or no reply within 5 s): `502`
//! with the error.

use std::time::Duration;

use rusm_guest::http::{IncomingRequest, Method, ResponseOutparam, respond};
use rusm_guest::keyvalue_draft::{atomics, store};
use rusm_guest::{call, whereis};

/// The counter's `inc` request tag.
const INC: u64 = 1;
/// The counter's `get` request tag.
const GET: u64 = 2;

/// The count in the granted bucket.
fn stored(bucket: &store::Bucket, method: Method) -> Result<u64, store::Error> {
    match method {
        Method::Post => atomics::increment(bucket, "count", 1),
        Method::Delete => bucket.set("count", b"0").map(|()| 0),
        _ => match bucket.get("count")? {
            Some(bytes) => String::from_utf8_lossy(&bytes)
                .parse()
                .map_err(|_| store::Error::Other("the stored count is not a number".into())),
            None => Ok(0),
        },
    }
}

fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let text = [("content-type", &b"text/plain"[..])];
    if let Ok(bucket) = store::open("counter") {
        match stored(&bucket, request.method()) {
            Ok(count) => respond(out, 200, &text, format!("{count}\n").as_bytes()),
            Err(e) => respond(out, 500, &text, format!("{e:?}\n").as_bytes()),
        }
        return;
    }
    let Some(counter) = whereis("counter") else {
        respond(out, 503, &text, b"no counter\n");
        return;
    };
    let reply = match request.method() {
        Method::Post => call(counter, INC, 1i64.to_le_bytes(), Duration::from_secs(5)),
        _ => call(counter, GET, [], Duration::from_secs(5)),
    };
    match reply.map(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).map(i64::from_le_bytes)) {
        Ok(Ok(value)) => respond(out, 200, &text, format!("{value}\n").as_bytes()),
        Ok(Err(_)) => respond(out, 502, &text, b"the counter answered garbage\n"),
        Err(e) => respond(out, 502, &text, format!("{e}\n").as_bytes()),
    }
}

rusm_guest::http_handler!(handle);
