//! `http-hello`: an HTTP handler answering every request with `200` and the body
//! `hello from rusm\n` (`content-type: text/plain`).
//!
//! Each request runs in a fresh instance; nothing is kept between requests.

use rusm_guest::http::{IncomingRequest, ResponseOutparam, respond};

fn handle(_request: IncomingRequest, out: ResponseOutparam) {
    respond(
        out,
        200,
        &[("content-type", b"text/plain")],
        b"hello from rusm\n",
    );
}

rusm_guest::http_handler!(handle);
