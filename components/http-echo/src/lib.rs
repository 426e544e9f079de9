//! `http-echo`: streams the request body back.
//!
//! Answers `200` at once, with `content-type` copied from the request (when it has
//! one) and `x-echo-method` / `x-echo-path` naming the request's method and path with
//! query, then copies the request body to the response body chunk by chunk (at most
//! 16 KiB at a time) as it arrives, so neither side is buffered whole. A request body
//! that fails part way (for example one the host cut off at its size limit) ends the
//! response body early.

use rusm_guest::http::{BodyReader, IncomingRequest, Method, ResponseOutparam, start_response};

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other.clone(),
    }
}

fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let method = method_name(&request.method());
    let path = request.path_with_query().unwrap_or_default();
    let content_type = request
        .headers()
        .get("content-type")
        .into_iter()
        .next()
        .unwrap_or_else(|| b"application/octet-stream".to_vec());
    let reader = BodyReader::of_request(&request);
    let mut writer = start_response(
        out,
        200,
        &[
            ("content-type", &content_type),
            ("x-echo-method", method.as_bytes()),
            ("x-echo-path", path.as_bytes()),
        ],
    );
    if let Ok(mut reader) = reader {
        while let Ok(Some(chunk)) = reader.chunk(16 * 1024) {
            if writer.write(&chunk).is_err() {
                return;
            }
        }
    }
    writer.finish();
}

rusm_guest::http_handler!(handle);
