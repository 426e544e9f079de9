//! `spawner`: spawns children of a component and reports each result.
//!
//! All integers are little-endian; a pid is its raw number as a `u64`; a string is a
//! `u32` byte length then UTF-8; a byte string is a `u32` length then the bytes.
//!
//! # Init
//!
//! | field | encoding |
//! | --- | --- |
//! | `reporter` | pid: receives the reports below |
//! | `count` | `u32`: how many children to spawn |
//! | `flags` | `u8`: bit 0 link, bit 1 monitor, bit 2 trap exits (before spawning), bit 3 stay (see below) |
//! | `component` | string: the children's component name |
//! | `policy` | string: the policy to spawn them under; empty for the spawner's own |
//! | `child_init` | byte string: every child's init |
//! | `node` | string, optional: the node of the cluster to spawn them on (`spawn-on`); absent or empty spawns here |
//!
//! # Reports to `reporter`
//!
//! An `<error>` is a spawn error as text: `not found: ...`, `not permitted: ...`,
//! `no such process`, `already registered: ...`, `invalid request: ...` or
//! `unavailable: ...`. A `<reason>` is an exit reason in text form (`normal`,
//! `killed`, `crashed:<text>`, `custom:<text>`, ...; see `rusm_guest::ExitReason`).
//! Both take the rest of the payload.
//!
//! | tag | name | payload |
//! | --- | --- | --- |
//! | 1 | spawned | index `u32` ++ child pid (8 bytes) |
//! | 2 | failed | index `u32` ++ `<error>` |
//! | 3 | done | spawned count `u32` ++ failed count `u32` |
//! | 4 | down | pid (8 bytes) ++ `<reason>` (stay mode only) |
//! | 5 | exit | pid (8 bytes) ++ `<reason>` (stay mode only) |
//!
//! Children are spawned in order, index 0 to `count - 1`, one report each, then `done`.
//! Without the stay flag the spawner then returns (`normal`). With it, the spawner
//! keeps running: it forwards every `down` (tag 4) and trapped exit signal (tag 5) it
//! receives, and returns (`normal`) on a data message whose payload is exactly `stop`.
//! Without trapping, an abnormal exit of a linked child ends the spawner as well.

use rusm_guest::wire::Reader;
use rusm_guest::{
    ExitReason, Message, Pid, SpawnOptions, Tag, receive, send, spawn, spawn_on, trap_exit,
};

const SPAWNED: Tag = 1;
const FAILED: Tag = 2;
const DONE: Tag = 3;
const DOWN: Tag = 4;
const EXIT: Tag = 5;

const LINK: u8 = 1 << 0;
const MONITOR: u8 = 1 << 1;
const TRAP_EXIT: u8 = 1 << 2;
const STAY: u8 = 1 << 3;

fn report(reporter: Pid, tag: Tag, payload: &[u8]) -> Result<(), String> {
    send(reporter, tag, payload).map_err(|e| format!("spawner: cannot report to {reporter}: {e}"))
}

fn report_reason(reporter: Pid, tag: Tag, pid: Pid, reason: &ExitReason) -> Result<(), String> {
    let mut payload = pid.to_le_bytes().to_vec();
    payload.extend_from_slice(reason.to_string().as_bytes());
    report(reporter, tag, &payload)
}

fn run(init: Vec<u8>) -> Result<(), String> {
    let bad = |e: rusm_guest::wire::DecodeError| format!("spawner: bad init: {e}");
    let mut reader = Reader::new(&init);
    let reporter = reader.pid().map_err(bad)?;
    let count = reader.u32().map_err(bad)?;
    let flags = reader.u8().map_err(bad)?;
    let component = reader.str().map_err(bad)?;
    let policy = reader.str().map_err(bad)?;
    let child_init = reader.bytes().map_err(bad)?;
    let node = if reader.is_empty() {
        ""
    } else {
        reader.str().map_err(bad)?
    };
    reader.end().map_err(bad)?;

    if flags & TRAP_EXIT != 0 {
        trap_exit(true);
    }
    let mut options = SpawnOptions::new()
        .link(flags & LINK != 0)
        .monitor(flags & MONITOR != 0)
        .init(child_init);
    if !policy.is_empty() {
        options = options.policy(policy);
    }

    let (mut spawned, mut failed) = (0u32, 0u32);
    for index in 0..count {
        let mut payload = index.to_le_bytes().to_vec();
        let result = if node.is_empty() {
            spawn(component, options.clone())
        } else {
            spawn_on(node, component, options.clone())
        };
        match result {
            Ok(child) => {
                spawned += 1;
                payload.extend_from_slice(&child.pid.to_le_bytes());
                report(reporter, SPAWNED, &payload)?;
            }
            Err(error) => {
                failed += 1;
                payload.extend_from_slice(error.to_string().as_bytes());
                report(reporter, FAILED, &payload)?;
            }
        }
    }
    let mut done = spawned.to_le_bytes().to_vec();
    done.extend_from_slice(&failed.to_le_bytes());
    report(reporter, DONE, &done)?;

    if flags & STAY == 0 {
        return Ok(());
    }
    loop {
        match receive() {
            Message::Data { payload, .. } if payload == b"stop" => return Ok(()),
            // The SDK answers upgrade requests for this actor; none comes through.
            Message::Data { .. } | Message::Upgrade { .. } => {}
            Message::Down { pid, reason, .. } => report_reason(reporter, DOWN, pid, &reason)?,
            Message::Exit { from, reason } => report_reason(reporter, EXIT, from, &reason)?,
        }
    }
}

rusm_guest::actor!(run);
