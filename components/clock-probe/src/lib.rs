//! `clock-probe`: reads a clock or sleeps with Rust std (`std::time`, `std::thread`)
//! and reports the outcome, so tests can see what a policy's `[clocks]` section allows
//! from inside a guest.
//!
//! All integers are little-endian; a pid is its raw number as a `u64`.
//!
//! # Init
//!
//! `reporter` pid, `op` `u8`, then per op:
//!
//! | op | name | more fields | what it does | the `ok` payload |
//! | --- | --- | --- | --- | --- |
//! | 1 | wall | — | `SystemTime::now()` (`wasi:clocks/wall-clock`) | seconds since the Unix epoch, `u64` |
//! | 2 | monotonic | — | `Instant::now()` twice (`wasi:clocks/monotonic-clock`) | nanoseconds between the two readings, `u64` |
//! | 3 | sleep | `ms` `u64` | `std::thread::sleep` (waits on the monotonic clock without reading it) | empty |
//! | 4 | wait until | `instant` `u64` | `wasi:clocks/monotonic-clock.subscribe-instant(instant)`, then blocks on the pollable | empty |
//! | 5 | wait for | `ns` `u64` | `wasi:clocks/monotonic-clock.subscribe-duration(ns)`, then blocks on the pollable | empty |
//!
//! # Reports to `reporter`
//!
//! | tag | name | payload |
//! | --- | --- | --- |
//! | 1 | ok | as in the table above |
//!
//! then the probe returns (`normal`). Reading a clock the policy denies, or waiting
//! for an instant of a denied monotonic clock (op 4, which would tell whether that
//! instant has passed), never returns: the runtime ends the process with
//! `capability-denied:wasi:clocks/wall-clock` (or `.../monotonic-clock`), so no report
//! is sent. A bad init ends the process with `custom:clock-probe: bad init: ...`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusm_guest::wire::Reader;
use rusm_guest::{Tag, send};

const OK: Tag = 1;

const WALL: u8 = 1;
const MONOTONIC: u8 = 2;
const SLEEP: u8 = 3;
const WAIT_UNTIL: u8 = 4;
const WAIT_FOR: u8 = 5;

/// The monotonic clock's own interface, for the waits Rust std does not expose.
mod wasi_clocks {
    wit_bindgen::generate!({
        inline: "
            package rusm:clock-probe;
            world clocks {
                import wasi:clocks/monotonic-clock@0.2.12;
            }
        ",
        path: "../../wit/rusm-runtime",
        world: "rusm:clock-probe/clocks",
        features: ["clocks-timezone"],
        generate_all,
    });
}

use wasi_clocks::wasi::clocks::monotonic_clock;

fn run(init: Vec<u8>) -> Result<(), String> {
    let bad = |e: rusm_guest::wire::DecodeError| format!("clock-probe: bad init: {e}");
    let mut reader = Reader::new(&init);
    let reporter = reader.pid().map_err(bad)?;
    let op = reader.u8().map_err(bad)?;
    let payload = match op {
        WALL => {
            let since_epoch = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_err(|e| format!("clock-probe: the wall clock is before 1970: {e}"))?;
            since_epoch.as_secs().to_le_bytes().to_vec()
        }
        MONOTONIC => {
            let start = Instant::now();
            let elapsed = Instant::now().duration_since(start);
            u64::try_from(elapsed.as_nanos())
                .unwrap_or(u64::MAX)
                .to_le_bytes()
                .to_vec()
        }
        SLEEP => {
            let ms = reader.u64().map_err(bad)?;
            std::thread::sleep(Duration::from_millis(ms));
            Vec::new()
        }
        WAIT_UNTIL => {
            let instant = reader.u64().map_err(bad)?;
            monotonic_clock::subscribe_instant(instant).block();
            Vec::new()
        }
        WAIT_FOR => {
            let ns = reader.u64().map_err(bad)?;
            monotonic_clock::subscribe_duration(ns).block();
            Vec::new()
        }
        other => return Err(format!("clock-probe: bad init: unknown op {other}")),
    };
    reader.end().map_err(bad)?;
    send(reporter, OK, payload)
        .map_err(|e| format!("clock-probe: cannot report to {reporter}: {e}"))
}

rusm_guest::actor!(run);
