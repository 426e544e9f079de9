//! Handler-style actors, in the manner of Erlang's `gen_server`: implement [`Handler`]
//! for your state and declare it with [`handler!`](crate::handler!).
//!
//! The host owns the loop: it calls [`Handler::init`] once, then [`Handler::handle`]
//! once for each message, only when one is in the mailbox. Between messages no guest
//! code runs, so an idle handler actor holds only its instance and memory (no host
//! stack): this is the cheapest kind of actor, and the one to choose when a node must
//! hold very many of them. Inside the callbacks every function of this crate works
//! (send, spawn, link, monitor, a short selective receive...).
//!
//! ```no_run
//! use rusm_guest::{Handler, Message, Next, Pid, send};
//!
//! /// Answers every data message to the pid in its first 8 bytes, with the tag plus one.
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn init(_init: Vec<u8>, _handed_over: Option<Vec<u8>>) -> Result<Self, String> {
//!         Ok(Echo)
//!     }
//!
//!     fn handle(&mut self, message: Message) -> Next {
//!         if let Message::Data { tag, payload } = message
//!             && let Some(from) = payload.get(..8).and_then(Pid::from_slice)
//!         {
//!             let _ = send(from, tag + 1, &payload);
//!         }
//!         Next::Wait
//!     }
//! }
//!
//! rusm_guest::handler!(Echo);
//! # fn main() {}
//! ```
//!
//! Upgrades: when the component is reloaded the host calls [`Handler::upgrade_state`]
//! on the running version and passes what it returns to the new version's
//! [`Handler::init`] as `handed_over` (same pid, mailbox, links, monitors and name).

use std::cell::RefCell;
use std::thread::LocalKey;

use crate::ExitReason;
use crate::types::Message;

#[allow(missing_docs, unsafe_code, unused_imports, clippy::all)]
/// The raw bindings of the `handler-actor` world (its `rusm:runtime/handler` export).
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/rusm-runtime",
        world: "handler-actor",
        features: ["clocks-timezone"],
        with: {
            "rusm:runtime/types@0.1.0": crate::bindings::rusm::runtime::types,
            "rusm:runtime/process@0.1.0": crate::bindings::rusm::runtime::process,
        },
        pub_export_macro: true,
        default_bindings_module: "rusm_guest::handler::bindings",
    });
}

use bindings::exports::rusm::runtime::handler as raw;

/// What an actor does after handling a message.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Next {
    /// Wait for the next message.
    Wait,
    /// Call [`Handler::terminate`], then end the process with this reason.
    Stop(ExitReason),
}

/// A handler-style actor: its state and its callbacks. Declare the component's actor
/// with [`handler!`](crate::handler!).
pub trait Handler: Sized + 'static {
    /// Start the actor from the init bytes given at spawn, and, after an upgrade, the
    /// state the previous version returned from [`Handler::upgrade_state`] (`None` on a
    /// fresh start). `Err(text)` ends the process with reason `custom(text)`.
    ///
    /// # Errors
    /// Whatever should end the process before it handles any message.
    fn init(init: Vec<u8>, handed_over: Option<Vec<u8>>) -> Result<Self, String>;

    /// Handle one message: data, [`Message::Down`], or [`Message::Exit`] when trapping
    /// exits. A panic or trap ends the process with reason `crashed`.
    fn handle(&mut self, message: Message) -> Next;

    /// Called once after [`Handler::handle`] returned [`Next::Stop`], with the reason
    /// the process ends with. Does nothing by default.
    fn terminate(&mut self, reason: ExitReason) {
        let _ = reason;
    }

    /// The state to hand to the new version when the component is reloaded. Empty by
    /// default (the new version starts from its init bytes and an empty state).
    fn upgrade_state(&mut self) -> Vec<u8> {
        Vec::new()
    }
}

/// The per-instance state cell [`handler!`](crate::handler!) declares.
#[doc(hidden)]
pub type StateCell<H> = RefCell<Option<H>>;

#[doc(hidden)]
pub fn __init<H: Handler>(
    cell: &'static LocalKey<StateCell<H>>,
    init: Vec<u8>,
    handed_over: Option<Vec<u8>>,
) -> Result<(), String> {
    let state = H::init(init, handed_over)?;
    cell.with(|c| *c.borrow_mut() = Some(state));
    Ok(())
}

fn with_state<H: Handler, T>(
    cell: &'static LocalKey<StateCell<H>>,
    f: impl FnOnce(&mut H) -> T,
) -> T {
    cell.with(|c| {
        let mut state = c.borrow_mut();
        // The host calls `init` first and nothing after a failed `init`.
        let state = state
            .as_mut()
            .expect("a handler callback ran before a successful init");
        f(state)
    })
}

#[doc(hidden)]
pub fn __handle<H: Handler>(
    cell: &'static LocalKey<StateCell<H>>,
    message: crate::bindings::rusm::runtime::types::Message,
) -> raw::Next {
    match with_state(cell, |state| state.handle(Message::from(message))) {
        Next::Wait => raw::Next::Wait,
        Next::Stop(reason) => raw::Next::Stop(reason.into_raw()),
    }
}

#[doc(hidden)]
pub fn __terminate<H: Handler>(
    cell: &'static LocalKey<StateCell<H>>,
    reason: crate::bindings::rusm::runtime::types::ExitReason,
) {
    with_state(cell, |state| state.terminate(ExitReason::from(reason)));
}

#[doc(hidden)]
pub fn __upgrade_state<H: Handler>(cell: &'static LocalKey<StateCell<H>>) -> Vec<u8> {
    with_state(cell, |state| state.upgrade_state())
}

/// Declares a handler-style actor component: `handler!(MyActor)` where `MyActor`
/// implements [`Handler`]. Use it once per component, at module level, instead of
/// [`actor!`](crate::actor!). See the [`handler`](mod@crate::handler) module.
#[macro_export]
macro_rules! handler {
    ($ty:ty $(,)?) => {
        #[allow(unsafe_code)]
        const _: () = {
            struct RusmHandler;

            ::std::thread_local! {
                static STATE: $crate::handler::StateCell<$ty> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            impl $crate::handler::bindings::exports::rusm::runtime::handler::Guest for RusmHandler {
                fn init(
                    init: ::std::vec::Vec<u8>,
                    handed_over: ::core::option::Option<::std::vec::Vec<u8>>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::handler::__init::<$ty>(&STATE, init, handed_over)
                }

                fn handle(
                    message: $crate::bindings::rusm::runtime::types::Message,
                ) -> $crate::handler::bindings::exports::rusm::runtime::handler::Next {
                    $crate::handler::__handle::<$ty>(&STATE, message)
                }

                fn terminate(reason: $crate::bindings::rusm::runtime::types::ExitReason) {
                    $crate::handler::__terminate::<$ty>(&STATE, reason)
                }

                fn upgrade_state() -> ::std::vec::Vec<u8> {
                    $crate::handler::__upgrade_state::<$ty>(&STATE)
                }
            }

    $crate::handler::bindings::export!(RusmHandler with_types_in $crate::handler::bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u64);

    impl Handler for Counter {
        fn init(init: Vec<u8>, handed_over: Option<Vec<u8>>) -> Result<Self, String> {
            let bytes = handed_over.unwrap_or(init);
            let value = bytes
                .get(..8)
                .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
            Ok(Counter(value))
        }

        fn handle(&mut self, message: Message) -> Next {
            match message {
                Message::Data { tag: 0, .. } => Next::Stop(ExitReason::Normal),
                _ => {
                    self.0 += 1;
                    Next::Wait
                }
            }
        }

        fn upgrade_state(&mut self) -> Vec<u8> {
            self.0.to_le_bytes().to_vec()
        }
    }

    thread_local! {
        static CELL: StateCell<Counter> = const { RefCell::new(None) };
    }

    #[test]
    fn callbacks_drive_the_state() {
        use crate::bindings::rusm::runtime::types as t;
        __init::<Counter>(&CELL, 5u64.to_le_bytes().to_vec(), None).unwrap();
        let data = |tag| {
            t::Message::Data(t::DataMessage {
                tag,
                payload: Vec::new(),
            })
        };
        assert!(matches!(
            __handle::<Counter>(&CELL, data(1)),
            raw::Next::Wait
        ));
        assert_eq!(__upgrade_state::<Counter>(&CELL), 6u64.to_le_bytes());
        assert!(matches!(
            __handle::<Counter>(&CELL, data(0)),
            raw::Next::Stop(t::ExitReason::Normal)
        ));
        __init::<Counter>(&CELL, Vec::new(), Some(9u64.to_le_bytes().to_vec())).unwrap();
        assert_eq!(__upgrade_state::<Counter>(&CELL), 9u64.to_le_bytes());
    }

    // The macro must expand on the host target as well.
    crate::handler!(Counter);
}
