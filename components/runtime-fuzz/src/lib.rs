//! `runtime-fuzz`: reads its init as a program of `rusm:runtime/process` calls with
//! arbitrary arguments, makes them one after another, and reports what the runtime
//! refused, so a fuzzer can drive every host function with any arguments and in any
//! order through the real ABI.
//!
//! # Init
//!
//! `reporter` pid (8 bytes, little-endian), then the program: any bytes. Each call
//! starts with one byte choosing the function (its value modulo the number of
//! functions), followed by its arguments, each read from the bytes that follow (a
//! program that ends in the middle of a call stops there):
//!
//! - a **pid** is one byte: `0` this process, `1` the reporter, `2` the last child it
//!   spawned (or itself), `3` a dead-or-never pid (`u64::MAX - byte`), anything else
//!   the 8 bytes that follow as a raw pid;
//! - a **size** is two bytes (`u16`), the length of a payload (filled with `0x5a`) or
//!   of a name read from the bytes that follow (cut at the end of the program);
//! - a **count** is one byte; a **tag**, **timer** or **monitor** 8 bytes (`u64`); a
//!   **flag** one byte (odd is true).
//!
//! | byte mod 20 | call | arguments |
//! | --- | --- | --- |
//! | 0 | `self` | — |
//! | 1 | `send` | pid, tag, size |
//! | 2 | `receive` (timeout 0-3 ms) | count (timeout), selector |
//! | 3 | `try-receive` | selector |
//! | 4 | `send-receive` (timeout 0-3 ms) | pid, tag, size, count (timeout), selector |
//! | 5 | `spawn` | size (component name), flag (link), flag (monitor), size (policy name; empty for its own), size (init) |
//! | 6 | `link` | pid |
//! | 7 | `unlink` | pid |
//! | 8 | `monitor` | pid |
//! | 9 | `demonitor` | monitor (`0` for the last one made) |
//! | 10 | `trap-exit` | flag |
//! | 11 | `exit` | pid, count (the reason: mod 4 normal, shutdown, custom, killed; `normal` to itself is `custom:runtime-fuzz: exit(self)`), size (the custom text) |
//! | 12 | `kill` | pid |
//! | 13 | `register` | size (name) |
//! | 14 | `unregister` | size (name) |
//! | 15 | `whereis` | size (name) |
//! | 16 | `send-after` | pid, tag, size, count (delay in ms) |
//! | 17 | `cancel-timer` | timer (`0` for the last one set) |
//! | 18 | `hand-over` | size (state) |
//! | 19 | `handed-over` | — |
//!
//! A **selector** is a count: `0` none, otherwise `count - 1` tags (8 bytes each) and
//! then a flag (exits). Names are the program's bytes as UTF-8 (lossy); a component
//! name byte string of length 1 or 2 names `trivial` instead, so spawns can succeed.
//!
//! # Report to `reporter`
//!
//! When the program has run to its end: one message, tag 1000, with the number of calls
//! made (`u32`) and then one entry per refused call: the error's variant (`u8`: 0 not
//! found, 1 not permitted, 2 no such process, 3 already registered, 4 invalid, 5
//! unavailable) and its text as a byte string (`u32` length, then UTF-8). Then it
//! returns (`normal`: it ends `normal` only this way). Calls that end the process (`exit` or `kill` of itself, a
//! selector past the runtime's bound, a monitor past its limit) end it before any
//! report. Messages it receives are dropped.

use std::time::Duration;

use rusm_guest::{
    Error, ExitReason, MonitorRef, Pid, Selector, SpawnOptions, TimerRef, cancel_timer, demonitor,
    exit, hand_over, handed_over, kill, link, monitor, receive_selected_timeout, receive_timeout,
    register, self_pid, send, send_after, send_receive_timeout, spawn, trap_exit, try_receive,
    unlink, unregister, whereis,
};

/// The tag of the report (the program's own sends use other tags but by chance).
const REPORT: u64 = 1000;

/// The program's bytes, read front to back; `None` once they run out.
struct Program<'a> {
    bytes: &'a [u8],
    reporter: Pid,
    child: Option<Pid>,
    monitor: Option<MonitorRef>,
    timer: Option<TimerRef>,
}

impl Program<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(*first)
    }

    fn u64(&mut self) -> Option<u64> {
        let (head, rest) = self.bytes.split_at_checked(8)?;
        self.bytes = rest;
        Some(u64::from_le_bytes(head.try_into().ok()?))
    }

    fn u16(&mut self) -> Option<u16> {
        let (head, rest) = self.bytes.split_at_checked(2)?;
        self.bytes = rest;
        Some(u16::from_le_bytes(head.try_into().ok()?))
    }

    fn flag(&mut self) -> Option<bool> {
        Some(self.u8()? % 2 == 1)
    }

    fn pid(&mut self) -> Option<Pid> {
        Some(match self.u8()? {
            0 => self_pid(),
            1 => self.reporter,
            2 => self.child.unwrap_or_else(self_pid),
            3 => Pid::from_raw(u64::MAX - u64::from(self.u8()?)),
            _ => Pid::from_raw(self.u64()?),
        })
    }

    fn payload(&mut self) -> Option<Vec<u8>> {
        Some(vec![0x5a; usize::from(self.u16()?)])
    }

    /// A name of up to `size` of the program's bytes.
    fn name(&mut self) -> Option<String> {
        let len = usize::from(self.u16()?).min(self.bytes.len());
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Some(String::from_utf8_lossy(head).into_owned())
    }

    fn timeout(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(u64::from(self.u8()? % 4)))
    }

    fn selector(&mut self) -> Option<Option<Selector>> {
        let count = self.u8()?;
        if count == 0 {
            return Some(None);
        }
        let mut tags = Vec::new();
        for _ in 1..count {
            tags.push(self.u64()?);
        }
        let mut selector = Selector::new().tags(tags);
        if self.flag()? {
            selector = selector.exits();
        }
        Some(Some(selector))
    }
}

/// What one call did: nothing to report, or the error it was refused with.
type Outcome = Result<(), Error>;

fn step(p: &mut Program<'_>) -> Option<Outcome> {
    let outcome = match p.u8()? % 20 {
        0 => {
            let _ = self_pid();
            Ok(())
        }
        1 => {
            let (to, tag, payload) = (p.pid()?, p.u64()?, p.payload()?);
            send(to, tag, payload)
        }
        2 => {
            let timeout = p.timeout()?;
            match p.selector()? {
                None => drop(receive_timeout(timeout)),
                Some(selector) => drop(receive_selected_timeout(&selector, timeout)),
            }
            Ok(())
        }
        3 => {
            match p.selector()? {
                None => drop(try_receive()),
                Some(selector) => drop(selector.try_receive()),
            }
            Ok(())
        }
        4 => {
            let (to, tag, payload, timeout) = (p.pid()?, p.u64()?, p.payload()?, p.timeout()?);
            match p.selector()? {
                None => send_receive_timeout(to, tag, payload, timeout).map(drop),
                Some(selector) => selector
                    .send_receive_timeout(to, tag, payload, timeout)
                    .map(drop),
            }
        }
        5 => {
            let mut component = p.name()?;
            if (1..=2).contains(&component.len()) {
                component = "trivial".into();
            }
            let mut options = SpawnOptions::new().link(p.flag()?).monitor(p.flag()?);
            let policy = p.name()?;
            if !policy.is_empty() {
                options = options.policy(policy);
            }
            let init = p.payload()?;
            // `trivial` takes an empty init or a pid: give it one of those.
            let init = if init.len() >= 8 {
                init[..8].to_vec()
            } else {
                Vec::new()
            };
            match spawn(&component, options.init(init)) {
                Ok(child) => {
                    p.child = Some(child.pid);
                    p.monitor = child.monitor.or(p.monitor);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        6 => link(p.pid()?),
        7 => {
            unlink(p.pid()?);
            Ok(())
        }
        8 => {
            p.monitor = Some(monitor(p.pid()?));
            Ok(())
        }
        9 => {
            let raw = p.u64()?;
            let target = match (raw, p.monitor) {
                (0, Some(last)) => last,
                _ => MonitorRef::from_raw(raw),
            };
            let _ = demonitor(target);
            Ok(())
        }
        10 => {
            let _ = trap_exit(p.flag()?);
            Ok(())
        }
        11 => {
            let target = p.pid()?;
            let reason = match p.u8()? % 4 {
                // `normal` means the program ran to its end: not for ending itself.
                0 if target == self_pid() => ExitReason::custom("runtime-fuzz: exit(self)"),
                0 => ExitReason::Normal,
                1 => ExitReason::Shutdown,
                2 => ExitReason::custom(p.name()?),
                _ => ExitReason::Killed,
            };
            exit(target, reason)
        }
        12 => kill(p.pid()?),
        13 => register(&p.name()?),
        14 => unregister(&p.name()?),
        15 => {
            let _ = whereis(&p.name()?);
            Ok(())
        }
        16 => {
            let (to, tag, payload) = (p.pid()?, p.u64()?, p.payload()?);
            let delay = Duration::from_millis(u64::from(p.u8()?));
            send_after(to, tag, payload, delay).map(|timer| p.timer = Some(timer))
        }
        17 => {
            let raw = p.u64()?;
            let timer = match (raw, p.timer) {
                (0, Some(last)) => last,
                _ => TimerRef::from_raw(raw),
            };
            let _ = cancel_timer(timer);
            Ok(())
        }
        18 => Err(hand_over(p.payload()?)),
        _ => {
            let _ = handed_over();
            Ok(())
        }
    };
    Some(outcome)
}

fn variant(error: &Error) -> (u8, String) {
    match error {
        Error::NotFound(text) => (0, text.clone()),
        Error::NotPermitted(text) => (1, text.clone()),
        Error::Noproc => (2, String::new()),
        Error::AlreadyRegistered(text) => (3, text.clone()),
        Error::Invalid(text) => (4, text.clone()),
        Error::Unavailable(text) => (5, text.clone()),
    }
}

fn run(init: Vec<u8>) -> Result<(), String> {
    let (head, bytes) = init
        .split_at_checked(8)
        .ok_or("runtime-fuzz: bad init: no reporter pid")?;
    let reporter = Pid::from_slice(head).ok_or("runtime-fuzz: bad init: no reporter pid")?;
    let mut program = Program {
        bytes,
        reporter,
        child: None,
        monitor: None,
        timer: None,
    };
    let mut calls: u32 = 0;
    let mut report = Vec::new();
    while let Some(outcome) = step(&mut program) {
        calls += 1;
        if let Err(error) = outcome {
            let (index, text) = variant(&error);
            report.push(index);
            report.extend_from_slice(&u32::try_from(text.len()).unwrap_or(u32::MAX).to_le_bytes());
            report.extend_from_slice(text.as_bytes());
        }
    }
    let mut payload = calls.to_le_bytes().to_vec();
    payload.extend(report);
    send(reporter, REPORT, payload).map_err(|e| format!("runtime-fuzz: cannot report: {e}"))
}

rusm_guest::actor!(run);
