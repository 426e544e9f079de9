//! Hot code upgrade, seen from inside a process.
//!
//! When the host reloads an actor's component it asks every process running it to
//! upgrade. The request arrives through a plain [`receive`](crate::receive) (never
//! through a selective one), behind the messages already in the mailbox. The process
//! answers with [`hand_over`]: its instance ends there, and the new version starts
//! under the same pid with the same mailbox, links, monitors and registered name; its
//! run function gets the same init bytes, and [`handed_over`] returns the state.
//!
//! By default the SDK answers for the actor, handing over an empty state, so every
//! actor is upgradable: it starts again on the new code with its init (and
//! `handed_over()` is `Some(vec![])`). An actor that keeps its state across upgrades
//! calls [`handle_upgrades`]`(true)` and answers [`Message::Upgrade`] itself:
//!
//! ```no_run
//! use rusm_guest::{Message, hand_over, handed_over, handle_upgrades, receive};
//!
//! fn run(_init: Vec<u8>) -> Result<(), String> {
//!     // A fresh start counts from zero; an upgrade continues from the old count.
//!     let mut count = match handed_over() {
//!         Some(state) => u64::from_le_bytes(state.try_into().map_err(|_| "bad state")?),
//!         None => 0,
//!     };
//!     handle_upgrades(true);
//!     loop {
//!         match receive() {
//!             Message::Upgrade { .. } => {
//!                 // Returns only when no upgrade is pending any more.
//!                 let _ = hand_over(count.to_le_bytes());
//!             }
//!             Message::Data { .. } => count += 1,
//!             _ => {}
//!         }
//!     }
//! }
//!
//! rusm_guest::actor!(run);
//! # fn main() {}
//! ```
//!
//! A process that never gets to a plain receive (a long computation, a wait in a
//! selective receive) or ignores the request is ended with
//! [`ExitReason::UpgradeTimeout`](crate::ExitReason::UpgradeTimeout) once the host's
//! grace period has passed, and its supervisor restarts it on the new version.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::Error;
use crate::bindings::rusm::runtime::process as imports;
use crate::bindings::rusm::runtime::types as raw;

/// Whether the actor answers upgrade requests itself.
static HANDLED_BY_ACTOR: AtomicBool = AtomicBool::new(false);

/// Lets [`Message::Upgrade`](crate::Message::Upgrade) through to the actor (`true`),
/// or has the SDK answer upgrade requests by handing over an empty state (`false`, the
/// default). Returns the previous setting.
pub fn handle_upgrades(enabled: bool) -> bool {
    HANDLED_BY_ACTOR.swap(enabled, Ordering::Relaxed)
}

/// Answers an upgrade request: ends this instance and starts the new version of the
/// component under the same pid, which reads `state` with [`handed_over`].
///
/// Does not return when it succeeds. It returns the error only when no upgrade is
/// pending ([`Error::Invalid`]), for example when a second request was already
/// answered; the actor then just carries on.
pub fn hand_over(state: impl AsRef<[u8]>) -> Error {
    match imports::hand_over(state.as_ref()) {
        Ok(()) => Error::Invalid("hand-over returned without ending the instance".into()),
        Err(error) => error.into(),
    }
}

/// The state the previous version handed over, when this instance was started by an
/// upgrade; `None` on a fresh start.
pub fn handed_over() -> Option<Vec<u8>> {
    imports::handed_over()
}

/// What a plain receive does with a message before the actor sees it: an upgrade
/// request is answered here unless the actor handles upgrades. `None` means the
/// message was consumed.
pub(crate) fn intercept(message: raw::Message) -> Option<raw::Message> {
    match message {
        raw::Message::Upgrade(_) if !HANDLED_BY_ACTOR.load(Ordering::Relaxed) => {
            // Ends the instance; returns only when the request is no longer pending.
            let _ = hand_over([]);
            None
        }
        message => Some(message),
    }
}
