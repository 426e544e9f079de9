//! `spinner`: spins forever without calling the runtime, so only fuel, an epoch
//! deadline or a kill can stop it.
//!
//! # Init
//!
//! Empty, or a pid as 8 little-endian bytes: the spinner first sends that pid one data
//! message, tag 1, payload `spinning` (8 bytes), then spins. Any other init ends the
//! process with a `custom` reason saying so.
//!
//! # Messages
//!
//! None: it never looks at its mailbox.

use std::hint::black_box;

use rusm_guest::{Pid, send};

/// The tag of the message sent before spinning.
const SPINNING_TAG: u64 = 1;

fn run(init: Vec<u8>) -> Result<(), String> {
    match init.len() {
        0 => {}
        8 => {
            let to = Pid::from_slice(&init).expect("init holds 8 bytes");
            send(to, SPINNING_TAG, b"spinning")
                .map_err(|e| format!("spinner: cannot notify {to}: {e}"))?;
        }
        len => {
            return Err(format!(
                "spinner: init must be empty or a pid (8 bytes), got {len} bytes"
            ));
        }
    }
    let mut turns: u64 = 0;
    loop {
        // `black_box` hides the counter from the optimiser, so the loop stays.
        turns = black_box(turns.wrapping_add(1));
    }
}

rusm_guest::actor!(run);
