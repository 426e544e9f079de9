//! A server-sent events stream (route `kind = "sse"`): first an event `pid` whose
//! data is this process's raw pid, then `tick` events numbered from one past the
//! client's `Last-Event-ID` (or from 1), each with its number as `id` and
//! `tick N` as data, the first also with `retry: 2000`.
//!
//! The query sets `count=N` (then the stream ends after N ticks; without it, it
//! never does) and `every=MS` (the wait between ticks, 0 by default).

use std::time::Duration;

use rusm_guest::sse::{Event, Init, send_event};
use rusm_guest::{receive_timeout, self_pid};

fn run(init: Vec<u8>) -> Result<(), String> {
    let init = Init::decode(&init).map_err(|e| e.to_string())?;
    let param = |key: &str| {
        init.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.parse::<u64>().ok())
    };
    let count = param("count");
    let every = Duration::from_millis(param("every").unwrap_or(0));
    let first = init
        .last_event_id
        .as_deref()
        .and_then(|id| id.parse::<u64>().ok())
        .map_or(1, |last| last + 1);
    let hello = Event {
        event: Some("pid".into()),
        data: self_pid().as_raw().to_string(),
        ..Event::default()
    };
    send_event(init.conn, &hello).map_err(|e| e.to_string())?;
    let mut n = first;
    while count.is_none_or(|count| n < first + count) {
        let tick = Event {
            id: Some(n.to_string()),
            event: Some("tick".into()),
            data: format!("tick {n}"),
            retry: (n == first).then_some(2000),
        };
        send_event(init.conn, &tick).map_err(|e| e.to_string())?;
        n += 1;
        if !every.is_zero() {
            let _ = receive_timeout(every);
        }
    }
    Ok(())
}

rusm_guest::actor!(run);
