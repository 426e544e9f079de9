//! `http-trap`: an HTTP handler that traps (a Rust panic, built with
//! `panic = "abort"`, so a wasm `unreachable`) on every request before answering.
//! The server answers `500`, the request's process ends with a crash, and the server
//! keeps serving.

use rusm_guest::http::{IncomingRequest, ResponseOutparam};

fn handle(request: IncomingRequest, _out: ResponseOutparam) {
    panic!(
        "http-trap: trapping on {}",
        request.path_with_query().unwrap_or_default()
    );
}

rusm_guest::http_handler!(handle);
