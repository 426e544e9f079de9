//! `supervisor`: starts one child component linked and monitored, traps exits,
//! reports every exit signal and `down` message it sees, and restarts the child up to
//! a limit.
//!
//! All integers are little-endian; a pid is its raw number as a `u64`; a string is a
//! `u32` byte length then UTF-8; a byte string is a `u32` length then the bytes.
//!
//! # Init
//!
//! | field | encoding |
//! | --- | --- |
//! | `reporter` | pid: receives the reports below |
//! | `max_restarts` | `u32`: how many times the child may be restarted |
//! | `mode` | `u8`: 0 = transient (restart only after an abnormal exit), 1 = permanent (restart after any exit) |
//! | `component` | string: the child component's name |
//! | `child_init` | byte string: the child's init |
//!
//! # Reports to `reporter`
//!
//! A `<reason>` is an exit reason in text form (`normal`, `shutdown`, `killed`,
//! `noproc`, `out-of-memory`, `crashed:<text>`, `custom:<text>`, ...; see
//! `rusm_guest::ExitReason`), as the rest of the payload.
//!
//! | tag | name | payload |
//! | --- | --- | --- |
//! | 1 | started | child pid (8 bytes) |
//! | 2 | exit | pid (8 bytes) ++ `<reason>`: an exit signal, trapped |
//! | 3 | down | pid (8 bytes) ++ `<reason>`: the child's monitor fired |
//! | 4 | spawn-failed | the spawn error as text (`not found: ...`, `not permitted: ...`, ...) |
//! | 5 | gave-up | restarts made, `u32` |
//! | 6 | stopped | empty |
//!
//! # Behaviour
//!
//! After `trap_exit(true)` it spawns the child with link and monitor and reports
//! `started`. Restarts are decided on the child's `down` (the matching `exit`, if the
//! runtime sends one, is only reported; the two may come in either order):
//!
//! - if the exit calls for a restart (permanent mode, or an abnormal reason) and fewer
//!   than `max_restarts` restarts were made, it spawns the child again (`started`);
//! - if it calls for a restart but the limit is reached, it reports `gave-up` and ends
//!   with reason `max-restart-intensity` (by `exit(self, ...)` after turning trapping
//!   off);
//! - otherwise (transient mode, normal exit) it reports `stopped` and returns
//!   (`normal`).
//!
//! If a spawn fails it reports `spawn-failed` and ends with
//! `custom:supervisor: cannot start <component>: <error>`.
//!
//! It also handles:
//!
//! - a data message with payload exactly `stop` (any tag): sends the child
//!   `exit(child, shutdown)`, waits up to 5 s for its `down` (killing it after that),
//!   reports `down`, reports `stopped` and returns (`normal`);
//! - an exit signal with an abnormal reason from a process that was never its child
//!   (its parent, say): reports `exit`, shuts the child down as for `stop`, then ends
//!   with that same reason. A normal one is reported and otherwise ignored.
//!
//! Other messages are ignored.

use std::time::Duration;

use rusm_guest::wire::Reader;
use rusm_guest::{
    ExitReason, Message, MonitorRef, Pid, Selector, SpawnOptions, Tag, exit, kill, self_pid, send,
    spawn, trap_exit,
};

const STARTED: Tag = 1;
const EXIT: Tag = 2;
const DOWN: Tag = 3;
const SPAWN_FAILED: Tag = 4;
const GAVE_UP: Tag = 5;
const STOPPED: Tag = 6;

/// How long a child gets to stop after `exit(child, shutdown)` before it is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

struct Config {
    reporter: Pid,
    max_restarts: u32,
    permanent: bool,
    component: String,
    child_init: Vec<u8>,
}

impl Config {
    fn decode(init: &[u8]) -> Result<Self, String> {
        let bad = |e: rusm_guest::wire::DecodeError| format!("supervisor: bad init: {e}");
        let mut reader = Reader::new(init);
        let reporter = reader.pid().map_err(bad)?;
        let max_restarts = reader.u32().map_err(bad)?;
        let permanent = match reader.u8().map_err(bad)? {
            0 => false,
            1 => true,
            mode => return Err(format!("supervisor: bad init: unknown mode {mode}")),
        };
        let component = reader.str().map_err(bad)?.to_owned();
        let child_init = reader.bytes().map_err(bad)?.to_vec();
        reader.end().map_err(bad)?;
        Ok(Self {
            reporter,
            max_restarts,
            permanent,
            component,
            child_init,
        })
    }
}

struct Child {
    pid: Pid,
    monitor: MonitorRef,
}

struct Supervisor {
    config: Config,
    child: Option<Child>,
    /// Every child ever started, so that late exit signals are recognised.
    children: Vec<Pid>,
    restarts: u32,
}

impl Supervisor {
    fn report(&self, tag: Tag, payload: &[u8]) -> Result<(), String> {
        send(self.config.reporter, tag, payload)
            .map_err(|e| format!("supervisor: cannot report to {}: {e}", self.config.reporter))
    }

    fn report_reason(&self, tag: Tag, pid: Pid, reason: &ExitReason) -> Result<(), String> {
        let mut payload = pid.to_le_bytes().to_vec();
        payload.extend_from_slice(reason.to_string().as_bytes());
        self.report(tag, &payload)
    }

    fn start_child(&mut self) -> Result<(), String> {
        let options = SpawnOptions::new()
            .link(true)
            .monitor(true)
            .init(self.config.child_init.clone());
        match spawn(&self.config.component, options) {
            Ok(spawned) => {
                let monitor = spawned
                    .monitor
                    .ok_or("supervisor: spawn returned no monitor")?;
                self.child = Some(Child {
                    pid: spawned.pid,
                    monitor,
                });
                self.children.push(spawned.pid);
                self.report(STARTED, &spawned.pid.to_le_bytes())
            }
            Err(error) => {
                self.report(SPAWN_FAILED, error.to_string().as_bytes())?;
                Err(format!(
                    "supervisor: cannot start {}: {error}",
                    self.config.component
                ))
            }
        }
    }

    /// Stops the child, if there is one, and reports its `down`.
    fn shut_down_child(&mut self) -> Result<(), String> {
        let Some(child) = self.child.take() else {
            return Ok(());
        };
        // The child may already be gone; its `down` is then in the mailbox.
        let _ = exit(child.pid, ExitReason::Shutdown);
        let selector = Selector::new().monitor(child.monitor);
        let down = match selector.receive_timeout(SHUTDOWN_GRACE) {
            Some(down) => down,
            None => {
                kill(child.pid)
                    .map_err(|e| format!("supervisor: cannot kill {}: {e}", child.pid))?;
                selector.receive()
            }
        };
        if let Message::Down { pid, reason, .. } = down {
            self.report_reason(DOWN, pid, &reason)?;
        }
        Ok(())
    }

    fn run(&mut self) -> Result<(), String> {
        trap_exit(true);
        self.start_child()?;
        loop {
            match rusm_guest::receive() {
                Message::Data { payload, .. } if payload == b"stop" => {
                    self.shut_down_child()?;
                    self.report(STOPPED, &[])?;
                    return Ok(());
                }
                // The SDK answers upgrade requests for this actor; none comes through.
                Message::Data { .. } | Message::Upgrade { .. } => {}
                Message::Exit { from, reason } => {
                    self.report_reason(EXIT, from, &reason)?;
                    if !self.children.contains(&from) && !reason.is_normal() {
                        self.shut_down_child()?;
                        return end_with(reason);
                    }
                }
                Message::Down {
                    monitor,
                    pid,
                    reason,
                } => {
                    if self.child.as_ref().map(|c| c.monitor) != Some(monitor) {
                        continue;
                    }
                    self.child = None;
                    self.report_reason(DOWN, pid, &reason)?;
                    let restart = self.config.permanent || !reason.is_normal();
                    if !restart {
                        self.report(STOPPED, &[])?;
                        return Ok(());
                    }
                    if self.restarts >= self.config.max_restarts {
                        self.report(GAVE_UP, &self.restarts.to_le_bytes())?;
                        return end_with(ExitReason::MaxRestartIntensity);
                    }
                    self.restarts += 1;
                    self.start_child()?;
                }
            }
        }
    }
}

/// Ends this process with `reason`.
fn end_with(reason: ExitReason) -> Result<(), String> {
    match reason {
        ExitReason::Normal => Ok(()),
        // Returning an error ends the process with exactly this reason.
        ExitReason::Custom(text) => Err(text),
        reason => {
            trap_exit(false);
            exit(self_pid(), reason.clone())
                .map_err(|e| format!("supervisor: cannot exit with {reason}: {e}"))?;
            // The signal ends this process at the runtime's next chance; an empty
            // selector gives it one without taking any message.
            let _ = Selector::new().receive_timeout(SHUTDOWN_GRACE);
            Err(format!(
                "supervisor: still running after exit(self, {reason})"
            ))
        }
    }
}

fn run(init: Vec<u8>) -> Result<(), String> {
    let mut supervisor = Supervisor {
        config: Config::decode(&init)?,
        child: None,
        children: Vec::new(),
        restarts: 0,
    };
    supervisor.run()
}

rusm_guest::actor!(run);
