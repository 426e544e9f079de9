//! A client of a cluster's global service (the `apps/cluster` demo): looks up the
//! global name its init text gives ("echo" without one) and calls whoever holds it,
//! five times a second, wherever in the cluster it runs. Each call sends
//! `[own pid: 8 bytes]["call N"]` with tag 10 and waits up to a second for the
//! answer with tag 11 (what `cluster-echo` sends back). It monitors each holder it
//! finds, so it hears at once (`down`, reason `noconnection` when the holder's node
//! is gone) when the service is lost, and finds its successor by the name.
//!
//! It prints one line per event to stdout:
//!
//! - `client: <name> is <pid> on node <n>` — a new holder found;
//! - `client: call <k> answered by <pid>`;
//! - `client: <name> at <pid> is down: <reason>`;
//! - `client: no answer from <pid> to call <k>`;
//! - `client: <name> is not registered` — once per stretch without a holder.

use std::time::Duration;

use rusm_guest::{Message, MonitorRef, Pid, Selector, monitor, self_pid, send, whereis_global};

const CALL: u64 = 10;

/// A pid as the host prints it: `<node.serial>`.
fn show(pid: Pid) -> String {
    format!("<{}.{}>", pid.node(), pid.serial())
}
const ANSWER: u64 = 11;

fn run(init: Vec<u8>) -> Result<(), String> {
    let name = if init.is_empty() {
        "echo".to_string()
    } else {
        String::from_utf8(init).map_err(|_| "the init text is not UTF-8".to_string())?
    };
    let me = self_pid();
    let mut holder: Option<(Pid, MonitorRef)> = None;
    let mut missing = false;
    let mut call = 0u64;
    loop {
        if holder.is_none() {
            match whereis_global(&name) {
                Some(pid) => {
                    println!("client: {name} is {} on node {}", show(pid), pid.node());
                    holder = Some((pid, monitor(pid)));
                    missing = false;
                }
                None if !missing => {
                    println!("client: {name} is not registered");
                    missing = true;
                }
                None => {}
            }
        }
        let pace = match holder {
            Some((pid, mref)) => {
                call += 1;
                let mut payload = me.to_le_bytes().to_vec();
                payload.extend_from_slice(format!("call {call}").as_bytes());
                send(pid, CALL, &payload).map_err(|e| format!("send to {pid}: {e}"))?;
                let wait = Selector::new().tag(ANSWER).monitor(mref);
                match wait.receive_timeout(Duration::from_secs(1)) {
                    Some(Message::Data { .. }) => {
                        println!("client: call {call} answered by {}", show(pid))
                    }
                    Some(Message::Down { reason, .. }) => {
                        println!("client: {name} at {} is down: {reason}", show(pid));
                        holder = None;
                    }
                    _ => println!("client: no answer from {} to call {call}", show(pid)),
                }
                Selector::new().monitor(mref)
            }
            None => Selector::new(),
        };
        // Five calls a second; a down that comes meanwhile ends the wait early.
        if let Some(Message::Down { pid, reason, .. }) =
            pace.receive_timeout(Duration::from_millis(200))
        {
            println!("client: {name} at {} is down: {reason}", show(pid));
            holder = None;
        }
    }
}

rusm_guest::actor!(run);
