//! `http-counter`: an HTTP counter backed by a long-lived `counter` actor.
//!
//! The request's instance is a rusm process: it looks up the actor registered as
//! `counter` (`whereis`) and calls it with `rusm_guest::call` (tag 1, `inc`, by 1 on
//! `POST`; tag 2, `get`, on any other method), then answers `200` with the counter's
//! value in decimal and a newline. No actor registered as `counter`: `503` with
//! `no counter\n`. The call fails (the counter died, or no reply within 5 s): `502`
//! with the error.

use std::time::Duration;

use rusm_guest::http::{IncomingRequest, Method, ResponseOutparam, respond};
use rusm_guest::{call, whereis};

/// The counter's `inc` request tag.
const INC: u64 = 1;
/// The counter's `get` request tag.
const GET: u64 = 2;

fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let text = [("content-type", &b"text/plain"[..])];
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
