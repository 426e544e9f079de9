//! The key-value actor shown in the repository README (a test checks the two agree).
//!
//! Counts the data messages it is sent in key `hits` of bucket `counters`, so the
//! count outlives the actor and the node, and answers each message whose payload
//! starts with a pid with the new count (`u64`, little-endian) under the same tag.

use rusm_guest::keyvalue::{atomics, store};
use rusm_guest::{Message, Pid, receive, send};

fn run(_init: Vec<u8>) -> Result<(), String> {
    let bucket = store::open("counters").map_err(|e| format!("{e:?}"))?;
    loop {
        if let Message::Data { tag, payload } = receive()
            && let Some(from) = payload.get(..8).and_then(Pid::from_slice)
        {
            let hits = atomics::increment(&bucket, "hits", 1).map_err(|e| format!("{e:?}"))?;
            send(from, tag, hits.to_le_bytes()).map_err(|e| e.to_string())?;
        }
    }
}

rusm_guest::actor!(run);
