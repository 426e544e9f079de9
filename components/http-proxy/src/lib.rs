//! `http-proxy`: forwards each request to one upstream and relays its answer.
//!
//! The upstream's base URL comes from the environment variable `UPSTREAM` (for
//! example `http://127.0.0.1:8080`), which the process's policy must grant (`[env]`),
//! along with the upstream's origin (`[http] outbound`). A request for `/p?q` is sent
//! as `GET {UPSTREAM}/p?q`; the upstream's status, `content-type` and body come back
//! to the client. When the outbound request fails the client gets `502` with the
//! `wasi:http` error code in the body (`HttpRequestDenied` when the policy does not
//! grant the upstream); without `UPSTREAM`, `500`.

use rusm_guest::http::{FetchError, IncomingRequest, Method, ResponseOutparam, fetch, respond};

fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let text = [("content-type", &b"text/plain"[..])];
    let Ok(upstream) = std::env::var("UPSTREAM") else {
        respond(out, 500, &text, b"UPSTREAM is not set\n");
        return;
    };
    let path = request.path_with_query().unwrap_or_else(|| "/".into());
    let url = format!("{}{path}", upstream.trim_end_matches('/'));
    match fetch(Method::Get, &url, &[], &[]) {
        Ok(fetched) => {
            let content_type = fetched
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
                .map(|(_, value)| value.as_slice())
                .unwrap_or(b"application/octet-stream");
            respond(
                out,
                fetched.status,
                &[("content-type", content_type)],
                &fetched.body,
            );
        }
        Err(FetchError::Http(code)) => respond(
            out,
            502,
            &text,
            format!("upstream error: {code:?}\n").as_bytes(),
        ),
        Err(other) => respond(out, 502, &text, format!("{other}\n").as_bytes()),
    }
}

rusm_guest::http_handler!(handle);
