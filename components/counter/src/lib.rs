//! `counter`: a stateful counter server answering calls made with
//! `rusm_guest::call`.
//!
//! All integers are little-endian.
//!
//! # Init
//!
//! Empty, or a name as UTF-8 bytes (the whole init, no length prefix): the counter
//! registers itself under that name first, and ends with
//! `custom:counter: cannot register <name>: <error>` if it cannot.
//!
//! # Messages
//!
//! Requests are data messages whose payload is a call envelope: the caller's pid
//! (`u64`), the reply tag (`u64`), then the body (see `rusm_guest::Request`). The
//! reply goes to the caller's pid with the reply tag; its payload has no envelope.
//! The counter is an `i64` starting at 0 and wraps on overflow.
//!
//! | tag | body | reply payload | effect |
//! | --- | --- | --- | --- |
//! | 1 (`inc`) | `n`: `i64` (8 bytes) | the new value, `i64` | adds `n` |
//! | 2 (`get`) | empty (ignored) | the value, `i64` | none |
//! | 3 (`stop`) | empty (ignored) | empty | returns after replying (reason `normal`) |
//!
//! A request on tags 1 to 3 whose envelope is short, or an `inc` whose body is not
//! 8 bytes, ends the counter with a `custom:counter: ...` reason (no reply). Data
//! messages with other tags, and `down` and `exit` messages, are ignored.

use rusm_guest::{Message, Request, Tag, receive, register};

/// Adds to the counter.
const INC: Tag = 1;
/// Reads the counter.
const GET: Tag = 2;
/// Stops the counter.
const STOP: Tag = 3;

fn run(init: Vec<u8>) -> Result<(), String> {
    if !init.is_empty() {
        let name = String::from_utf8(init).map_err(|_| "counter: name is not utf-8")?;
        register(&name).map_err(|e| format!("counter: cannot register {name}: {e}"))?;
    }
    let mut value: i64 = 0;
    loop {
        let Message::Data { tag, payload } = receive() else {
            continue;
        };
        if !matches!(tag, INC | GET | STOP) {
            continue;
        }
        let request = Request::decode(&payload).map_err(|e| format!("counter: {e}"))?;
        let reply = |body: &[u8]| {
            request
                .reply(body)
                .map_err(|e| format!("counter: cannot reply to {}: {e}", request.from))
        };
        match tag {
            INC => {
                let n: [u8; 8] = request.body.as_slice().try_into().map_err(|_| {
                    format!(
                        "counter: inc takes an 8-byte i64, got {} bytes",
                        request.body.len()
                    )
                })?;
                value = value.wrapping_add(i64::from_le_bytes(n));
                reply(&value.to_le_bytes())?;
            }
            GET => reply(&value.to_le_bytes())?,
            _ => {
                reply(&[])?;
                return Ok(());
            }
        }
    }
}

rusm_guest::actor!(run);
