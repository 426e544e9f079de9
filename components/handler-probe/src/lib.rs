//! A handler-style actor driven by tagged commands (the handler tests in
//! `tests/all/handler.rs` use it). Every command's payload starts with the pid to
//! answer (8 little-endian bytes, the "owner"); some carry a second pid after it.
//!
//! | tag | does | answers |
//! | --- | --- | --- |
//! | 1 | counts the message | tag 2, the count so far |
//! | 5 | spins forever inside `handle` | — |
//! | 6 | traps (`unreachable`) | — |
//! | 7 | stops with reason `custom("asked to stop")` | tag 8 from `terminate`, the reason's text |
//! | 9 | links to the second pid | tag 10, `ok` or the error |
//! | 11 | traps exits | tag 12 |
//! | 13 | monitors the second pid | tag 14 |
//! | 19 | spawns `idle-handler` | tag 20, `ok` or the error |
//! | 21 | waits up to 5 s for a tag-22 message (selective receive inside `handle`) | tag 23, its payload |
//!
//! `exit` messages (when trapping exits) go to the owner as tag 30, `down` messages as
//! tag 31, each with the reason's text. Init bytes `fail` make `init` fail. The count is
//! what an upgrade hands over.

use std::time::Duration;

use rusm_guest::{
    ExitReason, Handler, Message, Next, Pid, SpawnOptions, link, monitor, receive_tag_timeout,
    send, spawn, trap_exit,
};

struct Probe {
    count: u64,
    owner: Option<Pid>,
}

fn pid_at(payload: &[u8], at: usize) -> Option<Pid> {
    payload.get(at..at + 8).and_then(Pid::from_slice)
}

fn outcome<E: std::fmt::Display>(result: Result<impl Sized, E>) -> Vec<u8> {
    match result {
        Ok(_) => b"ok".to_vec(),
        Err(e) => e.to_string().into_bytes(),
    }
}

impl Handler for Probe {
    fn init(init: Vec<u8>, handed_over: Option<Vec<u8>>) -> Result<Self, String> {
        if init == b"fail" {
            return Err("init refused".into());
        }
        let count = handed_over
            .and_then(|s| {
                s.get(..8)
                    .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            })
            .unwrap_or(0);
        Ok(Probe { count, owner: None })
    }

    fn handle(&mut self, message: Message) -> Next {
        let (tag, payload) = match message {
            Message::Data { tag, payload } => (tag, payload),
            Message::Exit { reason, .. } => {
                if let Some(owner) = self.owner {
                    let _ = send(owner, 30, reason.to_string().as_bytes());
                }
                return Next::Wait;
            }
            Message::Down { reason, .. } => {
                if let Some(owner) = self.owner {
                    let _ = send(owner, 31, reason.to_string().as_bytes());
                }
                return Next::Wait;
            }
            Message::Upgrade { .. } => return Next::Wait,
        };
        let Some(owner) = pid_at(&payload, 0) else {
            return Next::Wait;
        };
        self.owner = Some(owner);
        let _ = match tag {
            1 => {
                self.count += 1;
                send(owner, 2, self.count.to_le_bytes())
            }
            5 =>
            {
                #[allow(clippy::empty_loop)]
                loop {}
            }
            6 => std::process::abort(),
            7 => return Next::Stop(ExitReason::Custom("asked to stop".into())),
            9 => match pid_at(&payload, 8) {
                Some(other) => send(owner, 10, outcome(link(other))),
                None => Ok(()),
            },
            11 => {
                trap_exit(true);
                send(owner, 12, b"")
            }
            13 => match pid_at(&payload, 8) {
                Some(other) => {
                    monitor(other);
                    send(owner, 14, b"")
                }
                None => Ok(()),
            },
            19 => send(
                owner,
                20,
                outcome(spawn("idle-handler", SpawnOptions::default())),
            ),
            21 => {
                let bytes = receive_tag_timeout(22, Duration::from_secs(5)).unwrap_or_default();
                send(owner, 23, &bytes)
            }
            _ => Ok(()),
        };
        Next::Wait
    }

    fn terminate(&mut self, reason: ExitReason) {
        if let Some(owner) = self.owner {
            let _ = send(owner, 8, reason.to_string().as_bytes());
        }
    }

    fn upgrade_state(&mut self) -> Vec<u8> {
        self.count.to_le_bytes().to_vec()
    }
}

rusm_guest::handler!(Probe);
