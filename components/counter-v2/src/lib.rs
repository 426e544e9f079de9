//! `counter-v2`: the second version of `counter`, loaded over it in the upgrade tests.
//!
//! It speaks the same protocol as `counter` (see its documentation: `inc` 1, `get` 2,
//! `stop` 3) with one difference the tests look for: `version` (tag 4) answers `2`
//! (`u64`). It continues from the value a `counter` (or another `counter-v2`) hands
//! over during an upgrade, and hands its own value over the same way (`i64`, 8
//! bytes; an empty state counts as 0). A fresh start with a non-empty init registers
//! under that name, as `counter` does.

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
const THIS_VERSION: u64 = 2;

/// The value to start from: handed over by an upgrade, or 0 on a fresh start.
fn starting_value(init: Vec<u8>) -> Result<i64, String> {
    match handed_over() {
        Some(state) if state.is_empty() => Ok(0),
        Some(state) => state
            .as_slice()
            .try_into()
            .map(i64::from_le_bytes)
            .map_err(|_| {
                format!(
                    "counter-v2: handed-over state must be 8 bytes, got {}",
                    state.len()
                )
            }),
        None => {
            if !init.is_empty() {
                let name = String::from_utf8(init).map_err(|_| "counter-v2: name is not utf-8")?;
                register(&name).map_err(|e| format!("counter-v2: cannot register {name}: {e}"))?;
            }
            Ok(0)
        }
    }
}

fn run(init: Vec<u8>) -> Result<(), String> {
    let mut value = starting_value(init)?;
    handle_upgrades(true);
    loop {
        let (tag, payload) = match receive() {
            Message::Data { tag, payload } if matches!(tag, INC | GET | STOP | VERSION) => {
                (tag, payload)
            }
            Message::Upgrade { .. } => {
                // Returns only if the request was already answered: carry on.
                let _ = hand_over(value.to_le_bytes());
                continue;
            }
            _ => continue,
        };
        let request = Request::decode(&payload).map_err(|e| format!("counter-v2: {e}"))?;
        let reply = |body: &[u8]| {
            request
                .reply(body)
                .map_err(|e| format!("counter-v2: cannot reply to {}: {e}", request.from))
        };
        match tag {
            INC => {
                let n: [u8; 8] = request.body.as_slice().try_into().map_err(|_| {
                    format!(
                        "counter-v2: inc takes an 8-byte i64, got {} bytes",
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
