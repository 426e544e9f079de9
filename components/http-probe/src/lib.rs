//! `http-probe`: one outbound HTTP request from a plain actor (not an HTTP handler),
//! for the capability tests.
//!
//! # Init
//!
//! The reporter's pid (`u64`), then the URL as UTF-8 (the rest of the init).
//!
//! # What it does
//!
//! Sends `GET URL` through `wasi:http/outgoing-handler` and reports to the reporter,
//! then ends with reason `normal`:
//!
//! | tag | payload | meaning |
//! | --- | --- | --- |
//! | 1 | status (`u16`), then the body | a response came back |
//! | 2 | the error, as text (`Http(HttpRequestDenied)` for a denied origin) | the request failed |

use rusm_guest::http::{Method, fetch};
use rusm_guest::{Pid, send};

fn run(init: Vec<u8>) -> Result<(), String> {
    let reporter = init
        .get(..8)
        .and_then(Pid::from_slice)
        .ok_or("http-probe: init must start with a pid")?;
    let url = std::str::from_utf8(&init[8..]).map_err(|_| "http-probe: url is not utf-8")?;
    let (tag, payload) = match fetch(Method::Get, url, &[], &[]) {
        Ok(fetched) => (
            1,
            [&fetched.status.to_le_bytes()[..], &fetched.body].concat(),
        ),
        Err(e) => (2, format!("{e:?}").into_bytes()),
    };
    send(reporter, tag, &payload).map_err(|e| e.to_string())
}

rusm_guest::actor!(run);
