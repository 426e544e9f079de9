//! `http-cli`: one binary, two roles, like a `wasm32-wasip2` binary built for the
//! `wasi:http/proxy` world.
//!
//! As a command (`wasi:cli/run`, what `rusm run` calls) it prints
//! `http-cli: run as a command` on stdout and exits with 0. As an HTTP handler
//! (`wasi:http/incoming-handler`, what `rusm serve` calls) it answers every request
//! with `200` and the body `http-cli: served over http\n`.

use rusm_guest::http::{IncomingRequest, ResponseOutparam, respond};

fn handle(_request: IncomingRequest, out: ResponseOutparam) {
    respond(
        out,
        200,
        &[("content-type", b"text/plain")],
        b"http-cli: served over http\n",
    );
}

rusm_guest::http_handler!(handle);

fn main() {
    println!("http-cli: run as a command");
}
