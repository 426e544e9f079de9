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
//! | 4 (`version`) | empty (ignored) | `1`, `u64` (`counter-v2` answers `2`) | none |
//!
//! A request on tags 1 to 4 whose envelope is short, or an `inc` whose body is not
//! 8 bytes, ends the counter with a `custom:counter: ...` reason (no reply). Data
//! messages with other tags, and `down` and `exit` messages, are ignored.
//!
//! # Upgrades
//!
//! The counter keeps its value across a hot upgrade: it answers an upgrade request by
//! handing over the value (`i64`, 8 bytes), and a new instance started by an upgrade
//! continues from the value handed over (an empty state counts as 0) without
//! registering again.

use rusm_guest::{
    Message, Request, Tag, hand_over, handed_over, handle_upgrades, receive, register,
};

/// Adds to the counter.
const INC: Tag = 1;
/// Reads the counter.
const GET: Tag = 2;
/// Stops the counter.
const STOP: Tag = 3;
/// Asks which version of the counter answers.
const VERSION: Tag = 4;

/// What `version` answers.
const THIS_VERSION: u64 = 1;

fn run(init: Vec<u8>) -> Result<(), String> {
    let mut value: i64 = match handed_over() {
        Some(state) if state.is_empty() => 0,
        Some(state) => i64::from_le_bytes(state.as_slice().try_into().map_err(|_| {
            format!(
                "counter: handed-over state must be 8 bytes, got {}",
                state.len()
            )
        })?),
        None => {
            if !init.is_empty() {
                let name = String::from_utf8(init).map_err(|_| "counter: name is not utf-8")?;
                register(&name).map_err(|e| format!("counter: cannot register {name}: {e}"))?;
            }
            0
        }
    };
    handle_upgrades(true);
    loop {
        let (tag, payload) = match receive() {
            Message::Data { tag, payload } => (tag, payload),
            Message::Upgrade { .. } => {
                // Returns only if the request was already answered: carry on.
                let _ = hand_over(value.to_le_bytes());
                continue;
            }
            _ => continue,
        };
        if !matches!(tag, INC | GET | STOP | VERSION) {
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
            VERSION => reply(&THIS_VERSION.to_le_bytes())?,
            _ => {
                reply(&[])?;
                return Ok(());
            }
        }
    }
}

rusm_guest::actor!(run);
