//! `rights-probe`: tries one `rusm:runtime` right (kill, exit, register, spawn, send)
//! or one resource use and reports the outcome, so tests can see what a policy's
//! `[process]` and `[limits]` sections allow from inside a guest.
//!
//! All integers are little-endian; a pid is its raw number as a `u64`; a string is a
//! `u32` byte length then UTF-8; a byte string is a `u32` length then the bytes.
//!
//! # Init
//!
//! `reporter` pid, `op` `u8`, then per op:
//!
//! | op | name | more fields | what it does | the `ok` payload |
//! | --- | --- | --- | --- | --- |
//! | 0 | wait | — | waits for a data message whose payload is exactly `stop`, then returns; reports nothing | — |
//! | 1 | kill | `target` pid | `kill(target)` | empty |
//! | 2 | exit | `target` pid | `exit(target, custom("rights-probe: exit"))` | empty |
//! | 3 | register | `name` string | `register(name)` | `whereis(name)` afterwards: the pid, or empty |
//! | 4 | spawn-kill | `component` string, `child_init` byte string | spawns a monitored child under its own policy, kills it, waits up to 10 s for its `down` | child pid ++ the child's exit reason as text |
//! | 5 | send | `size` `u32` | sends `reporter` tag 3 with `size` bytes of `0xab` | empty |
//! | 6 | flood | `count` `u32` | sends itself `count` messages (tag 6), then takes them back without waiting | how many it got back, `u32` |
//! | 7 | alloc | `size` `u64` | allocates `size` bytes and writes every one | `size`, `u64` |
//! | 8 | send-after | `size` `u32` | `send_after(self, tag 8, size bytes of 0xab, 0 ms)`, then waits up to 10 s for it | the size of the payload that arrived, `u32` |
//! | 9 | link-exit | `target` pid | `link(target)`, then ends with `custom:rights-probe: linked exit` (no report unless the link fails) | — |
//! | 11 | cancel-timer | `timer` `u64` | `cancel-timer(timer)` | one byte: 1 if it cancelled a timer, else 0 |
//! | 12 | timers | `count` `u32` | sets up to `count` one-hour `send-after` timers for itself (tag 12, 16 bytes each), stopping at the first error, then returns (its timers end with it) | how many it set, `u32`, then the first error as text (empty when none) |
//! | 13 | monitors | `target` pid, `count` `u32` | `monitor(target)` `count` times (a dead target makes each a waiting `down`), then reports | how many, `u32` (past the policy's `monitors` limit the process traps instead) |
//! | 14 | link-many | `count` `u32`, then `count` pids | `link` to each, stopping at the first error | how many it linked, `u32`, then the first error as text (empty when none) |
//! | 15 | hoard | `size` `u32`, `count` `u32` | sends itself `count` messages of `size` bytes (tag 15) without receiving, then takes back what was queued without waiting | how many it got back, `u32` |
//! | 16 | send-to | `target` pid, `size` `u32` | sends `target` one message (tag 16) of `size` bytes of `0xab` | empty |
//! | 10 | succeed | — | spawns a successor: `rights-probe` with this same init under its own policy, then returns (a chain of successors, each replacing the last) | the successor's pid |
//!
//! # Reports to `reporter`
//!
//! | tag | name | payload |
//! | --- | --- | --- |
//! | 1 | ok | as in the table above |
//! | 2 | error | the runtime error as text (`not permitted: ...`, `invalid request: ...`, see `rusm_guest::Error`); for spawn-kill prefixed with `spawn: ` or `kill: ` |
//! | 3 | sent | the message of the `send` op |
//!
//! Every op but `wait` sends one `ok` or `error` and returns (`normal`). When
//! spawn-kill may spawn but not kill, it sends the child `stop` (so a `wait` child
//! ends) before reporting the error. A send-after whose message does not arrive within
//! 10 s reports the error `nothing arrived`. Growing memory past the policy's limit in
//! `alloc` ends the process (`out-of-memory`) instead. A bad init ends the process
//! with `custom:rights-probe: bad init: ...`.

use std::hint::black_box;
use std::time::Duration;

use rusm_guest::wire::Reader;
use rusm_guest::{
    ExitReason, Message, Pid, Selector, SpawnOptions, Tag, TimerRef, cancel_timer, exit, kill,
    link, monitor, receive, receive_tag_timeout, register, self_pid, send, send_after, spawn,
    whereis,
};

const OK: Tag = 1;
const ERROR: Tag = 2;
const SENT: Tag = 3;
const FLOOD_TAG: Tag = 6;
const TIMER_TAG: Tag = 8;

const WAIT: u8 = 0;
const KILL: u8 = 1;
const EXIT: u8 = 2;
const REGISTER: u8 = 3;
const SPAWN_KILL: u8 = 4;
const SEND: u8 = 5;
const FLOOD: u8 = 6;
const ALLOC: u8 = 7;
const SEND_AFTER: u8 = 8;
const LINK_EXIT: u8 = 9;
const SUCCEED: u8 = 10;
const CANCEL_TIMER: u8 = 11;
const TIMERS: u8 = 12;
const MONITORS: u8 = 13;
const LINK_MANY: u8 = 14;
const HOARD: u8 = 15;
const SEND_TO: u8 = 16;

/// How long spawn-kill waits for the killed child's `down`, and send-after for its
/// message.
const DOWN_TIMEOUT: Duration = Duration::from_secs(10);

fn wait_for_stop() {
    loop {
        if let Message::Data { payload, .. } = receive()
            && payload == b"stop"
        {
            return;
        }
    }
}

fn spawn_kill(component: &str, child_init: &[u8]) -> Result<Vec<u8>, String> {
    let options = SpawnOptions::new().monitor(true).init(child_init);
    let child = spawn(component, options).map_err(|e| format!("spawn: {e}"))?;
    if let Err(e) = kill(child.pid) {
        let _ = send(child.pid, 0, b"stop");
        return Err(format!("kill: {e}"));
    }
    let monitor = child
        .monitor
        .ok_or("spawn: the runtime returned no monitor")?;
    match Selector::new()
        .monitor(monitor)
        .receive_timeout(DOWN_TIMEOUT)
    {
        Some(Message::Down { pid, reason, .. }) => {
            let mut out = pid.to_le_bytes().to_vec();
            out.extend_from_slice(reason.to_string().as_bytes());
            Ok(out)
        }
        Some(other) => Err(format!("kill: unexpected message {other:?}")),
        None => Err(format!(
            "kill: no down from {} within {DOWN_TIMEOUT:?}",
            child.pid
        )),
    }
}

fn flood(count: u32) -> Result<Vec<u8>, String> {
    let me = self_pid();
    for i in 0..count {
        send(me, FLOOD_TAG, i.to_le_bytes()).map_err(|e| e.to_string())?;
    }
    let mut got: u32 = 0;
    while receive_tag_timeout(FLOOD_TAG, Duration::ZERO).is_some() {
        got += 1;
    }
    Ok(got.to_le_bytes().to_vec())
}

fn hoard(size: u32, count: u32) -> Result<Vec<u8>, String> {
    let me = self_pid();
    let payload = vec![0xee_u8; size as usize];
    for _ in 0..count {
        send(me, 15, &payload).map_err(|e| e.to_string())?;
    }
    let mut got: u32 = 0;
    while receive_tag_timeout(15, Duration::ZERO).is_some() {
        got += 1;
    }
    Ok(got.to_le_bytes().to_vec())
}

fn send_after_self(size: u32) -> Result<Vec<u8>, String> {
    send_after(
        self_pid(),
        TIMER_TAG,
        vec![0xab_u8; size as usize],
        Duration::ZERO,
    )
    .map_err(|e| e.to_string())?;
    let payload =
        receive_tag_timeout(TIMER_TAG, DOWN_TIMEOUT).ok_or_else(|| "nothing arrived".to_owned())?;
    let len = u32::try_from(payload.len()).map_err(|e| e.to_string())?;
    Ok(len.to_le_bytes().to_vec())
}

fn timers(count: u32) -> Vec<u8> {
    let mut set: u32 = 0;
    let mut error = String::new();
    for _ in 0..count {
        match send_after(self_pid(), 12, [0xcd_u8; 16], Duration::from_secs(3600)) {
            Ok(_) => set += 1,
            Err(e) => {
                error = e.to_string();
                break;
            }
        }
    }
    let mut out = set.to_le_bytes().to_vec();
    out.extend_from_slice(error.as_bytes());
    out
}

fn alloc(size: u64) -> Result<Vec<u8>, String> {
    let len = usize::try_from(size).map_err(|_| format!("cannot address {size} bytes"))?;
    // A non-zero fill writes every page, so the memory is really taken.
    let block = black_box(vec![0x5a_u8; len]);
    let size = black_box(block.len()) as u64;
    Ok(size.to_le_bytes().to_vec())
}

/// One decoded request.
enum Op<'a> {
    Wait,
    Kill(Pid),
    Exit(Pid),
    Register(&'a str),
    SpawnKill(&'a str, &'a [u8]),
    Send(u32),
    Flood(u32),
    Alloc(u64),
    SendAfter(u32),
    LinkExit(Pid),
    Succeed,
    CancelTimer(u64),
    Timers(u32),
    Monitors(Pid, u32),
    LinkMany(Vec<Pid>),
    Hoard(u32, u32),
    SendTo(Pid, u32),
}

fn decode(init: &[u8]) -> Result<(Pid, Op<'_>), rusm_guest::wire::DecodeError> {
    let mut reader = Reader::new(init);
    let reporter = reader.pid()?;
    let op = match reader.u8()? {
        WAIT => Op::Wait,
        KILL => Op::Kill(reader.pid()?),
        EXIT => Op::Exit(reader.pid()?),
        REGISTER => Op::Register(reader.str()?),
        SPAWN_KILL => Op::SpawnKill(reader.str()?, reader.bytes()?),
        SEND => Op::Send(reader.u32()?),
        FLOOD => Op::Flood(reader.u32()?),
        ALLOC => Op::Alloc(reader.u64()?),
        SEND_AFTER => Op::SendAfter(reader.u32()?),
        LINK_EXIT => Op::LinkExit(reader.pid()?),
        SUCCEED => Op::Succeed,
        CANCEL_TIMER => Op::CancelTimer(reader.u64()?),
        TIMERS => Op::Timers(reader.u32()?),
        MONITORS => Op::Monitors(reader.pid()?, reader.u32()?),
        HOARD => Op::Hoard(reader.u32()?, reader.u32()?),
        SEND_TO => Op::SendTo(reader.pid()?, reader.u32()?),
        LINK_MANY => {
            let count = reader.u32()?;
            let mut pids = Vec::new();
            for _ in 0..count {
                pids.push(reader.pid()?);
            }
            Op::LinkMany(pids)
        }
        other => {
            return Err(rusm_guest::wire::DecodeError::new(format!(
                "unknown op {other}"
            )));
        }
    };
    reader.end()?;
    Ok((reporter, op))
}

fn run(init: Vec<u8>) -> Result<(), String> {
    let (reporter, op) = decode(&init).map_err(|e| format!("rights-probe: bad init: {e}"))?;
    let outcome = match op {
        Op::Wait => {
            wait_for_stop();
            return Ok(());
        }
        Op::Kill(target) => kill(target).map(|()| Vec::new()).map_err(|e| e.to_string()),
        Op::Exit(target) => exit(target, ExitReason::custom("rights-probe: exit"))
            .map(|()| Vec::new())
            .map_err(|e| e.to_string()),
        Op::Register(name) => register(name)
            .map(|()| {
                whereis(name)
                    .map(|pid| pid.to_le_bytes().to_vec())
                    .unwrap_or_default()
            })
            .map_err(|e| e.to_string()),
        Op::SpawnKill(component, child_init) => spawn_kill(component, child_init),
        Op::CancelTimer(timer) => Ok(vec![u8::from(cancel_timer(TimerRef::from_raw(timer)))]),
        Op::Timers(count) => Ok(timers(count)),
        Op::Monitors(target, count) => {
            for _ in 0..count {
                monitor(target);
            }
            Ok(count.to_le_bytes().to_vec())
        }
        Op::Hoard(size, count) => hoard(size, count),
        Op::SendTo(target, size) => send(target, 16, vec![0xab_u8; size as usize])
            .map(|()| Vec::new())
            .map_err(|e| e.to_string()),
        Op::LinkMany(pids) => {
            let mut linked: u32 = 0;
            let mut error = String::new();
            for pid in pids {
                match link(pid) {
                    Ok(()) => linked += 1,
                    Err(e) => {
                        error = e.to_string();
                        break;
                    }
                }
            }
            let mut out = linked.to_le_bytes().to_vec();
            out.extend_from_slice(error.as_bytes());
            Ok(out)
        }
        Op::Succeed => spawn("rights-probe", SpawnOptions::new().init(init.as_slice()))
            .map(|child| child.pid.to_le_bytes().to_vec())
            .map_err(|e| e.to_string()),
        Op::Send(size) => send(reporter, SENT, vec![0xab_u8; size as usize])
            .map(|()| Vec::new())
            .map_err(|e| e.to_string()),
        Op::Flood(count) => flood(count),
        Op::Alloc(size) => alloc(size),
        Op::SendAfter(size) => send_after_self(size),
        Op::LinkExit(target) => match link(target) {
            Ok(()) => return Err("rights-probe: linked exit".into()),
            Err(e) => Err(e.to_string()),
        },
    };
    let (tag, payload) = match outcome {
        Ok(detail) => (OK, detail),
        Err(text) => (ERROR, text.into_bytes()),
    };
    send(reporter, tag, payload)
        .map_err(|e| format!("rights-probe: cannot report to {reporter}: {e}"))
}

rusm_guest::actor!(run);
