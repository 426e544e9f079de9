//! `kv-counter` built against the first draft of the interface,
//! `wasi:keyvalue@0.2.0-draft` (`rusm_guest::keyvalue_draft`), so tests can check that
//! components of either draft run and share the same buckets.
//!
//! Counts the data messages it is sent in key `hits` of bucket `counters` and answers
//! each message whose payload starts with a pid with the new count (`u64`,
//! little-endian) under the same tag. Ends with the error's name when the bucket
//! cannot be opened or incremented.

use rusm_guest::keyvalue_draft::{atomics, store};
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
